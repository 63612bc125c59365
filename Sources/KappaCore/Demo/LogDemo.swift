import Foundation

/// `kappactl demo`, as far as Kappa is built today: the BPI feed into the embedded log, read
/// back and charted. The Kappa workflow (deploy, replay, promote, rollback) joins it when the
/// job controller lands.
public struct LogDemo: Sendable {
    public var state: StateDirectory
    public var seed: UInt64
    public var minutes: Int
    public var narrate: @Sendable (String) -> Void

    public init(state: StateDirectory, seed: UInt64, minutes: Int, narrate: @escaping @Sendable (String) -> Void) {
        self.state = state
        self.seed = seed
        self.minutes = minutes
        self.narrate = narrate
    }

    /// What the demo found when it read the log back.
    public struct Result: Sendable {
        public var records: Int
        public var partitions: [PartitionDescription]
        /// Per currency: the mean rate of each minute, in time order.
        public var minuteMeans: [String: [Double]]
    }

    public func run() async throws -> Result {
        let log = try SegmentLog(state: state)
        let now = currentTimeMillis()
        let start = (now / 60_000 - Int64(minutes)) * 60_000
        let feed = BPIFeed(seed: seed, start: start)
        narrate("1. The unified log: topic \"bpi\", 3 partitions, key = currency (Kafka's partitioner), in \(state.logDirectory)")
        _ = try await log.createTopic("bpi", config: TopicConfig(partitions: 3))

        let ticks = feed.ticks(seconds: minutes * 60)
        narrate("2. Producing \(minutes) minutes of Bitcoin Price Index history: \(ticks.count) ticks (EUR, USD, GBP, one a second each, seed \(seed))")
        let clock = ContinuousClock.now
        for chunk in stride(from: 0, to: ticks.count, by: 3000) {
            _ = try await log.append(topic: "bpi", records: ticks[chunk..<min(chunk + 3000, ticks.count)].map(\.record))
        }
        let elapsed = ContinuousClock.now - clock
        narrate("   appended and fsynced in \(elapsed.formatted(.units(allowed: [.milliseconds], width: .abbreviated)))")

        let partitions = try await log.describe(topic: "bpi")
        var table = TextTable(["PARTITION", "EARLIEST", "END", "BYTES"])
        for p in partitions { table.add(["\(p.partition)", "\(p.earliest)", "\(p.end)", "\(p.bytes)"]) }
        narrate("3. Offsets are numbered from 0 per partition; every currency's ticks stay in order in one partition:")
        narrate(table.render().split(separator: "\n").map { "   " + $0 }.joined(separator: "\n"))

        narrate("4. Reading the whole log back from offset 0 (what a replay of a new job version does):")
        var sums: [String: [Int64: (Double, Int)]] = [:]
        var records = 0
        for p in partitions {
            var offset = p.earliest
            while true {
                let batch = try await log.read(topic: "bpi", partition: p.partition, from: offset, maxRecords: 10_000, maxBytes: 4 << 20)
                if batch.isEmpty { break }
                for record in batch {
                    guard let object = try JSONSerialization.jsonObject(with: Data(record.value)) as? [String: Any],
                          let currency = object["currency"] as? String, let rate = object["rate"] as? Double,
                          let ts = (object["ts"] as? NSNumber)?.int64Value else { continue }
                    let minute = ts / 60_000
                    let (s, n) = sums[currency, default: [:]][minute] ?? (0, 0)
                    sums[currency, default: [:]][minute] = (s + rate, n + 1)
                }
                records += batch.count
                offset = batch.nextOffset
            }
        }
        let means = sums.mapValues { byMinute in byMinute.keys.sorted().map { byMinute[$0]!.0 / Double(byMinute[$0]!.1) } }
        narrate("   \(records) records read")
        for currency in BPIFeed.currencies {
            guard let series = means[currency], let first = series.first, let last = series.last else { continue }
            narrate("   \(currency)  \(Sparkline.render(series, width: 48))  \(String(format: "%.2f", first)) → \(String(format: "%.2f", last)) (per-minute mean)")
        }
        return Result(records: records, partitions: partitions, minuteMeans: means)
    }
}
