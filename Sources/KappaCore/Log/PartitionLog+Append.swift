#if canImport(Glibc)
import Glibc
#endif

extension PartitionLog {
    /// Appends `records` durably (those without a timestamp get `now`) and returns where they went.
    ///
    /// Group commit: requests queue up while the writer is busy; the writer takes every waiting
    /// request, writes them with one `pwrite`, one `fdatasync`, one head update, then resumes
    /// them all. The file lock is held for that one group, so another process may append in
    /// between.
    func append(_ records: [ProducerRecord], now: Int64) async throws -> AppendResult {
        try await withCheckedThrowingContinuation { continuation in
            let start = pending.withLock { p -> Bool in
                p.requests.append(.init(records: records, now: now, continuation: continuation))
                if p.draining { return false }
                p.draining = true
                return true
            }
            if start { writer.submit { self.drain() } }
        }
    }

    /// Runs on the `writer` lane until no request waits.
    private func drain() {
        while true {
            let group = pending.withLock { p -> [PendingAppends.Request] in
                let taken = p.requests
                p.requests = []
                if taken.isEmpty { p.draining = false }
                return taken
            }
            if group.isEmpty { return }
            do {
                let results = try withFileLock {
                    try withWriterState { state in try write(group.map { ($0.records, $0.now) }, &state) }
                }
                for (request, result) in zip(group, results) { request.continuation.resume(returning: result) }
            } catch {
                active.withLock { $0 = nil }  // the disk decides again next time
                for request in group { request.continuation.resume(throwing: error) }
            }
        }
    }

    /// Writes a group of appends; the caller holds the file lock.
    /// - Throws: the damage's error when acknowledged records are missing or damaged (`reload`):
    ///   an offset is never handed out twice.
    private func write(_ groups: [(records: [ProducerRecord], now: Int64)], _ state: inout ActiveSegment?) throws -> [AppendResult] {
        var s = try reload(&state)
        var buffer: [UInt8] = []
        var bufferStart = s.position
        var indexBytes: [UInt8] = []
        var results: [AppendResult] = []
        var rolled = false

        func flush() throws {
            guard !buffer.isEmpty else { return }
            try ioErrors {
                let file = try segmentFile(writing: s)
                try file.write(buffer, at: bufferStart)
                try file.sync()
                if !indexBytes.isEmpty {
                    try indexFile(writing: s).write(indexBytes, at: s.indexBytes)
                    s.indexBytes += Int64(indexBytes.count)
                }
            }
            s.position = bufferStart + Int64(buffer.count)
            bufferStart = s.position
            buffer.removeAll(keepingCapacity: true)
            indexBytes.removeAll()
        }

        for (records, now) in groups {
            let size = RecordBatchCodec.encodedBytes(records)
            let end = bufferStart + Int64(buffer.count)
            if end > 0 && end + Int64(size) > config.segmentBytes {
                try flush()
                try ioErrors { try createSegment(s.nextOffset) }
                s = ActiveSegment(
                    base: s.nextOffset,
                    indexBytes: 0, lastIndexed: nil, position: 0, nextOffset: s.nextOffset, earliest: s.earliest)
                bufferStart = 0
                rolled = true
            }
            let frames = RecordBatchCodec.encode(records[...], baseOffset: s.nextOffset, now: now, into: &buffer)
            for frame in frames {
                let at = bufferStart + Int64(frame.position)
                if let last = s.lastIndexed, at - last < SegmentIndex.interval { continue }
                // Segments stay far below 4 GiB; past it, seeks walk from the last entry.
                guard let relative = UInt32(exactly: frame.header.baseOffset - s.base), let position = UInt32(exactly: at) else { continue }
                indexBytes += SegmentIndex.encode(.init(relativeOffset: relative, position: position))
                s.lastIndexed = at
            }
            results.append(AppendResult(partition: partition, baseOffset: s.nextOffset, count: records.count))
            s.nextOffset += Int64(records.count)
        }
        try flush()
        if rolled { try applyRetention(&s, now: currentTimeMillis()) }
        state = s
        try ioErrors { try headFile.write(s.head.encoded(), at: 0) }
        return results
    }
}

/// Milliseconds since the epoch.
public func currentTimeMillis() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}
