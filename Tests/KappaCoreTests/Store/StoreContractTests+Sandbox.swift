import Foundation
import Testing
@testable import KappaCore

/// What SQL from outside Kappa cannot do on any store: an operator's query only reads; an error
/// that does not depend on a record fails the version and dead-letters nothing; a version that
/// dead-letters more than `deadLetter.maxFraction` of its records fails.
extension StoreContractTests {
    @Test(arguments: StoreKind.available)
    func queriesCannotWriteTheCatalogOrAnyFile(kind: StoreKind) async throws {
        let f = try await StoreFixture.make(kind, minutes: 1)
        _ = try await f.register(StoreFixture.exactManifest())
        let history = try await f.store.query("SELECT count(*) FROM kappa_history").rows
        let copy = f.dir.path + "/copy.db"
        for sql in [
            "VACUUM INTO '\(copy)'",
            "DELETE FROM kappa_history",
            "COMMIT; DELETE FROM kappa_history",
            "SELECT 1; DELETE FROM kappa_history",
            "UPDATE kappa_offsets SET next_offset = 5",
            "WITH gone AS (DELETE FROM kappa_history RETURNING 1) SELECT count(*) FROM gone",
            "CREATE TABLE evil (x INTEGER)",
            "ATTACH '\(copy)' AS other",
            "PRAGMA user_version = 7",
            "SELECT load_extension('/tmp/evil.so')",
        ] {
            await #expect(throws: (any Error).self, "\(sql)") { _ = try await f.store.query(sql) }
        }
        #expect(!FileManager.default.fileExists(atPath: copy))
        #expect(try await f.store.query("SELECT count(*) FROM kappa_history").rows == history)
        #expect(try await f.store.nextOffsets(job: "t", version: 1) == [0, 0, 0])
        #expect(try await !f.relationExists("evil"))
        // Reads still work, on the same pooled connections.
        #expect(try await f.store.query("SELECT count(*) FROM kappa_versions").rows == [[.integer(1)]])
    }
}
