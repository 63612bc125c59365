#if canImport(Glibc)
import Glibc
#endif

/// What `kappactl topic check` found in one partition of the embedded log: every frame read and
/// its checksum verified, the segments' offsets against each other and against the head, the
/// sparse indexes, and the archived files against the archive's manifest.
public struct PartitionCheck: Sendable, Codable, Equatable {
    public var partition: Int
    /// The head's earliest and end offsets (nil when the head cannot be read).
    public var earliest: Int64?
    public var end: Int64?
    public var segments: Int
    public var frames: Int
    /// Records in the frames verified.
    public var records: Int64
    public var bytes: Int64
    /// Archived files verified against their checksums.
    public var archivedFiles: Int
    /// Damage to acknowledged records: each names the file, and the offsets or byte concerned.
    public var damage: [String]
    /// Harmless findings: a stale index (rebuilt on open), an unacknowledged tail (cut on open).
    public var warnings: [String]
    /// Offsets a repair gave up as lost (`gaps.json`): not damage, never handed out again.
    public var gaps: [PartitionGap] = []

    public var sound: Bool { damage.isEmpty }
}

/// Verifies a partition's files without changing them and without the partition's lock (an
/// appender in another process may go on: what it writes beyond the head read here is not
/// looked at). Blocking.
enum LogCheck {
    static func check(topic: String, partition p: Int, directory dir: String, archive: SegmentArchive?) -> PartitionCheck {
        var result = PartitionCheck(partition: p, earliest: nil, end: nil, segments: 0, frames: 0, records: 0, bytes: 0,
                                    archivedFiles: 0, damage: [], warnings: [])
        let place = "topic \"\(topic)\" partition \(p)"
        let bases: [Int64]
        do {
            bases = try SegmentFiles.list(dir)
        } catch {
            result.damage.append("\(place): cannot list \(dir): \(error)")
            return result
        }
        result.segments = bases.count
        let gaps: PartitionGaps
        do {
            gaps = try PartitionGaps.load(dir, topic: topic, partition: p)
        } catch {
            gaps = PartitionGaps()
            result.damage.append("\(error)")
        }
        result.gaps = gaps.gaps
        let headPath = "\(dir)/\(PartitionHead.fileName)"
        let head: PartitionHead?
        do {
            let file = try FileDescriptor(path: headPath, flags: O_RDONLY)
            head = try PartitionHead.read(from: file)
            if head == nil { result.damage.append("\(place): head file \(headPath) is not a valid head (torn, or not Kappa's)") }
        } catch {
            head = nil
            result.damage.append("\(place): head file \(headPath) cannot be read: \(error); what was acknowledged is unknown")
        }
        if let head {
            result.earliest = head.earliest
            result.end = head.nextOffset
            if !bases.contains(head.segmentBase) {
                result.damage.append("\(place): the active segment \(SegmentFiles.logPath(dir, head.segmentBase)) is missing (offsets \(head.segmentBase)…\(head.nextOffset - 1) acknowledged)")
            }
            if let first = bases.first, first > head.earliest {
                result.damage.append("\(place): offsets \(head.earliest)…\(first - 1) are missing: no segment holds them (the oldest is \(SegmentFiles.logPath(dir, first)))")
            }
        }
        var expected: Int64? = nil  // the offset the next segment should start at
        for (i, base) in bases.enumerated() {
            let path = SegmentFiles.logPath(dir, base)
            let size = FileSystem.size(path) ?? 0
            result.bytes += size
            let active = head.map { base == $0.segmentBase } ?? (i == bases.count - 1)
            if let head, base > head.segmentBase {
                result.warnings.append("\(place): \(path) lies beyond the active segment as read (a segment rolled during the check, or a crash's leftover, removed when the partition is next opened)")
                continue
            }
            if let expected, base > expected, gaps.cover(from: expected, to: base) {
                // A recorded gap: listed in `gaps`.
            } else if let expected, base != expected {
                result.damage.append(base > expected
                    ? "\(place): offsets \(expected)…\(base - 1) are missing between segments (\(path) starts at \(base))"
                    : "\(place): \(path) starts at \(base), inside the previous segment (which ends before \(expected))")
            }
            var limit = size
            if active, let head {
                if size > head.position {
                    result.warnings.append("\(place): \(path) has \(size - head.position) bytes beyond the head as read (an append in flight, or a crash's leftover, cut when the partition is next opened)")
                }
                limit = min(size, head.position)
            }
            let index = SegmentIndex.load(SegmentFiles.indexPath(dir, base))
            var wanted: [Int64: UInt32] = [:]  // index position → relative offset
            for entry in index.entries { wanted[Int64(entry.position)] = entry.relativeOffset }
            var badIndex = 0
            var next = base
            var walked: Int64 = 0  // where the frames verified end
            do {
                let file = try FileDescriptor(path: path, flags: O_RDONLY)
                let stop = try FrameWalker.walk(file, from: 0, limit: limit, verify: true) { position, header in
                    if header.baseOffset != next {
                        result.damage.append("\(place): \(path) byte \(position): the frame holds offsets \(header.baseOffset)…\(header.lastOffset), expected \(next)")
                        return false
                    }
                    if let relative = wanted.removeValue(forKey: position) {
                        let offset = base + Int64(relative)
                        if offset < header.baseOffset || offset > header.lastOffset { badIndex += 1 }
                    }
                    result.frames += 1
                    result.records += Int64(header.count)
                    walked = position + Int64(header.length)
                    next = header.lastOffset + 1
                    return true
                }
                if case .invalid(let position, let reason) = stop {
                    let upTo = active ? head.map { " up to \($0.nextOffset - 1)" } ?? "" : ""
                    result.damage.append("\(place): \(path) byte \(position): \(reason); offsets from \(next)\(upTo) cannot be read")
                }
            } catch {
                result.damage.append("\(place): \(path) cannot be read: \(error)")
            }
            let nextBase = i + 1 < bases.count ? bases[i + 1] : base
            if !active, next == base, !gaps.cover(from: base, to: nextBase), !result.damage.contains(where: { $0.contains(path) }) {
                result.damage.append("\(place): \(path) is a closed segment of \(size) bytes holding no record (its offsets from \(base) are lost)")
            }
            badIndex += wanted.keys.filter { $0 < walked }.count  // entries pointing at no frame
            if badIndex > 0 {
                result.warnings.append("\(place): \(SegmentFiles.indexPath(dir, base)) has \(badIndex) wrong entr\(badIndex == 1 ? "y" : "ies") (rebuilt when the partition is opened)")
            }
            if active, let head, size < head.position, !result.damage.contains(where: { $0.contains(path) }) {
                result.damage.append("\(place): offsets \(next)…\(head.nextOffset - 1) are missing: \(path) holds \(size) bytes but the head acknowledged \(head.position)")
            } else if active, let head, next != head.nextOffset, size >= head.position, !result.damage.contains(where: { $0.contains(path) }) {
                result.damage.append("\(place): \(path) ends at offset \(next) but the head acknowledged up to \(head.nextOffset - 1)")
            }
            expected = next
        }
        if let archive {
            do {
                for entry in try archive.entries(topic: topic, partition: p) {
                    do {
                        _ = try archive.file(topic: topic, partition: p, holding: entry.base)
                        result.archivedFiles += 1
                    } catch {
                        result.damage.append("\(error)")
                    }
                }
            } catch {
                result.damage.append("\(place): the archive's manifest cannot be read: \(error)")
            }
        }
        return result
    }
}
