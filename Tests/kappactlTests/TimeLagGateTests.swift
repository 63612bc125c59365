import Foundation
import Testing
@testable import KappaCore

/// `catchUp.maxTimeLag`: a version a few records behind, within `maxLag`, is not caught up while
/// those records are old; `status` and `lag` say which condition is unmet.
@Suite struct TimeLagGateTests {
    /// A job whose program never answers its first batch: it stays 10 records behind.
    static func manifest(_ job: String, maxTimeLag: String?) -> String {
        let gate = maxTimeLag.map { ", \"maxTimeLag\": \"\($0)\"" } ?? ""
        return """
            {"job": "\(job)", "version": 1, "source": {"topic": "old"},
             "output": {"table": "\(job)_out", "columns": {"k": "TEXT"}, "primaryKey": ["k"]},
             "transform": {"exec": ["/bin/sh", "-c", "read -r l; sleep 120"], "timeout": "5m"},
             "catchUp": {"maxLag": 1000, "holdFor": "500ms"\(gate)}}
            """
    }

    @Test func oldUnprocessedRecordsHoldAVersionBackWithinMaxLag() async throws {
        let box = try Sandbox()
        try await box.kappactl(["topic", "create", "old", "-p", "1"])
        let hourAgo = currentTimeMillis() - 3_600_000
        let lines = (0..<10).map { "{\"value\": \($0), \"timestamp\": \(hourAgo + Int64($0))}\n" }.joined()
        #expect(try await box.kappactl(["produce", "old"], stdin: lines).status == 0)
        for (job, gate) in [("plain", nil), ("fresh", "5s")] as [(String, String?)] {
            try Self.manifest(job, maxTimeLag: gate).write(toFile: box.root + "/\(job).json", atomically: true, encoding: .utf8)
            #expect(try await box.kappactl(["deploy", "-f", box.root + "/\(job).json"]).status == 0)
        }
        let host = try box.start(Executables.jobHost, box.hostArguments)
        defer { kill(host.process.processIdentifier, SIGKILL) }
        // Without the time gate, 10 records behind is within maxLag: it catches up and serves.
        #expect(try await box.kappactl(["wait", "plain", "--for", "serving", "--timeout", "60s"]).status == 0)
        try await Task.sleep(for: .seconds(1))
        let fresh = try await WorkflowTests.status(box, "fresh").jobs[0].versions[0]
        #expect(fresh.state == .replaying)
        #expect(fresh.lag == 10)
        #expect(fresh.unmet?.contains { $0.hasPrefix("time lag 1h") && $0.hasSuffix("> catchUp.maxTimeLag 5s") } == true, "\(fresh.unmet ?? [])")
        let status = try await box.kappactl(["status", "fresh"])
        #expect(status.stdout.contains("version 1 waits for: time lag 1h"), "\(status.stdout)")
        let lag = try await box.kappactl(["lag", "fresh"])
        #expect(lag.stdout.contains("waiting for: time lag 1h"), "\(lag.stdout)")
    }

    @Test func theGateSaysWhatIsUnmet() {
        let gate = JobSpec.CatchUp(maxLag: 100, holdForMs: 2_000, maxTimeLagMs: 5_000)
        #expect(CatchUpGate.unmet(verdict: .caughtUp, totalLag: 10, timeLagMs: 1_000, catchUp: gate) == [])
        #expect(CatchUpGate.unmet(verdict: .caughtUp, totalLag: 10, timeLagMs: 60_000, catchUp: gate) == ["time lag 1m > catchUp.maxTimeLag 5s"])
        #expect(CatchUpGate.unmet(verdict: .falling, totalLag: 1_234, timeLagMs: 0, catchUp: gate)
                == ["lag 1,234 > catchUp.maxLag 100", "falling behind: the lag grew throughout catchUp.holdFor 2s"])
        #expect(CatchUpGate.unmet(verdict: .stalled, totalLag: 500, timeLagMs: nil, catchUp: gate).count == 3)
        #expect(CatchUpGate.unmet(verdict: .catchingUp, totalLag: 50, timeLagMs: 0, catchUp: JobSpec.CatchUp(maxLag: 100, holdForMs: 2_000))
                == ["lag within catchUp.maxLag for less than catchUp.holdFor 2s"])
    }
}
