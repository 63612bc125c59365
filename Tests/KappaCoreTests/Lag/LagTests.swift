import Testing
@testable import KappaCore

@Suite struct LagTests {
    func s(_ at: Int64, end: Int64, next: Int64) -> LagSample { LagSample(at: at, ends: [end], nexts: [next]) }

    @Test func lagIsEndMinusNextPerPartitionAndNeverNegative() {
        let sample = LagSample(at: 0, ends: [10, 5, 0], nexts: [4, 5, 0])
        #expect(sample.totalLag == 6)
        #expect(LagMath.partitions(ends: [10, 5], nexts: [4, 7]).map(\.lag) == [6, 0])
    }

    @Test func rateAndEtaAccountForTheProducer() {
        // Consumes 1,000/s, producer adds 200/s: the lag shrinks by 800/s.
        let samples = (0..<5).map { i in s(Int64(i) * 1000, end: 10_000 + Int64(i) * 200, next: Int64(i) * 1000) }
        let e = LagMath.estimate(samples, maxLag: 0, holdForMs: 1000)
        #expect(e.rate == 1000 && e.producerRate == 200)
        #expect(e.totalLag == 10_800 - 4000)
        #expect(e.etaSeconds == Double(6800) / 800)
        #expect(e.verdict == .catchingUp)
    }

    @Test func noEtaWhenTheProducerIsFaster() {
        let samples = (0..<5).map { i in s(Int64(i) * 1000, end: 1000 + Int64(i) * 500, next: Int64(i) * 100) }
        let e = LagMath.estimate(samples, maxLag: 10, holdForMs: 2000)
        #expect(e.etaSeconds == nil)
        #expect(e.verdict == .falling)
    }

    @Test func caughtUpNeedsTheWholeWindowWithinMaxLag() {
        let low = (0..<4).map { i in s(Int64(i) * 500, end: 1000 + Int64(i), next: 1000 + Int64(i) - 3) }
        #expect(LagMath.verdict(low, maxLag: 5, holdForMs: 1000) == .caughtUp)
        // Held for less than the window: not yet.
        #expect(LagMath.verdict(Array(low.prefix(2)), maxLag: 5, holdForMs: 1000) == .unknown)
        // One sample above maxLag inside the window: not caught up.
        var spiky = low
        spiky[2].nexts = [spiky[2].ends[0] - 50]
        #expect(LagMath.verdict(spiky, maxLag: 5, holdForMs: 1000) == .catchingUp)
        // Within maxLag but growing all along: falling, not caught up.
        let growing = (0..<4).map { i in s(Int64(i) * 500, end: 1000 + Int64(i) * 2, next: 1000) }
        #expect(LagMath.verdict(growing, maxLag: 10, holdForMs: 1000) == .falling)
    }

    @Test func stalledWhenNothingMovesWithLag() {
        let stuck = (0..<4).map { i in s(Int64(i) * 500, end: 1000, next: 10) }
        #expect(LagMath.verdict(stuck, maxLag: 5, holdForMs: 1000) == .stalled)
        #expect(LagMath.verdict([], maxLag: 5, holdForMs: 1000) == .unknown)
        #expect(LagMath.verdict([stuck[0]], maxLag: 5, holdForMs: 1000) == .unknown)
    }
}

@Suite struct LagSampleTextTests {
    @Test func offsetsRoundTripThroughTheCatalogsText() {
        let offsets: [Int64] = [0, 7, 1_234_567_890_123, -1, Int64.max]
        #expect(LagSample.text(offsets) == "0,7,1234567890123,-1,9223372036854775807")
        #expect(LagSample.offsets(fromText: LagSample.text(offsets)) == offsets)
        #expect(LagSample.offsets(fromText: "") == [])
        // A damaged element is never skipped (that would shift every partition after it).
        for damaged in ["1,x,2", "1,,2", "1,99999999999999999999", "3-", "1,", ",1", "-"] {
            #expect(LagSample.offsets(fromText: damaged) == nil, "\(damaged)")
        }
        #expect(LagSample.offsets(fromText: "-1,0,7") == [-1, 0, 7])
    }
}
