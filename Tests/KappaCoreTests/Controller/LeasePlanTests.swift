import Testing
@testable import KappaCore

/// The lease decisions, with no catalog and no clock.
@Suite struct LeasePlanTests {
    static func keys(_ n: Int, version: Int = 1) -> [LeaseKey] { (0..<n).map { LeaseKey(job: "j", version: version, partition: $0) } }

    @Test func theRunningPartitionsAreDealtRoundRobinOverTheHostsByName() {
        let running = Self.keys(5)
        // Alone: everything.
        #expect(LeasePlan.moves(held: [], running: running, hosts: ["a"], me: "a") == .init(acquire: running, limit: 5, release: []))
        // Two hosts: partitions 0, 2, 4 and 1, 3, whatever order the rows came in.
        #expect(LeasePlan.assignment(running: running.reversed(), hosts: ["b", "a"], me: "a") == [running[0], running[2], running[4]])
        #expect(LeasePlan.assignment(running: running, hosts: ["a", "b"], me: "b") == [running[1], running[3]])
        // Holding one of its own already: takes the other two.
        let half = LeasePlan.moves(held: [running[0], .controller], running: running, hosts: ["a", "b"], me: "a")
        #expect(half == .init(acquire: [running[2], running[4]], limit: 2, release: []))
        // Its own and no more: nothing to do.
        #expect(LeasePlan.moves(held: [running[1], running[3]], running: running, hosts: ["a", "b"], me: "b") == .init(acquire: [], limit: 0, release: []))
        // Its heartbeat not yet in the rows: counted all the same.
        #expect(LeasePlan.assignment(running: running, hosts: [], me: "b") == running)
        #expect(LeasePlan.assignment(running: running, hosts: ["a"], me: "b") == [running[1], running[3]])
    }

    @Test func aHostGivesBackAnothersPartitionsAndWhatNoLongerRuns() {
        let running = Self.keys(4)
        let gone = LeaseKey(job: "j", version: 0, partition: 0)  // a version that stopped
        let moves = LeasePlan.moves(held: Set(running + [gone, .controller]), running: running, hosts: ["a", "b"], me: "a")
        #expect(moves.acquire.isEmpty)
        #expect(moves.release == [gone, running[1], running[3]])  // never the controller's lease
        // Nor a mirror's (`JobHost --mirror`), which no version runs.
        let mirror = LeaseKey.mirror(topic: "bpi")
        #expect(mirror.mirrorTopic == "bpi" && !mirror.isPartition && !mirror.isController && mirror.description == "mirror of topic \"bpi\"")
        #expect(LeasePlan.moves(held: [mirror, running[0]], running: running, hosts: ["a", "b"], me: "a").release.isEmpty)
        #expect(LeaseKey(job: "j", version: 1, partition: 0).isPartition && LeaseKey.controller.mirrorTopic == nil)
    }

    /// A caught-up serving version's partitions are idle and a replay's are busy: two hosts must
    /// share each version's partitions. Deciding towards a share of the total, one host holding
    /// all 8 of the serving version and the other all 8 of the replay were both at their share,
    /// so nothing moved and one JobHost ran the replay (`kappa-bench hosts` measured 0.6x).
    @Test func eachVersionsPartitionsAreSpreadOverTheHostsWhateverTheyHold() {
        let serving = Self.keys(8, version: 1), replay = Self.keys(8, version: 2)
        let running = serving + replay
        let a = LeasePlan.moves(held: Set(serving), running: running, hosts: ["a", "b"], me: "a")
        let b = LeasePlan.moves(held: Set(replay), running: running, hosts: ["a", "b"], me: "b")
        #expect(a.release == serving.filter { $0.partition % 2 == 1 })
        #expect(a.acquire == replay.filter { $0.partition % 2 == 0 })
        #expect(b.release == replay.filter { $0.partition % 2 == 0 })
        #expect(b.acquire == serving.filter { $0.partition % 2 == 1 })
        // After both moved, each runs 4 of each and nothing moves again.
        let heldA = Set(serving).subtracting(a.release).union(a.acquire)
        #expect(heldA.filter { $0.version == 1 }.count == 4 && heldA.filter { $0.version == 2 }.count == 4)
        #expect(LeasePlan.moves(held: heldA, running: running, hosts: ["a", "b"], me: "a") == .init(acquire: [], limit: 0, release: []))
    }

    /// Every partition goes to exactly one host; each host gets ⌊p/n⌋ or ⌈p/n⌉ of each version
    /// and of the whole. Includes the case that defeats two caps decided by each host alone
    /// (3 hosts; versions of 5, 2 and 2 partitions), and many random ones.
    @Test func everyPartitionHasExactlyOneHostAndEachVersionIsBalanced() {
        var rng = SystemRandomNumberGenerator()
        var cases: [([LeaseKey], [String])] = [(Self.keys(5, version: 1) + Self.keys(2, version: 2) + Self.keys(2, version: 3), ["a", "b", "c"])]
        for _ in 0..<200 {
            let versions = Int.random(in: 1...5, using: &rng)
            let running = (1...versions).flatMap { Self.keys(Int.random(in: 0...9, using: &rng), version: $0) }.shuffled(using: &rng)
            cases.append((running, (0..<Int.random(in: 1...6, using: &rng)).map { "JobHost@m:\($0)" }.shuffled(using: &rng)))
        }
        for (running, hosts) in cases {
            let parts = hosts.map { LeasePlan.assignment(running: running, hosts: hosts, me: $0) }
            #expect(parts.flatMap { $0 }.sorted() == running.sorted(), "\(hosts)")
            for version in Set(running.map(\.version)) {
                let counts = parts.map { $0.filter { $0.version == version }.count }
                #expect(counts.max()! - counts.min()! <= 1, "version \(version): \(counts)")
            }
            let totals = parts.map(\.count)
            #expect(totals.max()! - totals.min()! <= 1, "\(totals)")
        }
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
        // A heartbeat alone (no lease) is judged the same way.
        #expect(LeasePlan.isDeadPredecessor("JobHost@m:10", machine: "m", me: "JobHost@m:12") { $0 == 10 })
        #expect(!LeasePlan.isDeadPredecessor("JobHost@m:11", machine: "m", me: "JobHost@m:12") { $0 == 10 })
        #expect(!LeasePlan.isDeadPredecessor("JobHost@other:10", machine: "m", me: "JobHost@m:12") { $0 == 10 })
    }
}
