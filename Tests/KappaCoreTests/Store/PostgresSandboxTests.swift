#if Postgres
import Foundation
import Testing
@testable import KappaCore

/// What is PostgreSQL's own: job SQL runs under a role per version that may not reach the catalog.
@Suite(.enabled(if: StoreKind.postgresURL != nil, "needs the PostgreSQL server scripts/test starts"))
struct PostgresSandboxTests {
    @Test func jobSQLThatReachesTheCatalogIsRefusedAtDeploy() async throws {
        let f = try await StoreFixture.make(.postgres, minutes: 1)
        for (sql, message) in [
            ("FROM batch WHERE (SELECT count(*) FROM kappa_versions) >= 0", "transform.sql: ERROR:  permission denied for table kappa_versions"),
            ("FROM batch WHERE nosuchcolumn > 0", "transform.sql: ERROR:  column \"nosuchcolumn\" does not exist"),
        ] {
            let text = StoreFixture.exactManifest().replacingOccurrences(of: "FROM batch WHERE true", with: sql)
            let refused = await #expect(throws: CatalogError.self) { _ = try await f.register(text) }
            #expect(refused?.code == .invalidJob)
            #expect(refused?.message.hasPrefix(message) == true, "\(String(describing: refused))")
            #expect(try await f.store.jobs().isEmpty)
            #expect(try await !f.relationExists("ticks__v1"))
        }
        // The session is still usable: a good version registers after the refused ones.
        _ = try await f.register(StoreFixture.exactManifest())
        #expect(try await f.store.versions(job: "t").count == 1)
    }
}
#endif
