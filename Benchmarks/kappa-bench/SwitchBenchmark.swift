import CSQLite
import Foundation
import KappaCore
import Synchronization

/// Switch latency: promote and rollback (each one catalog transaction: the view redefined, two
/// versions' states, history) timed one by one while 4 reader threads query the reader view in
/// a loop on connections of their own. Reports p50, p99 and max as the medians of 5 runs, beside
/// the floor: a bare write transaction with the same durability on the same database, timed
/// after each run under the same readers; and the readers' query rate.
struct SwitchBenchmark {
    var switches: Int
    /// Runs of `switches` each; the figures are the runs' medians.
    var runs = 5

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
        // The floor: a bare write transaction on the same database with the same durability
        // (WAL, synchronous=FULL), on a connection of its own, while the same readers read.
        var floorDB: OpaquePointer?
        guard sqlite3_open_v2(path, &floorDB, SQLITE_OPEN_READWRITE, nil) == SQLITE_OK else { throw LogError(.io, "floor: cannot open \(path)") }
        defer { sqlite3_close_v2(floorDB) }
        sqlite3_busy_timeout(floorDB, 5000)
        guard sqlite3_exec(floorDB, "PRAGMA synchronous=FULL; CREATE TABLE IF NOT EXISTS bench_floor (n INTEGER); INSERT INTO bench_floor VALUES (0)", nil, nil, nil) == SQLITE_OK else {
            throw LogError(.io, "floor: cannot create its table")
        }
        func percentile(_ sorted: [Double], _ q: Double) -> Double { sorted[min(sorted.count - 1, Int(Double(sorted.count) * q))] }
        var p50s: [Double] = [], p99s: [Double] = [], maxima: [Double] = [], floorP50s: [Double] = [], floorP99s: [Double] = []
        var switchSeconds = 0.0
        var done = 0
        for run in 0..<runs {
            var latencies: [Double] = []
            let started = ContinuousClock.now
            for _ in 0..<switches {
                let t = ContinuousClock.now
                if done % 2 == 0 { _ = try await op.promote(job: "btc", version: 2, force: true) } else { _ = try await op.rollback(job: "btc") }
                done += 1
                latencies.append(seconds(since: t) * 1000)
            }
            switchSeconds += seconds(since: started)
            var floor: [Double] = []
            for _ in 0..<switches {
                let t = ContinuousClock.now
                guard sqlite3_exec(floorDB, "BEGIN IMMEDIATE; UPDATE bench_floor SET n = n + 1; COMMIT", nil, nil, nil) == SQLITE_OK else { throw LogError(.io, "floor: the transaction failed") }
                floor.append(seconds(since: t) * 1000)
            }
            latencies.sort()
            floor.sort()
            p50s.append(percentile(latencies, 0.5)); p99s.append(percentile(latencies, 0.99)); maxima.append(latencies.last!)
            floorP50s.append(percentile(floor, 0.5)); floorP99s.append(percentile(floor, 0.99))
            print("run \(run + 1): switch p50 \(fmt(p50s.last!, 2)) ms  p99 \(fmt(p99s.last!, 2)) ms  max \(fmt(maxima.last!, 2)) ms; bare transaction p50 \(fmt(floorP50s.last!, 2)) ms  p99 \(fmt(floorP99s.last!, 2)) ms")
        }
        shared.stop.store(true, ordering: .relaxed)
        finished.wait()
        let errors = shared.errors.load(ordering: .relaxed)
        func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }
        print("")
        print("switch latency, median of \(runs) runs  p50 \(fmt(median(p50s), 2)) ms  p99 \(fmt(median(p99s), 2)) ms  max \(fmt(maxima.max()!, 2)) ms  (target p99 < 10 ms)")
        print("floor: a bare write transaction, same durability  p50 \(fmt(median(floorP50s), 2)) ms  p99 \(fmt(median(floorP99s), 2)) ms; switch p99 / floor p99 \(fmt(median(p99s) / median(floorP99s), 2)) x")
        print("readers         \(fmt(Double(shared.reads.load(ordering: .relaxed)) / switchSeconds)) queries/s over 4 threads during the switches, \(errors) errors\(shared.firstError.withLock { $0 }.map { " (the first: \($0))" } ?? "")")
    }
}

/// What the reader threads share.
final class ReaderCounters: Sendable {
    let stop = Atomic<Bool>(false)
    let reads = Atomic<Int>(0)
    let errors = Atomic<Int>(0)
    let firstError = Mutex<String?>(nil)

    func failed(_ message: String) {
        errors.add(1, ordering: .relaxed)
        firstError.withLock { $0 = $0 ?? message }
    }

    /// A reader on its own connection: the whole view, again and again, until told to stop.
    static func read(path: String, _ shared: ReaderCounters) {
        var db: OpaquePointer?
        guard sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, nil) == SQLITE_OK else { shared.failed("open: \(path)"); return }
        defer { sqlite3_close_v2(db) }
        sqlite3_busy_timeout(db, 5000)
        while !shared.stop.load(ordering: .relaxed) {
            var statement: OpaquePointer?
            let prepared = sqlite3_prepare_v2(db, "SELECT * FROM btc_prices", -1, &statement, nil)
            guard prepared == SQLITE_OK else {
                shared.failed("prepare: \(String(cString: sqlite3_errmsg(db))) (\(sqlite3_extended_errcode(db)))")
                continue
            }
            var rc = sqlite3_step(statement)
            while rc == SQLITE_ROW { rc = sqlite3_step(statement) }
            if rc != SQLITE_DONE { shared.failed("step: \(String(cString: sqlite3_errmsg(db))) (\(sqlite3_extended_errcode(db)))") }
            sqlite3_finalize(statement)
            if rc == SQLITE_DONE { shared.reads.add(1, ordering: .relaxed) }
        }
    }
}
