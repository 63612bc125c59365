import Foundation
import Testing
@testable import KappaCore

@Suite struct RecoveryTests {
    private func segmentPath(_ dir: TempDirectory, _ topic: String = "t", partition: Int = 0, base: Int64 = 0) -> String {
        SegmentFiles.logPath("\(dir.path)/\(topic)/\(partition)", base)
    }

    private func makeLog(_ dir: TempDirectory, appends: Int = 3, perAppend: Int = 4) async throws -> SegmentLog {
        let log = try SegmentLog(directory: dir.path)
        _ = try await log.createTopic("t", config: TopicConfig(partitions: 1))
        for a in 0..<appends {
            _ = try await log.append(topic: "t", records: (0..<perAppend).map { ProducerRecord(value: bytes("value-\(a)-\($0)")) })
        }
        return log
    }

    @Test func tornTailAfterTheHeadIsCutOff() async throws {
        let dir = try TempDirectory()
        _ = try await makeLog(dir)
        // A crash mid-write: half a frame after the acknowledged data.
        let path = segmentPath(dir)
        let whole = try FileSystem.readAll(path)
        let file = try FileDescriptor(path: path, flags: O_RDWR)
        try file.write(Array(whole.prefix(30)), at: Int64(whole.count))

        let reopened = try SegmentLog(directory: dir.path)
        #expect(try await reopened.offsets(topic: "t")[0].end == 12)
        let next = try await reopened.append(topic: "t", records: [ProducerRecord(value: bytes("after"))])
        #expect(next[0].baseOffset == 12)
        #expect(FileSystem.size(path)! == Int64(whole.count) + 4 * 8 + 16 + 5)  // the tail replaced by one frame
        let all = try await readAll(reopened, "t", 0)
        #expect(all.map(\.offset) == Array(0...12))
        #expect(text(all.last?.value) == "after")
    }

    /// The file cut in the middle of its last frame while the head says 12 records were
    /// acknowledged: that is loss, not a torn tail. Nothing is cut, writes are refused.
    @Test func acknowledgedLastBatchCutShortIsDamageNotATornTail() async throws {
        let dir = try TempDirectory()
        _ = try await makeLog(dir)
        let path = segmentPath(dir)
        let size = FileSystem.size(path)!
        try FileDescriptor(path: path, flags: O_RDWR).truncate(to: size - 10)

        let reopened = try SegmentLog(directory: dir.path)
        #expect(try await reopened.offsets(topic: "t")[0].end == 12)
        let first = try await reopened.read(topic: "t", partition: 0, from: 0, maxRecords: 100, maxBytes: 1 << 20)
        #expect(first.map { text($0.value)! } == (0..<2).flatMap { a in (0..<4).map { "value-\(a)-\($0)" } })
        await #expect(throws: LogError.self) { try await reopened.read(topic: "t", partition: 0, from: 8, maxRecords: 100, maxBytes: 1 << 20) }
        do {
            _ = try await reopened.append(topic: "t", records: [ProducerRecord(value: bytes("x"))])
            Issue.record("an append reused acknowledged offsets")
        } catch let error as LogError {
            #expect(error.code == .corrupt)
            #expect(error.message.contains("offsets 8…11"))
            #expect(error.message.contains(path))
        }
        #expect(FileSystem.size(path) == size - 10)
    }

    @Test func flippedByteIsReportedWithFileAndOffset() async throws {
        let dir = try TempDirectory()
        let log = try await makeLog(dir)
        let path = segmentPath(dir)
        var data = try FileSystem.readAll(path)
        let frame = data.count / 3
        data[frame + 40] ^= 0x5A  // inside the second frame's records
        try FileDescriptor(path: path, flags: O_RDWR).write(data, at: 0)

        let first = try await log.read(topic: "t", partition: 0, from: 0, maxRecords: 4, maxBytes: 1 << 20)
        #expect(first.count == 4)  // the frame before the damage still reads
        do {
            _ = try await readAll(SegmentLog(directory: dir.path), "t", 0)
            Issue.record("a damaged frame was read")
        } catch let error as LogError {
            #expect(error.code == .corrupt)
            #expect(error.file == path)
            #expect(error.offset == 4)
            #expect(error.message.contains("checksum mismatch"))
            #expect(error.message.contains("partition 0"))
            #expect(error.message.contains(path))
        }
    }

    @Test func damageBeforeTheTailIsNotMistakenForATornTail() async throws {
        let dir = try TempDirectory()
        _ = try await makeLog(dir)
        let path = segmentPath(dir)
        var data = try FileSystem.readAll(path)
        data[50] ^= 0xFF  // first frame
        try FileDescriptor(path: path, flags: O_RDWR).write(data, at: 0)
        // Without a head, recovery scans the whole segment: it must refuse, not truncate.
        try FileSystem.removeFile("\(dir.path)/t/0/head")
        do {
            _ = try await readAll(SegmentLog(directory: dir.path), "t", 0)
            Issue.record("recovery accepted a damaged segment")
        } catch let error as LogError {
            #expect(error.code == .corrupt)
            #expect(error.file == "\(dir.path)/t/0/head")
            #expect(error.message.contains("checksum mismatch at byte 0 of \(path)"))
        }
        #expect(FileSystem.size(path) == Int64(data.count))
    }

    /// A lost head: the files still read, but nothing says what was acknowledged, so the
    /// partition refuses writes until an operator repairs it (see `LogDamageTests`).
    @Test func lostHeadKeepsTheRecordsReadableAndRefusesWrites() async throws {
        let dir = try TempDirectory()
        _ = try await makeLog(dir)
        try FileSystem.removeFile("\(dir.path)/t/0/head")
        let reopened = try SegmentLog(directory: dir.path)
        #expect(try await reopened.offsets(topic: "t") == [PartitionOffsets(partition: 0, earliest: 0, end: 12)])
        #expect(try await reopened.read(topic: "t", partition: 0, from: 0, maxRecords: 100, maxBytes: 1 << 20).count == 12)
        // Past what the files hold, a reader is told: more may have been acknowledged.
        await #expect(throws: LogError.self) { try await reopened.read(topic: "t", partition: 0, from: 12, maxRecords: 100, maxBytes: 1 << 20) }
        await #expect(throws: LogError.self) { try await reopened.append(topic: "t", records: [ProducerRecord(value: bytes("x"))]) }
    }

    @Test func deletedIndexIsRebuiltAndSeeksStillWork() async throws {
        let dir = try TempDirectory()
        do {
            let log = try SegmentLog(directory: dir.path)
            _ = try await log.createTopic("t", config: TopicConfig(partitions: 1, segmentBytes: 8192))
            for i in 0..<40 { _ = try await log.append(topic: "t", records: (0..<10).map { ProducerRecord(value: bytes("\(i * 10 + $0)" + String(repeating: "x", count: 60))) }) }
        }
        for name in try FileSystem.list("\(dir.path)/t/0") where name.hasSuffix(".index") {
            try FileSystem.removeFile("\(dir.path)/t/0/\(name)")
        }
        let log = try SegmentLog(directory: dir.path)
        for start in [0, 77, 250, 399] as [Int64] {
            let got = try await log.read(topic: "t", partition: 0, from: start, maxRecords: 1, maxBytes: 4096)
            #expect(got.first.map { text($0.value)!.hasPrefix("\(start)x") } == true)
        }
        let segments = try SegmentFiles.list("\(dir.path)/t/0")
        #expect(segments.count > 3)
        for base in segments {
            let index = SegmentIndex.load(SegmentFiles.indexPath("\(dir.path)/t/0", base))
            #expect(index.entries.first == SegmentIndex.Entry(relativeOffset: 0, position: 0))
        }
    }

    /// A closed segment cut short (a bad copy, a disk error): reading through it is an error
    /// naming the file and the first offset it lacks, never a silent jump to the next segment.
    @Test func aTruncatedClosedSegmentIsNamedNotSkipped() async throws {
        let dir = try TempDirectory()
        do {
            let log = try SegmentLog(directory: dir.path)
            _ = try await log.createTopic("t", config: TopicConfig(partitions: 1, segmentBytes: 4096))
            for i in 0..<30 { _ = try await log.append(topic: "t", records: (0..<5).map { ProducerRecord(value: bytes("\(i * 5 + $0)" + String(repeating: "x", count: 60))) }) }
        }
        let segments = try SegmentFiles.list("\(dir.path)/t/0")
        #expect(segments.count >= 3)
        let victim = SegmentFiles.logPath("\(dir.path)/t/0", segments[1])
        let size = FileSystem.size(victim)!
        #expect(truncate(victim, off_t(size / 2)) == 0)

        let log = try SegmentLog(directory: dir.path)
        // Before the damaged segment everything reads.
        let early = try await log.read(topic: "t", partition: 0, from: 0, maxRecords: Int(segments[1]), maxBytes: 1 << 20)
        #expect(early.count == Int(segments[1]))
        do {
            _ = try await readAll(log, "t", 0)
            Issue.record("a truncated segment was read through")
        } catch let error as LogError {
            #expect(error.code == .corrupt)
            #expect(error.file == victim)
            #expect(error.offset.map { $0 > segments[1] && $0 < segments[2] } == true)
            #expect(error.message.contains(victim))
        }
        // After it, reads work again.
        let late = try await log.read(topic: "t", partition: 0, from: segments[2], maxRecords: 3, maxBytes: 1 << 20)
        #expect(late.first?.offset == segments[2])
    }
}
