#if canImport(Glibc)
import Glibc
#endif

extension PartitionLog {
    /// Reads from `offset` up to the head, without taking the lock, on the executor (preads and
    /// checksums block). See `UnifiedLog.read`.
    func read(from offset: Int64, maxRecords: Int, maxBytes: Int) async throws -> LogRecords {
        let read = { @Sendable (head: PartitionHead) throws -> LogRecords in
            try self.read(from: offset, maxRecords: maxRecords, maxBytes: maxBytes, head: head)
        }
        if let records = try await executor.run({ try self.readableHead().map(read) }) { return records }
        let head = try await rebuildHead()
        return try await executor.run { try read(head) }
    }

    /// Reads from `offset` up to `head` (below known damage, up to where the damage begins).
    /// Blocking.
    /// - Throws: the damage's error for an offset in the damaged range; `.corrupt` for damage
    ///   met while reading (recorded: appends are refused from then on).
    ///   `.gap` for an offset in a recorded gap.
    func read(from offset: Int64, maxRecords: Int, maxBytes: Int, head: PartitionHead) throws -> LogRecords {
        if currentDamage() != nil { try noticeRepair() }
        do {
            return try readChecked(from: offset, maxRecords: maxRecords, maxBytes: maxBytes, head: head)
        } catch let error as LogError where error.code == .corrupt {
            // Another process may have repaired the partition since this one looked (its files
            // changed under what this one kept): then read again, once, as it is now.
            guard try noticeRepair() else { throw error }
            let head = try readableHead() ?? head
            return try readChecked(from: offset, maxRecords: maxRecords, maxBytes: maxBytes, head: head)
        }
    }

    private func readChecked(from offset: Int64, maxRecords: Int, maxBytes: Int, head: PartitionHead) throws -> LogRecords {
        if let gap = currentGaps().gap(covering: offset), offset < head.nextOffset { throw gapError(gap, offset: offset) }
        var head = head
        if let damage = currentDamage() {
            if damage.covers(offset) { throw damage.error }
            if offset < damage.from, let readable = damage.readable, readable.nextOffset <= head.nextOffset { head = readable }
        }
        do {
            return try readUnchecked(from: offset, maxRecords: maxRecords, maxBytes: maxBytes, head: head)
        } catch let error as LogError where error.code == .corrupt {
            recordReadDamage(error)
            throw error
        }
    }

    private func readUnchecked(from offset: Int64, maxRecords: Int, maxBytes: Int, head: PartitionHead) throws -> LogRecords {
        guard offset <= head.nextOffset else {
            throw LogError(.offsetBeyondEnd,
                           "topic \"\(topic)\" partition \(partition): offset \(offset) is beyond the end offset \(head.nextOffset)",
                           topic: topic, partition: partition, offset: offset)
        }
        if offset == head.nextOffset || maxRecords <= 0 { return .empty(partition: partition, nextOffset: offset) }
        if offset < head.earliest, let archive,
           let archived = try archive.read(topic: topic, partition: partition, from: offset, maxRecords: maxRecords, maxBytes: maxBytes) {
            return archived
        }
        var (base, position, file) = try locate(offset, head: head)
        while true {
            let end = base == head.segmentBase ? head.position : try ioErrors { try file.size() }
            if position >= end {
                // The end of a closed segment: the offset is the next segment's base.
                (base, position, file) = try locate(offset, head: head, after: base)
                continue
            }
            return try readFrames(file, base: base, at: position, end: end, from: offset, maxRecords: maxRecords, maxBytes: maxBytes)
        }
    }

    private func readFrames(_ file: FileDescriptor, base: Int64, at position: Int64, end: Int64, from offset: Int64,
                            maxRecords: Int, maxBytes: Int) throws -> LogRecords {
        guard end > position else { throw corrupt("no frame at byte \(position)", offset: offset, file: file.path) }
        var want = Int(clamping: min(end - position, Int64(max(maxBytes, 64 << 10))))
        var buffer = try ioErrors { try file.read(count: want, at: position) }
        if let first = buffer.withUnsafeBytes({ BatchHeader.parse($0, at: 0) }), first.length > buffer.count,
           position + Int64(first.length) <= end {
            want = first.length  // one frame larger than asked for: read it whole
            buffer = try ioErrors { try file.read(count: want, at: position) }
        }
        // The file is shorter than the head says (truncated under us): what is there still reads.
        let short = buffer.count < want
        let end = short ? position + Int64(buffer.count) : end
        var entries: [LogRecords.Entry] = []
        // No more than the bytes read can hold: a worker waiting to commit keeps these.
        entries.reserveCapacity(min(maxRecords, 16_384, buffer.count / BatchHeader.recordOverhead + 1))
        var at = 0
        var resume = position  // where the frame holding the next offset starts
        var damage: LogError?
        buffer.withUnsafeBytes { buf in
            while at < buf.count, entries.count < maxRecords {
                let expected = entries.last.map { $0.offset + 1 } ?? offset
                let byte = position + Int64(at)
                guard let header = BatchHeader.parse(buf, at: at) else {
                    if buf.count - at < BatchHeader.size, position + Int64(buf.count) < end { break }
                    damage = corrupt("no frame header at byte \(byte)", offset: expected, file: file.path)
                    break
                }
                if at + header.length > buf.count {
                    if position + Int64(at) + Int64(header.length) > end {
                        damage = corrupt("frame at byte \(byte) runs past the end of the segment"
                                         + (short ? " (the file ends at byte \(end))" : ""), offset: expected, file: file.path)
                    }
                    break  // the rest of this frame is beyond the buffer: the next call reads it
                }
                guard header.verify(buf, at: at) else {
                    damage = corrupt("checksum mismatch in the frame at byte \(byte) (offsets \(header.baseOffset)…\(header.lastOffset))",
                                     offset: max(header.baseOffset, expected), file: file.path)
                    break
                }
                guard header.baseOffset <= expected, header.nextOffset > expected else {
                    damage = corrupt("frame at byte \(byte) holds offsets \(header.baseOffset)…\(header.lastOffset), expected \(expected)",
                                     offset: expected, file: file.path)
                    break
                }
                let before = entries.count
                guard RecordBatchCodec.decode(buf, at: at, header: header, fromOffset: expected, limit: maxRecords, into: &entries) else {
                    entries.removeLast(entries.count - before)
                    damage = corrupt("record lengths overrun the frame at byte \(byte)", offset: expected, file: file.path)
                    break
                }
                resume = byte
                at += header.length
                if entries.last.map({ $0.offset + 1 }) == header.nextOffset { resume = position + Int64(at) }
            }
        }
        // Records before the damage are returned; the next read, starting at it, throws.
        if let damage, entries.isEmpty { throw damage }
        if entries.isEmpty && short {
            throw corrupt("the segment ends at byte \(end), before the acknowledged data", offset: offset, file: file.path)
        }
        let next = entries.last.map { $0.offset + 1 } ?? offset
        cache.withLock { $0.remember(next, .init(base: base, position: resume)) }
        return LogRecords(partition: partition, storage: buffer, entries: entries, nextOffset: next)
    }

    /// Finds the segment and the frame position holding `offset`: from a hint left by the
    /// previous read, else the segment list and its sparse index.
    private func locate(_ offset: Int64, head: PartitionHead, after previous: Int64? = nil) throws -> (Int64, Int64, FileDescriptor) {
        if previous == nil, let hint = cache.withLock({ $0.hints[offset] }), let file = try? segmentFile(hint.base) {
            return (hint.base, hint.position, file)
        }
        var segments = cache.withLock { $0.segments }
        if segments.isEmpty || offset < segments[0] || (segments.last ?? -1) < head.segmentBase || (previous.map { p in !segments.contains { $0 > p } } ?? false) {
            let known = segments.first
            segments = try ioErrors { try SegmentFiles.list(directory) }
            let listed = segments
            cache.withLock { $0.segments = listed }
            // Only when segments went away (the tables are shared by every partition).
            if let first = listed.first, let known, known < first { dropSegments(below: first) }
        }
        guard let first = segments.first, offset >= first else {
            let earliest = segments.first ?? head.earliest
            throw LogError(.offsetBelowEarliest,
                           "topic \"\(topic)\" partition \(partition): offset \(offset) is no longer retained; the earliest offset available is \(earliest)",
                           topic: topic, partition: partition, offset: offset)
        }
        let candidates = previous.map { p in segments.filter { $0 > p } } ?? segments
        guard let base = candidates.last(where: { $0 <= offset }) ?? (previous != nil ? candidates.first : nil) else {
            let after = previous.map { " after the segment \(SegmentFiles.logPath(directory, $0))" } ?? ""
            throw corrupt("no segment holds the offset\(after)", offset: offset, file: SegmentFiles.logPath(directory, offset))
        }
        guard base <= offset else {
            // The previous segment ends at `offset` but the next one starts later.
            throw corrupt("no segment holds offsets \(offset)…\(base - 1) (the next segment starts at \(base)): the segment file is missing",
                          offset: offset, file: SegmentFiles.logPath(directory, offset))
        }
        let file = try segmentFile(base)
        let end = base == head.segmentBase ? head.position : try ioErrors { try file.size() }
        let index = base == head.segmentBase
            ? SegmentIndex.load(SegmentFiles.indexPath(directory, base))
            : try indexes.index(owner: owner, base: base) ?? closedIndex(base, size: end)
        var start: Int64 = 0
        if let relative = UInt32(exactly: offset - base), let entry = index.floor(relative, below: end) {
            // Trust the entry only if a frame holding its offset really starts there.
            let bytes = try ioErrors { try file.read(count: BatchHeader.size, at: Int64(entry.position)) }
            if let h = bytes.withUnsafeBytes({ BatchHeader.parse($0, at: 0) }), h.baseOffset == base + Int64(entry.relativeOffset) {
                start = Int64(entry.position)
            }
        }
        var found: Int64?
        let stop = try ioErrors {
            try FrameWalker.walk(file, from: start, limit: end, verify: false, chunk: 64 << 10) { at, header in
                if header.nextOffset > offset { found = at; return false }
                return true
            }
        }
        if let found { return (base, found, file) }
        if case .invalid(let at, let reason) = stop {
            throw corrupt("\(reason) at byte \(at)", offset: offset, file: file.path)
        }
        return (base, end, file)  // at the end of a closed segment: the caller moves on
    }

    /// A closed segment's index, rebuilt when its file is missing (closed segments never change,
    /// so any process may rebuild it).
    private func closedIndex(_ base: Int64, size: Int64) throws -> SegmentIndex {
        let path = SegmentFiles.indexPath(directory, base)
        if !FileSystem.exists(path) { _ = try ioErrors { try rebuildIndex(base, limit: size) } }
        let loaded = SegmentIndex.load(path)
        indexes.keep(loaded, owner: owner, base: base)
        return loaded
    }

    /// An open descriptor for a segment, kept for later reads (in the process's `LogFiles`).
    private func segmentFile(_ base: Int64) throws -> FileDescriptor {
        let path = SegmentFiles.logPath(directory, base)
        let file: FileDescriptor
        do {
            file = try files.file(path, flags: O_RDONLY, owner: owner)
        } catch let error as IOError where error.code == ENOENT {
            cache.withLock { $0.segments = [] }  // list again next time
            let earliest = (try? SegmentFiles.list(directory).first) ?? nil
            if let earliest, earliest < base {
                // Older segments are still there: this one was not removed by retention.
                throw corrupt("the segment file is missing", offset: base, file: path)
            }
            throw LogError(.offsetBelowEarliest,
                           "topic \"\(topic)\" partition \(partition): segment \(SegmentFiles.name(base)) was deleted by retention; the earliest offset available is \(earliest.map(String.init) ?? "unknown")",
                           topic: topic, partition: partition, offset: base)
        } catch let error as IOError {
            throw LogError.io(error, topic: topic, partition: partition)
        }
        return file
    }
}
