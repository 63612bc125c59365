import Foundation
import KappaCore

#if canImport(Glibc)
import Glibc
#endif

/// The serving version's freshness while a new version replays beside it on the same JobHost
/// and store (issue 16): the demo's v1 serves and follows live ticks (`demo produce --rate`);
/// its time lag (the age of the oldest record it has not processed, from `kappactl lag
/// --output json`) is sampled every 250 ms, first with nothing else running (the ceiling of
/// freshness, same run), then while v2 replays the whole log uncapped, then while v3 replays
/// with `--max-rate` at a fifth of v2's replay rate.
struct FreshnessBenchmark {
    var minutes: Int

    func run() async throws {
        let (kappactl, jobHost) = try siblingExecutables()
        let root = try FileSystem.makeTemporaryDirectory(prefix: "kappa-bench-freshness")
        defer { try? FileSystem.removeTree(root) }
        let state = root + "/state"
        let child = Children(root: root)
        func ctl(_ args: [String]) throws -> String { try child.run(kappactl, ["--state", state] + args) }
        _ = try ctl(["demo", "produce", "--minutes", "\(minutes)"])
        let records = minutes * 60 * 3
        print("kappa-bench freshness: v1 serving with live ticks while v2 replays \(Render.grouped(Int64(records))) records beside it")
        let host = try child.spawn(jobHost, ["--state", state], output: root + "/jobhost.log")
        defer { host.signal(SIGKILL); _ = host.waitUntilExit() }
        try Array(DemoManifests.v1.utf8).write(to: root + "/v1.json")
        _ = try ctl(["deploy", "-f", root + "/v1.json", "--wait", "--timeout", "600s"])
        let live = try child.spawn(kappactl, ["--state", state, "demo", "produce", "--rate", "20"], output: "/dev/null")
        defer { live.signal(SIGKILL); _ = live.waitUntilExit() }
        try await Task.sleep(for: .seconds(2))

        let alone = try await sample(for: 6) { try ctl(["lag", "btc", "--version", "1", "--output", "json"]) }
        try Array(DemoManifests.v2.utf8).write(to: root + "/v2.json")
        _ = try ctl(["deploy", "-f", root + "/v2.json"])
        let started = ContinuousClock.now
        let beside = try await sample(until: { try ctl(["status", "btc", "--output", "json"]).contains("\"state\":\"caughtUp\"") }) {
            try ctl(["lag", "btc", "--version", "1", "--output", "json"])
        }
        let replayRate = Double(records) / seconds(since: started)
        let cap = max(1, Int(replayRate / 5))
        _ = try ctl(["retire", "btc", "--version", "2"])
        try Array(DemoManifests.v2.replacingOccurrences(of: "\"version\": 2", with: "\"version\": 3").utf8).write(to: root + "/v3.json")
        _ = try ctl(["deploy", "-f", root + "/v3.json", "--max-rate", "\(cap)"])
        let capped = try await sample(for: 8) { try ctl(["lag", "btc", "--version", "1", "--output", "json"]) }

        print("")
        print("v1's time lag (ms)                        p50     p99     max  samples")
        for (name, values) in [("alone (ceiling)", alone), ("beside v2's replay, uncapped", beside), ("beside v3's replay, --max-rate \(cap)", capped)] {
            let sorted = values.sorted()
            func at(_ q: Double) -> Int64 { sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * q))] }
            print(name.padding(toLength: max(40, name.count + 1), withPad: " ", startingAt: 0) + "\(at(0.5))".leftPadded(7) + "\(at(0.99))".leftPadded(8)
                  + "\(sorted.last ?? 0)".leftPadded(8) + "\(values.count)".leftPadded(9))
        }
        print("v2's replay beside v1                \(fmt(replayRate)) records/s")
    }

    /// v1's time lag (the largest over its partitions) from `kappactl lag --output json`, every 250 ms.
    private func sample(for duration: Double? = nil, until done: (() throws -> Bool)? = nil, _ read: () throws -> String) async throws -> [Int64] {
        var values: [Int64] = []
        let start = ContinuousClock.now
        while true {
            if let duration, seconds(since: start) >= duration { break }
            if let done, try done() { break }
            if seconds(since: start) > 900 { break }
            let json = try JSONSerialization.jsonObject(with: Data(try read().utf8)) as? [String: Any]
            let ages = (json?["partitions"] as? [[String: Any]] ?? []).map { ($0["timeLagMs"] as? NSNumber)?.int64Value ?? 0 }
            values.append(ages.max() ?? 0)
            try await Task.sleep(for: .milliseconds(250))
        }
        return values
    }
}

extension String {
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}
