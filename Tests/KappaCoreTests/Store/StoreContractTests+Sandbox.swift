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
        // Ending the query's transaction (refused on SQLite; on PostgreSQL it ends an empty one)
        // leaves the next query on the same pooled connection read-only all the same.
        _ = try? await f.store.query("COMMIT")
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

extension StoreContractTests {
    /// The version's table disappears under a running version (the same for a function or a
    /// table the SQL needs): every batch fails the same way, with or without records, so the
    /// version fails with that error and nothing is dead-lettered.
    @Test(arguments: StoreKind.available)
    func anErrorThatNeedsNoRecordFailsTheVersionAndDeadLettersNothing(kind: StoreKind) async throws {
        let f = try await StoreFixture.make(kind, partitions: 1, minutes: 1)
        let job = try await f.register(StoreFixture.exactManifest(onBadRecord: "deadLetter"))
        try await f.replay(job)  // SQLite now holds the job's statements compiled
        try f.raw("DROP TABLE ticks__v1")
        _ = try await f.log.append(topic: "bpi", records: BPIFeed(seed: 3, start: 28_333_340 * 60_000).ticks(seconds: 10).map(\.record))
        let failure = await #expect(throws: JobFailure.self) { try await f.replay(job) }
        #expect(failure?.message.hasPrefix("transform.sql: ") == true, "\(String(describing: failure))")
        #expect(failure?.message.contains("ticks__v1") == true, "\(String(describing: failure))")
        #expect(try await f.store.query("SELECT count(*) FROM ticks__v1__dead").rows == [[.integer(0)]])
        #expect(try await f.store.nextOffsets(job: "t", version: 1) == [180])
    }

    /// SQL that is wrong for every record (it reads a field no record has, into the key): under
    /// deadLetter every record would go to the dead-letter table and an empty table would serve.
    /// Past `deadLetter.maxFraction` the version fails instead.
    @Test(arguments: StoreKind.available)
    func aVersionThatWouldDeadLetterEveryRecordFails(kind: StoreKind) async throws {
        let f = try await StoreFixture.make(kind, partitions: 1, minutes: 1)
        let manifest = StoreFixture.exactManifest(onBadRecord: "deadLetter").replacingOccurrences(of: "SELECT value->>'currency'", with: "SELECT value->>'curency'")
        let failure = await #expect(throws: JobFailure.self) { try await f.replay(try await f.register(manifest)) }
        #expect(failure?.offset == 0)
        #expect(failure?.message.hasPrefix("deadLetter.maxFraction: 97 of the 97 records read would be dead letters, more than 0.01 of them (and more than 10)") == true,
                "\(String(describing: failure))")
        #expect(try await f.store.query("SELECT count(*) FROM ticks__v1__dead").rows == [[.integer(0)]])
        #expect(try await f.store.nextOffsets(job: "t", version: 1) == [0])
    }

    /// 30 bad records after 180 good ones: 14 of the 194 read by the second batch are more than
    /// 1 % and more than 10, so the version fails there; allowed 20 %, it replays, all 30 kept.
    @Test(arguments: StoreKind.available)
    func theDeadLetterLimitCountsTheRecordsReadSoFar(kind: StoreKind) async throws {
        let f = try await StoreFixture.make(kind, partitions: 1, minutes: 1)
        _ = try await f.log.append(topic: "bpi", records: (0..<30).map { _ in ProducerRecord(key: nil, value: Array("not json".utf8)) })
        let failure = await #expect(throws: JobFailure.self) { try await f.replay(try await f.register(StoreFixture.exactManifest(onBadRecord: "deadLetter"))) }
        #expect(failure?.offset == 97)
        #expect(failure?.message.hasPrefix("deadLetter.maxFraction: 14 of the 194 records read") == true, "\(String(describing: failure))")
        #expect(failure?.message.hasSuffix("the first error in this batch: the value is not JSON text (8 bytes)") == true)
        #expect(try await f.store.nextOffsets(job: "t", version: 1) == [97])

        let allowed = StoreFixture.exactManifest(version: 2, onBadRecord: "deadLetter").replacingOccurrences(of: "\"batch\": 97", with: "\"deadLetter\": {\"maxFraction\": 0.2}, \"batch\": 97")
        try await f.replay(try await f.register(allowed))
        #expect(try await f.store.query("SELECT count(*) FROM ticks__v2__dead").rows == [[.integer(30)]])
        #expect(try await f.store.nextOffsets(job: "t", version: 2) == [210])
    }
}
