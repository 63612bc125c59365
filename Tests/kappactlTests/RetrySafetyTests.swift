import Foundation
import Testing
@testable import KappaCore

/// Operator commands as scripts run them: retried. A retried promote, rollback or retire
/// changes nothing the second time and never puts old logic back into production; `--dry-run`
/// prints what would change and changes nothing.
@Suite struct RetrySafetyTests {
    @Test func retriedPromoteRollbackAndRetireChangeNothingTheSecondTime() async throws {
        let box = try Sandbox()
        try await box.kappactl(["topic", "create", "bpi", "--partitions", "2"])
        #expect(try await box.kappactl(["produce", "bpi"], stdin: WorkflowTests.feedLines(seed: 4, startMinute: 28_000_000, seconds: 300)).status == 0)
        let host = try box.start(Executables.jobHost, box.hostArguments)
        defer { kill(host.process.processIdentifier, SIGKILL) }
        #expect(try await box.kappactl(["deploy", "-f", WorkflowTests.root + "/Manifests/btc-v1.json", "--wait", "--timeout", "60s"]).status == 0)
        #expect(try await box.kappactl(["deploy", "-f", WorkflowTests.root + "/Manifests/btc-v2.json"]).status == 0)
        try await WorkflowTests.waitUntil("v2 has caught up") { try await WorkflowTests.status(box, "btc").jobs[0].versions[1].state == .caughtUp }
        let serving = { try await WorkflowTests.status(box, "btc").jobs[0].serving }
        // Transitions only: the end of v2's analysis (promote.analysis) adds a note row when it passes.
        let historyRows = { try await box.kappactl(["history", "btc"]).lines.filter { !$0.contains("analysis passed") }.count }

        // A dry run prints the switch and its check, and changes nothing.
        let dry = try await box.kappactl(["promote", "btc", "--dry-run"])
        #expect(dry.status == 0, "\(dry.stderr)")
        #expect(dry.stdout.hasPrefix("dry run: btc would change in one transaction:\n"), "\(dry.stdout)")
        #expect(dry.stdout.contains("  version 1: serving -> standby (promoted: version 2 serves now)"), "\(dry.stdout)")
        #expect(dry.stdout.contains("  point the reader view at version 2's table"), "\(dry.stdout)")
        #expect(try await serving() == 1)

        #expect(try await box.kappactl(["promote", "btc"]).stdout == "btc: version 2 serves now (version 1 is standby)\n")
        let rows = try await historyRows()
        // The retry: v2 is the newest, so nothing switches (before, this promoted v1 back).
        let again = try await box.kappactl(["promote", "btc"])
        #expect(again.status == 0)
        #expect(again.stdout == "btc: version 2 already serves; nothing changed\n")
        #expect(try await serving() == 2)
        let json = try await box.kappactl(["promote", "btc", "--output", "json"])
        #expect(json.stdout == "{\"job\":\"btc\",\"serving\":2,\"previous\":null,\"changed\":false,\"dryRun\":false,\"actions\":[]}\n", "\(json.stdout)")
        // Going back is rollback's, never promote's.
        let back = try await box.kappactl(["promote", "btc", "--version", "1"])
        #expect(back.status == 4)
        #expect(back.stderr.contains("version 1 is older than the serving version 2; promote never goes back: use rollback --to 1"), "\(back.stderr)")
        #expect(try await serving() == 2)
        #expect(try await historyRows() == rows)

        #expect(try await box.kappactl(["rollback", "btc"]).stdout == "btc: rolled back: version 1 serves now (version 2 is standby)\n")
        // A retried rollback does not roll forward again.
        let twice = try await box.kappactl(["rollback", "btc"])
        #expect(twice.status == 4)
        #expect(twice.stderr.contains("no standby version older than the serving version 1 to roll back to"), "\(twice.stderr)")
        #expect(try await serving() == 1)
        let pinned = try await box.kappactl(["rollback", "btc", "--to", "1"])
        #expect(pinned.status == 0)
        #expect(pinned.stdout == "btc: version 1 already serves; nothing changed\n")
        #expect(try await box.kappactl(["rollback", "btc", "--to", "7"]).status != 0)

        #expect(try await box.kappactl(["promote", "btc"]).stdout == "btc: version 2 serves now (version 1 is standby)\n")
        let retireDry = try await box.kappactl(["retire", "btc", "--version", "1", "--dry-run"])
        #expect(retireDry.stdout.contains("  drop version 1's tables"), "\(retireDry.stdout)")
        #expect(try await WorkflowTests.status(box, "btc").jobs[0].versions[0].state == .standby)
        #expect(try await box.kappactl(["retire", "btc", "--version", "1"]).status == 0)
        let retired = try await box.kappactl(["retire", "btc", "--version", "1"])
        #expect(retired.status == 0)
        #expect(retired.stdout == "btc: version 1 is already retired; nothing changed\n")
        // Every change is in the history once: promote, rollback, promote, retire.
        let history = try await box.kappactl(["history", "btc"]).stdout
        #expect(history.components(separatedBy: "retired by command").count - 1 == 1, "\(history)")
        #expect(history.components(separatedBy: "rollback from version 2").count - 1 == 1, "\(history)")
        // The newest entries only: the retirement is the last.
        let last = try await box.kappactl(["history", "btc", "--limit", "2"])
        #expect(last.lines.count == 3, "\(last.stdout)")  // the header and two rows
        #expect(last.lines.last?.contains("retired by command") == true, "\(last.stdout)")
        // (JobHost's bake of the promoted version may write its "analysis passed" meanwhile.)
        let decided = { (lines: [Substring]) in lines.filter { !$0.contains("analysis passed") }.count }
        #expect(decided(try await box.kappactl(["history", "btc", "--since", "1h"]).stdout.split(separator: "\n")) == decided(history.split(separator: "\n")))
        #expect(try await box.kappactl(["history", "btc", "--since", "1h", "--limit", "1"]).lines.count == 2)
        #expect(try await box.kappactl(["history", "btc", "--limit", "0"]).status == 2)
    }

    /// Ctrl-C of `deploy --wait` says how to wait again; deploying the same manifest again is
    /// that way: it changes nothing and attaches to the version.
    @Test func deployAgainAttachesToTheVersionAfterCtrlC() async throws {
        let box = try Sandbox()
        try await box.kappactl(["topic", "create", "bpi", "--partitions", "1"])
        let manifest = WorkflowTests.root + "/Manifests/btc-v1.json"
        // No JobHost: the version stays pending, so --wait waits.
        let waiting = try box.start(Executables.kappactl, box.hostArguments + ["deploy", "-f", manifest, "--wait"])
        defer { kill(waiting.process.processIdentifier, SIGKILL) }
        try await WorkflowTests.waitUntil("the version is registered") { (try? await WorkflowTests.status(box, "btc").jobs.count) == 1 }
        try await Task.sleep(for: .milliseconds(300))
        kill(waiting.process.processIdentifier, SIGINT)
        let stopped = await waiting.finish(timeout: 20)
        #expect(stopped.status == 130)
        #expect(stopped.stderr.contains("SIGINT: stopped waiting; btc version 1 goes on replaying. To wait again: kappactl --state \(box.state) deploy -f \(manifest) --wait\n"), "\(stopped.stderr)")

        let again = try await box.kappactl(["deploy", "-f", manifest])
        #expect(again.status == 0, "\(again.stderr)")
        #expect(again.stdout == "btc version 1 is already registered (pending); nothing changed\n")
        let attached = try await box.kappactl(["deploy", "-f", manifest, "--wait", "--timeout", "500ms"])
        #expect(attached.status == 5, "\(attached.stderr)")
        #expect(try await box.kappactl(["history", "btc"]).stdout.components(separatedBy: "deployed").count - 1 == 1)
        // A different manifest under the same version number is still refused.
        let changed = box.root + "/changed.json"
        try String(contentsOfFile: manifest, encoding: .utf8).replacingOccurrences(of: "\"batch\": 10000", with: "\"batch\": 500")
            .write(toFile: changed, atomically: true, encoding: .utf8)
        #expect(try await box.kappactl(["deploy", "-f", changed]).status == 4)
    }
}

/// With no JobHost alive nothing moves: status shows rates and ETAs as unknown, with the time of
/// the last heartbeat, never the figures of when a JobHost last measured.
@Suite struct HonestNumbersTests {
    @Test func withNoLiveJobHostRatesAndETAsAreUnknown() async throws {
        let box = try Sandbox()
        try await box.kappactl(["topic", "create", "bpi", "--partitions", "2"])
        #expect(try await box.kappactl(["produce", "bpi"], stdin: WorkflowTests.feedLines(seed: 6, startMinute: 28_000_000, seconds: 3_000)).status == 0)
        // Small batches: v1 replays long enough to have a rate when JobHost dies.
        let slow = box.root + "/slow.json"
        try String(contentsOfFile: WorkflowTests.root + "/Manifests/btc-v1.json", encoding: .utf8)
            .replacingOccurrences(of: "\"batch\": 10000", with: "\"batch\": 20").write(toFile: slow, atomically: true, encoding: .utf8)
        let host = try box.start(Executables.jobHost, box.hostArguments)
        defer { kill(host.process.processIdentifier, SIGKILL) }
        #expect(try await box.kappactl(["deploy", "-f", slow]).status == 0)
        try await WorkflowTests.waitUntil("v1 has a rate") { (try await WorkflowTests.status(box, "btc").jobs[0].versions[0].rate ?? 0) > 0 }
        #expect(try await WorkflowTests.status(box, "btc").jobs[0].versions[0].state == .replaying, "the replay ended first; make it longer")
        kill(host.process.processIdentifier, SIGKILL)
        _ = await host.finish(timeout: 10)
        try await WorkflowTests.waitUntil("no JobHost is alive", timeout: 30) { try await WorkflowTests.status(box, nil).hosts.isEmpty }
        let report = try await WorkflowTests.status(box, nil)
        #expect(report.jobs[0].versions[0].rate == nil && report.jobs[0].versions[0].etaSeconds == nil)
        #expect(report.jobs[0].versions[0].lag ?? 0 > 0)  // what the catalog and the log know still shows
        let heartbeat = try #require(report.lastHeartbeat)
        #expect(currentTimeMillis() - heartbeat >= 5_000)
        let text = try await box.kappactl(["status"])
        #expect(text.stdout.contains("no JobHost is running on \(box.state) (last heartbeat \(Render.time(heartbeat)) UTC); rates and ETAs unknown"), "\(text.stdout)")
    }
}
