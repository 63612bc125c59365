import Foundation
import Testing
@testable import KappaCore

/// The archive beyond retention: closed segments copied (checksummed) before retention deletes
/// them; reads and replays from offset 0 across archive and live log, no gap, no overlap.
@Suite struct ArchiveTests {
    /// Two logs with the same records: one keeps everything, one keeps little but archives.
    static func logs(_ dir: TempDirectory, minutes: Int = 20) async throws -> (all: SegmentLog, archived: SegmentLog, archive: String) {
        let all = try SegmentLog(directory: dir.path + "/all")
        let archived = try SegmentLog(directory: dir.path + "/short")
        let archive = dir.path + "/archive"
        _ = try await all.createTopic("bpi", config: TopicConfig(partitions: 3))
        _ = try await archived.createTopic("bpi", config: TopicConfig(partitions: 3, retentionBytes: 8192, segmentBytes: 4096, archive: archive))
        let ticks = BPIFeed(seed: 3, start: 28_333_333 * 60_000).ticks(seconds: minutes * 60)
        for chunk in stride(from: 0, to: ticks.count, by: 60) {
            let records = ticks[chunk..<min(chunk + 60, ticks.count)].map(\.record)
            _ = try await all.append(topic: "bpi", records: records)
            _ = try await archived.append(topic: "bpi", records: records)
        }
        _ = try await archived.enforceRetention()
        return (all, archived, archive)
    }

    @Test func readsFromZeroCrossArchiveAndLogWithoutGapOrOverlap() async throws {
        let dir = try TempDirectory()
        let (all, archived, _) = try await Self.logs(dir)
        let status = try await archived.archiveStatus(topic: "bpi")
        for p in 0..<3 {
            let expected = try await readAll(all, "bpi", p)
            guard !expected.isEmpty else { continue }
            #expect(status[p].liveEarliest > 0, "partition \(p): retention deleted nothing")
            #expect(status[p].archived.count > 2)
            #expect(status[p].gaps.isEmpty)
            #expect(try await archived.offsets(topic: "bpi")[p] == PartitionOffsets(partition: p, earliest: 0, end: Int64(expected.count)))
            for batch in [7, 100, 1000] {
                let got = try await readAll(archived, "bpi", p, batch: batch)
                #expect(got.map(\.offset) == expected.map(\.offset), "partition \(p), batches of \(batch)")
                #expect(got.map { $0.value.map(Array.init) } == expected.map { $0.value.map(Array.init) })
            }
        }
    }

    /// The lecture's point: a new version replays from 0 across archive and log into a table
    /// equal to one built before retention deleted anything.
    @Test func aReplayFromZeroAcrossTheArchiveEqualsOneBeforeRetention() async throws {
        let dir = try TempDirectory()
        let (all, archived, _) = try await Self.logs(dir)
        let spec = try ManifestParser.parse(StoreFixture.exactManifest())
        var tables: [[[SQLValue]]] = []
        for (name, log) in [("all", all), ("short", archived)] {
            let store = try Store.sqlite(path: dir.path + "/\(name).sqlite")
            _ = try await store.registerVersion(spec, manifest: StoreFixture.exactManifest(), startOffsets: [0, 0, 0], actor: "test", reason: "test")
            try await VersionRunner(log: log, store: store, job: try StreamJobs.make(spec)).run(.untilEnd)
            tables.append(try await store.query("SELECT * FROM ticks__v1 ORDER BY currency, minute").rows)
        }
        #expect(tables[0].count == 60)
        #expect(tables[1] == tables[0])
    }

    @Test func aCorruptedArchiveFileIsNamed() async throws {
        let dir = try TempDirectory()
        let (_, archived, archive) = try await Self.logs(dir)
        let first = try #require(try await archived.archiveStatus(topic: "bpi").first { !$0.archived.isEmpty })
        let path = SegmentArchive(root: archive).path("bpi", first.partition, first.archived[0].base)
        var bytes = try FileSystem.readAll(path)
        bytes[bytes.count / 2] ^= 0x40
        try FileDescriptor(path: path, flags: O_RDWR).write(bytes, at: 0)
        let error = await #expect(throws: LogError.self) {
            _ = try await SegmentLog(directory: dir.path + "/short").read(topic: "bpi", partition: first.partition, from: 0, maxRecords: 10, maxBytes: 1 << 20)
        }
        #expect(error?.code == .corrupt)
        #expect(error?.file == path)
        #expect(error?.message.contains("does not match its checksum in the manifest") == true)
    }

    /// A copy cut short by a crash (a file not in the manifest) is replaced by the next copy;
    /// records deleted before any archive held them are a gap, said plainly, and the retention
    /// check names it.
    @Test func anInterruptedCopyIsRedoneAndAGapIsNamed() async throws {
        let dir = try TempDirectory()
        let log = try SegmentLog(directory: dir.path + "/log")
        let archive = dir.path + "/archive"
        _ = try await log.createTopic("t", config: TopicConfig(partitions: 1, segmentBytes: 4096, archive: archive))
        for i in 0..<40 { _ = try await log.append(topic: "t", records: (0..<10).map { ProducerRecord(value: Array("\(i * 10 + $0) \(String(repeating: "x", count: 50))".utf8)) }) }
        // The crash: the first segment's copy written (garbage) but never recorded.
        let store = SegmentArchive(root: archive)
        try FileSystem.makeDirectories(store.directory("t", 0))
        try FileSystem.writeAtomically(Array("half a copy".utf8), to: store.path("t", 0, 0))
        #expect(try await log.archiveClosedSegments(topic: "t") > 3)
        let entries = try store.entries(topic: "t", partition: 0)
        #expect(entries.first?.base == 0)
        #expect(zip(entries, entries.dropFirst()).allSatisfy { $0.end == $1.base })
        #expect(try store.file(topic: "t", partition: 0, holding: 0) != nil)  // the copy was redone: checksum matches

        // Forget the archive's first two files: their records are now a gap.
        var manifest = SegmentArchive.Manifest(files: Array(entries.dropFirst(2)))
        manifest.version = 1
        try FileSystem.writeAtomically(Array(try JSONEncoder().encode(manifest)), to: store.directory("t", 0) + "/manifest.json")
        for base in try SegmentFiles.list(dir.path + "/log/t/0").prefix(3) {
            try FileSystem.removeFile(SegmentFiles.logPath(dir.path + "/log/t/0", base))
            try FileSystem.removeFile(SegmentFiles.indexPath(dir.path + "/log/t/0", base))
        }
        try FileSystem.removeFile(dir.path + "/log/t/0/head")  // rebuilt from the segments left
        let status = try await SegmentLog(directory: dir.path + "/log").archiveStatus(topic: "t")[0]
        #expect(status.gaps == [0...(entries[2].base - 1)])
        let readable = try await SegmentLog(directory: dir.path + "/log").offsets(topic: "t")[0].earliest
        // Readable from the archive's first file on; below it, the gap.
        #expect(readable == entries[2].base && readable < status.liveEarliest)
    }
}
