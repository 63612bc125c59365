import Foundation
import Synchronization
import Testing
@testable import KappaCore

/// `transform.timeout` for SQL jobs on every store: a batch that never finishes fails its
/// version naming the limit and commits nothing, and gives the writer to waiting work
/// meanwhile (SQLite's progress handler stops it; on PostgreSQL a watchdog cancels it).
extension StoreContractTests {
    /// Counts the rows of `batch` joined with itself `joins` times: no end in sight for a batch of
    /// 50 records.
    static func runawayManifest(version: Int = 1, timeout: String, joins: Int = 8) -> String {
        let join = (1...joins).map { "batch b\($0)" }.joined(separator: ", ")
        let sum = (1...joins).map { "b\($0).offset" }.joined(separator: " + ")
        return """
        {"job": "r", "version": \(version), "source": {"topic": "bpi"},
         "output": {"table": "runaway", "columns": {"k": "TEXT", "n": "INTEGER"}, "primaryKey": ["k"]},
         "transform": {"sql": "INSERT INTO output(k, n) SELECT 'x', count(\(sum)) FROM \(join) WHERE true ON CONFLICT(k) DO UPDATE SET n = excluded.n", "timeout": "\(timeout)"},
         "batch": 50}
        """
    }

    /// Counts to the batch's size to the power `power` with a `WITH RECURSIVE` query: no end in
    /// sight for 50 records, nor for 25 or 12; 3 take a moment. Quick to plan (a 30-way join of
    /// `batch`, which would do the same, takes PostgreSQL seconds to plan on a busy machine, past
    /// the deploy check's 5 s over an empty batch).
    static func growingManifest(timeout: String, power: Int = 8) -> String {
        let product = Array(repeating: "count(*)", count: power).joined(separator: " * ")
        return """
        {"job": "r", "version": 1, "source": {"topic": "bpi"},
         "output": {"table": "runaway", "columns": {"k": "TEXT", "n": "INTEGER"}, "primaryKey": ["k"]},
         "transform": {"sql": "INSERT INTO output(k, n) SELECT 'x', (WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < (SELECT \(product) FROM batch)) SELECT count(*) FROM r) + count(*) FROM batch WHERE true ON CONFLICT(k) DO UPDATE SET n = excluded.n", "timeout": "\(timeout)"},
         "batch": 50}
        """
    }

    /// An endless `WITH RECURSIVE` query, once per batch: no end whatever the batch's size.
    static func endlessManifest(timeout: String) -> String {
        """
        {"job": "e", "version": 1, "source": {"topic": "bpi"},
         "output": {"table": "endless", "columns": {"k": "TEXT", "n": "INTEGER"}, "primaryKey": ["k"]},
         "transform": {"sql": "INSERT INTO output(k, n) SELECT 'x', (WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT count(*) FROM r) + count(*) FROM batch WHERE true ON CONFLICT(k) DO UPDATE SET n = excluded.n", "timeout": "\(timeout)"},
         "batch": 50}
        """
    }

    /// `WITH` queries and `count(*) FROM batch` are the job's to use (an endless one ends at its
    /// time limit, at deploy or at its first batch); a whole-row read of another table is not.
    @Test(arguments: StoreKind.available)
    func withQueriesAndCountStarOverBatchAreAllowed(kind: StoreKind) async throws {
        let f = try await StoreFixture.make(kind, partitions: 1, minutes: 2)
        let leak = StoreFixture.exactManifest(version: 1, table: "leak").replacingOccurrences(of: "\"job\": \"t\"", with: "\"job\": \"l\"")
            .replacingOccurrences(of: "FROM batch WHERE true", with: "FROM batch WHERE (SELECT count(*) FROM kappa_versions) >= 0")
        let refused = await #expect(throws: CatalogError.self) { _ = try await f.register(leak) }
        #expect(refused?.message.contains("kappa_versions") == true, "\(String(describing: refused))")
        if kind == .postgres {
            // PostgreSQL runs the SQL over an empty batch at deploy: that is where it ends.
            let endless = await #expect(throws: CatalogError.self) { _ = try await f.register(Self.endlessManifest(timeout: "300ms")) }
            #expect(endless?.message == "transform.sql did not finish over an empty batch within 5s at deploy", "\(String(describing: endless))")
            #expect(try await !f.store.jobs().contains { $0.name == "e" })
            return
        }
        let job = try await f.register(Self.endlessManifest(timeout: "300ms"))
        let records = try await f.log.read(topic: "bpi", partition: 0, from: 0, maxRecords: 50, maxBytes: 1 << 20)
        let failure = await #expect(throws: JobFailure.self) {
            _ = try await f.store.commit(try await job.plan(records), spec: job.spec, partition: 0, records: records, fence: nil)
        }
        #expect(failure?.message.hasPrefix("transform.sql did not finish the batch within 300ms") == true, "\(String(describing: failure))")
    }

    @Test(arguments: StoreKind.available)
    func aBatchPastTransformTimeoutFailsItsVersionAndCommitsNothing(kind: StoreKind) async throws {
        let f = try await StoreFixture.make(kind, partitions: 1, minutes: 2)
        let job = try await f.register(Self.runawayManifest(timeout: "1s"))
        let records = try await f.log.read(topic: "bpi", partition: 0, from: 0, maxRecords: 50, maxBytes: 1 << 20)
        let failure = await #expect(throws: JobFailure.self) {
            _ = try await f.store.commit(try await job.plan(records), spec: job.spec, partition: 0, records: records, fence: nil)
        }
        #expect(failure?.message == "transform.sql did not finish the batch within 1s (transform.timeout); it was stopped", "\(String(describing: failure))")
        #expect(failure?.partition == 0 && failure?.offset == 0)
        #expect(try await f.store.nextOffsets(job: "r", version: 1) == [0])
        #expect(try await f.rows("runaway__v1", orderBy: "k").isEmpty)
        #expect(try await f.rows("runaway__v1__dead", orderBy: "partition").isEmpty)  // never blamed on a record
        // The store works on: another version's batch commits on the same connection.
        let exact = try await f.register(StoreFixture.exactManifest())
        try await f.replay(exact)
        #expect(try await f.rows("ticks__v1") == (try await f.expectedExact()))
    }

    /// While a batch too slow for the writer runs on the store's one writer connection, the work
    /// queued behind it (another job's batches, catalog reads) goes first: the slow batch gives
    /// way and is tried again behind it with half its records, until a part fits; the rest is the
    /// next batch's. Exactly once all the same: the stored offset is where the committed part ends.
    @Test(arguments: StoreKind.available)
    func aSlowBatchGivesWayToOtherCommitsAndCommitsAPart(kind: StoreKind) async throws {
        let f = try await StoreFixture.make(kind, partitions: 1, minutes: 5)
        let slow = try await f.register(Self.growingManifest(timeout: "10m"))
        let exact = try await f.register(StoreFixture.exactManifest(batch: 20))
        let records = try await f.log.read(topic: "bpi", partition: 0, from: 0, maxRecords: 50, maxBytes: 1 << 20)
        let plan = try await slow.plan(records)
        let stuck = Task { try await f.store.commit(plan, spec: slow.spec, partition: 0, records: records, fence: nil) }
        try await Task.sleep(for: .milliseconds(100))
        let replay = ContinuousClock.now
        try await f.replay(exact)
        // 15 batches of the other job, each waiting at most about one give-way (250 ms) and pause.
        #expect(ContinuousClock.now - replay < .seconds(30))
        #expect(try await f.rows("ticks__v1") == (try await f.expectedExact()))
        let result = try await stuck.value
        #expect(result.records < 50 && result.records >= 1)
        #expect(result.nextOffset == Int64(result.records))
        #expect(try await f.store.nextOffsets(job: "r", version: 1) == [result.nextOffset])
        let rows = try await f.rows("runaway__v1", orderBy: "k")
        #expect(rows.count == 1)
    }

    /// Cancelling the worker (JobHost shutting down) stops a running statement at once.
    @Test(arguments: StoreKind.available)
    func cancellingAWorkerStopsItsRunningStatement(kind: StoreKind) async throws {
        let f = try await StoreFixture.make(kind, partitions: 1, minutes: 2)
        let job = try await f.register(Self.runawayManifest(timeout: "10m"))
        let records = try await f.log.read(topic: "bpi", partition: 0, from: 0, maxRecords: 50, maxBytes: 1 << 20)
        let plan = try await job.plan(records)
        let task = Task { try await f.store.commit(plan, spec: job.spec, partition: 0, records: records, fence: nil) }
        try await Task.sleep(for: .milliseconds(300))
        let cancelled = ContinuousClock.now
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
        #expect(ContinuousClock.now - cancelled < .seconds(60))  // the budget is 10 minutes
        #expect(try await f.store.nextOffsets(job: "r", version: 1) == [0])
        // The connection works on after the cancel: another version's batches commit.
        let exact = try await f.register(StoreFixture.exactManifest())
        try await f.replay(exact)
        #expect(try await f.rows("ticks__v1") == (try await f.expectedExact()))
    }
}
