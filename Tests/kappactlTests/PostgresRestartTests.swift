#if Postgres
import Foundation
import Testing
@testable import KappaCore

/// The catalog's server stopped and started under a running JobHost: it stays up, says so once,
/// answers 503, and resumes by itself into the exact table.
/// It stops the server every other PostgreSQL test uses, so it runs alone: scripts/test's last
/// step, on a server of its own, with KAPPA_TEST_POSTGRES_RESTART=1.
@Suite(.serialized, .enabled(if: ProcessInfo.processInfo.environment["KAPPA_TEST_POSTGRES_CTL"] != nil
                             && ProcessInfo.processInfo.environment["KAPPA_TEST_POSTGRES_RESTART"] == "1",
                             "stops the PostgreSQL server: runs alone in scripts/test's last step (KAPPA_TEST_POSTGRES_RESTART=1)"))
struct PostgresRestartTests {
    static func pgctl(_ box: Sandbox, _ verb: String) async throws {
        let result = try await box.run(ProcessInfo.processInfo.environment["KAPPA_TEST_POSTGRES_CTL"]!, [verb])
        #expect(result.status == 0, "pgctl \(verb): \(result.stderr)")
    }

    @Test func postgresStoppedAndStartedTwiceDuringAReplayGivesTheExactTable() async throws {
        let box = try Sandbox(catalog: await WorkflowTests.postgresDatabase())
        try await box.kappactl(["topic", "create", "bpi", "--partitions", "3"])
        let seconds = 20_000  // 60,000 records
        #expect(try await box.kappactl(["produce", "bpi"], stdin: WorkflowTests.feedLines(seed: 7, startMinute: 28_000_000, seconds: seconds)).status == 0)
        // Small batches: the replay takes long enough for two outages.
        let manifest = box.root + "/btc-slow.json"
        let text = try String(contentsOfFile: WorkflowTests.root + "/Manifests/btc-v1.json", encoding: .utf8)
            .replacingOccurrences(of: "\"batch\": 10000", with: "\"batch\": 20")
        try text.write(toFile: manifest, atomically: true, encoding: .utf8)
        let host = try box.start(Executables.jobHost, box.hostArguments + ["--lease-ttl", "2s", "--http", "127.0.0.1:0"])
        defer { kill(host.process.processIdentifier, SIGKILL) }
        let port = try await HTTPTests.port(of: host)
        #expect(try await box.kappactl(["deploy", "-f", manifest]).status == 0)
        let processed = { try await WorkflowTests.status(box, "btc").jobs[0].versions[0].processed ?? 0 }

        for outage in 1...2 {
            // JobHost back from the previous outage (reconnecting backs off up to 5 s), and its
            // workers committing again: two outages, not one long one.
            try await WorkflowTests.waitUntil("JobHost resumed after outage \(outage - 1)", timeout: 60) {
                host.output().stderr.components(separatedBy: "catalog reachable again").count - 1 == outage - 1
            }
            var seen = try await processed()
            try await WorkflowTests.waitUntil("the replay moves (before outage \(outage))") {
                let now = try await processed()
                defer { seen = max(seen, now) }
                return now > seen && now > 0
            }
            #expect(seen < Int64(3 * seconds), "the replay ended before outage \(outage); make it longer")
            try await Self.pgctl(box, "stop")
            try await Task.sleep(for: .seconds(3))
            // JobHost is still up, and its status endpoint says why it cannot answer.
            #expect(host.process.isRunning)
            let status = try HTTPExchange.get(port: port, "/api/status")
            #expect(status.status == 503)
            #expect(status.body.hasPrefix("catalog unreachable: "), "\(status.body)")
            try await Self.pgctl(box, "start")
        }
        try await WorkflowTests.waitUntil("v1 serves after both outages", timeout: 120) {
            (try? await WorkflowTests.status(box, "btc").jobs[0].serving) == 1
        }
        #expect(host.process.isRunning)
        #expect(try await WorkflowTests.scalar(box, "btc", "SELECT sum(samples) FROM btc_prices") == "\(3 * seconds)")
        #expect(try await WorkflowTests.scalar(box, "btc", "SELECT count(*) FROM btc_prices") == "\(3 * ((seconds + 59) / 60))")
        #expect(try HTTPExchange.get(port: port, "/api/status").status == 200)
        // Said once per change of state, never once per tick.
        let log = host.output().stderr
        let unreachable = log.components(separatedBy: "catalog unreachable").count - 1
        let reachable = log.components(separatedBy: "catalog reachable again").count - 1
        #expect(unreachable == 2 && reachable == 2, "\(log.split(separator: "\n").filter { !$0.contains(" info worker") }.joined(separator: "\n").suffix(6000))")
    }
}
#endif
