import Foundation
import Testing
@testable import KappaCore

/// A SQL job that never finishes, next to a job that works, on one JobHost (SQLite, and
/// PostgreSQL): the runaway fails alone, naming `transform.timeout`; the other job replays and
/// serves meanwhile; `kappactl` and `/api/status` answer; SIGTERM stops JobHost with a runaway
/// statement running.
@Suite struct RunawayJobTests {
    /// An endless `WITH RECURSIVE` query per record of the batch, however small the batch (over
    /// an empty one, as PostgreSQL's deploy check runs it, it ends at once).
    static func endless(job: String, timeout: String) -> String {
        """
        {"job": "\(job)", "version": 1, "source": {"topic": "bpi"},
         "output": {"table": "\(job)_out", "columns": {"k": "TEXT", "n": "INTEGER"}, "primaryKey": ["k"]},
         "transform": {"sql": "INSERT INTO output(k, n) SELECT 'x', count(*) FROM batch b WHERE (WITH RECURSIVE r(i) AS (SELECT b.offset UNION ALL SELECT i + 1 FROM r) SELECT count(*) FROM r) > 0 ON CONFLICT(k) DO UPDATE SET n = excluded.n", "timeout": "\(timeout)"},
         "batch": 100}
        """
    }

    @Test func aRunawaySQLJobFailsAloneWhileTheHostAndOtherJobsGoOn() async throws {
        try await Self.runaway(try Sandbox())
    }

    #if Postgres
    /// On PostgreSQL the statement is cancelled (a watchdog's `PQcancel`) to let the other job's
    /// batches, the heartbeats and the catalog reads through, and at shutdown.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["KAPPA_TEST_POSTGRES"] != nil, "needs the PostgreSQL server scripts/test starts"))
    func aRunawaySQLJobFailsAloneWhileTheHostAndOtherJobsGoOnOnPostgres() async throws {
        try await Self.runaway(try Sandbox(catalog: WorkflowTests.postgresDatabase()))
    }
    #endif

    static func runaway(_ box: Sandbox) async throws {
        try await box.kappactl(["topic", "create", "bpi", "--partitions", "3"])
        #expect(try await box.kappactl(["produce", "bpi"], stdin: WorkflowTests.feedLines(seed: 3, startMinute: 28_000_000, seconds: 3_000)).status == 0)
        for (job, timeout) in [("stuck", "10m"), ("brief", "2s")] {
            let path = box.root + "/\(job).json"
            try Self.endless(job: job, timeout: timeout).write(toFile: path, atomically: true, encoding: .utf8)
            #expect(try await box.kappactl(["deploy", "-f", path]).status == 0)
        }
        let host = try box.start(Executables.jobHost, box.hostArguments + ["--http", "127.0.0.1:0"])
        defer { kill(host.process.processIdentifier, SIGKILL) }
        let port = try await HTTPTests.port(of: host)
        try await WorkflowTests.waitUntil("the runaway jobs run") { host.output().stderr.contains("worker started job=stuck") }
        let deployed = try await box.kappactl(["deploy", "-f", WorkflowTests.root + "/Manifests/btc-v1.json"])
        #expect(deployed.status == 0, "\(deployed.stderr)")

        // The working job replays and serves while the runaways run.
        try await WorkflowTests.waitUntil("btc v1 serves", timeout: 120) { try await WorkflowTests.status(box, "btc").jobs[0].serving == 1 }
        #expect(try await WorkflowTests.scalar(box, "btc", "SELECT sum(samples) FROM btc_prices") == "9000")
        // The runaway with a short limit fails, naming it; nothing is blamed on a record.
        try await WorkflowTests.waitUntil("brief fails on its time limit", timeout: 60) {
            try await WorkflowTests.status(box, "brief").jobs[0].versions[0].state == .failed
        }
        let brief = try await WorkflowTests.status(box, "brief").jobs[0].versions[0]
        #expect(brief.error?.contains("transform.sql did not finish the batch within 2s (transform.timeout); it was stopped") == true, "\(brief.error ?? "")")
        #expect(try await box.kappactl(["query", "brief", "SELECT count(*) FROM brief_out__v1__dead"]).stdout.contains("0"))
        // The other, still running: the operator's commands and the page answer meanwhile.
        #expect(try await WorkflowTests.status(box, "stuck").jobs[0].versions[0].state == .replaying)
        let status = try await box.kappactl(["status"])
        #expect(status.status == 0)
        #expect(status.stdout.contains("JobHost: JobHost@"), "\(status.stdout)")
        #expect(try HTTPExchange.get(port: port, "/api/status").status == 200)

        kill(host.process.processIdentifier, SIGTERM)
        let stopped = await host.finish(timeout: 20)
        #expect(stopped.status == 0, "\(stopped.stderr.suffix(3000))")
        #expect(stopped.stderr.contains("info stopped"))
    }
}

/// A job whose decisions fail (here its view's name taken by a table made behind Kappa's back)
/// fails alone: every other job is decided, and status shows why that one is stuck.
@Suite struct DecisionIsolationTests {
    @Test func aJobWhoseSwitchFailsIsShownInStatusAndTheOthersServe() async throws {
        let box = try Sandbox()
        try await box.kappactl(["topic", "create", "bpi", "--partitions", "3"])
        #expect(try await box.kappactl(["produce", "bpi"], stdin: WorkflowTests.feedLines(seed: 4, startMinute: 28_000_000, seconds: 600)).status == 0)
        let blocked = box.root + "/blocked.json"
        try StoreFixtureText.exact(batch: 500).replacingOccurrences(of: "\"job\": \"t\"", with: "\"job\": \"blocked\"")
            .replacingOccurrences(of: "\"table\": \"ticks\"", with: "\"table\": \"blocked_ticks\"")
            .write(toFile: blocked, atomically: true, encoding: .utf8)
        #expect(try await box.kappactl(["deploy", "-f", blocked]).status == 0)
        #expect(try await box.kappactl(["deploy", "-f", WorkflowTests.root + "/Manifests/btc-v1.json"]).status == 0)
        // Somebody makes a table with the view's name in the catalog's database.
        let db = try SQLiteConnection(path: box.state + "/kappa.sqlite")
        try db.execute("CREATE TABLE blocked_ticks (x INTEGER)", name: "test")
        let host = try box.start(Executables.jobHost, box.hostArguments)
        defer { kill(host.process.processIdentifier, SIGKILL) }
        try await WorkflowTests.waitUntil("btc v1 serves", timeout: 60) { try await WorkflowTests.status(box, "btc").jobs[0].serving == 1 }
        try await WorkflowTests.waitUntil("status says why blocked is stuck") {
            try await WorkflowTests.status(box, "blocked").jobs[0].decisionError != nil
        }
        let status = try await box.kappactl(["status", "blocked"])
        #expect(status.stdout.contains("  decisions failing: "), "\(status.stdout)")
        #expect(status.stdout.contains("blocked_ticks"), "\(status.stdout)")
        #expect(try await WorkflowTests.status(box, "blocked").jobs[0].serving == nil)
        // Once the way is clear, its decisions resume and the status line goes.
        try db.execute("DROP TABLE blocked_ticks", name: "test")
        try await WorkflowTests.waitUntil("blocked serves", timeout: 60) { try await WorkflowTests.status(box, "blocked").jobs[0].serving == 1 }
        try await WorkflowTests.waitUntil("the status line goes") { try await WorkflowTests.status(box, "blocked").jobs[0].decisionError == nil }
    }
}
