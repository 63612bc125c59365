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
        #expect(Set(a.filter { $0.currency == "EUR" }.map(\.rate)).count > 500)  // it moves
    }

    @Test func builtInManifestsAreTheShippedFiles() throws {
        let root = #filePath.components(separatedBy: "/Tests/")[0]
        #expect(DemoManifests.v1 + "\n" == String(decoding: try FileSystem.readAll(root + "/Manifests/btc-v1.json"), as: UTF8.self))
        #expect(DemoManifests.v2 + "\n" == String(decoding: try FileSystem.readAll(root + "/Manifests/btc-v2.json"), as: UTF8.self))
    }

    @Test func demoRunsTheWorkflowAndItsTableMatchesTheLog() async throws {
        let dir = try TempDirectory()
        let state = try StateDirectory(path: dir.path + "/state")
        let lines = Mutex<[String]>([])
        var demo = KappaDemo(state: state, seed: 3, minutes: 4, narrate: { line in lines.withLock { $0.append(line) } }, progress: { _ in })
        demo.liveRate = 50
        let result = try await demo.run()
        #expect(result.historyTicks == 720)
        #expect(result.history.map { "v\($0.version) \($0.from?.rawValue ?? "-")>\($0.to.rawValue)" } == [
            "v1 ->pending", "v1 pending>replaying", "v1 replaying>caughtUp", "v1 caughtUp>serving",
            "v2 ->pending", "v2 pending>replaying", "v2 replaying>caughtUp",
            "v1 serving>standby", "v2 caughtUp>serving", "v2 serving>standby", "v1 standby>serving",
            "v1 serving>standby", "v2 standby>serving", "v2 serving>serving", "v1 standby>retired",
        ])
        // v2's analysis after promotion ran and passed (the serving>serving row is its note).
        #expect(result.history.contains { $0.version == 2 && $0.reason.hasPrefix("analysis passed: ") && $0.reason.contains(", 0 failures") })
        #expect(lines.withLock { $0 }.contains { $0.hasPrefix("   analysis passed: ") })

        // v2's candles equal those computed here from every record in the log, in offset order.
        let log = try SegmentLog(state: state)
        var candles: [String: (n: Int64, open: Double, high: Double, low: Double, close: Double)] = [:]
        for p in 0..<3 {
            for record in try await readAll(log, "bpi", p) {
                let o = try JSONSerialization.jsonObject(with: Data(record.value ?? [])) as! [String: Any]
                let rate = (o["rate"] as! NSNumber).doubleValue
                let key = "\(o["currency"]!)|\((o["ts"] as! NSNumber).int64Value / 60_000)"
                if let c = candles[key] {
                    candles[key] = (c.n + 1, c.open, max(c.high, rate), min(c.low, rate), rate)
                } else {
                    candles[key] = (1, rate, rate, rate, rate)
                }
            }
        }
        let rows = try await Store.sqlite(state: state).query("SELECT currency, minute, samples, open, high, low, close FROM btc_prices").rows
        #expect(rows.count == candles.count)
        #expect(candles.values.reduce(0) { $0 + $1.n } == Int64(720 + result.liveTicks))
        for row in rows {
            let c = candles["\(row[0].display)|\(row[1].display)"]
            #expect(c != nil)
            guard let c else { continue }
            #expect(row[2...] == [.integer(c.n), .real(c.open), .real(c.high), .real(c.low), .real(c.close)][...])
        }
        let text = lines.withLock { $0.joined(separator: "\n") }
        #expect(text.contains("\n   manifest: column avg_rate removed; column open REAL added; column high REAL added; column low REAL added; column close REAL added; transform changed; promote changed\n"))
        #expect(text.contains("\n   by key (currency, minute): "))
        #expect(try await Store.sqlite(state: state).query("SELECT count(*) FROM sqlite_master WHERE name LIKE 'btc_prices__v1%'").rows == [[.integer(0)]])
    }
}

/// `demo produce --rate` in a later run walks on from the prices in the topic.
@Suite struct BPIProducerTests {
    @Test func liveTicksContinueTheWalkOfTheHistoryInTheTopic() async throws {
        let dir = try TempDirectory()
        let log = try SegmentLog(directory: dir.path)
        let producer = BPIProducer(log: log, seed: 42)
        try await producer.ensureTopic()
        try await producer.ensureTopic()  // a topic that exists is used as it is
        try await producer.history(minutes: 180)
        let (levels, _) = try #require(try await producer.lastLevels())
        // Three hours of walk left the prices well away from where the walk began.
        #expect(zip(levels, BPIFeed.startLevels).contains { abs($0 / $1 - 1) > 0.004 }, "\(levels)")
        let ends = try await log.offsets(topic: "bpi").map(\.end)
        let sent = Mutex(0)
        let live = Task { try await producer.live(rate: 100, afterSeconds: 0) { n in sent.withLock { $0 = n } } }
        while sent.withLock({ $0 }) < 3 { try await Task.sleep(for: .milliseconds(5)) }
        live.cancel()
        try await live.value
        for (p, end) in ends.enumerated() {
            for record in try await log.read(topic: "bpi", partition: p, from: end, maxRecords: 1, maxBytes: 1 << 16) {
                let object = try JSONSerialization.jsonObject(with: Data(record.value ?? [])) as! [String: Any]
                let currency = object["currency"] as! String, rate = (object["rate"] as! NSNumber).doubleValue
                let last = levels[BPIFeed.currencies.firstIndex(of: currency)!]
                #expect(abs(rate / last - 1) < 0.002, "\(currency): the first live tick \(rate) after \(last)")
            }
        }
    }
}
