import Foundation
import Synchronization
import Testing
@testable import KappaCore

/// Where an archive's objects can be: a directory always; an S3 bucket with the `S3` trait
/// beside the server `scripts/with-seaweedfs` starts (KAPPA_TEST_S3).
enum ArchiveBackend: String, Sendable, CaseIterable, CustomTestStringConvertible {
    case directory
    #if S3
    case s3
    #endif

    static var available: [ArchiveBackend] {
        #if S3
        ProcessInfo.processInfo.environment["KAPPA_TEST_S3"] == nil ? [.directory] : allCases
        #else
        allCases
        #endif
    }

    var testDescription: String { rawValue }

    /// A fresh, empty storage of this kind (a temporary directory kept alive by `keep`, or a
    /// prefix of its own in the test bucket).
    func storage(_ keep: inout [TempDirectory]) throws -> any ArchiveStorage {
        switch self {
        case .directory:
            let dir = try TempDirectory("kappa-archive")
            keep.append(dir)
            return DirectoryArchiveStorage(root: dir.path + "/archive")
        #if S3
        case .s3:
            return S3ArchiveStorage(client: try S3ServerTests.client("archive"))
        #endif
        }
    }
}

/// The archive's promises, written once and run on every storage of the build (`SegmentArchive`
/// is the one archive over both): records come back exactly, a manifest update is never lost to
/// a concurrent writer, a mirror fenced off by a newer epoch cannot write, damage is named, an
/// object cut off before its manifest entry is not archived, and reads fetch the next object ahead.
@Suite struct ArchiveStorageContractTests {
    /// Frames holding `count` records from `base`, as the mirror writes them.
    static func frames(base: Int64, count: Int, tag: String = "r") -> [UInt8] {
        let records = (0..<count).map { i in
            ProducerRecord(key: bytes("k\(base + Int64(i))"), value: bytes("\(tag)-\(base + Int64(i))"), timestamp: 1_700_000_000_000 + base + Int64(i))
        }
        var out: [UInt8] = []
        var at = 0
        while at < records.count {  // frames of 7 records: reads cross frames
            _ = RecordBatchCodec.encode(records[at..<min(at + 7, records.count)], baseOffset: base + Int64(at), now: 0, into: &out)
            at += 7
        }
        return out
    }

    static func readAll(_ archive: SegmentArchive, from: Int64 = 0, maxRecords: Int = 10) throws -> [String] {
        var out: [String] = []
        var offset = from
        while let records = try archive.read(topic: "t", partition: 0, from: offset, maxRecords: maxRecords, maxBytes: 1 << 20) {
            for r in records { out.append("\(r.offset):\(text(r.value) ?? "nil")") }
            offset = records.nextOffset
        }
        return out
    }

    /// Two writers of one partition without a lease (`kappactl archive run` beside a JobHost's
    /// mirror, or a fenced-off mirror whose upload lands late): the second one's object, for
    /// offsets the first one archived, never replaces the object the manifest names. Before each
    /// object had a name of its own, the second upload replaced it and offsets 0…19 were lost
    /// ("does not match its checksum").
    @Test(arguments: ArchiveBackend.available)
    func aSecondWriterNeverReplacesAnArchivedObject(_ backend: ArchiveBackend) throws {
        var keep: [TempDirectory] = []
        let storage = try backend.storage(&keep)
        let first = SegmentArchive(storage: storage), second = SegmentArchive(storage: storage)
        try first.store(topic: "t", partition: 0, bytes: Self.frames(base: 0, count: 20, tag: "a"), base: 0, end: 20)
        let overlap = #expect(throws: LogError.self) {
            try second.store(topic: "t", partition: 0, bytes: Self.frames(base: 0, count: 25, tag: "b"), base: 0, end: 25)
        }
        #expect(overlap?.message.contains("two mirrors?") == true)
        // The same offsets again by the other writer: recorded once, the first one's kept.
        try second.store(topic: "t", partition: 0, bytes: Self.frames(base: 0, count: 20, tag: "b"), base: 0, end: 20)
        let reader = SegmentArchive(storage: storage)
        #expect(try reader.entries(topic: "t", partition: 0).count == 1)
        #expect(try Self.readAll(reader) == (0..<20).map { "\($0):a-\($0)" })
    }

    /// What a manifest names is checked before anything is fetched: a size no object has (the
    /// reader trapped on `bytes + 1` overflowing), a name in another folder.
    @Test(arguments: ArchiveBackend.available)
    func aManifestNamingAnImpossibleObjectIsDamaged(_ backend: ArchiveBackend) throws {
        var keep: [TempDirectory] = []
        let storage = try backend.storage(&keep)
        let key = "t/0/manifest.json"
        for (entry, problem) in [
            (#"{"base": 0, "end": 5, "bytes": 9223372036854775807, "crc32c": 1}"#, "has a size of 9223372036854775807 bytes, not one from 0 to 4294967296"),
            (#"{"base": 0, "end": 5, "bytes": 10, "crc32c": 1, "object": "../1/00000000000000000000.seg"}"#, "is named ../1/00000000000000000000.seg, not"),
            (#"{"base": 0, "end": 5, "bytes": 10, "crc32c": 1, "object": "00000000000000000007-ab.seg"}"#, "is named 00000000000000000007-ab.seg, not"),
            (#"{"base": 0, "end": 5, "bytes": 10, "crc32c": 1, "object": "00000000000000000000-.seg"}"#, "is named 00000000000000000000-.seg, not"),
            (#"{"base": 0, "end": 5, "bytes": 10, "crc32c": 1, "object": "00000000000000000000-AB.seg"}"#, "is named 00000000000000000000-AB.seg, not"),
            (#"{"base": 0, "end": 5, "bytes": 10, "crc32c": 1, "object": "00000000000000000000.seg.tmp"}"#, "is named 00000000000000000000.seg.tmp, not"),
        ] {
            let tag = try storage.tag(key)
            _ = try storage.replace(key, Array(#"{"version": 1, "files": [\#(entry)]}"#.utf8), ifTag: tag)
            let damaged = #expect(throws: LogError.self) { _ = try SegmentArchive(storage: storage).read(topic: "t", partition: 0, from: 0, maxRecords: 5, maxBytes: 1 << 20) }
            #expect(damaged?.code == .corrupt)
            #expect(damaged?.message.contains(problem) == true, "\(damaged?.message ?? "")")
            #expect(damaged?.message.contains("manifest") == true)
        }
    }

    /// A partition's folder copied into another's (objects and manifest, every checksum right):
    /// the manifest says whose files it lists, so the copy is damage, not partition 1's records
    /// served as partition 0's.
    @Test(arguments: ArchiveBackend.available)
    func aManifestCopiedIntoAnotherPartitionIsDamaged(_ backend: ArchiveBackend) throws {
        var keep: [TempDirectory] = []
        let storage = try backend.storage(&keep)
        let archive = SegmentArchive(storage: storage)
        try archive.store(topic: "t", partition: 1, bytes: Self.frames(base: 0, count: 10, tag: "p1"), base: 0, end: 10)
        for entry in try archive.entries(topic: "t", partition: 1) {
            let object = try #require(try storage.get(entry.key("t", 1), range: 0..<entry.bytes))
            try storage.put(entry.key("t", 0), object)
        }
        let manifest = try #require(try storage.getVersioned("t/1/manifest.json"))
        _ = try storage.replace("t/0/manifest.json", manifest.bytes, ifTag: nil)
        let damaged = #expect(throws: LogError.self) { _ = try Self.readAll(SegmentArchive(storage: storage)) }
        #expect(damaged?.code == .corrupt)
        #expect(damaged?.message.contains(#"lists the files of topic "t" partition 1, not of this partition"#) == true, "\(damaged?.message ?? "")")
        #expect(damaged?.message.contains("t/0/manifest.json") == true)
        // Partition 1 itself reads as ever.
        #expect(try SegmentArchive(storage: storage).read(topic: "t", partition: 1, from: 0, maxRecords: 10, maxBytes: 1 << 20)?.count == 10)
    }

    /// Objects no manifest names (an upload cut off by a kill, a fenced-off or losing writer's
    /// copy) cost storage forever unless pruned; prune deletes only those, only once older than
    /// the grace (a writer between its upload and its manifest update is never robbed), and
    /// nothing that is not an object's name, nor another partition's.
    @Test(arguments: ArchiveBackend.available)
    func pruneDeletesOnlyUnrecordedObjectsOlderThanTheGrace(_ backend: ArchiveBackend) throws {
        var keep: [TempDirectory] = []
        let storage = try backend.storage(&keep)
        let archive = SegmentArchive(storage: storage)
        try archive.store(topic: "t", partition: 0, bytes: Self.frames(base: 0, count: 10), base: 0, end: 10)
        let cutOff = "t/0/00000000000000000010-abc.seg", loser = "t/0/00000000000000000000-dead.seg"
        try storage.put(cutOff, Self.frames(base: 10, count: 5))
        try storage.put(loser, Self.frames(base: 0, count: 10, tag: "lost"))
        try storage.put("t/0/notes.txt", bytes("not an object of the archive's"))
        // Names prune never deletes: a folder inside, look-alikes of temporary files, and the
        // embedded log's `<base>.seg`, which its archiver copies again under the same name.
        let never = ["t/0/00000000000000000000-ab.seg/x", "t/0/manifest.json.tmpl", "t/0/manifest.json.tmp-1-2/x", "t/0/00000000000000000020.seg.tmpdir",
                     "t/0/00000000000000000020.seg.tmp-1", "t/0/00000000000000000030.seg"]
        for key in never { try storage.put(key, bytes("x")) }
        let leftovers = ["t/0/00000000000000000040.seg.tmp", "t/0/00000000000000000040-ee.seg.tmp-123-456", "t/0/manifest.json.tmp-77-9"]
        for key in leftovers { try storage.put(key, bytes("x")) }
        try storage.put("t/1/00000000000000000000-ff.seg", Self.frames(base: 0, count: 3))
        let hour: Int64 = 3_600_000

        // Young: kept, and said.
        let young = try archive.prune(topic: "t", partition: 0, olderThanMs: hour)
        #expect(young.deleted.isEmpty)
        #expect(young.kept.map(\.key).sorted() == ([loser, cutOff] + leftovers).sorted())
        #expect(young.kept.allSatisfy { $0.bytes > 0 })

        // Two hours on, a dry run says what would go and deletes nothing.
        let later = currentTimeMillis() + 2 * hour
        let dry = try archive.prune(topic: "t", partition: 0, olderThanMs: hour, now: later, dryRun: true)
        #expect(dry.deleted.map(\.key).sorted() == ([loser, cutOff] + leftovers).sorted() && dry.kept.isEmpty)
        #expect(try storage.get(cutOff, range: 0..<1) != nil)

        let pruned = try archive.prune(topic: "t", partition: 0, olderThanMs: hour, now: later)
        #expect(pruned.deleted.map(\.key).sorted() == ([loser, cutOff] + leftovers).sorted())
        for key in never { #expect(try storage.get(key, range: 0..<1) != nil, "\(key)") }
        #expect(try storage.get(cutOff, range: 0..<1) == nil && storage.get(loser, range: 0..<1) == nil)
        #expect(try storage.get("t/0/notes.txt", range: 0..<1) != nil)
        #expect(try storage.get("t/1/00000000000000000000-ff.seg", range: 0..<1) != nil)
        // What the manifest names reads as ever; run again, nothing more goes.
        #expect(try Self.readAll(SegmentArchive(storage: storage)) == (0..<10).map { "\($0):r-\($0)" })
        #expect(try archive.prune(topic: "t", partition: 0, olderThanMs: 0, now: later).deleted.isEmpty)

        // A partition whose manifest is gone: its objects are what is left of it, not leftovers.
        try archive.store(topic: "t", partition: 2, bytes: Self.frames(base: 0, count: 10), base: 0, end: 10)
        try storage.delete("t/2/manifest.json")
        let refused = try archive.prune(topic: "t", partition: 2, olderThanMs: 0, now: later)
        #expect(refused.deleted.isEmpty && refused.refused?.contains("has archived objects but no manifest") == true, "\(refused)")
        #expect(try storage.list("t/2/").contains { $0.key.hasSuffix(".seg") })
    }

    /// A mirrored object is a few large frames; a replay reads it batch after batch, each going
    /// on where the one before stopped inside a frame (not parsing the frame again from its
    /// start). Two readers at different places, reads of every size, a reader that starts in the
    /// middle, and a fresh reader asking for an offset nobody stopped at all get every record
    /// once, in order.
    @Test(arguments: ArchiveBackend.available)
    func batchAfterBatchInsideOneLargeFrameReadsEveryRecordOnce(_ backend: ArchiveBackend) throws {
        var keep: [TempDirectory] = []
        let storage = try backend.storage(&keep)
        let records = (0..<3_000).map { (i: Int) -> ProducerRecord in
            let key: [UInt8]? = i % 5 == 0 ? nil : bytes("k\(i)")
            let value: [UInt8]? = i % 7 == 0 ? nil : bytes("v-\(i)")
            let headers: [RecordHeader] = i % 11 == 0 ? [RecordHeader("h", bytes("\(i)"))] : []
            return ProducerRecord(key: key, value: value, headers: headers, timestamp: 1_700_000_000_000 + Int64(i))
        }
        var frames: [UInt8] = []
        let written = RecordBatchCodec.encode(records[0..<2_000], baseOffset: 0, now: 0, into: &frames)  // one frame, KAP2
        _ = RecordBatchCodec.encode(records[2_000...], baseOffset: 2_000, now: 0, into: &frames)
        #expect(written.count == 1)
        let writer = SegmentArchive(storage: storage)
        try writer.store(topic: "t", partition: 0, bytes: frames, base: 0, end: 3_000)
        func expected(_ r: Range<Int>) -> [String] { r.map { "\($0):\(text(records[$0].value?[...]) ?? "nil")" } }
        let archive = SegmentArchive(storage: storage)
        var a: Int64 = 0, b: Int64 = 1_234
        var gotA: [String] = [], gotB: [String] = []
        var size = 1
        while a < 3_000 || b < 3_000 {
            for (offset, got) in [(a, 0), (b, 1)] where offset < 3_000 {
                let batch = try #require(try archive.read(topic: "t", partition: 0, from: offset, maxRecords: size, maxBytes: 1 << 20))
                let lines = batch.map { "\($0.offset):\(text($0.value) ?? "nil")" }
                #expect(batch.map(\.headers) == batch.map { records[Int($0.offset)].headers })
                if got == 0 { gotA += lines; a = batch.nextOffset } else { gotB += lines; b = batch.nextOffset }
            }
            size = size % 97 + 13
        }
        #expect(gotA == expected(0..<3_000))
        #expect(gotB == expected(1_234..<3_000))
        // An offset no read stopped at, and one read again after it was read.
        #expect(try archive.read(topic: "t", partition: 0, from: 777, maxRecords: 3, maxBytes: 1 << 20)?.map(\.offset) == [777, 778, 779])
        #expect(try archive.read(topic: "t", partition: 0, from: 777, maxRecords: 3, maxBytes: 1 << 20)?.map(\.offset) == [777, 778, 779])
        #expect(try archive.read(topic: "t", partition: 0, from: 780, maxRecords: 2_000, maxBytes: 1 << 20)?.map(\.offset) == Array(780..<2_780))  // on into the next frame
    }

    @Test(arguments: ArchiveBackend.available)
    func storedRecordsReadBackExactlyAcrossObjects(_ backend: ArchiveBackend) throws {
        var keep: [TempDirectory] = []
        let archive = SegmentArchive(storage: try backend.storage(&keep))
        #expect(try archive.entries(topic: "t", partition: 0).isEmpty)
        for base in stride(from: 0 as Int64, to: 90, by: 30) {
            try archive.store(topic: "t", partition: 0, bytes: Self.frames(base: base, count: 30), base: base, end: base + 30)
        }
        // Stored again (a mirror that restarted after the object was recorded): nothing changes.
        try archive.store(topic: "t", partition: 0, bytes: Self.frames(base: 30, count: 30), base: 30, end: 60)
        #expect(try archive.entries(topic: "t", partition: 0).map(\.base) == [0, 30, 60])
        #expect(try archive.earliest(topic: "t", partition: 0, liveEarliest: 90) == 0)
        #expect(try archive.earliest(topic: "t", partition: 0, liveEarliest: 120) == 120)  // a gap below the live log

        // Read by a second archive (another host: nothing cached), from every kind of start.
        let other = SegmentArchive(storage: archive.storage)
        #expect(try Self.readAll(other) == (0..<90).map { "\($0):r-\($0)" })
        #expect(try Self.readAll(other, from: 45, maxRecords: 4) == (45..<90).map { "\($0):r-\($0)" })
        #expect(try other.read(topic: "t", partition: 0, from: 90, maxRecords: 10, maxBytes: 1 << 20) == nil)
        #expect(try other.read(topic: "t", partition: 1, from: 0, maxRecords: 10, maxBytes: 1 << 20) == nil)
    }

    @Test(arguments: ArchiveBackend.available)
    func replacingAManifestNeedsTheVersionReadAndExactlyOneOfManyWins(_ backend: ArchiveBackend) async throws {
        var keep: [TempDirectory] = []
        let storage = try backend.storage(&keep)
        let first = try storage.replace("m", bytes("one"), ifTag: nil)
        #expect(throws: ArchiveConflict.self) { try storage.replace("m", bytes("two"), ifTag: nil) }  // not absent any more
        let second = try storage.replace("m", bytes("two"), ifTag: first)
        #expect(throws: ArchiveConflict.self) { try storage.replace("m", bytes("stale"), ifTag: first) }
        let read = try #require(try storage.getVersioned("m"))
        #expect(read.bytes == bytes("two") && read.tag == second)
        #expect(try storage.tag("m") == second)
        #expect(try storage.getVersioned("absent") == nil && storage.tag("absent") == nil)

        // Eight writers that all read `second`: exactly one replaces it.
        let wins = await withTaskGroup(of: Bool.self) { group in
            for i in 0..<8 {
                group.addTask {
                    (try? await BlockingExecutor.shared.run { try storage.replace("m", bytes("w\(i)"), ifTag: second) }) != nil
                }
            }
            return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(wins == 1)
    }

    /// Two hosts' mirrors (archives with caches of their own) recording objects of one
    /// partition at once: every entry is in the manifest at the end, none lost to a race.
    @Test(arguments: ArchiveBackend.available)
    func concurrentRecordsAreNeverLost(_ backend: ArchiveBackend) async throws {
        var keep: [TempDirectory] = []
        let storage = try backend.storage(&keep)
        let a = SegmentArchive(storage: storage), b = SegmentArchive(storage: storage)
        await withTaskGroup(of: Void.self) { group in
            for i in 0..<8 {
                let archive = i % 2 == 0 ? a : b
                let base = Int64(i) * 10
                group.addTask {
                    _ = try? await BlockingExecutor.shared.run {
                        try archive.store(topic: "t", partition: 0, bytes: Self.frames(base: base, count: 10), base: base, end: base + 10)
                    }
                }
            }
        }
        #expect(try SegmentArchive(storage: storage).entries(topic: "t", partition: 0).map(\.base) == stride(from: 0, to: 80, by: 10).map { $0 })
        #expect(try Self.readAll(SegmentArchive(storage: storage)).count == 80)
    }

    /// A mirror whose lease was taken over (a lower epoch than the manifest's) cannot record
    /// anything, so it can never replace what the newer mirror wrote.
    @Test(arguments: ArchiveBackend.available)
    func aFencedOffMirrorCannotWrite(_ backend: ArchiveBackend) throws {
        var keep: [TempDirectory] = []
        let storage = try backend.storage(&keep)
        let old = SegmentArchive(storage: storage), new = SegmentArchive(storage: storage)
        try old.store(topic: "t", partition: 0, bytes: Self.frames(base: 0, count: 10), base: 0, end: 10, epoch: 1)
        try new.store(topic: "t", partition: 0, bytes: Self.frames(base: 10, count: 10), base: 10, end: 20, epoch: 2)
        // The old mirror's cache still says epoch 1; its write is refused all the same.
        let error = #expect(throws: LogError.self) {
            try old.store(topic: "t", partition: 0, bytes: Self.frames(base: 20, count: 10, tag: "old"), base: 20, end: 30, epoch: 1)
        }
        #expect(error?.message.contains("fenced off") == true && error?.message.contains("epoch 2") == true, "\(String(describing: error))")
        #expect(try new.entries(topic: "t", partition: 0).map(\.base) == [0, 10])
        // The new one goes on; without an epoch (kappactl archive run on one machine) works too.
        try new.store(topic: "t", partition: 0, bytes: Self.frames(base: 20, count: 10), base: 20, end: 30, epoch: 2)
        #expect(try Self.readAll(SegmentArchive(storage: storage)) == (0..<30).map { "\($0):r-\($0)" })
    }

    /// An object whose bytes changed after it was recorded is an error naming the object and
    /// its offsets; one uploaded but never recorded (killed between the two) is not archived,
    /// and the next store of it writes a whole one under a name of its own.
    @Test(arguments: ArchiveBackend.available)
    func damagedObjectsAreNamedAndUnrecordedOnesAreNotArchived(_ backend: ArchiveBackend) throws {
        var keep: [TempDirectory] = []
        let storage = try backend.storage(&keep)
        let archive = SegmentArchive(storage: storage)
        try archive.store(topic: "t", partition: 0, bytes: Self.frames(base: 0, count: 20), base: 0, end: 20)
        var damaged = Self.frames(base: 0, count: 20)
        damaged[damaged.count / 2] ^= 0xFF
        let named = try archive.entries(topic: "t", partition: 0)[0].key("t", 0)
        try storage.put(named, damaged)
        let error = #expect(throws: LogError.self) { try SegmentArchive(storage: storage).read(topic: "t", partition: 0, from: 3, maxRecords: 5, maxBytes: 1 << 20) }
        #expect(error?.code == .corrupt)
        #expect(error?.file == storage.display(named))
        #expect(error?.message.contains("offsets 0…19") == true, "\(String(describing: error))")

        // Half an upload of the next object, and no manifest entry: not archived.
        try storage.put(SegmentArchive.objectKey("t", 0, 20), Array(Self.frames(base: 20, count: 20).prefix(50)))
        #expect(try SegmentArchive(storage: storage).entries(topic: "t", partition: 0).map(\.base) == [0])
        try archive.store(topic: "t", partition: 0, bytes: Self.frames(base: 20, count: 20), base: 20, end: 40)
        #expect(try Self.readAll(SegmentArchive(storage: storage), from: 20) == (20..<40).map { "\($0):r-\($0)" })
    }

    /// Two objects of 50 records in a storage that counts reads, a reader with nothing cached,
    /// and the second object's key.
    static func twoObjects(_ backend: ArchiveBackend, _ keep: inout [TempDirectory]) throws -> (CountingStorage, SegmentArchive, String) {
        let counting = CountingStorage(try backend.storage(&keep))
        let archive = SegmentArchive(storage: counting)
        for base in [0, 50] as [Int64] {
            try archive.store(topic: "t", partition: 0, bytes: Self.frames(base: base, count: 50), base: base, end: base + 50)
        }
        let next = try archive.entries(topic: "t", partition: 0).first { $0.base == 50 }!.key("t", 0)
        return (counting, SegmentArchive(storage: counting), next)
    }

    /// A reader that reaches the next object while its fetch ahead is still under way (a slow
    /// store) waits for that fetch rather than asking for the object again: before, both
    /// requests went out and shared the link, and a replay read at 0.62x of curl.
    @Test(arguments: ArchiveBackend.available)
    func aReaderWaitsForTheFetchAheadRatherThanFetchingTwice(_ backend: ArchiveBackend) async throws {
        var keep: [TempDirectory] = []
        let (counting, reader, next) = try Self.twoObjects(backend, &keep)
        counting.delayMs.store(300, ordering: .relaxed)
        let first = try await BlockingExecutor.shared.run { try reader.read(topic: "t", partition: 0, from: 0, maxRecords: 50, maxBytes: 1 << 20) }
        #expect(first?.nextOffset == 50)
        let deadline = ContinuousClock.now + .seconds(10)
        while counting.gets(next) == 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(1)) }
        // The fetch ahead is under way (300 ms): the reader asks for the next object now.
        let second = try await BlockingExecutor.shared.run { try reader.read(topic: "t", partition: 0, from: 50, maxRecords: 50, maxBytes: 1 << 20) }
        #expect(second?.map(\.offset) == Array(50..<100))
        #expect(counting.gets(next) == 1)
    }

    /// Reading an object starts fetching the partition's next one, before anyone asks for it.
    @Test(arguments: ArchiveBackend.available)
    func readingAnObjectFetchesTheNextAhead(_ backend: ArchiveBackend) async throws {
        var keep: [TempDirectory] = []
        let (counting, reader, next) = try Self.twoObjects(backend, &keep)
        #expect(counting.gets(next) == 0)
        _ = try await BlockingExecutor.shared.run { try reader.read(topic: "t", partition: 0, from: 0, maxRecords: 5, maxBytes: 1 << 20) }
        let deadline = ContinuousClock.now + .seconds(10)
        while counting.gets(next) == 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        #expect(counting.gets(next) == 1)
        // Once fetched, reading it asks the storage no more.
        try await Task.sleep(for: .milliseconds(50))
        let records = try await BlockingExecutor.shared.run { try reader.read(topic: "t", partition: 0, from: 50, maxRecords: 100, maxBytes: 1 << 20) }
        #expect(records?.map(\.offset) == Array(50..<100))
        #expect(counting.gets(next) == 1)
    }
}

/// A storage that counts the reads of each object (for the read-ahead test).
final class CountingStorage: ArchiveStorage {
    let inner: any ArchiveStorage
    private let counts = Mutex<[String: Int]>([:])

    init(_ inner: any ArchiveStorage) { self.inner = inner }

    func gets(_ key: String) -> Int { counts.withLock { $0[key] ?? 0 } }

    var description: String { inner.description }
    func display(_ key: String) -> String { inner.display(key) }
    var freshnessMs: Int64 { inner.freshnessMs }
    /// Each get takes this long (a slow store).
    let delayMs = Atomic<Int>(0)

    func get(_ key: String, range: Range<Int64>) throws -> [UInt8]? {
        counts.withLock { $0[key, default: 0] += 1 }
        let delay = delayMs.load(ordering: .relaxed)
        if delay > 0 { usleep(UInt32(delay) * 1000) }
        return try inner.get(key, range: range)
    }
    func put(_ key: String, _ bytes: [UInt8]) throws { try inner.put(key, bytes) }
    func getVersioned(_ key: String) throws -> (bytes: [UInt8], tag: String)? { try inner.getVersioned(key) }
    func replace(_ key: String, _ bytes: [UInt8], ifTag tag: String?) throws -> String { try inner.replace(key, bytes, ifTag: tag) }
    func tag(_ key: String) throws -> String? { try inner.tag(key) }
    func list(_ prefix: String) throws -> [ArchiveObject] { try inner.list(prefix) }
    func delete(_ key: String) throws { try inner.delete(key) }
}

/// `--archive` as a user types it: a directory, an S3 location, or a mistake named plainly.
@Suite struct ArchiveLocationTests {
    @Test func aDirectoryAnS3LocationOrAPlainError() throws {
        #expect(try Backends.archive("/tmp/somewhere", environment: [:]).root == "/tmp/somewhere")
        let ftp = #expect(throws: LogError.self) { try Backends.archive("ftp://host/dir", environment: [:]) }
        #expect(ftp?.message == "unsupported archive ftp://host/dir: use a directory, or s3://BUCKET/PREFIX")
        #expect(throws: LogError.self) { try Backends.archive("", environment: [:]) }
        #if S3
        // No credentials: said so, naming the variables; a secret given is never shown.
        let missing = #expect(throws: LogError.self) { try Backends.archive("s3://b/p?endpoint=http://127.0.0.1:1", environment: [:]) }
        #expect(missing?.message.contains("AWS_ACCESS_KEY_ID") == true, "\(String(describing: missing))")
        let archive = try Backends.archive("s3://b/p?endpoint=http://127.0.0.1:1&region=eu-west-1",
                                           environment: ["AWS_ACCESS_KEY_ID": "AKIDEXAMPLE1234", "AWS_SECRET_ACCESS_KEY": "very-secret-value"])
        #expect(archive.root == nil)
        #expect(!"\(archive.storage)".contains("very-secret-value"))
        // A server that is not there: an error naming the topic, partition and object, not a hang.
        let down = #expect(throws: LogError.self) { try archive.entries(topic: "bpi", partition: 2) }
        #expect(down?.topic == "bpi" && down?.partition == 2)
        #expect(down?.message.contains("s3://b/p/bpi/2/manifest.json") == true, "\(String(describing: down))")
        #expect(down?.message.contains("very-secret-value") == false)
        #else
        let s3 = #expect(throws: LogError.self) { try Backends.archive("s3://bucket/prefix", environment: [:]) }
        #expect(s3?.message.contains("build with `swift build --traits S3`") == true)
        #endif
    }
}

/// A storage that is down (every call fails as an unreachable server's would) while `down` is set.
final class FlakyStorage: ArchiveStorage {
    struct Unreachable: Error, CustomStringConvertible { var description: String { "connection refused (the store is down)" } }
    let inner: any ArchiveStorage
    let down = Mutex(false)
    /// While set, `put` waits (an upload that takes long); `waiting` counts the puts held.
    let holdPuts = Mutex(false)
    let waiting = Atomic<Int>(0)
    init(_ inner: any ArchiveStorage) { self.inner = inner }
    private func check() throws { if down.withLock({ $0 }) { throw Unreachable() } }
    private func hold() {
        guard holdPuts.withLock({ $0 }) else { return }
        waiting.add(1, ordering: .relaxed)
        while holdPuts.withLock({ $0 }) { usleep(5_000) }
        waiting.subtract(1, ordering: .relaxed)
    }
    var description: String { inner.description }
    func display(_ key: String) -> String { inner.display(key) }
    var freshnessMs: Int64 { inner.freshnessMs }
    func get(_ key: String, range: Range<Int64>) throws -> [UInt8]? { try check(); return try inner.get(key, range: range) }
    func put(_ key: String, _ bytes: [UInt8]) throws { try check(); hold(); try inner.put(key, bytes) }
    func getVersioned(_ key: String) throws -> (bytes: [UInt8], tag: String)? { try check(); return try inner.getVersioned(key) }
    func replace(_ key: String, _ bytes: [UInt8], ifTag tag: String?) throws -> String { try check(); return try inner.replace(key, bytes, ifTag: tag) }
    func tag(_ key: String) throws -> String? { try check(); return try inner.tag(key) }
    func list(_ prefix: String) throws -> [ArchiveObject] { try check(); return try inner.list(prefix) }
    func delete(_ key: String) throws { try check(); try inner.delete(key) }
}

/// The object store going down under a reader and under `JobHost --mirror`.
@Suite struct ArchiveOutageTests {
    /// A state directory whose embedded log holds topic "t" (one partition) with `records`.
    static func topic(records: Int) async throws -> (TempDirectory, StateDirectory, SegmentLog) {
        let dir = try TempDirectory()
        let state = try StateDirectory(path: dir.path + "/state")
        let log = try SegmentLog(state: state)
        _ = try await log.createTopic("t", config: TopicConfig(partitions: 1))
        _ = try await log.append(topic: "t", records: (0..<records).map { ProducerRecord(value: bytes("v\($0)"), partition: 0) })
        return (dir, state, log)
    }

    @Test func readersKeepTheManifestTheyHaveAndSayWhatFailed() throws {
        let dir = try TempDirectory()
        let flaky = FlakyStorage(DirectoryArchiveStorage(root: dir.path))
        let archive = SegmentArchive(storage: flaky)
        for base in [0, 30] as [Int64] {
            try archive.store(topic: "t", partition: 0, bytes: ArchiveStorageContractTests.frames(base: base, count: 30), base: base, end: base + 30)
        }
        let reader = SegmentArchive(storage: flaky)
        #expect(try reader.read(topic: "t", partition: 0, from: 0, maxRecords: 30, maxBytes: 1 << 20)?.count == 30)
        flaky.down.withLock { $0 = true }
        // The offsets stay known (the log's earliest counts the archive while it is down).
        #expect(try reader.earliest(topic: "t", partition: 0, liveEarliest: 60) == 0)
        // An object not fetched yet: an error naming topic, partition and the store, retryable.
        let error = #expect(throws: LogError.self) {
            // The read-ahead may have fetched the second object: ask a fresh reader's cache-less copy.
            try SegmentArchive(storage: flaky).read(topic: "t", partition: 0, from: 30, maxRecords: 30, maxBytes: 1 << 20)
        }
        #expect(error?.code == .io && error?.topic == "t" && error?.partition == 0)
        #expect(error?.message.contains("the store is down") == true, "\(String(describing: error))")
        // A writer is refused rather than writing on a stale manifest.
        #expect(throws: LogError.self) {
            try archive.store(topic: "t", partition: 0, bytes: ArchiveStorageContractTests.frames(base: 60, count: 5), base: 60, end: 65)
        }
        flaky.down.withLock { $0 = false }
        #expect(try ArchiveStorageContractTests.readAll(SegmentArchive(storage: flaky)).count == 60)
    }

    /// A mirror whose store is down logs it once, retries with backoff, stays up, and finishes
    /// the copy once the store is back.
    @Test func aMirrorRidesOutTheStoreBeingDown() async throws {
        let (dir, state, log) = try await Self.topic(records: 500)
        let flaky = FlakyStorage(DirectoryArchiveStorage(root: dir.path + "/archive"))
        flaky.down.withLock { $0 = true }
        let lines = Mutex<[String]>([])
        let logger = EventLogger(format: .text) { line in lines.withLock { $0.append(line) } }
        let runner = MirrorRunner(mirror: LogMirror(log: log, archive: SegmentArchive(storage: flaky), topic: "t"), store: try Store.sqlite(state: state),
                                  owner: "JobHost@test:1", ttlMs: 10_000, intervalMs: 20, logger: logger)
        let task = Task { await runner.run() }
        defer { task.cancel() }
        let deadline = ContinuousClock.now + .seconds(60)
        while lines.withLock({ !$0.contains { $0.contains("mirror failed") } }), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        try await Task.sleep(for: .milliseconds(1_500))  // a retry or two while still down
        flaky.down.withLock { $0 = false }
        let check = SegmentArchive(storage: flaky)
        while (try? check.entries(topic: "t", partition: 0).last?.end) != 500, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        #expect(try check.entries(topic: "t", partition: 0).last?.end == 500)
        // The pass that copied the last records logs its success once it returns.
        while lines.withLock({ !$0.contains { $0.contains("mirror recovered") } }), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        #expect(try ArchiveStorageContractTests.readAll(check) == (0..<500).map { "\($0):v\($0)" })  // no gap, no double
        let logged = lines.withLock { $0 }
        #expect(logged.filter { $0.contains("mirror failed") }.count == 1, "\(logged)")  // said once, not every retry
        #expect(logged.contains { $0.contains("mirror recovered") })
        #expect(logged.contains { $0.contains("mirror lease taken") && $0.contains("epoch=1") })
        task.cancel()
        await task.value
        // The lease is given back at the end.
        #expect(try await Store.sqlite(state: state).leases().filter { $0.key == .mirror(topic: "t") && $0.expiresAt > currentTimeMillis() }.isEmpty)
    }

    /// The archive's manifests written with a higher epoch than this catalog's lease (the
    /// catalog restored from a backup, or a new one): the mirror holds the lease and can never
    /// write, so it is a failure, said in the log and in status, not a lease lost every pass.
    @Test func aMirrorHoldingTheLeaseBelowTheArchivesEpochSaysItFails() async throws {
        let (dir, state, log) = try await Self.topic(records: 10)
        let storage = DirectoryArchiveStorage(root: dir.path + "/archive")
        try SegmentArchive(storage: storage).claim(topic: "t", partition: 0, epoch: 7)
        let lines = Mutex<[String]>([])
        let logger = EventLogger(format: .text) { line in lines.withLock { $0.append(line) } }
        let problems = HostProblems()
        let runner = MirrorRunner(mirror: LogMirror(log: log, archive: SegmentArchive(storage: storage), topic: "t"), store: try Store.sqlite(state: state),
                                  owner: "JobHost@a:1", ttlMs: 10_000, intervalMs: 20, logger: logger, problems: problems)
        let task = Task { await runner.run() }
        defer { task.cancel() }
        let deadline = ContinuousClock.now + .seconds(30)
        while problems.current.isEmpty, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        let problem = try #require(problems.current.first)
        #expect(problem.subject == "mirror of t")
        #expect(problem.error.contains("epoch 7") && problem.error.contains("the catalog's lease epochs are behind the archive's"), "\(problem.error)")
        let logged = lines.withLock { $0 }
        #expect(logged.filter { $0.contains("mirror failed") }.count == 1 && !logged.contains { $0.contains("mirror lease lost") }, "\(logged)")
    }

    /// A mirror paused mid-upload past its lease while another host took the lease and claimed
    /// the manifest: its write is refused (fenced), and it says "lease lost", once, rather than
    /// failing: no "mirror failed", no host problem, no "recovered" while the other host mirrors.
    @Test func aMirrorFencedOffMidUploadSaysItLostTheLeaseNotThatItFails() async throws {
        let (dir, state, log) = try await Self.topic(records: 100)
        let flaky = FlakyStorage(DirectoryArchiveStorage(root: dir.path + "/archive"))
        flaky.holdPuts.withLock { $0 = true }
        let lines = Mutex<[String]>([])
        let logger = EventLogger(format: .text) { line in lines.withLock { $0.append(line) } }
        let store = try Store.sqlite(state: state)
        let problems = HostProblems()
        let runner = MirrorRunner(mirror: LogMirror(log: log, archive: SegmentArchive(storage: flaky), topic: "t"), store: store,
                                  owner: "JobHost@a:1", ttlMs: 300, intervalMs: 20, logger: logger, problems: problems)
        let task = Task { await runner.run() }
        defer { task.cancel() }
        let deadline = ContinuousClock.now + .seconds(60)
        while flaky.waiting.load(ordering: .relaxed) == 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        // Host B takes the expired lease and claims the manifest, as its mirror does first.
        try await Task.sleep(for: .milliseconds(400))
        let taken = try await store.acquireLeases([.mirror(topic: "t")], owner: "JobHost@b:1", ttlMs: 60_000, limit: 1)
        let epoch = try #require(taken.first?.epoch)
        try SegmentArchive(storage: flaky.inner).claim(topic: "t", partition: 0, epoch: epoch)
        flaky.holdPuts.withLock { $0 = false }
        while lines.withLock({ !$0.contains { $0.contains("mirror lease lost") } }), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        try await Task.sleep(for: .milliseconds(300))  // passes that find B holding the lease
        let logged = lines.withLock { $0 }
        #expect(logged.filter { $0.contains("mirror lease lost") }.count == 1, "\(logged)")
        #expect(!logged.contains { $0.contains("mirror failed") || $0.contains("mirror recovered") }, "\(logged)")
        #expect(problems.current.isEmpty)
        // Nothing of A's landed in the manifest B owns now.
        #expect(try SegmentArchive(storage: flaky.inner).entries(topic: "t", partition: 0).isEmpty)
    }
}
