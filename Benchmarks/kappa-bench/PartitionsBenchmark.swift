import Foundation
import KappaCore

#if canImport(Glibc)
import Glibc
#endif

/// JobHost over a topic of many partitions (issue 15), as an operator runs it: the JobHost and
/// kappactl beside this executable, each under `ulimit -n 1024` (the default). A version of the
/// demo's v1 job replays every partition from offset 0; JobHost's resident memory is sampled
/// every 100 ms from its start until the version serves, against the same JobHost idle before
/// the deploy (same run); then SIGTERM, timed to its exit, against SIGTERM to the JobHost of a
/// one-partition topic in the same run.
struct PartitionsBenchmark {
    var partitions: Int
    var records: Int

    func run() async throws {
        let (kappactl, jobHost) = try siblingExecutables()
        let root = try FileSystem.makeTemporaryDirectory(prefix: "kappa-bench-partitions")
        defer { try? FileSystem.removeTree(root) }
        print("kappa-bench partitions: JobHost replaying \(Render.grouped(Int64(records))) records over \(Render.grouped(Int64(partitions))) partitions, ulimit -n 1024")

        let floor = try await host(root: root + "/one", kappactl: kappactl, jobHost: jobHost, partitions: 1, records: 10)
        let many = try await host(root: root + "/many", kappactl: kappactl, jobHost: jobHost, partitions: partitions, records: records)
        print("")
        print("JobHost idle before the deploy     \(mib(many.idle)) MiB resident")
        print("JobHost during the replay          \(mib(many.peak)) MiB peak resident (\(fmt(Double(many.peak) / Double(max(1, many.idle)), 2)) x idle)  (target < 200 MiB)")
        print("replay until serving               \(fmt(many.replaySeconds, 1)) s  (\(fmt(Double(records) / many.replaySeconds)) records/s)")
        print("SIGTERM to exit, 1 partition       \(fmt(floor.stopSeconds * 1000, 0)) ms  (floor)")
        print("SIGTERM to exit, \(Render.grouped(Int64(partitions))) partitions  \(fmt(many.stopSeconds * 1000, 0)) ms  (exit status \(many.exitStatus))")
    }

    struct Figures {
        var idle: Int
        var peak: Int
        var replaySeconds: Double
        var stopSeconds: Double
        var exitStatus: Int32
    }

    private func host(root: String, kappactl: String, jobHost: String, partitions: Int, records: Int) async throws -> Figures {
        let state = root + "/state"
        try FileSystem.makeDirectories(root)
        try limited(kappactl, ["--state", state, "topic", "create", "bpi", "-p", "\(partitions)"], root: root)
        let lines = (0..<records).map { "{\"value\": {\"ts\": \(1_700_000_000_000 + Int64($0) * 1000), \"currency\": \"EUR\", \"rate\": 2.0}}" }
        try limited(kappactl, ["--state", state, "produce", "bpi"], root: root, stdin: lines.joined(separator: "\n") + "\n")
        let host = try spawnLimited(jobHost, ["--state", state], root: root, stdout: root + "/jobhost.log")
        var stopped = false
        defer { if !stopped { host.signal(SIGKILL); _ = host.waitUntilExit() } }
        try await Task.sleep(for: .seconds(2))
        let idle = Self.resident(host.processIdentifier)
        let sampler = Task {
            var peak = 0
            while !Task.isCancelled {
                peak = max(peak, Self.resident(host.processIdentifier))
                try? await Task.sleep(for: .milliseconds(100))
            }
            return peak
        }
        let started = ContinuousClock.now
        let manifest = root + "/v1.json"
        try Array(DemoManifests.v1.utf8).write(to: manifest)
        try limited(kappactl, ["--state", state, "deploy", "-f", manifest, "--wait", "--timeout", "600s"], root: root)
        let replay = seconds(since: started)
        sampler.cancel()
        let peak = await sampler.value
        let signalled = ContinuousClock.now
        host.signal(SIGTERM)
        let status = host.waitUntilExit()
        stopped = true
        let exit: Int32 = if case .exited(let code) = status { code } else { -1 }
        return Figures(idle: idle, peak: peak, replaySeconds: replay, stopSeconds: seconds(since: signalled), exitStatus: exit)
    }

    /// Runs `executable` under `ulimit -n 1024` to completion; throws unless it exits 0.
    private func limited(_ executable: String, _ args: [String], root: String, stdin: String = "") throws {
        let input = root + "/input"
        try Array(stdin.utf8).write(to: input)
        let child = try spawnLimited(executable, args, root: root, stdin: input, stdout: "/dev/null")
        guard child.waitUntilExit() == .exited(0) else { throw LogError(.io, "\(executable) \(args.joined(separator: " ")) failed") }
    }

    private func spawnLimited(_ executable: String, _ args: [String], root: String, stdin: String = "/dev/null", stdout: String) throws -> ChildProcess {
        let input = open(stdin, O_RDONLY), output = open(stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        defer { close(input); close(output) }
        return try ChildProcess(path: "/bin/sh", args: ["-c", "ulimit -n 1024 && exec \"$0\" \"$@\"", executable] + args,
                                environment: ProcessInfo.processInfo.environment, stdin: input, stdout: output, stderr: output)
    }

    static func resident(_ pid: pid_t) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kb = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") else { return 0 }
        return kb * 1024
    }

    func mib(_ bytes: Int) -> String { fmt(Double(bytes) / 1_048_576, 1) }
}

extension Array where Element == UInt8 {
    func write(to path: String) throws {
        let file = try FileDescriptor(path: path, flags: O_WRONLY | O_CREAT | O_TRUNC)
        try file.write(self, at: 0)
    }
}

/// kappactl and JobHost of the same build, beside this executable.
func siblingExecutables() throws -> (kappactl: String, jobHost: String) {
    let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path
    let kappactl = dir + "/kappactl", jobHost = dir + "/JobHost"
    guard FileManager.default.isExecutableFile(atPath: kappactl), FileManager.default.isExecutableFile(atPath: jobHost) else {
        throw UsageError("no kappactl and JobHost beside kappa-bench: swift build -c release")
    }
    return (kappactl, jobHost)
}
