import Foundation
import Testing
@testable import KappaCore

/// A version is bound to the incarnation of its topic: the topic cannot be deleted under it by
/// `kappactl topic delete` (unless --force, which fails it, recorded), and a topic deleted and
/// created again behind Kappa's back fails it instead of feeding it the new topic's records
/// at the old offsets.
@Suite struct TopicIncarnationTests {
    static let manifest = """
        {"job": "td", "version": 1, "source": {"topic": "td"},
         "output": {"table": "td_out", "columns": {"k": "TEXT", "n": "INTEGER"}, "primaryKey": ["k"]},
         "transform": {"sql": "INSERT INTO output(k, n) SELECT 'all', count(*) FROM batch WHERE true ON CONFLICT(k) DO UPDATE SET n = n + excluded.n"}}
        """

    static func records(_ n: Int, from: Int = 0) -> String {
        (from..<(from + n)).map { "{\"value\": \($0)}\n" }.joined()
    }

    /// A topic "td" of 50 records and job "td" serving over it, with JobHost running.
    static func serving(_ box: Sandbox) async throws -> Child {
        #expect(try await box.kappactl(["topic", "create", "td", "-p", "1"]).status == 0)
        #expect(try await box.kappactl(["produce", "td"], stdin: records(50)).status == 0)
        let path = box.root + "/td.json"
        try manifest.write(toFile: path, atomically: true, encoding: .utf8)
        #expect(try await box.kappactl(["deploy", "-f", path]).status == 0)
        let host = try box.start(Executables.jobHost, box.hostArguments)
        try await WorkflowTests.waitUntil("td v1 serves with 50 records") {
            guard try await WorkflowTests.status(box, "td").jobs[0].serving == 1 else { return false }
            return try await WorkflowTests.scalar(box, "td", "SELECT n FROM td_out") == "50"
        }
        return host
    }

    @Test func deletingATopicAServingVersionReadsIsRefusedAndForceFailsIt() async throws {
        let box = try Sandbox()
        let host = try await Self.serving(box)
        defer { kill(host.process.processIdentifier, SIGKILL) }

        let refused = try await box.kappactl(["topic", "delete", "td"])
        #expect(refused.status == 4)
        #expect(refused.stderr == "error: topic \"td\" is read by job \"td\" version 1 (serving); retire it first, or delete with --force, which fails it\n")
        #expect(try await box.kappactl(["topic", "describe", "td"]).status == 0)

        let forced = try await box.kappactl(["topic", "delete", "td", "--force"])
        #expect(forced.status == 0, "\(forced.stderr)")
        #expect(forced.stdout == "td version 1 (serving) failed: it read topic \"td\"\ndeleted topic \"td\"\n")
        let v1 = try await WorkflowTests.status(box, "td").jobs[0].versions[0]
        #expect(v1.state == .failed)
        #expect(v1.error?.contains("topic \"td\" was deleted with --force by kappactl@") == true, "\(v1.error ?? "")")
        let history = try await box.kappactl(["history", "td"])
        #expect(history.stdout.contains("topic \"td\" deleted with --force"), "\(history.stdout)")
        // Nothing serves, and status says what readers of the view see.
        let status = try await box.kappactl(["status", "td"])
        #expect(status.stdout.hasPrefix("job td: view td_out on topic td, serving nothing: version 1 failed while serving, and the view still reads its table as it was\n"), "\(status.stdout)")
        #expect(try await WorkflowTests.status(box, "td").jobs[0].viewReadsFailed == 1)
        // A retry: the topic is gone.
        #expect(try await box.kappactl(["topic", "delete", "td", "--force"]).status == 3)

        // Created again, the topic is another; the failed version stays failed and its table as it was.
        #expect(try await box.kappactl(["topic", "create", "td", "-p", "1"]).status == 0)
        #expect(try await box.kappactl(["produce", "td"], stdin: Self.records(80)).status == 0)
        try await Task.sleep(for: .seconds(1))
        #expect(try await WorkflowTests.scalar(box, "td", "SELECT n FROM td_out") == "50")
        #expect(try await WorkflowTests.status(box, "td").jobs[0].versions[0].state == .failed)
    }

    /// Deleted and created again without kappactl (by hand, as a backup restore would), with
    /// JobHost running and after its restart: the version fails, naming the incarnations, and
    /// its table never counts records of the new topic.
    @Test func aTopicCreatedAgainBehindKappasBackFailsTheVersionInsteadOfFeedingIt() async throws {
        for restart in [false, true] {
            let box = try Sandbox()
            var host = try await Self.serving(box)
            defer { kill(host.process.processIdentifier, SIGKILL) }
            if restart {
                kill(host.process.processIdentifier, SIGTERM)
                _ = await host.finish(timeout: 20)
            }
            try FileSystem.removeTree(box.state + "/log/td")
            #expect(try await box.kappactl(["topic", "create", "td", "-p", "1"]).status == 0)
            #expect(try await box.kappactl(["produce", "td"], stdin: Self.records(80)).status == 0)
            if restart { host = try box.start(Executables.jobHost, box.hostArguments) }
            try await WorkflowTests.waitUntil("td v1 fails (restart: \(restart))") {
                try await WorkflowTests.status(box, "td").jobs[0].versions[0].state == .failed
            }
            let v1 = try await WorkflowTests.status(box, "td").jobs[0].versions[0]
            // A running JobHost may see the topic gone before it is created again.
            let seen = restart ? "topic \"td\" was deleted and created again since this version was deployed over it"
                : "topic \"td\" was deleted"
            #expect(v1.error?.contains(seen) == true, "\(v1.error ?? "")")
            #expect(try await WorkflowTests.scalar(box, "td", "SELECT n FROM td_out") == "50")
        }
    }

    /// A version deployed over the topic created again reads it whole.
    @Test func aNewVersionReadsTheTopicCreatedAgain() async throws {
        let box = try Sandbox()
        let host = try await Self.serving(box)
        defer { kill(host.process.processIdentifier, SIGKILL) }
        #expect(try await box.kappactl(["topic", "delete", "td", "--force"]).status == 0)
        #expect(try await box.kappactl(["topic", "create", "td", "-p", "1"]).status == 0)
        #expect(try await box.kappactl(["produce", "td"], stdin: Self.records(80)).status == 0)
        let path = box.root + "/td2.json"
        try Self.manifest.replacingOccurrences(of: "\"version\": 1", with: "\"version\": 2").write(toFile: path, atomically: true, encoding: .utf8)
        #expect(try await box.kappactl(["deploy", "-f", path]).status == 0)
        try await WorkflowTests.waitUntil("td v2 catches up") {
            let v2 = try await WorkflowTests.status(box, "td").jobs[0].versions.first { $0.version == 2 }
            return v2?.state == .caughtUp || v2?.state == .serving
        }
        let promoted = try await box.kappactl(["promote", "td"])
        #expect(promoted.status == 0, "\(promoted.stderr)")
        #expect(try await WorkflowTests.scalar(box, "td", "SELECT n FROM td_out") == "80")
    }
}
