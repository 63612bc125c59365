#if canImport(Glibc)
import Glibc
#endif

extension PartitionLog {
    /// The writer's state, checked against the disk under the file lock: another process may
    /// have appended, rolled or crashed since. Recovers when the disk and the head disagree.
    func reload(_ state: inout ActiveSegment?) throws -> ActiveSegment {
        if let s = state, let head = try ioErrors({ try PartitionHead.read(from: headFile) }), head == s.head,
           try ioErrors({ try s.file.size() }) == s.position {
            return s
        }
        let fresh = try recover()
        state = fresh
        return fresh
    }

    /// Brings the partition to a consistent state; the caller holds the file lock.
    ///
    /// Scans forward from the head (or from the start of the last segment when the head cannot
    /// be trusted): frames that pass their checksum are kept, a torn tail is cut off. A bad
    /// frame followed by a good one is corruption, not a tail, and is reported, never skipped.
    func recover() throws -> ActiveSegment {
        return try ioErrors {
            try removeLeftovers()
            var segments = try SegmentFiles.list(directory)
            let head = try PartitionHead.read(from: headFile)
            if segments.isEmpty {
                let base = head?.nextOffset ?? 0
                try createSegment(base)
                segments = [base]
            }
            var base: Int64
            var position: Int64
            if let h = head, segments.contains(h.segmentBase),
               let size = FileSystem.size(SegmentFiles.logPath(directory, h.segmentBase)), size >= h.position {
                (base, position) = (h.segmentBase, h.position)
            } else if let h = head, segments.contains(h.segmentBase) {
                (base, position) = (h.segmentBase, 0)  // the segment is shorter than the head says
            } else {
                (base, position) = (segments.last!, 0)
            }
            var expected = position == 0 ? base : head!.nextOffset
            let toScan = segments.filter { $0 >= base }
            for (i, segment) in toScan.enumerated() {
                let path = SegmentFiles.logPath(directory, segment)
                if i > 0 {
                    guard segment == expected else {
                        throw corrupt("segment starts at offset \(segment) but the previous one ends at \(expected)", offset: expected, file: path)
                    }
                    (base, position) = (segment, 0)
                }
                let file = try FileDescriptor(path: path, flags: O_RDWR)
                let size = try file.size()
                let stop = try FrameWalker.walk(file, from: position, limit: size, verify: true) { at, header in
                    guard header.baseOffset == expected else {
                        throw corrupt("frame at byte \(at) starts at offset \(header.baseOffset), expected \(expected)", offset: expected, file: path)
                    }
                    expected = header.nextOffset
                    return true
                }
                switch stop {
                case .end(let end):
                    position = end
                case .stopped:
                    preconditionFailure("the scan never stops early")
                case .invalid(let at, let reason):
                    let isLast = i == toScan.count - 1
                    if try !isLast || validFrameFollows(file, at: at, size: size) {
                        throw corrupt("\(reason) at byte \(at)", offset: expected, file: path)
                    }
                    // A torn tail: a write that a crash interrupted, never acknowledged.
                    try file.truncate(to: at)
                    try file.sync()
                    position = at
                }
            }
            let (indexBytes, lastIndexed) = try checkIndex(base, limit: position)
            for closed in segments where closed < base && !FileSystem.exists(SegmentFiles.indexPath(directory, closed)) {
                let size = FileSystem.size(SegmentFiles.logPath(directory, closed)) ?? 0
                _ = try rebuildIndex(closed, limit: size)
            }
            let state = ActiveSegment(
                base: base,
                file: try FileDescriptor(path: SegmentFiles.logPath(directory, base), flags: O_RDWR),
                index: try FileDescriptor(path: SegmentFiles.indexPath(directory, base), flags: O_RDWR | O_CREAT),
                indexBytes: indexBytes, lastIndexed: lastIndexed, position: position,
                nextOffset: expected, earliest: segments.first!)
            try headFile.write(state.head.encoded(), at: 0)
            return state
        }
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
        let stop = try FrameWalker.walk(file, from: 0, limit: limit, verify: false) { at, header in
            if last == nil || at - last! >= SegmentIndex.interval {
                bytes += SegmentIndex.encode(.init(relativeOffset: UInt32(header.baseOffset - base), position: UInt32(at)))
                last = at
            }
            return true
        }
        if case .invalid(let at, let reason) = stop {
            throw corrupt("\(reason) at byte \(at)", offset: nil, file: file.path)
        }
        try FileSystem.writeAtomically(bytes, to: SegmentFiles.indexPath(directory, base))
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
