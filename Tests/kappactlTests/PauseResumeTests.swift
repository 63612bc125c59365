import Foundation
import Testing
@testable import KappaCore

/// `pause` and `resume`: a paused version has no workers, keeps its offsets and table, is
/// never promoted (automatically or by hand), and replays on when resumed; both are recorded
/// and safe to retry.
@Suite struct PauseResumeTests {
    @Test func aPausedVersionWaitsWithItsOffsetsAndIsNeverPromoted() async throws {
        let box = try Sandbox()
        try await box.kappactl(["topic", "create", "bpi", "-p", "2"])
        #expect(try await box.kappactl(["produce", "bpi"], stdin: WorkflowTests.feedLines(seed: 6, startMinute: 28_000_000, seconds: 600)).status == 0)
        let host = try box.start(Executables.jobHost, box.hostArguments)
        defer { kill(host.process.processIdentifier, SIGKILL) }
        #expect(try await box.kappactl(["deploy", "-f", WorkflowTests.root + "/Manifests/btc-v1.json", "--wait", "--timeout", "60s"]).status == 0)
        // Version 2 promotes automatically once caught up, unless paused.
        let auto = try String(contentsOfFile: WorkflowTests.root + "/Manifests/btc-v2.json", encoding: .utf8)
            .replacingOccurrences(of: "\"mode\": \"manual\"", with: "\"mode\": \"auto\"")
        try auto.write(toFile: box.root + "/v2.json", atomically: true, encoding: .utf8)
        kill(host.process.processIdentifier, SIGTERM)
        _ = await host.finish(timeout: 20)
        #expect(try await box.kappactl(["deploy", "-f", box.root + "/v2.json"]).status == 0)
        let paused = try await box.kappactl(["pause", "btc", "--version", "2"])
        #expect(paused.status == 0, "\(paused.stderr)")
        #expect(paused.stdout.hasPrefix("btc: version 2 paused; its offsets and table are kept"))
        let again = try await box.kappactl(["pause", "btc", "--version", "2", "--output", "json"])
        #expect(again.stdout == "{\"job\":\"btc\",\"version\":2,\"changed\":false,\"dryRun\":false,\"actions\":[]}\n")

        let restarted = try box.start(Executables.jobHost, box.hostArguments)
        defer { kill(restarted.process.processIdentifier, SIGKILL) }
        try await WorkflowTests.waitUntil("JobHost is up") { try await WorkflowTests.status(box, "btc").hosts.count == 1 }
        try await Task.sleep(for: .seconds(2))
        let status = try await WorkflowTests.status(box, "btc").jobs[0]
        #expect(status.serving == 1)
        #expect(status.versions.first { $0.version == 2 }?.state == .paused)
        #expect(try await WorkflowTests.scalar(box, "btc", "SELECT count(*) FROM btc_prices__v2") == "0")
        let promote = try await box.kappactl(["promote", "btc", "--version", "2"])
        #expect(promote.status == 4)
        #expect(promote.stderr == "error: version 2 is paused; resume it and let it catch up first\n")
        #expect(try await box.kappactl(["pause", "btc", "--version", "1"]).status == 4)  // serving

        let resumed = try await box.kappactl(["resume", "btc", "--version", "2"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(try await box.kappactl(["wait", "btc", "--version", "2", "--for", "serving", "--timeout", "60s"]).status == 0)
        #expect(try await box.kappactl(["resume", "btc", "--version", "2"]).status == 4)  // serving, not paused
        let history = try await box.kappactl(["history", "btc"]).stdout
        #expect(history.contains("paused by command") && history.contains("resumed by command"), "\(history)")
    }
}
