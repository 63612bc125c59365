/// Where output tables, offsets and the catalog live, in one database so that a switch of the
/// reader view and the versions' states is one transaction.
/// Backends: `SQLiteStore` (default); PostgreSQL with the `Postgres` trait.
public protocol TableStore: Sendable {
    // MARK: Catalog

    /// Registers a version (state `pending`): checks it is above every earlier version of the
    /// job, creates `<table>__v<N>` and its dead-letter table, stores the start offsets, and
    /// compiles the job's SQL under its permissions — all in one transaction, so a refused
    /// version leaves nothing behind.
    /// - Throws: `CatalogError` (`.versionNotAbove`, `.conflictingOutput`, `.invalidJob`).
    func registerVersion(_ spec: JobSpec, manifest: String, startOffsets: [Int64], actor: String, reason: String) async throws -> VersionRecord

    func jobs() async throws -> [JobRecord]
    func versions(job: String) async throws -> [VersionRecord]
    func history(job: String) async throws -> [HistoryEntry]

    /// Moves a version from `from` to `to`, with a history entry. `error` is kept for `failed`.
    /// - Throws: `CatalogError.stateConflict` when the version is no longer in `from`.
    func transition(job: String, version: Int, from: VersionState, to: VersionState, reason: String, actor: String, error: String?) async throws

    // MARK: Data

    /// The next offset to read, per partition, for a version.
    func nextOffsets(job: String, version: Int) async throws -> [Int64]

    /// Applies one batch of one partition and stores the next offset, in one transaction.
    /// `records` must start at the stored next offset (else `StaleOffsetError`, nothing written).
    /// Bad records follow the job's `onBadRecord`.
    /// With a `fence`, the batch commits only if the partition's lease still has that owner and
    /// epoch (checked in the same transaction), else `LeaseLostError` and nothing is written.
    /// - Throws: `JobFailure` for a SQL error or a bad record under `fail`; store errors otherwise.
    func applyBatch(_ job: any StreamJob, partition: Int, records: LogRecords, fence: Lease?) async throws -> BatchResult

    /// Points the reader view `<table>` at `version`'s table, in one transaction.
    func switchView(job: String, to version: Int) async throws

    /// Drops a version's tables (data, dead letters) and its offsets.
    func dropVersionTables(job: String, version: Int) async throws

    /// Runs a read-only query on a connection of its own.
    func query(_ sql: String) async throws -> QueryResult

    // MARK: Lifecycle and observation

    /// Applies the actions of one lifecycle decision in one transaction (all or nothing).
    func apply(job: String, actions: [CatalogAction], actor: String) async throws

    /// Records a lag sample for a version (the newest few hundred are kept).
    func recordLag(job: String, version: Int, sample: LagSample, keep: Int) async throws

    /// The newest lag samples of a version, oldest first.
    func lagSamples(job: String, version: Int, limit: Int) async throws -> [LagSample]

    /// Records that a host is alive.
    func heartbeat(owner: String, pid: Int32, startedAt: Int64) async throws

    /// Hosts with a heartbeat newer than `withinMs`.
    func liveHosts(withinMs: Int64) async throws -> [String]

    /// Forgets a host (clean shutdown).
    func removeHost(owner: String) async throws

    // MARK: Leases (several JobHosts on one catalog)

    /// Takes, in order, each lease of `keys` that is free, expired or already `owner`'s, until
    /// `owner` holds `limit` of them; each one taken from another owner gets the next epoch.
    /// Renews those already held. One transaction per lease.
    /// - Returns: the leases of `keys` that `owner` holds now.
    func acquireLeases(_ keys: [LeaseKey], owner: String, ttlMs: Int64, limit: Int) async throws -> [Lease]

    /// Extends every lease `owner` still holds (expired or not, as long as nobody took it over).
    /// - Returns: the leases `owner` holds now.
    func renewLeases(owner: String, ttlMs: Int64) async throws -> [Lease]

    /// Lets go of leases (they expire at once; the next owner gets the next epoch).
    func releaseLeases(_ keys: [LeaseKey], owner: String) async throws

    /// Every lease, expired or not.
    func leases() async throws -> [Lease]
}

extension TableStore {
    /// A batch without a lease (a single runner: tests, the demo, `kappa-bench`).
    public func applyBatch(_ job: any StreamJob, partition: Int, records: LogRecords) async throws -> BatchResult {
        try await applyBatch(job, partition: partition, records: records, fence: nil)
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
