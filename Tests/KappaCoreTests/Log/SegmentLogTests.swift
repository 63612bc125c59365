import Foundation
import Testing
@testable import KappaCore

@Suite struct SegmentLogTests {
    @Test func offsetsAreContiguousFromZero() async throws {
        let dir = try TempDirectory()
        let log = try SegmentLog(directory: dir.path)
        _ = try await log.createTopic("t", config: TopicConfig(partitions: 1))
        var expected: Int64 = 0
        for n in [1, 5, 1000, 3] {
            let records = (0..<n).map { ProducerRecord(value: bytes("v\($0)")) }
            let results = try await log.append(topic: "t", records: records)
            #expect(results == [AppendResult(partition: 0, baseOffset: expected, count: n)])
            expected += Int64(n)
        }
        let all = try await readAll(log, "t", 0, batch: 7)
        #expect(all.map(\.offset) == Array(0..<expected))
        #expect(try await log.offsets(topic: "t") == [PartitionOffsets(partition: 0, earliest: 0, end: expected)])
    }

    @Test func keysTimestampsAndValuesRoundTrip() async throws {
        let dir = try TempDirectory()
        let log = try SegmentLog(directory: dir.path)
        _ = try await log.createTopic("t", config: TopicConfig(partitions: 1))
        _ = try await log.append(topic: "t", records: [
            ProducerRecord(key: bytes("k"), value: bytes("{\"a\":1}"), timestamp: 1234),
            ProducerRecord(key: nil, value: [], timestamp: 99),
            ProducerRecord(key: [], value: [0, 255, 7], timestamp: 5),
        ])
        let before = currentTimeMillis()
        _ = try await log.append(topic: "t", records: [ProducerRecord(value: [1])])  // stamped with the time of the append
        let after = currentTimeMillis()
        let all = try await readAll(log, "t", 0)
        #expect(all.count == 4)
        #expect((before...after).contains(all[3].timestamp))
        #expect(text(all[0].key) == "k" && text(all[0].value) == "{\"a\":1}" && all[0].timestamp == 1234)
        #expect(all[1].key == nil && all[1].value.isEmpty && all[1].timestamp == 99)
        #expect(all[2].key.map(Array.init) == [] && Array(all[2].value) == [0, 255, 7])
    }

    @Test func readsFromAnyOffsetAcrossSegments() async throws {
        let dir = try TempDirectory()
        let log = try SegmentLog(directory: dir.path)
        _ = try await log.createTopic("t", config: TopicConfig(partitions: 1, segmentBytes: 4096))
        for batch in 0..<50 {
            let records = (0..<20).map { ProducerRecord(value: bytes("record-\(batch * 20 + $0)")) }
            _ = try await log.append(topic: "t", records: records)
        }
        let description = try await log.describe(topic: "t")
        #expect(description[0].segments > 5)
        #expect(description[0].end == 1000)
        for start in [0, 1, 19, 20, 21, 333, 500, 999] as [Int64] {
            let got = try await log.read(topic: "t", partition: 0, from: start, maxRecords: 3, maxBytes: 1 << 20)
            #expect(got.first?.offset == start)
            #expect(text(got.first?.value) == "record-\(start)")
        }
        let all = try await readAll(log, "t", 0, batch: 13)
        #expect(all.map(\.offset) == Array(0..<1000))
        #expect(all.enumerated().allSatisfy { text($1.value) == "record-\($0)" })
        let end = try await log.read(topic: "t", partition: 0, from: 1000, maxRecords: 10, maxBytes: 1 << 20)
        #expect(end.isEmpty && end.nextOffset == 1000)
        await #expect(throws: LogError.self) { try await log.read(topic: "t", partition: 0, from: 1001, maxRecords: 1, maxBytes: 1024) }
    }

    @Test func severalPartitionsKeepTheirOwnOffsets() async throws {
        let dir = try TempDirectory()
        let log = try SegmentLog(directory: dir.path)
        _ = try await log.createTopic("t", config: TopicConfig(partitions: 4))
        let results = try await log.append(topic: "t", records: (0..<40).map { ProducerRecord(value: bytes("\($0)"), partition: $0 % 4) })
        #expect(results.map(\.partition) == [0, 1, 2, 3])
        #expect(results.allSatisfy { $0.baseOffset == 0 && $0.count == 10 })
        for p in 0..<4 {
            let got = try await readAll(log, "t", p)
            #expect(got.map(\.offset) == Array(0..<10))
            #expect(got.map { text($0.value)! } == (0..<10).map { "\($0 * 4 + p)" })
        }
        // Unkeyed records spread over every partition.
        let spread = try await log.append(topic: "t", records: (0..<8).map { ProducerRecord(value: bytes("\($0)")) })
        #expect(spread.count == 4 && spread.allSatisfy { $0.count == 2 })
    }

    @Test func keyedRecordsFollowKafkasPartitioner() async throws {
        let dir = try TempDirectory()
        let log = try SegmentLog(directory: dir.path)
        _ = try await log.createTopic("t", config: TopicConfig(partitions: 3))
        for key in ["EUR", "USD", "GBP", "21", "foobar"] {
            let result = try await log.append(topic: "t", records: [ProducerRecord(key: bytes(key), value: bytes("x"))])
            #expect(result.map(\.partition) == [Murmur2.partition(forKey: bytes(key), partitions: 3)])
        }
        // Same key, same partition, in order.
        let results = try await log.append(topic: "t", records: (0..<10).map { ProducerRecord(key: bytes("EUR"), value: bytes("\($0)")) })
        #expect(results.count == 1)
    }

    @Test func reopenKeepsEverythingAndContinuesOffsets() async throws {
        let dir = try TempDirectory()
        do {
            let log = try SegmentLog(directory: dir.path)
            _ = try await log.createTopic("t", config: TopicConfig(partitions: 2, segmentBytes: 2048))
            _ = try await log.append(topic: "t", records: (0..<100).map { ProducerRecord(value: bytes("a\($0)"), partition: 0) })
        }
        let reopened = try SegmentLog(directory: dir.path)
        #expect(try await reopened.listTopics().map(\.name) == ["t"])
        let more = try await reopened.append(topic: "t", records: [ProducerRecord(value: bytes("b"), partition: 0)])
        #expect(more == [AppendResult(partition: 0, baseOffset: 100, count: 1)])
        let all = try await readAll(reopened, "t", 0)
        #expect(all.count == 101 && text(all.last?.value) == "b")
    }

    @Test func concurrentAppendsShareCommitsAndLoseNothing() async throws {
        let dir = try TempDirectory()
        let log = try SegmentLog(directory: dir.path)
        _ = try await log.createTopic("t", config: TopicConfig(partitions: 1, segmentBytes: 64 << 10))
        let results = try await withThrowingTaskGroup(of: AppendResult.self) { group in
            for producer in 0..<16 {
                group.addTask {
                    var last = AppendResult(partition: 0, baseOffset: 0, count: 0)
                    for i in 0..<20 {
                        last = try await log.append(topic: "t", records: (0..<5).map { ProducerRecord(value: bytes("\(producer)-\(i)-\($0)")) })[0]
                    }
                    return last
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(results.count == 16)
        let all = try await readAll(log, "t", 0)
        #expect(all.map(\.offset) == Array(0..<1600))
        #expect(Set(all.map { text($0.value)! }).count == 1600)
        // Each producer's records are in its own order.
        for producer in 0..<16 {
            let mine = all.compactMap { text($0.value) }.filter { $0.hasPrefix("\(producer)-") }
            #expect(mine == (0..<20).flatMap { i in (0..<5).map { "\(producer)-\(i)-\($0)" } })
        }
    }

    @Test func topicsAreCreatedListedAndDeleted() async throws {
        let dir = try TempDirectory()
        let log = try SegmentLog(directory: dir.path)
        _ = try await log.createTopic("b", config: TopicConfig(partitions: 2, retentionMs: 3_600_000))
        _ = try await log.createTopic("a", config: TopicConfig(partitions: 1))
        #expect(try await log.listTopics().map(\.name) == ["a", "b"])
        #expect(try await log.metadata(topic: "b").config.retentionMs == 3_600_000)
        await #expect(throws: LogError.self) { _ = try await log.createTopic("a", config: TopicConfig(partitions: 1)) }
        await #expect(throws: LogError.self) { _ = try await log.createTopic("bad/name", config: TopicConfig(partitions: 1)) }
        await #expect(throws: LogError.self) { _ = try await log.createTopic("zero", config: TopicConfig(partitions: 0)) }
        try await log.deleteTopic("b")
        #expect(try await log.listTopics().map(\.name) == ["a"])
        do {
            _ = try await log.append(topic: "b", records: [ProducerRecord(value: [1])])
            Issue.record("append to a deleted topic succeeded")
        } catch let error as LogError {
            #expect(error.code == .topicNotFound)
            #expect(error.message == "topic \"b\" does not exist")
        }
    }
}
