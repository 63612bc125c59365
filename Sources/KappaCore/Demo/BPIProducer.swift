import Foundation

/// `kappactl demo produce`: the BPI feed into topic `bpi` of any log, as history and as live ticks.
public struct BPIProducer: Sendable {
    public static let topic = "bpi"
    public var log: any UnifiedLog
    public var seed: UInt64

    public init(log: any UnifiedLog, seed: UInt64) {
        self.log = log
        self.seed = seed
    }

    /// Creates topic `bpi` (3 partitions) unless it exists.
    public func ensureTopic() async throws {
        if try await log.listTopics().contains(where: { $0.name == Self.topic }) { return }
        do {
            _ = try await log.createTopic(Self.topic, config: TopicConfig(partitions: 3))
        } catch let error as LogError where error.code == .topicExists {}
    }

    /// Appends `minutes` of history ending at the current minute; returns the ticks appended.
    @discardableResult
    public func history(minutes: Int) async throws -> Int {
        let start = (currentTimeMillis() / 60_000 - Int64(minutes)) * 60_000
        let ticks = BPIFeed(seed: seed, start: start).ticks(seconds: minutes * 60)
        for chunk in stride(from: 0, to: ticks.count, by: 5000) {
            _ = try await log.append(topic: Self.topic, records: ticks[chunk..<min(chunk + 5000, ticks.count)].map(\.record))
        }
        return ticks.count
    }

    /// Appends live ticks, `rate` a second per currency stamped with the time they are sent, the
    /// walk continuing after `afterSeconds` of history, until cancelled. `sent` sees the running total.
    /// With no history before it in this run (`afterSeconds` 0), the walk goes on from the last
    /// tick of each currency in the topic, so that prices do not jump back to where they began.
    public func live(rate: Int, afterSeconds: Int, sent: @Sendable (Int) -> Void) async throws {
        var walk: [BPIFeed.Tick]
        if afterSeconds == 0, let (levels, end) = try await lastLevels() {
            walk = BPIFeed(seed: seed &+ UInt64(end), start: 0, levels: levels).ticks(seconds: 3600)
        } else {
            walk = BPIFeed(seed: seed, start: 0).ticks(seconds: afterSeconds + 3600)
            walk.removeFirst(min(walk.count, afterSeconds * 3))
        }
        var i = 0, total = 0
        let interval = 1000 / max(1, rate)
        while !Task.isCancelled {
            if i + 3 > walk.count {  // an hour of live ticks used up: walk on from the last level
                walk = BPIFeed(seed: seed &+ UInt64(total), start: 0, levels: Array(walk.suffix(3).map(\.rate))).ticks(seconds: 3600)
                i = 0
            }
            let now = currentTimeMillis()
            _ = try await log.append(topic: Self.topic, records: walk[i..<i + 3].map { tick in
                var t = tick
                t.ts = now
                return t.record
            })
            i += 3
            total += 3
            sent(total)
            try? await Task.sleep(for: .milliseconds(interval))
        }
    }

    /// The newest rate of each currency in the topic (from the last records of each partition),
    /// and the topic's total end offset; nil when a currency has no tick there.
    func lastLevels() async throws -> ([Double], Int64)? {
        var newest: [String: (ts: Int64, rate: Double)] = [:]
        var total: Int64 = 0
        for p in try await log.offsets(topic: Self.topic) where p.end > p.earliest {
            total += p.end
            let from = max(p.earliest, p.end - 32)
            for record in try await log.read(topic: Self.topic, partition: p.partition, from: from, maxRecords: 32, maxBytes: 64 << 10) {
                guard let value = record.value, let object = try? JSONSerialization.jsonObject(with: Data(value)) as? [String: Any],
                      let currency = object["currency"] as? String, let rate = (object["rate"] as? NSNumber)?.doubleValue else { continue }
                if record.timestamp >= newest[currency]?.ts ?? .min { newest[currency] = (record.timestamp, rate) }
            }
        }
        let levels = BPIFeed.currencies.compactMap { newest[$0]?.rate }
        return levels.count == 3 ? (levels, total) : nil
    }
}
