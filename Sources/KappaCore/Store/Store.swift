import Synchronization

/// The catalog as the lifecycle and the operator use it: versions and their states, history,
/// the view switch, lag samples, hosts and leases.
public protocol CatalogStore: Sendable {
    /// The database, for messages (a file path, or a URL without its password).
    var displayName: String { get }

    /// Registers a version (state `pending`): checks it is above every earlier version of the
    /// job, creates `<table>__v<N>` and its dead-letter table, stores the start offsets, and
    /// checks the job's SQL under its permissions — all in one transaction, so a refused
    /// version leaves nothing behind.
    /// - Throws: `CatalogError` (`.versionNotAbove`, `.conflictingOutput`, `.invalidJob`).
    /// `sourceIncarnation` binds it to this incarnation of its topic (`TopicMetadata.incarnation`).
    func registerVersion(_ spec: JobSpec, manifest: String, startOffsets: [Int64], sourceIncarnation: String?, actor: String, reason: String) async throws -> VersionRecord

    func jobs() async throws -> [JobRecord]
    func versions(job: String) async throws -> [VersionRecord]
    /// A job's history, oldest first: all of it, or the newest `limit` entries.
    func history(job: String, limit: Int?) async throws -> [HistoryEntry]
    /// The catalog read in one transaction (see `SnapshotDetail`).
    func snapshot(_ detail: SnapshotDetail) async throws -> CatalogSnapshot
    /// The next offset to read, per partition, for a version.
    func nextOffsets(job: String, version: Int) async throws -> [Int64]

    /// Moves a version from `from` to `to`, with a history entry. `error` is kept for `failed`.
    /// - Throws: `CatalogError.stateConflict` when the version is no longer in `from`.
    func transition(job: String, version: Int, from: VersionState, to: VersionState, reason: String, actor: String, error: String?) async throws
    /// Applies the actions of one lifecycle decision in one transaction (all or nothing).
    func apply(job: String, actions: [CatalogAction], actor: String) async throws
    /// Points the reader view `<table>` at `version`'s table, in one transaction.
    func switchView(job: String, to version: Int) async throws
    /// Drops a version's tables (data, dead letters), offsets and leases.
    func dropVersionTables(job: String, version: Int) async throws

    /// Records a lag sample for a version (the newest `keep` are kept).
    func recordLag(job: String, version: Int, sample: LagSample, keep: Int) async throws
    /// The newest lag samples of a version, oldest first.
    func lagSamples(job: String, version: Int, limit: Int) async throws -> [LagSample]

    /// Records that a host is alive, and what it keeps failing at now (`HostProblems`).
    func heartbeat(owner: String, pid: Int32, startedAt: Int64, problems: [HostProblem]) async throws
    /// Hosts with a heartbeat newer than `withinMs`.
    func liveHosts(withinMs: Int64) async throws -> [String]
    /// Forgets a host (clean shutdown).
    func removeHost(owner: String) async throws

    /// Takes, in order, each lease of `keys` that is free, expired or already `owner`'s, until
    /// `owner` holds `limit` of them; each one taken from another owner gets the next epoch.
    /// - Returns: the leases of `keys` that `owner` holds now.
    func acquireLeases(_ keys: [LeaseKey], owner: String, ttlMs: Int64, limit: Int) async throws -> [Lease]
    /// Extends every lease `owner` still holds (expired or not, as long as nobody took it over).
    func renewLeases(owner: String, ttlMs: Int64) async throws -> [Lease]
    /// Lets go of leases (they expire at once; the next owner gets the next epoch).
    func releaseLeases(_ keys: [LeaseKey], owner: String) async throws
    /// Every lease, expired or not.
    func leases() async throws -> [Lease]
    /// Records why the controller's decisions for `job` fail (nil: they succeed again).
    func noteDecisionError(job: String, error: String?) async throws

    /// Analysis after promotion: the checks of `version`'s `promote.analysis` that do not hold
    /// (or cannot run), over its table, `previous`'s, `lag` and its dead letters.
    func evaluateAnalysis(job: String, version: Int, previous: Int?, lag: [PartitionLag]) async throws -> [String]
    /// Counts one evaluation of the version's bake; `failure` says what failed and what was seen.
    func recordEvaluation(job: String, version: Int, failure: String?, at: Int64) async throws
    /// Records in the version's dead-letter table.
    func deadLetterCount(job: String, version: Int) async throws -> Int64
}

extension CatalogStore {
    public func history(job: String) async throws -> [HistoryEntry] { try await history(job: job, limit: nil) }
    public func snapshot() async throws -> CatalogSnapshot { try await snapshot(.decisions) }
    /// A version bound to no incarnation of its topic.
    public func registerVersion(_ spec: JobSpec, manifest: String, startOffsets: [Int64], actor: String, reason: String) async throws -> VersionRecord {
        try await registerVersion(spec, manifest: manifest, startOffsets: startOffsets, sourceIncarnation: nil, actor: actor, reason: reason)
    }
}

/// The batch commit, as workers use it.
public protocol BatchStore: Sendable {
    /// The next offset to read, per partition, for a version.
    func nextOffsets(job: String, version: Int) async throws -> [Int64]

    /// The next offset to read of one partition of a version (a worker's start: with 10,000
    /// partitions, reading them all per worker is 10^8 rows); nil when it has no such partition.
    func nextOffset(job: String, version: Int, partition: Int) async throws -> Int64?

    /// Executes one batch's plan and stores the next offset, in one transaction. `records`
    /// must start at the stored next offset (else `StaleOffsetError`, nothing written). Bad
    /// records follow the job's `onBadRecord`. With a `fence`, the batch commits only if the
    /// partition's lease still has that owner and epoch (else `LeaseLostError`).
    /// - Throws: `JobFailure` for the job's SQL or output, or a bad record under `fail`; store
    ///   errors otherwise (their `storeClass` says whether to retry).
    func commit(_ plan: BatchPlan, spec: JobSpec, partition: Int, records: LogRecords, fence: Lease?) async throws -> BatchResult

    /// Moves a partition's stored next offset from `from` past a recorded gap of the log to `to`
    /// (`source.allowGaps`), checked like a batch's start, the skip recorded in the version's
    /// history with `reason`. - Throws: `StaleOffsetError`, `VersionStoppedError`, `LeaseLostError`.
    func skipGap(spec: JobSpec, partition: Int, from: Int64, to: Int64, reason: String, fence: Lease?) async throws
}

/// Read-only queries (`kappactl query`, diffs, the HTTP API's rows).
public protocol QueryStore: Sendable {
    func query(_ sql: String) async throws -> QueryResult
}

/// The store: one catalog (`SQLCatalog`) over one database's backend. Catalog statements and
/// batch commits run in order on the store's serial lane of the blocking executor (it alone uses
/// the writer connection); read queries on connections of their own from the backend's pool.
public final class Store: CatalogStore, BatchStore, QueryStore {
    public let displayName: String
    private let catalog: SQLCatalog
    private let writer: BlockingExecutor.Lane
    /// Until when (ms) no job SQL starts on the writer: a pause after a statement gave way, in
    /// which other processes waiting for the database's lock (their busy handlers poll every few
    /// to 100 ms) can take it; this process's other writes go on.
    private let jobSQLPausedUntil = Mutex<Int64>(0)
    private let readers: any ReadPool
    private let writerLocksDatabase: Bool
    /// Read queries: at most four at once per store, each on a connection of its own.
    private let queries: BlockingExecutor.Lane

    init(backend: any StoreBackend) throws {
        let catalog = SQLCatalog(backend: backend)
        try catalog.migrate()
        displayName = backend.displayName
        readers = backend.readers
        writerLocksDatabase = backend.writerLocksDatabase
        self.catalog = catalog
        writer = BlockingExecutor.shared.lane("kappa.store \(backend.displayName)")
        queries = BlockingExecutor.shared.lane("kappa.queries", width: 4)
    }

    /// Runs `body` on the store's lane: one at a time, in order, on the blocking executor.
    private func write<T: Sendable>(_ body: @escaping @Sendable (SQLCatalog) throws -> T) async throws -> T {
        let catalog = self.catalog
        return try await writer.run { try body(catalog) }
    }

    /// A hook called at named points inside batch transactions; tests use it to fail a commit
    /// half-way. Never set in production.
    func setFaultHook(_ hook: (@Sendable (String) throws -> Void)?) async {
        _ = try? await write { $0.faultHook = hook }
    }

    public func registerVersion(_ spec: JobSpec, manifest: String, startOffsets: [Int64], sourceIncarnation: String?, actor: String, reason: String) async throws -> VersionRecord {
        try await write { try $0.register(spec, manifest: manifest, startOffsets: startOffsets, sourceIncarnation: sourceIncarnation, actor: actor, reason: reason) }
    }

    public func jobs() async throws -> [JobRecord] { try await write { try $0.jobs($0.connection()) } }
    public func versions(job: String) async throws -> [VersionRecord] { try await write { try $0.versions($0.connection(), job: job) } }
    public func history(job: String, limit: Int?) async throws -> [HistoryEntry] {
        try await write { try $0.history($0.connection(), job: job, limit: limit) }
    }
    public func snapshot(_ detail: SnapshotDetail) async throws -> CatalogSnapshot { try await write { try $0.snapshot(detail) } }
    public func nextOffsets(job: String, version: Int) async throws -> [Int64] {
        try await write { try $0.nextOffsets($0.connection(), job: job, version: version) }
    }
    public func nextOffset(job: String, version: Int, partition: Int) async throws -> Int64? {
        try await write { try $0.nextOffset($0.connection(), job: job, version: version, partition: partition) }
    }

    public func transition(job: String, version: Int, from: VersionState, to: VersionState, reason: String, actor: String, error: String?) async throws {
        try await write { catalog in
            try catalog.transaction("transition \(job) v\(version)") { c in
                try catalog.transition(c, job: job, version: version, from: from, to: to, reason: reason, actor: actor, error: error)
            }
        }
    }

    public func apply(job: String, actions: [CatalogAction], actor: String) async throws {
        try await write { try $0.apply(job: job, actions: actions, actor: actor) }
    }

    public func switchView(job: String, to version: Int) async throws {
        try await write { catalog in try catalog.transaction("switch view") { try catalog.pointView($0, job: job, to: version) } }
    }

    public func dropVersionTables(job: String, version: Int) async throws {
        try await write { catalog in try catalog.transaction("drop version") { try catalog.dropVersion($0, job: job, version: version) } }
    }

    public func recordLag(job: String, version: Int, sample: LagSample, keep: Int) async throws {
        try await write { try $0.recordLag(job: job, version: version, sample: sample, keep: keep) }
    }

    public func evaluateAnalysis(job: String, version: Int, previous: Int?, lag: [PartitionLag]) async throws -> [String] {
        try await write { try $0.evaluateAnalysis(job: job, version: version, previous: previous, lag: lag) }
    }

    public func recordEvaluation(job: String, version: Int, failure: String?, at: Int64) async throws {
        try await write { try $0.recordEvaluation(job: job, version: version, failure: failure, at: at) }
    }

    public func deadLetterCount(job: String, version: Int) async throws -> Int64 {
        try await write { try $0.deadLetterCount(job: job, version: version) }
    }

    public func lagSamples(job: String, version: Int, limit: Int) async throws -> [LagSample] {
        try await write { try $0.lagSamples($0.connection(), job: job, version: version, limit: limit) }
    }

    public func heartbeat(owner: String, pid: Int32, startedAt: Int64, problems: [HostProblem] = []) async throws {
        try await write { try $0.heartbeat(owner: owner, pid: pid, startedAt: startedAt, problems: problems) }
    }

    public func liveHosts(withinMs: Int64) async throws -> [String] { try await write { try $0.liveHosts($0.connection(), withinMs: withinMs) } }
    public func removeHost(owner: String) async throws { try await write { try $0.removeHost(owner: owner) } }

    public func acquireLeases(_ keys: [LeaseKey], owner: String, ttlMs: Int64, limit: Int) async throws -> [Lease] {
        try await write { try $0.acquireLeases(keys, owner: owner, ttlMs: ttlMs, limit: limit) }
    }

    public func renewLeases(owner: String, ttlMs: Int64) async throws -> [Lease] {
        try await write { try $0.renewLeases(owner: owner, ttlMs: ttlMs) }
    }

    public func releaseLeases(_ keys: [LeaseKey], owner: String) async throws {
        try await write { try $0.releaseLeases(keys, owner: owner) }
    }

    public func leases() async throws -> [Lease] { try await write { try $0.allLeases() } }

    public func noteDecisionError(job: String, error: String?) async throws {
        try await write { try $0.noteDecisionError(job: job, error: error) }
    }

    public func skipGap(spec: JobSpec, partition: Int, from: Int64, to: Int64, reason: String, fence: Lease?) async throws {
        try await write { try $0.skipGap(spec: spec, partition: partition, from: from, to: to, reason: reason, actor: "jobhost", fence: fence) }
    }

    /// A SQL plan runs under `transform.timeout` (`JobTimeLimit`): when its statement gives the
    /// writer to work waiting for it, the batch is tried again behind that work with half its
    /// records (the rest are the next batch's), so that other jobs, heartbeats, leases and
    /// catalog reads go on while a slow or runaway job runs; its budget counts every attempt.
    public func commit(_ plan: BatchPlan, spec: JobSpec, partition: Int, records: LogRecords, fence: Lease?) async throws -> BatchResult {
        guard case .sql = plan else {
            let cancelled = CancelFlag()
            return try await withTaskCancellationHandler {
                try await write { catalog in
                    if cancelled.isSet { throw CancellationError() }  // cancelled while queued: not started
                    return try catalog.commit(plan, spec: spec, partition: partition, records: records, fence: fence)
                }
            } onCancel: {
                cancelled.set()
            }
        }
        let writer = self.writer, writerLocksDatabase = self.writerLocksDatabase
        var batch = records, spentMs: Int64 = 0, singleRecordTries = 0
        while true {
            let pause = jobSQLPausedUntil.withLock { $0 } - currentTimeMillis()
            if pause > 0 { try await Task.sleep(for: .milliseconds(pause)) }
            // One record cannot be tried smaller: each time it gives way it may run twice as
            // long before the next (up to 4 s), so that a slow record ends while a runaway one
            // still lets other work in between until its budget is spent.
            let yieldAfterMs: Int64 = batch.count > 1 ? 250 : 250 << min(singleRecordTries, 4)
            if batch.count == 1 { singleRecordTries += 1 }
            let limit = JobTimeLimit(timeoutMs: spec.timeoutMs, spentMs: spentMs, yieldAfterMs: yieldAfterMs,
                                     unaskedAfterMs: writerLocksDatabase ? max(1_000, yieldAfterMs) : nil,
                                     othersWaiting: { writer.queued > 0 })
            do {
                let attempt = batch
                return try await withTaskCancellationHandler {
                    try await write { [self] catalog in
                        // Cancelled while queued (JobHost stopping with thousands of workers
                        // waiting for the writer): not started, nothing written.
                        if limit.isCancelled { throw CancellationError() }
                        // Queued before a pause began: it waits for the pause's end, outside.
                        if jobSQLPausedUntil.withLock({ $0 }) > currentTimeMillis() { throw JobSQLYield.paused }
                        return try catalog.commit(plan, spec: spec, partition: partition, records: attempt, fence: fence, limit: limit)
                    }
                } onCancel: {
                    limit.cancel()
                }
            } catch JobSQLYield.paused {
                continue
            } catch is JobSQLYield {
                spentMs = limit.spentMs
                if batch.count > 1 { batch = batch.firstRecords(batch.count / 2) }
                let until = currentTimeMillis() + 150
                jobSQLPausedUntil.withLock { paused in paused = max(paused, until) }
            }
        }
    }

    public func query(_ sql: String) async throws -> QueryResult {
        let readers = self.readers
        return try await queries.run { try readers.query(sql) }
    }
}

/// What one batch did.
public struct BatchResult: Sendable, Equatable {
    public var partition: Int
    public var records: Int
    public var deadLettered: Int
    public var nextOffset: Int64
}

/// Rows from a query, with column names.
public struct QueryResult: Sendable, Equatable {
    public var columns: [String]
    public var rows: [[SQLValue]]

    /// `{"columns": [...], "rows": [{column: value, …}, …]}`, as `kappactl query --output json`
    /// prints it and the HTTP API serves it.
    public var json: String {
        let objects = rows.map { row in "{" + zip(columns, row).map { "\(JSONScanner.quote($0)):\($1.json)" }.joined(separator: ",") + "}" }
        return "{\"columns\":[" + columns.map(JSONScanner.quote).joined(separator: ",") + "],\"rows\":[" + objects.joined(separator: ",") + "]}"
    }
}

/// A batch that does not start where the version's stored offset is: another worker committed
/// first. Nothing was written; read the offsets again.
public struct StaleOffsetError: Error, Sendable, CustomStringConvertible {
    public var partition: Int
    public var stored: Int64
    public var batchStart: Int64
    public var description: String { "partition \(partition): stored offset is \(stored), the batch starts at \(batchStart)" }
}

/// The version is no longer running (retired or failed meanwhile): its workers stop.
public struct VersionStoppedError: Error, Sendable, CustomStringConvertible {
    public var job: String
    public var version: Int
    public var state: String
    public var description: String { "job \(job) version \(version) is \(state)" }
}

/// Set when a task is cancelled, read by its work queued on a lane.
private final class CancelFlag: Sendable {
    private let flag = Mutex(false)
    var isSet: Bool { flag.withLock { $0 } }
    func set() { flag.withLock { $0 = true } }
}
