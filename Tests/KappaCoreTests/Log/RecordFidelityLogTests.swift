import Foundation
import Testing
@testable import KappaCore

/// Null values (tombstones), empty values and headers, as Kafka has them, on every log: what is
/// appended reads back the same, a tombstone apart from an empty value.
@Suite struct RecordFidelityLogTests {
    static let records = [
        ProducerRecord(key: bytes("gone"), value: nil, timestamp: 1, partition: 0),
        ProducerRecord(key: bytes("empty"), value: [], timestamp: 2, partition: 0),
        ProducerRecord(key: [0xff, 0x00] + bytes("bin"), value: bytes("\"\""), timestamp: 3, partition: 0),
        ProducerRecord(value: bytes("5"), headers: [RecordHeader("trace", bytes("t-1")), RecordHeader("none", nil),
                                                   RecordHeader("empty", []), RecordHeader("trace", [0, 0xff])],
                       timestamp: 4, partition: 0),
        ProducerRecord(value: bytes("plain"), timestamp: 5, partition: 0),
    ]

    static func same(_ got: LogRecords) -> Bool {
        got.map { ProducerRecord(key: $0.key.map(Array.init), value: $0.value.map(Array.init), headers: $0.headers,
                                 timestamp: $0.timestamp, partition: $0.partition) } == records
    }

    @Test(arguments: LogBackendKind.available)
    func tombstonesEmptyValuesAndHeadersReadBackTheSame(_ backend: LogBackendKind) async throws {
        let f = try LogFixture(backend)
        try await f.createTopic("t", partitions: 1, segmentBytes: 4096)
        _ = try await f.log.append(topic: "t", records: Self.records)
        let got = try await f.log.read(topic: "t", partition: 0, from: 0, maxRecords: 100, maxBytes: 1 << 20)
        #expect(Self.same(got))
        // From the middle: the reader starts inside a frame that holds headers.
        let tail = try await f.log.read(topic: "t", partition: 0, from: 3, maxRecords: 1, maxBytes: 1 << 20)
        #expect(tail.first?.headers == Self.records[3].headers)
    }

    @Test func theSegmentLogKeepsThemAcrossAReopen() async throws {
        let dir = try TempDirectory()
        let log = try SegmentLog(directory: dir.path)
        _ = try await log.createTopic("t", config: TopicConfig(partitions: 1))
        _ = try await log.append(topic: "t", records: Self.records)
        let reopened = try SegmentLog(directory: dir.path)
        #expect(Self.same(try await reopened.read(topic: "t", partition: 0, from: 0, maxRecords: 100, maxBytes: 1 << 20)))
        #expect(try await reopened.describe(topic: "t")[0].damage == nil)
    }

    /// Frames of records without a null value or headers stay KAP1, byte for byte as before
    /// (the corpus seed `batch/three-records` was written by the KAP1-only encoder).
    @Test func plainRecordsStayKAP1ByteForByte() throws {
        let seed = try FileSystem.readAll(LogFuzzCorpusTests.corpus + "/batch/three-records")
        let old = Array(seed.dropFirst(3))
        let records = old.withUnsafeBytes { buf -> [ProducerRecord] in
            guard let header = BatchHeader.parse(buf, at: 0) else { return [] }
            var entries: [LogRecords.Entry] = []
            _ = RecordBatchCodec.decode(buf, at: 0, header: header, fromOffset: 0, limit: 100, into: &entries)
            return LogRecords(partition: 0, storage: old, entries: entries, nextOffset: 0).map {
                ProducerRecord(key: $0.key.map(Array.init), value: $0.value.map(Array.init), timestamp: $0.timestamp)
            }
        }
        #expect(records.count == 3)
        var out: [UInt8] = []
        let base = old.withUnsafeBytes { BatchHeader.parse($0, at: 0)!.baseOffset }
        _ = RecordBatchCodec.encode(records[...], baseOffset: base, now: 0, into: &out)
        #expect(out == old)
        var tombstone: [UInt8] = []
        let frames = RecordBatchCodec.encode([records[0], ProducerRecord(value: nil)][...], baseOffset: 0, now: 0, into: &tombstone)
        #expect(frames.map(\.header.version) == [2])
        #expect(tombstone.prefix(4) == [0x4B, 0x41, 0x50, 0x32])  // "KAP2"
    }

    /// Header counts and lengths in a KAP2 frame that overrun it are refused, never trusted.
    @Test(arguments: [
        (0, UInt32.max),  // the header count
        (4, UInt32.max),  // the first header's name length
        (8, UInt32(0x7fff_ffff)),  // the first header's value length
        (8, UInt32(0xffff_fffe)),  // a value length below -1
    ])
    func headerLengthsThatOverrunTheFrameAreRefused(_ at: Int, _ value: UInt32) {
        var frame: [UInt8] = []
        let record = ProducerRecord(value: bytes("v"), headers: [RecordHeader("h", bytes("x"))])
        _ = RecordBatchCodec.encode([record][...], baseOffset: 0, now: 0, into: &frame)
        let block = BatchHeader.size + BatchHeader.recordOverhead2 + 1  // after the value "v"
        frame.storeLE(value, at: block + at)
        LogFuzzTarget.seal(&frame)
        frame.withUnsafeBytes { buf in
            guard let header = BatchHeader.parse(buf, at: 0) else { Issue.record("no header"); return }
            var entries: [LogRecords.Entry] = []
            #expect(!RecordBatchCodec.decode(buf, at: 0, header: header, fromOffset: 0, limit: 10, into: &entries))
        }
    }

    #if Kafka
    /// The mirror (Kafka → archive) keeps tombstones and headers: the archive's KAP2 frames
    /// read back the records Kafka holds.
    @Test func theKafkaMirrorKeepsTombstonesAndHeaders() async throws {
        let (cluster, raw) = try KafkaLogTests.cluster(partitions: 1)
        let dir = try TempDirectory()
        let archive = SegmentArchive(root: dir.path)
        _ = try await raw.append(topic: "t", records: Self.records)
        let mirror = LogMirror(log: raw, archive: archive, topic: "t")
        #expect(try await mirror.runOnce() == Self.records.count)
        let archived = try #require(try archive.read(topic: "t", partition: 0, from: 0, maxRecords: 100, maxBytes: 1 << 20))
        #expect(Self.same(archived))
        withExtendedLifetime(cluster) {}
    }
    #endif
}
