/// Runs a version: one worker per partition, each reading a batch from the version's stored
/// offset, applying it and committing rows and next offset in one transaction, again and again.
/// Cancellation stops the workers between batches; a batch being committed completes.
public struct VersionRunner: Sendable {
    public enum Mode: Sendable, Equatable {
        /// Stop when every partition has reached the end offset seen at the start.
        case untilEnd
        /// Keep following the log until cancelled, polling every `pollMs` when idle.
        case follow(pollMs: Int)
    }

    /// The longest wait between two polls of an idle partition in `follow` mode.
    public static let maxIdlePollMs = 1_000

    public var log: any UnifiedLog
    public var store: any BatchStore
    public var job: any StreamJob
    /// The incarnation of the source topic the version was deployed over
    /// (`VersionRecord.sourceIncarnation`): every batch is checked to come from it. nil: unchecked.
    public var sourceIncarnation: String?
    /// The records a second this worker may replay now (`replay.maxRate`, its partition's
    /// share), asked before each batch; nil: no cap (JobHost's controller answers nil once the
    /// version has caught up).
    public var replayRate: (@Sendable () -> Double?)?
    /// Called after each committed batch (from the worker's task), with how long the catalog
    /// commit took.
    public var onBatch: (@Sendable (BatchResult, Duration) -> Void)?
    /// Called after each read from the log that succeeded (from the worker's task): JobHost's
    /// controller clears the partition's problem, if it had one, and its retry backoff.
    public var onRead: (@Sendable () -> Void)?
    /// Taken by a worker for each batch (read, plan, commit), shared by every worker of the
    /// process (JobHost's controller passes one): so that however many partitions there are,
    /// only so many batches are held in memory and queued for the store at once. `run` makes
    /// one of its own when nil.
    public var permits: AsyncPermits?

    /// Batches in flight at once when nobody said otherwise: enough to keep the blocking
    /// executor's threads and the store's writer busy.
    public static var defaultPermits: Int { max(4, BlockingExecutor.shared.threads) }

    public init(log: any UnifiedLog, store: any BatchStore, job: any StreamJob, permits: AsyncPermits? = nil, sourceIncarnation: String? = nil,
                replayRate: (@Sendable () -> Double?)? = nil, onBatch: (@Sendable (BatchResult, Duration) -> Void)? = nil) {
        self.log = log
        self.store = store
        self.job = job
        self.permits = permits
        self.sourceIncarnation = sourceIncarnation
        self.replayRate = replayRate
        self.onBatch = onBatch
    }

    /// Runs the workers. The first failure stops them all and is thrown.
    /// - Throws: `JobFailure` (the version cannot go on), or a log or store error.
    public func run(_ mode: Mode) async throws {
        let spec = job.spec
        let offsets = try await store.nextOffsets(job: spec.job, version: spec.version)
        let ends = mode == .untilEnd ? try await log.offsets(topic: spec.source.topic).map(\.end) : []
        var runner = self
        if runner.permits == nil { runner.permits = AsyncPermits(Self.defaultPermits) }
        try await withThrowingTaskGroup(of: Void.self) { [runner] group in
            for p in offsets.indices {
                let end: Int64? = mode == .untilEnd ? ends[p] : nil
                group.addTask { try await runner.worker(partition: p, from: offsets[p], until: end, mode: mode) }
            }
            // The first failure stops every worker (waitForAll would let the others run on).
            do {
                while try await group.next() != nil {}
            } catch {
                group.cancelAll()
                throw error
            }
        }
    }

    /// Runs one partition's worker under a lease (JobHost's controller runs the partitions its
    /// host holds). Ends by throwing `LeaseLostError` when a commit finds the lease taken over.
    public func runPartition(_ p: Int, fence: Lease?, mode: Mode) async throws {
        let spec = job.spec
        if Task.isCancelled { return }  // stopped before it began: not even the offset read
        let start = try await storedOffset(partition: p)
        let end: Int64? = mode == .untilEnd ? try await log.offsets(topic: spec.source.topic)[p].end : nil
        try await worker(partition: p, from: start, until: end, mode: mode, fence: fence)
    }

    private func worker(partition p: Int, from start: Int64, until end: Int64?, mode: Mode, fence: Lease? = nil) async throws {
        let spec = job.spec
        var offset = start
        var idleMs = 0  // how long the next poll of an idle partition waits
        var pace = ReplayPace()
        while !Task.isCancelled {
            if let end, offset >= end { return }
            // The replay cap waits before the batch's permit is taken: a paced worker holds none.
            let rate = replayRate?()
            do { try await pace.wait(rate: rate) } catch { return }
            if let permits { do { try await permits.acquire() } catch { return } }
            var holding = permits != nil
            defer { if holding { permits?.release() } }
            let records: LogRecords
            do {
                records = try await log.read(topic: spec.source.topic, partition: p, from: offset, maxRecords: pace.batch(spec.batch, rate: rate), maxBytes: 8 << 20)
            } catch let error as LogError {
                // A topic deleted or created again explains a missing topic or offset best.
                try await checkIncarnation(partition: p, offset: offset)
                if error.code == .gap, let to = error.gapEnd, to > offset {
                    guard spec.source.allowGaps else {
                        throw JobFailure(job: spec.job, version: spec.version, partition: p, offset: offset, message: error.message
                            + "; a version whose manifest says \"source\": {\"allowGaps\": true} skips it")
                    }
                    do {
                        try await store.skipGap(spec: spec, partition: p, from: offset, to: to,
                                                reason: "partition \(p): skipped offsets \(offset)…\(to - 1) of topic \"\(spec.source.topic)\", a recorded gap (source.allowGaps)",
                                                fence: fence)
                        offset = to
                    } catch is StaleOffsetError {
                        offset = try await storedOffset(partition: p)
                    } catch is VersionStoppedError {
                        return
                    }
                    continue
                }
                guard error.code == .offsetBelowEarliest || error.code == .corrupt || error.code == .gap else { throw error }
                throw JobFailure(job: spec.job, version: spec.version, partition: p, offset: offset, message: error.message)
            }
            onRead?()
            // After the read: records read from a topic created again under the name are never
            // committed, since the topic seen now is the one read or a later one.
            try await checkIncarnation(partition: p, offset: offset)
            if records.isEmpty {
                // A remote log can come back empty before the end it reported: read again.
                if let end, offset < end { continue }
                guard case .follow(let pollMs) = mode else { return }
                // An idle partition polls less and less often, up to once a second: 10,000 idle
                // partitions polled every 50 ms would keep the executor (and the store's lane
                // behind it) busy with empty reads.
                idleMs = idleMs == 0 ? pollMs : min(max(pollMs, Self.maxIdlePollMs), idleMs * 2)
                if holding { permits?.release(); holding = false }  // not held while idle
                do { try await Task.sleep(for: .milliseconds(idleMs)) } catch { return }
                continue
            }
            idleMs = 0
            do {
                let plan = try await job.plan(records)
                let started = ContinuousClock.now
                let result = try await store.commit(plan, spec: spec, partition: p, records: records, fence: fence)
                let took = ContinuousClock.now - started
                offset = result.nextOffset
                log.commitProgress(group: "kappa.\(spec.job).v\(spec.version)", topic: spec.source.topic, partition: p, nextOffset: offset)
                onBatch?(result, took)
                pace.spent(records.count, rate: rate)
            } catch is StaleOffsetError {
                offset = try await storedOffset(partition: p)
            } catch is VersionStoppedError {
                return  // retired or failed meanwhile: nothing more to do
            } catch is CancellationError {
                return  // a slow batch stopped by the worker's cancellation: rolled back
            }
        }
    }

    /// The partition's stored next offset (another worker moved it: a takeover, a retry).
    private func storedOffset(partition p: Int) async throws -> Int64 {
        let spec = job.spec
        guard let stored = try await store.nextOffset(job: spec.job, version: spec.version, partition: p) else {
            throw CatalogError.noVersion(spec.job, spec.version)
        }
        return stored
    }

    /// Throws `JobFailure` when the source topic is no longer the incarnation the version was
    /// deployed over: deleted, or deleted and created again (its offsets would skip or repeat
    /// records of the new topic without a word).
    private func checkIncarnation(partition p: Int, offset: Int64) async throws {
        guard let bound = sourceIncarnation else { return }
        let spec = job.spec, topic = spec.source.topic
        let now: String?
        do {
            now = try await log.metadata(topic: topic).incarnation
        } catch let error as LogError where error.code == .topicNotFound {
            throw JobFailure(job: spec.job, version: spec.version, partition: p, offset: offset,
                             message: "topic \"\(topic)\" was deleted since this version was deployed over it; deploy a new version to replay the topic if it is created again")
        }
        guard now == bound else {
            throw JobFailure(job: spec.job, version: spec.version, partition: p, offset: offset,
                             message: "topic \"\(topic)\" was deleted and created again since this version was deployed over it "
                                 + "(incarnation \(bound), now \(now ?? "unknown")): its offsets do not apply to the new topic; deploy a new version to replay it")
        }
    }
}

/// `replay.maxRate` for one worker: after a batch of n records at r records a second the next
/// read waits until n/r seconds after the last one was allowed, and a batch holds at most a
/// second's worth, so the rate holds over any window longer than a batch.
struct ReplayPace {
    private var allowedAt = ContinuousClock.now

    /// At most a second of records under a cap (at least one).
    func batch(_ size: Int, rate: Double?) -> Int {
        guard let rate else { return size }
        return max(1, min(size, Int(rate.rounded(.down))))
    }

    mutating func spent(_ records: Int, rate: Double?) {
        guard let rate, rate > 0 else { allowedAt = .now; return }
        allowedAt = max(allowedAt, .now - .seconds(1)) + .seconds(Double(records) / rate)
    }

    /// Sleeps until the next batch may be read. - Throws: `CancellationError`.
    func wait(rate: Double?) async throws {
        guard rate != nil, allowedAt > .now else { return }
        try await Task.sleep(until: allowedAt, clock: .continuous)
    }
}
