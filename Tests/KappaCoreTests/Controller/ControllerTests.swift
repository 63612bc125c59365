import Foundation
import Synchronization
import Testing
@testable import KappaCore

/// The controller in this process over a real log and store: automatic promotion, promote
/// checks, retire.after, and a failing version beside a serving one.
@Suite struct ControllerTests {
    static func manifest(version: Int, promote: String = "\"manual\"", retireAfter: String? = nil, onBadRecord: String = "fail", sqlExtra: String = "") -> String {
        """
        {"job": "t", "version": \(version), "source": {"topic": "bpi"},
         "output": {"table": "ticks", "columns": {"currency": "TEXT", "n": "INTEGER"}, "primaryKey": ["currency"]},
         "transform": {"sql": "INSERT INTO output(currency, n) SELECT value->>'currency'\(sqlExtra), count(*) FROM batch WHERE true GROUP BY 1 ON CONFLICT(currency) DO UPDATE SET n = output.n + excluded.n"},
         "batch": 500, "catchUp": {"maxLag": 0, "holdFor": "200ms"}, "promote": \(promote), "onBadRecord": "\(onBadRecord)"
         \(retireAfter.map { ", \"retire\": {\"after\": \"\($0)\"}" } ?? "")}
        """
    }

    static func waitFor(_ what: String, timeout: Double = 30, _ condition: () async throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("timed out waiting until \(what)")
    }

    @Test func autoPromotionRetireAfterAndAFailingVersion() async throws {
        let f = try await StoreFixture.make(minutes: 5)
        let lines = Mutex<[String]>([])
        let logger = EventLogger(format: .text) { line in lines.withLock { $0.append(line) } }
        var configuration = Controller.Configuration()
        configuration.tickMs = 50
        configuration.recordLagMs = 100
        let controller = Controller(log: f.log, store: f.store, logger: logger, actor: "test-host", configuration: configuration)
        let running = Task { await controller.run() }
        defer { running.cancel() }
        let op = Operator(log: f.log, store: f.store, actor: "test")
        let state = { (v: Int) in try await f.store.versions(job: "t").first { $0.version == v }?.state }

        _ = try await op.deploy(spec: ManifestParser.parse(Self.manifest(version: 1, retireAfter: "300ms")),
                                manifest: Self.manifest(version: 1, retireAfter: "300ms"), allowPartial: false)
        try await Self.waitFor("v1 serves") { try await state(1) == .serving }

        // v2 promotes itself once caught up, but only if its check holds.
        let failing = Self.manifest(version: 2, promote: #"{"mode": "auto", "checks": ["(SELECT sum(n) FROM new) > 2 * (SELECT sum(n) FROM old)"]}"#)
        _ = try await op.deploy(spec: ManifestParser.parse(failing), manifest: failing, allowPartial: false)
        try await Self.waitFor("v2 caught up") { try await state(2) == .caughtUp }
        if try await state(2) != .caughtUp {
            Issue.record("v2 is \(String(describing: try await state(2))); the controller said: \(lines.withLock { $0.joined(separator: "\n") })")
        }
        try await Self.waitFor("the automatic promotion is refused") {
            lines.withLock { $0.contains { $0.contains("automatic promotion refused job=t version=2") } }
        }
        #expect(try await state(2) == .caughtUp)

        // A manual promotion is refused by the same check, with its text; --force overrides it.
        do {
            _ = try await op.promote(job: "t", version: 2, force: false)
            Issue.record("a failing check did not refuse the promotion")
        } catch let error as CatalogError {
            #expect(error.code == .checkFailed)
            #expect(error.message == "promotion refused: the check (SELECT sum(n) FROM new) > 2 * (SELECT sum(n) FROM old) does not hold (old = version 1, new = version 2); --force overrides")
        }
        #expect(try await state(2) == .caughtUp)
        #expect(try await state(1) == .serving)
        _ = try await op.promote(job: "t", version: 2, force: true)
        #expect(try await f.store.history(job: "t").last?.reason == "promoted with --force")
        _ = try await op.rollback(job: "t")
        #expect(try await state(1) == .serving)
        #expect(try await state(2) == .standby)

        let passing = Self.manifest(version: 3, promote: #"{"mode": "auto", "checks": ["(SELECT sum(n) FROM new) = (SELECT sum(n) FROM old)"]}"#)
        _ = try await op.deploy(spec: ManifestParser.parse(passing), manifest: passing, allowPartial: false)
        try await Self.waitFor("v3 serves") { try await state(3) == .serving }
        #expect(try await state(1) == .standby)
        // v1 was standby for longer than its retire.after: retired, tables dropped.
        try await Self.waitFor("v1 retired") { try await state(1) == .retired }
        #expect(try await f.store.query("SELECT count(*) FROM sqlite_master WHERE name LIKE 'ticks__v1%'").rows == [[.integer(0)]])

        // A version that fails (its SQL errs on the records) never touches the serving one.
        let bad = Self.manifest(version: 4, sqlExtra: " || json_extract(value, '$[')")
        _ = try await op.deploy(spec: ManifestParser.parse(bad), manifest: bad, allowPartial: false)
        try await Self.waitFor("v4 failed") { try await state(4) == .failed }
        let v4 = try await f.store.versions(job: "t").first { $0.version == 4 }!
        #expect(v4.error?.hasPrefix("job t v4 partition ") == true)
        #expect(v4.error?.contains("offset 0: bad record: JSON path error near '[' (onBadRecord is \"fail\")") == true, "\(v4.error ?? "")")
        #expect(try await state(3) == .serving)
        #expect(try await f.store.query("SELECT sum(n) FROM ticks").rows == [[.integer(900)]])

        let report = try await op.status(job: "t")
        #expect(report.jobs[0].serving == 3)
        #expect(report.jobs[0].versions.map(\.state) == [.retired, .standby, .serving, .failed])
        #expect(report.jobs[0].versions[3].error == v4.error)
    }
}

/// The controller's decisions follow its clock: ticked by hand, with time moved by hand.
@Suite struct ControllerClockTests {
    @Test func holdForAndRetireAfterFollowTheClockNotTheWallClock() async throws {
        let f = try await StoreFixture.make(minutes: 2)
        let clock = ManualClock()
        var configuration = Controller.Configuration()
        configuration.useLeases = false
        configuration.pollMs = 10
        let controller = Controller(log: f.log, store: f.store, logger: EventLogger(format: .text) { _ in }, actor: "test", configuration: configuration, clock: clock)
        let op = Operator(log: f.log, store: f.store, actor: "test")
        let state = { (v: Int) in try await f.store.versions(job: "t").first { $0.version == v }?.state }
        let ends = try await f.log.offsets(topic: "bpi").map(\.end)
        func replayed(_ v: Int) async throws {
            try await ControllerTests.waitFor("v\(v) replayed") { try await f.store.nextOffsets(job: "t", version: v) == ends }
        }
        let v1 = ControllerTests.manifest(version: 1, retireAfter: "1h")
        _ = try await op.deploy(spec: ManifestParser.parse(v1), manifest: v1, allowPartial: false)
        try await controller.tick()
        #expect(try await state(1) == .replaying)
        try await replayed(1)
        // Caught up, but not for holdFor (200 ms) on this clock: however long the wall clock runs.
        for _ in 0..<5 { try await controller.tick(); try await Task.sleep(for: .milliseconds(60)) }
        #expect(try await state(1) == .replaying)
        clock.advance(250)
        try await controller.tick()
        #expect(try await state(1) == .serving)

        let v2 = ControllerTests.manifest(version: 2, promote: #"{"mode": "auto"}"#)
        _ = try await op.deploy(spec: ManifestParser.parse(v2), manifest: v2, allowPartial: false)
        try await controller.tick()
        try await replayed(2)
        try await controller.tick()
        clock.advance(250)
        try await controller.tick()
        #expect(try await state(2) == .serving)
        #expect(try await state(1) == .standby)
        // v1's retire.after is an hour: not yet, then once the clock has moved past it.
        clock.advance(59 * 60_000)
        try await controller.tick()
        #expect(try await state(1) == .standby)
        clock.advance(2 * 60_000)
        try await controller.tick()
        #expect(try await state(1) == .retired)
        #expect(try await !f.relationExists("ticks__v1"))
        let stop = Task { await controller.run() }
        stop.cancel()
        await stop.value
    }
}

/// A log whose reads fail while `down` (as the archive's object store would), each with an
/// error of its own.
final class FlakyReadLog: UnifiedLog {
    let base: any UnifiedLog
    let down = Mutex(false)
    let failures = Atomic<Int>(0)
    init(_ base: any UnifiedLog) { self.base = base }
    func createTopic(_ name: String, config: TopicConfig) async throws -> TopicMetadata { try await base.createTopic(name, config: config) }
    func deleteTopic(_ name: String) async throws { try await base.deleteTopic(name) }
    func listTopics() async throws -> [TopicMetadata] { try await base.listTopics() }
    func metadata(topic: String) async throws -> TopicMetadata { try await base.metadata(topic: topic) }
    func append(topic: String, records: [ProducerRecord]) async throws -> [AppendResult] { try await base.append(topic: topic, records: records) }
    func read(topic: String, partition: Int, from offset: Int64, maxRecords: Int, maxBytes: Int) async throws -> LogRecords {
        if down.withLock({ $0 }) {
            let n = failures.add(1, ordering: .relaxed).newValue
            throw LogError(.io, "archive s3://b/p: connection refused (failure \(n))")
        }
        return try await base.read(topic: topic, partition: partition, from: offset, maxRecords: maxRecords, maxBytes: maxBytes)
    }
    func offsets(topic: String) async throws -> [PartitionOffsets] { try await base.offsets(topic: topic) }
    func describe(topic: String) async throws -> [PartitionDescription] { try await base.describe(topic: topic) }
}

/// A partition's worker that cannot read is restarted after a wait that doubles up to a cap, is
/// a problem of the host's meanwhile (the version neither fails nor stops), and once a read
/// succeeds the problem is gone and the wait starts from the beginning again.
@Suite struct WorkerRetryTests {
    @Test func aWorkerThatCannotReadBacksOffIsAProblemAndRecovers() async throws {
        let f = try await StoreFixture.make(minutes: 2)
        let log = FlakyReadLog(f.log)
        let clock = ManualClock()
        var configuration = Controller.Configuration()
        configuration.useLeases = false
        configuration.pollMs = 10
        configuration.retryMs = 100
        configuration.maxRetryMs = 400
        let lines = Mutex<[String]>([])
        let controller = Controller(log: log, store: f.store, logger: EventLogger(format: .text) { line in lines.withLock { $0.append(line) } },
                                    actor: "test", configuration: configuration, clock: clock)
        let op = Operator(log: log, store: f.store, actor: "test")
        let partitions = try await log.offsets(topic: "bpi").count
        /// The waits logged so far for partition 0's worker.
        func waits() -> [Int] {
            lines.withLock { $0.filter { $0.contains("worker stopped on an error; retrying job=t version=1 partition=0 ") } }
                .compactMap { line in line.firstMatch(of: /retryInMs=(\d+)/).flatMap { Int($0.1) } }
        }
        log.down.withLock { $0 = true }
        let v1 = ControllerTests.manifest(version: 1)
        _ = try await op.deploy(spec: ManifestParser.parse(v1), manifest: v1, allowPartial: false)
        for (i, expected) in [100, 200, 400, 400].enumerated() {
            try await controller.tick()
            try await ControllerTests.waitFor("failure \(i + 1) of partition 0") { waits().count == i + 1 }
            #expect(waits().last == expected)
            // Not restarted before its wait is over.
            clock.advance(Int64(expected) - 1)
            try await controller.tick()
            try await Task.sleep(for: .milliseconds(50))
            #expect(waits().count == i + 1)
            clock.advance(1)
        }
        let problems = controller.problems.current
        #expect(problems.map(\.subject) == (0..<partitions).map { "t v1 partition \($0)" })
        #expect(problems.allSatisfy { $0.error.hasPrefix("archive s3://b/p: connection refused") && $0.retryAt != nil })
        #expect(try await f.store.versions(job: "t")[0].state == .replaying)

        log.down.withLock { $0 = false }
        let ends = try await log.offsets(topic: "bpi").map(\.end)
        // Every worker read again: a partition with nothing to read reaches its end before its
        // worker's wait is over (the test once looked then, and found its problem still there).
        try await ControllerTests.waitFor("v1 replayed and every worker read again") {
            clock.advance(400)  // whichever partition failed last is due now
            try await controller.tick()
            return try await f.store.nextOffsets(job: "t", version: 1) == ends && controller.problems.current.isEmpty
        }
        #expect(controller.problems.current.isEmpty)
        #expect(lines.withLock { $0.contains { $0.contains("worker recovered job=t version=1 partition=0") } })

        // Down again: the idle worker's next poll fails, and the wait starts again from 100 ms.
        log.down.withLock { $0 = true }
        try await ControllerTests.waitFor("failure 5 of partition 0") { waits().count == 5 }
        #expect(waits().last == 100)
        let stop = Task { await controller.run() }
        stop.cancel()
        await stop.value
    }
}
