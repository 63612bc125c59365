import Foundation
import Synchronization
import Testing
@testable import KappaCore

@Suite struct DemoTests {
    @Test func feedIsDeterministicAndRealistic() {
        let a = BPIFeed(seed: 7, start: 1_000_000).ticks(seconds: 600)
        let b = BPIFeed(seed: 7, start: 1_000_000).ticks(seconds: 600)
        let c = BPIFeed(seed: 8, start: 1_000_000).ticks(seconds: 600)
        #expect(a == b)
        #expect(a != c)
        #expect(a.count == 1800)
        #expect(a.prefix(3).map(\.currency) == ["EUR", "USD", "GBP"])
        #expect(a.last.map(\.ts) == Int64(1_599_000))
        for tick in a { #expect(tick.rate > 10_000 && tick.rate < 500_000) }
        let eur = a.filter { $0.currency == "EUR" }.map(\.rate)
        #expect(Set(eur).count > 500)  // it moves
    }

    @Test func demoReadsBackExactlyWhatItProduced() async throws {
        let dir = try TempDirectory()
        let state = try StateDirectory(path: dir.path + "/state")
        let lines = Mutex<[String]>([])
        let result = try await LogDemo(state: state, seed: 3, minutes: 5, narrate: { line in lines.withLock { $0.append(line) } }).run()
        #expect(result.records == 900)
        #expect(result.partitions.reduce(0) { $0 + Int($1.end) } == 900)
        // The per-minute means equal those computed directly from the feed.
        let start = result.partitions.isEmpty ? 0 : try await SegmentLog(state: state).read(topic: "bpi", partition: 0, from: 0, maxRecords: 1, maxBytes: 1024).first!.timestamp
        let ticks = BPIFeed(seed: 3, start: start).ticks(seconds: 300)
        for currency in BPIFeed.currencies {
            var byMinute: [Int64: [Double]] = [:]
            for t in ticks where t.currency == currency { byMinute[t.ts / 60_000, default: []].append((t.rate * 100).rounded() / 100) }
            let expected = byMinute.keys.sorted().map { byMinute[$0]!.reduce(0, +) / Double(byMinute[$0]!.count) }
            let got = result.minuteMeans[currency]!
            #expect(got.count == expected.count)
            for (g, e) in zip(got, expected) { #expect(abs(g - e) < 1e-6) }
        }
        #expect(lines.withLock { $0.contains { $0.hasPrefix("   EUR  ") } })
    }
}
