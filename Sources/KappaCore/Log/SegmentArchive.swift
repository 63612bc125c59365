import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Where a topic's closed segments go before retention deletes them, so that a replay from
/// offset 0 is not limited by retention (the lecture's answer: mirror the log to cheap storage).
///
/// Layout, one that an object store could hold as it is: per partition, immutable files named by
/// their base offset, `<root>/<topic>/<partition>/<20-digit base>.seg` (a closed segment's frames,
/// byte for byte), and `manifest.json` beside them, replaced atomically (temporary file, fsync,
/// rename), listing each file's offsets, size and CRC-32C. A file not in the manifest is not
/// archived (a copy cut short by a crash); the next copy replaces it.
///
/// Every method but `init` reads or writes files: call them on the blocking executor (the logs
/// do), never on the cooperative pool.
public final class SegmentArchive: Sendable {
    public let root: String
    /// Archived files whose checksum was verified by this process (they never change).
    private let verified = Mutex<Set<String>>([])
    /// Manifests read, by path, with the modification time and size they had (reads of a live
    /// topic check the archive first: the manifest is not parsed again unless it changed).
    private let manifests = Mutex<[String: (stamp: [Int64], entries: [Entry])]>([:])

    public init(root: String) { self.root = root }

    public struct Entry: Codable, Sendable, Equatable {
        /// First offset in the file, and the offset after its last record.
        public var base: Int64
        public var end: Int64
        public var bytes: Int64
        public var crc32c: UInt32
    }

    struct Manifest: Codable {
        var version = 1
        var files: [Entry] = []
    }

    func directory(_ topic: String, _ partition: Int) -> String { "\(root)/\(topic)/\(partition)" }
    func path(_ topic: String, _ partition: Int, _ base: Int64) -> String {
        directory(topic, partition) + "/" + SegmentFiles.name(base) + ".seg"
    }

    /// The archived files of a partition, in offset order.
    public func entries(topic: String, partition: Int) throws -> [Entry] {
        let path = directory(topic, partition) + "/manifest.json"
        var info = stat()
        guard stat(path, &info) == 0 else { return [] }
        let stamp = [Int64(info.st_mtim.tv_sec), Int64(info.st_mtim.tv_nsec), Int64(info.st_size), Int64(info.st_ino)]
        if let known = manifests.withLock({ $0[path] }), known.stamp == stamp { return known.entries }
        let bytes: [UInt8]
        do {
            bytes = try FileSystem.readAll(path)
        } catch let error as IOError {
            throw LogError.io(error, topic: topic, partition: partition)
        }
        let entries = try Self.decodeManifest(bytes, topic: topic, partition: partition, path: path)
        manifests.withLock { $0[path] = (stamp, entries) }
        return entries
    }

    /// Decodes and checks a manifest (bytes from disk: anything): version 1, each file's offsets
    /// `0 ≤ base < end < 2^62` and size not negative, files not overlapping. Returns them in
    /// offset order.
    /// - Throws: `LogError.corrupt` naming the manifest and what is wrong with it.
    static func decodeManifest(_ bytes: [UInt8], topic: String, partition: Int, path: String) throws -> [Entry] {
        func corrupt(_ problem: String) -> LogError {
            LogError(.corrupt, "topic \"\(topic)\" partition \(partition): the archive's manifest \(path) is damaged: \(problem)",
                     topic: topic, partition: partition, file: path)
        }
        let manifest: Manifest
        do {
            manifest = try JSONDecoder().decode(Manifest.self, from: Data(bytes))
        } catch {
            throw corrupt(DecodingProblem.describe(error, bytes: bytes))
        }
        guard manifest.version == 1 else { throw corrupt("version \(manifest.version) is not one this Kappa reads (1)") }
        let entries = manifest.files.sorted { $0.base < $1.base }
        for (i, entry) in entries.enumerated() {
            guard entry.base >= 0, entry.base < entry.end, entry.end < BatchHeader.offsetLimit, entry.bytes >= 0 else {
                throw corrupt("the file for offsets \(entry.base) to \(entry.end) (\(entry.bytes) bytes) is not a range of offsets")
            }
            if i > 0, entries[i - 1].end > entry.base {
                throw corrupt("the files for offsets from \(entries[i - 1].base) and from \(entry.base) overlap")
            }
        }
        return entries
    }

    /// The first offset from which the archive and the live log together hold every record up to
    /// `liveEarliest`: the archive's first base if its files reach `liveEarliest` without a gap,
    /// else `liveEarliest` itself.
    public func earliest(topic: String, partition: Int, liveEarliest: Int64) throws -> Int64 {
        var covered = liveEarliest
        for entry in try entries(topic: topic, partition: partition).reversed() where entry.base < covered {
            guard entry.end >= covered else { break }
            covered = entry.base
        }
        return covered
    }

    /// Copies a closed segment into the archive (checksummed, fsynced) and records it in the
    /// manifest. Returns false when it was there already.
    @discardableResult
    func store(topic: String, partition: Int, segment: String, base: Int64, end: Int64) throws -> Bool {
        if try entries(topic: topic, partition: partition).contains(where: { $0.base == base && $0.end == end }) { return false }
        // Streamed in 1 MiB chunks: a 64 MiB segment is never held in memory whole.
        let source = try FileDescriptor(path: segment, flags: O_RDONLY)
        try write(topic: topic, partition: partition, base: base, end: end) { file in
            var chunk = [UInt8](repeating: 0, count: 1 << 20)
            var at: Int64 = 0, crc: UInt32 = 0
            while true {
                let n = try chunk.withUnsafeMutableBytes { try source.read(into: $0, at: at) }
                if n == 0 { return (at, crc) }
                try chunk.withUnsafeBytes { try file.write(UnsafeRawBufferPointer(rebasing: $0[0..<n]), at: at) }
                crc = chunk.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<n]), continuing: crc) }
                at += Int64(n)
            }
        }
        return true
    }

    /// Writes frames holding offsets `base..<end` as an archived file.
    func store(topic: String, partition: Int, bytes: [UInt8], base: Int64, end: Int64) throws {
        if try entries(topic: topic, partition: partition).contains(where: { $0.base == base && $0.end == end }) { return }
        try write(topic: topic, partition: partition, base: base, end: end) { file in
            try file.write(bytes, at: 0)
            return (Int64(bytes.count), CRC32C.checksum(bytes))
        }
    }

    /// The file first (temporary name, written by `body`, which returns its size and checksum;
    /// fsync; rename), then the manifest that records it, so that the manifest (the archive's
    /// position) never names a file that is not whole. A file left by a crash between the two is
    /// not in the manifest and is replaced here.
    private func write(topic: String, partition: Int, base: Int64, end: Int64, _ body: (FileDescriptor) throws -> (Int64, UInt32)) throws {
        var manifest = Manifest(files: try entries(topic: topic, partition: partition))
        let dir = directory(topic, partition)
        try FileSystem.makeDirectories(dir)
        let target = path(topic, partition, base)
        let temporary = target + ".tmp"
        let file = try FileDescriptor(path: temporary, flags: O_WRONLY | O_CREAT | O_TRUNC)
        let (size, crc) = try body(file)
        try file.sync()
        try FileSystem.rename(temporary, to: target)
        verified.withLock { _ = $0.remove(target) }
        manifest.files.append(Entry(base: base, end: end, bytes: size, crc32c: crc))
        manifest.files.sort { $0.base < $1.base }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        try FileSystem.writeAtomically(Array(try encoder.encode(manifest)), to: dir + "/manifest.json")
    }

    /// The archived file holding `offset`, its checksum verified.
    /// - Throws: `LogError.corrupt` naming the file when its bytes do not match the manifest.
    func file(topic: String, partition: Int, holding offset: Int64) throws -> (entry: Entry, path: String)? {
        guard let entry = try entries(topic: topic, partition: partition).first(where: { $0.base <= offset && offset < $0.end }) else { return nil }
        let path = path(topic, partition, entry.base)
        if verified.withLock({ $0.contains(path) }) { return (entry, path) }
        var size: Int64 = 0, crc: UInt32 = 0
        do {
            let file = try FileDescriptor(path: path, flags: O_RDONLY)
            var chunk = [UInt8](repeating: 0, count: 1 << 20)
            while true {
                let n = try chunk.withUnsafeMutableBytes { try file.read(into: $0, at: size) }
                if n == 0 { break }
                crc = chunk.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<n]), continuing: crc) }
                size += Int64(n)
            }
        } catch let error as IOError {
            throw LogError.io(error, topic: topic, partition: partition)
        }
        guard size == entry.bytes, crc == entry.crc32c else {
            throw LogError(.corrupt, "topic \"\(topic)\" partition \(partition): archived file \(path) does not match its checksum in the manifest (offsets \(entry.base)…\(entry.end - 1))",
                           topic: topic, partition: partition, offset: offset, file: path)
        }
        verified.withLock { _ = $0.insert(path) }
        return (entry, path)
    }

    /// Reads records from the archive from `offset` (up to the end of the file holding it);
    /// nil when no archived file holds it. Frames are checked as on the live log.
    /// - Throws: `LogError.corrupt` naming the file and offset.
    public func read(topic: String, partition: Int, from offset: Int64, maxRecords: Int, maxBytes: Int) throws -> LogRecords? {
        guard let (entry, path) = try file(topic: topic, partition: partition, holding: offset) else { return nil }
        func corrupt(_ what: String) -> LogError {
            LogError(.corrupt, "topic \"\(topic)\" partition \(partition): \(what) at offset \(offset) in \(path)",
                     topic: topic, partition: partition, offset: offset, file: path)
        }
        do {
            let file = try FileDescriptor(path: path, flags: O_RDONLY)
            var position: Int64?
            _ = try FrameWalker.walk(file, from: 0, limit: entry.bytes, verify: false) { at, header in
                if offset < header.nextOffset { position = at; return false }
                return true
            }
            guard let position else { throw corrupt("no frame holds the offset") }
            var want = Int(min(entry.bytes - position, Int64(max(maxBytes, 64 << 10))))
            var buffer = try file.read(count: want, at: position)
            if let first = buffer.withUnsafeBytes({ BatchHeader.parse($0, at: 0) }), first.length > buffer.count {
                want = first.length
                buffer = try file.read(count: want, at: position)
            }
            var entries: [LogRecords.Entry] = []
            try buffer.withUnsafeBytes { buf in
                var at = 0
                while at < buf.count, entries.count < maxRecords, let header = BatchHeader.parse(buf, at: at), at + header.length <= buf.count {
                    let expected = entries.last.map { $0.offset + 1 } ?? offset
                    if header.baseOffset >= entry.end && !entries.isEmpty { break }  // past the file's offsets
                    guard header.verify(buf, at: at) else { throw corrupt("checksum mismatch in the frame at byte \(position + Int64(at))") }
                    // Offsets in order, as on the live log: a reader never gets an offset twice or out of order.
                    guard header.baseOffset <= expected, header.nextOffset > expected, header.nextOffset <= entry.end else {
                        throw corrupt("the frame at byte \(position + Int64(at)) holds offsets \(header.baseOffset)…\(header.lastOffset), expected \(expected) (the file holds \(entry.base)…\(entry.end - 1))")
                    }
                    guard RecordBatchCodec.decode(buf, at: at, header: header, fromOffset: expected, limit: maxRecords, into: &entries) else {
                        throw corrupt("record lengths overrun the frame at byte \(position + Int64(at))")
                    }
                    at += header.length
                }
            }
            guard let last = entries.last else { throw corrupt("no whole frame") }
            return LogRecords(partition: partition, storage: buffer, entries: entries, nextOffset: last.offset + 1)
        } catch let error as IOError {
            throw LogError.io(error, topic: topic, partition: partition)
        }
    }
}
