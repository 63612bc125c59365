import Foundation
import Testing
@testable import KappaCore

/// The store contract, written once and run on every store in the build (`StoreKind.available`):
/// the catalog's rules, each lifecycle action, the at-most-one-serving invariant, the view
/// switch, lease fencing, exactly-once commits, bad records and errors in their classes, and
/// bytes that must come back identical everywhere.
@Suite struct StoreContractTests {
    @Test(arguments: StoreKind.available)
    func registerCreatesTablesOffsetsAndHistory(kind: StoreKind) async throws {
        let f = try await StoreFixture.make(kind, minutes: 1)
        let spec = try ManifestParser.parse(DemoManifests.v1)
        let v1 = try await f.store.registerVersion(spec, manifest: DemoManifests.v1, startOffsets: [0, 5, 0], actor: "test", reason: "deployed")
        #expect(v1.state == .pending)
        #expect(try await f.store.jobs().map(\.view) == ["btc_prices"])
        #expect(try await f.store.versions(job: "btc").map(\.spec) == [spec])
        #expect(try await f.store.nextOffsets(job: "btc", version: 1) == [0, 5, 0])
        #expect(try await f.relationExists("btc_prices__v1"))
        #expect(try await f.relationExists("btc_prices__v1__dead"))
        #expect(try await f.store.history(job: "btc").map { "\($0.from?.rawValue ?? "-")>\($0.to.rawValue) \($0.reason) \($0.actor)" } == ["->pending deployed test"])
        let snapshot = try await f.store.snapshot()
        #expect(snapshot.jobs.map(\.name) == ["btc"])
        #expect(snapshot.versions(of: "btc").map(\.version) == [1])
        #expect(snapshot.offsets[VersionID(job: "btc", version: 1)] == [0, 5, 0])
    }

    @Test(arguments: StoreKind.available)
    func versionsMustGoUpAndKeepTheirView(kind: StoreKind) async throws {
        let f = try await StoreFixture.make(kind, minutes: 1)
        _ = try await f.register(StoreFixture.exactManifest(version: 2))
        let twice = await #expect(throws: CatalogError.self) { _ = try await f.register(StoreFixture.exactManifest(version: 2)) }
        #expect(twice?.message == "version 2 of job \"t\" is not above its latest version 2; use version 3 or higher")
        let below = await #expect(throws: CatalogError.self) { _ = try await f.register(StoreFixture.exactManifest(version: 1)) }
        #expect(below?.code == .versionNotAbove)
        #expect(try await !f.relationExists("ticks__v1"))  // the refused registration left nothing
        let other = await #expect(throws: CatalogError.self) { _ = try await f.register(StoreFixture.exactManifest(version: 3, table: "other")) }
        #expect(other?.code == .conflictingOutput)
        #expect(other?.message.contains("every version must keep output.table \"ticks\"") == true)
        // Another job cannot take the view, in any case of its name.
        let taken = StoreFixture.exactManifest(version: 1, table: "TICKS").replacingOccurrences(of: "\"job\": \"t\"", with: "\"job\": \"u\"")
        let refused = await #expect(throws: CatalogError.self) { _ = try await f.register(taken) }
        #expect(refused?.message == "the view \"TICKS\" already belongs to job \"t\"")
        _ = try await f.register(StoreFixture.exactManifest(version: 3))
        #expect(try await f.store.versions(job: "t").map(\.version) == [2, 3])
        let history = try await f.store.history(job: "t")
        #expect(history.map(\.version) == [2, 3])
        #expect(history.allSatisfy { $0.from == nil && $0.to == .pending && $0.actor == "test" })
        #expect(try await f.store.history(job: "t", limit: 1).map(\.version) == [3])
    }

    @Test(arguments: StoreKind.available)
    func transitionsAreCheckedAndRecorded(kind: StoreKind) async throws {
        let f = try await StoreFixture.make(kind, minutes: 1)
        _ = try await f.register(StoreFixture.exactManifest())
        try await f.store.transition(job: "t", version: 1, from: .pending, to: .replaying, reason: "started", actor: "a", error: nil)
        let again = await #expect(throws: CatalogError.self) {
            try await f.store.transition(job: "t", version: 1, from: .pending, to: .replaying, reason: "again", actor: "a", error: nil)
        }
        #expect(again?.message == "job \"t\" version 1 is replaying, not pending")
        let missing = await #expect(throws: CatalogError.self) {
            try await f.store.transition(job: "t", version: 9, from: .pending, to: .replaying, reason: "x", actor: "a", error: nil)
        }
        #expect(missing?.code == .versionNotFound)
        try await f.store.transition(job: "t", version: 1, from: .replaying, to: .failed, reason: "bad", actor: "a", error: "boom")
        let v = try await f.store.versions(job: "t")[0]
        #expect(v.state == .failed && v.error == "boom")
        #expect(try await f.store.history(job: "t").map { "\($0.from?.rawValue ?? "-")>\($0.to.rawValue)" } == ["->pending", "pending>replaying", "replaying>failed"])
    }

    /// Two versions caught up in one pass, decided from one reading: the second decision still
    /// thinks no version serves. The catalog refuses it (found by the crash loop).
    @Test(arguments: StoreKind.available)
    func aDecisionFromAStaleReadingCannotMakeTwoVersionsServe(kind: StoreKind) async throws {
        let f = try await StoreFixture.make(kind, minutes: 1)
        _ = try await f.register(StoreFixture.exactManifest(version: 1))
        _ = try await f.register(StoreFixture.exactManifest(version: 2))
        for v in [1, 2] { try await f.walk(v, [.pending, .replaying]) }
        let stale = try await f.store.versions(job: "t").map(\.status)
        try await f.store.apply(job: "t", actions: try Lifecycle.decide(.caughtUp(version: 1), versions: stale), actor: "a")
        let history = try await f.store.history(job: "t")
        let refused = await #expect(throws: CatalogError.self) {
            try await f.store.apply(job: "t", actions: try Lifecycle.decide(.caughtUp(version: 2), versions: stale), actor: "a")
        }
        #expect(refused?.code == .stateConflict)
        #expect(refused?.message == "job \"t\": versions 1 and 2 would both serve; the catalog changed since the decision was made, which is undone")
        #expect(try await f.store.versions(job: "t").map(\.state) == [.serving, .replaying])
        #expect(try await f.store.history(job: "t") == history)  // the refused decision left no history
    }

    @Test(arguments: StoreKind.available)
    func promoteRollbackChecksAndRetireAreOneTransactionEach(kind: StoreKind) async throws {
        let f = try await StoreFixture.make(kind, minutes: 1)
        for text in [DemoManifests.v1, DemoManifests.v2] {
            _ = try await f.store.registerVersion(try ManifestParser.parse(text), manifest: text, startOffsets: [0, 0, 0], actor: "t", reason: "deployed")
        }
        try f.raw("INSERT INTO btc_prices__v1 VALUES ('EUR', 1, 60, 83000.5)")
        let decide = { (event: LifecycleEvent) in
            let actions = try Lifecycle.decide(event, versions: try await f.store.versions(job: "btc").map(\.status))
            try await f.store.apply(job: "btc", actions: actions, actor: "t")
        }
        for v in [1, 2] { try await f.walk(v, [.pending, .replaying], job: "btc") }
        try await decide(.caughtUp(version: 1))
        #expect(try await f.store.query("SELECT avg_rate FROM btc_prices").rows == [[.real(83000.5)]])
        try await decide(.caughtUp(version: 2))
        // v2 has fewer rows than v1: its check refuses, and nothing changes.
        let refused = await #expect(throws: CatalogError.self) { try await decide(.promote(version: 2, force: false)) }
        #expect(refused?.message.hasPrefix("promotion refused: the check (SELECT count(*) FROM new) >= (SELECT count(*) FROM old) does not hold") == true)
        #expect(try await f.store.versions(job: "btc").map(\.state) == [.serving, .caughtUp])
        try f.raw("INSERT INTO btc_prices__v2 VALUES ('EUR', 1, 60, 1, 2, 0.5, 1.5)")
        try await decide(.promote(version: 2, force: false))
        #expect(try await f.store.versions(job: "btc").map(\.state) == [.standby, .serving])
        #expect(try await f.store.query("SELECT close FROM btc_prices").rows == [[.real(1.5)]])
        let dropped = await #expect(throws: CatalogError.self) { try await f.store.apply(job: "btc", actions: [.dropTables(version: 2)], actor: "t") }
        #expect(dropped?.message == "version 2 of job \"btc\" backs the view \"btc_prices\"; switch the view first")
        try await decide(.rollback(to: nil))
        #expect(try await f.store.query("SELECT avg_rate FROM btc_prices").rows == [[.real(83000.5)]])
        try await decide(.promote(version: 2, force: false))
        try await decide(.retire(version: 1))
        #expect(try await !f.relationExists("btc_prices__v1"))
        #expect(try await !f.relationExists("btc_prices__v1__dead"))
        #expect(try await f.store.nextOffsets(job: "btc", version: 1).isEmpty)
        #expect(try await f.store.history(job: "btc").map { "v\($0.version) \($0.from?.rawValue ?? "-")>\($0.to.rawValue)" }.suffix(7) == [
            "v1 serving>standby", "v2 caughtUp>serving", "v2 serving>standby", "v1 standby>serving",
            "v1 serving>standby", "v2 standby>serving", "v1 standby>retired",
        ])
    }

    @Test(arguments: StoreKind.available)
    func theViewSwitchesAndTheServingTableCannotBeDropped(kind: StoreKind) async throws {
        let f = try await StoreFixture.make(kind, minutes: 1)
        _ = try await f.register(StoreFixture.exactManifest(version: 1))
        _ = try await f.register(StoreFixture.exactManifest(version: 2))
        try f.raw("INSERT INTO ticks__v1 VALUES ('EUR', 1, 1, 1, 1)")
        try f.raw("INSERT INTO ticks__v2 VALUES ('EUR', 2, 2, 2, 2)")
        try await f.store.switchView(job: "t", to: 1)
        #expect(try await f.store.query("SELECT minute FROM ticks").rows == [[.integer(1)]])
        try await f.store.switchView(job: "t", to: 2)
        #expect(try await f.store.query("SELECT minute FROM ticks").rows == [[.integer(2)]])
        let missing = await #expect(throws: CatalogError.self) { try await f.store.switchView(job: "t", to: 7) }
        #expect(missing?.code == .versionNotFound)
        #expect(try await f.store.query("SELECT minute FROM ticks").rows == [[.integer(2)]])
        await #expect(throws: CatalogError.self) { try await f.store.dropVersionTables(job: "t", version: 2) }
        try await f.store.dropVersionTables(job: "t", version: 1)
        #expect(try await !f.relationExists("ticks__v1"))
        #expect(try await f.store.nextOffsets(job: "t", version: 1).isEmpty)
    }

    @Test(arguments: StoreKind.available)
    func lagSamplesAndHeartbeats(kind: StoreKind) async throws {
        let f = try await StoreFixture.make(kind, minutes: 1)
        for at in 0..<10 { try await f.store.recordLag(job: "j", version: 1, sample: LagSample(at: Int64(at), ends: [10, 20], nexts: [Int64(at), 0]), keep: 4) }
        let samples = try await f.store.lagSamples(job: "j", version: 1, limit: 10)
        #expect(samples.map(\.at) == [6, 7, 8, 9])
        #expect(samples.last == LagSample(at: 9, ends: [10, 20], nexts: [9, 0]))
        try await f.store.heartbeat(owner: "host-a", pid: 7, startedAt: 1)
        try await f.store.heartbeat(owner: "host-a", pid: 8, startedAt: 1)
        #expect(try await f.store.liveHosts(withinMs: 5_000) == ["host-a"])
        try await f.store.removeHost(owner: "host-a")
        #expect(try await f.store.liveHosts(withinMs: 5_000).isEmpty)
    }

    /// A JobHost whose heartbeat is late (busy under load) is still shown as running while the
    /// hosts would still count it (the lease TTL), and gone after: status once called a live
    /// host gone at 5 s while it waited behind a runaway statement on a loaded machine.
    @Test(arguments: StoreKind.available)
    func aLateHeartbeatIsAliveUntilTheLeaseTTL(kind: StoreKind) async throws {
        let f = try await StoreFixture.make(kind, minutes: 1)
        let op = Operator(log: f.log, store: f.store, actor: "test")
        try await f.store.heartbeat(owner: "host-a", pid: 7, startedAt: 1)
        // Each look right after its heartbeat is set (a loaded machine takes seconds between).
        func aged(_ age: Int64) throws { try f.raw("UPDATE kappa_hosts SET heartbeat_at = \(currentTimeMillis() - age) WHERE owner = 'host-a'") }
        for (age, alive) in [(6_000, true), (HostLiveness.windowMs + 1_000, false)] as [(Int64, Bool)] {
            try aged(age)
            #expect(try await op.jobHostAlive() == alive, "\(age) ms")
            try aged(age)
            #expect(try await op.status().hosts.isEmpty == !alive, "\(age) ms")
        }
    }

    /// What a host keeps failing at travels with its heartbeat to every status reader, with the
    /// host named; the next heartbeat without it clears it; a damaged row is named, not skipped.
    @Test(arguments: StoreKind.available)
    func aHostsProblemsAreInTheStatusSnapshotUntilItsNextHeartbeat(kind: StoreKind) async throws {
        let f = try await StoreFixture.make(kind, minutes: 1)
        let mirror = HostProblem(subject: "mirror of bpi", error: "S3 GET s3://b/p/bpi/0/manifest.json: connection refused", since: 5, retryAt: 9)
        let worker = HostProblem(subject: "t v1 partition 2", job: "t", version: 1, partition: 2, error: "e'\"; DROP", since: 6, retryAt: nil)
        try await f.store.heartbeat(owner: "host-b", pid: 8, startedAt: 1, problems: [mirror, worker])
        try await f.store.heartbeat(owner: "host-a", pid: 7, startedAt: 1, problems: [])
        var seen = try await f.store.snapshot(.status(samples: 1, hostsWithinMs: 3_600_000)).hostProblems
        #expect(seen.map(\.host) == ["host-b", "host-b"])
        seen = seen.map { var p = $0; p.host = nil; return p }
        #expect(seen == [mirror, worker])
        try await f.store.heartbeat(owner: "host-b", pid: 8, startedAt: 1, problems: [])
        #expect(try await f.store.snapshot(.status(samples: 1, hostsWithinMs: 3_600_000)).hostProblems.isEmpty)
        try f.raw("UPDATE kappa_hosts SET problems = '[{\"subject\": 3}]' WHERE owner = 'host-a'")
        let damaged = await #expect(throws: CatalogError.self) { _ = try await f.store.snapshot(.status(samples: 1, hostsWithinMs: 3_600_000)) }
        #expect(damaged?.message == "catalog table kappa_hosts, column problems (host host-a) is not a list of problems")
    }

    @Test(arguments: StoreKind.available)
    func aCatalogFromANewerKappaIsRefused(kind: StoreKind) async throws {
        let f = try await StoreFixture.make(kind, minutes: 1)
        try f.raw(kind == .sqlite ? "PRAGMA user_version = 99" : "UPDATE kappa_schema SET version = 99")
        let refused = #expect(throws: CatalogError.self) { _ = try f.reopen() }
        #expect(refused?.code == .newerSchema)
        #expect(refused?.message.contains("written by a newer Kappa") == true)
    }

    /// A value in the catalog that is not what the schema says is an error naming the table, the
    /// column and the version, never a default (a state read as `failed`, an offset read as 0,
    /// a lag sample whose bad element shifts the partitions after it).
    @Test(arguments: StoreKind.available)
    func aDamagedCatalogValueIsNamedNotCoerced(kind: StoreKind) async throws {
        let f = try await StoreFixture.make(kind, minutes: 1)
        _ = try await f.register(StoreFixture.exactManifest())
        try f.raw("UPDATE kappa_versions SET state = 'exploded' WHERE job = 't'")
        let state = await #expect(throws: CatalogError.self) { _ = try await f.store.versions(job: "t") }
        #expect(state?.code == .damagedCatalog)
        #expect(state?.message == "catalog table kappa_versions, column state (job t v1) holds the unknown state \"exploded\"")
        await #expect(throws: CatalogError.self) { _ = try await f.store.snapshot() }
        try f.raw("UPDATE kappa_versions SET state = 'pending' WHERE job = 't'")
        #expect(try await f.store.versions(job: "t").map(\.state) == [.pending])

        try await f.store.recordLag(job: "t", version: 1, sample: LagSample(at: 5, ends: [10, 20, 30], nexts: [1, 2, 3]), keep: 10)
        try f.raw("UPDATE kappa_lag_samples SET nexts = '1,x,3' WHERE job = 't'")
        let lag = await #expect(throws: CatalogError.self) { _ = try await f.store.lagSamples(job: "t", version: 1, limit: 10) }
        #expect(lag?.message == "catalog table kappa_lag_samples, column nexts (job t v1, sample at 5) is not a list of offsets")

        try f.raw("UPDATE kappa_versions SET manifest = '{' WHERE job = 't'")
        let manifest = await #expect(throws: CatalogError.self) { _ = try await f.store.versions(job: "t") }
        #expect(manifest?.message.hasPrefix("catalog table kappa_versions, column manifest (job t v1): the stored manifest no longer parses") == true)

        if kind == .sqlite {
            // PostgreSQL's column types refuse these; SQLite stores what it is given.
            try f.raw("UPDATE kappa_offsets SET next_offset = 'abc' WHERE job = 't' AND partition = 1")
            let offset = await #expect(throws: CatalogError.self) { _ = try await f.store.nextOffsets(job: "t", version: 1) }
            #expect(offset?.message == "catalog table kappa_offsets, column next_offset (job t v1) holds text \"abc\", not an integer")
        }
    }
}

/// Leases for several JobHosts: exclusive, taken over only after expiry with the next epoch, and
/// checked in the batch transaction, so that a zombie's batch writes nothing.
extension StoreContractTests {
    @Test(arguments: StoreKind.available)
    func leasesAreExclusiveAndFenceTheCommit(kind: StoreKind) async throws {
        let f = try await StoreFixture.make(kind, minutes: 2)
        let store = f.store
        let spec = try ManifestParser.parse(DemoManifests.v2)
        _ = try await store.registerVersion(spec, manifest: DemoManifests.v2, startOffsets: [0, 0, 0], actor: "test", reason: "deployed")
        let plan = BatchPlan.sql(SQLJob(spec: spec).statements)
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

        let first = try await f.log.read(topic: "bpi", partition: 0, from: 0, maxRecords: 50, maxBytes: 1 << 20)
        #expect(try await store.commit(plan, spec: spec, partition: 0, records: first, fence: a[0]).nextOffset == first.nextOffset)

        // A stops renewing (paused, partitioned away): its leases expire and B takes partition 0
        // with the next epoch.
        _ = try await store.renewLeases(owner: "A", ttlMs: -1)
        let taken = try await store.acquireLeases([k0], owner: "B", ttlMs: minute, limit: 1)
        #expect(taken.map(\.epoch) == [2])

        // A wakes up with a batch read under epoch 1: refused in the commit, nothing written.
        let next = try await f.log.read(topic: "bpi", partition: 0, from: first.nextOffset, maxRecords: 50, maxBytes: 1 << 20)
        let refused = await #expect(throws: LeaseLostError.self) {
            try await store.commit(plan, spec: spec, partition: 0, records: next, fence: a[0])
        }
        #expect(refused?.description == "A no longer holds the lease on btc v2 partition 0 (epoch 1); another host took it over")
        #expect(try await store.nextOffsets(job: "btc", version: 2)[0] == first.nextOffset)
        #expect(try await store.commit(plan, spec: spec, partition: 0, records: next, fence: taken[0]).nextOffset == next.nextOffset)

        // A renews what nobody took (partition 1, the controller), not partition 0.
        #expect(Set(try await store.renewLeases(owner: "A", ttlMs: minute).map(\.key)) == [k1, .controller])
        // A release lets another host take the lease at once, with the next epoch.
        try await store.releaseLeases([k2], owner: "B")
        #expect(try await store.acquireLeases([k2], owner: "A", ttlMs: minute, limit: 1).map(\.epoch) == [2])
        #expect(try await store.leases().map { "\($0.key.description) \($0.owner) \($0.epoch)" } == [
            "controller A 1", "btc v2 partition 0 B 2", "btc v2 partition 1 A 1", "btc v2 partition 2 A 2",
        ])
    }
}
