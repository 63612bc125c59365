import Foundation
import KappaCore

/// ETA accuracy: the demo's v2 replayed over a skewed topic (partition 0 holds half the
/// records, partitions 1 and 2 a quarter each); lag samples taken every `sampleMs` as JobHost
/// records them, and the ETA `kappactl status` would show (`LagMath.estimate` over the last 30
/// samples) printed when 10%, 25% and 50% of the records are done, beside the time the replay
/// really took from there.
struct ETABenchmark {
    var records: Int
    var sampleMs: Int

    func run() async throws {
        let root = try FileSystem.makeTemporaryDirectory(prefix: "kappa-bench-eta")
        defer { try? FileSystem.removeTree(root) }
        let state = try StateDirectory(path: root + "/state")
        let log = try SegmentLog(state: state)
        _ = try await log.createTopic("bpi", config: TopicConfig(partitions: 3))
        print("kappa-bench eta: \(Render.grouped(Int64(records))) BPI ticks, half in partition 0, a quarter in each of 1 and 2; samples every \(sampleMs) ms")
        let shares = [records / 2, records / 4, records - records / 2 - records / 4]
        for (p, count) in shares.enumerated() {
            var done = 0, chunk = 0
            while done < count {
                let ticks = BPIFeed(seed: UInt64(p * 1000 + chunk + 1), start: 1_700_000_000_000 + Int64(chunk) * 100_000_000).ticks(seconds: 100_000)
                for i in stride(from: 0, to: ticks.count, by: 10_000) where done < count {
                    let n = min(10_000, ticks.count - i, count - done)
                    _ = try await log.append(topic: "bpi", records: ticks[i..<i + n].map { var r = $0.record; r.partition = p; return r })
                    done += n
                }
                chunk += 1
            }
        }
        let spec = try ManifestParser.parse(DemoManifests.v2)
        let store = try Store.sqlite(state: state)
        _ = try await store.registerVersion(spec, manifest: DemoManifests.v2, startOffsets: [0, 0, 0], actor: "bench", reason: "bench")
        let ends = try await log.offsets(topic: "bpi").map(\.end)
        let total = ends.reduce(0, +)

        let started = ContinuousClock.now
        let replay = Task { try await VersionRunner(log: log, store: store, job: try StreamJobs.make(spec)).run(.untilEnd) }
        var samples: [LagSample] = []
        var marks: [(fraction: Double, at: Double, eta: Double?)] = []
        let fractions = [0.10, 0.25, 0.50]
        while true {
            try await Task.sleep(for: .milliseconds(sampleMs))
            let nexts = try await store.nextOffsets(job: "btc", version: spec.version)
            let sample = LagSample(at: currentTimeMillis(), ends: ends, nexts: nexts)
            samples = Array((samples + [sample]).suffix(30))
            let done = Double(sample.totalNext) / Double(total)
            let estimate = LagMath.estimate(samples, maxLag: spec.catchUp.maxLag, holdForMs: spec.catchUp.holdForMs)
            while marks.count < fractions.count && done >= fractions[marks.count] {
                marks.append((fractions[marks.count], seconds(since: started), estimate.etaSeconds))
            }
            if sample.totalLag <= spec.catchUp.maxLag { break }
        }
        try await replay.value
        let took = seconds(since: started)
        print("")
        print("replay took \(fmt(took, 1)) s (\(fmt(Double(total) / took)) records/s)")
        for m in marks {
            let actual = took - m.at
            let error = m.eta.map { ($0 - actual) / actual * 100 }
            print("at \(Int(m.fraction * 100))% (\(fmt(m.at, 1)) s): ETA \(m.eta.map { fmt($0, 1) + " s" } ?? "unknown"), actually \(fmt(actual, 1)) s left: \(error.map { (($0 >= 0 ? "+" : "") + fmt($0, 0)) + "%" } ?? "-")  (target within ±20%)")
        }
    }
}
