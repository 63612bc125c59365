import Foundation
import Testing
@testable import KappaCore

/// `kappactl topic repair TOPIC --partition P --accept-loss`, with JobHost running a serving
/// version over the topic: explicit (refused without --accept-loss, showing the damage), recorded
/// (gaps.json, `topic check`), the end offset kept (produce goes on after it, the serving table
/// counts every record it read), a replay that reaches the gap fails naming it unless its
/// manifest allows gaps, and safe to run again.
@Suite struct TopicRepairCommandTests {
    static func manifest(version: Int, allowGaps: Bool) -> String {
        """
        {"job": "td", "version": \(version), "source": {"topic": "td"\(allowGaps ? ", \"allowGaps\": true" : "")},
         "output": {"table": "td_out", "columns": {"k": "TEXT", "n": "INTEGER"}, "primaryKey": ["k"]},
         "transform": {"sql": "INSERT INTO output(k, n) SELECT 'all', count(*) FROM batch WHERE true ON CONFLICT(k) DO UPDATE SET n = n + excluded.n"},
         "promote": "manual"}
        """
    }

    @Test func repairKeepsTheEndOffsetAndAReplayFailsAtTheGapUnlessItAllowsGaps() async throws {
        let box = try Sandbox()
        #expect(try await box.kappactl(["topic", "create", "td", "-p", "1"]).status == 0)
        // Five appends of 10: frames the truncation can cut between.
        for start in stride(from: 0, to: 50, by: 10) {
            #expect(try await box.kappactl(["produce", "td"], stdin: TopicIncarnationTests.records(10, from: start)).status == 0)
        }
        let path = box.root + "/td.json"
        try Self.manifest(version: 1, allowGaps: false).write(toFile: path, atomically: true, encoding: .utf8)
        #expect(try await box.kappactl(["deploy", "-f", path]).status == 0)
        let host = try box.start(Executables.jobHost, box.hostArguments)
        defer { kill(host.process.processIdentifier, SIGKILL) }
        try await WorkflowTests.waitUntil("td v1 serves with 50 records") {
            guard try await WorkflowTests.status(box, "td").jobs[0].serving == 1 else { return false }
            return try await WorkflowTests.scalar(box, "td", "SELECT n FROM td_out") == "50"
        }

        // Records 30…49 lost: the active segment cut after the third append.
        let segment = SegmentFiles.logPath(box.state + "/log/td/0", 0)
        let file = try FileDescriptor(path: segment, flags: O_RDONLY)
        var frames: [Int64] = []
        _ = try FrameWalker.walk(file, from: 0, limit: try file.size(), verify: false) { at, _ in frames.append(at); return true }
        #expect(truncate(segment, off_t(frames[3])) == 0)
        #expect(try await box.kappactl(["produce", "td"], stdin: "{\"value\": 1}").status == 1)  // refused: damaged

        let refused = try await box.kappactl(["topic", "repair", "td", "--partition", "0"])
        #expect(refused.status == 4, "\(refused.stderr)")
        #expect(refused.stderr.contains("offsets 30…49"), "\(refused.stderr)")
        #expect(refused.stderr.contains("pass --accept-loss"))
        #expect(!FileSystem.exists(box.state + "/log/td/0/gaps.json"))  // nothing changed

        let repaired = try await box.kappactl(["topic", "repair", "td", "--partition", "0", "--accept-loss"])
        #expect(repaired.status == 0, "\(repaired.stderr)")
        #expect(repaired.stdout.contains("offsets 30…49 (20 records) recorded as lost"), "\(repaired.stdout)")
        #expect(repaired.stdout.hasSuffix("repaired topic \"td\" partition 0: 20 records given up as lost; the end offset is 50\n"), "\(repaired.stdout)")
        let again = try await box.kappactl(["topic", "repair", "td", "--partition", "0", "--accept-loss", "--output", "json"])
        #expect(again.status == 0)
        let json = try JSONSerialization.jsonObject(with: Data(again.stdout.utf8)) as? [String: Any]
        #expect((json?["changes"] as? [Any])?.isEmpty == true && json?["end"] as? Int == 50, "\(again.stdout)")

        let check = try await box.kappactl(["topic", "check", "td"])
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
        #expect(check.stdout.contains("gap: partition 0 offsets 30…49 (20 records) given up as lost by topic repair at "), "\(check.stdout)")
        let produced = try await box.kappactl(["produce", "td"], stdin: TopicIncarnationTests.records(10, from: 50))
        #expect(produced.status == 0, "\(produced.stderr)")
        #expect(produced.stdout.contains("offsets 50…59"), "\(produced.stdout)")
        // The serving version had read all 50: it counts the new ones, nothing skipped or twice.
        try await WorkflowTests.waitUntil("td v1 counts 60") { try await WorkflowTests.scalar(box, "td", "SELECT n FROM td_out") == "60" }
        let consumed = try await box.kappactl(["consume", "td"])
        #expect(consumed.status == 1)
        #expect(consumed.stderr.contains("offsets 30…49 (20 records) were lost"), "\(consumed.stderr)")
        #expect(consumed.stderr.contains("reads on at offset 50"))

        // A replay from zero reaches the gap: it fails naming it.
        try Self.manifest(version: 2, allowGaps: false).write(toFile: path, atomically: true, encoding: .utf8)
        #expect(try await box.kappactl(["deploy", "-f", path]).status == 0)
        let failed = try await box.kappactl(["wait", "td", "--version", "2", "--for", "caughtUp", "--timeout", "60s"])
        #expect(failed.status == 6, "\(failed.stdout)\(failed.stderr)")
        let v2 = try await WorkflowTests.status(box, "td").jobs[0].versions.first { $0.version == 2 }
        #expect(v2?.error?.contains("offsets 30…49 (20 records) were lost") == true, "\(String(describing: v2?.error))")
        // One that allows gaps skips it, recorded in its history.
        try Self.manifest(version: 3, allowGaps: true).write(toFile: path, atomically: true, encoding: .utf8)
        #expect(try await box.kappactl(["deploy", "-f", path]).status == 0)
        let caughtUp = try await box.kappactl(["wait", "td", "--version", "3", "--for", "caughtUp", "--timeout", "60s"])
        #expect(caughtUp.status == 0, "\(caughtUp.stdout)\(caughtUp.stderr)")
        #expect(try await WorkflowTests.scalar(box, "td", "SELECT n FROM td_out__v3") == "40")
        let history = try await box.kappactl(["history", "td"])
        #expect(history.stdout.contains("skipped offsets 30…49 of topic \"td\", a recorded gap (source.allowGaps)"), "\(history.stdout)")
    }
}
