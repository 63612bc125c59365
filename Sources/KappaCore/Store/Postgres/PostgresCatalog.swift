#if Postgres
/// The catalog on PostgreSQL: jobs, versions, offsets, history, in Kappa's schema, with the same
/// rules and messages as on SQLite. Used by one owner at a time (the PostgreSQL store's queue).
/// (The PostgreSQL `TableStore` builds on this: batches, the view switch, roles for job SQL.)
final class PostgresCatalog: @unchecked Sendable {
    let db: PGConnection
    /// Kappa's schema (validated identifier), for the catalog, version tables and views.
    let schema: String
    /// This session's temporary `batch` table exists, and the roles allowed to read it.
    var batchReady = false
    var grantedRoles: Set<String> = []
    /// Roles are shared by every database of a server: theirs start with the database and schema.
    let rolePrefix: String

    init(url: String, schema: String = "kappa") throws {
        guard ManifestParser.isIdentifier(schema) else {
            throw CatalogError(.notACatalog, "\"\(schema)\" is not a valid schema name")
        }
        db = try PGConnection(url: url)
        self.schema = schema
        let database = try db.query("SELECT current_database()", name: "connect").rows.first?.first?.display ?? ""
        rolePrefix = "kappa_\(database)_\(schema)_".lowercased()
        try PostgresCatalogSchema.migrate(db, schema: schema)
    }

    func table(_ name: String) -> String { "\(schema).\(SQLText.quote(name))" }

    func jobs() throws -> [JobRecord] {
        try db.query("SELECT name, view, topic, created_at FROM \(schema).kappa_jobs ORDER BY name", name: "list jobs").rows.map {
            JobRecord(name: $0[0].string, view: $0[1].string, topic: $0[2].string, createdAt: $0[3].int)
        }
    }

    func versions(job: String) throws -> [VersionRecord] {
        try db.query("SELECT job, version, state, manifest, created_at, updated_at, error FROM \(schema).kappa_versions WHERE job = $1 ORDER BY version",
                     [.text(job)], name: "list versions").rows.map(VersionRecord.init(row:))
    }

    func history(job: String) throws -> [HistoryEntry] {
        try db.query("SELECT id, job, version, at, from_state, to_state, reason, actor FROM \(schema).kappa_history WHERE job = $1 ORDER BY id",
                     [.text(job)], name: "read history").rows.map(HistoryEntry.init(row:))
    }

    func nextOffsets(job: String, version: Int) throws -> [Int64] {
        try db.query("SELECT next_offset FROM \(schema).kappa_offsets WHERE job = $1 AND version = $2 ORDER BY partition",
                     [.text(job), .integer(Int64(version))], name: "read offsets").rows.map { $0[0].int }
    }

    /// Registers a version in one transaction: job row, version row, its tables, offsets, history.
    func register(_ spec: JobSpec, manifest: String, startOffsets: [Int64], actor: String, reason: String) throws -> VersionRecord {
        try sessionTransaction("register \(spec.job) v\(spec.version)") {
            try db.query("SELECT pg_advisory_xact_lock(hashtext($1))", [.text("kappa job \(spec.job)")], name: "lock job")
            let now = currentTimeMillis()
            let view = spec.output.table
            if let row = try db.query("SELECT view FROM \(schema).kappa_jobs WHERE name = $1", [.text(spec.job)], name: "read job").rows.first {
                guard row[0].string == view else { throw CatalogError.conflictingView(job: spec.job, serves: row[0].string, asked: view) }
            } else {
                if let other = try db.query("SELECT name FROM \(schema).kappa_jobs WHERE lower(view) = lower($1)", [.text(view)], name: "find view owner").rows.first {
                    throw CatalogError.viewTaken(view, by: other[0].string)
                }
                if try relationExists(view) {
                    throw CatalogError(.conflictingOutput, "a table or view named \"\(view)\" already exists in schema \(schema); choose another output.table")
                }
                try db.query("INSERT INTO \(schema).kappa_jobs (name, view, topic, created_at) VALUES ($1, $2, $3, $4)",
                             [.text(spec.job), .text(view), .text(spec.source.topic), .integer(now)], name: "insert job")
            }
            let latest = try db.query("SELECT max(version) FROM \(schema).kappa_versions WHERE job = $1", [.text(spec.job)], name: "latest version").rows
            if case .integer(let max)? = latest.first?.first, Int64(spec.version) <= max { throw CatalogError.notAbove(spec, latest: max) }
            for name in [spec.versionTable, spec.deadLetterTable] where try relationExists(name) {
                throw CatalogError(.conflictingOutput, "a table named \"\(name)\" already exists in schema \(schema)")
            }
            try db.query("INSERT INTO \(schema).kappa_versions (job, version, state, manifest, created_at, updated_at) VALUES ($1, $2, 'pending', $3, $4, $4)",
                         [.text(spec.job), .integer(Int64(spec.version)), .text(manifest), .integer(now)], name: "insert version")
            let columns = spec.output.columns.map { "\(SQLText.quote($0.name)) \(Self.postgresType($0.type))" }
            let key = spec.output.primaryKey.map(SQLText.quote).joined(separator: ", ")
            try db.execute("CREATE TABLE \(table(spec.versionTable)) (\(columns.joined(separator: ", ")), PRIMARY KEY (\(key)))", name: "create version table")
            try db.execute("""
                CREATE TABLE \(table(spec.deadLetterTable)) (partition INTEGER NOT NULL, "offset" BIGINT NOT NULL, timestamp BIGINT,
                    key BYTEA, value BYTEA, error TEXT NOT NULL, PRIMARY KEY (partition, "offset"))
                """, name: "create dead-letter table")
            try createRole(spec)
            for (p, offset) in startOffsets.enumerated() {
                try db.query("INSERT INTO \(schema).kappa_offsets (job, version, partition, next_offset) VALUES ($1, $2, $3, $4)",
                             [.text(spec.job), .integer(Int64(spec.version)), .integer(Int64(p)), .integer(offset)], name: "insert offsets")
            }
            if case .sql = spec.transform { try compileCheck(spec) }
            try appendHistory(job: spec.job, version: spec.version, from: nil, to: .pending, reason: reason, actor: actor, at: now)
            return VersionRecord(job: spec.job, version: spec.version, state: .pending, manifest: manifest, spec: spec,
                                 createdAt: now, updatedAt: now, error: nil)
        }
    }

    /// A transaction that may create the session's temporary batch table or grant on it: when it
    /// rolls back, so do they, and the session forgets it had them.
    func sessionTransaction<T>(_ name: String, _ body: () throws -> T) throws -> T {
        do {
            return try db.transaction(name, body)
        } catch {
            batchReady = false
            grantedRoles = []
            throw error
        }
    }

    /// Runs the job's SQL once over an empty batch, under its role, and undoes it: SQL that does
    /// not compile, or touches what it may not, refuses the deploy and leaves nothing behind.
    func compileCheck(_ spec: JobSpec) throws {
        try prepareBatchTable(for: role(spec))
        try db.execute("SAVEPOINT kappa_compile; DELETE FROM pg_temp.batch", name: "compile check")
        defer { try? db.execute("ROLLBACK TO SAVEPOINT kappa_compile; RESET ROLE", name: "compile check") }
        do {
            try db.execute("SET LOCAL ROLE \(SQLText.quote(role(spec))); SET LOCAL search_path = \(schema)", name: "compile check")
            try db.execute(SQLJob(spec: spec).statements, name: "transform.sql")
        } catch let error as PostgresError {
            throw CatalogError(.invalidJob, "transform.sql: \(error.message)")
        }
    }

    /// Moves a version from `from` to `to` with a history entry; the caller holds a transaction.
    func transition(job: String, version: Int, from: VersionState, to: VersionState, reason: String, actor: String, error: String?) throws {
        let now = currentTimeMillis()
        let changed = try db.query("""
            UPDATE \(schema).kappa_versions SET state = $1, updated_at = $2, error = coalesce($3, error)
            WHERE job = $4 AND version = $5 AND state = $6 RETURNING version
            """, [.text(to.rawValue), .integer(now), error.map(SQLValue.text) ?? .null, .text(job), .integer(Int64(version)), .text(from.rawValue)],
            name: "transition").rows.count
        guard changed == 1 else {
            let current = try db.query("SELECT state FROM \(schema).kappa_versions WHERE job = $1 AND version = $2",
                                       [.text(job), .integer(Int64(version))], name: "read state").rows
            guard let row = current.first else { throw CatalogError.noVersion(job, version) }
            throw CatalogError.stateMoved(job, version, is: row[0].string, not: from)
        }
        try appendHistory(job: job, version: version, from: from, to: to, reason: reason, actor: actor, at: now)
    }

    func appendHistory(job: String, version: Int, from: VersionState?, to: VersionState, reason: String, actor: String, at: Int64) throws {
        try db.query("INSERT INTO \(schema).kappa_history (job, version, at, from_state, to_state, reason, actor) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                     [.text(job), .integer(Int64(version)), .integer(at), from.map { .text($0.rawValue) } ?? .null, .text(to.rawValue), .text(reason), .text(actor)],
                     name: "append history")
    }

    func relationExists(_ name: String) throws -> Bool {
        try !db.query("SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND lower(c.relname) = lower($2)",
                      [.text(schema), .text(name)], name: "find relation").rows.isEmpty
    }

    /// PostgreSQL's spelling of a manifest column type.
    static func postgresType(_ type: JobSpec.ColumnType) -> String {
        switch type {
        case .text: return "TEXT"
        case .integer, .bigint: return "BIGINT"
        case .real, .double: return "DOUBLE PRECISION"
        case .numeric: return "NUMERIC"
        case .boolean: return "BOOLEAN"
        case .blob: return "BYTEA"
        }
    }
}
#endif
