import Foundation
import Testing
@testable import KappaCore

/// Bytes on disk that once made the segment log trap, or read wrong offsets, each turned into a
/// `LogError` naming the file (or ignored, when the bytes are no part of the log).
@Suite struct HostileBytesTests {
    /// A frame whose offsets run past Int64: its header's offsets overflowed when printed or
    /// compared. Now it is not a frame header: damage named with its file.
    @Test func aFrameWithOffsetsPastInt64IsDamageNotATrap() async throws {
        let dir = try TempDirectory()
        let log = try SegmentLog(directory: dir.path)
        _ = try await log.createTopic("t", config: TopicConfig(partitions: 1))
        _ = try await log.append(topic: "t", records: [ProducerRecord(value: bytes("a")), ProducerRecord(value: bytes("b"))])
        let segment = SegmentFiles.logPath("\(dir.path)/t/0", 0)
        var frame: [UInt8] = []
        _ = RecordBatchCodec.encode([ProducerRecord(value: bytes("a")), ProducerRecord(value: bytes("b"))][...],
                                    baseOffset: 0, now: 1, into: &frame)
        frame.storeLE(Int64.max - 1, at: 12)  // offsets Int64.max - 1 and Int64.max + 1
        LogFuzzTarget.seal(&frame)
        try FileSystem.writeAtomically(frame, to: segment)

        let reopened = try SegmentLog(directory: dir.path)
        let described = try await reopened.describe(topic: "t")
        #expect(described[0].damage?.contains(segment) == true)
        let error = await #expect(throws: LogError.self) { try await reopened.read(topic: "t", partition: 0, from: 0, maxRecords: 10, maxBytes: 1 << 20) }
        #expect(error?.code == .corrupt)
        #expect(error?.file == segment)
    }

    /// A record timestamped Int64.min (the append API takes any timestamp): retention by age
    /// subtracted it from now and trapped. Now it is as old as a record can be.
    @Test func retentionByAgeOfARecordFromTheStartOfTimeIsNoTrap() async throws {
        let dir = try TempDirectory()
        let log = try SegmentLog(directory: dir.path)
        _ = try await log.createTopic("t", config: TopicConfig(partitions: 1, retentionMs: 3_600_000, segmentBytes: 1024))
        let old = (0..<40).map { _ in ProducerRecord(value: Array(repeating: 0x61, count: 100), timestamp: .min) }
        for record in old { _ = try await log.append(topic: "t", records: [record]) }
        _ = try await log.append(topic: "t", records: [ProducerRecord(value: bytes("new"))])
        _ = try await log.enforceRetention(now: currentTimeMillis())  // appends apply it too, as segments fill
        let earliest = try await log.offsets(topic: "t")[0].earliest
        #expect(earliest > 0)
        #expect(try await readAll(log, "t", 0, from: earliest).last.map { text($0.value) } == "new")
    }

    /// A stray file named like a segment with a sign: `Int64` parsed it as base -1 and the
    /// partition was damaged by a file that is not the log's. Now it is not a segment.
    @Test func aSignedSegmentNameIsNotASegment() async throws {
        let dir = try TempDirectory()
        let log = try SegmentLog(directory: dir.path)
        _ = try await log.createTopic("t", config: TopicConfig(partitions: 1))
        _ = try await log.append(topic: "t", records: [ProducerRecord(value: bytes("a"))])
        for name in ["-0000000000000000001.log", "+0000000000000000001.log", "99999999999999999999.log"] {
            try FileSystem.writeAtomically(bytes("not a segment"), to: "\(dir.path)/t/0/\(name)")
        }
        let reopened = try SegmentLog(directory: dir.path)
        #expect(try await reopened.describe(topic: "t")[0].damage == nil)
        #expect(try await readAll(reopened, "t", 0).map { text($0.value) } == ["a"])
        _ = try await reopened.append(topic: "t", records: [ProducerRecord(value: bytes("b"))])
    }

    /// A closed segment's index with its entries out of order (it is not fsynced, so a crash
    /// may leave anything): the search returned an entry past the offset asked for, and the read
    /// reported damage that is not there. Now out-of-order entries are passed over.
    @Test func anIndexOutOfOrderIsNoDamage() async throws {
        let dir = try TempDirectory()
        let log = try SegmentLog(directory: dir.path)
        _ = try await log.createTopic("t", config: TopicConfig(partitions: 1, segmentBytes: 32768))
        for chunk in 0..<40 {
            _ = try await log.append(topic: "t", records: (0..<10).map { ProducerRecord(value: bytes("record \(chunk * 10 + $0) " + String(repeating: "x", count: 80)), partition: 0) })
        }
        let partition = "\(dir.path)/t/0"
        let segments = try SegmentFiles.list(partition)
        #expect(segments.count >= 2)
        let indexPath = SegmentFiles.indexPath(partition, segments[0])
        let entries = SegmentIndex.decode(try FileSystem.readAll(indexPath)).entries
        #expect(entries.count >= 3)
        // A later frame's entry first, then one past the end of the file: the search skipped the
        // second (past the end) back to the first, whose offsets lie beyond the one asked for.
        let size = try #require(FileSystem.size(SegmentFiles.logPath(partition, segments[0])))
        let shuffled = [entries[2], SegmentIndex.Entry(relativeOffset: 0, position: UInt32(size + 4096))]
        try FileSystem.writeAtomically(shuffled.flatMap(SegmentIndex.encode), to: indexPath)

        let reopened = try SegmentLog(directory: dir.path)
        for from in stride(from: Int64(0), to: segments[1], by: 7) {
            let records = try await reopened.read(topic: "t", partition: 0, from: from, maxRecords: 3, maxBytes: 1 << 20)
            #expect(records.first?.offset == from)
            #expect(text(records.first?.value)?.hasPrefix("record \(from) ") == true)
        }
        #expect(try await reopened.describe(topic: "t")[0].damage == nil)
    }

    static let manifests: [(String, String)] = [
        ("garbage", "not valid JSON: expected a JSON object at line 1, column 1"),
        (#"{"version": 1, "files": [{"base": 0, "end": 5, "bytes": 10}]}"#, "missing key files[0].crc32c"),
        (#"{"version": 1, "files": [{"base": 0, "end": 5, "bytes": 10, "crc32c": -1}]}"#, "a number is not an integer or is out of range"),
        (#"{"version": 1, "files": [{"base": 5, "end": 0, "bytes": 10, "crc32c": 1}]}"#, "the file for offsets 5 to 0 (10 bytes) is not a range of offsets"),
        (#"{"version": 1, "files": [{"base": 0, "end": 9, "bytes": 1, "crc32c": 1}, {"base": 5, "end": 12, "bytes": 1, "crc32c": 1}]}"#,
         "the files for offsets from 0 and from 5 overlap"),
        (#"{"version": 2, "files": []}"#, "version 2 is not one this Kappa reads (1)"),
    ]

    /// A damaged manifest: the error names it and says what is wrong, not a `DecodingError` dump;
    /// a manifest that decodes but holds no range of offsets is refused rather than used.
    @Test(arguments: manifests)
    func aDamagedManifestIsNamedWithItsProblem(_ manifest: String, _ problem: String) throws {
        let dir = try TempDirectory()
        let archive = SegmentArchive(root: dir.path)
        let path = "\(archive.directory("t", 0))/manifest.json"
        try FileSystem.makeDirectories(archive.directory("t", 0))
        try FileSystem.writeAtomically(bytes(manifest), to: path)
        let error = #expect(throws: LogError.self) { try archive.entries(topic: "t", partition: 0) }
        #expect(error?.code == .corrupt)
        #expect(error?.file == path)
        #expect(error?.message == "topic \"t\" partition 0: the archive's manifest \(path) is damaged: \(problem)")
    }

    /// An archived file whose frames hold other offsets than the manifest says: the reader was
    /// handed offsets 100… for a read from 0. Now that is damage naming the file.
    @Test func archivedFramesHoldingOtherOffsetsAreDamage() throws {
        let dir = try TempDirectory()
        let archive = SegmentArchive(root: dir.path)
        var frames: [UInt8] = []
        _ = RecordBatchCodec.encode([ProducerRecord(value: bytes("a")), ProducerRecord(value: bytes("b"))][...], baseOffset: 100, now: 1, into: &frames)
        try archive.store(topic: "t", partition: 0, bytes: frames, base: 0, end: 2)
        let error = #expect(throws: LogError.self) { try archive.read(topic: "t", partition: 0, from: 0, maxRecords: 10, maxBytes: 1 << 20) }
        #expect(error?.code == .corrupt)
        #expect(error?.file == archive.path("t", 0, try archive.entries(topic: "t", partition: 0)[0]))
        #expect(error?.message.contains("holds offsets 100…101, expected 0") == true)
    }

    /// `topic.json` that is not one: each problem named with the file, never a `DecodingError`
    /// dump, and a partition count that made the log trap (a negative range) refused.
    @Test(arguments: [
        ("garbage", "not valid JSON: expected a JSON object at line 1, column 1"),
        (#"{"name": "t", "createdAt": 0, "config": {"partitions": "3", "segmentBytes": 1024}}"#, "config.partitions: expected an integer"),
        (#"{"name": "t", "createdAt": 0, "config": {"segmentBytes": 1024}}"#, "missing key config.partitions"),
        (#"{"name": "t", "createdAt": 0, "config": {"partitions": -1, "segmentBytes": 1024}}"#, "partitions must be between 1 and 10000 (got -1)"),
        (#"{"name": "u", "createdAt": 0, "config": {"partitions": 1, "segmentBytes": 1024}}"#, "it names the topic \"u\", not the directory's \"t\""),
        (#"{"name": "t", "createdAt": 0, "config": {"partitions": 1, "segmentBytes": 1024, "archive": ""}}"#, "config.archive is not a directory path"),
    ] as [(String, String)])
    func aDamagedTopicFileIsNamedWithItsProblem(_ json: String, _ problem: String) async throws {
        let dir = try TempDirectory()
        let log = try SegmentLog(directory: dir.path)
        _ = try await log.createTopic("t", config: TopicConfig(partitions: 1))
        let path = "\(dir.path)/t/topic.json"
        try FileSystem.writeAtomically(bytes(json), to: path)
        let reopened = try SegmentLog(directory: dir.path)
        let error = await #expect(throws: LogError.self) { try await reopened.offsets(topic: "t") }
        #expect(error?.code == .corrupt)
        #expect(error?.file == path)
        #expect(error?.message == "topic \"t\": \(path) is damaged: \(problem)")
    }
}
