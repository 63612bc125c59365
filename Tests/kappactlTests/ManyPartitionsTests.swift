import Foundation
import Testing
@testable import KappaCore

/// A topic with far more partitions than the process may open files (issue 15): kappactl and
/// JobHost run under `ulimit -n 256` with 2,000 partitions (each partition has a head, a lock, a
/// segment and an index file), and everything a user does still works.
@Suite(.serialized) struct ManyPartitionsTests {
    static let partitions = 2_000
    static let descriptorLimit = 256

    /// Runs `executable args…` under `ulimit -n` of `descriptorLimit`, to completion.
    static func limited(_ box: Sandbox, _ executable: String, _ args: [String], stdin: String = "") async throws -> RunResult {
        try await box.run("/bin/sh", ["-c", "ulimit -n \(descriptorLimit) && exec \"$0\" \"$@\"", executable] + args, stdin: stdin)
    }

    static func kappactl(_ box: Sandbox, _ args: [String], stdin: String = "") async throws -> RunResult {
        try await limited(box, Executables.kappactl, ["--state", box.state] + args, stdin: stdin)
    }

    /// BPI ticks, one per partition and more: `count` records, round-robin over the partitions.
    static func ticks(_ count: Int) -> String {
        (0..<count).map { "{\"value\": {\"ts\": \(1_700_000_000_000 + Int64($0) * 1000), \"currency\": \"EUR\", \"rate\": 2.0}}" }
            .joined(separator: "\n") + "\n"
    }

    @Test func produceConsumeAndStatusWorkWithFarMorePartitionsThanDescriptors() async throws {
        let box = try Sandbox()
        #expect(try await Self.kappactl(box, ["topic", "create", "bpi", "-p", "\(Self.partitions)"]).status == 0)
        let records = Self.partitions * 3
        let produced = try await Self.kappactl(box, ["produce", "bpi"], stdin: Self.ticks(records))
        #expect(produced.status == 0, "produce said: \(produced.stderr)")
        #expect(produced.lines.first == "appended \(records) records to \"bpi\"")
        #expect(produced.lines.count == 1 + Self.partitions)  // a line per partition reached

        // Twice: the second run finds every partition's files closed and opens them again.
        for _ in 0..<2 {
            let consumed = try await Self.kappactl(box, ["consume", "bpi"])
            #expect(consumed.status == 0, "consume said: \(consumed.stderr)")
            #expect(consumed.lines.count == records)
            #expect(Set(consumed.lines).count == records)
        }
        let last = try await Self.kappactl(box, ["consume", "bpi", "--partition", "\(Self.partitions - 1)"])
        #expect(last.lines.count == 3)
        let describe = try await Self.kappactl(box, ["topic", "describe", "bpi"])
        #expect(describe.status == 0, "describe said: \(describe.stderr)")
        #expect(!describe.stdout.contains("DAMAGED"))
        let status = try await Self.kappactl(box, ["status"])
        #expect(status.status == 0, "status said: \(status.stderr)")
    }

    /// The attacker's case: one partition refuses appends in the middle of a batch that goes to
    /// every partition. The others' records are in the log, and produce says so.
    @Test func produceReportsWhatItAppendedWhenAPartitionFailsMidway() async throws {
        let box = try Sandbox()
        try await box.kappactl(["topic", "create", "t", "-p", "4"])
        // A lost head with the segment present: the partition refuses appends (LogDamage).
        try FileSystem.removeFile("\(box.state)/log/t/2/head")
        let produced = try await box.kappactl(["produce", "t"], stdin: Self.ticks(8))
        #expect(produced.status == 1)
        #expect(produced.stderr.contains("partition 2"), "stderr: \(produced.stderr)")
        #expect(produced.lines == [
            "appended 6 records to \"t\"",
            "  partition 0: 2 (offsets 0…1)",
            "  partition 1: 2 (offsets 0…1)",
            "  partition 3: 2 (offsets 0…1)",
        ])
        let json = try await box.kappactl(["produce", "t", "--output", "json"], stdin: Self.ticks(4))
        let summary = try JSONDecoder().decode(ProduceSummary.self, from: Data(json.stdout.utf8))
        #expect(summary.records == 3)
        #expect(summary.partitions.map(\.partition) == [0, 1, 3])
        #expect(summary.partitions.map(\.baseOffset) == [2, 2, 2])
        for p in [0, 1, 3] { #expect(try await box.kappactl(["consume", "t", "--partition", "\(p)"]).lines.count == 3) }
    }

    /// JobHost replays a version over every partition, under the same limit, into the exact
    /// table; status reads it meanwhile; SIGTERM stops it cleanly (exit 0, within the wait).
    @Test func jobHostReplaysEveryPartitionAndStopsOnSIGTERM() async throws {
        let box = try Sandbox()
        #expect(try await Self.kappactl(box, ["topic", "create", "bpi", "-p", "\(Self.partitions)"]).status == 0)
        let records = Self.partitions * 2
        #expect(try await Self.kappactl(box, ["produce", "bpi"], stdin: Self.ticks(records)).status == 0)
        let host = try box.start("/bin/sh", ["-c", "ulimit -n \(Self.descriptorLimit) && exec \"$0\" \"$@\"", Executables.jobHost] + box.hostArguments)
        defer { kill(host.process.processIdentifier, SIGKILL) }

        let deploy = try await Self.kappactl(box, ["deploy", "-f", WorkflowTests.root + "/Manifests/btc-v1.json", "--wait", "--timeout", "120s"])
        #expect(deploy.status == 0, "deploy said: \(deploy.stderr)")
        #expect(deploy.lines.last == "btc version 1 is serving")
        let samples = try await Self.kappactl(box, ["query", "btc", "SELECT sum(samples) FROM btc_prices"])
        #expect(samples.lines.dropFirst().first?.trimmingCharacters(in: .whitespaces) == "\(records)")
        let status = try await Self.kappactl(box, ["status", "--output", "json"])
        #expect(status.status == 0, "status said: \(status.stderr)")
        let report = try JSONDecoder().decode(StatusReport.self, from: Data(status.stdout.utf8))
        #expect(report.jobs.first?.versions.first?.state == .serving)

        // More records while it follows the log: it picks them up in idle partitions too.
        #expect(try await Self.kappactl(box, ["produce", "bpi"], stdin: Self.ticks(Self.partitions)).status == 0)
        try await WorkflowTests.waitUntil("the new records are in the table") {
            let sum = try await Self.kappactl(box, ["query", "btc", "SELECT sum(samples) FROM btc_prices"])
            return sum.lines.dropFirst().first?.trimmingCharacters(in: .whitespaces) == "\(records + Self.partitions)"
        }

        host.process.terminate()
        let stopped = await host.finish(timeout: 30)
        #expect(stopped.status == 0)
        #expect(stopped.stderr.contains("info stopped"))
        #expect(!stopped.stderr.contains("Too many open files"))
        #expect(!stopped.stderr.contains("warning"), "JobHost said: \(stopped.stderr.split(separator: "\n").filter { $0.contains("warning") }.prefix(3))")
    }
}
