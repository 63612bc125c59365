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
        #expect(try await !f.relationExists("ticks__v1"))
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

/// What is SQLite's own: a file that is not a database, readers on connections of their own.
@Suite struct SQLiteStoreTests {
    @Test func aFileThatIsNotADatabaseIsNamed() throws {
        let dir = try TempDirectory()
        let path = dir.path + "/kappa.sqlite"
        try FileSystem.writeAtomically(Array(String(repeating: "not a database ", count: 100).utf8), to: path)
        do {
            _ = try Store.sqlite(path: path)
            Issue.record("opened a file that is not a database")
        } catch let error as SQLiteError {
            #expect(error.description.contains(path))
            #expect(error.description.contains("file is not a database"))
        }
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
}

/// What reader threads share with the test.
final class ReaderTally: Sendable {
    let stop = Atomic<Bool>(false)
    let reads = Atomic<Int>(0)
    let bad = Mutex<[String]>([])
}
