import CSQLite

extension SQLiteStore {
    public func registerVersion(_ spec: JobSpec, manifest: String, startOffsets: [Int64], actor: String, reason: String) async throws -> VersionRecord {
        try await write { w in
            try w.db.transaction("register \(spec.job) v\(spec.version)") {
                try w.register(spec, manifest: manifest, startOffsets: startOffsets, actor: actor, reason: reason)
            }
        }
    }

    public func jobs() async throws -> [JobRecord] {
        try await write { w in
            try w.db.query("SELECT name, view, topic, created_at FROM kappa_jobs ORDER BY name", name: "list jobs").map { row in
                JobRecord(name: row[0].string, view: row[1].string, topic: row[2].string, createdAt: row[3].int)
            }
        }
    }

    public func versions(job: String) async throws -> [VersionRecord] {
        try await write { w in try w.versions(job: job) }
    }

    public func history(job: String) async throws -> [HistoryEntry] {
        try await write { w in
            try w.db.query("SELECT id, job, version, at, from_state, to_state, reason, actor FROM kappa_history WHERE job = ? ORDER BY id",
                           [.text(job)], name: "read history").map { row in
                HistoryEntry(row: row)
            }
        }
    }

    public func transition(job: String, version: Int, from: VersionState, to: VersionState, reason: String, actor: String, error: String?) async throws {
        try await write { w in
            try w.db.transaction("transition \(job) v\(version)") {
                try w.transition(job: job, version: version, from: from, to: to, reason: reason, actor: actor, error: error)
            }
        }
    }
}

extension SQLiteWriter {
    func register(_ spec: JobSpec, manifest: String, startOffsets: [Int64], actor: String, reason: String) throws -> VersionRecord {
        let now = currentTimeMillis()
        let view = spec.output.table
        let existing = try db.query("SELECT view FROM kappa_jobs WHERE name = ?", [.text(spec.job)], name: "read job")
        if let row = existing.first {
            guard row[0].string == view else {
                throw CatalogError.conflictingView(job: spec.job, serves: row[0].string, asked: view)
            }
        } else {
            if let other = try db.query("SELECT name FROM kappa_jobs WHERE view = ? COLLATE NOCASE", [.text(view)], name: "find view owner").first {
                throw CatalogError.viewTaken(view, by: other[0].string)
            }
            if try tableExists(view) {
                throw CatalogError(.conflictingOutput, "a table or view named \"\(view)\" already exists in \(db.path); choose another output.table")
            }
            try db.run("INSERT INTO kappa_jobs (name, view, topic, created_at) VALUES (?, ?, ?, ?)",
                       [.text(spec.job), .text(view), .text(spec.source.topic), .integer(now)], name: "insert job")
        }
        let latest = try db.query("SELECT max(version) FROM kappa_versions WHERE job = ?", [.text(spec.job)], name: "latest version")
        if case .integer(let max)? = latest.first?.first, Int64(spec.version) <= max {
            throw CatalogError.notAbove(spec, latest: max)
        }
        for table in [spec.versionTable, spec.deadLetterTable] where try tableExists(table) {
            throw CatalogError(.conflictingOutput, "a table named \"\(table)\" already exists in \(db.path)")
        }
        try db.run("INSERT INTO kappa_versions (job, version, state, manifest, created_at, updated_at) VALUES (?, ?, 'pending', ?, ?, ?)",
                   [.text(spec.job), .integer(Int64(spec.version)), .text(manifest), .integer(now), .integer(now)], name: "insert version")
        let columns = spec.output.columns.map { "\(SQLText.quote($0.name)) \(Self.sqliteType($0.type))" }
        let key = spec.output.primaryKey.map(SQLText.quote).joined(separator: ", ")
        try db.execute("CREATE TABLE \(SQLText.quote(spec.versionTable)) (\(columns.joined(separator: ", ")), PRIMARY KEY (\(key))) WITHOUT ROWID",
                       name: "create version table")
        try db.execute("""
            CREATE TABLE \(SQLText.quote(spec.deadLetterTable)) (partition INTEGER NOT NULL, "offset" INTEGER NOT NULL, timestamp INTEGER,
                key BLOB, value BLOB, error TEXT NOT NULL, PRIMARY KEY (partition, "offset")) WITHOUT ROWID
            """, name: "create dead-letter table")
        for (p, offset) in startOffsets.enumerated() {
            try db.run("INSERT INTO kappa_offsets (job, version, partition, next_offset) VALUES (?, ?, ?, ?)",
                       [.text(spec.job), .integer(Int64(spec.version)), .integer(Int64(p)), .integer(offset)], name: "insert offsets")
        }
        if case .sql = spec.transform {
            // Compile now, under the job's permissions: SQL that does not compile, or touches what
            // it may not, is refused at deploy and leaves nothing behind.
            db.setAuthorizer(Self.jobPolicy(spec))
            defer { db.setAuthorizer(nil) }
            do {
                _ = try db.prepareAll(SQLJob(spec: spec).statements, name: "transform.sql")
            } catch let error as SQLiteError {
                throw CatalogError(.invalidJob, "transform.sql: \(db.takeDenial() ?? error.message)")
            }
        }
        try appendHistory(job: spec.job, version: spec.version, from: nil, to: .pending, reason: reason, actor: actor, at: now)
        return VersionRecord(job: spec.job, version: spec.version, state: .pending, manifest: manifest, spec: spec,
                             createdAt: now, updatedAt: now, error: nil)
    }

    func versions(job: String) throws -> [VersionRecord] {
        try db.query("SELECT job, version, state, manifest, created_at, updated_at, error FROM kappa_versions WHERE job = ? ORDER BY version",
                     [.text(job)], name: "list versions").map(VersionRecord.init(row:))
    }

    func transition(job: String, version: Int, from: VersionState, to: VersionState, reason: String, actor: String, error: String?) throws {
        let now = currentTimeMillis()
        let changed = try db.run("UPDATE kappa_versions SET state = ?, updated_at = ?, error = coalesce(?, error) WHERE job = ? AND version = ? AND state = ?",
                                 [.text(to.rawValue), .integer(now), error.map(SQLValue.text) ?? .null, .text(job), .integer(Int64(version)), .text(from.rawValue)],
                                 name: "transition")
        guard changed == 1 else {
            let current = try db.query("SELECT state FROM kappa_versions WHERE job = ? AND version = ?", [.text(job), .integer(Int64(version))], name: "read state")
            guard let row = current.first else { throw CatalogError.noVersion(job, version) }
            throw CatalogError.stateMoved(job, version, is: row[0].string, not: from)
        }
        try appendHistory(job: job, version: version, from: from, to: to, reason: reason, actor: actor, at: now)
    }

    func appendHistory(job: String, version: Int, from: VersionState?, to: VersionState, reason: String, actor: String, at: Int64) throws {
        try db.run("INSERT INTO kappa_history (job, version, at, from_state, to_state, reason, actor) VALUES (?, ?, ?, ?, ?, ?, ?)",
                   [.text(job), .integer(Int64(version)), .integer(at), from.map { .text($0.rawValue) } ?? .null, .text(to.rawValue), .text(reason), .text(actor)],
                   name: "append history")
    }

    /// SQLite's spelling of a manifest column type.
    static func sqliteType(_ type: JobSpec.ColumnType) -> String {
        switch type {
        case .text: return "TEXT"
        case .integer, .bigint, .boolean: return "INTEGER"
        case .real, .double: return "REAL"
        case .numeric: return "NUMERIC"
        case .blob: return "BLOB"
        }
    }
}

extension SQLValue {
    /// The text of a TEXT value (empty otherwise): for columns the catalog declares NOT NULL TEXT.
    var string: String {
        switch self {
        case .text(let s): return s
        case .integer(let i): return String(i)
        default: return ""
        }
    }

    /// The integer of an INTEGER value (0 otherwise).
    var int: Int64 {
        if case .integer(let i) = self { return i }
        return 0
    }
}
