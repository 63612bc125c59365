import Foundation
import Testing
@testable import KappaCore

/// Analysis after promotion (`promote.analysis`): watched after the switch, rolled back
/// automatically at the failure limit with the failing check in the history, carried on by a
/// restarted JobHost, skipped only on request (recorded).
@Suite struct AnalysisTests {
    /// btc v2 with `analysis` under `promote`.
    static func manifest(_ box: Sandbox, analysis: [String: Any]) throws -> String {
        let data = try Data(contentsOf: URL(fileURLWithPath: WorkflowTests.root + "/Manifests/btc-v2.json"))
        var object = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        var promote = object["promote"] as! [String: Any]
        promote["analysis"] = analysis
        object["promote"] = promote
        let path = box.root + "/v2-analysis.json"
        try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// btc v1 serving and v2 (with `analysis`) caught up, JobHost running.
    static func ready(_ box: Sandbox, analysis: [String: Any]) async throws -> Child {
        try await box.kappactl(["topic", "create", "bpi", "-p", "2"])
        #expect(try await box.kappactl(["produce", "bpi"], stdin: WorkflowTests.feedLines(seed: 7, startMinute: 28_000_000, seconds: 900)).status == 0)
        let host = try box.start(Executables.jobHost, box.hostArguments)
        #expect(try await box.kappactl(["deploy", "-f", WorkflowTests.root + "/Manifests/btc-v1.json", "--wait", "--timeout", "60s"]).status == 0)
        let deployed = try await box.kappactl(["deploy", "-f", try manifest(box, analysis: analysis)])
        #expect(deployed.status == 0, "\(deployed.stderr)")
        #expect(try await box.kappactl(["wait", "btc", "--version", "2", "--for", "caughtUp", "--timeout", "60s"]).status == 0)
        return host
    }

    static func bake(_ box: Sandbox, _ version: Int) async throws -> StatusReport.Bake? {
        try await WorkflowTests.status(box, "btc").jobs[0].versions.first { $0.version == version }?.bake
    }

    @Test func aFailingAnalysisRollsBackWithTheFailingCheckInTheHistory() async throws {
        try await Self.failingAnalysis(try Sandbox())
    }

    #if Postgres
    /// The same on PostgreSQL: the checks run in the catalog's sandbox there (a role that may
    /// read only `new`, `old` and `errors`; `lag` is literal rows).
    @Test(.enabled(if: ProcessInfo.processInfo.environment["KAPPA_TEST_POSTGRES"] != nil, "needs the PostgreSQL server scripts/test starts"))
    func aFailingAnalysisRollsBackOnPostgres() async throws {
        try await Self.failingAnalysis(try Sandbox(catalog: WorkflowTests.postgresDatabase()))
    }
    #endif

    static func failingAnalysis(_ box: Sandbox) async throws {
        let host = try await Self.ready(box, analysis: ["checks": ["(SELECT count(*) FROM new) > 1000000", "(SELECT count(*) FROM errors) = 0"],
                                                        "interval": "300ms", "bake": "1m", "failureLimit": 2])
        defer { kill(host.process.processIdentifier, SIGKILL) }
        let promoted = try await box.kappactl(["promote", "btc"])
        #expect(promoted.status == 0, "\(promoted.stderr)")
        #expect(promoted.stdout == "btc: version 2 serves now (version 1 is standby)\n")
        try await WorkflowTests.waitUntil("v2's analysis fails and v1 serves again") {
            try await WorkflowTests.status(box, "btc").jobs[0].serving == 1
        }
        let v2 = try await Self.bake(box, 2)
        #expect(v2?.outcome == "rolledBack")
        #expect(v2?.failures == 2)
        let history = try await box.kappactl(["history", "btc"]).stdout
        #expect(history.contains("analysis failed, rolled back to version 1: 2 of promote.analysis.failureLimit 2: the check (SELECT count(*) FROM new) > 1000000 does not hold (seen: lag "), "\(history)")
        #expect(!history.contains("(SELECT count(*) FROM errors) = 0 does not hold"))
        #expect(history.contains("rollback from version 2: its analysis failed"))
        let status = try await box.kappactl(["status", "btc"]).stdout
        #expect(status.contains("version 2: analysis failed (2 failures): rolled back"), "\(status)")
        // The reader view is v1's again.
        #expect(try await WorkflowTests.scalar(box, "btc", "SELECT count(*) FROM btc_prices") == WorkflowTests.scalar(box, "btc", "SELECT count(*) FROM btc_prices__v1"))
    }

    @Test func aJobHostKilledMidBakeCarriesTheBakeOnAndItPasses() async throws {
        let box = try Sandbox()
        var host = try await Self.ready(box, analysis: ["checks": ["(SELECT count(*) FROM new) >= (SELECT count(*) FROM old)",
                                                                   "(SELECT count(*) FROM errors) = 0", "(SELECT max(records) FROM lag) < 100000"],
                                                        "interval": "400ms", "bake": "20s"])
        defer { kill(host.process.processIdentifier, SIGKILL) }
        #expect(try await box.kappactl(["promote", "btc"]).status == 0)
        try await WorkflowTests.waitUntil("two evaluations") { (try await Self.bake(box, 2)?.evaluations ?? 0) >= 2 }
        kill(host.process.processIdentifier, SIGKILL)
        _ = await host.finish(timeout: 20)
        let before = try #require(try await Self.bake(box, 2))
        #expect(before.outcome == nil && before.failures == 0)
        let status = try await box.kappactl(["status", "btc"]).stdout
        #expect(status.contains("version 2: baking \(before.evaluations)/50, 0 failures, ends "), "\(status)")
        host = try box.start(Executables.jobHost, box.hostArguments)
        try await WorkflowTests.waitUntil("the bake passes", timeout: 90) { try await Self.bake(box, 2)?.outcome == "passed" }
        let after = try #require(try await Self.bake(box, 2))
        #expect(after.evaluations > before.evaluations)  // carried on, not started again
        #expect(after.endsAt >= before.endsAt)
        #expect(try await WorkflowTests.status(box, "btc").jobs[0].serving == 2)
        let history = try await box.kappactl(["history", "btc"]).stdout
        #expect(history.contains("analysis passed: 50 evaluations every 400ms, 0 failures"), "\(history)")
        #expect(after.evaluations == 50)
    }

    /// Promoted while no JobHost runs: the bake does not count down unwatched; the first
    /// evaluations come when one starts, and they roll the version back.
    @Test func aBakeNobodyWatchedDoesNotPass() async throws {
        let box = try Sandbox()
        var host = try await Self.ready(box, analysis: ["checks": ["(SELECT count(*) FROM new) = 0"], "interval": "300ms", "bake": "1200ms"])
        defer { kill(host.process.processIdentifier, SIGKILL) }
        kill(host.process.processIdentifier, SIGKILL)
        _ = await host.finish(timeout: 20)
        #expect(try await box.kappactl(["promote", "btc"]).status == 0)
        try await Task.sleep(for: .seconds(2))
        host = try box.start(Executables.jobHost, box.hostArguments)
        try await WorkflowTests.waitUntil("v1 serves again") { try await WorkflowTests.status(box, "btc").jobs[0].serving == 1 }
        #expect(try await Self.bake(box, 2)?.outcome == "rolledBack")
        #expect(!(try await box.kappactl(["history", "btc"]).stdout.contains("analysis passed")))
    }

    /// A check that would run for minutes is stopped at its limit (a failure), and the catalog
    /// stays free meanwhile: the rollback it causes goes through; switching away from a bake
    /// ends it, and it is never counted as passed later.
    @Test func aSlowCheckIsStoppedAndASwitchAwayEndsTheBake() async throws {
        let box = try Sandbox()
        // Evaluated every 3 s: the rollback by hand below comes before the second promotion's
        // first evaluation even on a loaded machine (at 300 ms, the evaluation won the race).
        // 45 rows to the 7th power: hours (to the 5th, 184 M, SQLite counted within the 2 s).
        let host = try await Self.ready(box, analysis: ["checks": ["(SELECT count(*) FROM new a, new b, new c, new d, new e, new f, new g) > 0"],
                                                        "interval": "3s", "bake": "1m", "failureLimit": 1])
        defer { kill(host.process.processIdentifier, SIGKILL) }
        #expect(try await box.kappactl(["promote", "btc"]).status == 0)
        try await WorkflowTests.waitUntil("the slow check fails and v1 serves again") { try await WorkflowTests.status(box, "btc").jobs[0].serving == 1 }
        let history = try await box.kappactl(["history", "btc"]).stdout
        #expect(history.contains("did not finish within 2s and was stopped"), "\(history)")
        // Promoted again and rolled back by hand before its first evaluation: abandoned.
        #expect(try await box.kappactl(["promote", "btc", "--version", "2"]).status == 0)
        #expect(try await box.kappactl(["rollback", "btc"]).status == 0)
        #expect(try await Self.bake(box, 2)?.outcome == "abandoned")
        try await Task.sleep(for: .seconds(1))
        #expect(try await Self.bake(box, 2)?.outcome == "abandoned")  // never revived, never passed
        #expect(!(try await box.kappactl(["status", "btc"]).stdout.contains("baking")))
    }

    @Test func skippingTheAnalysisIsRecordedAndNothingIsWatched() async throws {
        let box = try Sandbox()
        let host = try await Self.ready(box, analysis: ["checks": ["(SELECT count(*) FROM new) > 1000000"], "interval": "200ms", "bake": "1m"])
        defer { kill(host.process.processIdentifier, SIGKILL) }
        #expect(try await box.kappactl(["promote", "btc", "--skip-analysis"]).status == 0)
        try await Task.sleep(for: .seconds(1))
        #expect(try await WorkflowTests.status(box, "btc").jobs[0].serving == 2)
        #expect(try await Self.bake(box, 2) == nil)
        #expect(try await box.kappactl(["history", "btc"]).stdout.contains("promoted (promote.analysis skipped with --skip-analysis)"))
    }

    @Test func analysisChecksThatCannotRunAreRefusedAtDeploy() async throws {
        let box = try Sandbox()
        try await box.kappactl(["topic", "create", "bpi", "-p", "1"])
        #expect(try await box.kappactl(["deploy", "-f", WorkflowTests.root + "/Manifests/btc-v1.json"]).status == 0)
        let refused = try await box.kappactl(["deploy", "-f", try Self.manifest(box, analysis: ["checks": ["(SELECT count(*) FROM kappa_versions) > 0"]])])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("promote.analysis.checks[0]"), "\(refused.stderr)")
    }
}
