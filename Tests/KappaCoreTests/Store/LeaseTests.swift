import Foundation
import Testing
@testable import KappaCore

/// Leases for several JobHosts: exclusive, taken over only after expiry with the next epoch, and
/// checked in the batch transaction, so that a zombie's batch writes nothing.
@Suite struct LeaseTests {
    /// The rules, on any store, with the demo's v2 job (common SQL) registered over `log`.
    static func leaseRules(_ store: any TableStore, log: SegmentLog) async throws {
        let spec = try ManifestParser.parse(DemoManifests.v2)
        _ = try await store.registerVersion(spec, manifest: DemoManifests.v2, startOffsets: [0, 0, 0], actor: "test", reason: "deployed")
        let job = try StreamJobs.make(spec)
        let k0 = LeaseKey(job: "btc", version: 2, partition: 0), k1 = LeaseKey(job: "btc", version: 2, partition: 1),
            k2 = LeaseKey(job: "btc", version: 2, partition: 2)
        let minute: Int64 = 60_000

        // A takes up to its share; B cannot take A's and gets the free one.
        let a = try await store.acquireLeases([k0, k1, k2], owner: "A", ttlMs: minute, limit: 2)
        #expect(a.map(\.key) == [k0, k1])
        #expect(a.map(\.epoch) == [1, 1])
        #expect(try await store.acquireLeases([k0, k1, k2], owner: "B", ttlMs: minute, limit: 3).map(\.key) == [k2])
        // One controller.
        #expect(try await store.acquireLeases([.controller], owner: "A", ttlMs: minute, limit: 1).map(\.owner) == ["A"])
        #expect(try await store.acquireLeases([.controller], owner: "B", ttlMs: minute, limit: 1).isEmpty)

        let first = try await log.read(topic: "bpi", partition: 0, from: 0, maxRecords: 50, maxBytes: 1 << 20)
        #expect(try await store.applyBatch(job, partition: 0, records: first, fence: a[0]).nextOffset == first.nextOffset)

        // A stops renewing (paused, partitioned away): its leases expire and B takes partition 0
        // with the next epoch.
        _ = try await store.renewLeases(owner: "A", ttlMs: -1)
        let taken = try await store.acquireLeases([k0], owner: "B", ttlMs: minute, limit: 1)
        #expect(taken.map(\.epoch) == [2])

        // A wakes up with a batch read under epoch 1: refused in the commit, nothing written.
        let next = try await log.read(topic: "bpi", partition: 0, from: first.nextOffset, maxRecords: 50, maxBytes: 1 << 20)
        let refused = await #expect(throws: LeaseLostError.self) {
            try await store.applyBatch(job, partition: 0, records: next, fence: a[0])
        }
        #expect(refused?.description == "A no longer holds the lease on btc v2 partition 0 (epoch 1); another host took it over")
        #expect(try await store.nextOffsets(job: "btc", version: 2)[0] == first.nextOffset)
        #expect(try await store.applyBatch(job, partition: 0, records: next, fence: taken[0]).nextOffset == next.nextOffset)

        // A renews what nobody took (partition 1, the controller), not partition 0.
        #expect(Set(try await store.renewLeases(owner: "A", ttlMs: minute).map(\.key)) == [k1, .controller])
        // A release lets another host take the lease at once, with the next epoch.
        try await store.releaseLeases([k2], owner: "B")
        #expect(try await store.acquireLeases([k2], owner: "A", ttlMs: minute, limit: 1).map(\.epoch) == [2])
        #expect(try await store.leases().map { "\($0.key.description) \($0.owner) \($0.epoch)" } == [
            "controller A 1", "btc v2 partition 0 B 2", "btc v2 partition 1 A 1", "btc v2 partition 2 A 2",
        ])
    }

    @Test func onSQLite() async throws {
        let f = try await StoreFixture.make(minutes: 2)
        try await Self.leaseRules(f.store, log: f.log)
    }

    #if Postgres
    @Test(.enabled(if: ProcessInfo.processInfo.environment["KAPPA_TEST_POSTGRES"] != nil, "needs the PostgreSQL server scripts/test starts"))
    func onPostgres() async throws {
        let f = try await StoreFixture.make(minutes: 2)
        let store = try PostgresStore(url: PostgresConnectionTests.url, schema: "k\(UInt32.random(in: 0...UInt32.max))")
        try await Self.leaseRules(store, log: f.log)
    }
    #endif
}
