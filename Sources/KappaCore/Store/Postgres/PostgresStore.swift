#if Postgres
/// The `TableStore` on PostgreSQL (trait `Postgres`): catalog, version tables and reader views in
/// one schema; every switch is one transaction with transactional DDL; job SQL runs under a role
/// per version. One connection for writes, owned by a serial queue; queries use their own.
public final class PostgresStore: TableStore {
    /// The URL without its password.
    public let displayURL: String
    private let url: String
    private let schema: String
    private let writer: StoreQueue<PostgresCatalog>

    /// Connects and migrates the catalog in `schema`.
    /// - Throws: `PostgresError` (URL shown without password), `CatalogError.newerSchema`.
    public init(url: String, schema: String = "kappa") throws {
        self.url = url
        self.schema = schema
        displayURL = Redaction.url(url)
        writer = StoreQueue(label: "kappa.store.postgres", try PostgresCatalog(url: url, schema: schema))
    }

    public func registerVersion(_ spec: JobSpec, manifest: String, startOffsets: [Int64], actor: String, reason: String) async throws -> VersionRecord {
        try await writer.run { try $0.register(spec, manifest: manifest, startOffsets: startOffsets, actor: actor, reason: reason) }
    }

    public func jobs() async throws -> [JobRecord] { try await writer.run { try $0.jobs() } }
    public func versions(job: String) async throws -> [VersionRecord] { try await writer.run { try $0.versions(job: job) } }
    public func history(job: String) async throws -> [HistoryEntry] { try await writer.run { try $0.history(job: job) } }

    public func transition(job: String, version: Int, from: VersionState, to: VersionState, reason: String, actor: String, error: String?) async throws {
        try await writer.run { c in
            try c.db.transaction("transition") { try c.transition(job: job, version: version, from: from, to: to, reason: reason, actor: actor, error: error) }
        }
    }

    public func nextOffsets(job: String, version: Int) async throws -> [Int64] {
        try await writer.run { try $0.nextOffsets(job: job, version: version) }
    }

    public func applyBatch(_ job: any StreamJob, partition: Int, records: LogRecords, fence: Lease?) async throws -> BatchResult {
        try await writer.run { try $0.applyBatch(job, partition: partition, records: records, fence: fence) }
    }

    public func switchView(job: String, to version: Int) async throws {
        try await writer.run { c in try c.db.transaction("switch view") { try c.pointView(job: job, to: version) } }
    }

    public func dropVersionTables(job: String, version: Int) async throws {
        try await writer.run { c in try c.db.transaction("drop version") { try c.dropVersion(job: job, version: version) } }
    }

    /// A read-only transaction on a connection of its own, with Kappa's schema first in the path.
    public func query(_ sql: String) async throws -> QueryResult {
        let url = self.url, schema = self.schema
        return try await onOwnThread {
            let db = try PGConnection(url: url)
            return try inTransaction("query", begin: "BEGIN READ ONLY", execute: { try db.execute($0, name: $1) }) {
                try db.execute("SET LOCAL search_path = \(schema), public", name: "query")
                let result = try db.query(sql, name: "query")
                return QueryResult(columns: result.columns, rows: result.rows)
            }
        }
    }

    public func apply(job: String, actions: [CatalogAction], actor: String) async throws {
        try await writer.run { try $0.apply(job: job, actions: actions, actor: actor) }
    }

    public func recordLag(job: String, version: Int, sample: LagSample, keep: Int) async throws {
        try await writer.run { try $0.recordLag(job: job, version: version, sample: sample, keep: keep) }
    }

    public func lagSamples(job: String, version: Int, limit: Int) async throws -> [LagSample] {
        try await writer.run { try $0.lagSamples(job: job, version: version, limit: limit) }
    }

    public func heartbeat(owner: String, pid: Int32, startedAt: Int64) async throws {
        try await writer.run { try $0.heartbeat(owner: owner, pid: pid, startedAt: startedAt) }
    }

    public func liveHosts(withinMs: Int64) async throws -> [String] { try await writer.run { try $0.liveHosts(withinMs: withinMs) } }
    public func removeHost(owner: String) async throws { try await writer.run { try $0.removeHost(owner: owner) } }

    public func acquireLeases(_ keys: [LeaseKey], owner: String, ttlMs: Int64, limit: Int) async throws -> [Lease] {
        try await writer.run { try $0.acquireLeases(keys, owner: owner, ttlMs: ttlMs, limit: limit) }
    }

    public func renewLeases(owner: String, ttlMs: Int64) async throws -> [Lease] {
        try await writer.run { try $0.renewLeases(owner: owner, ttlMs: ttlMs) }
    }

    public func releaseLeases(_ keys: [LeaseKey], owner: String) async throws {
        try await writer.run { try $0.releaseLeases(keys, owner: owner) }
    }

    public func leases() async throws -> [Lease] { try await writer.run { try $0.leases(where: "owner IS NOT NULL", []) } }
}
#endif
