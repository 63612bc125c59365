#if canImport(Glibc)
import Glibc
#endif

/// What `kappactl topic repair --accept-loss` did to one partition.
public struct PartitionRepair: Sendable, Codable, Equatable {
    public var topic: String
    public var partition: Int
    /// The gaps this repair recorded, one per damage found; empty when the partition was sound.
    public var gaps: [PartitionGap]
    /// What changed on disk, one line each (segments cut, the bytes cut kept aside, a segment
    /// started after a gap, the head written).
    public var changes: [String]
    /// The end offset kept: the next record appended gets it.
    public var end: Int64

    public var repaired: Bool { !changes.isEmpty }
}

extension PartitionLog {
    /// Repairs the partition's damage by giving up what is lost: each damaged segment is cut
    /// after its last sound record (the bytes cut are kept beside it, `<segment>.log.cut-<ms>`),
    /// the offsets lost become a recorded gap (`gaps.json`, written first), and the end offset is
    /// kept: at least the head's acknowledged end and `atLeast` (what consumers have read up
    /// to), so that no offset is ever handed out twice. Under the file lock, on the writer lane.
    /// Safe to run again: a repair interrupted by a crash is finished, a sound partition is left
    /// as it is.
    /// - Throws: `LogError` when the files cannot be read or written.
    func repair(atLeast: Int64, actor: String, now: Int64) async throws -> PartitionRepair {
        try await onWriter { state in
            state = nil
            return try self.ioErrors { try self.repairNow(atLeast: atLeast, actor: actor, now: now, &state) }
        }
    }

    private func repairNow(atLeast: Int64, actor: String, now: Int64, _ state: inout ActiveSegment?) throws -> PartitionRepair {
        var result = PartitionRepair(topic: topic, partition: partition, gaps: [], changes: [], end: 0)
        do {
            _ = try PartitionGaps.load(directory, topic: topic, partition: partition)
        } catch let error as LogError where error.code == .corrupt {
            // Written again from what the segments show (each gap lies between two segments).
            try PartitionGaps().save(directory)
            result.changes.append("\(PartitionGaps.path(directory)) was damaged (\(error.message)); written again from the segments' boundaries")
        }
        // One damage a round, from the lowest offset up; each round cuts, records and looks again.
        for _ in 0..<100_000 {
            forgetEverything()
            loadGaps()
            var found = try firstBadFrame(currentGaps()) ?? checkAcknowledged()
            if found == nil {
                do {
                    let active = try recover()
                    state = active
                    result.end = active.nextOffset
                    return result
                } catch let error as LogError where error.code == .corrupt {
                    found = currentDamage()
                    if found == nil { throw error }
                }
            }
            guard let damage = found else { break }
            try cut(damage, atLeast: atLeast, actor: actor, now: now, into: &result)
        }
        throw LogError(.corrupt, "topic \"\(topic)\" partition \(partition): the repair did not reach a sound partition", topic: topic, partition: partition, file: directory)
    }

    /// The first frame below the head that fails its checksum or holds other offsets than its
    /// place requires, every frame read (the open-time check reads only each segment's last
    /// ones, readers the rest). Segment boundaries are `checkAcknowledged`'s to judge.
    private func firstBadFrame(_ gaps: PartitionGaps) throws -> PartitionDamage? {
        guard let head = try PartitionHead.read(from: headFile) else { return nil }
        let segments = try SegmentFiles.list(directory).filter { $0 <= head.segmentBase }
        var previousEnd: Int64?
        for (i, base) in segments.enumerated() {
            if let e = previousEnd, base != e, !(base > e && gaps.cover(from: e, to: base)) { return nil }
            let path = SegmentFiles.logPath(directory, base)
            let file = try FileDescriptor(path: path, flags: O_RDONLY)
            let size = try file.size()
            let limit = base == head.segmentBase ? min(size, head.position) : size
            var expected = base
            let stop = try FrameWalker.walk(file, from: 0, limit: limit, verify: true) { _, header in
                guard header.baseOffset == expected else { return false }
                expected = header.nextOffset
                return true
            }
            let problem: String?
            switch stop {
            case .end: problem = nil
            case .stopped(let at): problem = "the frame at byte \(at) does not hold offset \(expected)"
            case .invalid(let at, let reason): problem = "\(reason) at byte \(at)"
            }
            if let problem {
                let to = i + 1 < segments.count ? segments[i + 1] : head.nextOffset
                return PartitionDamage(topic: topic, partition: partition, kind: .badFrame, file: path, from: expected, to: max(to, expected + 1),
                                       acknowledgedEnd: head.nextOffset, detail: problem, readable: nil)
            }
            previousEnd = expected
        }
        return nil
    }

    /// Cuts one damage: records its gap, then cuts the segment holding it and, at the end of the
    /// log, starts the next segment after the gap and writes the head there.
    private func cut(_ damage: PartitionDamage, atLeast: Int64, actor: String, now: Int64, into result: inout PartitionRepair) throws {
        let segments = try SegmentFiles.list(directory)
        let head = try PartitionHead.read(from: headFile)
        // The segment holding the first damaged offset, walked to its last sound frame before it.
        let holder = segments.last { $0 <= damage.from }
        var soundEnd = damage.from
        var cutAt: Int64?
        var file: FileDescriptor?
        if let holder {
            let f = try FileDescriptor(path: SegmentFiles.logPath(directory, holder), flags: O_RDWR)
            let size = try f.size()
            var expected = holder, end: Int64 = 0
            _ = try FrameWalker.walk(f, from: 0, limit: size, verify: true) { at, header in
                guard header.baseOffset == expected, header.nextOffset <= damage.from else { return false }
                expected = header.nextOffset
                end = at + Int64(header.length)
                return true
            }
            soundEnd = expected
            if end < size { cutAt = end }
            file = f
        }
        // The gap ends where the next segment begins; at the end of the log, after every offset
        // the head acknowledged or a consumer read.
        let next = segments.first { $0 > (holder ?? damage.from) && $0 > soundEnd }
        let last = next == nil
        let gapEnd = next ?? max(soundEnd, damage.acknowledgedEnd ?? head?.nextOffset ?? soundEnd, damage.to ?? soundEnd, atLeast)
        if gapEnd > soundEnd {
            let gap = PartitionGap(from: soundEnd, to: gapEnd, repairedAt: now, actor: actor, reason: damage.description)
            // First: a crash from here on is finished by repairing again.
            try currentGaps().adding(gap).save(directory)
            result.gaps.append(gap)
            result.changes.append("offsets \(gap.range) (\(gap.count) records) recorded as lost in \(PartitionGaps.path(directory))")
        }
        if let holder, let file, let cutAt {
            let path = SegmentFiles.logPath(directory, holder)
            let size = try file.size()
            // The bytes cut are kept aside, for whoever wants to look at them.
            let aside = "\(path).cut-\(now)"
            let kept = try FileDescriptor(path: aside, flags: O_WRONLY | O_CREAT | O_TRUNC)
            var at = cutAt
            while at < size {
                let chunk = try file.read(count: Int(min(size - at, 4 << 20)), at: at)
                if chunk.isEmpty { break }
                try kept.write(chunk, at: at - cutAt)
                at += Int64(chunk.count)
            }
            try kept.sync()
            try file.truncate(to: cutAt)
            try file.sync()
            try FileSystem.syncDirectory(directory)
            _ = try rebuildIndex(holder, limit: cutAt)
            result.changes.append("\(path) cut at byte \(cutAt) after offset \(soundEnd - 1) (its last sound record); the \(size - cutAt) bytes cut are kept in \(aside)")
        }
        guard last else { return }
        let earliest = segments.first ?? gapEnd
        let newHead: PartitionHead
        if gapEnd > soundEnd || holder == nil {
            if !segments.contains(gapEnd) {
                try createSegment(gapEnd)
                result.changes.append("segment \(SegmentFiles.logPath(directory, gapEnd)) started: the next record appended gets offset \(gapEnd)")
            }
            newHead = PartitionHead(nextOffset: gapEnd, segmentBase: gapEnd, position: 0, earliest: min(earliest, gapEnd))
        } else {
            // Nothing lost beyond the files' sound end (a lost head, nobody read further): the log goes on there.
            let position = try cutAt ?? file?.size() ?? 0
            newHead = PartitionHead(nextOffset: soundEnd, segmentBase: holder ?? soundEnd, position: position, earliest: earliest)
        }
        try headFile.write(newHead.encoded(), at: 0)
        try headFile.sync()
        result.changes.append("head written: end offset \(newHead.nextOffset)")
    }
}
