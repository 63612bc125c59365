#if canImport(Glibc)
import Glibc
#endif

extension PartitionLog {
    /// Deletes the oldest closed segments that retention no longer keeps: while the partition
    /// stays at or above `retentionBytes` without them, or while their newest record is older
    /// than `retentionMs`. The active segment is never deleted. The caller holds the file lock.
    /// - Returns: how many segments were deleted.
    @discardableResult
    func applyRetention(_ s: inout ActiveSegment, now: Int64) throws -> Int {
        guard config.retentionMs != nil || config.retentionBytes != nil else { return 0 }
        return try ioErrors {
            let closed = try SegmentFiles.list(directory).filter { $0 < s.base }
            let sizes = closed.map { FileSystem.size(SegmentFiles.logPath(directory, $0)) ?? 0 }
            var total = sizes.reduce(s.position, +)
            var expired = 0
            for (i, base) in closed.enumerated() {
                var delete = false
                if let limit = config.retentionBytes, total - sizes[i] >= limit { delete = true }
                if !delete, let age = config.retentionMs, let newest = try maxTimestamp(base, size: sizes[i]) {
                    // A timestamp read from the file may be anything: a difference past Int64 is old.
                    let (elapsed, overflow) = now.subtractingReportingOverflow(newest)
                    delete = overflow ? newest < 0 : elapsed > age
                }
                guard delete else { break }
                total -= sizes[i]
                expired += 1
            }
            guard expired > 0 else { return 0 }
            // Oldest first, so that at every instant the remaining segments are contiguous; with
            // an archive, each is copied there (and recorded) before it is deleted.
            try archiveSegments(closed, first: expired, activeBase: s.base)
            for base in closed.prefix(expired) {
                try FileSystem.removeFile(SegmentFiles.logPath(directory, base))
                try FileSystem.removeFile(SegmentFiles.indexPath(directory, base))
            }
            try FileSystem.syncDirectory(directory)
            s.earliest = expired < closed.count ? closed[expired] : s.base
            dropSegments(below: s.earliest)
            return expired
        }
    }

    /// Applies retention now (JobHost does this periodically; appends do it when a segment fills).
    /// A damaged partition is left alone (its segments may be all an operator has to repair it).
    func enforceRetention(now: Int64) async throws -> Int {
        if currentDamage() != nil { return 0 }
        return try await onWriter { state -> Int in
            var s = try self.reload(&state)
            let deleted = try self.applyRetention(&s, now: now)
            state = s
            if deleted > 0 { try self.ioErrors { try self.headFile.write(s.head.encoded(), at: 0) } }
            return deleted
        }
    }

    /// Copies every closed segment not yet archived to the archive (under the partition's lock,
    /// so that retention elsewhere cannot delete one mid-copy). Returns how many were copied.
    func archiveClosedSegments() async throws -> Int {
        guard archive != nil, currentDamage() == nil else { return 0 }
        return try await onWriter { state -> Int in
            let s = try self.reload(&state)
            state = s
            return try self.ioErrors {
                let closed = try SegmentFiles.list(self.directory).filter { $0 < s.base }
                return try self.archiveSegments(closed, first: closed.count, activeBase: s.base)
            }
        }
    }

    /// Copies the `first` oldest of the closed segments `closed` (each ends where the next
    /// begins, the last where the active one does) to the archive, those not there yet.
    /// Returns how many were copied. The caller holds the file lock.
    @discardableResult
    func archiveSegments(_ closed: [Int64], first: Int, activeBase: Int64) throws -> Int {
        guard let archive else { return 0 }
        var copied = 0
        for (i, base) in closed.prefix(first).enumerated() {
            let end = i + 1 < closed.count ? closed[i + 1] : activeBase
            if try archive.store(topic: topic, partition: partition, segment: SegmentFiles.logPath(directory, base), base: base, end: end) { copied += 1 }
        }
        return copied
    }

    /// The newest timestamp in a closed segment (closed segments never change, so it is cached).
    private func maxTimestamp(_ base: Int64, size: Int64) throws -> Int64? {
        if let known = cache.withLock({ $0.maxTimestamps[base] }) { return known }
        let file = try FileDescriptor(path: SegmentFiles.logPath(directory, base), flags: O_RDONLY)
        var newest: Int64?
        _ = try FrameWalker.walk(file, from: 0, limit: size, verify: false) { _, header in
            newest = max(newest ?? .min, header.maxTimestamp)
            return true
        }
        if let newest { cache.withLock { $0.maxTimestamps[base] = newest } }
        return newest
    }
}
