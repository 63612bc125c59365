#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// A topic whose metadata is loaded; partitions are opened (and recovered) on first use.
///
/// Opening a partition reads its files and may recover it under its file lock: that runs on the
/// executor, outside the Mutex, which guards only the table of partitions. The table holds the
/// open task while it runs, so a partition is opened once however many callers ask at once (two
/// opens of one partition in this process would each recover it and share nothing).
final class OpenTopic: Sendable {
    let metadata: TopicMetadata
    let directory: String
    /// The topic's archive, shared by its partitions (and its manifest cache with them).
    let archive: SegmentArchive?
    let executor: BlockingExecutor
    /// The process's tables of open files and closed segments' indexes (`PartitionLog`).
    let files: LogFiles
    let indexes: ClosedIndexCache
    private let partitions = Mutex<[Int: Slot]>([:])

    private enum Slot {
        case opening(Task<PartitionLog, any Error>)
        case open(PartitionLog)
    }

    /// Partitions opened read-only (`SegmentLog.readOnly`).
    let readOnly: Bool

    init(metadata: TopicMetadata, directory: String, executor: BlockingExecutor, files: LogFiles = .shared,
         indexes: ClosedIndexCache = .shared, readOnly: Bool = false) {
        self.readOnly = readOnly
        self.metadata = metadata
        self.directory = directory
        self.executor = executor
        self.files = files
        self.indexes = indexes
        archive = metadata.config.archive.map { SegmentArchive(root: $0, incarnation: metadata.id) }
    }

    /// The partition, opened (once) if it is not open yet.
    func partition(_ p: Int) async throws -> PartitionLog {
        guard p >= 0 && p < metadata.partitions else { throw LogError.partitionNotFound(metadata.name, p, count: metadata.partitions) }
        let slot = partitions.withLock { slots -> Slot in
            if let known = slots[p] { return known }
            let (name, dir, config, archive, executor) = (metadata.name, "\(directory)/\(p)", metadata.config, archive, executor)
            let (files, indexes, readOnly) = (files, indexes, readOnly)
            let task = Task {
                try await executor.run {
                    try PartitionLog(topic: name, partition: p, directory: dir, config: config, archive: archive, executor: executor,
                                     files: files, indexes: indexes, readOnly: readOnly)
                }
            }
            slots[p] = .opening(task)
            return .opening(task)
        }
        let task: Task<PartitionLog, any Error>
        switch slot {
        case .open(let log): return log
        case .opening(let running): task = running
        }
        do {
            let log = try await task.value
            partitions.withLock { slots in
                if case .opening(let t) = slots[p], t == task { slots[p] = .open(log) }
            }
            return log
        } catch {
            // The next caller tries again.
            partitions.withLock { slots in
                if case .opening(let t) = slots[p], t == task { slots[p] = nil }
            }
            throw error
        }
    }

    /// Every partition's offsets: from the head file of those open, or, for one not open, from
    /// its head file alone when the head agrees with the files (a read and two stats); otherwise
    /// the partition is opened, which recovers it.
    func offsets() async throws -> [PartitionOffsets] {
        let quick = try await executor.run {
            // Paths relative to the topic's directory: 10,000 partitions are 20,000 lookups.
            let topic = try? FileDescriptor(path: self.directory, flags: O_RDONLY | O_DIRECTORY)
            return try (0..<self.metadata.partitions).map { try self.quickOffsets($0, in: topic) }
        }
        var offsets: [PartitionOffsets] = []
        offsets.reserveCapacity(quick.count)
        for (p, known) in quick.enumerated() {
            if let known { offsets.append(known) } else { offsets.append(try await partition(p).offsets()) }
        }
        return offsets
    }

    /// Offsets without opening the partition; nil when only opening it (or the writer) can say.
    /// Blocking.
    private func quickOffsets(_ p: Int, in topic: FileDescriptor?) throws -> PartitionOffsets? {
        let open = partitions.withLock { slots -> PartitionLog? in
            if case .open(let log) = slots[p] { return log }
            return nil
        }
        if let open { return try open.readHead().map { try open.offsets(head: $0) } }
        guard let topic else { return nil }
        let dir = "\(p)"
        if let file = try? FileDescriptor("\(dir)/\(PartitionHead.fileName)", in: topic, flags: O_RDONLY),
           let head = try? PartitionHead.read(from: file),
           head.earliest == head.segmentBase || topic.size(of: SegmentFiles.logPath(dir, head.earliest)) != nil,
           topic.size(of: SegmentFiles.logPath(dir, head.segmentBase)) == head.position {
            let earliest = try archive?.earliest(topic: metadata.name, partition: p, liveEarliest: head.earliest) ?? head.earliest
            return PartitionOffsets(partition: p, earliest: earliest, end: head.nextOffset)
        }
        return nil
    }
}
