import Foundation
import KappaCore

#if canImport(Glibc)
import Glibc
#endif

/// `kappactl status` as an operator runs it (a process: start, open the catalog and the log,
/// read offsets and lag samples, print) on a topic of 1,000 (or 10,000) partitions with a
/// deployed version that has lag samples, under `ulimit -n 1024` (the default). The kappactl
/// beside this executable is used; the median of 11 runs, beside the floor: the median of 11
/// runs of `kappactl --version` (a process that starts and exits).
struct StatusBenchmark {
    var partitions: Int
    /// Keep the state directory here (for profiling `kappactl status` by hand).
    var keep: String? = ProcessInfo.processInfo.environment["KAPPA_BENCH_KEEP"]

    func run() async throws {
        let kappactl = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path + "/kappactl"
        guard FileManager.default.isExecutableFile(atPath: kappactl) else {
            throw UsageError("no kappactl beside kappa-bench: swift build -c release")
        }
        // The default descriptor limit, for this process (its log) and the kappactl it runs.
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur > 1024 {
            limit.rlim_cur = 1024
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        let root = try keep ?? FileSystem.makeTemporaryDirectory(prefix: "kappa-bench-status")
        defer { if keep == nil { try? FileSystem.removeTree(root) } }
        let state = try StateDirectory(path: root + "/state")
        let log = try SegmentLog(state: state)
        _ = try await log.createTopic("bpi", config: TopicConfig(partitions: partitions))
        _ = try await log.append(topic: "bpi", records: (0..<(partitions * 10)).map { ProducerRecord(value: Array("{\"ts\": \($0), \"currency\": \"EUR\", \"rate\": 1.0}".utf8), partition: $0 % partitions) })
        let store = try Store.sqlite(state: state)
        let spec = try ManifestParser.parse(DemoManifests.v1)
        _ = try await store.registerVersion(spec, manifest: DemoManifests.v1, startOffsets: Array(repeating: 0, count: partitions), actor: "bench", reason: "bench")
        try await store.transition(job: "btc", version: 1, from: .pending, to: .replaying, reason: "bench", actor: "bench", error: nil)
        for i in 0..<30 {
            let sample = LagSample(at: currentTimeMillis() - Int64(30 - i) * 1000, ends: Array(repeating: 10, count: partitions),
                                   nexts: Array(repeating: Int64(i / 4), count: partitions))
            try await store.recordLag(job: "btc", version: 1, sample: sample, keep: 300)
        }
        print("kappa-bench status: `kappactl status` with \(partitions) partitions and a replaying version, ulimit -n 1024 (22 runs each)")
        func median(_ args: [String]) throws -> [Double] {
            var times: [Double] = []
            for _ in 0..<11 {
                let null = open("/dev/null", O_WRONLY)
                defer { close(null) }
                let started = ContinuousClock.now
                let child = try ChildProcess(path: kappactl, args: args, environment: ProcessInfo.processInfo.environment,
                                             stdin: null, stdout: null, stderr: null)
                guard child.waitUntilExit() == .exited(0) else { throw LogError(.io, "kappactl \(args.joined(separator: " ")) failed") }
                times.append(seconds(since: started) * 1000)
            }
            return times.sorted()
        }
        var floor: [Double] = [], times: [Double] = []
        for _ in 0..<2 {  // interleaved: the machine's noise falls on both
            floor += try median(["--version"])
            times += try median(["--state", state.path, "status"])
        }
        floor.sort()
        times.sort()
        let target = partitions > 1000 ? "< 200 ms" : "< 50 ms"
        print("")
        print("kappactl --version  median \(fmt(floor[floor.count / 2], 1)) ms  (floor: a process that starts and exits)")
        print("kappactl status     median \(fmt(times[times.count / 2], 1)) ms  min \(fmt(times[0], 1)) ms  max \(fmt(times.last!, 1)) ms  (target \(target))")
    }
}
