#if Postgres
import Foundation
import Testing
@testable import KappaCore

/// Runs against the throwaway server `scripts/test` starts (KAPPA_TEST_POSTGRES).
@Suite(.enabled(if: StoreKind.postgresURL != nil, "needs the PostgreSQL server scripts/test starts"))
struct PostgresConnectionTests {
    static var url: String { StoreKind.postgresURL! }

    @Test func queriesReturnTypedValues() throws {
        let db = try PGConnection(url: Self.url)
        let table = "t_\(UInt32.random(in: 0...UInt32.max))"
        try db.execute("CREATE TABLE \(table) (k text PRIMARY KEY, n bigint, r double precision, b bytea, ok boolean)", name: "create")
        defer { try? db.execute("DROP TABLE \(table)", name: "drop") }
        _ = try db.transaction("insert") {
            try db.run("INSERT INTO \(table) VALUES ($1, $2, $3, $4, $5)", [.text("EUR"), .integer(42), .real(1.5), .blob([0, 255]), .text("true")], name: "insert")
        }
        let result = try db.exec("SELECT k, n, r, b, ok, NULL::text AS nothing FROM \(table)", name: "select")
        #expect(result.columns == ["k", "n", "r", "b", "ok", "nothing"])
        #expect(result.rows == [[.text("EUR"), .integer(42), .real(1.5), .blob([0, 255]), .integer(1), .null]])
    }

    @Test func errorsCarryTheSQLStateAndTheStatementName() throws {
        let db = try PGConnection(url: Self.url)
        do {
            _ = try db.query("SELECT * FROM no_such_table", [], name: "read nothing")
            Issue.record("no error")
        } catch let error as PostgresError {
            #expect(error.sqlState == "42P01")
            #expect(error.description.hasPrefix("read nothing: ERROR:  relation \"no_such_table\" does not exist"))
        }
    }

    @Test func aFailedConnectionNeverShowsThePassword() {
        do {
            _ = try PGConnection(url: "postgres://nobody:hunter2secret@127.0.0.1:1/none")
            Issue.record("connected to port 1")
        } catch {
            #expect(!"\(error)".contains("hunter2secret"))
            #expect("\(error)".contains("postgres://nobody:***@127.0.0.1:1/none"))
        }
    }
}
#endif
