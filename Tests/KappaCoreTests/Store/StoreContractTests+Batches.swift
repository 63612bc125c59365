import Foundation
import Synchronization
import Testing
@testable import KappaCore

/// Batch commits on every store: exactly once under crashes, cancellation and concurrent
/// runners; bad records; errors in their classes; bytes that round-trip identically.
extension StoreContractTests {
    @Test(arguments: StoreKind.available)
    func replayEqualsTheResultComputedDirectly(kind: StoreKind) async throws {
        let f = try await StoreFixture.make(kind)
        let job = try await f.register(StoreFixture.exactManifest())
        try await f.replay(job)
        let got = try await f.rows("ticks__v1")
        #expect(got.count == 3 * 20)
        #expect(got == (try await f.expectedExact()))
        let ends = try await f.log.offsets(topic: "bpi").map(\.end)
        #expect(try await f.store.nextOffsets(job: "t", version: 1) == ends)
    }

    @Test(arguments: StoreKind.available)
    func aCommitFailingHalfWayLosesAndDoublesNothing(kind: StoreKind) async throws {
        let f = try await StoreFixture.make(kind)  // 72 batches: both failures land
        let job = try await f.register(StoreFixture.exactManifest(batch: 50))
        // Fail at a random batch, once after the job's SQL and once between the offset update
        // and the commit; resume each time.
        for point in ["after job", "before commit"] {
            let failAt = Int.random(in: 3...20)
            let calls = Mutex(0)
            await f.store.setFaultHook { name in
                guard name == point else { return }
                let n = calls.withLock { $0 += 1; return $0 }
                if n == failAt { throw IOError("simulated crash (\(point))", path: "test", code: 5) }
            }
            await #expect(throws: IOError.self) { try await f.replay(job) }
            await f.store.setFaultHook(nil)
        }
        try await f.replay(job)
        #expect(try await f.rows("ticks__v1") == (try await f.expectedExact()))
    }

    @Test(arguments: StoreKind.available)
    func cancellingBetweenBatchesAndResumingGivesTheSameTable(kind: StoreKind) async throws {
        let f = try await StoreFixture.make(kind, minutes: 10)
        let job = try await f.register(StoreFixture.exactManifest(batch: 50))
        for _ in 0..<3 {
            let batches = Mutex(0)
            let runner = VersionRunner(log: f.log, store: f.store, job: job, onBatch: { _, _ in batches.withLock { $0 += 1 } })
            let task = Task { try await runner.run(.follow(pollMs: 10)) }
            while batches.withLock({ $0 }) < Int.random(in: 3...20) { try await Task.sleep(for: .milliseconds(1)) }
            task.cancel()
            try await task.value
        }
        try await f.replay(job)
        #expect(try await f.rows("ticks__v1") == (try await f.expectedExact()))
    }

    @Test(arguments: StoreKind.available)
    func concurrentRunnersOnOneVersionNeverDoubleABatch(kind: StoreKind) async throws {
        let f = try await StoreFixture.make(kind, minutes: 10)
        let job = try await f.register(StoreFixture.exactManifest(batch: 61))
        // Two runners (and, on SQLite, a second store as another process would have) race over
        // the same partitions: the stored-offset check lets one batch win.
        let other = try f.reopen()
        async let a: Void = f.replay(job)
        async let b: Void = VersionRunner(log: f.log, store: other, job: job).run(.untilEnd)
        async let c: Void = f.replay(job)
        _ = try await (a, b, c)
        #expect(try await f.rows("ticks__v1") == (try await f.expectedExact()))
        let stale = try await f.log.read(topic: "bpi", partition: 0, from: 0, maxRecords: 10, maxBytes: 1 << 20)
        await #expect(throws: StaleOffsetError.self) {
            _ = try await f.store.commit(try await job.plan(stale), spec: job.spec, partition: 0, records: stale, fence: nil)
        }
    }

    static func fixtureWithBadRecords(_ kind: StoreKind) async throws -> StoreFixture {
        let f = try await StoreFixture.make(kind, partitions: 1, minutes: 2)
        _ = try await f.log.append(topic: "bpi", records: [
            ProducerRecord(key: Array("EUR".utf8), value: Array("not json".utf8)),
            ProducerRecord(key: Array("EUR".utf8), value: [0xFF, 0xFE]),
        ])
        let more = BPIFeed(seed: 9, start: 28_333_335 * 60_000).ticks(seconds: 30)
        _ = try await f.log.append(topic: "bpi", records: more.map(\.record))
        return f
    }

    @Test(arguments: StoreKind.available)
    func deadLetterKeepsBadRecordsAndGoesOn(kind: StoreKind) async throws {
        let f = try await Self.fixtureWithBadRecords(kind)
        let job = try await f.register(StoreFixture.exactManifest(onBadRecord: "deadLetter"))
        try await f.replay(job)
        let dead = try await f.store.query("SELECT partition, \"offset\", value, error FROM ticks__v1__dead ORDER BY \"offset\"").rows
        #expect(dead.map { $0[1] } == [.integer(360), .integer(361)])
        #expect(dead.map { $0[2] } == [.blob(Array("not json".utf8)), .blob([0xFF, 0xFE])])
        #expect(dead.map { $0[3] } == [.text("the value is not JSON text (8 bytes)"), .text("the value is not JSON text (2 bytes)")])
        #expect(try await f.store.query("SELECT sum(samples) FROM ticks__v1").rows == [[.integer(360 + 90)]])
        #expect(try await f.rows("ticks__v1") == (try await f.expectedExact()))
    }

    @Test(arguments: StoreKind.available)
    func failStopsAtTheBadRecordWithItsOffset(kind: StoreKind) async throws {
        let f = try await Self.fixtureWithBadRecords(kind)
        let job = try await f.register(StoreFixture.exactManifest(onBadRecord: "fail"))
        let failure = await #expect(throws: JobFailure.self) { try await f.replay(job) }
        #expect(failure?.partition == 0 && failure?.offset == 360)
        #expect(failure?.description == "job t v1 partition 0 offset 360: bad record: the value is not JSON text (8 bytes) (onBadRecord is \"fail\")")
        // Everything before the bad record's batch is committed; nothing of that batch is.
        let next = try await f.store.nextOffsets(job: "t", version: 1)[0]
        #expect(next <= 360 && next % 97 == 0)
    }

    /// A record without a field the job needs breaks the table's key: a bad record of class
    /// `data` on every store (each names it in its own words); a huge valid record is a record.
    @Test(arguments: StoreKind.available)
    func missingFieldsAreBadRecordsAndHugeValuesAreNot(kind: StoreKind) async throws {
        let notNull = kind == .sqlite ? "NOT NULL constraint failed: ticks__v1.currency" : "null value in column \"currency\""
        for policy in ["deadLetter", "fail"] {
            let f = try await StoreFixture.make(kind, partitions: 1, minutes: 1)
            let pad = String(repeating: "x", count: 1 << 20)
            _ = try await f.log.append(topic: "bpi", records: [
                ProducerRecord(key: Array("EUR".utf8), value: Array(#"{"ts": 1700000000000, "rate": 5.25}"#.utf8)),
                ProducerRecord(key: Array("EUR".utf8), value: Array(#"{"ts": 1700000000000, "currency": "EUR", "rate": 5.25, "pad": "\#(pad)"}"#.utf8)),
            ])
            let job = try await f.register(StoreFixture.exactManifest(onBadRecord: policy))
            if policy == "deadLetter" {
                try await f.replay(job)
                let dead = try await f.store.query("SELECT \"offset\", error FROM ticks__v1__dead").rows
                #expect(dead.map { $0[0] } == [.integer(180)])
                #expect(dead.first?[1].string.contains(notNull) == true, "\(dead)")
                #expect(try await f.store.query("SELECT sum(samples) FROM ticks__v1").rows == [[.integer(181)]])
            } else {
                let failure = await #expect(throws: JobFailure.self) { try await f.replay(job) }
                #expect(failure?.offset == 180)
                #expect(failure?.description.contains(notNull) == true)
            }
        }
    }

    /// Keys and values with NUL bytes, invalid UTF-8 and binary data come back identical on
    /// every store: `key` is the key as text (NULL when it is not text), `key_bytes` the bytes;
    /// a value that is not JSON text is a bad record with its bytes kept.
    @Test(arguments: StoreKind.available)
    func keysAndValuesRoundTripByteForByte(kind: StoreKind) async throws {
        let f = try await StoreFixture.make(kind, partitions: 1, minutes: 0)
        // Also what PostgreSQL's COPY text format gives meaning to: tabs, line ends, backslashes,
        // `\N` (its NULL) and `\.` (its old end of data), in keys and as JSON white space.
        let keys: [[UInt8]?] = [nil, [], Array("n\u{0}a".utf8), Array("n\u{0}b".utf8), [0xFF, 0x00, 0x62, 0x69, 0x6E], Array("EUR".utf8), Array("é€".utf8),
                                Array("a\tb".utf8), Array("l\nb\rc".utf8), Array("\\N".utf8), Array("\\.".utf8), Array("b\\\\s\\".utf8)]
        var records = keys.enumerated().map { i, key in ProducerRecord(key: key, value: Array("{\"s\":\t\"v\(i) é \\u00e9\"\r\n}".utf8)) }
        let badValues: [[UInt8]] = [Array("{\"s\": \"a\u{0}b\"}".utf8), [0x7B, 0xFF, 0x7D], Array("plain text".utf8), [], [0x00]]
        records += badValues.map { ProducerRecord(key: Array("bad".utf8), value: $0) }
        _ = try await f.log.append(topic: "bpi", records: records)
        let manifest = """
            {"job": "b", "version": 1, "source": {"topic": "bpi"},
             "output": {"table": "bytes", "columns": {"id": "INTEGER", "k": "TEXT", "kb": "BLOB", "v": "TEXT"}, "primaryKey": ["id"]},
             "transform": {"sql": "INSERT INTO output(id, k, kb, v) SELECT \\"offset\\", key, key_bytes, value->>'s' FROM batch"},
             "batch": 100, "onBadRecord": "deadLetter"}
            """
        try await f.replay(try await f.register(manifest))
        let rows = try await f.store.query("SELECT id, k, kb, v FROM bytes__v1 ORDER BY id").rows
        let expected: [[SQLValue]] = keys.enumerated().map { i, key in
            let text = key.flatMap { BatchBytes.keyText($0[...]) }
            return [.integer(Int64(i)), text.map(SQLValue.text) ?? .null, key.map(SQLValue.blob) ?? .null, .text("v\(i) é é")]
        }
        #expect(rows == expected)
        // Keys that differ only after a NUL byte stay apart.
        #expect(try await f.store.query("SELECT count(DISTINCT kb) FROM bytes__v1").rows == [[.integer(11)]])
        let dead = try await f.store.query("SELECT \"offset\", key, value, error FROM bytes__v1__dead ORDER BY \"offset\"").rows
        #expect(dead.map { $0[2] } == badValues.map(SQLValue.blob))
        #expect(dead.map { $0[1] } == badValues.map { _ in .blob(Array("bad".utf8)) })
        #expect(dead.map { $0[0] } == (0..<badValues.count).map { .integer(Int64(keys.count + $0)) })
    }

    /// The rows an exec program reports that its table cannot take fail the version on every
    /// store, before anything is stored and never as an infrastructure retry: a null key is a bad
    /// record naming the column, checked before the store sees it (under `onBadRecord: "fail"`).
    @Test(arguments: StoreKind.available)
    func execOutputThatBreaksTheTableFailsTheVersion(kind: StoreKind) async throws {
        let f = try await StoreFixture.make(kind, partitions: 1, minutes: 0)
        _ = try await f.log.append(topic: "bpi", records: BPIFeed(seed: 1, start: 0).ticks(seconds: 2).map(\.record))
        let good = #"while read -r l; do case "$l" in *batchEnd*) echo '{"upsert": {"currency": "X", "ts": 5, "rate": 1.5}}'; echo '{"upsert": {"currency": "Y", "ts": 6}}'; echo '{"delete": {"currency": "X"}}'; echo '{"batchEnd": true}';; esac; done"#
        try await f.replay(try await f.register(ExecJobTests.manifest(ExecJobTests.sh(good))))
        #expect(try await f.store.query("SELECT currency, ts, rate FROM latest__v1").rows == [[.text("Y"), .integer(6), .null]])
        #expect(try await f.store.nextOffsets(job: "x", version: 1) == [6])

        let nullKey = #"while read -r l; do case "$l" in *batchEnd*) echo '{"upsert": {"currency": null, "ts": 5}}'; echo '{"batchEnd": true}';; esac; done"#
        let text = ExecJobTests.manifest(ExecJobTests.sh(nullKey)).replacingOccurrences(of: "\"version\": 1", with: "\"version\": 2")
        let failure = await #expect(throws: JobFailure.self) { try await f.replay(try await f.register(text)) }
        #expect(failure?.message.hasSuffix(#"bad record: output line "{\"upsert\": {\"currency\": null, \"ts\": 5}}": column "currency" is in the primary key and cannot be null (onBadRecord is "fail")"#) == true,
                "\(String(describing: failure))")
        #expect(try await f.store.nextOffsets(job: "x", version: 2) == [0])
    }

    /// A tombstone (null value) is SQL NULL in `batch.value` on every store, not a bad record,
    /// even under `onBadRecord: "fail"`; an empty value stays a bad record.
    @Test(arguments: StoreKind.available)
    func aTombstoneIsANullValueNotABadRecord(kind: StoreKind) async throws {
        let f = try await StoreFixture.make(kind, partitions: 1, minutes: 0)
        _ = try await f.log.append(topic: "bpi", records: [
            ProducerRecord(key: Array("EUR".utf8), value: Array(#"{"s": "x"}"#.utf8)),
            ProducerRecord(key: Array("EUR".utf8), value: nil),
        ])
        let manifest = """
            {"job": "t", "version": 1, "source": {"topic": "bpi"},
             "output": {"table": "seen", "columns": {"id": "INTEGER", "k": "TEXT", "gone": "INTEGER"}, "primaryKey": ["id"]},
             "transform": {"sql": "INSERT INTO output(id, k, gone) SELECT \\"offset\\", key, CASE WHEN value IS NULL THEN 1 ELSE 0 END FROM batch"},
             "batch": 100, "onBadRecord": "fail"}
            """
        try await f.replay(try await f.register(manifest))
        #expect(try await f.store.query("SELECT id, k, gone FROM seen__v1 ORDER BY id").rows
                == [[.integer(0), .text("EUR"), .integer(0)], [.integer(1), .text("EUR"), .integer(1)]])
        #expect(try await f.store.nextOffsets(job: "t", version: 1) == [2])

        // An exec job reads it as "value": null.
        let exec = #"while read -r l; do case "$l" in *'"value":null'*) echo '{"upsert": {"currency": "gone", "ts": 1}}';; *batchEnd*) echo '{"batchEnd": true}';; esac; done"#
        try await f.replay(try await f.register(ExecJobTests.manifest(ExecJobTests.sh(exec))))
        #expect(try await f.store.query("SELECT currency, ts FROM latest__v1").rows == [[.text("gone"), .integer(1)]])
    }
}
