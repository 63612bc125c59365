/// The catalog, written once for every database: jobs, versions, offsets, history, lag samples,
/// hosts, leases, the schema and its migrations, the view switch and the batch commit. Each
/// catalog table's statements are here and only here; a database supplies a connection, a
/// dialect and its sandbox (`StoreBackend`).
///
/// Used only on its store's lane, one call at a time, hence `@unchecked Sendable`.
final class SQLCatalog: @unchecked Sendable {
    let backend: any StoreBackend
    var d: any SQLDialect { backend.dialect }
    /// Parsed manifests by version: a stored manifest never changes, so it is parsed once.
    private var specs: [VersionID: (manifest: String, spec: JobSpec)] = [:]
    /// Tests fail a commit half-way with this. Never set in production.
    var faultHook: (@Sendable (String) throws -> Void)?

    init(backend: any StoreBackend) {
        self.backend = backend
    }

    func p(_ n: Int) -> String { d.placeholder(n) }
    func t(_ name: String) -> String { d.table(name) }

    /// Runs `body` in a transaction on the writer connection; on failure the backend forgets
    /// session state the transaction made.
    func transaction<T>(_ name: String, _ body: (any SQLConnection) throws -> T) throws -> T {
        let c = try backend.connection()
        do {
            return try c.transaction(name) { try body(c) }
        } catch {
            backend.transactionFailed()
            throw error
        }
    }

    /// Runs `body` in a read-only transaction on the writer connection (one consistent reading).
    func readTransaction<T>(_ name: String, _ body: (any SQLConnection) throws -> T) throws -> T {
        let c = try backend.connection()
        return try c.readTransaction(name) { try body(c) }
    }

    /// One statement outside a transaction (reads, single-row writes).
    func connection() throws -> any SQLConnection { try backend.connection() }

    // MARK: Schema

    /// The catalog's tables, written once; `{bigint}`, `{blob}`, `{serial}` and `{t:NAME}` are
    /// filled in by the dialect. Each release appends migrations and never edits one that shipped.
    static let migrations: [String] = [
        """
        CREATE TABLE {t:kappa_jobs} (name TEXT PRIMARY KEY, view TEXT NOT NULL UNIQUE, topic TEXT NOT NULL, created_at {bigint} NOT NULL);
        CREATE TABLE {t:kappa_versions} (
            job TEXT NOT NULL REFERENCES {t:kappa_jobs}(name), version INTEGER NOT NULL, state TEXT NOT NULL,
            manifest TEXT NOT NULL, created_at {bigint} NOT NULL, updated_at {bigint} NOT NULL, error TEXT,
            PRIMARY KEY (job, version));
        CREATE TABLE {t:kappa_offsets} (
            job TEXT NOT NULL, version INTEGER NOT NULL, partition INTEGER NOT NULL, next_offset {bigint} NOT NULL,
            PRIMARY KEY (job, version, partition), FOREIGN KEY (job, version) REFERENCES {t:kappa_versions}(job, version));
        CREATE TABLE {t:kappa_leases} (
            job TEXT NOT NULL, version INTEGER NOT NULL, partition INTEGER NOT NULL, owner TEXT,
            epoch {bigint} NOT NULL DEFAULT 0, expires_at {bigint} NOT NULL DEFAULT 0, PRIMARY KEY (job, version, partition));
        CREATE TABLE {t:kappa_history} (
            id {serial}, job TEXT NOT NULL, version INTEGER NOT NULL, at {bigint} NOT NULL,
            from_state TEXT, to_state TEXT NOT NULL, reason TEXT NOT NULL, actor TEXT NOT NULL);
        CREATE INDEX kappa_history_job ON {t:kappa_history}(job, id);
        """,
        // 2: lag samples written by the controller (for status, rates and ETAs in any process)
        // and the heartbeat of JobHosts.
        """
        CREATE TABLE {t:kappa_lag_samples} (
            job TEXT NOT NULL, version INTEGER NOT NULL, at {bigint} NOT NULL, ends TEXT NOT NULL, nexts TEXT NOT NULL,
            PRIMARY KEY (job, version, at));
        CREATE TABLE {t:kappa_hosts} (
            owner TEXT PRIMARY KEY, pid INTEGER NOT NULL, started_at {bigint} NOT NULL, heartbeat_at {bigint} NOT NULL);
        """,
        // 3: why the controller's decisions for a job fail, for status in any process.
        """
        ALTER TABLE {t:kappa_jobs} ADD COLUMN decision_error TEXT;
        """,
        // 4: where each partition's replay started, so that a version's dead letters are
        // counted against the records it read (`deadLetter.maxFraction`).
        """
        ALTER TABLE {t:kappa_offsets} ADD COLUMN start_offset {bigint} NOT NULL DEFAULT 0;
        """,
        // 5: the incarnation of the topic a version was deployed over, so that a topic deleted
        // and created again under its name fails the version instead of feeding it.
        """
        ALTER TABLE {t:kappa_versions} ADD COLUMN source_incarnation TEXT;
        """,
        // 6: analysis after promotion: each version's latest bake, carried on by any controller.
        """
        CREATE TABLE {t:kappa_bakes} (
            job TEXT NOT NULL, version INTEGER NOT NULL, previous INTEGER, started_at {bigint} NOT NULL,
            evaluations INTEGER NOT NULL, failures INTEGER NOT NULL, last_at {bigint}, last_failure TEXT,
            outcome TEXT, ended_at {bigint}, PRIMARY KEY (job, version));
        """,
        // 7: what each JobHost keeps failing at and retries (`HostProblem`s as JSON), written
        // with its heartbeat, for status in any process.
        """
        ALTER TABLE {t:kappa_hosts} ADD COLUMN problems TEXT;
        """,
    ]

    static var schemaVersion: Int { migrations.count }

    func migrationSQL(_ n: Int) -> String {
        var sql = Self.migrations[n]
            .replacingOccurrences(of: "{bigint}", with: d.bigint)
            .replacingOccurrences(of: "{blob}", with: d.blob)
            .replacingOccurrences(of: "{serial}", with: d.serialKey)
        while let open = sql.range(of: "{t:"), let close = sql[open.upperBound...].firstIndex(of: "}") {
            sql.replaceSubrange(open.lowerBound...close, with: t(String(sql[open.upperBound..<close])))
        }
        return sql
    }

    /// Applies the migrations this catalog lacks, each in its own transaction, the version read
    /// again under the lock so that processes opening a new catalog at once never apply one twice.
    /// - Throws: `CatalogError.newerSchema` for a catalog written by a newer Kappa.
    func migrate() throws {
        // Already current (every open but the first): no write lock taken.
        if let applied = try? backend.schemaVersion(try backend.connection()), applied == Self.schemaVersion { return }
        while true {
            let done = try transaction("catalog: migration") { c -> Bool in
                try backend.lockSchema(c)
                let applied = try backend.schemaVersion(c)
                if applied > Self.schemaVersion {
                    throw CatalogError(.newerSchema, "\(backend.displayName) holds a catalog of schema \(applied), written by a newer Kappa (this release knows up to \(Self.schemaVersion)); upgrade kappactl and JobHost")
                }
                guard applied < Self.schemaVersion else { return true }
                try c.execute(migrationSQL(applied), name: "catalog: migration \(applied + 1)")
                try backend.setSchemaVersion(c, applied + 1)
                return false
            }
            if done { return }
        }
    }

    // MARK: Reading rows

    static let versionColumns = ["job", "version", "state", "manifest", "created_at", "updated_at", "error", "source_incarnation"]
    static let historyColumns = ["id", "job", "version", "at", "from_state", "to_state", "reason", "actor"]
    static let leaseColumns = ["job", "version", "partition", "owner", "epoch", "expires_at"]

    func version(_ values: [SQLValue]) throws -> VersionRecord {
        var row = CatalogRow(values, table: "kappa_versions", columns: Self.versionColumns)
        let job = try row.text(0), number = Int(try row.int(1))
        row.context = "job \(job) v\(number)"
        let manifest = try row.text(3)
        let id = VersionID(job: job, version: number)
        let spec: JobSpec
        if let cached = specs[id], cached.manifest == manifest {
            spec = cached.spec
        } else {
            do {
                spec = try ManifestParser.parse(manifest)
            } catch {
                throw CatalogError(.damagedCatalog, "catalog table kappa_versions, column manifest (job \(job) v\(number)): the stored manifest no longer parses: \(error)")
            }
            specs[id] = (manifest, spec)
        }
        return VersionRecord(job: job, version: number, state: try row.state(2), manifest: manifest, spec: spec,
                             createdAt: try row.int(4), updatedAt: try row.int(5), error: try row.optionalText(6),
                             sourceIncarnation: try row.optionalText(7))
    }

    func history(_ values: [SQLValue]) throws -> HistoryEntry {
        var row = CatalogRow(values, table: "kappa_history", columns: Self.historyColumns)
        row.context = "entry \(values.first?.display ?? "?")"
        return HistoryEntry(id: try row.int(0), job: try row.text(1), version: Int(try row.int(2)), at: try row.int(3),
                            from: try row.optionalState(4), to: try row.state(5), reason: try row.text(6), actor: try row.text(7))
    }

    func lease(_ values: [SQLValue]) throws -> Lease {
        let row = CatalogRow(values, table: "kappa_leases", columns: Self.leaseColumns)
        return Lease(key: LeaseKey(job: try row.text(0), version: Int(try row.int(1)), partition: Int(try row.int(2))),
                     owner: try row.text(3), epoch: try row.int(4), expiresAt: try row.int(5))
    }

    // MARK: Jobs and versions

    func jobs(_ c: any SQLConnection) throws -> [JobRecord] {
        try c.query("SELECT name, view, topic, created_at, decision_error FROM \(t("kappa_jobs")) ORDER BY name", [], name: "list jobs").map { values in
            let row = CatalogRow(values, table: "kappa_jobs", columns: ["name", "view", "topic", "created_at", "decision_error"], context: "job \(values.first?.display ?? "?")")
            return JobRecord(name: try row.text(0), view: try row.text(1), topic: try row.text(2), createdAt: try row.int(3),
                             decisionError: try row.optionalText(4))
        }
    }

    /// Records why the controller's decisions for `job` fail (nil: they succeed again).
    func noteDecisionError(job: String, error: String?) throws {
        _ = try transaction("note decision error") { c in
            try c.run("UPDATE \(t("kappa_jobs")) SET decision_error = \(p(1)) WHERE name = \(p(2))",
                      [error.map(SQLValue.text) ?? .null, .text(job)], name: "note decision error")
        }
    }

    func view(_ c: any SQLConnection, of job: String) throws -> String? {
        try c.query("SELECT view FROM \(t("kappa_jobs")) WHERE name = \(p(1))", [.text(job)], name: "read job").first.map {
            try CatalogRow($0, table: "kappa_jobs", columns: ["view"], context: "job \(job)").text(0)
        }
    }

    /// Versions of one job, or of every job when `job` is nil, by job then version.
    func versions(_ c: any SQLConnection, job: String?) throws -> [VersionRecord] {
        let columns = Self.versionColumns.joined(separator: ", ")
        let rows = job == nil
            ? try c.query("SELECT \(columns) FROM \(t("kappa_versions")) ORDER BY job, version", [], name: "list versions")
            : try c.query("SELECT \(columns) FROM \(t("kappa_versions")) WHERE job = \(p(1)) ORDER BY version", [.text(job!)], name: "list versions")
        return try rows.map(version)
    }

    /// History entries of a job, oldest first: all, or the newest `limit`.
    func history(_ c: any SQLConnection, job: String, limit: Int?) throws -> [HistoryEntry] {
        let columns = Self.historyColumns.joined(separator: ", ")
        let rows = try c.query("SELECT \(columns) FROM \(t("kappa_history")) WHERE job = \(p(1)) ORDER BY id DESC LIMIT \(p(2))",
                               [.text(job), .integer(Int64(limit ?? Int(Int32.max)))], name: "read history")
        return try rows.reversed().map(history)
    }

    func appendHistory(_ c: any SQLConnection, job: String, version: Int, from: VersionState?, to: VersionState, reason: String, actor: String, at: Int64) throws {
        try c.run("INSERT INTO \(t("kappa_history")) (job, version, at, from_state, to_state, reason, actor) VALUES (\(d.placeholders(7)))",
                  [.text(job), .integer(Int64(version)), .integer(at), from.map { .text($0.rawValue) } ?? .null, .text(to.rawValue), .text(reason), .text(actor)],
                  name: "append history")
    }

    /// Moves a version from `from` to `to` with a history entry; the caller holds a transaction.
    func transition(_ c: any SQLConnection, job: String, version: Int, from: VersionState, to: VersionState, reason: String, actor: String, error: String?) throws {
        let now = currentTimeMillis()
        let changed = try c.run("""
            UPDATE \(t("kappa_versions")) SET state = \(p(1)), updated_at = \(p(2)), error = coalesce(\(p(3)), error)
            WHERE job = \(p(4)) AND version = \(p(5)) AND state = \(p(6))
            """, [.text(to.rawValue), .integer(now), error.map(SQLValue.text) ?? .null, .text(job), .integer(Int64(version)), .text(from.rawValue)],
            name: "transition")
        guard changed == 1 else {
            let current = try c.query("SELECT state FROM \(t("kappa_versions")) WHERE job = \(p(1)) AND version = \(p(2))",
                                      [.text(job), .integer(Int64(version))], name: "read state")
            guard let row = current.first else { throw CatalogError.noVersion(job, version) }
            throw CatalogError.stateMoved(job, version, is: try CatalogRow(row, table: "kappa_versions", columns: ["state"]).text(0), not: from)
        }
        try appendHistory(c, job: job, version: version, from: from, to: to, reason: reason, actor: actor, at: now)
        if from == .serving {
            // Switched away from while baking: that bake is over (a later promotion starts anew).
            try c.run("UPDATE \(t("kappa_bakes")) SET outcome = 'abandoned', ended_at = \(p(1)) WHERE job = \(p(2)) AND version = \(p(3)) AND outcome IS NULL",
                      [.integer(now), .text(job), .integer(Int64(version))], name: "abandon bake")
        }
    }

    // MARK: Offsets

    /// The next offset per partition of a version, in partition order.
    func nextOffsets(_ c: any SQLConnection, job: String, version: Int) throws -> [Int64] {
        try c.query("SELECT next_offset FROM \(t("kappa_offsets")) WHERE job = \(p(1)) AND version = \(p(2)) ORDER BY partition",
                    [.text(job), .integer(Int64(version))], name: "read offsets").map {
            try CatalogRow($0, table: "kappa_offsets", columns: ["next_offset"], context: "job \(job) v\(version)").int(0)
        }
    }

    /// The next offset of one partition of a version; nil when it has none.
    func nextOffset(_ c: any SQLConnection, job: String, version: Int, partition: Int) throws -> Int64? {
        try c.query("SELECT next_offset FROM \(t("kappa_offsets")) WHERE job = \(p(1)) AND version = \(p(2)) AND partition = \(p(3))",
                    [.text(job), .integer(Int64(version)), .integer(Int64(partition))], name: "read offset").first.map {
            try CatalogRow($0, table: "kappa_offsets", columns: ["next_offset"], context: "job \(job) v\(version) partition \(partition)").int(0)
        }
    }

    /// Every version's next offsets, by version, each in partition order.
    func allOffsets(_ c: any SQLConnection) throws -> [VersionID: [Int64]] {
        var out: [VersionID: [Int64]] = [:]
        for values in try c.query("SELECT job, version, partition, next_offset FROM \(t("kappa_offsets")) ORDER BY job, version, partition", [], name: "read offsets") {
            let row = CatalogRow(values, table: "kappa_offsets", columns: ["job", "version", "partition", "next_offset"])
            let id = VersionID(job: try row.text(0), version: Int(try row.int(1)))
            let partition = try row.int(2)
            guard partition == Int64(out[id, default: []].count) else {
                throw CatalogError(.damagedCatalog, "catalog table kappa_offsets (job \(id.job) v\(id.version)): partition \(partition) is out of sequence (expected \(out[id, default: []].count))")
            }
            out[id, default: []].append(try row.int(3))
        }
        return out
    }

    /// A consistent reading of the catalog in one transaction: every job, version and offset,
    /// and for `.status` also the newest lag samples of each version, hosts, leases and how
    /// often each job's versions entered `serving` and `failed`.
    func snapshot(_ detail: SnapshotDetail) throws -> CatalogSnapshot {
        try readTransaction("catalog snapshot") { c in
            let now = currentTimeMillis()
            var snapshot = CatalogSnapshot(jobs: try jobs(c), versions: Dictionary(grouping: try versions(c, job: nil), by: \.job),
                                           offsets: try allOffsets(c), at: now)
            for bake in try bakes(c) { snapshot.bakes[VersionID(job: bake.job, version: bake.version)] = bake }
            guard case .status(let samples, let hostsWithinMs) = detail else { return snapshot }
            // Per version, by its primary key: the newest few rows only (each holds a number per partition).
            for (job, versions) in snapshot.versions {
                for v in versions where v.state.isRunning || v.state == .pending {
                    snapshot.lagSamples[VersionID(job: job, version: v.version)] = try lagSamples(c, job: job, version: v.version, limit: samples)
                }
            }
            snapshot.hosts = try liveHosts(c, withinMs: hostsWithinMs)
            snapshot.hostProblems = try hostProblems(c, withinMs: hostsWithinMs)
            if case .integer(let at)? = try c.query("SELECT max(heartbeat_at) FROM \(t("kappa_hosts"))", [], name: "last heartbeat").first?.first {
                snapshot.lastHeartbeat = at
            }
            snapshot.leases = try leases(c, where: "owner IS NOT NULL", [])
            // A job whose serving version failed: its view still reads that version's table.
            for job in snapshot.jobs where !snapshot.versions(of: job.name).contains(where: { $0.state == .serving }) {
                for v in snapshot.versions(of: job.name).reversed() where v.state == .failed {
                    if try backend.viewReads(c, view: job.view, table: v.spec.versionTable) { snapshot.viewReadsFailed[job.name] = v.version; break }
                }
            }
            for values in try c.query("SELECT job, to_state, count(*) FROM \(t("kappa_history")) WHERE to_state IN ('serving', 'failed') GROUP BY job, to_state",
                                      [], name: "count transitions") {
                let row = CatalogRow(values, table: "kappa_history", columns: ["job", "to_state", "count(*)"])
                snapshot.entered[try row.text(0), default: [:]][try row.state(1)] = Int(try row.int(2))
            }
            return snapshot
        }
    }
}

/// How much a snapshot reads.
public enum SnapshotDetail: Sendable {
    /// Jobs, versions, offsets: what the controller decides from.
    case decisions
    /// Also the newest `samples` lag samples per version, hosts alive within `hostsWithinMs`,
    /// leases and transition counts: what a status report and a metrics scrape show.
    case status(samples: Int, hostsWithinMs: Int64)
}

/// One version of one job, as a key.
public struct VersionID: Hashable, Sendable {
    public var job: String
    public var version: Int
    public init(job: String, version: Int) {
        self.job = job
        self.version = version
    }
}

/// The catalog as one transaction saw it: what the controller decides from in a tick, and what
/// a status report or a `/metrics` scrape shows.
public struct CatalogSnapshot: Sendable {
    public var jobs: [JobRecord]
    /// By job, each in version order.
    public var versions: [String: [VersionRecord]]
    /// By version, each in partition order.
    public var offsets: [VersionID: [Int64]]
    /// When it was read (milliseconds since the epoch).
    public var at: Int64
    /// With `.status`: the newest lag samples of each version (oldest first), live hosts,
    /// leases, and per job how many times a version entered `serving` and `failed`.
    public var lagSamples: [VersionID: [LagSample]] = [:]
    public var hosts: [String] = []
    /// With `.status`: what the live hosts keep failing at (by host, then subject).
    public var hostProblems: [HostProblem] = []
    /// With `.status`: the newest heartbeat of any JobHost still listed (one that stopped
    /// cleanly is not), live or not.
    public var lastHeartbeat: Int64?
    public var leases: [Lease] = []
    public var entered: [String: [VersionState: Int]] = [:]
    /// Each version's latest bake (analysis after promotion).
    public var bakes: [VersionID: BakeRecord] = [:]
    /// With `.status`: for a job none of whose versions serves, the failed version whose table
    /// its reader view still reads (it served when it failed).
    public var viewReadsFailed: [String: Int] = [:]

    public func versions(of job: String) -> [VersionRecord] { versions[job] ?? [] }

    /// The bake of the job's serving version, while it lasts.
    public func activeBake(of job: String) -> BakeRecord? {
        guard let serving = versions(of: job).first(where: { $0.state == .serving }),
              let bake = bakes[VersionID(job: job, version: serving.version)], bake.outcome == nil else { return nil }
        return bake
    }

    /// The snapshot after a decision's actions were applied (so that later decisions in the same
    /// tick see them without reading the catalog again).
    public mutating func apply(_ actions: [CatalogAction], job: String, at now: Int64) {
        for action in actions {
            switch action {
            case .transition(let version, _, let to, _, let error):
                if let i = versions[job]?.firstIndex(where: { $0.version == version }) {
                    let id = VersionID(job: job, version: version)
                    if versions[job]![i].state == .serving, bakes[id]?.outcome == nil, bakes[id] != nil {
                        bakes[id]?.outcome = "abandoned"
                        bakes[id]?.endedAt = now
                    }
                    versions[job]![i].state = to
                    versions[job]![i].updatedAt = now
                    if let error { versions[job]![i].error = error }
                }
            case .dropTables(let version):
                offsets[VersionID(job: job, version: version)] = nil
            case .startBake(let version, let previous):
                bakes[VersionID(job: job, version: version)] = BakeRecord(job: job, version: version, previous: previous, startedAt: now,
                                                                         evaluations: 0, failures: 0)
            case .endBake(let version, let outcome, _):
                bakes[VersionID(job: job, version: version)]?.outcome = outcome
                bakes[VersionID(job: job, version: version)]?.endedAt = now
            case .pointView, .checkPromotion:
                break
            }
        }
    }
}
