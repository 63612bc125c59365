/// The seam each database supplies to the one catalog (`SQLCatalog`): statements with bound
/// values, typed rows, transactions and savepoints. A connection has one owner at a time (the
/// store's lane), so implementations need no locking of their own.
protocol SQLConnection: AnyObject {
    /// Runs one statement with `values` bound to its placeholders; returns its rows, typed.
    func query(_ sql: String, _ values: [SQLValue], name: String) throws -> [[SQLValue]]

    /// Runs one statement with `values` bound; returns how many rows it changed.
    @discardableResult
    func run(_ sql: String, _ values: [SQLValue], name: String) throws -> Int

    /// Runs one or more statements without values (DDL).
    func execute(_ sql: String, name: String) throws

    /// Runs `body` in a transaction that takes the write lock at once; rolled back when it throws.
    func transaction<T>(_ name: String, _ body: () throws -> T) throws -> T

    /// Runs `body` in a read-only transaction that sees one consistent state of the database
    /// and takes no write lock.
    func readTransaction<T>(_ name: String, _ body: () throws -> T) throws -> T
}

extension SQLConnection {
    /// Runs `body` in a savepoint, rolled back (and released) when it throws.
    func savepoint<T>(_ body: () throws -> T) throws -> T {
        try execute("SAVEPOINT kappa_sp", name: "savepoint")
        do {
            let value = try body()
            try execute("RELEASE SAVEPOINT kappa_sp", name: "savepoint")
            return value
        } catch {
            // After a lost connection this fails too, and the transaction is gone anyway.
            try? execute("ROLLBACK TO SAVEPOINT kappa_sp; RELEASE SAVEPOINT kappa_sp", name: "savepoint")
            throw error
        }
    }
}

/// The classes every store's errors fall into, so that the catalog, the workers and the bad-record
/// policy decide the same way on every database.
public enum StoreErrorClass: String, Sendable {
    /// The record's data may have caused it (malformed JSON, a constraint, a type). It is a bad
    /// record only if the SQL runs without it over an empty batch (`BadRecords`).
    case data
    /// The job's SQL is wrong (a syntax error, a missing column or function, a refused action).
    case jobSQL
    /// Another transaction holds a lock, or a serialization conflict: try again.
    case conflict
    /// The server cannot be reached (down, restarting, connection lost): try again later.
    case unreachable
    /// The disk is full.
    case diskFull
    /// The statement was stopped: a time limit, or the worker giving way or shutting down.
    case interrupted
    /// Anything else (a bug, a damaged catalog): never blamed on a record.
    case other
}

/// A store's native error that knows its class (`SQLiteError`, `PostgresError`).
public protocol ClassifiedStoreError: Error, Sendable {
    var storeClass: StoreErrorClass { get }
    /// The database's message, safe to print (no bound values).
    var message: String { get }
}

extension Error {
    /// This error's class when a store raised it, else nil.
    var storeErrorClass: StoreErrorClass? {
        guard let classified = self as? any ClassifiedStoreError else { return nil }
        return classified.storeClass
    }
}

/// A catalog row, read with the column's name so that a value that is not what the schema says
/// is an error naming the table, the column and the row, never a default.
struct CatalogRow {
    let values: [SQLValue]
    let table: String
    let columns: [String]
    /// What the row is about (`job btc v2`), for messages.
    var context: String

    init(_ values: [SQLValue], table: String, columns: [String], context: String = "") {
        self.values = values
        self.table = table
        self.columns = columns
        self.context = context
    }

    private func value(_ i: Int) throws -> SQLValue {
        guard i < values.count else { throw bad(i, "is missing") }
        return values[i]
    }

    private func bad(_ i: Int, _ what: String) -> CatalogError {
        let column = i < columns.count ? columns[i] : "#\(i)"
        return CatalogError(.damagedCatalog, "catalog table \(table), column \(column)\(context.isEmpty ? "" : " (\(context))") \(what)")
    }

    func int(_ i: Int) throws -> Int64 {
        switch try value(i) {
        case .integer(let n): return n
        case .null: throw bad(i, "is NULL, not an integer")
        case let other: throw bad(i, "holds \(other.kindName) \(JSONScanner.quote(String(other.display.prefix(40)))), not an integer")
        }
    }

    func text(_ i: Int) throws -> String {
        switch try value(i) {
        case .text(let s): return s
        case .null: throw bad(i, "is NULL, not text")
        case let other: throw bad(i, "holds \(other.kindName), not text")
        }
    }

    func optionalText(_ i: Int) throws -> String? {
        if case .null = try value(i) { return nil }
        return try text(i)
    }

    func optionalInt(_ i: Int) throws -> Int64? {
        if case .null = try value(i) { return nil }
        return try int(i)
    }

    func state(_ i: Int) throws -> VersionState {
        let raw = try text(i)
        guard let state = VersionState(rawValue: raw) else { throw bad(i, "holds the unknown state \(JSONScanner.quote(String(raw.prefix(40))))") }
        return state
    }

    func optionalState(_ i: Int) throws -> VersionState? {
        if case .null = try value(i) { return nil }
        return try state(i)
    }
}

extension SQLValue {
    /// `an integer`, `text`, … for messages.
    var kindName: String {
        switch self {
        case .null: return "NULL"
        case .integer: return "an integer"
        case .real: return "a real"
        case .text: return "text"
        case .blob: return "a blob"
        }
    }
}
