import Foundation
import Testing
@testable import KappaCore

/// What only the embedded log has: segment files, reopening, group commit, topic management.
/// The contract it shares with Kafka (offsets, keys, partitioning, limits, errors): LogContractTests.
@Suite struct SegmentLogTests {
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
