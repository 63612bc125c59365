import Foundation
import Testing
@testable import KappaCore

/// What is SQLite's own in the sandbox: what the authorizer and the connection refuse is
/// refused at deploy, naming `transform.sql` or `promote.checks`, and at run time it is the
/// version's failure, never a bad record.
@Suite struct SQLiteSandboxTests {
    static let onlyOutput = "(it may only read batch and output and write output)"

    @Test(arguments: [
        ("INSERT INTO output SELECT load_extension('/tmp/evil.so'), 1 FROM batch", "transform.sql: the job's SQL may not call load_extension() (it reaches outside the statement: code, files or other tables)"),
        ("SELECT load_extension('/tmp/evil.so', 'entry')", "transform.sql: the job's SQL may not call load_extension()"),
        ("SELECT fts3_tokenizer('simple')", "transform.sql: the job's SQL may not call fts3_tokenizer()"),
        ("INSERT INTO output SELECT rtreecheck('kappa_versions'), 1 FROM batch", "transform.sql: the job's SQL may not call rtreecheck()"),
        ("INSERT INTO output SELECT readfile('/etc/passwd'), 1 FROM batch", "transform.sql: no such function: readfile"),
        ("VACUUM", "transform.sql: the job's SQL may not run VACUUM \(onlyOutput)"),
        ("VACUUM INTO '/tmp/kappa-sandbox-copy.db'", "transform.sql: the job's SQL may not run VACUUM \(onlyOutput)"),
        ("INSERT INTO output SELECT value->>'currency', count(*) FROM batch GROUP BY 1; /* then */ vacuum main into '/tmp/kappa-sandbox-copy.db'", "transform.sql: the job's SQL may not run VACUUM \(onlyOutput)"),
        ("ATTACH DATABASE 'file:x?mode=memory' AS x", "transform.sql: the job's SQL may not run ATTACH \(onlyOutput)"),
        ("ATTACH ':memory:' AS x", "transform.sql: the job's SQL may not run ATTACH \(onlyOutput)"),
        ("DETACH DATABASE temp", "transform.sql: the job's SQL may not run DETACH \(onlyOutput)"),
        ("PRAGMA user_version", "transform.sql: the job's SQL may not run PRAGMA \(onlyOutput)"),
        ("PRAGMA main.journal_mode = DELETE", "transform.sql: the job's SQL may not run PRAGMA \(onlyOutput)"),
        ("BEGIN", "transform.sql: the job's SQL may not run BEGIN/COMMIT \(onlyOutput)"),
        ("SAVEPOINT s", "transform.sql: the job's SQL may not run SAVEPOINT \(onlyOutput)"),
        ("INSERT INTO output SELECT name, 1 FROM sqlite_master", "transform.sql: the job's SQL may not read table \"sqlite_master\""),
        ("INSERT INTO output SELECT name, 1 FROM temp.sqlite_master", "transform.sql: the job's SQL may not read table \"sqlite_temp_master\""),
        ("INSERT INTO output SELECT name, 1 FROM pragma_table_list", "transform.sql: the job's SQL may not"),
        ("INSERT INTO output SELECT name, 1 FROM dbstat", "transform.sql: the job's SQL may not"),
        ("CREATE TEMP TRIGGER tr AFTER INSERT ON batch BEGIN DELETE FROM kappa_offsets; END", "transform.sql: the job's SQL may not run CREATE TRIGGER \(onlyOutput)"),
        ("CREATE TEMP VIEW v AS SELECT 1", "transform.sql: the job's SQL may not"),
        ("ANALYZE", "transform.sql: the job's SQL may not"),
        // SQLite's JSON table-valued functions are the job's to use, but not over the catalog.
        ("INSERT INTO output SELECT j.value, 1 FROM json_each((SELECT json_group_array(sql) FROM sqlite_master)) j", "transform.sql: the job's SQL may not read table \"sqlite_master\""),
        ("INSERT INTO output SELECT j.key, 1 FROM batch b, json_tree((SELECT manifest FROM kappa_versions)) j", "transform.sql: the job's SQL may not read table \"kappa_versions\""),
    ])
    func whatTheSandboxRefusesIsRefusedAtDeploy(sql: String, message: String) async throws {
        let f = try await StoreFixture.make(minutes: 1)
        let refused = await #expect(throws: CatalogError.self) { _ = try await f.register(JobPermissionTests.manifest(sql)) }
        #expect(refused?.code == .invalidJob)
        #expect(refused?.message.hasPrefix(message) == true, "\(String(describing: refused?.message))")
        #expect(try await f.store.jobs().isEmpty)
        #expect(try await !f.relationExists("ticks__v1"))
        #expect(!FileManager.default.fileExists(atPath: "/tmp/kappa-sandbox-copy.db"))
    }

    /// A version already in the catalog whose SQL calls load_extension (written before this
    /// check, or into the catalog by hand) fails when it runs: the job's fault, not 180 bad records.
    @Test func sqlTheSandboxRefusesFailsTheVersionAtRunTimeAndDeadLettersNothing() async throws {
        let f = try await StoreFixture.make(partitions: 1, minutes: 1)
        _ = try await f.register(StoreFixture.exactManifest(onBadRecord: "deadLetter"))
        let evil = StoreFixture.exactManifest(onBadRecord: "deadLetter")
            .replacingOccurrences(of: "FROM batch WHERE true", with: "FROM batch WHERE load_extension('/tmp/evil.so') IS NULL")
        try f.raw("UPDATE kappa_versions SET manifest = '\(evil.replacingOccurrences(of: "'", with: "''"))' WHERE job = 't'")
        let store = try f.reopen()
        let spec = try #require(try await store.versions(job: "t").first).spec
        let failure = await #expect(throws: JobFailure.self) {
            try await VersionRunner(log: f.log, store: store, job: try StreamJobs.make(spec)).run(.untilEnd)
        }
        #expect(failure?.message.hasPrefix("transform.sql: the job's SQL may not call load_extension()") == true, "\(String(describing: failure))")
        #expect(try await store.query("SELECT count(*) FROM ticks__v1__dead").rows == [[.integer(0)]])
        #expect(try await store.nextOffsets(job: "t", version: 1) == [0])
    }

    static func withChecks(_ checks: [String], version: Int = 1) -> String {
        StoreFixture.exactManifest(version: version).replacingOccurrences(
            of: "\"batch\": 97", with: "\"promote\": {\"checks\": [\(checks.map(JSONScanner.quote).joined(separator: ", "))]}, \"batch\": 97")
    }

    @Test(arguments: [
        ("(SELECT count(*) FROM new) >= 0 AND load_extension('/tmp/evil.so') IS NULL", "promote.checks[0]: a promotion check may not call load_extension()"),
        ("(SELECT count(*) FROM kappa_versions) > 0", "promote.checks[0]: a promotion check may only read old and new"),
        ("EXISTS (SELECT 1 FROM sqlite_master)", "promote.checks[0]: a promotion check may only read old and new"),
        ("(SELECT count(*) FROM pragma_table_list) > 0", "promote.checks[0]: a promotion check may only read old and new"),
        ("(SELECT count(*) FROM new) >", "promote.checks[0]: near \")\": syntax error"),
    ])
    func promotionChecksTheSandboxRefusesAreRefusedAtDeploy(check: String, message: String) async throws {
        let f = try await StoreFixture.make(minutes: 1)
        let refused = await #expect(throws: CatalogError.self) { _ = try await f.register(Self.withChecks(["1 = 1", check].reversed())) }
        #expect(refused?.code == .invalidJob)
        #expect(refused?.message.hasPrefix(message) == true, "\(String(describing: refused?.message))")
        #expect(try await f.store.jobs().isEmpty)
    }

    @Test func checksThatOnlyReadOldAndNewDeploy() async throws {
        let f = try await StoreFixture.make(minutes: 1)
        let check = "(SELECT count(*) FROM new) >= (SELECT count(*) FROM old) AND NOT EXISTS (SELECT 1 FROM old WHERE cents < 0)"
        _ = try await f.register(Self.withChecks([check], version: 1))
        _ = try await f.register(Self.withChecks([check], version: 2))
        #expect(try await f.store.versions(job: "t").map(\.version) == [1, 2])
    }

    /// `json_each` and `json_tree` over the batch: SQLite's table-valued functions are the job's
    /// to use (their first use on a connection looks like a write of the schema to the
    /// authorizer; the connection has used them before any job SQL runs).
    @Test func jobsAndChecksMayUseSQLiteJSONTableFunctions() async throws {
        let f = try await StoreFixture.make(partitions: 1, minutes: 2)
        let keys = """
            {"job": "k", "version": 1, "source": {"topic": "bpi"},
             "output": {"table": "keys", "columns": {"k": "TEXT", "n": "INTEGER"}, "primaryKey": ["k"]},
             "transform": {"sql": "INSERT INTO output(k, n) SELECT j.key, count(*) FROM batch b, json_each(b.value) j WHERE j.key IN (SELECT t.key FROM json_tree(b.value) t) GROUP BY j.key ON CONFLICT(k) DO UPDATE SET n = output.n + excluded.n"},
             "batch": 40, "promote": {"checks": ["(SELECT count(*) FROM json_each('[1, 2]')) = 2 AND (SELECT count(*) FROM new) > 0"]}}
            """
        let job = try await f.register(keys)
        try await f.replay(job)
        let records = try await f.log.read(topic: "bpi", partition: 0, from: 0, maxRecords: 10_000, maxBytes: 1 << 26)
        var expected: [String: Int64] = [:]
        for r in records {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(r.value ?? [])) as? [String: Any])
            for key in object.keys { expected[key, default: 0] += 1 }
        }
        #expect(expected.count >= 3)
        #expect(try await f.rows("keys__v1", orderBy: "k") == expected.keys.sorted().map { [.text($0), .integer(expected[$0]!)] })
        // A view cannot take a table function's name, where a job's json_each would read it.
        #expect(throws: ManifestError.self) { try ManifestParser.parse(keys.replacingOccurrences(of: "\"table\": \"keys\"", with: "\"table\": \"json_each\"")) }
    }

    /// `kappactl query` on SQLite reads and nothing else, even where SQLite's read-only
    /// connection would let it write (VACUUM INTO makes a copy of the catalog).
    @Test func queriesMayReadSchemaAndCatalog() async throws {
        let f = try await StoreFixture.make(minutes: 1)
        _ = try await f.register(StoreFixture.exactManifest())
        #expect(try await f.store.query("SELECT count(*) FROM kappa_versions").rows == [[.integer(1)]])
        #expect(try await f.store.query("PRAGMA table_info(kappa_jobs)").rows.map { $0[1] }.prefix(2) == [.text("name"), .text("view")])
        #expect(try await f.store.query("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3) SELECT sum(i) FROM n").rows == [[.integer(6)]])
    }
}
