import CSQLite
import Foundation
import KappaCore

#if canImport(Glibc)
import Glibc
#endif

/// The serving version's end-to-end latency (issue 17): from a record's `append` acknowledged
/// (durable in the embedded log) to its row visible through the reader view, for a probe every
/// 100 ms while the demo's live feed runs. JobHost serves v1 (caught up over N records); the
/// probes run first with nothing else on the host (the ceiling, same run), then while v2
/// replays all N records beside it, then (when asked) while v3 replays with `--max-rate`.
/// Each probe is a tick of a currency of its own, so its row appears in `btc_prices` only when
/// v1 has committed it; a reader connection of this process polls the view every 0.5 ms.
struct LatencyBenchmark {
    var records: Int
    var maxRate: Int?

    func run() async throws {
        let (kappactl, jobHost) = try siblingExecutables()
        let root = try FileSystem.makeTemporaryDirectory(prefix: "kappa-bench-latency")
        defer { try? FileSystem.removeTree(root) }
        let state = root + "/state"
        let child = Children(root: root)
        func ctl(_ args: [String]) throws -> String { try child.run(kappactl, ["--state", state] + args) }
        let minutes = max(1, (records + 179) / 180)
        _ = try ctl(["demo", "produce", "--minutes", "\(minutes)"])
        let total = minutes * 180
        print("kappa-bench latency: produce acknowledged → row in the reader view, v1 serving; v2 replays \(Render.grouped(Int64(total))) records beside it")
        let host = try child.spawn(jobHost, ["--state", state], output: root + "/jobhost.log")
        defer { host.signal(SIGKILL); _ = host.waitUntilExit() }
        try Array(DemoManifests.v1.utf8).write(to: root + "/v1.json")
        var started = ContinuousClock.now
        _ = try ctl(["deploy", "-f", root + "/v1.json", "--wait", "--timeout", "1800s"])
        print("v1 caught up over the history in \(fmt(seconds(since: started), 1)) s")
        let live = try child.spawn(kappactl, ["--state", state, "demo", "produce", "--rate", "20"], output: "/dev/null")
        defer { live.signal(SIGKILL); _ = live.waitUntilExit() }

        let probe = try Probe(state: try StateDirectory(path: state))
        try await Task.sleep(for: .seconds(2))
        _ = try await probe.measure(count: 10)  // warm: the reader's connection, the log's handles
        let idle = try await probe.measure(count: 150)

        try Array(DemoManifests.v2.utf8).write(to: root + "/v2.json")
        _ = try ctl(["deploy", "-f", root + "/v2.json"])
        started = ContinuousClock.now
        var replaying: [Double] = []
        while try !ctl(["status", "btc", "--output", "json"]).contains("\"state\":\"caughtUp\"") {
            replaying += try await probe.measure(count: 20)
            guard seconds(since: started) < 1800 else { throw LogError(.io, "v2 did not catch up within 30 minutes") }
        }
        let replayRate = Double(total) / seconds(since: started)
        var rows: [(String, [Double])] = [("v1 alone (ceiling)", idle), ("beside v2's replay, uncapped", replaying)]
        if let maxRate {
            _ = try ctl(["retire", "btc", "--version", "2"])
            try Array(DemoManifests.v2.replacingOccurrences(of: "\"version\": 2", with: "\"version\": 3").utf8).write(to: root + "/v3.json")
            _ = try ctl(["deploy", "-f", root + "/v3.json", "--max-rate", "\(maxRate)"])
            rows.append(("beside v3's replay, --max-rate \(maxRate)", try await probe.measure(count: 150)))
        }

        print("")
        print("end-to-end latency (ms)                       p50      p99      max  probes")
        for (name, values) in rows {
            let sorted = values.sorted()
            func at(_ q: Double) -> String { sorted.isEmpty ? "-" : fmt(sorted[min(sorted.count - 1, Int(Double(sorted.count) * q))] * 1000, 1) }
            print(name.padding(toLength: 44, withPad: " ", startingAt: 0) + at(0.5).leftPadded(7) + at(0.99).leftPadded(9)
                  + (sorted.last.map { fmt($0 * 1000, 1) } ?? "-").leftPadded(9) + "\(values.count)".leftPadded(8))
        }
        let p99 = { (values: [Double]) -> Double in let s = values.sorted(); return s.isEmpty ? 0 : s[min(s.count - 1, Int(Double(s.count) * 0.99))] }
        if p99(idle) > 0 {
            print("p99 beside the replay / p99 alone             \(fmt(p99(replaying) / p99(idle), 2)) x  (target <= 2)")
        }
        print("v2's replay beside v1                         \(fmt(replayRate)) records/s")
    }

    /// Appends probe ticks and waits for each one's row in the reader view.
    final class Probe {
        let log: SegmentLog
        private var db: OpaquePointer?
        private var select: OpaquePointer?
        private var next = 0

        init(state: StateDirectory) throws {
            log = try SegmentLog(state: state)
            guard sqlite3_open_v2(state.catalogPath, &db, SQLITE_OPEN_READONLY, nil) == SQLITE_OK,
                  sqlite3_prepare_v2(db, "SELECT 1 FROM btc_prices WHERE currency = ?", -1, &select, nil) == SQLITE_OK else {
                throw LogError(.io, "latency probe: cannot read btc_prices in \(state.catalogPath)")
            }
        }

        deinit { sqlite3_finalize(select); sqlite3_close_v2(db) }

        /// `count` probes, 100 ms apart (each on the next partition); the latency of each, in seconds.
        func measure(count: Int) async throws -> [Double] {
            var latencies: [Double] = []
            for _ in 0..<count {
                next += 1
                let currency = "P\(next)"
                let value = #"{"currency":"\#(currency)","ts":\#(Int64(Date().timeIntervalSince1970 * 1000)),"rate":1.0}"#
                _ = try await log.append(topic: "bpi", records: [ProducerRecord(value: Array(value.utf8), partition: next % 3)])
                let acknowledged = ContinuousClock.now
                while !visible(currency) {
                    guard seconds(since: acknowledged) < 60 else { throw LogError(.io, "latency probe \(currency): no row within 60 s") }
                    usleep(500)
                }
                let latency = seconds(since: acknowledged)
                latencies.append(latency)
                try await Task.sleep(for: .milliseconds(max(1, 100 - Int(latency * 1000))))
            }
            return latencies
        }

        private func visible(_ currency: String) -> Bool {
            sqlite3_reset(select)
            _ = currency.withCString { sqlite3_bind_text(select, 1, $0, -1, unsafeBitCast(-1, to: sqlite3_destructor_type.self)) }
            return sqlite3_step(select) == SQLITE_ROW
        }
    }
}

/// Child processes of a benchmark, their output in files under `root`.
struct Children {
    var root: String

    /// Runs `executable` to its end; its output, or an error with the output's tail.
    func run(_ executable: String, _ args: [String]) throws -> String {
        let out = root + "/out-\(UUID().uuidString.prefix(8))"
        let child = try spawn(executable, args, output: out)
        let status = child.waitUntilExit()
        let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        try? FileManager.default.removeItem(atPath: out)
        guard status == .exited(0) else { throw LogError(.io, "\(executable) \(args.joined(separator: " ")) failed: \(text.suffix(500))") }
        return text
    }

    func spawn(_ executable: String, _ args: [String], output: String) throws -> ChildProcess {
        let input = open("/dev/null", O_RDONLY), out = open(output, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        defer { close(input); close(out) }
        return try ChildProcess(path: executable, args: args, environment: ProcessInfo.processInfo.environment, stdin: input, stdout: out, stderr: out)
    }
}
