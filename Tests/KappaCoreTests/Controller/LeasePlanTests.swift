import Testing
@testable import KappaCore

/// The lease decisions, with no catalog and no clock.
@Suite struct LeasePlanTests {
    static func keys(_ n: Int, version: Int = 1) -> [LeaseKey] { (0..<n).map { LeaseKey(job: "j", version: version, partition: $0) } }

    @Test func aHostTakesItsShareRoundedUpAndNoMore() {
        let running = Self.keys(5)
        // Alone: everything.
        #expect(LeasePlan.moves(held: [], running: running, liveHosts: 1) == .init(acquire: running, limit: 5, release: []))
        // One of two hosts: 3 of 5 (rounded up), taken from the free ones in order.
        let half = LeasePlan.moves(held: [running[0], .controller], running: running, liveHosts: 2)
        #expect(half == .init(acquire: Array(running.dropFirst()), limit: 2, release: []))
        // At its share: nothing to do.
        #expect(LeasePlan.moves(held: Set(running.prefix(3)), running: running, liveHosts: 2) == .init(acquire: [], limit: 0, release: []))
    }

    @Test func aHostAboveItsShareGivesBackTheHighestKeysAndWhatNoLongerRuns() {
        let running = Self.keys(4)
        let gone = LeaseKey(job: "j", version: 0, partition: 0)  // a version that stopped
        let moves = LeasePlan.moves(held: Set(running + [gone, .controller]), running: running, liveHosts: 2)
        #expect(moves.acquire.isEmpty)
        #expect(moves.release == [gone, running[2], running[3]])  // never the controller's lease
        // No live host reported (the heartbeat not yet written): counted as this one.
        #expect(LeasePlan.moves(held: [], running: running, liveHosts: 0).limit == 4)
    }

    /// A caught-up serving version's partitions are idle and a replay's are busy: two hosts must
    /// share each version's partitions, not one host the first version and the other the second
    /// (which left a replay to one of two JobHosts in `kappa-bench hosts`).
    @Test func eachVersionsPartitionsAreSpreadOverTheHosts() {
        let serving = Self.keys(8, version: 1), replay = Self.keys(8, version: 2)
        let running = serving + replay
        // The first of two hosts to look takes half of each version, not the first 8 keys.
        let first = LeasePlan.moves(held: [.controller], running: running, liveHosts: 2)
        #expect(first.limit == 8)
        let taken = Set(first.acquire.prefix(first.limit))
        #expect(taken.filter { $0.version == 1 }.count == 4 && taken.filter { $0.version == 2 }.count == 4)
        // The second takes what is left: half of each as well.
        let second = LeasePlan.moves(held: [], running: running, liveHosts: 2)
        #expect(second.limit == 8)
        let left = second.acquire.filter { !taken.contains($0) }.prefix(second.limit)
        #expect(left.filter { $0.version == 1 }.count == 4 && left.filter { $0.version == 2 }.count == 4)
        // A host that was alone holds all 16; a second host arrives: it gives back half of each
        // version (their highest partitions), not the whole replay.
        let alone = LeasePlan.moves(held: Set(running), running: running, liveHosts: 2)
        #expect(alone.release == Array(serving.suffix(4)) + Array(replay.suffix(4)))
        // Uneven versions: 2 and 6 partitions over 2 hosts; the host holding all gives back 1 and 3.
        let small = Self.keys(2, version: 1), big = Self.keys(6, version: 2)
        let uneven = LeasePlan.moves(held: Set(small + big), running: small + big, liveHosts: 2)
        #expect(uneven.release == [small[1]] + Array(big.suffix(3)))
        // Holding 1 of the small one and none of the big one: it takes from the big one first.
        let short = LeasePlan.moves(held: [small[0]], running: small + big, liveHosts: 2)
        #expect(Array(short.acquire.prefix(3)) == Array(big.prefix(3)))
    }

    @Test func leasesAreCheckedEveryQuarterTTLAndAtOnceWhenTheWorkChanges() {
        let work = Set(Self.keys(2))
        #expect(!LeasePlan.isDue(now: 1_000 + 2_499, lastCheck: 1_000, ttlMs: 10_000, running: work, checkedWith: work))
        #expect(LeasePlan.isDue(now: 1_000 + 2_500, lastCheck: 1_000, ttlMs: 10_000, running: work, checkedWith: work))
        #expect(LeasePlan.isDue(now: 1_001, lastCheck: 1_000, ttlMs: 10_000, running: work.union(Self.keys(1, version: 2)), checkedWith: work))
    }

    @Test func onlyThisMachinesDeadHostsLeasesAreReleased() {
        func lease(_ owner: String, _ p: Int) -> Lease { Lease(key: LeaseKey(job: "j", version: 1, partition: p), owner: owner, epoch: 1, expiresAt: 9) }
        let leases = [lease("JobHost@m:10", 0), lease("JobHost@m:10", 1), lease("JobHost@m:11", 2), lease("JobHost@other:10", 3),
                      lease("JobHost@m:12", 4), lease("JobHost@m:x", 5)]
        let dead = LeasePlan.deadPredecessors(leases, machine: "m", me: "JobHost@m:12") { pid in pid == 10 || pid == 12 }
        #expect(dead == ["JobHost@m:10": [leases[0].key, leases[1].key]])
    }
}
