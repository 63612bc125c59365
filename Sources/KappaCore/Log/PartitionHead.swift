#if canImport(Glibc)
import Glibc
#endif

/// The partition's head: where the durable, visible part of the log ends.
///
/// A writer updates it (under the partition lock) only after the frames it covers are fsynced,
/// and acknowledges the append after that; readers read up to it and no further. So a reader in
/// another process sees exactly the acknowledged records, never a torn frame, without taking a
/// lock. The head itself is not fsynced: after a power loss it may lag behind the segment,
/// and recovery scans forward from it (frames past it that pass their checksum were fsynced).
///
///     magic u32 | nextOffset i64 | segmentBase i64 | position i64 | earliest i64 | crc32c u32
struct PartitionHead: Equatable, Sendable {
    static let magic: UInt32 = 0x3148_504B  // "KPH1"
    static let size = 40
    static let fileName = "head"

    /// The end offset: the next offset to be written.
    var nextOffset: Int64
    /// Base offset of the active (last) segment.
    var segmentBase: Int64
    /// Bytes of the active segment that are durable and visible.
    var position: Int64
    /// The earliest offset retained (base of the oldest segment).
    var earliest: Int64

    func encoded() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(Self.size)
        out.appendLE(Self.magic)
        out.appendLE(nextOffset)
        out.appendLE(segmentBase)
        out.appendLE(position)
        out.appendLE(earliest)
        out.appendLE(CRC32C.checksum(out))
        return out
    }

    /// Decodes a head; nil when the bytes are short, torn or not a head.
    static func decode(_ bytes: [UInt8]) -> PartitionHead? {
        guard bytes.count >= size else { return nil }
        return bytes.withUnsafeBytes { buf -> PartitionHead? in
            guard buf.loadLE(UInt32.self, at: 0) == magic,
                  CRC32C.checksum(UnsafeRawBufferPointer(rebasing: buf[0..<36])) == buf.loadLE(UInt32.self, at: 36)
            else { return nil }
            let head = PartitionHead(nextOffset: buf.loadLE(Int64.self, at: 4), segmentBase: buf.loadLE(Int64.self, at: 12),
                                     position: buf.loadLE(Int64.self, at: 20), earliest: buf.loadLE(Int64.self, at: 28))
            // Offsets and the position below 2^62 (see `BatchHeader.offsetLimit`), in order.
            guard head.earliest >= 0, head.earliest <= head.segmentBase, head.segmentBase <= head.nextOffset,
                  head.nextOffset < BatchHeader.offsetLimit, head.position >= 0, head.position < BatchHeader.offsetLimit
            else { return nil }
            return head
        }
    }

    /// Reads the head from `file`, retrying a read that raced a concurrent update.
    static func read(from file: FileDescriptor) throws -> PartitionHead? {
        for _ in 0..<8 {
            let bytes = try file.read(count: size, at: 0)
            if bytes.isEmpty { return nil }
            if let head = decode(bytes) { return head }
            sched_yield()
        }
        return nil
    }
}

/// Names and lists the segment files of a partition directory: `<20-digit base offset>.log`
/// with its sparse index `<base>.index`.
enum SegmentFiles {
    static func name(_ base: Int64) -> String {
        let digits = String(base)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits
    }

    static func logPath(_ directory: String, _ base: Int64) -> String { "\(directory)/\(name(base)).log" }
    static func indexPath(_ directory: String, _ base: Int64) -> String { "\(directory)/\(name(base)).index" }

    /// Base offsets of the segments present, ascending. Only names of 20 decimal digits (below
    /// `BatchHeader.offsetLimit`) and `.log` are segments: `Int64` would also take a sign.
    static func list(_ directory: String) throws -> [Int64] {
        try FileSystem.list(directory).compactMap(base(ofName:)).sorted()
    }

    /// The base offset a segment's file name spells; nil when the name is not a segment's.
    static func base(ofName name: String) -> Int64? {
        let utf8 = Array(name.utf8)
        guard utf8.count == 24, name.hasSuffix(".log"), utf8[0..<20].allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
              let base = Int64(name.prefix(20)), base < BatchHeader.offsetLimit else { return nil }
        return base
    }
}

/// A segment's sparse index: every ~4 KiB of log, the position of the frame holding an offset.
/// Each entry is `relativeOffset u32 | position u32`. Not fsynced: it is checked when used and
/// rebuilt by recovery when it disagrees with the segment.
struct SegmentIndex: Sendable {
    static let interval: Int64 = 4096
    static let entrySize = 8

    struct Entry: Equatable, Sendable {
        var relativeOffset: UInt32
        var position: UInt32
    }

    var entries: [Entry]

    static func load(_ path: String) -> SegmentIndex {
        guard let bytes = try? FileSystem.readAll(path) else { return SegmentIndex(entries: []) }
        return decode(bytes)
    }

    static func decode(_ bytes: [UInt8]) -> SegmentIndex {
        let n = bytes.count / entrySize
        var entries: [Entry] = []
        entries.reserveCapacity(n)
        bytes.withUnsafeBytes { buf in
            for i in 0..<n {
                entries.append(Entry(relativeOffset: buf.loadLE(UInt32.self, at: i * entrySize),
                                     position: buf.loadLE(UInt32.self, at: i * entrySize + 4)))
            }
        }
        return SegmentIndex(entries: entries)
    }

    static func encode(_ entry: Entry) -> [UInt8] {
        var out: [UInt8] = []
        out.appendLE(entry.relativeOffset)
        out.appendLE(entry.position)
        return out
    }

    /// The last entry at or below `relativeOffset` whose position lies below `limit`; nil when none.
    /// The search assumes ascending entries (as written); entries out of order (a damaged index:
    /// it is not fsynced) are skipped over, so the entry returned is still at or below the target.
    func floor(_ relativeOffset: UInt32, below limit: Int64) -> Entry? {
        var lo = 0, hi = entries.count  // first entry with relativeOffset > target
        while lo < hi {
            let mid = (lo + hi) / 2
            if entries[mid].relativeOffset <= relativeOffset { lo = mid + 1 } else { hi = mid }
        }
        var i = lo - 1
        while i >= 0, Int64(entries[i].position) >= limit || entries[i].relativeOffset > relativeOffset { i -= 1 }
        return i >= 0 ? entries[i] : nil
    }
}
