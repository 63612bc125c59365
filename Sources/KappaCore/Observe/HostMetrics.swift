import Synchronization

/// What this JobHost's workers did, for `/metrics`: counters per version and the catalog commit
/// latency histogram. Updated by the workers after each batch; read by scrapes.
public final class HostMetrics: Sendable {
    public struct VersionCounters: Sendable, Equatable {
        public var batches: Int64 = 0
        public var records: Int64 = 0
        public var deadLettered: Int64 = 0
    }

    /// Upper bounds of the commit latency buckets, in seconds (Prometheus' `le`).
    public static let buckets: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]

    public struct Snapshot: Sendable {
        public var versions: [String: [Int: VersionCounters]]
        /// Cumulative counts per bucket (the last one is +Inf), their sum in seconds, the count.
        public var commitBuckets: [Int64]
        public var commitSum: Double
        public var commitCount: Int64
        public var failures: [String: Int64]
    }

    private let state = Mutex(Snapshot(versions: [:], commitBuckets: Array(repeating: 0, count: HostMetrics.buckets.count + 1),
                                       commitSum: 0, commitCount: 0, failures: [:]))

    public init() {}

    func recordBatch(job: String, version: Int, _ result: BatchResult, took: Duration) {
        let seconds = Double(took.components.seconds) + Double(took.components.attoseconds) / 1e18
        state.withLock { s in
            var c = s.versions[job, default: [:]][version, default: VersionCounters()]
            c.batches += 1
            c.records += Int64(result.records)
            c.deadLettered += Int64(result.deadLettered)
            s.versions[job, default: [:]][version] = c
            let bucket = Self.buckets.firstIndex { seconds <= $0 } ?? Self.buckets.count
            for i in bucket..<s.commitBuckets.count { s.commitBuckets[i] += 1 }
            s.commitSum += seconds
            s.commitCount += 1
        }
    }

    func recordFailure(job: String) {
        state.withLock { $0.failures[job, default: 0] += 1 }
    }

    public var snapshot: Snapshot { state.withLock { $0 } }
}
