#if canImport(Glibc)
import Glibc
#endif

/// Mirrors a topic of a log that keeps no archive itself (Kafka) into a `SegmentArchive` (a
/// directory or an object store), in the embedded log's frame format, exactly once across
/// restarts: the archive's manifest is the mirror's position (each partition continues at its
/// last file's end), and a file is recorded in it only once whole, so a mirror killed at any
/// instant neither skips nor doubles a record.
public struct LogMirror: Sendable {
    public var log: any UnifiedLog
    public var archive: SegmentArchive
    public var topic: String
    /// About this many bytes of records per archived file.
    public var fileBytes = 8 << 20

    public init(log: any UnifiedLog, archive: SegmentArchive, topic: String) {
        self.log = log
        self.archive = archive
        self.topic = topic
    }

    /// Copies every record the log holds beyond the archive's position, up to the end offsets
    /// seen at the start. Returns how many records were archived.
    /// - Parameter epoch: the mirror lease's epoch (`JobHost --mirror`), written into each
    ///   partition's manifest before anything is copied; a mirror fenced off by a higher one
    ///   fails with an error saying so and writes nothing more. Nil: no lease (`kappactl archive
    ///   run`).
    public func runOnce(epoch: Int64? = nil) async throws -> Int {
        // One mirror per topic at a time: two would each extend the manifest from the same end.
        // (In a directory, a lock file too; either way a manifest is only ever replaced by a
        // writer that read the version it replaces.)
        let topic = self.topic
        guard let root = archive.root else { return try await mirrorAll(epoch: epoch) }
        let lockPath = "\(root)/\(topic)/.mirror.lock"
        let lock = try await BlockingExecutor.shared.run {
            do {
                try FileSystem.makeDirectories("\(root)/\(topic)")
                let lock = try FileDescriptor(path: lockPath, flags: O_RDWR | O_CREAT)
                guard try lock.tryLockExclusive() else {
                    throw LogError(.invalidArgument, "another mirror of topic \"\(topic)\" is running (\(lockPath) is locked)", topic: topic, file: lockPath)
                }
                return lock
            } catch let error as IOError {
                throw LogError.io(error, topic: topic)
            }
        }
        defer { lock.unlock() }
        return try await mirrorAll(epoch: epoch)
    }

    /// Every partition in turn. One whose archive is damaged or refused (`LogError.corrupt`)
    /// does not keep the others from being mirrored before their records age out: its error is
    /// thrown after the rest were tried. Anything else (the store or the brokers unreachable, a
    /// fenced-off mirror) stops the pass at once: it is every partition's.
    private func mirrorAll(epoch: Int64?) async throws -> Int {
        var archived = 0
        var failure: LogError?
        for live in try await log.offsets(topic: topic) {
            do {
                archived += try await mirror(partition: live.partition, live: live, epoch: epoch)
            } catch let error as LogError where error.code == .corrupt {
                failure = failure ?? error
            }
        }
        if let failure { throw failure }
        return archived
    }

    private func mirror(partition p: Int, live: PartitionOffsets, epoch: Int64?) async throws -> Int {
        // Where the archive ends; below the live log's earliest, retention was first: a gap that
        // `kappactl archive status` shows.
        let (archive, topic) = (self.archive, self.topic)
        let executor = BlockingExecutor.shared
        try await executor.run { try archive.checkNotBeyond(topic: topic, partition: p, liveEnd: live.end) }
        if let epoch { try await executor.run { try archive.claim(topic: topic, partition: p, epoch: epoch) } }
        let archivedEnd = try await executor.run { try archive.entries(topic: topic, partition: p).last?.end }
        var position = max(archivedEnd ?? live.earliest, live.earliest)
        var archived = 0
        var pending: [ProducerRecord] = []
        var base = position, size = 0
        func flush() async throws {
            guard !pending.isEmpty else { return }
            var frames: [UInt8] = []
            _ = RecordBatchCodec.encode(pending[...], baseOffset: base, now: 0, into: &frames)
            let (bytes, start, end) = (frames, base, base + Int64(pending.count))
            try await executor.run { try archive.store(topic: topic, partition: p, bytes: bytes, base: start, end: end, epoch: epoch) }
            archived += pending.count
            pending.removeAll(keepingCapacity: true)
            size = 0
        }
        var empty = 0
        while position < live.end {
            let records = try await log.read(topic: topic, partition: p, from: position, maxRecords: 10_000, maxBytes: 4 << 20)
            if records.isEmpty {
                empty += 1
                if empty >= 20 { break }  // a remote log that does not deliver: the next run goes on from here
                continue
            }
            empty = 0
            for r in records {
                if r.offset != base + Int64(pending.count) {  // offsets the log skipped (compaction, markers)
                    try await flush()
                    base = r.offset
                }
                let record = ProducerRecord(key: r.key.map(Array.init), value: r.value.map(Array.init), headers: r.headers, timestamp: r.timestamp)
                size += RecordBatchCodec.bodyBytes(record) + BatchHeader.recordOverhead2
                pending.append(record)
                if size >= fileBytes {
                    try await flush()
                    base = r.offset + 1
                }
            }
            position = records.nextOffset
        }
        try await flush()
        return archived
    }
}
