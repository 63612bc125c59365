import Foundation
import Testing
@testable import KappaCore

/// The `UnifiedLog` contract, written once and run on every log backend of the build: the
/// embedded `SegmentLog` always, `KafkaLog` against librdkafka's mock cluster with the `Kafka`
/// trait. What only one backend has (segment files, crash recovery, Kafka's cursors, consumer
/// groups, settings) is tested in that backend's own suite.
///
/// Serialized: ten Kafka cases at once (mock brokers, 7 MB fills) load a small machine enough to
/// make other suites' short read waits (KafkaLogTests': 200 ms) come back empty; one case at a
/// time keeps each under 5 s and the suite at about 20 s.
@Suite(.serialized) struct LogContractTests {
    // MARK: Offsets

    @Test(arguments: LogBackendKind.available)
    func offsetsStartAtZeroAndReadsStartExactlyWhereAsked(_ backend: LogBackendKind) async throws {
        let f = try LogFixture(backend)
        // Small segments on the embedded log: these reads cross segment files.
        try await f.createTopic("t", partitions: 2, segmentBytes: 4096)
        #expect(try await f.log.offsets(topic: "t") == [PartitionOffsets(partition: 0, earliest: 0, end: 0),
                                                         PartitionOffsets(partition: 1, earliest: 0, end: 0)])
        let fresh = try await f.log.read(topic: "t", partition: 0, from: 0, maxRecords: 10, maxBytes: 1 << 20)
        #expect(fresh.isEmpty && fresh.nextOffset == 0)

        var end: Int64 = 0
        for n in [1, 5, 1000, 3] {
            let records = (0..<Int64(n)).map { ProducerRecord(value: bytes("record-\(end + $0)"), partition: 0) }
            #expect(try await f.log.append(topic: "t", records: records) == [AppendResult(partition: 0, baseOffset: end, count: n)])
            end += Int64(n)
            #expect(try await f.log.offsets(topic: "t")[0] == PartitionOffsets(partition: 0, earliest: 0, end: end))
        }
        #expect(try await f.log.offsets(topic: "t")[1] == PartitionOffsets(partition: 1, earliest: 0, end: 0))

        // Any offset, in any order (back and forth: seeks on Kafka).
        for start in [500, 0, 1008, 1, 6, 5, 7, 999, 1000] as [Int64] {
            let got = try await f.log.read(topic: "t", partition: 0, from: start, maxRecords: 3, maxBytes: 1 << 20)
            let n = Int64(got.count)
            #expect((1...3).contains(n), "from \(start)")
            #expect(got.map(\.offset) == Array(start..<start + n), "from \(start)")
            #expect(got.map { text($0.value)! } == (start..<start + n).map { "record-\($0)" })
            #expect(got.nextOffset == start + n)
        }
        let all = try await f.readAll("t", partition: 0, batch: 7)
        #expect(all.map { text($0.value)! } == (0..<end).map { "record-\($0)" })

        let atEnd = try await f.log.read(topic: "t", partition: 0, from: end, maxRecords: 10, maxBytes: 1 << 20)
        #expect(atEnd.isEmpty && atEnd.nextOffset == end)
        for beyond in [end + 1, end + 1000] {
            let error = await #expect(throws: LogError.self) {
                try await f.log.read(topic: "t", partition: 0, from: beyond, maxRecords: 10, maxBytes: 1 << 20)
            }
            #expect(error?.code == .offsetBeyondEnd)
            #expect(error?.topic == "t" && error?.partition == 0 && error?.offset == beyond)
            #expect(error?.message == "topic \"t\" partition 0: offset \(beyond) is beyond the end offset \(end)")
        }
    }

    /// Offsets are 0, 1, 2, …: a negative offset is below every partition's earliest.
    @Test(arguments: LogBackendKind.available)
    func aNegativeOffsetIsBelowTheEarliest(_ backend: LogBackendKind) async throws {
        let f = try LogFixture(backend)
        try await f.createTopic("t", partitions: 1)
        _ = try await f.log.append(topic: "t", records: (0..<10).map { ProducerRecord(value: bytes("record-\($0)")) })
        // -1 and -2 too, which librdkafka would take for "the end" and "the beginning".
        for negative in [-1, -2] as [Int64] {
            let error = await #expect(throws: LogError.self, "from \(negative)") {
                try await f.log.read(topic: "t", partition: 0, from: negative, maxRecords: 3, maxBytes: 1 << 20)
            }
            #expect(error?.code == .offsetBelowEarliest)
            #expect(error?.message == "topic \"t\" partition 0: offset \(negative) is no longer retained; the earliest offset available is 0")
        }
    }

    // MARK: Keys, values, timestamps

    @Test(arguments: LogBackendKind.available)
    func keysValuesAndTimestampsRoundTripByteForByte(_ backend: LogBackendKind) async throws {
        let f = try LogFixture(backend)
        try await f.createTopic("t", partitions: 1)
        let everyByte = (0...255).map { UInt8($0) }
        let sent = [
            ProducerRecord(key: nil, value: bytes("no key"), timestamp: 1234),
            ProducerRecord(key: [], value: bytes("an empty key, not a missing one"), timestamp: 1235),
            ProducerRecord(key: [0xff, 0x00, 0x01, 0x00, 0xfe], value: [0x00, 0x00, 0x41, 0x00], timestamp: 1),
            // Not UTF-8: a lone continuation byte, an overlong form, a surrogate, 0xfe 0xff.
            ProducerRecord(key: bytes("k"), value: [0xc3, 0x28, 0x80, 0xc0, 0xaf, 0xed, 0xa0, 0x80, 0xfe, 0xff], timestamp: 4_102_444_800_000),
            ProducerRecord(key: everyByte, value: everyByte.reversed(), timestamp: 1_700_000_000_123),
            ProducerRecord(key: [0x00], value: [], timestamp: 99),
        ]
        #expect(try await f.log.append(topic: "t", records: sent) == [AppendResult(partition: 0, baseOffset: 0, count: sent.count)])
        let before = currentTimeMillis()
        _ = try await f.log.append(topic: "t", records: [ProducerRecord(key: bytes("now"), value: [1])])
        let after = currentTimeMillis()

        let got = try await f.readAll("t", partition: 0)
        try #require(got.count == sent.count + 1)
        for (record, expected) in zip(got, sent) {
            #expect(record.key.map(Array.init) == expected.key, "offset \(record.offset)")
            #expect(record.value.map(Array.init) == expected.value, "offset \(record.offset)")
            #expect(record.timestamp == expected.timestamp, "offset \(record.offset)")
        }
        // No timestamp: the time of the append.
        #expect((before...after).contains(got[sent.count].timestamp))
    }

    /// 0 is a timestamp like any other (1 January 1970), not "no timestamp": stored as given, or,
    /// where the log's client cannot send it (librdkafka stamps 0 as "now"), refused with the
    /// whole append, naming the topic. Never stored as another time.
    @Test(arguments: LogBackendKind.available)
    func aTimestampOfZeroIsStoredAsZeroOrRefused(_ backend: LogBackendKind) async throws {
        let f = try LogFixture(backend)
        try await f.createTopic("t", partitions: 1)
        let records = [ProducerRecord(value: [1], timestamp: 5), ProducerRecord(value: [2], timestamp: 0)]
        if backend.isKafka {
            let error = await #expect(throws: LogError.self) { try await f.log.append(topic: "t", records: records) }
            #expect(error?.code == .invalidArgument)
            #expect(error?.message.hasPrefix("topic \"t\": record 2 of the append has timestamp 0; ") == true, "\(error?.message ?? "")")
            #expect(try await f.log.offsets(topic: "t")[0].end == 0)  // nothing appended
        } else {
            _ = try await f.log.append(topic: "t", records: records)
            let got = try await f.readAll("t", partition: 0)
            try #require(got.count == 2)
            #expect(got.map(\.timestamp) == [5, 0])
        }
    }

    // MARK: Partitioning

    @Test(arguments: LogBackendKind.available)
    func keyedRecordsLandWhereKafkasPartitionerPutsThem(_ backend: LogBackendKind) async throws {
        let f = try LogFixture(backend)
        try await f.createTopic("t", partitions: 3)
        let keys: [[UInt8]] = ["EUR", "USD", "GBP", "CHF", "21", "foobar"].map(bytes) + [[], [0xff, 0x00, 0x80]]
        let partition = { (key: [UInt8]) in Murmur2.partition(forKey: key, partitions: 3) }
        #expect(Set(keys.map(partition)).count == 3)  // the keys reach every partition
        var held = [[ProducerRecord]](repeating: [], count: 3)
        for key in keys {
            let record = ProducerRecord(key: key, value: key + [0x2e])
            let p = partition(key)
            #expect(try await f.log.append(topic: "t", records: [record]) == [AppendResult(partition: p, baseOffset: Int64(held[p].count), count: 1)],
                    "key \(key)")
            held[p].append(record)
        }
        // Many records with the same keys in one append: each key's records in its partition, in order.
        let mixed = (0..<70).map { ProducerRecord(key: keys[$0 % keys.count], value: bytes("\($0)")) }
        let results = try await f.log.append(topic: "t", records: mixed)
        #expect(results == (0..<3).map { p in
            AppendResult(partition: p, baseOffset: Int64(held[p].count), count: mixed.filter { partition($0.key!) == p }.count)
        })
        for record in mixed { held[partition(record.key!)].append(record) }
        for p in 0..<3 {
            let got = try await f.readAll("t", partition: p)
            #expect(got.map { $0.key.map(Array.init) } == held[p].map(\.key), "partition \(p)")
            #expect(got.map { $0.value.map(Array.init) } == held[p].map(\.value), "partition \(p)")
        }
        // An explicit partition wins over the key.
        let elsewhere = (partition(keys[0]) + 1) % 3
        #expect(try await f.log.append(topic: "t", records: [ProducerRecord(key: keys[0], value: [1], partition: elsewhere)]).map(\.partition) == [elsewhere])
    }

    @Test(arguments: LogBackendKind.available)
    func recordsGoToTheirPartitionOrAreSpreadInTurn(_ backend: LogBackendKind) async throws {
        let f = try LogFixture(backend)
        try await f.createTopic("t", partitions: 4)
        let placed = try await f.log.append(topic: "t", records: (0..<40).map { ProducerRecord(value: bytes("\($0)"), partition: $0 % 4) })
        #expect(placed == (0..<4).map { AppendResult(partition: $0, baseOffset: 0, count: 10) })
        for p in 0..<4 {
            let got = try await f.readAll("t", partition: p)
            #expect(got.map { text($0.value)! } == (0..<10).map { "\($0 * 4 + p)" })
        }
        // Unkeyed records without a partition: the next partition in turn, record by record.
        let spread = try await f.log.append(topic: "t", records: (0..<12).map { ProducerRecord(value: bytes("s\($0)")) })
        #expect(spread == (0..<4).map { AppendResult(partition: $0, baseOffset: 10, count: 3) })
        let more = try await f.log.append(topic: "t", records: (0..<4).map { ProducerRecord(value: bytes("m\($0)")) })
        #expect(more == (0..<4).map { AppendResult(partition: $0, baseOffset: 13, count: 1) })
    }

    // MARK: Limits

    @Test(arguments: LogBackendKind.available)
    func readsHonourMaxRecordsAndMaxBytes(_ backend: LogBackendKind) async throws {
        let f = try LogFixture(backend)
        try await f.createTopic("t", partitions: 1)
        let value = { (i: Int) in bytes("\(i):") + [UInt8](repeating: 0x2e, count: 1024 - bytes("\(i):").count) }
        // 1000 records of 1 KiB in appends of 10 (the embedded log reads whole appended frames).
        for a in stride(from: 0, to: 1000, by: 10) {
            _ = try await f.log.append(topic: "t", records: (a..<a + 10).map { ProducerRecord(value: value($0)) })
        }
        let one = try await f.log.read(topic: "t", partition: 0, from: 10, maxRecords: 1, maxBytes: 1 << 20)
        #expect(one.map(\.offset) == [10] && one.nextOffset == 11)
        let seven = try await f.log.read(topic: "t", partition: 0, from: 3, maxRecords: 7, maxBytes: 1 << 20)
        #expect((1...7).contains(seven.count))
        #expect(seven.map(\.offset) == Array(3..<3 + Int64(seven.count)))
        let none = try await f.log.read(topic: "t", partition: 0, from: 5, maxRecords: 0, maxBytes: 1 << 20)
        #expect(none.isEmpty && none.nextOffset == 5)

        // A byte budget of 128 KiB: the read stops within one appended frame below it (the embedded
        // log's unit; it reads at least 64 KiB, whatever the budget) or one record above it (Kafka's).
        // Kafka returns what its cursor has fetched: the pause lets it fetch past the budget, so
        // that the budget, not the fetch, cuts the read.
        let budget = 128 << 10
        _ = try await f.log.read(topic: "t", partition: 0, from: 0, maxRecords: 1, maxBytes: 1 << 20)
        try await Task.sleep(for: .milliseconds(500))
        let limited = try await f.log.read(topic: "t", partition: 0, from: 1, maxRecords: 10_000, maxBytes: budget)
        #expect(limited.first?.offset == 1)
        #expect((budget - 10 * 1024...budget + 1024).contains(limited.payloadBytes), "\(limited.count) records")
        let all = try await f.readAll("t", partition: 0, batch: 10_000, maxBytes: budget)
        #expect(all.map { Array($0.value ?? []) } == (0..<1000).map(value))

        // A record larger than the budget still comes back, whole.
        let big = (0..<(200 << 10)).map { UInt8(truncatingIfNeeded: $0 * 7) }
        _ = try await f.log.append(topic: "t", records: [ProducerRecord(value: big)])
        _ = try await f.log.append(topic: "t", records: [ProducerRecord(value: [1])])
        let large = try await f.log.read(topic: "t", partition: 0, from: 1000, maxRecords: 10, maxBytes: 1024)
        #expect(large.map(\.offset) == [1000])
        #expect(large.first.map { Array($0.value ?? []) } == big)
    }

    // MARK: Retention and archive

    @Test(arguments: LogBackendKind.available)
    func readsBelowTheEarliestRetainedOffsetNameIt(_ backend: LogBackendKind) async throws {
        let f = try LogFixture(backend)
        let filled = try await f.createTopicPastRetention("t")
        let earliest = filled.liveEarliest, end = Int64(filled.records.count)
        try #require(earliest > 0, "the log dropped nothing")
        #expect(try await f.log.offsets(topic: "t") == [PartitionOffsets(partition: 0, earliest: earliest, end: end)])
        for below in [0, earliest - 1] {
            let error = await #expect(throws: LogError.self, "from \(below)") {
                try await f.log.read(topic: "t", partition: 0, from: below, maxRecords: 10, maxBytes: 1 << 20)
            }
            #expect(error?.code == .offsetBelowEarliest)
            #expect(error?.topic == "t" && error?.partition == 0 && error?.offset == below)
            #expect(error?.message == "topic \"t\" partition 0: offset \(below) is no longer retained; the earliest offset available is \(earliest)")
        }
        // From the earliest offset on, every record is still there, in order.
        let kept = try await f.readAll("t", partition: 0, from: earliest)
        #expect(kept.map { $0.value.map(Array.init) } == filled.records[Int(earliest)...].map(\.value))
    }

    @Test(arguments: LogBackendKind.available)
    func readsBelowTheLiveLogComeFromTheArchive(_ backend: LogBackendKind) async throws {
        let f = try LogFixture(backend)
        let filled = try await f.createTopicPastRetention("t", archive: f.directory.path + "/archive")
        let log = filled.reader, live = filled.liveEarliest, end = Int64(filled.records.count)
        try #require(live > 0, "the live log dropped nothing")
        #expect(try await log.offsets(topic: "t") == [PartitionOffsets(partition: 0, earliest: 0, end: end)])
        for batch in [97, 1000] {
            let got = try await f.readAll("t", partition: 0, batch: batch, using: log)
            #expect(got.map(\.offset) == Array(0..<end), "batches of \(batch)")
            #expect(got.map { $0.value.map(Array.init) } == filled.records.map(\.value))
            #expect(got.map { $0.key.map(Array.init) } == filled.records.map(\.key))
            #expect(got.map(\.timestamp) == filled.records.map(\.timestamp!))
        }
        // Reads start exactly where asked, on either side of the live log's earliest offset.
        for start in [1, live - 1, live, end - 1] {
            let got = try await log.read(topic: "t", partition: 0, from: start, maxRecords: 3, maxBytes: 1 << 20)
            #expect(got.first?.offset == start && got.first.map { $0.value.map(Array.init) } == filled.records[Int(start)].value, "from \(start)")
        }
    }

    // MARK: Errors

    @Test(arguments: LogBackendKind.available)
    func unknownTopicsAndPartitionsAreNamed(_ backend: LogBackendKind) async throws {
        let f = try LogFixture(backend)
        try await f.createTopic("t", partitions: 3)
        let log = f.log
        let calls: [(String, @Sendable () async throws -> Void)] = [
            ("read", { _ = try await log.read(topic: "nope", partition: 0, from: 0, maxRecords: 1, maxBytes: 1024) }),
            ("append", { _ = try await log.append(topic: "nope", records: [ProducerRecord(value: [1])]) }),
            ("offsets", { _ = try await log.offsets(topic: "nope") }),
            ("describe", { _ = try await log.describe(topic: "nope") }),
            ("metadata", { _ = try await log.metadata(topic: "nope") }),
            ("deleteTopic", { try await log.deleteTopic("nope") }),
        ]
        for (name, call) in calls {
            let error = await #expect(throws: LogError.self, "\(name)") { try await call() }
            #expect(error?.code == .topicNotFound, "\(name)")
            #expect(error?.topic == "nope" && error?.message == "topic \"nope\" does not exist", "\(name)")
        }
        // Asking did not create it (Kafka's brokers may create a topic asked for by name).
        #expect(try await log.listTopics().map(\.name) == ["t"])

        for partition in [3, -1] {
            let error = await #expect(throws: LogError.self, "partition \(partition)") {
                try await log.read(topic: "t", partition: partition, from: 0, maxRecords: 1, maxBytes: 1024)
            }
            #expect(error?.code == .partitionNotFound)
            #expect(error?.topic == "t" && error?.partition == partition)
            #expect(error?.message == "topic \"t\" has no partition \(partition) (it has 3: 0…2)")
        }
        let refused = await #expect(throws: LogError.self) {
            try await log.append(topic: "t", records: [ProducerRecord(value: [1], partition: 0), ProducerRecord(value: [2], partition: 3)])
        }
        #expect(refused?.code == .partitionNotFound && refused?.partition == 3)
        #expect(refused?.message == "topic \"t\" has no partition 3 (it has 3: 0…2)")
        // Nothing of a refused append was written.
        #expect(try await log.offsets(topic: "t").map(\.end) == [0, 0, 0])
    }
}
