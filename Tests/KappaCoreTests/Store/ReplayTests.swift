import Foundation
import Synchronization
import Testing
@testable import KappaCore

@Suite struct ReplayTests {
    @Test func replayEqualsTheResultComputedDirectly() async throws {
        let f = try await StoreFixture.make()
        let job = try await f.register(StoreFixture.exactManifest())
        try await f.replay(job)
        let got = try await f.rows("ticks__v1")
        #expect(got.count == 3 * 20)
        #expect(got == (try await f.expectedExact()))
        let ends = try await f.log.offsets(topic: "bpi").map(\.end)
        #expect(try await f.store.nextOffsets(job: "t", version: 1) == ends)
    }

    @Test func shippedBtcManifestsComputeMeansAndCandles() async throws {
        let f = try await StoreFixture.make(minutes: 5)
        let root = #filePath.components(separatedBy: "/Tests/")[0]
        for name in ["btc-v1", "btc-v2"] {
            let (spec, text) = try ManifestParser.load(path: "\(root)/Manifests/\(name).json")
            _ = try await f.store.registerVersion(spec, manifest: text, startOffsets: [0, 0, 0], actor: "test", reason: "deployed")
            try await f.replay(StreamJobs.make(spec))
        }
        var byMinute: [String: [BPIFeed.Tick]] = [:]
        for t in f.ticks { byMinute["\(t.currency)|\(t.ts / 60_000)", default: []].append(t) }
        let rate = { (t: BPIFeed.Tick) in Double(String(format: "%.2f", t.rate))! }
        let v1 = try await f.rows("btc_prices__v1")
        let v2 = try await f.rows("btc_prices__v2")
        #expect(v1.count == byMinute.count && v2.count == byMinute.count)
        for (a, b) in zip(v1, v2) {
            guard case .text(let currency) = a[0], case .integer(let minute) = a[1], case .real(let avg) = a[3],
                  case .real(let open) = b[3], case .real(let high) = b[4], case .real(let low) = b[5], case .real(let close) = b[6] else {
                Issue.record("unexpected row \(a) \(b)"); continue
            }
            let ticks = byMinute["\(currency)|\(minute)"]!  // in offset order: one currency, one partition
            #expect(a[2] == .integer(Int64(ticks.count)) && b[2] == .integer(Int64(ticks.count)))
            #expect(abs(avg - ticks.map(rate).reduce(0, +) / Double(ticks.count)) < 1e-6)
            #expect(open == rate(ticks.first!) && close == rate(ticks.last!))
            #expect(high == ticks.map(rate).max()! && low == ticks.map(rate).min()!)
        }
    }

    @Test func aCommitFailingHalfWayLosesAndDoublesNothing() async throws {
        let f = try await StoreFixture.make()
        let job = try await f.register(StoreFixture.exactManifest(batch: 50))  // 72 batches
        // Fail at a random batch, once after the job's SQL and once between the offset update
        // and the commit; resume each time.
        for point in ["after job", "before commit"] {
            let failAt = Int.random(in: 3...20)
            let calls = Mutex(0)
            await f.store.setFaultHook { name in
                guard name == point else { return }
                let n = calls.withLock { $0 += 1; return $0 }
                if n == failAt { throw IOError("simulated crash (\(point))", path: "test", code: 5) }
            }
            await #expect(throws: IOError.self) { try await f.replay(job) }
            await f.store.setFaultHook(nil)
        }
        try await f.replay(job)
        #expect(try await f.rows("ticks__v1") == (try await f.expectedExact()))
    }

    @Test func cancellingBetweenBatchesAndResumingGivesTheSameTable() async throws {
        let f = try await StoreFixture.make()
        let job = try await f.register(StoreFixture.exactManifest(batch: 50))
        for _ in 0..<3 {
            let batches = Mutex(0)
            let runner = VersionRunner(log: f.log, store: f.store, job: job) { _, _ in batches.withLock { $0 += 1 } }
            let task = Task { try await runner.run(.follow(pollMs: 10)) }
            while batches.withLock({ $0 }) < Int.random(in: 3...20) { try await Task.sleep(for: .milliseconds(1)) }
            task.cancel()
            try await task.value
        }
        try await f.replay(job)
        #expect(try await f.rows("ticks__v1") == (try await f.expectedExact()))
    }

    @Test func concurrentWorkersOnOneVersionNeverDoubleABatch() async throws {
        let f = try await StoreFixture.make()
        let job = try await f.register(StoreFixture.exactManifest(batch: 61))
        // Two runners race over the same partitions: the stored-offset check lets one batch win.
        async let a: Void = f.replay(job)
        async let b: Void = f.replay(job)
        _ = try await (a, b)
        #expect(try await f.rows("ticks__v1") == (try await f.expectedExact()))
    }
}
