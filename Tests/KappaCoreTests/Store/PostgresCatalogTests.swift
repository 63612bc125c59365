#if Postgres
import Foundation
import Testing
@testable import KappaCore

/// The catalog on the throwaway server `scripts/test` starts; each test in a schema of its own.
@Suite(.enabled(if: ProcessInfo.processInfo.environment["KAPPA_TEST_POSTGRES"] != nil, "needs the PostgreSQL server scripts/test starts"))
struct PostgresCatalogTests {
    static func catalog() throws -> PostgresCatalog {
        try PostgresCatalog(url: PostgresConnectionTests.url, schema: "k\(UInt32.random(in: 0...UInt32.max))")
    }

    @Test func registerCreatesTablesOffsetsAndHistory() throws {
        let c = try Self.catalog()
        let spec = try ManifestParser.parse(DemoManifests.v1)
        let v1 = try c.register(spec, manifest: DemoManifests.v1, startOffsets: [0, 5, 0], actor: "test", reason: "deployed")
        #expect(v1.state == .pending)
        #expect(try c.jobs().map(\.view) == ["btc_prices"])
        #expect(try c.versions(job: "btc").map(\.spec) == [spec])
        #expect(try c.nextOffsets(job: "btc", version: 1) == [0, 5, 0])
        let columns = try c.db.query("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'btc_prices__v1' ORDER BY ordinal_position",
                                     [.text(c.schema)], name: "columns").rows.map { "\($0[0].string) \($0[1].string)" }
        #expect(columns == ["currency text", "minute bigint", "samples bigint", "avg_rate double precision"])
        #expect(try c.relationExists("btc_prices__v1__dead"))
        #expect(try c.history(job: "btc").map { "\($0.from?.rawValue ?? "-")>\($0.to.rawValue) \($0.reason)" } == ["->pending deployed"])
    }

    @Test func theSameRulesAsOnSQLite() throws {
        let c = try Self.catalog()
        _ = try c.register(try ManifestParser.parse(DemoManifests.v2), manifest: DemoManifests.v2, startOffsets: [0], actor: "t", reason: "r")
        do {
            _ = try c.register(try ManifestParser.parse(DemoManifests.v1), manifest: DemoManifests.v1, startOffsets: [0], actor: "t", reason: "r")
            Issue.record("registered a version below the latest")
        } catch let error as CatalogError {
            #expect(error.message == "version 1 of job \"btc\" is not above its latest version 2; use version 3 or higher")
        }
        #expect(!(try c.relationExists("btc_prices__v1")))  // the refused registration left nothing
        try c.db.transaction("t") { try c.transition(job: "btc", version: 2, from: .pending, to: .replaying, reason: "started", actor: "t", error: nil) }
        do {
            try c.db.transaction("t") { try c.transition(job: "btc", version: 2, from: .pending, to: .replaying, reason: "again", actor: "t", error: nil) }
            Issue.record("a stale transition went through")
        } catch let error as CatalogError {
            #expect(error.message == "job \"btc\" version 2 is replaying, not pending")
        }
    }

    @Test func aCatalogFromANewerKappaIsRefused() throws {
        let c = try Self.catalog()
        try c.db.execute("UPDATE \(c.schema).kappa_schema SET version = 99", name: "test")
        do {
            _ = try PostgresCatalog(url: PostgresConnectionTests.url, schema: c.schema)
            Issue.record("opened a newer catalog")
        } catch let error as CatalogError {
            #expect(error.code == .newerSchema)
            #expect(!error.message.contains("password"))
        }
    }
}
#endif
