#if canImport(Glibc)
import Glibc
#endif

extension PartitionLog {
    /// The writer's state, checked against the disk under the file lock: another process may
    /// have appended, rolled or crashed since. Recovers when the disk and the head disagree.
    /// - Throws: the damage's error when the partition is damaged (appends are refused).
    func reload(_ state: inout ActiveSegment?) throws -> ActiveSegment {
        if currentDamage() != nil, try noticeRepair() { state = nil }
        if let damage = currentDamage() { throw damage.error }
        if let s = state, let head = try ioErrors({ try PartitionHead.read(from: headFile) }), head == s.head,
           try ioErrors({ try segmentFile(writing: s).size() }) == s.position {
            return s
        }
        let fresh = try recover()
        state = fresh
        return fresh
    }

    /// Checks, at open and under the file lock, that the segments hold every offset the head
    /// acknowledged: each closed segment starts with its base, ends (with a valid last frame)
    /// exactly where the next one begins, and the active one's last frames below the head are
    /// valid. Cheap: a few preads per segment (from its index's last entry); frames in the
    /// middle of a segment are verified when they are read. Records and returns the damage found.
    func checkAcknowledged() throws -> PartitionDamage? {
        try ioErrors {
            let segments = try SegmentFiles.list(directory)
            let head = try PartitionHead.read(from: headFile)
            guard let h = head else {
                return segments.isEmpty ? nil : try headMissing(segments)
            }
            let closed = segments.filter { $0 < h.segmentBase }
            for (i, base) in closed.enumerated() {
                let end = i + 1 < closed.count ? closed[i + 1] : h.segmentBase
                if let damage = try checkSegment(base, limit: nil, end: end, acknowledged: h.nextOffset, earliest: segments[0]) {
                    return record(damage)
                }
            }
            if segments.contains(h.segmentBase), let size = FileSystem.size(SegmentFiles.logPath(directory, h.segmentBase)),
               size >= h.position, h.position > 0,
               let damage = try checkSegment(h.segmentBase, limit: h.position, end: h.nextOffset, acknowledged: h.nextOffset, earliest: segments[0]) {
                return record(damage)
            }
            return nil
        }
    }

    /// The head is gone but segments exist: nothing says what was acknowledged, so a torn tail
    /// cannot be told from lost records and nothing is cut. Finds what the files hold (the
    /// closed segments' tails, the last one scanned whole) and records that as the damage.
    private func headMissing(_ segments: [Int64]) throws -> PartitionDamage {
        let headPath = "\(directory)/\(PartitionHead.fileName)"
        for (i, base) in segments.dropLast().enumerated() {
            if var damage = try checkSegment(base, limit: nil, end: segments[i + 1], acknowledged: nil, earliest: segments[0]) {
                damage.detail += " (and the head file \(headPath) is missing or unreadable)"
                damage.to = nil
                return record(damage)
            }
        }
        let last = segments[segments.count - 1]
        let path = SegmentFiles.logPath(directory, last)
        let file = try FileDescriptor(path: path, flags: O_RDONLY)
        var expected = last
        let stop = try FrameWalker.walk(file, from: 0, limit: try file.size(), verify: true) { _, header in
            guard header.baseOffset == expected else { return false }
            expected = header.nextOffset
            return true
        }
        let position: Int64
        let problem: String
        switch stop {
        case .end(let end):
            (position, problem) = (end, "the last segment \(path) ends at offset \(expected), byte \(end)")
        case .stopped(let at):
            (position, problem) = (at, "the frame at byte \(at) of \(path) does not hold offset \(expected)")
        case .invalid(let at, let reason):
            (position, problem) = (at, "\(reason) at byte \(at) of \(path)")
        }
        return record(PartitionDamage(
            topic: topic, partition: partition, kind: .headMissing, file: headPath, from: expected, to: nil,
            acknowledgedEnd: nil, detail: problem,
            readable: PartitionHead(nextOffset: expected, segmentBase: last, position: position, earliest: segments[0])))
    }

    /// Checks that segment `base` holds offsets `base..<end` within its first `limit` bytes
    /// (its size when nil), verifying its last frames; nil when it does.
    private func checkSegment(_ base: Int64, limit: Int64?, end: Int64, acknowledged: Int64?, earliest: Int64) throws -> PartitionDamage? {
        let path = SegmentFiles.logPath(directory, base)
        func damage(_ kind: PartitionDamage.Kind, _ file: String, from: Int64, _ detail: String, position: Int64?) -> PartitionDamage {
            PartitionDamage(topic: topic, partition: partition, kind: kind, file: file, from: from, to: max(end, from + 1),
                            acknowledgedEnd: acknowledged, detail: detail,
                            readable: position.map { PartitionHead(nextOffset: from, segmentBase: base, position: $0, earliest: earliest) })
        }
        let file: FileDescriptor
        do {
            file = try FileDescriptor(path: path, flags: O_RDONLY)
        } catch let error as IOError where error.code == ENOENT {
            return damage(.segmentMissing, path, from: base, "the segment file is missing", position: nil)
        }
        let size = try file.size()
        let limit = min(limit ?? size, size)
        let gaps = currentGaps()
        if limit == 0 {
            guard end > base, !gaps.cover(from: base, to: end) else { return nil }
            return damage(.segmentShort, path, from: base, "the segment is empty (\(size) bytes)", position: 0)
        }
        // The first frame must hold the segment's base: a renamed segment does not.
        let first = try file.read(count: BatchHeader.size, at: 0)
        guard let firstHeader = first.withUnsafeBytes({ BatchHeader.parse($0, at: 0) }) else {
            return damage(.badFrame, path, from: base, "no frame header at byte 0", position: 0)
        }
        guard firstHeader.baseOffset == base else {
            return damage(.misplacedFrame, path, from: base, "the first frame holds offsets \(firstHeader.baseOffset)…\(firstHeader.lastOffset), not \(base)", position: 0)
        }
        // From the index's last entry, if a frame holding its offset really starts there.
        var start: Int64 = 0
        var expected = base
        let indexPath = SegmentFiles.indexPath(directory, base)
        if let indexSize = FileSystem.size(indexPath), indexSize >= Int64(SegmentIndex.entrySize),
           let index = try? FileDescriptor(path: indexPath, flags: O_RDONLY) {
            let at = indexSize - indexSize % Int64(SegmentIndex.entrySize) - Int64(SegmentIndex.entrySize)
            let bytes = try index.read(count: SegmentIndex.entrySize, at: at)
            let entry = SegmentIndex.decode(bytes).entries.first
            if let entry, Int64(entry.position) < limit {
                let header = try file.read(count: BatchHeader.size, at: Int64(entry.position))
                if let h = header.withUnsafeBytes({ BatchHeader.parse($0, at: 0) }), h.baseOffset == base + Int64(entry.relativeOffset) {
                    (start, expected) = (Int64(entry.position), h.baseOffset)
                }
            }
        }
        // Structure only (a large frame is not read whole); the last frame's checksum below.
        var misplaced: (Int64, BatchHeader)?
        var lastFrame: (Int64, BatchHeader)?
        let stop = try FrameWalker.walk(file, from: start, limit: limit, verify: false) { at, header in
            guard header.baseOffset == expected else { misplaced = (at, header); return false }
            expected = header.nextOffset
            lastFrame = (at, header)
            return true
        }
        if case .end = stop, let (at, header) = lastFrame, header.length <= 1 << 20 {
            let frame = try file.read(count: header.length, at: at)
            if !frame.withUnsafeBytes({ header.verify($0, at: 0) }) {
                return damage(.badFrame, path, from: header.baseOffset,
                              "checksum mismatch in the frame at byte \(at) (offsets \(header.baseOffset)…\(header.lastOffset))", position: at)
            }
        }
        switch stop {
        case .stopped(let at):
            let h = misplaced.map { "offsets \($0.1.baseOffset)…\($0.1.lastOffset)" } ?? "other offsets"
            return damage(.misplacedFrame, path, from: expected, "the frame at byte \(at) holds \(h), expected \(expected)", position: at)
        case .invalid(let at, let reason):
            let kind: PartitionDamage.Kind = at + Int64(BatchHeader.size) > size || reason.contains("past the end") ? .segmentShort : .badFrame
            return damage(kind, path, from: expected, "\(reason) at byte \(at)", position: at)
        case .end(let position):
            if expected < end, gaps.cover(from: expected, to: end) { return nil }  // a gap a repair recorded
            if expected < end {
                if limit < size || acknowledged == nil || end != acknowledged {
                    return damage(.segmentShort, path, from: expected,
                                  "the segment ends at offset \(expected) (byte \(position)) but the next one starts at \(end): "
                                  + "\(path) was truncated or the segment \(SegmentFiles.logPath(directory, expected)) is missing", position: position)
                }
                return damage(.segmentShort, path, from: expected, "the segment ends at offset \(expected) (byte \(position))", position: position)
            }
            if expected > end {
                return damage(.misplacedFrame, path, from: end, "the segment holds offsets up to \(expected - 1), past the next segment's base \(end)", position: nil)
            }
            return nil
        }
    }

    /// Brings the partition to a consistent state; the caller holds the file lock.
    ///
    /// Scans forward from the head (or from the start of the segment when it is shorter than
    /// the head says): frames that pass their checksum are kept, a torn tail *beyond the head's
    /// end* is cut off (it was never acknowledged). Anything the head acknowledged that is
    /// missing or damaged is recorded as the partition's damage and thrown, never cut or skipped.
    func recover() throws -> ActiveSegment {
        if let damage = currentDamage() { throw damage.error }
        return try ioErrors {
            try removeLeftovers()
            var segments = try SegmentFiles.list(directory)
            guard let h = try PartitionHead.read(from: headFile) else {
                guard segments.isEmpty else { throw try headMissing(segments).error }
                // A fresh partition: its head is made durable once, so that a lost head is damage.
                try createSegment(0)
                let state = try activeState(base: 0, position: 0, nextOffset: 0, earliest: 0, segments: [0])
                try headFile.sync()
                return state
            }
            func damaged(_ kind: PartitionDamage.Kind, _ file: String, from: Int64, to: Int64?, _ detail: String,
                         readable: PartitionHead?) -> LogError {
                record(PartitionDamage(topic: topic, partition: partition, kind: kind, file: file, from: from, to: to,
                                       acknowledgedEnd: h.nextOffset, detail: detail, readable: readable)).error
            }
            var base: Int64
            var position: Int64
            var expected: Int64
            if segments.contains(h.segmentBase) {
                let size = FileSystem.size(SegmentFiles.logPath(directory, h.segmentBase)) ?? 0
                // Shorter than the head says: scan it whole to find where the damage begins.
                (base, position, expected) = size >= h.position ? (h.segmentBase, h.position, h.nextOffset) : (h.segmentBase, 0, h.segmentBase)
            } else if let first = segments.first, first > h.segmentBase {
                (base, position, expected) = (first, 0, first)  // the head lags behind a roll and retention
            } else if h.position == 0 && h.nextOffset == h.segmentBase && !segments.contains(where: { $0 > h.segmentBase }) {
                // The active segment was empty: nothing acknowledged is lost with it.
                try createSegment(h.segmentBase)
                segments = try SegmentFiles.list(directory)
                (base, position, expected) = (h.segmentBase, 0, h.segmentBase)
            } else {
                let next = segments.first(where: { $0 > h.segmentBase })
                throw damaged(.segmentMissing, SegmentFiles.logPath(directory, h.segmentBase), from: h.segmentBase,
                              to: next.map { min($0, h.nextOffset) } ?? h.nextOffset, "the active segment file is missing", readable: nil)
            }
            let gaps = currentGaps()
            let toScan = segments.filter { $0 >= base }
            for (i, segment) in toScan.enumerated() {
                let path = SegmentFiles.logPath(directory, segment)
                if i > 0 {
                    if segment > expected, gaps.cover(from: expected, to: segment) { expected = segment }  // a recorded gap
                    guard segment == expected else {
                        let previous = PartitionHead(nextOffset: expected, segmentBase: base, position: position, earliest: segments[0])
                        throw damaged(.segmentMissing, SegmentFiles.logPath(directory, expected), from: expected, to: segment,
                                      "the segment file is missing: the previous segment ends at offset \(expected), the next one starts at \(segment)",
                                      readable: previous)
                    }
                    (base, position) = (segment, 0)
                }
                let file = try FileDescriptor(path: path, flags: O_RDWR)
                let size = try file.size()
                var misplaced: BatchHeader?
                let stop = try FrameWalker.walk(file, from: position, limit: size, verify: true) { _, header in
                    guard header.baseOffset == expected else { misplaced = header; return false }
                    expected = header.nextOffset
                    return true
                }
                let readable = { (at: Int64) in PartitionHead(nextOffset: expected, segmentBase: segment, position: at, earliest: segments[0]) }
                switch stop {
                case .end(let end):
                    position = end
                case .stopped(let at):
                    let held = misplaced.map { "offsets \($0.baseOffset)…\($0.lastOffset)" } ?? "other offsets"
                    throw damaged(.misplacedFrame, path, from: expected, to: expected < h.nextOffset ? h.nextOffset : nil,
                                  "the frame at byte \(at) holds \(held), expected \(expected)", readable: readable(at))
                case .invalid(let at, let reason):
                    let isLast = i == toScan.count - 1
                    let followed = try isLast && expected >= h.nextOffset && validFrameFollows(file, at: at, size: size)
                    if expected < h.nextOffset || !isLast || followed {
                        let kind: PartitionDamage.Kind = expected < h.nextOffset && reason != "checksum mismatch" ? .segmentShort : .badFrame
                        throw damaged(kind, path, from: expected, to: expected < h.nextOffset ? h.nextOffset : nil,
                                      "\(reason) at byte \(at)", readable: readable(at))
                    }
                    // A torn tail beyond the head: a write that a crash interrupted, never acknowledged.
                    try file.truncate(to: at)
                    try file.sync()
                    position = at
                }
            }
            if let gap = gaps.gap(covering: expected) {
                // A repair cut up to the gap but stopped before the segment after it was made:
                // appends go on after the gap, never inside it.
                try createSegment(gap.to)
                segments = try SegmentFiles.list(directory)
                (base, position, expected) = (gap.to, 0, gap.to)
            }
            if expected < h.nextOffset {
                let path = SegmentFiles.logPath(directory, base)
                throw damaged(.segmentShort, path, from: expected, to: h.nextOffset,
                              "the segment ends at offset \(expected) (byte \(position))",
                              readable: PartitionHead(nextOffset: expected, segmentBase: base, position: position, earliest: segments[0]))
            }
            for closed in segments where closed < base && !FileSystem.exists(SegmentFiles.indexPath(directory, closed)) {
                let size = FileSystem.size(SegmentFiles.logPath(directory, closed)) ?? 0
                _ = try rebuildIndex(closed, limit: size)
            }
            return try activeState(base: base, position: position, nextOffset: expected, earliest: segments[0], segments: segments)
        }
    }

    /// Opens the active segment at `base` (its index checked) and writes the head for it.
    private func activeState(base: Int64, position: Int64, nextOffset: Int64, earliest: Int64, segments: [Int64]) throws -> ActiveSegment {
        let (indexBytes, lastIndexed) = try checkIndex(base, limit: position)
        // Opened afresh: another process may have rebuilt the index (a new file under its name).
        forgetFiles([SegmentFiles.logPath(directory, base), SegmentFiles.indexPath(directory, base)])
        let state = ActiveSegment(
            base: base,
            indexBytes: indexBytes, lastIndexed: lastIndexed, position: position,
            nextOffset: nextOffset, earliest: earliest)
        try headFile.write(state.head.encoded(), at: 0)
        return state
    }

    /// True when a whole, valid frame follows the bad one at `at`: then the bad one is damage
    /// inside the log rather than a torn tail.
    private func validFrameFollows(_ file: FileDescriptor, at: Int64, size: Int64) throws -> Bool {
        let header = try file.read(count: BatchHeader.size, at: at)
        guard let h = header.withUnsafeBytes({ BatchHeader.parse($0, at: 0) }) else { return false }
        let next = at + Int64(h.length)
        guard next + Int64(BatchHeader.size) <= size else { return false }
        let nextHeader = try file.read(count: BatchHeader.size, at: next)
        guard let n = nextHeader.withUnsafeBytes({ BatchHeader.parse($0, at: 0) }), next + Int64(n.length) <= size else { return false }
        let frame = try file.read(count: n.length, at: next)
        return frame.withUnsafeBytes { n.verify($0, at: 0) }
    }

    /// Keeps the active segment's index if it is consistent with the first `limit` bytes,
    /// rebuilds it otherwise. Returns its size and the last indexed position.
    private func checkIndex(_ base: Int64, limit: Int64) throws -> (Int64, Int64?) {
        let path = SegmentFiles.indexPath(directory, base)
        if FileSystem.exists(path) {
            let index = SegmentIndex.load(path)
            let ordered = zip(index.entries, index.entries.dropFirst()).allSatisfy { $0.relativeOffset < $1.relativeOffset && $0.position < $1.position }
            let inside = index.entries.allSatisfy { Int64($0.position) < limit }
            let whole = (FileSystem.size(path) ?? 0) == Int64(index.entries.count * SegmentIndex.entrySize)
            if ordered && inside && whole && (limit == 0 || !index.entries.isEmpty) {
                return (Int64(index.entries.count * SegmentIndex.entrySize), index.entries.last.map { Int64($0.position) })
            }
        }
        return try rebuildIndex(base, limit: limit)
    }

    /// Writes a segment's index anew from its frames (atomically, so that a reader rebuilding
    /// the index of a closed segment never races another into a torn file).
    func rebuildIndex(_ base: Int64, limit: Int64) throws -> (Int64, Int64?) {
        let file = try FileDescriptor(path: SegmentFiles.logPath(directory, base), flags: O_RDONLY)
        var bytes: [UInt8] = []
        var last: Int64?
        var misplaced: Int64?
        let stop = try FrameWalker.walk(file, from: 0, limit: limit, verify: false) { at, header in
            guard let relative = UInt32(exactly: header.baseOffset - base) else { misplaced = at; return false }
            if let l = last, at - l < SegmentIndex.interval { return true }
            guard let position = UInt32(exactly: at) else { return false }  // no entries past 4 GiB: seeks walk from the last
            bytes += SegmentIndex.encode(.init(relativeOffset: relative, position: position))
            last = at
            return true
        }
        if let misplaced {
            throw corrupt("the frame at byte \(misplaced) holds offsets below the segment's base \(base)", offset: base, file: file.path)
        }
        if case .invalid(let at, let reason) = stop {
            throw corrupt("\(reason) at byte \(at)", offset: nil, file: file.path)
        }
        try FileSystem.writeAtomically(bytes, to: SegmentFiles.indexPath(directory, base))
        forgetFiles([SegmentFiles.indexPath(directory, base)])  // a new file under the name
        return (Int64(bytes.count), last)
    }

    /// Creates an empty segment (and its index) and makes the new names durable.
    func createSegment(_ base: Int64) throws {
        _ = try FileDescriptor(path: SegmentFiles.logPath(directory, base), flags: O_RDWR | O_CREAT)
        _ = try FileDescriptor(path: SegmentFiles.indexPath(directory, base), flags: O_RDWR | O_CREAT | O_TRUNC)
        try FileSystem.syncDirectory(directory)
    }

    /// Removes index files whose segment is gone (retention interrupted by a crash) and temp files.
    private func removeLeftovers() throws {
        for name in try FileSystem.list(directory) {
            if name.hasSuffix(".index") {
                let log = String(name.dropLast(".index".count)) + ".log"
                if !FileSystem.exists("\(directory)/\(log)") { try FileSystem.removeFile("\(directory)/\(name)") }
            } else if name.contains(".tmp-") {
                try FileSystem.removeFile("\(directory)/\(name)")
            }
        }
    }
}
