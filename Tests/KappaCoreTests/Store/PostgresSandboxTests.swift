#if Postgres
import Foundation
import Testing
@testable import KappaCore

/// Who the catalog connects as: the test server's superuser, or the README's least-privilege
/// user (LOGIN and CREATEROLE, owner of the catalog's schema, nothing else).
enum CatalogUser: String, CaseIterable, CustomStringConvertible, Sendable {
    case leastPrivilege
    case superuser
    var description: String { rawValue }
}

/// What is PostgreSQL's own: job SQL and promotion checks run as one statement under a role per
/// version that cannot leave that role, its transaction or its statement, whoever the catalog
/// user is.
@Suite(.enabled(if: StoreKind.postgresURL != nil, "needs the PostgreSQL server scripts/test starts"))
struct PostgresSandboxTests {
    static let good = """
        INSERT INTO output(currency, minute, samples, cents, last_offset) SELECT value->>'currency', CAST(value->>'ts' AS BIGINT) / 60000, count(*), \
        sum(CAST(round(CAST(value->>'rate' AS NUMERIC) * 100) AS BIGINT)), max("offset") FROM batch WHERE true GROUP BY 1, 2 \
        ON CONFLICT(currency, minute) DO UPDATE SET samples = output.samples + excluded.samples, cents = output.cents + excluded.cents, \
        last_offset = CASE WHEN output.last_offset > excluded.last_offset THEN output.last_offset ELSE excluded.last_offset END
        """

    static func manifest(job: String = "t", table: String = "ticks", version: Int = 1, sql: String = good, checks: [String] = []) -> String {
        let quote = { (s: String) in String(decoding: try! JSONEncoder().encode(s), as: UTF8.self) }
        return """
            {"job": "\(job)", "version": \(version), "source": {"topic": "bpi"},
             "output": {"table": "\(table)", "columns": {"currency": "TEXT", "minute": "INTEGER", "samples": "INTEGER", "cents": "INTEGER", "last_offset": "INTEGER"},
                        "primaryKey": ["currency", "minute"]},
             "transform": {"sql": \(quote(sql))}, "batch": 97, "onBadRecord": "fail",
             "promote": {"mode": "manual", "checks": [\(checks.map(quote).joined(separator: ", "))]}}
            """
    }

    static func superuserQuery(_ sql: String) throws -> [[SQLValue]] {
        try PGConnection(url: StoreKind.postgresURL!).query(sql, [], name: "test")
    }

    static func fixture(_ user: CatalogUser, minutes: Int = 1) async throws -> StoreFixture {
        let f = try await StoreFixture.make(.postgres, minutes: minutes)
        guard user == .leastPrivilege else { return f }
        let name = "kappa_lp_\(UInt32.random(in: 0...UInt32.max))", schema = "k\(UInt32.random(in: 0...UInt32.max))"
        try PGConnection(url: StoreKind.postgresURL!).execute("CREATE ROLE \(name) LOGIN CREATEROLE; CREATE SCHEMA \(schema) AUTHORIZATION \(name)", name: "test")
        var url = URLComponents(string: StoreKind.postgresURL!)!
        url.user = name
        let store = try Store.postgres(url: url.string!, schema: schema)
        #expect(try await store.query("SELECT rolsuper, rolcreatedb FROM pg_roles WHERE rolname = current_user").rows == [[.integer(0), .integer(0)]])
        return StoreFixture(dir: f.dir, state: f.state, log: f.log, store: store, kind: .postgres, schema: schema, ticks: f.ticks)
    }

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

    /// Every way out of the statement, its role or its transaction is refused at deploy, leaves
    /// nothing registered, and did nothing: the deploy-time check runs no text outside the sandbox.
    @Test(arguments: CatalogUser.allCases)
    func sqlThatLeavesItsStatementRoleOrTransactionIsRefusedAtDeploy(user: CatalogUser) async throws {
        let f = try await Self.fixture(user)
        // Another job, whose offsets the attacks go for.
        _ = try await f.register(Self.manifest(job: "p1", table: "p1ticks"), startOffsets: [5, 5, 5])
        let marker = "/tmp/kappa-intruded-\(UInt32.random(in: 0...UInt32.max))"
        let intruder = "kappa_intruder_\(UInt32.random(in: 0...UInt32.max))"
        let shape = "transform.sql: " + PostgresBackend.jobShape
        let role = "cannot set parameter \"role\" within security-definer function"
        let attacks: [(String, String)] = [
            // The issue's attacks.
            ("\(Self.good); RESET ROLE; INSERT INTO output(currency, minute, samples, cents, last_offset) SELECT manifest, 0, 0, 0, 0 FROM kappa_versions", shape),
            ("\(Self.good); RESET ROLE; UPDATE kappa_offsets SET next_offset = 0 WHERE job = 'p1'", shape),
            ("RESET ROLE; CREATE ROLE \(intruder) LOGIN PASSWORD 'secret'", shape),
            ("RESET ROLE; COPY (SELECT 1) TO PROGRAM 'id > \(marker)'", shape),
            ("COPY (SELECT 1) TO PROGRAM 'id > \(marker)'", shape),
            ("\(Self.good); COMMIT; BEGIN", shape),
            // Role and session authorization by other spellings.
            ("SET SESSION AUTHORIZATION DEFAULT", shape),
            ("SET ROLE NONE", shape),
            ("INSERT INTO output(currency, minute, samples, cents, last_offset) SELECT CAST(query_to_xml('SELECT manifest FROM kappa_versions', true, false, '') AS TEXT), 0, 0, 0, 0 FROM (SELECT set_config('role', 'none', true)) r", role),
            ("INSERT INTO output(currency, minute, samples, cents, last_offset) SELECT set_config('role', current_user, false), 0, 0, 0, 0", "within security-definer function"),
            ("INSERT INTO output(currency, minute, samples, cents, last_offset) SELECT set_config('session_authorization', session_user, true), 0, 0, 0, 0", "cannot set parameter \"session_authorization\" within security-definer function"),
            // Utility statements, second statements, transaction control.
            ("DO $$BEGIN EXECUTE 'RESET ROLE'; EXECUTE 'UPDATE kappa_offsets SET next_offset = 0'; END$$", shape),
            ("CREATE TABLE intruded (x INTEGER)", shape),
            ("ALTER TABLE output ADD COLUMN intruded INTEGER", shape),
            ("DROP TABLE kappa_offsets", shape),
            ("GRANT SELECT ON kappa_versions TO PUBLIC", shape),
            ("SELECT * INTO TEMP intruded FROM batch", shape),
            ("SELECT 1) INSERT INTO output (currency", shape),
            ("\(Self.good); \(Self.good)", shape),
            ("BEGIN", shape), ("SAVEPOINT kappa_sp", shape), ("ROLLBACK", shape), ("PREPARE TRANSACTION 'x'", shape),
            ("\(Self.good); SELECT pg_advisory_lock(1)", shape),
        ]
        // Each as a version of its own, so that one accepted does not stop the next from being tried.
        for (n, (sql, message)) in attacks.enumerated() {
            let refused = await #expect(throws: CatalogError.self, "\(sql)") { _ = try await f.register(Self.manifest(version: n + 1, sql: sql)) }
            #expect(refused?.code == .invalidJob)
            #expect(refused?.message.hasPrefix("transform.sql: ") == true)
            #expect(refused?.message.contains(message) == true, "\(sql): \(String(describing: refused))")
            #expect(try await f.store.jobs().map(\.name) == ["p1"], "\(sql)")
            #expect(try await f.store.history(job: "t").isEmpty, "\(sql)")
            #expect(try await !f.relationExists("ticks__v\(n + 1)"), "\(sql)")
        }
        #expect(try await f.store.nextOffsets(job: "p1", version: 1) == [5, 5, 5])
        #expect(!FileManager.default.fileExists(atPath: marker))
        #expect(try Self.superuserQuery("SELECT count(*) FROM pg_roles WHERE rolname = '\(intruder)'") == [[.integer(0)]])
        #expect(try Self.superuserQuery("SELECT count(*) FROM pg_tables WHERE tablename = 'intruded'") == [[.integer(0)]])
        // Comments and a trailing semicolon are one statement still; the version computes what it should.
        let commented = Self.manifest(version: attacks.count + 1, sql: "-- per currency and minute\n" + Self.good + " -- upsert;\n ; \n")
        _ = try await f.register(commented)
        try await f.replay(try StreamJobs.make(ManifestParser.parse(commented)))
        #expect(try await f.rows("ticks__v\(attacks.count + 1)") == f.expectedExact())
    }

    /// What passes the deploy check because the batch was empty is refused the same way on data.
    @Test(arguments: CatalogUser.allCases)
    func aStatementThatChangesItsRoleOnARecordFailsItsVersion(user: CatalogUser) async throws {
        let f = try await Self.fixture(user)
        let sql = """
            INSERT INTO output(currency, minute, samples, cents, last_offset) \
            SELECT set_config('role', 'none', true) || CAST(query_to_xml('SELECT manifest FROM kappa_versions', true, false, '') AS TEXT), partition, 0, 0, 0 \
            FROM batch GROUP BY partition
            """
        let job = try await f.register(Self.manifest(sql: sql))
        let failure = await #expect(throws: JobFailure.self) { try await f.replay(job) }
        #expect(failure?.message.contains("cannot set parameter \"role\" within security-definer function") == true, "\(String(describing: failure))")
        #expect(failure?.message.contains("SQL function") == false, "\(String(describing: failure))")
        #expect(try await f.rows("ticks__v1").isEmpty)
    }

    /// Settings a statement makes for the session, and session advisory locks it takes, end with
    /// it: they would otherwise hold for every later transaction of the host's connection.
    @Test(arguments: CatalogUser.allCases)
    func settingsAndLocksEndWithTheStatement(user: CatalogUser) async throws {
        let f = try await Self.fixture(user)
        let name = "kappa_intruder_\(UInt32.random(in: 0...UInt32.max))", key = Int32.random(in: 1...Int32.max)
        let sql = Self.good.replacingOccurrences(of: "FROM batch WHERE true", with: """
            FROM batch WHERE set_config('application_name', '\(name)', false) = '\(name)' AND pg_try_advisory_lock(424242, \(key))
            """)
        let job = try await f.register(Self.manifest(sql: sql))
        try await f.replay(job)
        #expect(try await f.rows("ticks__v1") == f.expectedExact())
        #expect(try Self.superuserQuery("SELECT count(*) FROM pg_stat_activity WHERE application_name = '\(name)'") == [[.integer(0)]])
        #expect(try Self.superuserQuery("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 424242 AND objid = \(key)") == [[.integer(0)]])
        // A statement that fails after taking a lock does not keep it either.
        let failing = Self.good.replacingOccurrences(of: "FROM batch WHERE true", with: "FROM batch WHERE CASE WHEN pg_try_advisory_lock(424242, \(key)) THEN CAST(value->>'currency' AS INTEGER) = 1 ELSE false END")
        let bad = try await f.register(Self.manifest(job: "u", table: "uticks", sql: failing))
        await #expect(throws: (any Error).self) { try await f.replay(bad) }
        _ = try await f.store.jobs()
        #expect(try Self.superuserQuery("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 424242 AND objid = \(key)") == [[.integer(0)]])
    }

    /// Promotion checks run as one expression under a role that may read old and new only.
    @Test(arguments: CatalogUser.allCases)
    func promotionChecksReadOnlyOldAndNew(user: CatalogUser) async throws {
        let f = try await Self.fixture(user)
        _ = try await f.register(Self.manifest())
        let intruder = "kappa_intruder_\(UInt32.random(in: 0...UInt32.max))"
        let checks: [(String, String?)] = [
            ("(SELECT count(*) FROM new) >= (SELECT count(*) FROM old)", nil),
            ("(SELECT count(*) FROM kappa_versions) >= 0", "permission denied for table kappa_versions"),
            ("set_config('role', 'none', true) = '' OR (SELECT count(*) FROM new) >= 0", "cannot set parameter \"role\" within security-definer function"),
            ("1 = 1) THEN 1 ELSE 0 END; CREATE ROLE \(intruder) LOGIN; SELECT (1", PostgresBackend.checkShape),
            ("true) THEN 1 END INTO TEMP intruded --", PostgresBackend.checkShape),
        ]
        for (n, (check, refusal)) in checks.enumerated() {
            _ = try await f.register(Self.manifest(version: n + 2, checks: [check]))
            let apply = { try await f.store.apply(job: "t", actions: [.checkPromotion(old: 1, new: n + 2)], actor: "test") }
            if let refusal {
                let refused = await #expect(throws: CatalogError.self, "\(check)") { try await apply() }
                #expect(refused?.code == .checkFailed)
                #expect(refused?.message.hasPrefix("promotion refused: the check \(check) cannot run: ") == true, "\(String(describing: refused))")
                #expect(refused?.message.contains(refusal) == true, "\(check): \(String(describing: refused))")
            } else {
                try await apply()
            }
        }
        #expect(try Self.superuserQuery("SELECT count(*) FROM pg_roles WHERE rolname = '\(intruder)' OR rolname LIKE 'kappa_%check'") == [[.integer(0)]])
        // Dropping a version drops its function (its role stays while this session's batch has a grant to it).
        try await f.store.dropVersionTables(job: "t", version: 2)
        let role = "kappa_kappa_test_\(f.schema)_t_v2"
        #expect(try Self.superuserQuery("SELECT count(*) FROM pg_proc WHERE proname = '\(role)'") == [[.integer(0)]])
        #expect(try Self.superuserQuery("SELECT count(*) FROM pg_proc WHERE proname = 'kappa_kappa_test_\(f.schema)_t_v3'") == [[.integer(1)]])
    }

    /// Another process's transaction that changed the schema's grants (a deploy, a promote
    /// check) makes a deploy wait, not fail with "tuple concurrently updated".
    @Test func aDeployWaitsForAnotherTransactionsSchemaGrants() async throws {
        let f = try await Self.fixture(.superuser)
        let other = try PGConnection(url: StoreKind.postgresURL!)
        let pid = try other.query("SELECT pg_backend_pid()", [], name: "test")[0][0].display
        let role = "kappa_other_\(UInt32.random(in: 0...UInt32.max))"
        try other.execute("CREATE ROLE \(role)", name: "test")
        try other.execute("BEGIN; SELECT pg_advisory_xact_lock(hashtext('kappa grants \(f.schema)')); GRANT USAGE ON SCHEMA \(f.schema) TO \(role)", name: "test")
        let deploy = Task { _ = try await f.register(Self.manifest()) }
        var waiting = false
        for _ in 0..<600 where !waiting {
            waiting = try Self.superuserQuery("SELECT count(*) FROM pg_stat_activity WHERE \(pid) = ANY(pg_blocking_pids(pid))") != [[.integer(0)]]
            if !waiting { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(waiting, "the deploy never waited for the other transaction")
        try other.execute("COMMIT", name: "test")
        try await deploy.value
        #expect(try await f.store.versions(job: "t").map(\.version) == [1])
    }

    /// A version deployed before its SQL ran in a function gets one at its next batch, checked as
    /// at deploy: a stored statement that would leave its sandbox fails its version instead.
    @Test func aVersionDeployedBeforeTheSandboxIsCheckedAtItsFirstBatch() async throws {
        let f = try await Self.fixture(.superuser)
        let evil = Self.manifest(job: "u", table: "uticks", sql: "\(Self.good); RESET ROLE; UPDATE kappa_offsets SET next_offset = 0")
        _ = try await f.register(Self.manifest())
        _ = try await f.register(Self.manifest(job: "u", table: "uticks"))
        let role = { (job: String) in "kappa_kappa_test_\(f.schema)_\(job)_v1" }
        try f.raw("DROP FUNCTION \(f.schema).\"\(role("t"))\"(); DROP FUNCTION \(f.schema).\"\(role("u"))\"()")
        try f.raw("UPDATE kappa_versions SET manifest = '\(evil.replacingOccurrences(of: "'", with: "''"))' WHERE job = 'u'")
        let store = try f.reopen()
        try await VersionRunner(log: f.log, store: store, job: StreamJobs.make(ManifestParser.parse(Self.manifest()))).run(.untilEnd)
        #expect(try await store.query("SELECT * FROM ticks__v1 ORDER BY currency, minute").rows == f.expectedExact())
        let failure = await #expect(throws: JobFailure.self) {
            try await VersionRunner(log: f.log, store: store, job: StreamJobs.make(ManifestParser.parse(evil))).run(.untilEnd)
        }
        #expect(failure?.message.hasPrefix("transform.sql: " + PostgresBackend.jobShape) == true, "\(String(describing: failure))")
        #expect(try await store.nextOffsets(job: "t", version: 1) == f.log.offsets(topic: "bpi").map(\.end))
    }
}
#endif
