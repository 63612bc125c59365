import CSQLite
import Dispatch
import Foundation

/// The default `TableStore`: catalog and output tables in one SQLite database (WAL mode, so
/// readers in other processes never block and never see half a transaction).
///
/// One writer connection, owned by a serial dispatch queue: SQLite runs one write transaction at
/// a time anyway, and its blocking calls stay off Swift's cooperative pool. Queries use
/// connections of their own.
public final class SQLiteStore: TableStore {
    public let path: String
    private let writer: StoreQueue<SQLiteWriter>

    /// Opens (creating and migrating when needed) the catalog database at `path`.
    /// - Throws: `SQLiteError` naming the file (e.g. not a database), `CatalogError.newerSchema`.
    public init(path: String) throws {
        self.path = path
        let db = try SQLiteConnection(path: path)
        try CatalogSchema.migrate(db)
        try db.execute("CREATE TEMP TABLE IF NOT EXISTS batch (partition INTEGER, \"offset\" INTEGER, timestamp INTEGER, key, value)",
                       name: "create batch table")
        writer = StoreQueue(label: "kappa.store.sqlite", SQLiteWriter(db: db))
    }

    /// The store of a state directory (`<state>/kappa.sqlite`).
    public convenience init(state: StateDirectory) throws {
        try self.init(path: state.catalogPath)
    }

    /// Runs `body` on the writer's queue.
    func write<T: Sendable>(_ body: @escaping @Sendable (SQLiteWriter) throws -> T) async throws -> T {
        try await writer.run(body)
    }

    /// A hook called at named points inside batch transactions; tests use it to fail a commit
    /// half-way. Never set in production.
    func setFaultHook(_ hook: (@Sendable (String) throws -> Void)?) async {
        _ = try? await write { $0.faultHook = hook }
    }

    // MARK: Data

    public func nextOffsets(job: String, version: Int) async throws -> [Int64] {
        try await write { w in try w.offsets(job: job, version: version) }
    }

    public func applyBatch(_ job: any StreamJob, partition: Int, records: LogRecords, fence: Lease?) async throws -> BatchResult {
        try await write { w in try w.applyBatch(job, partition: partition, records: records, fence: fence) }
    }

    public func switchView(job: String, to version: Int) async throws {
        try await write { w in try w.db.transaction("switch view") { try w.pointView(job: job, to: version) } }
    }

    public func dropVersionTables(job: String, version: Int) async throws {
        try await write { w in try w.db.transaction("drop version") { try w.dropVersion(job: job, version: version) } }
    }

    public func query(_ sql: String) async throws -> QueryResult {
        let path = self.path
        return try await onOwnThread {
            let db = try SQLiteConnection(path: path, readOnly: true)
            let statement = try db.prepare(sql, name: "query")
            var rows: [[SQLValue]] = []
            while try statement.step() { rows.append(statement.row()) }
            return QueryResult(columns: (0..<statement.columnCount).map(statement.columnName), rows: rows)
        }
    }
}

/// The writer connection and what it caches; used only on the store's queue, hence
/// `@unchecked Sendable`.
final class SQLiteWriter: @unchecked Sendable {
    let db: SQLiteConnection
    var faultHook: (@Sendable (String) throws -> Void)?
    private var batchInsert: SQLiteStatement?
    private var jobStatements: [String: [SQLiteStatement]] = [:]

    init(db: SQLiteConnection) { self.db = db }

    func offsets(job: String, version: Int) throws -> [Int64] {
        try db.query("SELECT next_offset FROM kappa_offsets WHERE job = ? AND version = ? ORDER BY partition",
                     [.text(job), .integer(Int64(version))], name: "read offsets").map { row in
            if case .integer(let n) = row[0] { return n }
            return 0
        }
    }

    func applyBatch(_ job: any StreamJob, partition: Int, records: LogRecords, fence: Lease? = nil) throws -> BatchResult {
        let spec = job.spec
        guard let first = records.first else {
            return BatchResult(partition: partition, records: 0, deadLettered: 0, nextOffset: records.nextOffset)
        }
        return try db.transaction("batch \(spec.job) v\(spec.version) partition \(partition)") {
            let stored = try db.query(
                "SELECT o.next_offset, v.state FROM kappa_offsets o JOIN kappa_versions v ON v.job = o.job AND v.version = o.version WHERE o.job = ? AND o.version = ? AND o.partition = ?",
                [.text(spec.job), .integer(Int64(spec.version)), .integer(Int64(partition))], name: "read offset")
            guard let row = stored.first, case .integer(let offset) = row[0] else {
                throw CatalogError(.versionNotFound, "job \(spec.job) has no version \(spec.version) with partition \(partition)")
            }
            // A version that was retired or failed meanwhile takes no more batches (its workers stop).
            guard let state = VersionState(rawValue: row[1].string), state.isRunning || state == .pending else {
                throw VersionStoppedError(job: spec.job, version: spec.version, state: row[1].string)
            }
            guard offset == first.offset else { throw StaleOffsetError(partition: partition, stored: offset, batchStart: first.offset) }
            if let fence {
                let lease = try db.query("SELECT owner, epoch FROM kappa_leases WHERE job = ? AND version = ? AND partition = ?",
                                         [.text(spec.job), .integer(Int64(spec.version)), .integer(Int64(partition))], name: "check lease").first
                guard let lease, lease[0].string == fence.owner, lease[1].int == fence.epoch else {
                    throw LeaseLostError(key: fence.key, owner: fence.owner, epoch: fence.epoch)
                }
            }
            let sink = SQLiteBatchSink(writer: self)
            let dead = try BadRecords.apply(records, spec: spec, partition: partition,
                attempt: { range in try db.savepoint { try job.apply(records, range: range, to: sink) } },
                dataError: { ($0 as? SQLiteError).flatMap { $0.isDataError ? $0.message : nil } },
                deadLetter: { record, message in
                    try db.run("INSERT INTO \(SQLText.quote(spec.deadLetterTable)) (partition, \"offset\", timestamp, key, value, error) VALUES (?, ?, ?, ?, ?, ?)",
                               BadRecords.row(record, partition: partition, error: message), name: "dead letter")
                })
            try faultHook?("after job")
            try db.run("UPDATE kappa_offsets SET next_offset = ? WHERE job = ? AND version = ? AND partition = ?",
                       [.integer(records.nextOffset), .text(spec.job), .integer(Int64(spec.version)), .integer(Int64(partition))],
                       name: "store offset")
            try faultHook?("before commit")
            return BatchResult(partition: partition, records: records.count, deadLettered: dead, nextOffset: records.nextOffset)
        }
    }

    /// Loads `records[range]` into `temp.batch`.
    func loadBatch(_ records: LogRecords, range: Range<Int>) throws {
        try db.execute("DELETE FROM temp.batch", name: "clear batch")
        let insert = try batchInsert ?? db.prepare("INSERT INTO temp.batch VALUES (?, ?, ?, ?, ?)", name: "load batch")
        batchInsert = insert
        for i in range {
            let r = records[i]
            insert.reset()
            insert.bindInt(Int64(r.partition), at: 1)
            insert.bindInt(r.offset, at: 2)
            insert.bindInt(r.timestamp, at: 3)
            if let key = r.key { try insert.bindBytes(key, asText: isUTF8(key), at: 4) } else { insert.bindNull(at: 4) }
            try insert.bindBytes(r.value, asText: isUTF8(r.value), at: 5)
            try insert.step()
        }
    }

    /// Runs a job's statements (compiled once per version) under the job's authorizer.
    func runJobSQL(_ job: SQLJob) throws {
        let spec = job.spec
        let key = "\(spec.job)\u{0}\(spec.version)"
        db.setAuthorizer(Self.jobPolicy(spec))
        defer { db.setAuthorizer(nil) }
        let statements: [SQLiteStatement]
        if let cached = jobStatements[key] {
            statements = cached
        } else {
            do {
                statements = try db.prepareAll(job.statements, name: "job \(spec.job) v\(spec.version) SQL")
            } catch let error as SQLiteError {
                throw JobFailure(job: spec.job, version: spec.version, message: "transform.sql: \(db.takeDenial() ?? error.message)")
            }
            jobStatements[key] = statements
        }
        for statement in statements {
            statement.reset()
            do {
                while try statement.step() {}
            } catch let error as SQLiteError where error.resultCode & 0xFF == SQLITE_AUTH {
                throw JobFailure(job: spec.job, version: spec.version, message: "transform.sql: \(db.takeDenial() ?? error.message)")
            }
        }
    }

    /// Applies an exec program's operations: upserts and deletes by primary key.
    func write(_ operations: [RowOperation], spec: JobSpec) throws {
        for operation in operations {
            let (sql, values) = operation.statement(table: SQLText.quote(spec.versionTable), key: spec.output.primaryKey) { _ in "?" }
            try db.run(sql, values, name: "exec operation")
        }
    }

    /// Forgets compiled statements of a version (its table is gone or changed).
    func forgetStatements(job: String, version: Int) {
        jobStatements["\(job)\u{0}\(version)"] = nil
    }

    /// A job's SQL may read `batch` and its own table and write only its own table.
    static func jobPolicy(_ spec: JobSpec) -> AuthorizerPolicy {
        let own = spec.versionTable.lowercased()
        return { request in
            let table = request.first?.lowercased() ?? ""
            switch request.action {
            case SQLITE_SELECT, SQLITE_FUNCTION, SQLITE_RECURSIVE:
                return nil
            case SQLITE_READ:
                if table == own || (table == "batch" && request.database == "temp") || table.isEmpty { return nil }
                return "the job's SQL may not read table \"\(request.first ?? "")\" (it may read batch and output)"
            case SQLITE_INSERT, SQLITE_UPDATE, SQLITE_DELETE:
                if table == own { return nil }
                if ["sqlite_master", "sqlite_schema", "sqlite_temp_master", "sqlite_temp_schema"].contains(table) {
                    return "the job's SQL may not change the schema (it may only read batch and output and write output)"
                }
                return "the job's SQL may not write table \"\(request.first ?? "")\" (it may write only output)"
            default:
                return "the job's SQL may not run \(actionName(request.action)) (it may only read batch and output and write output)"
            }
        }
    }

    static func actionName(_ action: Int32) -> String {
        let names: [Int32: String] = [
            SQLITE_CREATE_INDEX: "CREATE INDEX", SQLITE_CREATE_TABLE: "CREATE TABLE", SQLITE_CREATE_TEMP_INDEX: "CREATE INDEX",
            SQLITE_CREATE_TEMP_TABLE: "CREATE TEMP TABLE", SQLITE_CREATE_TEMP_TRIGGER: "CREATE TRIGGER", SQLITE_CREATE_TEMP_VIEW: "CREATE VIEW",
            SQLITE_CREATE_TRIGGER: "CREATE TRIGGER", SQLITE_CREATE_VIEW: "CREATE VIEW", SQLITE_DROP_INDEX: "DROP INDEX",
            SQLITE_DROP_TABLE: "DROP TABLE", SQLITE_DROP_TEMP_INDEX: "DROP INDEX", SQLITE_DROP_TEMP_TABLE: "DROP TABLE",
            SQLITE_DROP_TEMP_TRIGGER: "DROP TRIGGER", SQLITE_DROP_TEMP_VIEW: "DROP VIEW", SQLITE_DROP_TRIGGER: "DROP TRIGGER",
            SQLITE_DROP_VIEW: "DROP VIEW", SQLITE_PRAGMA: "PRAGMA", SQLITE_TRANSACTION: "BEGIN/COMMIT", SQLITE_ATTACH: "ATTACH",
            SQLITE_DETACH: "DETACH", SQLITE_ALTER_TABLE: "ALTER TABLE", SQLITE_REINDEX: "REINDEX", SQLITE_ANALYZE: "ANALYZE",
            SQLITE_CREATE_VTABLE: "CREATE VIRTUAL TABLE", SQLITE_DROP_VTABLE: "DROP VIRTUAL TABLE", SQLITE_SAVEPOINT: "SAVEPOINT",
        ]
        return names[action] ?? "action \(action)"
    }

    /// `DROP VIEW` + `CREATE VIEW` of the job's reader view; the caller holds a transaction.
    func pointView(job: String, to version: Int) throws {
        let rows = try db.query("SELECT view FROM kappa_jobs WHERE name = ?", [.text(job)], name: "read job")
        guard case .text(let view)? = rows.first?.first else { throw CatalogError(.jobNotFound, "job \"\(job)\" does not exist") }
        let table = "\(view)__v\(version)"
        guard try tableExists(table) else {
            throw CatalogError(.versionNotFound, "job \"\(job)\" has no table for version \(version)")
        }
        try db.execute("DROP VIEW IF EXISTS \(SQLText.quote(view)); CREATE VIEW \(SQLText.quote(view)) AS SELECT * FROM \(SQLText.quote(table))",
                       name: "point view \(view) at v\(version)")
    }

    /// Drops a version's tables and offsets; the caller holds a transaction.
    func dropVersion(job: String, version: Int) throws {
        let rows = try db.query("SELECT view FROM kappa_jobs WHERE name = ?", [.text(job)], name: "read job")
        guard case .text(let view)? = rows.first?.first else { throw CatalogError(.jobNotFound, "job \"\(job)\" does not exist") }
        let table = "\(view)__v\(version)"
        let viewSQL = try db.query("SELECT sql FROM sqlite_master WHERE type = 'view' AND name = ?", [.text(view)], name: "read view")
        if case .text(let sql)? = viewSQL.first?.first, sql.hasSuffix(SQLText.quote(table)) {
            throw CatalogError(.stateConflict, "version \(version) of job \"\(job)\" backs the view \"\(view)\"; switch the view first")
        }
        try db.execute("DROP TABLE IF EXISTS \(SQLText.quote(table)); DROP TABLE IF EXISTS \(SQLText.quote(table + "__dead"))", name: "drop version tables")
        let key: [SQLValue] = [.text(job), .integer(Int64(version))]
        try db.run("DELETE FROM kappa_offsets WHERE job = ? AND version = ?", key, name: "drop offsets")
        try db.run("DELETE FROM kappa_leases WHERE job = ? AND version = ?", key, name: "drop leases")
        forgetStatements(job: job, version: version)
    }

    func tableExists(_ name: String) throws -> Bool {
        try !db.query("SELECT 1 FROM sqlite_master WHERE name = ? COLLATE NOCASE", [.text(name)], name: "find table").isEmpty
    }
}

/// The sink a job writes through, bound to the writer for one batch transaction.
struct SQLiteBatchSink: BatchSink {
    let writer: SQLiteWriter
    func loadBatch(_ records: LogRecords, range: Range<Int>) throws { try writer.loadBatch(records, range: range) }
    func runJobSQL(_ job: SQLJob) throws { try writer.runJobSQL(job) }
    func write(_ operations: [RowOperation], spec: JobSpec) throws { try writer.write(operations, spec: spec) }
}

extension SQLiteError {
    /// Errors that a record's content can cause at run time (malformed JSON, a constraint, a
    /// type mismatch, a value too big): candidates for `onBadRecord`. Disk, lock and I/O errors
    /// are never blamed on a record.
    var isDataError: Bool {
        guard phase == .step else { return false }
        switch resultCode & 0xFF {
        case SQLITE_ERROR, SQLITE_CONSTRAINT, SQLITE_MISMATCH, SQLITE_TOOBIG, SQLITE_RANGE: return true
        default: return false
        }
    }
}

/// True when `bytes` are valid UTF-8 (ASCII checked eight bytes at a time).
func isUTF8(_ bytes: ArraySlice<UInt8>) -> Bool {
    let ascii = bytes.withUnsafeBytes { buf -> Bool in
        var i = 0
        while i + 8 <= buf.count {
            if buf.loadUnaligned(fromByteOffset: i, as: UInt64.self) & 0x8080_8080_8080_8080 != 0 { return false }
            i += 8
        }
        while i < buf.count { if buf[i] >= 0x80 { return false }; i += 1 }
        return true
    }
    return ascii || String(validating: bytes, as: UTF8.self) != nil
}
