#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Synchronization

/// One partition of a `SegmentLog` topic: a directory of segment files, their sparse indexes,
/// the head (`PartitionHead`) and a lock file.
///
/// Ownership: appends are queued (`pending`) and written by one serial dispatch queue, which
/// alone touches `active`; across processes, the `lock` file's flock is held per written group.
/// Readers touch only `cache` and read without the lock, up to the head.
final class PartitionLog: Sendable {
    let topic: String
    let partition: Int
    let directory: String
    let config: TopicConfig
    /// Where closed segments go before retention deletes them, if the topic has an archive.
    let archive: SegmentArchive?

    let headFile: FileDescriptor
    let lockFile: FileDescriptor
    let queue: DispatchQueue
    let pending = Mutex(PendingAppends())
    /// The writer's view of the active segment; only the serial `queue` touches it.
    let active = Mutex<ActiveSegment?>(nil)
    let cache = Mutex(ReadCache())

    init(topic: String, partition: Int, directory: String, config: TopicConfig, archive: SegmentArchive? = nil) throws {
        self.topic = topic
        self.partition = partition
        self.directory = directory
        self.config = config
        self.archive = archive
        do {
            headFile = try FileDescriptor(path: "\(directory)/\(PartitionHead.fileName)", flags: O_RDWR | O_CREAT)
            lockFile = try FileDescriptor(path: "\(directory)/lock", flags: O_RDWR | O_CREAT)
        } catch let error as IOError {
            throw LogError.io(error, topic: topic, partition: partition)
        }
        queue = DispatchQueue(label: "kappa.log.\(topic).\(partition)")
        if try needsRecovery() {
            try withFileLock { try active.withLock { $0 = try recover() } }
        }
    }

    /// Cheap check at open: does the head agree with the last segment's size?
    private func needsRecovery() throws -> Bool {
        guard let head = try PartitionHead.read(from: headFile) else { return true }
        let segments = try SegmentFiles.list(directory)
        guard let last = segments.last, last == head.segmentBase, segments.first == head.earliest,
              FileSystem.exists(SegmentFiles.indexPath(directory, last)) else { return true }
        return FileSystem.size(SegmentFiles.logPath(directory, last)) != head.position
    }

    /// Runs `body` holding the partition's cross-process lock.
    func withFileLock<T>(_ body: () throws -> T) throws -> T {
        try ioErrors { try lockFile.lockExclusive() }
        defer { lockFile.unlock() }
        return try body()
    }

    /// Maps a system call failure to a `LogError` naming this partition.
    func ioErrors<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as IOError {
            throw LogError.io(error, topic: topic, partition: partition)
        }
    }

    func corrupt(_ what: String, offset: Int64?, file: String) -> LogError {
        let at = offset.map { " at offset \($0)" } ?? ""
        return LogError(.corrupt, "topic \"\(topic)\" partition \(partition): \(what)\(at) in \(file)",
                        topic: topic, partition: partition, offset: offset, file: file)
    }

    /// The current head, as readers see it.
    func head() throws -> PartitionHead {
        if let head = try ioErrors({ try PartitionHead.read(from: headFile) }) { return head }
        // A head that cannot be read (first open, or a damaged file): rebuild it under the lock.
        return try queue.sync { try withFileLock { try active.withLock { s in try reload(&s).head } } }
    }

    /// Offsets without reading records; with an archive, the earliest offset readable from the
    /// archive and the live log together.
    func offsets() throws -> PartitionOffsets {
        let h = try head()
        let earliest = try archive?.earliest(topic: topic, partition: partition, liveEarliest: h.earliest) ?? h.earliest
        return PartitionOffsets(partition: partition, earliest: earliest, end: h.nextOffset)
    }
}

/// Appends waiting for the writer queue.
struct PendingAppends {
    struct Request {
        var records: [ProducerRecord]
        /// The timestamp of records without one (the time of the append).
        var now: Int64
        var continuation: CheckedContinuation<AppendResult, any Error>
    }

    var requests: [Request] = []
    var draining = false
}

/// The writer's open active segment and where it ends.
struct ActiveSegment {
    var base: Int64
    var file: FileDescriptor
    var index: FileDescriptor
    var indexBytes: Int64
    var lastIndexed: Int64?
    var position: Int64
    var nextOffset: Int64
    var earliest: Int64

    var head: PartitionHead {
        PartitionHead(nextOffset: nextOffset, segmentBase: base, position: position, earliest: earliest)
    }
}

/// What readers keep between calls: open segment files, closed segments' indexes and timestamps,
/// and where recent reads stopped, so a sequential reader never searches.
struct ReadCache {
    struct Position {
        var base: Int64
        var position: Int64
    }

    var segments: [Int64] = []
    var files: [Int64: FileDescriptor] = [:]
    var fileUse: [Int64] = []
    var closedIndexes: [Int64: SegmentIndex] = [:]
    var maxTimestamps: [Int64: Int64] = [:]
    var hints: [Int64: Position] = [:]
    var hintOrder: [Int64] = []

    static let maxFiles = 8
    static let maxHints = 32

    mutating func remember(_ offset: Int64, _ position: Position) {
        if hints.updateValue(position, forKey: offset) == nil {
            hintOrder.append(offset)
            if hintOrder.count > Self.maxHints { hints[hintOrder.removeFirst()] = nil }
        }
    }

    /// Keeps a segment file open for reuse, closing the least recently used beyond `maxFiles`.
    mutating func keep(_ base: Int64, _ file: FileDescriptor) {
        files[base] = file
        fileUse.removeAll { $0 == base }
        fileUse.append(base)
        if fileUse.count > Self.maxFiles { files[fileUse.removeFirst()] = nil }
    }

    /// Forgets everything about segments that retention removed.
    mutating func dropSegments(below base: Int64) {
        segments.removeAll { $0 < base }
        for b in files.keys where b < base { files[b] = nil }
        fileUse.removeAll { $0 < base }
        for b in closedIndexes.keys where b < base { closedIndexes[b] = nil }
        for b in maxTimestamps.keys where b < base { maxTimestamps[b] = nil }
    }
}
