import Foundation
import Testing
@testable import KappaCore

/// `kappactl wait`, like `kubectl rollout status`: re-attachable, exit codes per outcome; and
/// `status --watch`.
@Suite struct WaitCommandTests {
    @Test func waitForEachStateWithItsExitCode() async throws {
        let box = try Sandbox()
        try await box.kappactl(["topic", "create", "bpi", "-p", "2"])
        #expect(try await box.kappactl(["produce", "bpi"], stdin: WorkflowTests.feedLines(seed: 5, startMinute: 28_000_000, seconds: 300)).status == 0)
        #expect(try await box.kappactl(["deploy", "-f", WorkflowTests.root + "/Manifests/btc-v1.json"]).status == 0)
        // Not running yet: a timeout, naming the state.
        let early = try await box.kappactl(["wait", "btc", "--for", "serving", "--timeout", "300ms"])
        #expect(early.status == 5)
        #expect(early.stderr.contains("version 1 of job \"btc\" is still pending"), "\(early.stderr)")
        let host = try box.start(Executables.jobHost, box.hostArguments)
        defer { kill(host.process.processIdentifier, SIGKILL) }
        // Twice: a wait only reads, so it can be run again at any time.
        for _ in 0..<2 {
            let served = try await box.kappactl(["wait", "btc", "--for", "serving", "--timeout", "60s"])
            #expect(served.status == 0, "\(served.stderr)")
            #expect(served.stdout == "btc version 1 is serving\n")
        }
        let caught = try await box.kappactl(["wait", "btc", "--version", "1", "--for", "caughtup", "--output", "json"])
        #expect(caught.stdout == "{\"job\":\"btc\",\"version\":1,\"state\":\"serving\"}\n")
        // v2 fails at its first record: waiting for it to catch up exits 6; for failed, 0.
        let failing = """
            {"job": "btc", "version": 2, "source": {"topic": "bpi"},
             "output": {"table": "btc_prices", "columns": {"currency": "TEXT", "minute": "INTEGER", "samples": "INTEGER", "rate": "REAL"}, "primaryKey": ["currency", "minute"]},
             "transform": {"exec": ["/bin/sh", "-c", "read -r l; exit 3"], "timeout": "20s"}, "batch": 100}
            """
        try failing.write(toFile: box.root + "/v2.json", atomically: true, encoding: .utf8)
        #expect(try await box.kappactl(["deploy", "-f", box.root + "/v2.json"]).status == 0)
        let failed = try await box.kappactl(["wait", "btc", "--for", "caughtUp", "--timeout", "60s"])
        #expect(failed.status == 6, "\(failed.stderr)")
        #expect(failed.stderr.contains("job btc version 2 failed: "), "\(failed.stderr)")
        #expect(try await box.kappactl(["wait", "btc", "--version", "2", "--for", "failed"]).status == 0)
        // Retired: it can never serve (4); waiting for retired is reached.
        #expect(try await box.kappactl(["retire", "btc", "--version", "2"]).status == 0)
        let never = try await box.kappactl(["wait", "btc", "--version", "2", "--for", "serving"])
        #expect(never.status == 4)
        #expect(never.stderr.hasSuffix("\nerror: version 2 of job \"btc\" is retired: it can no longer be serving\n"), "\(never.stderr)")
        #expect(try await box.kappactl(["wait", "btc", "--version", "2", "--for", "retired"]).stdout == "btc version 2 is retired\n")
        // Mistakes are usage errors or not found.
        #expect(try await box.kappactl(["wait", "btc", "--for", "done"]).status == 2)
        let long = try await box.kappactl(["wait", "btc", "--for", "failed", "--timeout", "106751991167d"])
        #expect(long.status == 2 && long.stderr.hasPrefix("error: --timeout: duration \"106751991167d\" is too long"), "\(long.stderr)")
        #expect(try await box.kappactl(["wait", "btc"]).status == 2)
        #expect(try await box.kappactl(["wait", "nojob", "--for", "serving"]).status == 3)
        #expect(try await box.kappactl(["wait", "btc", "--version", "9", "--for", "serving"]).status == 3)
    }

    @Test func ctrlCStopsTheWaitingAndSaysHowToWaitAgain() async throws {
        let box = try Sandbox()
        try await box.kappactl(["topic", "create", "bpi", "-p", "1"])
        #expect(try await box.kappactl(["deploy", "-f", WorkflowTests.root + "/Manifests/btc-v1.json"]).status == 0)
        let waiting = try box.start(Executables.kappactl, ["--state", box.state, "wait", "btc", "--for", "serving"])
        try await WorkflowTests.waitUntil("the wait prints progress") { waiting.output().stderr.contains("version 1: [") }
        kill(waiting.process.processIdentifier, SIGINT)
        let done = await waiting.finish(timeout: 20)
        #expect(done.status == 130)
        #expect(done.stderr.contains("SIGINT: stopped waiting; the version goes on. To wait again: kappactl --state \(box.state) wait btc --for serving"), "\(done.stderr)")
        #expect(try await WorkflowTests.status(box, "btc").jobs[0].versions[0].state == .pending)
    }

    @Test func statusWatchShowsReportAfterReportUntilStopped() async throws {
        let box = try Sandbox()
        try await box.kappactl(["topic", "create", "bpi", "-p", "1"])
        #expect(try await box.kappactl(["deploy", "-f", WorkflowTests.root + "/Manifests/btc-v1.json"]).status == 0)
        let watching = try box.start(Executables.kappactl, ["--state", box.state, "status", "--watch", "--interval", "100ms", "--output", "json"])
        try await WorkflowTests.waitUntil("three reports") { watching.output().stdout.split(separator: "\n").count >= 3 }
        kill(watching.process.processIdentifier, SIGINT)
        let done = await watching.finish(timeout: 20)
        for line in done.stdout.split(separator: "\n") {
            let report = try JSONDecoder().decode(StatusReport.self, from: Data(line.utf8))
            #expect(report.jobs.map(\.name) == ["btc"])
        }
        #expect(try await box.kappactl(["status", "--interval", "1s"]).status == 2)
    }
}
