import CSQLite
import Foundation
import KappaCore
import Synchronization

/// Switch latency: promote and rollback (each one catalog transaction: the view redefined, two
/// versions' states, history) timed one by one while 4 reader threads query the reader view in
/// a loop on connections of their own. Reports p50, p99 and max, and the readers' query rate.
struct SwitchBenchmark {
    var switches: Int

    func run() async throws {
        let root = try FileSystem.makeTemporaryDirectory(prefix: "kappa-bench-switch")
        defer { try? FileSystem.removeTree(root) }
        let state = try StateDirectory(path: root + "/state")
        let log = try SegmentLog(state: state)
        _ = try await log.createTopic("bpi", config: TopicConfig(partitions: 3))
        let ticks = BPIFeed(seed: 1, start: 1_700_000_000_000).ticks(seconds: 3600)
        for i in stride(from: 0, to: ticks.count, by: 5000) { _ = try await log.append(topic: "bpi", records: ticks[i..<min(i + 5000, ticks.count)].map(\.record)) }
        let store = try Store.sqlite(state: state)
        for manifest in [DemoManifests.v1, DemoManifests.v2] {
            let spec = try ManifestParser.parse(manifest)
            _ = try await store.registerVersion(spec, manifest: manifest, startOffsets: [0, 0, 0], actor: "bench", reason: "bench")
            try await VersionRunner(log: log, store: store, job: try StreamJobs.make(spec)).run(.untilEnd)
            let steps: [VersionState] = spec.version == 1 ? [.pending, .replaying, .caughtUp, .serving] : [.pending, .replaying, .caughtUp]
            for (from, to) in zip(steps, steps.dropFirst()) {
                try await store.transition(job: "btc", version: spec.version, from: from, to: to, reason: "bench", actor: "bench", error: nil)
            }
        }
        try await store.switchView(job: "btc", to: 1)
        print("kappa-bench switch: \(switches) promotes and rollbacks of btc (\(Render.grouped(Int64(ticks.count))) ticks, 180 rows a version) with 4 readers")

        let shared = ReaderCounters()
        let path = state.catalogPath
        let finished = DispatchGroup()
        for _ in 0..<4 {
            finished.enter()
            let thread = Thread { ReaderCounters.read(path: path, shared); finished.leave() }
            thread.start()
        }
        let op = Operator(log: log, store: store, actor: "bench")
        var latencies: [Double] = []
        let started = ContinuousClock.now
        for i in 0..<switches {
            let t = ContinuousClock.now
            if i % 2 == 0 { _ = try await op.promote(job: "btc", version: 2, force: true) } else { _ = try await op.rollback(job: "btc") }
            latencies.append(seconds(since: t) * 1000)
        }
        let total = seconds(since: started)
        shared.stop.store(true, ordering: .relaxed)
        finished.wait()
        let errors = shared.errors.load(ordering: .relaxed)
        latencies.sort()
        let p = { (q: Double) in latencies[min(latencies.count - 1, Int(Double(latencies.count) * q))] }
        print("")
        print("switch latency  p50 \(fmt(p(0.5), 2)) ms  p99 \(fmt(p(0.99), 2)) ms  max \(fmt(latencies.last!, 2)) ms  (target p99 < 10 ms)")
        print("readers         \(fmt(Double(shared.reads.load(ordering: .relaxed)) / total)) queries/s over 4 threads, \(errors) errors")
    }
}

/// What the reader threads share.
final class ReaderCounters: Sendable {
    let stop = Atomic<Bool>(false)
    let reads = Atomic<Int>(0)
    let errors = Atomic<Int>(0)

    /// A reader on its own connection: the whole view, again and again, until told to stop.
    static func read(path: String, _ shared: ReaderCounters) {
        var db: OpaquePointer?
        guard sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, nil) == SQLITE_OK else { shared.errors.add(1, ordering: .relaxed); return }
        defer { sqlite3_close_v2(db) }
        sqlite3_busy_timeout(db, 5000)
        while !shared.stop.load(ordering: .relaxed) {
            var statement: OpaquePointer?
            guard sqlite3_prepare_v2(db, "SELECT * FROM btc_prices", -1, &statement, nil) == SQLITE_OK else {
                shared.errors.add(1, ordering: .relaxed)
                continue
            }
            var rc = sqlite3_step(statement)
            while rc == SQLITE_ROW { rc = sqlite3_step(statement) }
            sqlite3_finalize(statement)
            if rc == SQLITE_DONE { shared.reads.add(1, ordering: .relaxed) } else { shared.errors.add(1, ordering: .relaxed) }
        }
    }
}
