import Testing
@testable import KappaCore

@Suite struct RetentionTests {
    @Test func retentionByBytesDeletesOldSegmentsAndMovesTheEarliestOffset() async throws {
        let dir = try TempDirectory()
        let log = try SegmentLog(directory: dir.path)
        _ = try await log.createTopic("t", config: TopicConfig(partitions: 1, retentionBytes: 4096, segmentBytes: 2048))
        for i in 0..<60 {
            _ = try await log.append(topic: "t", records: (0..<5).map { ProducerRecord(value: bytes("\(i)-\($0)" + String(repeating: ".", count: 50))) })
        }
        let d = try await log.describe(topic: "t")[0]
        #expect(d.earliest > 0)
        #expect(d.end == 300)
        #expect(d.bytes >= 4096 && d.bytes < 4096 + 2 * 2048)
        // Reads from and below the earliest offset: LogContractTests.
    }

    @Test func retentionByAgeDeletesSegmentsWhoseNewestRecordIsOld() async throws {
        let dir = try TempDirectory()
        let log = try SegmentLog(directory: dir.path)
        _ = try await log.createTopic("t", config: TopicConfig(partitions: 1, retentionMs: 3_600_000, segmentBytes: 2048))
        let now = currentTimeMillis()
        for i in 0..<20 {  // two hours old: several closed segments
            _ = try await log.append(topic: "t", records: (0..<5).map { ProducerRecord(value: bytes("old-\(i)-\($0)" + String(repeating: ".", count: 50)), timestamp: now - 7_200_000) })
        }
        let oldEnd = try await log.offsets(topic: "t")[0].end
        for i in 0..<20 {
            _ = try await log.append(topic: "t", records: (0..<5).map { ProducerRecord(value: bytes("new-\(i)-\($0)" + String(repeating: ".", count: 50)), timestamp: now) })
        }
        _ = try await log.enforceRetention(now: now)
        let offsets = try await log.offsets(topic: "t")[0]
        #expect(offsets.earliest > 0)
        #expect(offsets.earliest <= oldEnd)  // nothing recent was deleted
        let kept = try await readAll(log, "t", 0, from: offsets.earliest)
        #expect(kept.filter { text($0.value)!.hasPrefix("new-") }.count == 100)
        // A reopened log agrees.
        #expect(try await SegmentLog(directory: dir.path).offsets(topic: "t")[0] == offsets)
    }

    @Test func topicsWithoutRetentionKeepEverything() async throws {
        let dir = try TempDirectory()
        let log = try SegmentLog(directory: dir.path)
        _ = try await log.createTopic("t", config: TopicConfig(partitions: 1, segmentBytes: 1024))
        for i in 0..<30 { _ = try await log.append(topic: "t", records: [ProducerRecord(value: bytes(String(repeating: "\(i)", count: 100)), timestamp: 1)]) }
        #expect(try await log.enforceRetention() == 0)
        #expect(try await log.offsets(topic: "t")[0].earliest == 0)
    }
}
