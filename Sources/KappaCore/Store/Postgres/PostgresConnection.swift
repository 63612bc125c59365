#if Postgres
import CLibPQ
import Foundation

/// A PostgreSQL failure: SQLSTATE, the server's message and the statement's name (never bound
/// values, never the password).
public struct PostgresError: Error, Sendable, CustomStringConvertible {
    public var sqlState: String?
    public var message: String
    public var statement: String
    public var description: String { "\(statement): \(message)" + (sqlState.map { " (SQLSTATE \($0))" } ?? "") }
}

/// One libpq connection. Used by one owner at a time (a store's lane, or one reader), hence
/// `@unchecked Sendable`; the C pointer never leaves this file.
final class PGConnection: SQLConnection, @unchecked Sendable {
    private let conn: OpaquePointer
    /// The URL with its password replaced, for messages.
    let displayURL: String

    /// Connects to `url` (`postgres://user:password@host:port/db`).
    /// - Throws: `PostgresError` with the URL redacted.
    init(url: String) throws {
        displayURL = Redaction.url(url)
        guard let c = PQconnectdb(url) else {
            throw PostgresError(sqlState: "08001", message: "out of memory", statement: "connect \(displayURL)")
        }
        guard PQstatus(c) == CONNECTION_OK else {
            let message = String(cString: PQerrorMessage(c)).trimmingCharacters(in: .whitespacesAndNewlines)
            PQfinish(c)
            throw PostgresError(sqlState: "08001", message: Redaction.values(Redaction.secrets(in: url), in: Redaction.url(message)), statement: "connect \(displayURL)")
        }
        conn = c
        try execute(Self.sessionSettings, name: "connect \(displayURL)")
    }

    /// What every session sets: notices ("already exists, skipping") are not errors and must
    /// not reach the terminal.
    static let sessionSettings = "SET client_min_messages = warning"

    deinit { PQfinish(conn) }

    /// False once the connection to the server is lost (the server restarted or went away).
    var isUp: Bool { PQstatus(conn) == CONNECTION_OK }

    /// A way to cancel the statement this connection runs, from another thread (libpq's
    /// `PQcancel`, which is thread-safe); nil when the connection is down.
    func canceller() -> PGCanceller? { PQgetCancel(conn).map(PGCanceller.init) }

    func query(_ sql: String, _ values: [SQLValue], name: String) throws -> [[SQLValue]] {
        try exec(sql, values, name: name).rows
    }

    @discardableResult
    func run(_ sql: String, _ values: [SQLValue], name: String) throws -> Int {
        try exec(sql, values, name: name).changed
    }

    /// Runs `sql` with text parameters (`$1`, `$2`…); returns the rows, each value typed by its
    /// column's type (integers, floating point, booleans as 0/1, bytea as blobs, the rest as
    /// text), their column names, and how many rows the statement changed.
    @discardableResult
    func exec(_ sql: String, _ values: [SQLValue] = [], name: String) throws -> (columns: [String], rows: [[SQLValue]], changed: Int) {
        let texts: [String?] = values.map { v in
            switch v {
            case .null: return nil
            case .integer(let i): return String(i)
            case .real(let d): return "\(d)"
            case .text(let s): return s
            case .blob(let b): return "\\x" + b.map { String(format: "%02x", $0) }.joined()
            }
        }
        let cStrings = texts.map { $0.map { strdup($0) } ?? nil }
        defer { cStrings.forEach { free($0) } }
        let pointers = cStrings.map { UnsafePointer<CChar>($0) }
        let result = pointers.withUnsafeBufferPointer { buf in
            PQexecParams(conn, sql, Int32(values.count), nil, buf.baseAddress, nil, nil, 0)
        }
        defer { PQclear(result) }
        let status = PQresultStatus(result)
        guard status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK else {
            let state = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
            let message = String(cString: PQresultErrorMessage(result)).trimmingCharacters(in: .whitespacesAndNewlines)
            throw PostgresError(sqlState: state ?? (isUp ? nil : "08006"), message: message.isEmpty ? String(cString: PQerrorMessage(conn)) : message, statement: name)
        }
        let changed = Int(String(cString: PQcmdTuples(result))) ?? 0
        let columns = (0..<PQnfields(result)).map { String(cString: PQfname(result, $0)) }
        let types = (0..<PQnfields(result)).map { PQftype(result, $0) }
        var rows: [[SQLValue]] = []
        for r in 0..<PQntuples(result) {
            rows.append((0..<PQnfields(result)).map { c in
                if PQgetisnull(result, r, c) == 1 { return .null }
                let text = String(cString: PQgetvalue(result, r, c))
                switch types[Int(c)] {
                case 20, 21, 23: return Int64(text).map(SQLValue.integer) ?? .text(text)  // int8, int2, int4
                case 700, 701: return Double(text).map(SQLValue.real) ?? .text(text)  // float4, float8
                case 1700: return Int64(text).map(SQLValue.integer) ?? Double(text).map(SQLValue.real) ?? .text(text)  // numeric
                case 16: return .integer(text == "t" ? 1 : 0)  // bool
                case 17: return .blob(Self.bytea(text))
                default: return .text(text)
                }
            })
        }
        return (columns, rows, changed)
    }

    /// Parses and analyzes `sql` as the unnamed prepared statement, without planning or running
    /// it, and returns the names of the columns it would return (none for a statement that
    /// returns no rows). The extended protocol takes exactly one statement: text holding two is
    /// refused by the server (SQLSTATE 42601).
    /// - Throws: `PostgresError`.
    func describe(_ sql: String, name: String) throws -> [String] {
        let prepared = PQprepare(conn, "", sql, 0, nil)
        defer { PQclear(prepared) }
        try check(prepared, name: name)
        let description = PQdescribePrepared(conn, "")
        defer { PQclear(description) }
        try check(description, name: name)
        return (0..<PQnfields(description)).map { String(cString: PQfname(description, $0)) }
    }

    private func check(_ result: OpaquePointer?, name: String) throws {
        guard PQresultStatus(result) != PGRES_COMMAND_OK else { return }
        let state = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
        let message = String(cString: PQresultErrorMessage(result)).trimmingCharacters(in: .whitespacesAndNewlines)
        throw PostgresError(sqlState: state ?? (isUp ? nil : "08006"), message: message.isEmpty ? String(cString: PQerrorMessage(conn)) : message, statement: name)
    }

    /// Runs one or more statements without parameters.
    func execute(_ sql: String, name: String) throws {
        let result = PQexec(conn, sql)
        defer { PQclear(result) }
        let status = PQresultStatus(result)
        guard status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK else {
            let state = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
            throw PostgresError(sqlState: state ?? (isUp ? nil : "08006"), message: String(cString: PQresultErrorMessage(result)).trimmingCharacters(in: .whitespacesAndNewlines),
                                statement: name)
        }
    }

    /// Runs `sql` (`COPY … FROM STDIN`) sending `data` as its rows, in pieces of 1 MiB.
    /// - Throws: `PostgresError` with the server's SQLSTATE (a row it cannot read is class 22).
    func copyIn(_ sql: String, data: [UInt8], name: String) throws {
        let start = PQexec(conn, sql)
        let status = PQresultStatus(start)
        if status != PGRES_COPY_IN {
            defer { PQclear(start) }
            try check(start, name: name)
            throw PostgresError(sqlState: nil, message: "the server did not start the COPY", statement: name)
        }
        PQclear(start)
        var failure: String?
        data.withUnsafeBufferPointer { buf in
            var at = 0
            while at < buf.count {
                let n = min(1 << 20, buf.count - at)
                let sent = (buf.baseAddress! + at).withMemoryRebound(to: CChar.self, capacity: n) { PQputCopyData(conn, $0, Int32(n)) }
                if sent != 1 { failure = String(cString: PQerrorMessage(conn)); return }
                at += n
            }
        }
        _ = PQputCopyEnd(conn, failure)
        // Every result, to the end (the first error is the one to report).
        var error: PostgresError?
        while let result = PQgetResult(conn) {
            defer { PQclear(result) }
            if error == nil {
                do { try check(result, name: name) } catch let e as PostgresError { error = e }
            }
        }
        if let error { throw error }
        if let failure { throw PostgresError(sqlState: isUp ? nil : "08006", message: failure, statement: name) }
    }

    /// A repeatable-read, read-only transaction: every statement sees the same snapshot.
    func readTransaction<T>(_ name: String, _ body: () throws -> T) throws -> T {
        try inTransaction(name, begin: "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", execute: { sql, name in
            if sql == "ROLLBACK" && !isUp { return }
            try execute(sql, name: name)
        }, body)
    }

    /// Runs `body` in a transaction; rolls back when it throws.
    func transaction<T>(_ name: String, _ body: () throws -> T) throws -> T {
        try inTransaction(name, begin: "BEGIN", execute: { sql, name in
            // After a lost connection a ROLLBACK cannot reach the server (nor is it needed).
            if sql == "ROLLBACK" && !isUp { return }
            try execute(sql, name: name)
        }, body)
    }

    private static func bytea(_ text: String) -> [UInt8] {
        guard text.hasPrefix("\\x") else { return Array(text.utf8) }
        var out: [UInt8] = []
        var i = text.index(text.startIndex, offsetBy: 2)
        while i < text.endIndex, let j = text.index(i, offsetBy: 2, limitedBy: text.endIndex) {
            if let b = UInt8(text[i..<j], radix: 16) { out.append(b) }
            i = j
        }
        return out
    }
}
/// libpq's cancel object for one connection: asks the server to stop what that connection's
/// session runs now. Safe to use from any thread while the connection runs a statement.
final class PGCanceller: @unchecked Sendable {
    private let cancel: OpaquePointer

    fileprivate init(_ cancel: OpaquePointer) { self.cancel = cancel }
    deinit { PQfreeCancel(cancel) }

    /// Sends the request and waits until the server has taken it (a statement that has already
    /// ended is not affected); false when it could not be sent.
    @discardableResult
    func send() -> Bool {
        var error = [CChar](repeating: 0, count: 256)
        return PQcancel(cancel, &error, Int32(error.count)) == 1
    }
}
#endif
