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

#if Postgres
extension PostgresCatalogTests {
    @Test func promoteRollbackChecksAndRetireAreOneTransactionEach() throws {
        let c = try Self.catalog()
        for text in [DemoManifests.v1, DemoManifests.v2] {
            _ = try c.register(try ManifestParser.parse(text), manifest: text, startOffsets: [0], actor: "t", reason: "deployed")
        }
        try c.db.execute("INSERT INTO \(c.table("btc_prices__v1")) VALUES ('EUR', 1, 60, 83000.5)", name: "rows")
        let decide = { (event: LifecycleEvent) throws in
            let actions = try Lifecycle.decide(event, versions: try c.versions(job: "btc").map(\.status))
            try c.apply(job: "btc", actions: actions, actor: "t")
        }
        for v in [1, 2] {
            try c.db.transaction("t") {
                try c.transition(job: "btc", version: v, from: .pending, to: .replaying, reason: "started", actor: "t", error: nil)
            }
        }
        try decide(.caughtUp(version: 1))
        #expect(try c.db.query("SELECT avg_rate FROM \(c.table("btc_prices"))", name: "read").rows == [[.real(83000.5)]])
        try decide(.caughtUp(version: 2))
        // v2 has fewer rows than v1: its check refuses, and nothing changes.
        do {
            try decide(.promote(version: 2, force: false))
            Issue.record("a failing check let the promotion through")
        } catch let error as CatalogError {
            #expect(error.message.hasPrefix("promotion refused: the check (SELECT count(*) FROM new) >= (SELECT count(*) FROM old) does not hold"))
        }
        #expect(try c.versions(job: "btc").map(\.state) == [.serving, .caughtUp])
        try c.db.execute("INSERT INTO \(c.table("btc_prices__v2")) VALUES ('EUR', 1, 60, 1, 2, 0.5, 1.5)", name: "rows")
        try decide(.promote(version: 2, force: false))
        #expect(try c.versions(job: "btc").map(\.state) == [.standby, .serving])
        #expect(try c.db.query("SELECT close FROM \(c.table("btc_prices"))", name: "read").rows == [[.real(1.5)]])
        do {
            try c.apply(job: "btc", actions: [.dropTables(version: 2)], actor: "t")
            Issue.record("dropped the serving version's table")
        } catch let error as CatalogError {
            #expect(error.message == "version 2 of job \"btc\" backs the view \"btc_prices\"; switch the view first")
        }
        try decide(.rollback)
        #expect(try c.db.query("SELECT avg_rate FROM \(c.table("btc_prices"))", name: "read").rows == [[.real(83000.5)]])
        try decide(.promote(version: 2, force: false))
        try decide(.retire(version: 1))
        #expect(!(try c.relationExists("btc_prices__v1")))
        #expect(try c.nextOffsets(job: "btc", version: 1).isEmpty)
        #expect(try c.history(job: "btc").map { "v\($0.version) \($0.from?.rawValue ?? "-")>\($0.to.rawValue)" }.suffix(7) == [
            "v1 serving>standby", "v2 caughtUp>serving", "v2 serving>standby", "v1 standby>serving",
            "v1 serving>standby", "v2 standby>serving", "v1 standby>retired",
        ])
    }

    @Test func lagSamplesAndHeartbeats() throws {
        let c = try Self.catalog()
        for at in 0..<10 { try c.recordLag(job: "j", version: 1, sample: LagSample(at: Int64(at), ends: [10, 20], nexts: [Int64(at), 0]), keep: 4) }
        let samples = try c.lagSamples(job: "j", version: 1, limit: 10)
        #expect(samples.map(\.at) == [6, 7, 8, 9])
        #expect(samples.last == LagSample(at: 9, ends: [10, 20], nexts: [9, 0]))
        try c.heartbeat(owner: "host-a", pid: 7, startedAt: 1)
        #expect(try c.liveHosts(withinMs: 5_000) == ["host-a"])
        try c.removeHost(owner: "host-a")
        #expect(try c.liveHosts(withinMs: 5_000).isEmpty)
    }
}
#endif

#if Postgres
extension PostgresCatalogTests {
    /// SQL in the subset both databases accept (casts where PostgreSQL's ->> yields text).
    static let portable = """
        {"job": "p", "version": 1, "source": {"topic": "bpi"},
         "output": {"table": "pticks", "columns": {"currency": "TEXT", "minute": "BIGINT", "samples": "BIGINT", "cents": "BIGINT"}, "primaryKey": ["currency", "minute"]},
         "transform": {"sql": "INSERT INTO output(currency, minute, samples, cents) SELECT value->>'currency', CAST(value->>'ts' AS BIGINT) / 60000, count(*), sum(CAST(round(CAST(value->>'rate' AS NUMERIC) * 100) AS BIGINT)) FROM batch WHERE true GROUP BY 1, 2 ON CONFLICT(currency, minute) DO UPDATE SET samples = output.samples + excluded.samples, cents = output.cents + excluded.cents"},
         "batch": 97, "onBadRecord": "deadLetter"}
        """

    @Test func batchesReplayExactlyWithBadRecordsDeadLettered() async throws {
        let c = try Self.catalog()
        let dir = try TempDirectory()
        let log = try SegmentLog(directory: dir.path)
        _ = try await log.createTopic("bpi", config: TopicConfig(partitions: 1))
        let ticks = BPIFeed(seed: 4, start: 28_000_000 * 60_000).ticks(seconds: 300)
        _ = try await log.append(topic: "bpi", records: Array(ticks.prefix(400)).map(\.record))
        _ = try await log.append(topic: "bpi", records: [ProducerRecord(key: Array("EUR".utf8), value: Array("not json".utf8))])
        _ = try await log.append(topic: "bpi", records: Array(ticks.dropFirst(400)).map(\.record))
        let spec = try ManifestParser.parse(Self.portable)
        _ = try c.register(spec, manifest: Self.portable, startOffsets: [0], actor: "t", reason: "r")
        try c.db.transaction("t") { try c.transition(job: "p", version: 1, from: .pending, to: .replaying, reason: "r", actor: "t", error: nil) }
        let job = try StreamJobs.make(spec)
        var offset: Int64 = 0
        while true {
            let records = try await log.read(topic: "bpi", partition: 0, from: offset, maxRecords: spec.batch, maxBytes: 1 << 20)
            if records.isEmpty { break }
            offset = try c.applyBatch(job, partition: 0, records: records).nextOffset
        }
        #expect(try c.nextOffsets(job: "p", version: 1) == [901])
        var expected: [String: (Int64, Int64)] = [:]
        for t in ticks {
            let key = "\(t.currency)|\(t.ts / 60_000)"
            let cents = Int64((Double(String(format: "%.2f", t.rate))! * 100).rounded())
            expected[key] = ((expected[key]?.0 ?? 0) + 1, (expected[key]?.1 ?? 0) + cents)
        }
        let rows = try c.db.query("SELECT currency, minute, samples, cents FROM \(c.table("pticks__v1"))", name: "read").rows
        #expect(rows.count == expected.count)
        for row in rows {
            #expect(expected["\(row[0].string)|\(row[1].int)"].map { [SQLValue.integer($0.0), .integer($0.1)] } == Array(row[2...3]))
        }
        let dead = try c.db.query("SELECT \"offset\", error FROM \(c.table("pticks__v1__dead"))", name: "read").rows
        #expect(dead.count == 1 && dead[0][0] == .integer(400))
        #expect(dead[0][1].string.contains("invalid input syntax for type json"))
        // A stale batch is refused and writes nothing.
        let again = try await log.read(topic: "bpi", partition: 0, from: 0, maxRecords: 10, maxBytes: 1 << 20)
        #expect(throws: StaleOffsetError.self) { try c.applyBatch(job, partition: 0, records: again) }
    }

    @Test func jobSQLThatReachesTheCatalogIsRefusedAtDeploy() throws {
        let c = try Self.catalog()
        for (sql, message) in [
            ("FROM batch WHERE (SELECT count(*) FROM kappa_versions) >= 0", "transform.sql: ERROR:  permission denied for table kappa_versions"),
            ("FROM batch WHERE nosuchcolumn > 0", "transform.sql: ERROR:  column \"nosuchcolumn\" does not exist"),
        ] {
            let text = Self.portable.replacingOccurrences(of: "FROM batch WHERE true", with: sql)
            do {
                _ = try c.register(try ManifestParser.parse(text), manifest: text, startOffsets: [0], actor: "t", reason: "r")
                Issue.record("registered: \(sql)")
            } catch let error as CatalogError {
                #expect(error.code == .invalidJob)
                #expect(error.message.hasPrefix(message), "\(error.message)")
            }
            #expect(try c.jobs().isEmpty)
            #expect(!(try c.relationExists("pticks__v1")))
        }
        // The session is still usable: a good version registers after the refused ones.
        _ = try c.register(try ManifestParser.parse(Self.portable), manifest: Self.portable, startOffsets: [0], actor: "t", reason: "r")
        #expect(try c.versions(job: "p").count == 1)
    }
}
#endif

#if Postgres
extension PostgresCatalogTests {
    @Test func execOperationsAreUpsertsAndDeletesByKey() async throws {
        let c = try Self.catalog()
        let dir = try TempDirectory()
        let log = try SegmentLog(directory: dir.path)
        _ = try await log.createTopic("bpi", config: TopicConfig(partitions: 1))
        _ = try await log.append(topic: "bpi", records: BPIFeed(seed: 1, start: 0).ticks(seconds: 2).map(\.record))
        let script = #"while read -r l; do case "$l" in *batchEnd*) echo '{"upsert": {"currency": "X", "ts": 5, "rate": 1.5}}'; echo '{"upsert": {"currency": "Y", "ts": 6}}'; echo '{"delete": {"currency": "X"}}'; echo '{"batchEnd": true}';; esac; done"#
        let text = ExecJobTests.manifest(["/bin/sh", "-c", script])
        let spec = try ManifestParser.parse(text)
        _ = try c.register(spec, manifest: text, startOffsets: [0], actor: "t", reason: "r")
        try c.db.transaction("t") { try c.transition(job: "x", version: 1, from: .pending, to: .replaying, reason: "r", actor: "t", error: nil) }
        let records = try await log.read(topic: "bpi", partition: 0, from: 0, maxRecords: 100, maxBytes: 1 << 20)
        let prepared = try await StreamJobs.make(spec).prepare(records)
        _ = try c.applyBatch(prepared, partition: 0, records: records)
        #expect(try c.db.query("SELECT currency, ts, rate FROM \(c.table("latest__v1"))", name: "read").rows == [[.text("Y"), .integer(6), .null]])
        #expect(try c.nextOffsets(job: "x", version: 1) == [6])
    }
}
#endif
