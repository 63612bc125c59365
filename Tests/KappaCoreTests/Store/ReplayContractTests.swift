import Foundation
import Testing
@testable import KappaCore

/// The shipped manifests, on every store.
@Suite struct ReplayContractTests {
    @Test(arguments: StoreKind.available)
    func shippedBtcManifestsComputeMeansAndCandles(kind: StoreKind) async throws {
        let f = try await StoreFixture.make(kind, minutes: 5)
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
}
