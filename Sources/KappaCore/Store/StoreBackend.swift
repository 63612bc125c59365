/// How one database spells what the catalog says: placeholders, names, types, and the few
/// statement forms that differ. The catalog's statements are written once, in `SQLCatalog`, with
/// these filled in.
protocol SQLDialect: Sendable {
    /// The n-th placeholder, counting from 1 (`?1`, `$1`).
    func placeholder(_ n: Int) -> String
    /// A table or view of Kappa's, quoted and, where the database has schemas, qualified.
    func table(_ name: String) -> String
    /// The type of a manifest column.
    func columnType(_ type: JobSpec.ColumnType) -> String
    /// 64-bit integers, raw bytes, and an auto-numbered primary key.
    var bigint: String { get }
    var blob: String { get }
    var serialKey: String { get }
    /// After `CREATE TABLE (…)` of a table with a primary key (SQLite: `WITHOUT ROWID`).
    var keyedTableSuffix: String { get }
    /// After a `SELECT` of rows the transaction will update, or whose change must wait for it.
    var forUpdate: String { get }
    var forShare: String { get }
}

extension SQLDialect {
    /// `$1, $2, …` from `from`.
    func placeholders(_ count: Int, from: Int = 1) -> String {
        (from..<from + count).map(placeholder).joined(separator: ", ")
    }
}

/// What one database supplies beyond its dialect: its connections, its schema bookkeeping, and
/// what is truly its own: the job-SQL sandbox, bulk loading of `batch`, and per-version objects
/// (PostgreSQL's roles). Used only on the store's lane, one call at a time.
protocol StoreBackend: AnyObject {
    var dialect: any SQLDialect { get }
    /// The database, for messages (a file path, or a URL without its password).
    var displayName: String { get }

    /// The writer connection; re-established when it was lost (then session state is gone).
    /// - Throws: an error of class `.unreachable` while the server cannot be reached.
    func connection() throws -> any SQLConnection

    /// The catalog's schema version (0 for a new database), and recording a new one; called in a
    /// transaction that `lockSchema` began with.
    func lockSchema(_ c: any SQLConnection) throws
    func schemaVersion(_ c: any SQLConnection) throws -> Int
    func setSchemaVersion(_ c: any SQLConnection, _ version: Int) throws

    /// Serializes decisions about one job among processes (inside the caller's transaction).
    func lockJob(_ c: any SQLConnection, _ job: String) throws
    /// Whether a table or view of this name (case-insensitive) exists in Kappa's namespace.
    func relationExists(_ c: any SQLConnection, _ name: String) throws -> Bool
    /// Whether the reader view `view` selects from `table` now.
    func viewReads(_ c: any SQLConnection, view: String, table: String) throws -> Bool

    /// Objects a version needs beside its tables (PostgreSQL: the role its SQL runs under).
    func createVersionObjects(_ c: any SQLConnection, _ spec: JobSpec) throws
    func dropVersionObjects(_ c: any SQLConnection, job: String, version: Int) throws

    /// Checks a job's SQL at deploy, under its permissions, without running it on data.
    /// - Throws: `CatalogError.invalidJob` naming `transform.sql`.
    func checkJobSQL(_ c: any SQLConnection, _ spec: JobSpec, statements: String) throws
    /// Readies `batch` for a version's batch transaction (before any savepoint in it), with a
    /// column for each of its `source.fields`.
    func prepareBatch(_ c: any SQLConnection, _ spec: JobSpec) throws
    /// Makes `records[range]` the contents of `batch`, with `typed`'s fields of each (the
    /// version's `source.fields`, decoded once; nil when it has none).
    func loadBatch(_ c: any SQLConnection, _ records: LogRecords, range: Range<Int>, typed: TypedBatch?) throws
    /// Runs a job's SQL over `batch` under its permissions.
    /// - Throws: the database's error (classified), or `JobFailure` for a refused action.
    func runJobSQL(_ c: any SQLConnection, _ spec: JobSpec, statements: String) throws
    /// Evaluates a promotion check (`SELECT CASE WHEN … THEN 1 ELSE 0 END`) allowed to read only
    /// `tables`, stopped after `limitMs` (it runs on the catalog's connection: a check that
    /// never ends must not hold the catalog); true when it holds.
    /// - Throws: `CheckTimeLimit` when stopped.
    func evaluateCheck(_ c: any SQLConnection, _ sql: String, readable tables: [String], limitMs: Int64) throws -> Bool
    /// Checks a promotion check at deploy, as `evaluateCheck` would run it, without running it.
    /// - Throws: the database's error (a refusal names what the check may not do).
    func checkPromotionCheck(_ c: any SQLConnection, _ sql: String, readable tables: [String]) throws
    /// Forgets what was cached for a version (compiled statements).
    func forget(job: String, version: Int)
    /// Bounds the job SQL that runs next on `c` by `limit` (nil: lifts the bound): SQLite stops
    /// the statement when `limit.shouldStop()` says so; PostgreSQL sets `statement_timeout` to
    /// what is left of the budget and cancels the statement when `limit.stopIfDue` says so. A stopped statement fails with an error of class
    /// `.interrupted`.
    func limitJobTime(_ c: any SQLConnection, _ limit: JobTimeLimit?) throws
    /// Whether a write transaction holds the whole database (SQLite's one write lock), so that
    /// other processes wait for a long job statement unseen (`JobTimeLimit.unaskedAfterMs`).
    var writerLocksDatabase: Bool { get }
    /// A transaction failed: session state created in it (temporary tables, grants) is gone.
    func transactionFailed()

    /// Read queries, on connections of their own (never the writer's).
    var readers: any ReadPool { get }
}

extension StoreBackend {
    /// PostgreSQL compiles a check only when it runs it, at promote (in a savepoint always undone).
    func checkPromotionCheck(_ c: any SQLConnection, _ sql: String, readable tables: [String]) throws {}
}

/// Where read-only queries run: connections apart from the writer's, used one caller at a time.
public protocol ReadPool: Sendable {
    /// Runs `sql` read-only (blocking; called on the blocking executor).
    func query(_ sql: String) throws -> QueryResult
}

/// Bytes that a record's key or value holds, as `batch` shows them on every store.
enum BatchBytes {
    /// The key as text: valid UTF-8 without NUL bytes; else nil (`key_bytes` has the bytes).
    static func keyText(_ key: ArraySlice<UInt8>?) -> String? {
        guard let key, isText(key) else { return nil }
        return String(decoding: key, as: UTF8.self)
    }

    /// Whether `key` shows as text in `batch.key` (no String built: SQLite binds the bytes).
    static func isText(_ key: ArraySlice<UInt8>) -> Bool { !key.contains(0) && isUTF8(key) }

    /// A SQL job reads values as JSON: one that is not (invalid UTF-8, a NUL byte, not JSON) is
    /// a bad record on every store, with its bytes intact in the dead-letter table.
    /// A null value (a tombstone) is SQL NULL, not a bad record. JSON that escapes NUL
    /// (`\u0000`) is a bad record on every store too: PostgreSQL's `jsonb` cannot hold it.
    static func checkValue(_ record: LogRecord) throws {
        guard let value = record.value else { return }
        switch JSONScanner.validity(value) {
        case .valid: return
        case .invalid: throw BadValueError(message: "the value is not JSON text (\(value.count) bytes)")
        case .nulEscape: throw BadValueError(message: nulEscapeMessage)
        }
    }

    static let nulEscapeMessage = "the value escapes a NUL character (\\u0000), which PostgreSQL's jsonb cannot store, so no store takes it"
}

/// A record's value that a SQL job cannot read: a bad record on every store.
struct BadValueError: ClassifiedStoreError {
    var message: String
    var storeClass: StoreErrorClass { .data }
}
