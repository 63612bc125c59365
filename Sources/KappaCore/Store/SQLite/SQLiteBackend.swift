import CSQLite

/// SQLite's spelling of the catalog.
struct SQLiteDialect: SQLDialect {
    func placeholder(_ n: Int) -> String { "?\(n)" }
    func table(_ name: String) -> String { SQLText.quote(name) }
    func columnType(_ type: JobSpec.ColumnType) -> String {
        switch type {
        case .text: return "TEXT"
        case .integer, .bigint, .boolean: return "INTEGER"
        case .real, .double: return "REAL"
        case .numeric: return "NUMERIC"
        case .blob: return "BLOB"
        }
    }
    var bigint: String { "INTEGER" }
    var blob: String { "BLOB" }
    var serialKey: String { "INTEGER PRIMARY KEY AUTOINCREMENT" }
    var keyedTableSuffix: String { " WITHOUT ROWID" }
    // One writer at a time (BEGIN IMMEDIATE): rows read in a transaction cannot change under it.
    var forUpdate: String { "" }
    var forShare: String { "" }
}

/// The default store's database: catalog and output tables in one SQLite file (WAL mode, so
/// readers in other processes never block and never see half a transaction). What is SQLite's
/// own: the authorizer that sandboxes job SQL and promotion checks, and the prepared statements
/// that load `batch`.
///
/// Used only on its store's lane, hence `@unchecked Sendable`.
final class SQLiteBackend: StoreBackend, @unchecked Sendable {
    let path: String
    private let db: SQLiteConnection
    private var batchInsert: SQLiteStatement?
    private var batchInsertMany: SQLiteStatement?
    /// The `source.fields` that `temp.batch` has columns for now; nil: not known (a failed
    /// transaction may have undone the table's last change).
    private var batchFields: [JobSpec.Column]? = []
    private var jobStatements: [VersionID: [SQLiteStatement]] = [:]
    /// The columns of `batch` each version's compiled SQL reads (SQLite's authorizer reports
    /// every column a statement reads when it compiles it).
    private var batchReads: [VersionID: Set<String>] = [:]
    /// What the version whose batch is loaded next reads (nil: not known, so everything).
    private var loadingReads: Set<String>?
    let dialect: any SQLDialect = SQLiteDialect()
    let readers: any ReadPool

    /// `readOnly`: for a catalog whose directory this process may not write (an operator's
    /// read-only commands): nothing is created or migrated.
    init(path: String, readOnly: Bool = false) throws {
        self.path = path
        // Read-only without the WAL's files there (no writer has the database open, or one
        // checkpointed and closed): SQLite could neither create nor map them, so immutable.
        let immutable = readOnly && !(FileSystem.exists(path + "-wal") && FileSystem.exists(path + "-shm"))
        db = try SQLiteConnection(path: path, readOnly: readOnly, immutable: immutable)
        try db.execute(Self.batchTable(fields: [], dialect: dialect), name: "create batch table")
        readers = SQLiteReaders(path: path, immutable: immutable)
        if readOnly, case let applied = try schemaVersion(db), applied != SQLCatalog.schemaVersion {
            throw CatalogError(.newerSchema, "\(path) holds a catalog of schema \(applied) and this release reads schema \(SQLCatalog.schemaVersion); "
                               + "it can only be read as it is once a command that changes something (or JobHost), with write access, has migrated it")
        }
    }

    var displayName: String { path }

    func connection() throws -> any SQLConnection { db }

    // BEGIN IMMEDIATE already holds the database's write lock.
    func lockSchema(_ c: any SQLConnection) throws {}
    func lockJob(_ c: any SQLConnection, _ job: String) throws {}

    func schemaVersion(_ c: any SQLConnection) throws -> Int {
        Int(try CatalogRow(try c.query("PRAGMA user_version", [], name: "catalog: schema version").first ?? [], table: "PRAGMA", columns: ["user_version"]).int(0))
    }

    func setSchemaVersion(_ c: any SQLConnection, _ version: Int) throws {
        try c.execute("PRAGMA user_version = \(version)", name: "catalog: schema version")
    }

    func relationExists(_ c: any SQLConnection, _ name: String) throws -> Bool {
        try !c.query("SELECT 1 FROM sqlite_master WHERE name = ?1 COLLATE NOCASE", [.text(name)], name: "find table").isEmpty
    }

    func viewReads(_ c: any SQLConnection, view: String, table: String) throws -> Bool {
        let sql = try c.query("SELECT sql FROM sqlite_master WHERE type = 'view' AND name = ?1", [.text(view)], name: "read view")
        if case .text(let text)? = sql.first?.first { return text.hasSuffix(SQLText.quote(table)) }
        return false
    }

    func createVersionObjects(_ c: any SQLConnection, _ spec: JobSpec) throws {}
    func dropVersionObjects(_ c: any SQLConnection, job: String, version: Int) throws {}

    func checkJobSQL(_ c: any SQLConnection, _ spec: JobSpec, statements: String) throws {
        try shapeBatch(spec.source.fields)
        // Compiled under the job's permissions, as each batch compiles it: SQL that does not
        // compile, or touches what it may not, is refused at deploy and leaves nothing behind.
        do {
            _ = try SQLiteSandbox.compile(db, statements, name: "transform.sql", policy: SQLiteSandbox.jobPolicy(spec, relations: try relationNames()), who: "the job's SQL")
        } catch let error as SQLiteError {
            throw CatalogError(.invalidJob, "transform.sql: \(error.message)")
        }
    }

    func checkPromotionCheck(_ c: any SQLConnection, _ sql: String, readable tables: [String]) throws {
        _ = try SQLiteSandbox.compile(db, sql, name: "promote check", policy: SQLiteSandbox.checkPolicy(readable: tables), who: "a promotion check", single: true)
    }

    func prepareBatch(_ c: any SQLConnection, _ spec: JobSpec) throws {
        try shapeBatch(spec.source.fields)
        // Compiled before the load, so that the load knows which columns the SQL reads. SQL
        // that does not compile is loaded everything and fails in `runJobSQL`, as it did.
        let id = VersionID(job: spec.job, version: spec.version)
        if jobStatements[id] == nil { _ = try? jobStatements(spec, sql: SQLJob(spec: spec).statements) }
        loadingReads = batchReads[id]
    }

    /// `CREATE TEMP TABLE batch`: its own columns, then a column for each of `source.fields`.
    static func batchTable(fields: [JobSpec.Column], dialect: any SQLDialect) -> String {
        "CREATE TEMP TABLE batch (partition INTEGER, \"offset\" INTEGER, timestamp INTEGER, key, value, key_bytes"
            + fields.map { ", \(SQLText.quote($0.name)) \(dialect.columnType($0.type))" }.joined() + ")"
    }

    /// Gives `temp.batch` the columns of `fields` (a version of another shape ran last). The
    /// job statements compiled against the old table are compiled again by SQLite when they run.
    private func shapeBatch(_ fields: [JobSpec.Column]) throws {
        guard batchFields != fields else { return }
        batchFields = nil
        batchInsert = nil
        batchInsertMany = nil
        try db.execute("DROP TABLE IF EXISTS temp.batch; " + Self.batchTable(fields: fields, dialect: dialect), name: "create batch table")
        batchFields = fields
    }

    /// Rows per multi-row insert into `batch` (one statement's start and end for many rows).
    static let rowsPerInsert = 32

    func loadBatch(_ c: any SQLConnection, _ records: LogRecords, range: Range<Int>, typed: TypedBatch?) throws {
        try db.execute("DELETE FROM temp.batch", name: "clear batch")
        let width = 6 + (typed?.fields.count ?? 0)
        func prepare(rows: Int) throws -> SQLiteStatement {
            let row = "(" + Array(repeating: "?", count: width).joined(separator: ", ") + ")"
            return try db.prepare("INSERT INTO temp.batch VALUES " + Array(repeating: row, count: rows).joined(separator: ", "), name: "load batch")
        }
        let one = try batchInsert ?? prepare(rows: 1)
        batchInsert = one
        // Keys and values only where the SQL reads them (a typed job seldom reads value); they
        // are bound in place from the records' storage and copied once, by the insert.
        let reads = loadingReads
        let key = reads?.contains("key") ?? true, keyBytes = reads?.contains("key_bytes") ?? true, value = reads?.contains("value") ?? true
        try records.storage.withUnsafeBytes { storage in
            func bind(_ insert: SQLiteStatement, _ i: Int, at base: Int32) throws {
                let e = records.entries[i]
                insert.bindInt(Int64(records.partition), at: base + 1)
                insert.bindInt(e.offset, at: base + 2)
                insert.bindInt(e.timestamp, at: base + 3)
                if e.keyLength >= 0 && (key || keyBytes) {
                    let bytes = UnsafeRawBufferPointer(rebasing: storage[Int(e.keyStart)..<Int(e.keyStart) + Int(e.keyLength)])
                    if key && BatchBytes.isText(records.storage[Int(e.keyStart)..<Int(e.keyStart) + Int(e.keyLength)]) {
                        try insert.bindBytesInPlace(bytes, asText: true, at: base + 4)
                    } else {
                        insert.bindNull(at: base + 4)
                    }
                    if keyBytes { try insert.bindBytesInPlace(bytes, asText: false, at: base + 6) } else { insert.bindNull(at: base + 6) }
                } else {
                    insert.bindNull(at: base + 4)
                    insert.bindNull(at: base + 6)
                }
                if e.valueLength >= 0 && value {
                    // Checked to be JSON text.
                    try insert.bindBytesInPlace(UnsafeRawBufferPointer(rebasing: storage[Int(e.valueStart)..<Int(e.valueStart) + Int(e.valueLength)]), asText: true, at: base + 5)
                } else {
                    insert.bindNull(at: base + 5)  // a tombstone, or a value the SQL does not read
                }
                if let typed {
                    for (k, v) in typed.row(i).enumerated() { try insert.bind(v, at: base + Int32(7 + k)) }
                }
            }
            var i = range.lowerBound
            if range.count >= Self.rowsPerInsert {
                let many = try batchInsertMany ?? prepare(rows: Self.rowsPerInsert)
                batchInsertMany = many
                defer { many.clearBindings() }  // no pointer into the records outlives this call
                while range.upperBound - i >= Self.rowsPerInsert {
                    many.reset()
                    for r in 0..<Self.rowsPerInsert { try bind(many, i + r, at: Int32(r * width)) }
                    try many.step()
                    i += Self.rowsPerInsert
                }
            }
            defer { one.clearBindings() }
            while i < range.upperBound {
                one.reset()
                try bind(one, i, at: 0)
                try one.step()
                i += 1
            }
        }
    }

    var writerLocksDatabase: Bool { true }

    func limitJobTime(_ c: any SQLConnection, _ limit: JobTimeLimit?) throws {
        db.setProgressHandler(limit.map { limit in { limit.shouldStop() } })
    }

    func runJobSQL(_ c: any SQLConnection, _ spec: JobSpec, statements sql: String) throws {
        let policy = SQLiteSandbox.jobPolicy(spec, relations: try relationNames())
        let statements = try jobStatements(spec, sql: sql, policy: policy)
        // Under the policy while they run too: SQLite compiles a statement again after the
        // schema changed, and asks the authorizer again.
        db.setAuthorizer(policy)
        defer { db.setAuthorizer(nil) }
        for statement in statements {
            statement.reset()
            do {
                while try statement.step() {}
            } catch var error as SQLiteError where error.resultCode & 0xFF == SQLITE_AUTH {
                error.message = db.takeDenial() ?? error.message
                throw error
            }
        }
    }

    /// The version's compiled statements (compiled under `policy` on first use, noting the
    /// columns of `batch` they read).
    private func jobStatements(_ spec: JobSpec, sql: String, policy given: AuthorizerPolicy? = nil) throws -> [SQLiteStatement] {
        let id = VersionID(job: spec.job, version: spec.version)
        if let cached = jobStatements[id] { return cached }
        let policy = try given ?? SQLiteSandbox.jobPolicy(spec, relations: try relationNames())
        let reads = ColumnReads()
        let statements = try SQLiteSandbox.compile(db, sql, name: "job \(spec.job) v\(spec.version) SQL", policy: { request in
            if request.action == SQLITE_READ, request.first?.lowercased() == "batch" { reads.columns.insert(request.second?.lowercased() ?? "") }
            return policy(request)
        }, who: "the job's SQL")
        jobStatements[id] = statements
        batchReads[id] = reads.columns
        return statements
    }

    func evaluateCheck(_ c: any SQLConnection, _ sql: String, readable tables: [String], limitMs: Int64) throws -> Bool {
        let policy = SQLiteSandbox.checkPolicy(readable: tables)
        let statement = try SQLiteSandbox.compile(db, sql, name: "promote check", policy: policy, who: "a promotion check", single: true)[0]
        db.setAuthorizer(policy)
        defer { db.setAuthorizer(nil) }
        let deadline = ContinuousClock.now + .milliseconds(limitMs)
        db.setProgressHandler { ContinuousClock.now >= deadline }
        defer { db.setProgressHandler(nil) }
        do {
            return try statement.step() && statement.column(0) == .integer(1)
        } catch let error as SQLiteError where error.resultCode & 0xFF == SQLITE_INTERRUPT {
            throw CheckTimeLimit(limitMs: limitMs)
        } catch var error as SQLiteError {
            error.message = db.takeDenial() ?? error.message
            throw error
        }
    }

    func forget(job: String, version: Int) {
        jobStatements[VersionID(job: job, version: version)] = nil
        batchReads[VersionID(job: job, version: version)] = nil
    }
    func transactionFailed() {
        // The batch table's last change may be undone with it.
        batchFields = nil
        batchInsert = nil
        batchInsertMany = nil
    }
    /// Every table, view and index name of the database and its temp schema, lowercased (for
    /// `SQLiteSandbox.jobPolicy`).
    func relationNames() throws -> Set<String> {
        Set(try db.query("SELECT lower(name) FROM main.sqlite_schema UNION SELECT lower(name) FROM temp.sqlite_schema", name: "relation names")
            .compactMap { $0.first?.display })
    }
}

/// Read queries on a read-only connection of their own, opened per query (cheap for SQLite,
/// and it never holds a read snapshot between queries).
struct SQLiteReaders: ReadPool {
    let path: String
    var immutable = false

    func query(_ sql: String) throws -> QueryResult {
        // Read-only twice over: the connection cannot write the file, and the statement must
        // compile as a read (VACUUM INTO writes another file even from a read-only connection).
        let db = try SQLiteConnection(path: path, readOnly: true, immutable: immutable)
        let statement = try SQLiteSandbox.compile(db, sql, name: "query", policy: SQLiteSandbox.queryPolicy, who: "a query", single: true)[0]
        db.setAuthorizer(SQLiteSandbox.queryPolicy)
        defer { db.setAuthorizer(nil) }
        var rows: [[SQLValue]] = []
        while try statement.step() { rows.append(statement.row()) }
        return QueryResult(columns: (0..<statement.columnCount).map(statement.columnName), rows: rows)
    }
}

extension SQLiteConnection: SQLConnection {}

extension SQLiteError: ClassifiedStoreError {
    public var storeClass: StoreErrorClass {
        switch resultCode & 0xFF {
        case SQLITE_FULL: return .diskFull
        case SQLITE_BUSY, SQLITE_LOCKED: return .conflict
        case SQLITE_AUTH: return .jobSQL
        case SQLITE_INTERRUPT: return .interrupted
        default: break
        }
        switch phase {
        case .open: return .other
        case .prepare: return .jobSQL
        case .step:
            // Errors a record's content can cause at run time (malformed JSON, a constraint, a
            // type mismatch, a value too big). Disk, lock and I/O errors never are.
            switch resultCode & 0xFF {
            case SQLITE_ERROR, SQLITE_CONSTRAINT, SQLITE_MISMATCH, SQLITE_TOOBIG, SQLITE_RANGE: return .data
            default: return .other
            }
        }
    }
}

extension Store {
    /// The store in a SQLite database at `path` (created and migrated when needed).
    /// - Throws: `SQLiteError` naming the file (e.g. not a database), `CatalogError.newerSchema`.
    public static func sqlite(path: String) throws -> Store {
        try Store(backend: SQLiteBackend(path: path))
    }

    /// The store of a state directory (`<state>/kappa.sqlite`). `readOnly` (commands that only
    /// read): a directory this process may not write is read as it is, never created in.
    public static func sqlite(state: StateDirectory, readOnly: Bool = false) throws -> Store {
        try state.requireExisting()
        guard readOnly, !state.writable else { return try sqlite(path: state.catalogPath) }
        guard FileSystem.exists(state.catalogPath) else {
            throw StateError("\(state.path) holds no catalog yet (nothing was deployed), and this user may not create one there")
        }
        return try Store(backend: SQLiteBackend(path: state.catalogPath, readOnly: true))
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

/// The columns an authorizer saw a statement read, while it compiled.
private final class ColumnReads {
    var columns: Set<String> = []
}
