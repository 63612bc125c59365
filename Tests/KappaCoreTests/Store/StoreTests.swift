import Foundation
import Synchronization
import Testing
@testable import KappaCore

@Suite struct JobPermissionTests {
    static func manifest(_ sql: String) -> String {
        """
        {"job": "t", "version": 1, "source": {"topic": "bpi"},
         "output": {"table": "ticks", "columns": {"currency": "TEXT", "n": "INTEGER"}, "primaryKey": ["currency"]},
         "transform": {"sql": \(JSONScanner.quote(sql))}}
        """
    }

    @Test(arguments: [
        ("INSERT INTO output SELECT job, 1 FROM kappa_versions", #"transform.sql: the job's SQL may not read table "kappa_versions" (it may read batch and output)"#),
        ("DROP TABLE kappa_jobs", "transform.sql: the job's SQL may not change the schema (it may only read batch and output and write output)"),
        ("INSERT INTO kappa_history(job) SELECT 'x' FROM batch", #"transform.sql: the job's SQL may not write table "kappa_history" (it may write only output)"#),
        ("CREATE TABLE evil(x)", "transform.sql: the job's SQL may not change the schema (it may only read batch and output and write output)"),
        ("PRAGMA writable_schema = 1", "transform.sql: the job's SQL may not run PRAGMA (it may only read batch and output and write output)"),
        ("ATTACH '/tmp/x.db' AS x", "transform.sql: the job's SQL may not run ATTACH (it may only read batch and output and write output)"),
        ("INSERT INTO output SELECT value->>'currency', count(*) FROM batch GROUP BY 1; DELETE FROM kappa_offsets", #"transform.sql: the job's SQL may not write table "kappa_offsets" (it may write only output)"#),
        ("INSERT INTO output SELECT nosuchcolumn FROM batch", "transform.sql: no such column: nosuchcolumn"),
        ("SELEC 1", #"transform.sql: near "SELEC": syntax error"#),
    ])
    func forbiddenOrBrokenSQLIsRefusedAtDeployAndLeavesNothing(sql: String, message: String) async throws {
        let f = try await StoreFixture.make(minutes: 1)
        do {
            _ = try await f.register(Self.manifest(sql))
            Issue.record("registered: \(sql)")
        } catch let error as CatalogError {
            #expect(error.code == .invalidJob)
            #expect(error.message == message)
        }
        #expect(try await f.store.jobs().isEmpty)
        #expect(try await f.store.query("SELECT name FROM sqlite_master WHERE name LIKE 'ticks%'").rows.isEmpty)
    }

    @Test func aJobCannotReadAnotherVersionsTable() async throws {
        let f = try await StoreFixture.make(minutes: 1)
        _ = try await f.register(StoreFixture.exactManifest(version: 1))
        let sneaky = StoreFixture.exactManifest(version: 2).replacingOccurrences(
            of: "FROM batch WHERE true", with: "FROM batch WHERE (SELECT count(*) FROM ticks__v1) >= 0")
        await #expect(throws: CatalogError.self) { _ = try await f.register(sneaky) }
        #expect(try await f.store.versions(job: "t").map(\.version) == [1])
    }
}

@Suite struct BadRecordTests {
    static func fixtureWithBadRecords() async throws -> StoreFixture {
        let f = try await StoreFixture.make(partitions: 1, minutes: 2)
        _ = try await f.log.append(topic: "bpi", records: [
            ProducerRecord(key: Array("EUR".utf8), value: Array("not json".utf8)),
            ProducerRecord(key: Array("EUR".utf8), value: [0xFF, 0xFE]),
        ])
        let more = BPIFeed(seed: 9, start: 28_333_335 * 60_000).ticks(seconds: 30)
        _ = try await f.log.append(topic: "bpi", records: more.map(\.record))
        return f
    }

    @Test func deadLetterKeepsBadRecordsAndGoesOn() async throws {
        let f = try await Self.fixtureWithBadRecords()
        let job = try await f.register(StoreFixture.exactManifest(onBadRecord: "deadLetter"))
        try await f.replay(job)
        let dead = try await f.store.query("SELECT partition, \"offset\", error FROM ticks__v1__dead ORDER BY \"offset\"").rows
        #expect(dead.map { $0[1] } == [.integer(360), .integer(361)])
        #expect(dead.allSatisfy { $0[0] == .integer(0) && $0[2].string.contains("JSON") })
        let samples = try await f.store.query("SELECT sum(samples) FROM ticks__v1").rows
        #expect(samples == [[.integer(360 + 90)]])
    }

    /// A record without a field the job needs breaks the table's key (a bad record, named); a
    /// huge but valid record is just a record.
    @Test func missingFieldsAreBadRecordsAndHugeValuesAreNot() async throws {
        for policy in ["deadLetter", "fail"] {
            let f = try await StoreFixture.make(partitions: 1, minutes: 1)
            let pad = String(repeating: "x", count: 1 << 20)
            _ = try await f.log.append(topic: "bpi", records: [
                ProducerRecord(key: Array("EUR".utf8), value: Array(#"{"ts": 1700000000000, "rate": 5.25}"#.utf8)),
                ProducerRecord(key: Array("EUR".utf8), value: Array(#"{"ts": 1700000000000, "currency": "EUR", "rate": 5.25, "pad": "\#(pad)"}"#.utf8)),
            ])
            let job = try await f.register(StoreFixture.exactManifest(onBadRecord: policy))
            if policy == "deadLetter" {
                try await f.replay(job)
                let dead = try await f.store.query("SELECT \"offset\", error FROM ticks__v1__dead").rows
                #expect(dead.map { $0[0] } == [.integer(180)])
                #expect(dead.first?[1].string.contains("NOT NULL constraint failed: ticks__v1.currency") == true)
                #expect(try await f.store.query("SELECT sum(samples) FROM ticks__v1").rows == [[.integer(181)]])
            } else {
                let failure = await #expect(throws: JobFailure.self) { try await f.replay(job) }
                #expect(failure?.offset == 180)
                #expect(failure?.description.contains("NOT NULL constraint failed: ticks__v1.currency") == true)
            }
        }
    }

    @Test func failStopsAtTheBadRecordWithItsOffset() async throws {
        let f = try await Self.fixtureWithBadRecords()
        let job = try await f.register(StoreFixture.exactManifest(onBadRecord: "fail"))
        do {
            try await f.replay(job)
            Issue.record("a bad record did not fail the version")
        } catch let failure as JobFailure {
            #expect(failure.partition == 0 && failure.offset == 360)
            #expect(failure.description == "job t v1 partition 0 offset 360: bad record: malformed JSON (onBadRecord is \"fail\")")
        }
        // Everything before the bad record's batch is committed; nothing of that batch is.
        let next = try await f.store.nextOffsets(job: "t", version: 1)[0]
        #expect(next <= 360 && next % 97 == 0)
    }
}

@Suite struct CatalogTests {
    @Test func versionsMustGoUpAndKeepTheirView() async throws {
        let f = try await StoreFixture.make(minutes: 1)
        _ = try await f.register(StoreFixture.exactManifest(version: 2))
        do {
            _ = try await f.register(StoreFixture.exactManifest(version: 2))
            Issue.record("registered v2 twice")
        } catch let error as CatalogError {
            #expect(error.message == "version 2 of job \"t\" is not above its latest version 2; use version 3 or higher")
        }
        await #expect(throws: CatalogError.self) { _ = try await f.register(StoreFixture.exactManifest(version: 1)) }
        do {
            _ = try await f.register(StoreFixture.exactManifest(version: 3, table: "other"))
            Issue.record("registered a version with another view")
        } catch let error as CatalogError {
            #expect(error.code == .conflictingOutput)
            #expect(error.message.contains("every version must keep output.table \"ticks\""))
        }
        _ = try await f.register(StoreFixture.exactManifest(version: 3))
        #expect(try await f.store.versions(job: "t").map(\.version) == [2, 3])
        let history = try await f.store.history(job: "t")
        #expect(history.map(\.version) == [2, 3])
        #expect(history.allSatisfy { $0.from == nil && $0.to == .pending && $0.actor == "test" })
    }

    @Test func transitionsAreCheckedAndRecorded() async throws {
        let f = try await StoreFixture.make(minutes: 1)
        _ = try await f.register(StoreFixture.exactManifest())
        try await f.store.transition(job: "t", version: 1, from: .pending, to: .replaying, reason: "started", actor: "a", error: nil)
        await #expect(throws: CatalogError.self) {
            try await f.store.transition(job: "t", version: 1, from: .pending, to: .replaying, reason: "again", actor: "a", error: nil)
        }
        try await f.store.transition(job: "t", version: 1, from: .replaying, to: .failed, reason: "bad", actor: "a", error: "boom")
        let v = try await f.store.versions(job: "t")[0]
        #expect(v.state == .failed && v.error == "boom")
        #expect(try await f.store.history(job: "t").map { "\($0.from?.rawValue ?? "-")>\($0.to.rawValue)" } == ["->pending", "pending>replaying", "replaying>failed"])
    }

    /// Two versions caught up in one pass, decided from one reading: the second decision still
    /// thinks no version serves. The catalog refuses it (found by the crash loop).
    @Test func aDecisionFromAStaleReadingCannotMakeTwoVersionsServe() async throws {
        let f = try await StoreFixture.make(minutes: 1)
        _ = try await f.register(StoreFixture.exactManifest(version: 1))
        _ = try await f.register(StoreFixture.exactManifest(version: 2))
        for v in [1, 2] { try await f.store.transition(job: "t", version: v, from: .pending, to: .replaying, reason: "started", actor: "a", error: nil) }
        let stale = try await f.store.versions(job: "t").map(\.status)
        for v in [1, 2] {
            let actions = try Lifecycle.decide(.caughtUp(version: v), versions: stale)
            if v == 1 {
                try await f.store.apply(job: "t", actions: actions, actor: "a")
            } else {
                let refused = await #expect(throws: CatalogError.self) { try await f.store.apply(job: "t", actions: actions, actor: "a") }
                #expect(refused?.code == .stateConflict)
                #expect(refused?.message == "job \"t\": versions 1 and 2 would both serve; the catalog changed since the decision was made, which is undone")
            }
        }
        #expect(try await f.store.versions(job: "t").map(\.state) == [.serving, .replaying])
        #expect(try await f.store.query("SELECT count(*) FROM ticks").rows == f.store.query("SELECT count(*) FROM ticks__v1").rows)
    }

    @Test func aFileThatIsNotADatabaseIsNamed() throws {
        let dir = try TempDirectory()
        let path = dir.path + "/kappa.sqlite"
        try FileSystem.writeAtomically(Array(String(repeating: "not a database ", count: 100).utf8), to: path)
        do {
            _ = try SQLiteStore(path: path)
            Issue.record("opened a file that is not a database")
        } catch let error as SQLiteError {
            #expect(error.description.contains(path))
            #expect(error.description.contains("file is not a database"))
        }
    }

    @Test func aCatalogFromANewerKappaIsRefused() async throws {
        let dir = try TempDirectory()
        let path = dir.path + "/kappa.sqlite"
        _ = try SQLiteStore(path: path)
        try SQLiteConnection(path: path).execute("PRAGMA user_version = 99", name: "test")
        #expect(throws: CatalogError.self) { _ = try SQLiteStore(path: path) }
    }
}

@Suite struct ViewSwitchTests {
    /// Switches under load: 4 readers, each on its own connection and thread, query the reader
    /// view in a loop while promote and rollback (each one catalog transaction) switch it
    /// `KAPPA_TEST_SWITCHES` times (1,000 by default). Every read returns exactly one version's
    /// rows (their totals), and no read fails.
    @Test func fourReadersSeeOneWholeVersionThroughPromotesAndRollbacks() async throws {
        let switches = Int(ProcessInfo.processInfo.environment["KAPPA_TEST_SWITCHES"] ?? "") ?? 1000
        let f = try await StoreFixture.make(minutes: 10)
        let v1 = try await f.register(StoreFixture.exactManifest(version: 1))
        try await f.replay(v1)
        // v2 counts differently (doubles every sample) so its totals differ from v1's.
        let v2Manifest = StoreFixture.exactManifest(version: 2).replacingOccurrences(of: "count(*), sum", with: "2 * count(*), sum")
        try await f.replay(f.register(v2Manifest))
        for (version, steps) in [(1, [VersionState.pending, .replaying, .caughtUp, .serving]), (2, [.pending, .replaying, .caughtUp])] {
            for (from, to) in zip(steps, steps.dropFirst()) {
                try await f.store.transition(job: "t", version: version, from: from, to: to, reason: "test", actor: "test", error: nil)
            }
        }
        try await f.store.switchView(job: "t", to: 1)
        let totals = { (table: String) in try await f.store.query("SELECT count(*), sum(samples), sum(cents) FROM \(table)").rows[0] }
        let one = try await totals("ticks__v1"), two = try await totals("ticks__v2")
        #expect(one != two)

        let shared = ReaderTally()
        let path = f.state.catalogPath
        // Blocking loops: on threads of their own, not on the cooperative pool.
        let readers = (0..<4).map { _ in Task { try await onOwnThread {
            let db = try SQLiteConnection(path: path, readOnly: true)
            while !shared.stop.load(ordering: .relaxed) {
                do {
                    let row = try db.query("SELECT count(*), sum(samples), sum(cents) FROM ticks", name: "reader")[0]
                    if row != one && row != two { shared.bad.withLock { $0.append("\(row)") } }
                    shared.reads.add(1, ordering: .relaxed)
                } catch {
                    shared.bad.withLock { $0.append("\(error)") }
                }
            }
        } } }
        let op = Operator(log: f.log, store: f.store, actor: "test")
        let historyBefore = try await f.store.history(job: "t").count
        for i in 0..<switches {
            if i % 2 == 0 { _ = try await op.promote(job: "t", version: 2, force: false) } else { _ = try await op.rollback(job: "t") }
        }
        shared.stop.store(true, ordering: .relaxed)
        for reader in readers { try await reader.value }
        #expect(shared.bad.withLock { Array($0.prefix(5)) } == [])
        #expect(shared.reads.load(ordering: .relaxed) > 40)
        let serving = switches % 2 == 0 ? one : two
        #expect(try await totals("ticks") == serving)
        let states = try await f.store.versions(job: "t").map(\.state)
        #expect(states == (switches % 2 == 0 ? [.serving, .standby] : [.standby, .serving]))
        #expect(try await f.store.history(job: "t").count == historyBefore + 2 * switches)  // two transitions a switch
    }

    @Test func theServingVersionsTableCannotBeDropped() async throws {
        let f = try await StoreFixture.make(minutes: 1)
        _ = try await f.register(StoreFixture.exactManifest(version: 1))
        _ = try await f.register(StoreFixture.exactManifest(version: 2))
        try await f.store.switchView(job: "t", to: 1)
        await #expect(throws: CatalogError.self) { try await f.store.dropVersionTables(job: "t", version: 1) }
        try await f.store.dropVersionTables(job: "t", version: 2)
        #expect(try await f.store.query("SELECT name FROM sqlite_master WHERE name LIKE 'ticks__v2%'").rows.isEmpty)
        #expect(try await f.store.nextOffsets(job: "t", version: 2).isEmpty)
    }
}

/// What reader threads share with the test.
final class ReaderTally: Sendable {
    let stop = Atomic<Bool>(false)
    let reads = Atomic<Int>(0)
    let bad = Mutex<[String]>([])
}
