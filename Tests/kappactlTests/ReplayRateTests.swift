import Foundation
import Testing
@testable import KappaCore

/// `replay.maxRate` (or `deploy --max-rate`): a replay takes at most that many records a second
/// over all partitions, and runs uncapped once caught up.
@Suite struct ReplayRateTests {
    @Test func aCappedReplayNeverRunsAheadOfItsRateAndStillFinishes() async throws {
        let box = try Sandbox()
        try await box.kappactl(["topic", "create", "t", "-p", "2"])
        let lines = (0..<6_000).map { "{\"key\": \"k\($0 % 17)\", \"value\": \($0)}\n" }.joined()
        #expect(try await box.kappactl(["produce", "t"], stdin: lines).status == 0)
        let manifest = """
            {"job": "capped", "version": 1, "source": {"topic": "t"},
             "output": {"table": "capped_out", "columns": {"k": "TEXT", "n": "INTEGER"}, "primaryKey": ["k"]},
             "transform": {"sql": "INSERT INTO output(k, n) SELECT 'all', count(*) FROM batch WHERE true ON CONFLICT(k) DO UPDATE SET n = n + excluded.n"}}
            """
        try manifest.write(toFile: box.root + "/capped.json", atomically: true, encoding: .utf8)
        #expect(try await box.kappactl(["deploy", "-f", box.root + "/capped.json", "--max-rate", "1000"]).status == 0)
        // A retry with the same cap is the same version: it attaches.
        let again = try await box.kappactl(["deploy", "-f", box.root + "/capped.json", "--max-rate", "1000"])
        #expect(again.stdout == "capped version 1 is already registered (pending); nothing changed\n", "\(again.stdout)")
        #expect(try await box.kappactl(["deploy", "-f", box.root + "/capped.json", "--max-rate", "0"]).status == 2)

        let started = Date()
        let host = try box.start(Executables.jobHost, box.hostArguments)
        defer { kill(host.process.processIdentifier, SIGKILL) }
        var checked = 0
        while Date().timeIntervalSince(started) < 60 {
            try await Task.sleep(for: .milliseconds(500))
            let v = try await WorkflowTests.status(box, "capped").jobs[0].versions[0]
            guard v.state == .replaying || v.state == .pending else { break }
            // Each partition gets 500/s, a second's worth a batch: never more than rate × (t + 1).
            let bound = Int64(1000 * (Date().timeIntervalSince(started) + 1))
            #expect((v.processed ?? 0) <= bound, "\(v.processed ?? 0) records after \(Date().timeIntervalSince(started))s at 1000/s")
            checked += 1
        }
        // 6,000 records at 1,000/s with at most a second's burst take five seconds at least; a
        // loaded machine only makes the replay (and the moment it is seen to end) later.
        let took = Date().timeIntervalSince(started)
        #expect(took >= 5, "the replay of 6,000 records at 1,000/s ended within \(took)s")
        #expect(checked >= 1, "the replay was never seen running")
        #expect(try await box.kappactl(["wait", "capped", "--for", "serving", "--timeout", "60s"]).status == 0)
        #expect(try await WorkflowTests.scalar(box, "capped", "SELECT n FROM capped_out") == "6000")
    }
}
