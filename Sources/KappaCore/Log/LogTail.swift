/// Reads a topic the way `kappactl consume` does: one or all partitions, from a start point,
/// optionally following new records, up to a limit.
public struct LogTail: Sendable {
    public enum Start: Sendable, Equatable {
        case beginning
        case end
        case offset(Int64)
    }

    public var log: any UnifiedLog
    public var topic: String
    public var partition: Int?
    public var start: Start
    public var limit: Int?
    public var follow: Bool
    /// How long to wait between polls when following and nothing is new.
    public var pollMilliseconds: Int = 100

    public init(log: any UnifiedLog, topic: String, partition: Int? = nil, start: Start, limit: Int? = nil, follow: Bool = false) {
        self.log = log
        self.topic = topic
        self.partition = partition
        self.start = start
        self.limit = limit
        self.follow = follow
    }

    /// Calls `emit` with each batch of records (partitions take turns) until the end (or, when
    /// following, until the limit or cancellation). Returns how many records were emitted.
    @discardableResult
    public func run(_ emit: (LogRecords) throws -> Void) async throws -> Int {
        let metadata = try await log.metadata(topic: topic)
        if let p = partition, p < 0 || p >= metadata.partitions {
            throw LogError.partitionNotFound(topic, p, count: metadata.partitions)
        }
        let offsets = try await log.offsets(topic: topic)
        let partitions = partition.map { [$0] } ?? Array(0..<metadata.partitions)
        var next: [Int: Int64] = [:]
        for p in partitions {
            switch start {
            case .beginning: next[p] = offsets[p].earliest
            case .end: next[p] = offsets[p].end
            case .offset(let n): next[p] = n
            }
        }
        var emitted = 0
        while !Task.isCancelled {
            var progressed = false
            for p in partitions {
                let room = limit.map { $0 - emitted } ?? 1000
                if room <= 0 { return emitted }
                let records = try await log.read(topic: topic, partition: p, from: next[p]!, maxRecords: min(room, 1000), maxBytes: 1 << 20)
                next[p] = records.nextOffset
                guard !records.isEmpty else { continue }
                try emit(records)
                emitted += records.count
                progressed = true
            }
            if limit.map({ emitted >= $0 }) == true { return emitted }
            if !progressed {
                guard follow else { return emitted }
                try? await Task.sleep(for: .milliseconds(pollMilliseconds))
            }
        }
        return emitted
    }
}
