#if Postgres
import Foundation
import Synchronization

/// PostgreSQL's spelling of the catalog: everything in Kappa's schema.
struct PostgresDialect: SQLDialect {
    let schema: String
    func placeholder(_ n: Int) -> String { "$\(n)" }
    func table(_ name: String) -> String { "\(schema).\(SQLText.quote(name))" }
    func columnType(_ type: JobSpec.ColumnType) -> String {
        switch type {
        case .text: return "TEXT"
        case .integer, .bigint: return "BIGINT"
        case .real, .double: return "DOUBLE PRECISION"
        case .numeric: return "NUMERIC"
        case .boolean: return "BOOLEAN"
        case .blob: return "BYTEA"
        }
    }
    var bigint: String { "BIGINT" }
    var blob: String { "BYTEA" }
    var serialKey: String { "BIGSERIAL PRIMARY KEY" }
    var keyedTableSuffix: String { "" }
    var forUpdate: String { "FOR UPDATE" }
    var forShare: String { "FOR SHARE" }
}

/// The store's database on PostgreSQL (trait `Postgres`): catalog, version tables and reader
/// views in one schema, with transactional DDL so that a switch is one transaction. What is
/// PostgreSQL's own: a role per version and the sandbox its SQL runs in
/// (`PostgresBackend+Sandbox.swift`), the session's temporary `batch` table, and connections
/// that come back after the server restarts.
///
/// Used only on its store's lane, hence `@unchecked Sendable`.
final class PostgresBackend: StoreBackend, @unchecked Sendable {
    let dialect: any SQLDialect
    let schema: String
    let displayName: String
    let readers: any ReadPool
    private let url: String
    private var link: ReconnectingLink
    /// This session's temporary `batch` table exists, and the roles allowed to read it.
    /// The `source.fields` this session's temporary `batch` table has columns for; nil: no
    /// table (a new session, or a failed transaction undid it).
    var batchFields: [JobSpec.Column]?
    var grantedRoles: Set<String> = []
    /// Roles whose sandbox function is known to exist (`PostgresBackend+Sandbox.swift`).
    var sandboxed: Set<String> = []
    /// A job's statement failed after it may have taken session-level advisory locks, which
    /// outlive its rollback: they are released before the next transaction.
    var unlockPending = false
    /// Cancels the job statement running now when its limit says so.
    private var watchdog: CancelWatchdog?
    /// Roles are shared by every database of a server: theirs start with the database and schema.
    private(set) var rolePrefix = ""

    /// Connects; the first connection must succeed (a wrong URL or password is the operator's to fix).
    /// - Throws: `PostgresError` (URL without its password), `CatalogError.notACatalog` for a bad schema name.
    init(url: String, schema: String) throws {
        guard ManifestParser.isIdentifier(schema) else {
            throw CatalogError(.notACatalog, "\"\(schema)\" is not a valid schema name")
        }
        self.url = url
        self.schema = schema
        dialect = PostgresDialect(schema: schema)
        displayName = "schema \(schema) on \(Redaction.url(url))"
        link = ReconnectingLink(url: url)
        readers = PostgresReaders(url: url, schema: schema)
        let c = try link.connection()
        let database = try c.query("SELECT current_database()", [], name: "connect").first?.first?.display ?? ""
        rolePrefix = "kappa_\(database)_\(schema)_".lowercased()
    }

    func connection() throws -> any SQLConnection {
        let (c, fresh) = try link.connectionNoting()
        if fresh {
            // A new session: the old one's temporary table, grants and locks are gone with it.
            batchFields = nil
            grantedRoles = []
            unlockPending = false
        } else if unlockPending {
            try c.execute("SELECT pg_advisory_unlock_all()", name: "job sandbox")
            unlockPending = false
        }
        return c
    }

    func lockSchema(_ c: any SQLConnection) throws {
        _ = try c.query("SELECT pg_advisory_xact_lock(hashtext($1))", [.text("kappa catalog \(schema)")], name: "catalog: lock")
        // Created only when missing: a catalog user that owns its schema needs no CREATE on the database.
        if try c.query("SELECT 1 FROM pg_namespace WHERE nspname = $1", [.text(schema)], name: "catalog: schema").isEmpty {
            try c.execute("CREATE SCHEMA \(schema)", name: "catalog: schema")
        }
        try c.execute("CREATE TABLE IF NOT EXISTS \(schema).kappa_schema (version INTEGER NOT NULL)", name: "catalog: schema")
    }

    func schemaVersion(_ c: any SQLConnection) throws -> Int {
        guard let row = try c.query("SELECT version FROM \(schema).kappa_schema", [], name: "catalog: schema version").first else { return 0 }
        return Int(try CatalogRow(row, table: "kappa_schema", columns: ["version"]).int(0))
    }

    func setSchemaVersion(_ c: any SQLConnection, _ version: Int) throws {
        try c.run("DELETE FROM \(schema).kappa_schema", [], name: "catalog: schema version")
        try c.run("INSERT INTO \(schema).kappa_schema VALUES ($1)", [.integer(Int64(version))], name: "catalog: schema version")
    }

    func lockJob(_ c: any SQLConnection, _ job: String) throws {
        _ = try c.query("SELECT pg_advisory_xact_lock(hashtext($1))", [.text("kappa job \(job)")], name: "lock job")
    }

    func relationExists(_ c: any SQLConnection, _ name: String) throws -> Bool {
        try !c.query("SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND lower(c.relname) = lower($2)",
                     [.text(schema), .text(name)], name: "find relation").isEmpty
    }

    func viewReads(_ c: any SQLConnection, view: String, table: String) throws -> Bool {
        try !c.query("""
            SELECT 1 FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class
            JOIN pg_class t ON t.oid = d.refobjid JOIN pg_namespace n ON n.oid = t.relnamespace
            WHERE n.nspname = $1 AND v.relname = $2 AND t.relname = $3
            """, [.text(schema), .text(view), .text(table)], name: "find view dependency").isEmpty
    }

    /// GRANT and REVOKE on the schema rewrite one row of `pg_namespace`: of two transactions
    /// doing so at once (two deploys, a deploy and a promote check), the later would fail with
    /// "tuple concurrently updated". Under this lock it waits instead. Taken after any job lock.
    func lockSchemaGrants(_ c: any SQLConnection) throws {
        _ = try c.query("SELECT pg_advisory_xact_lock(hashtext($1))", [.text("kappa grants \(schema)")], name: "lock schema grants")
    }

    // MARK: Roles

    /// `kappa_<database>_<schema>_<job>_v<N>`: roles are per server, so two databases (or schemas)
    /// with the same job never share one. Names over PostgreSQL's 63 bytes end in a hash instead.
    func role(job: String, version: Int) -> String { roleName("\(rolePrefix)\(job)_v\(version)") }

    /// The role promotion checks run under, created for each check and undone with it (no
    /// version's role ends in `check`).
    var checkRole: String { roleName("\(rolePrefix)check") }

    private func roleName(_ name: String) -> String {
        let name = name.lowercased()
        guard name.utf8.count > 63 else { return name }
        let hash = String(CRC32C.checksum(Array(name.utf8)), radix: 16)
        return String(decoding: name.utf8.prefix(50), as: UTF8.self) + "_" + hash
    }

    func createVersionObjects(_ c: any SQLConnection, _ spec: JobSpec) throws {
        let name = role(job: spec.job, version: spec.version)
        let role = SQLText.quote(name)
        try lockSchemaGrants(c)
        try c.execute("""
            DROP FUNCTION IF EXISTS \(sandboxFunction(name))(); DROP ROLE IF EXISTS \(role); CREATE ROLE \(role) NOLOGIN; GRANT \(role) TO CURRENT_USER;
            GRANT USAGE ON SCHEMA \(schema) TO \(role);
            GRANT SELECT, INSERT, UPDATE, DELETE ON \(dialect.table(spec.versionTable)) TO \(role)
            """, name: "create job role")
    }

    func dropVersionObjects(_ c: any SQLConnection, job: String, version: Int) throws {
        // The role goes too, unless another session still holds a grant to it (its temporary
        // batch table): then it stays, without rights on anything of Kappa's.
        let name = self.role(job: job, version: version)
        let role = SQLText.quote(name)
        try c.execute("DROP FUNCTION IF EXISTS \(sandboxFunction(name))()", name: "drop sandbox function")
        sandboxed.remove(name)
        try lockSchemaGrants(c)
        try c.execute("SAVEPOINT kappa_role", name: "drop role")
        do {
            try c.execute("REVOKE ALL ON SCHEMA \(schema) FROM \(role); DROP ROLE IF EXISTS \(role)", name: "drop role")
            try c.execute("RELEASE SAVEPOINT kappa_role", name: "drop role")
        } catch {
            try c.execute("ROLLBACK TO SAVEPOINT kappa_role; RELEASE SAVEPOINT kappa_role", name: "drop role")
        }
    }

    // MARK: Batches

    /// `batch` is loaded with one `COPY … FROM STDIN` (text format) per batch.
    func loadBatch(_ c: any SQLConnection, _ records: LogRecords, range: Range<Int>, typed: TypedBatch?) throws {
        guard let pg = c as? PGConnection else { preconditionFailure("a PostgreSQL store's connection is a PGConnection") }
        try c.execute("DELETE FROM pg_temp.batch", name: "clear batch")
        guard !range.isEmpty else { return }
        try pg.copyIn("COPY pg_temp.batch FROM STDIN", data: Self.copyRows(records, range: range, typed: typed), name: "load batch")
    }

    /// `records[range]` as the rows of COPY's text format: columns split by tabs, `\N` for NULL,
    /// backslash, tab, newline and carriage return escaped; bytea as `\\x` and hex digits.
    static func copyRows(_ records: LogRecords, range: Range<Int>, typed: TypedBatch?) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(range.count * 96)
        let hex = Array("0123456789abcdef".utf8)
        let null: [UInt8] = [0x5C, 0x4E]  // \N
        func escaped<Bytes: Sequence>(_ bytes: Bytes) where Bytes.Element == UInt8 {
            for b in bytes {
                switch b {
                case 0x5C: out += [0x5C, 0x5C]
                case 0x09: out += [0x5C, 0x74]
                case 0x0A: out += [0x5C, 0x6E]
                case 0x0D: out += [0x5C, 0x72]
                default: out.append(b)
                }
            }
        }
        func decimal(_ n: Int64) { out += Array(String(n).utf8) }
        for i in range {
            let r = records[i]
            decimal(Int64(r.partition)); out.append(0x09)
            decimal(r.offset); out.append(0x09)
            decimal(r.timestamp); out.append(0x09)
            if let key = r.key, BatchBytes.isText(key) { escaped(key) } else { out += null }
            out.append(0x09)
            if let value = r.value { escaped(value) } else { out += null }  // checked to be JSON text; nil: a tombstone
            out.append(0x09)
            if let key = r.key {
                out += [0x5C, 0x5C, 0x78]  // \\x: bytea's hex form, its backslash escaped
                for b in key { out.append(hex[Int(b >> 4)]); out.append(hex[Int(b & 0x0F)]) }
            } else {
                out += null
            }
            if let typed {
                for v in typed.row(i) {
                    out.append(0x09)
                    switch v {
                    case .null: out += null
                    case .integer(let n): decimal(n)
                    case .real(let d): out += Array("\(d)".utf8)
                    case .text(let t): escaped(t.utf8)
                    case .blob(let b): for x in b { out.append(hex[Int(x >> 4)]); out.append(hex[Int(x & 0x0F)]) }  // (no field is a BLOB)
                    }
                }
            }
            out.append(0x0A)
        }
        return out
    }

    /// `statement_timeout` for the rest of the transaction (the job's SQL), reset after it; and a
    /// watchdog that cancels the statement when `limit` says so (waiting work, shutdown), as
    /// SQLite's progress handler stops it.
    /// Row locks: other processes' writes wait only for the rows this transaction wrote.
    var writerLocksDatabase: Bool { false }

    func limitJobTime(_ c: any SQLConnection, _ limit: JobTimeLimit?) throws {
        watchdog?.stop()  // before anything else runs on the connection
        watchdog = nil
        try c.execute("SET LOCAL statement_timeout = \(limit.map { max(1, $0.remainingMs) } ?? 0)", name: "job time limit")
        if let limit, let canceller = (c as? PGConnection)?.canceller() {
            watchdog = CancelWatchdog(limit: limit, canceller: canceller)
        }
    }

    func forget(job: String, version: Int) { sandboxed.remove(role(job: job, version: version)) }

    func transactionFailed() {
        // Whatever the transaction created (the batch table, grants, functions) is undone.
        batchFields = nil
        grantedRoles = []
        sandboxed = []
    }
}

/// Polls a job statement's `JobTimeLimit` every 25 ms from a queue of its own and cancels the
/// statement (`PGCanceller`) when it should stop. `stop()` returns once no check runs any more.
final class CancelWatchdog {
    private let timer: any DispatchSourceTimer
    private static let queue = DispatchQueue(label: "kappa.postgres.cancel")

    init(limit: JobTimeLimit, canceller: PGCanceller) {
        timer = DispatchSource.makeTimerSource(queue: Self.queue)
        timer.schedule(deadline: .now() + .milliseconds(25), repeating: .milliseconds(25), leeway: .milliseconds(5))
        timer.setEventHandler { limit.stopIfDue { canceller.send() } }
        timer.activate()
    }

    func stop() {
        timer.cancel()
        Self.queue.sync {}  // a check under way ends first
    }
}

/// A connection that is re-established when lost, with backoff: after a failed attempt, calls
/// fail at once (as unreachable) until the next attempt is due, from 100 ms doubling to 5 s.
struct ReconnectingLink {
    let url: String
    private var current: PGConnection?
    private var nextAttempt: Int64 = 0
    private var delayMs: Int64 = 100
    private var lastError: PostgresError?

    init(url: String) { self.url = url }

    mutating func connection() throws -> PGConnection { try connectionNoting().0 }

    /// The connection, and whether it is a new session.
    mutating func connectionNoting() throws -> (PGConnection, Bool) {
        if let current, current.isUp { return (current, false) }
        current = nil
        let now = currentTimeMillis()
        if now < nextAttempt, let lastError { throw lastError }
        do {
            let c = try PGConnection(url: url)
            current = c
            delayMs = 100
            lastError = nil
            return (c, true)
        } catch let error as PostgresError {
            lastError = error
            nextAttempt = now + delayMs
            delayMs = min(delayMs * 2, 5_000)
            throw error
        }
    }
}

/// Read queries on a small pool of connections apart from the writer's, each in a read-only
/// transaction with Kappa's schema first in the search path. A lost connection is dropped and
/// the next query opens a new one.
final class PostgresReaders: ReadPool {
    private let url: String
    private let schema: String
    private let idle = Mutex<[PGConnection]>([])
    private let keep = 4

    init(url: String, schema: String) {
        self.url = url
        self.schema = schema
    }

    func query(_ sql: String) throws -> QueryResult {
        let db = try idle.withLock { $0.popLast() } ?? PGConnection(url: url)
        defer {
            if db.isUp { idle.withLock { if $0.count < keep { $0.append(db) } } }
        }
        return try db.transaction("query") {
            try db.execute("SET TRANSACTION READ ONLY; SET LOCAL search_path = \(schema), public", name: "query")
            let result = try db.exec(sql, name: "query")
            return QueryResult(columns: result.columns, rows: result.rows)
        }
    }
}

extension PostgresError: ClassifiedStoreError {
    public var storeClass: StoreErrorClass {
        guard let state = sqlState else { return .other }
        if state.hasPrefix("08") || ["57P01", "57P02", "57P03"].contains(state) { return .unreachable }
        if state == "53100" { return .diskFull }
        if state == "57014" { return .interrupted }  // statement_timeout, a cancel
        if ["40001", "40P01", "55P03"].contains(state) { return .conflict }
        // Data exceptions and integrity constraint violations: a record's content caused them.
        if state.hasPrefix("22") || state.hasPrefix("23") { return .data }
        if state.hasPrefix("42") { return .jobSQL }
        return .other
    }
}

extension Store {
    /// The store in `schema` of the PostgreSQL database `url` names (created and migrated when
    /// needed).
    /// - Throws: `PostgresError` (URL without its password), `CatalogError.newerSchema`.
    public static func postgres(url: String, schema: String = "kappa") throws -> Store {
        try Store(backend: PostgresBackend(url: url, schema: schema))
    }
}
#endif
