#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// One partition of a `SegmentLog` topic: a directory of segment files, their sparse indexes,
/// the head (`PartitionHead`) and a lock file.
///
/// Ownership: appends are queued (`pending`) and written by the partition's `writer`, a serial
/// lane of the blocking executor, which alone uses `active` (taken out of its Mutex for the time
/// of a write, so the Mutex is never held during I/O); across processes, the `lock` file's flock
/// is held per written group. Readers touch only `cache` and read without the lock, up to the
/// head, on the executor. Every method here that blocks is synchronous and runs on the executor;
/// the async ones are the entry points that put it there.
///
/// Opened (and recovered, under the flock) by `OpenTopic`, on the executor, once per partition.
final class PartitionLog: Sendable {
    let topic: String
    let partition: Int
    let directory: String
    let config: TopicConfig
    /// Where closed segments go before retention deletes them, if the topic has an archive.
    let archive: SegmentArchive?

    let headFile: FileDescriptor
    let lockFile: FileDescriptor
    /// Runs the blocking reads (and this partition's writer lane).
    let executor: BlockingExecutor
    /// The partition's writer: group commits, retention, archiving and head rebuilds, one at a time.
    let writer: BlockingExecutor.Lane
    let pending = Mutex(PendingAppends())
    /// The writer's view of the active segment; only the `writer` lane uses it (`withWriterState`).
    let active = Mutex<ActiveSegment?>(nil)
    let cache = Mutex(ReadCache())
    /// Damage to acknowledged records, found at open or by a reader (the lowest offset wins);
    /// while set, appends (and retention) are refused and reads in its range throw its error.
    let damage = Mutex<PartitionDamage?>(nil)

    /// Opens the partition, recovering it under the file lock when the head and the files disagree.
    /// Blocking: call it on the executor.
    init(topic: String, partition: Int, directory: String, config: TopicConfig, archive: SegmentArchive? = nil,
         executor: BlockingExecutor = .shared) throws {
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
        self.executor = executor
        writer = executor.lane("kappa.log.\(topic).\(partition)")
        // Damage is recorded, not thrown: the partition opens, reads below the damage work.
        let recovered = try withFileLock { () throws -> ActiveSegment? in
            if try checkAcknowledged() != nil { return nil }
            guard try needsRecovery() else { return nil }
            do {
                return try recover()
            } catch let error as LogError where error.code == .corrupt {
                recordReadDamage(error)
                if currentDamage() == nil { throw error }
                return nil
            }
        }
        active.withLock { $0 = recovered }
    }

    /// The damage known to this process, if any.
    func currentDamage() -> PartitionDamage? {
        damage.withLock { $0 }
    }

    /// Records `found` unless damage at a lower offset is known already; returns it.
    @discardableResult
    func record(_ found: PartitionDamage) -> PartitionDamage {
        damage.withLock { known in
            if let k = known, k.from <= found.from { return k }
            known = found
            return found
        }
    }

    /// Records the damage a reader met (a `.corrupt` error naming a file of this partition).
    func recordReadDamage(_ error: LogError) {
        guard error.code == .corrupt, let offset = error.offset, let file = error.file, file.hasPrefix(directory + "/") else { return }
        if let known = currentDamage(), known.covers(offset) { return }
        // Confined to its segment: offsets from the next segment on still read.
        let next = (try? SegmentFiles.list(directory))?.first { $0 > offset }
        let place = "topic \"\(topic)\" partition \(partition): "
        let detail = error.message.hasPrefix(place) ? String(error.message.dropFirst(place.count)) : error.message
        record(PartitionDamage(topic: topic, partition: partition, kind: .badFrame, file: file, from: offset, to: next,
                               acknowledgedEnd: nil, detail: detail, readable: nil))
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

    /// Runs `body` with the writer's state taken out of `active` and puts it back after, so that
    /// no Mutex is held while `body` does I/O. Only on the `writer` lane (one at a time).
    func withWriterState<T>(_ body: (inout ActiveSegment?) throws -> T) rethrows -> T {
        var state = active.withLock { s -> ActiveSegment? in
            defer { s = nil }
            return s
        }
        defer { active.withLock { [state] in $0 = state } }
        return try body(&state)
    }

    /// The head file, as readers see it; nil when it cannot be read. Blocking.
    func readHead() throws -> PartitionHead? {
        try ioErrors { try PartitionHead.read(from: headFile) }
    }

    /// The head file, or, when it is lost, the end of what the files hold (see `PartitionDamage`).
    func readableHead() throws -> PartitionHead? {
        try readHead() ?? currentDamage()?.readable
    }

    /// The current head, as readers see it.
    func head() async throws -> PartitionHead {
        if let head = try await executor.run({ try self.readableHead() }) { return head }
        return try await rebuildHead()
    }

    /// A head that cannot be read (first open, or a damaged file): rebuilt under the lock, by the
    /// writer (never waited for synchronously: a reader on the executor waiting for the writer
    /// lane, queued on the same executor, could wait forever).
    func rebuildHead() async throws -> PartitionHead {
        try await onWriter { try self.reload(&$0).head }
    }

    /// Runs `body` on the writer lane, holding the file lock, with the writer's state; after an
    /// error the state is dropped (the disk decides again next time).
    func onWriter<T: Sendable>(_ body: @escaping @Sendable (inout ActiveSegment?) throws -> T) async throws -> T {
        try await writer.run {
            do {
                return try self.withFileLock { try self.withWriterState(body) }
            } catch {
                self.active.withLock { $0 = nil }
                throw error
            }
        }
    }

    /// Offsets without reading records; with an archive, the earliest offset readable from the
    /// archive and the live log together. Blocking (the archive's manifest).
    func offsets(head h: PartitionHead) throws -> PartitionOffsets {
        let earliest = try archive?.earliest(topic: topic, partition: partition, liveEarliest: h.earliest) ?? h.earliest
        return PartitionOffsets(partition: partition, earliest: earliest, end: h.nextOffset)
    }

    func offsets() async throws -> PartitionOffsets {
        if let offsets = try await executor.run({ try self.readableHead().map { try self.offsets(head: $0) } }) { return offsets }
        let head = try await rebuildHead()
        return try await executor.run { try self.offsets(head: head) }
    }
}

/// Appends waiting for the writer lane.
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
