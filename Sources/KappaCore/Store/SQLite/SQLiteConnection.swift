import CSQLite
import Foundation

/// An SQLite failure: the result code, SQLite's message, and the name of the statement (never
/// its bound values, which may be row data).
public struct SQLiteError: Error, Sendable, CustomStringConvertible {
    /// Where it failed: compiling the SQL (a mistake in the SQL) or running it (often the data).
    public enum Phase: String, Sendable { case open, prepare, step }

    public var resultCode: Int32
    public var message: String
    public var statement: String
    public var phase: Phase

    public var description: String { "\(statement): \(message) (SQLite error \(resultCode))" }

    /// True for SQLITE_BUSY / SQLITE_LOCKED: another connection holds the lock.
    public var isBusy: Bool { resultCode & 0xFF == SQLITE_BUSY || resultCode & 0xFF == SQLITE_LOCKED }
}

/// A value in or out of SQLite.
public enum SQLValue: Sendable, Equatable, Hashable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])

    /// JSON text for output (`--output json`, diffs).
    public var json: String {
        switch self {
        case .null: return "null"
        case .integer(let i): return String(i)
        case .real(let d): return d.isFinite ? "\(d)" : "null"
        case .text(let s): return JSONScanner.quote(s)
        case .blob(let b): return JSONScanner.quote(b.map { String(format: "%02x", $0) }.joined())
        }
    }

    /// Plain text for tables.
    public var display: String {
        switch self {
        case .null: return "NULL"
        case .integer(let i): return String(i)
        case .real(let d): return "\(d)"
        case .text(let s): return s
        case .blob(let b): return "x'" + b.map { String(format: "%02x", $0) }.joined() + "'"
        }
    }
}

/// One SQLite connection. Not for concurrent use: each has a single owner (a store's serial
/// queue, or one reader), which is why it is `@unchecked Sendable`: it moves between threads but
/// is used by one at a time.
final class SQLiteConnection: @unchecked Sendable {
    /// Process-wide settings, before the first connection initializes the library: no memory
    /// statistics (each allocation would take a global mutex for them).
    private static let configured: Void = { _ = kappa_sqlite_config_memstatus(0) }()

    let path: String
    private var db: OpaquePointer?
    private var authorizer: Unmanaged<AuthorizerBox>?
    private var progress: Unmanaged<ProgressBox>?

    /// Opens (creating unless `readOnly`) the database at `path`: WAL journal, full sync,
    /// a busy timeout so that concurrent writers wait instead of failing.
    /// `immutable` (read-only only): the file is read as a snapshot nobody writes, without the
    /// WAL's shared memory, for a directory this process may not write where no writer left
    /// its `-wal` and `-shm` files (SQLite cannot open such a WAL database read-only otherwise).
    init(path: String, readOnly: Bool = false, immutable: Bool = false, busyTimeoutMs: Int32 = 10_000) throws {
        self.path = path
        _ = Self.configured
        let flags = readOnly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)
        let name = readOnly && immutable ? Self.immutableURI(path) : path
        let rc = sqlite3_open_v2(name, &db, flags | SQLITE_OPEN_NOMUTEX | (name == path ? 0 : SQLITE_OPEN_URI), nil)
        guard rc == SQLITE_OK else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close_v2(db)
            db = nil
            throw SQLiteError(resultCode: rc, message: "\(path): \(message)", statement: "open", phase: .open)
        }
        sqlite3_extended_result_codes(db, 1)
        sqlite3_busy_timeout(db, busyTimeoutMs)
        // Closed whatever the SQL asks: no extensions, no fts3_tokenizer pointers, no writes to
        // the schema or shadow tables by hand, no functions with side effects from the schema,
        // and no other database files (ATTACH, and VACUUM INTO, which attaches its target).
        kappa_sqlite_db_config_int(db, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0)
        kappa_sqlite_db_config_int(db, SQLITE_DBCONFIG_ENABLE_FTS3_TOKENIZER, 0)
        kappa_sqlite_db_config_int(db, SQLITE_DBCONFIG_DEFENSIVE, 1)
        kappa_sqlite_db_config_int(db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0)
        sqlite3_limit(db, SQLITE_LIMIT_ATTACHED, 0)
        // Closing never checkpoints: a connection that closes last would take the database's
        // exclusive lock to checkpoint and delete the WAL, and a reader opening meanwhile (the
        // sqlite3 CLI, any client without a busy timeout) would get SQLITE_BUSY. Commits
        // checkpoint as they go (PASSIVE, never in a reader's way).
        kappa_sqlite_db_config_int(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1)
        do {
            // Checks that this is a database at all before anything else reads it.
            _ = try retryingBusy(busyTimeoutMs) { try query("PRAGMA schema_version", name: "open") }
            // WAL is a property of the file: only the first opener switches it, and the switch
            // fails at once (no busy wait) while another process has the file open, so retry.
            if !readOnly, try query("PRAGMA journal_mode", name: "open").first?.first != .text("wal") {
                _ = try retryingBusy(busyTimeoutMs) { try query("PRAGMA journal_mode=WAL", name: "open") }
            }
            try execute("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON", name: "open")
            // The first use of a table-valued function on a connection asks the authorizer for an
            // update of sqlite_schema (SQLite sets the function's table up): done here, before any
            // authorizer, so that job SQL using them is judged on what it reads.
            try execute("SELECT count(*) FROM json_each('[]'), json_tree('[]')", name: "open")
        } catch var error as SQLiteError {
            sqlite3_close_v2(db)
            db = nil
            error.message = "\(path): \(error.message)"
            throw error
        }
    }

    deinit {
        sqlite3_close_v2(db)
        authorizer?.release()
        progress?.release()
    }

    /// `file:<path>?immutable=1`, the path percent-encoded where a URI needs it.
    static func immutableURI(_ path: String) -> String {
        var out = "file:"
        for byte in path.utf8 {
            let c = Character(Unicode.Scalar(byte))
            if byte < 0x80 && (c.isLetter || c.isNumber || "/-._~".contains(c)) { out.append(c) } else { out += String(format: "%%%02X", byte) }
        }
        return out + "?immutable=1"
    }

    /// Installs (or with nil removes) a check SQLite calls every few thousand steps of a running
    /// statement; true stops the statement (`SQLITE_INTERRUPT`).
    func setProgressHandler(_ shouldStop: (() -> Bool)?) {
        sqlite3_progress_handler(db, 0, nil, nil)
        progress?.release()
        progress = nil
        guard let shouldStop else { return }
        let box = Unmanaged.passRetained(ProgressBox(shouldStop))
        progress = box
        sqlite3_progress_handler(db, 4_000, { context in
            Unmanaged<ProgressBox>.fromOpaque(context!).takeUnretainedValue().shouldStop() ? 1 : 0
        }, box.toOpaque())
    }

    /// Runs `body` again while SQLite answers busy, for up to `timeoutMs`.
    private func retryingBusy<T>(_ timeoutMs: Int32, _ body: () throws -> T) throws -> T {
        let deadline = currentTimeMillis() + Int64(timeoutMs)
        while true {
            do {
                return try body()
            } catch let error as SQLiteError where error.isBusy && currentTimeMillis() < deadline {
                usleep(10_000)
            }
        }
    }

    func error(_ rc: Int32, _ name: String, _ phase: SQLiteError.Phase) -> SQLiteError {
        SQLiteError(resultCode: rc, message: String(cString: sqlite3_errmsg(db)), statement: name, phase: phase)
    }

    /// Runs one or more statements without results.
    func execute(_ sql: String, name: String) throws {
        var remaining = sql[...]
        while !remaining.allSatisfy(\.isWhitespace) {
            let (statement, rest) = try prepareOne(String(remaining), name: name)
            guard let statement else { break }
            while try statement.step() {}
            remaining = rest[...]
        }
    }

    /// Prepares a single statement.
    func prepare(_ sql: String, name: String) throws -> SQLiteStatement {
        let (statement, rest) = try prepareOne(sql, name: name)
        guard let statement else { throw SQLiteError(resultCode: SQLITE_MISUSE, message: "no SQL statement", statement: name, phase: .prepare) }
        guard rest.allSatisfy({ $0.isWhitespace || $0 == ";" }) else {
            throw SQLiteError(resultCode: SQLITE_MISUSE, message: "expected one statement", statement: name, phase: .prepare)
        }
        return statement
    }

    /// Prepares every statement in `sql`, in order, calling `each` as soon as one is prepared
    /// (before the next is: an authorizer's view of one statement ends there).
    func prepareAll(_ sql: String, name: String, each: (SQLiteStatement) throws -> Void = { _ in }) throws -> [SQLiteStatement] {
        var out: [SQLiteStatement] = []
        var remaining = sql
        while true {
            let (statement, rest) = try prepareOne(remaining, name: name)
            guard let statement else { return out }
            try each(statement)
            out.append(statement)
            remaining = rest
        }
    }

    private func prepareOne(_ sql: String, name: String) throws -> (SQLiteStatement?, String) {
        var handle: OpaquePointer?
        var tail: UnsafePointer<CChar>?
        let result: (Int32, String) = sql.withCString { base in
            let rc = sqlite3_prepare_v2(db, base, -1, &handle, &tail)
            let rest = tail.map { String(cString: $0) } ?? ""
            return (rc, rest)
        }
        guard result.0 == SQLITE_OK else { throw error(result.0, name, .prepare) }
        guard let handle else { return (nil, "") }
        return (SQLiteStatement(handle: handle, connection: self, name: name), result.1)
    }

    /// Runs a query and returns all rows.
    func query(_ sql: String, _ values: [SQLValue] = [], name: String) throws -> [[SQLValue]] {
        let statement = try prepare(sql, name: name)
        try statement.bind(values)
        var rows: [[SQLValue]] = []
        while try statement.step() { rows.append(statement.row()) }
        return rows
    }

    /// Runs a statement with values bound; returns the number of rows changed.
    @discardableResult
    func run(_ sql: String, _ values: [SQLValue] = [], name: String) throws -> Int {
        let statement = try prepare(sql, name: name)
        try statement.bind(values)
        while try statement.step() {}
        return Int(sqlite3_changes(db))
    }

    /// Runs `body` in a transaction (`BEGIN IMMEDIATE`: the write lock is taken at once, so that
    /// the transaction never fails half-way for a lock); rolls back when it throws.
    func transaction<T>(_ name: String, _ body: () throws -> T) throws -> T {
        try inTransaction(name, begin: "BEGIN IMMEDIATE", execute: { try execute($0, name: $1) }, body)
    }

    /// A deferred transaction that only reads: one WAL snapshot, no write lock.
    func readTransaction<T>(_ name: String, _ body: () throws -> T) throws -> T {
        try inTransaction(name, begin: "BEGIN DEFERRED", execute: { try execute($0, name: $1) }, body)
    }

    /// Installs (or with nil removes) an authorizer: `policy` sees each action SQLite is about to
    /// compile and returns nil to allow it or a reason to deny it.
    func setAuthorizer(_ policy: AuthorizerPolicy?) {
        authorizer?.release()
        authorizer = nil
        guard let policy else {
            sqlite3_set_authorizer(db, nil, nil)
            return
        }
        let box = Unmanaged.passRetained(AuthorizerBox(policy))
        authorizer = box
        sqlite3_set_authorizer(db, { context, action, a, b, database, trigger in
            let box = Unmanaged<AuthorizerBox>.fromOpaque(context!).takeUnretainedValue()
            let text = { (p: UnsafePointer<CChar>?) in p.map { String(cString: $0) } }
            if let reason = box.policy(AuthorizerRequest(action: action, first: text(a), second: text(b), database: text(database), trigger: text(trigger))) {
                if box.denial == nil { box.denial = reason }
                return SQLITE_DENY
            }
            return SQLITE_OK
        }, box.toOpaque())
    }

    /// The first reason the authorizer gave since the last call, cleared by reading it.
    func takeDenial() -> String? {
        guard let box = authorizer?.takeUnretainedValue() else { return nil }
        defer { box.denial = nil }
        return box.denial
    }
}

/// What SQLite asks the authorizer: an action code and its arguments.
struct AuthorizerRequest {
    var action: Int32
    var first: String?
    var second: String?
    var database: String?
    var trigger: String?
}

typealias AuthorizerPolicy = (AuthorizerRequest) -> String?

private final class ProgressBox {
    let shouldStop: () -> Bool
    init(_ shouldStop: @escaping () -> Bool) { self.shouldStop = shouldStop }
}

private final class AuthorizerBox {
    let policy: AuthorizerPolicy
    var denial: String?
    init(_ policy: @escaping AuthorizerPolicy) { self.policy = policy }
}

/// A prepared statement; finalized on deinit.
final class SQLiteStatement {
    private let handle: OpaquePointer
    private let connection: SQLiteConnection
    let name: String

    fileprivate init(handle: OpaquePointer, connection: SQLiteConnection, name: String) {
        self.handle = handle
        self.connection = connection
        self.name = name
    }

    deinit { sqlite3_finalize(handle) }

    func bind(_ values: [SQLValue]) throws {
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
        for (i, value) in values.enumerated() { try bind(value, at: Int32(i + 1)) }
    }

    func bind(_ value: SQLValue, at index: Int32) throws {
        let rc: Int32
        switch value {
        case .null: rc = sqlite3_bind_null(handle, index)
        case .integer(let i): rc = sqlite3_bind_int64(handle, index, i)
        case .real(let d): rc = sqlite3_bind_double(handle, index, d)
        case .text(let s): rc = sqlite3_bind_text(handle, index, s, -1, kappa_sqlite_transient())
        case .blob(let b): rc = b.withUnsafeBytes { sqlite3_bind_blob(handle, index, $0.baseAddress, Int32($0.count), kappa_sqlite_transient()) }
        }
        guard rc == SQLITE_OK else { throw connection.error(rc, name, .step) }
    }

    /// Binds bytes as TEXT or BLOB in place (SQLITE_STATIC): they must stay valid until the next
    /// step has run, and be bound anew (or `clearBindings`) before any later one.
    func bindBytesInPlace(_ bytes: UnsafeRawBufferPointer, asText: Bool, at index: Int32) throws {
        let base = bytes.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!
        let rc = asText
            ? sqlite3_bind_text(handle, index, base.assumingMemoryBound(to: CChar.self), Int32(bytes.count), kappa_sqlite_static())
            : sqlite3_bind_blob(handle, index, base, Int32(bytes.count), kappa_sqlite_static())
        guard rc == SQLITE_OK else { throw connection.error(rc, name, .step) }
    }

    func clearBindings() { sqlite3_clear_bindings(handle) }

    func bindInt(_ value: Int64, at index: Int32) { sqlite3_bind_int64(handle, index, value) }
    func bindNull(at index: Int32) { sqlite3_bind_null(handle, index) }

    func reset() { sqlite3_reset(handle) }

    /// Steps once: true when a row is available.
    @discardableResult
    func step() throws -> Bool {
        let rc = sqlite3_step(handle)
        if rc == SQLITE_ROW { return true }
        if rc == SQLITE_DONE { return false }
        let error = connection.error(rc, name, .step)
        sqlite3_reset(handle)
        throw error
    }

    var columnCount: Int { Int(sqlite3_column_count(handle)) }

    /// True when the statement cannot change the database file (SQLite's own analysis of its
    /// program; `VACUUM`, even `VACUUM INTO`, is not read-only).
    var isReadOnly: Bool { sqlite3_stmt_readonly(handle) != 0 }

    /// The statement's SQL text.
    var sql: String { sqlite3_sql(handle).map { String(cString: $0) } ?? "" }

    func columnName(_ i: Int) -> String { String(cString: sqlite3_column_name(handle, Int32(i))) }

    func column(_ i: Int) -> SQLValue {
        let c = Int32(i)
        switch sqlite3_column_type(handle, c) {
        case SQLITE_INTEGER: return .integer(sqlite3_column_int64(handle, c))
        case SQLITE_FLOAT: return .real(sqlite3_column_double(handle, c))
        case SQLITE_TEXT: return .text(String(cString: sqlite3_column_text(handle, c)))
        case SQLITE_BLOB:
            let n = Int(sqlite3_column_bytes(handle, c))
            guard n > 0, let p = sqlite3_column_blob(handle, c) else { return .blob([]) }
            return .blob(Array(UnsafeRawBufferPointer(start: p, count: n)))
        default: return .null
        }
    }

    func row() -> [SQLValue] { (0..<columnCount).map(column) }
}

/// BEGIN, the body, COMMIT; ROLLBACK (and rethrow) when the body throws. Shared by the SQLite and
/// PostgreSQL connections, which differ only in how they run a statement.
func inTransaction<T>(_ name: String, begin: String, execute: (String, String) throws -> Void, _ body: () throws -> T) throws -> T {
    try execute(begin, "\(name): begin")
    do {
        let value = try body()
        try execute("COMMIT", "\(name): commit")
        return value
    } catch {
        try? execute("ROLLBACK", "\(name): rollback")
        throw error
    }
}
