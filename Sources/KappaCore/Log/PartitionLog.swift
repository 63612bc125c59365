#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// One partition of a `SegmentLog` topic: a directory of segment files, their sparse indexes,
/// the head (`PartitionHead`) and a lock file.
///
/// Descriptors: none is held between calls. Head, lock, segment and index files are opened
/// through the process's `LogFiles` table, which closes the least recently used beyond its
/// budget; a partition whose files were closed opens them again on its next call. The lock file
/// is locked only for the time of one group commit (or recovery, retention, archiving), by a
/// caller that holds its descriptor, so closing an idle partition's lock file releases nothing.
/// Closed segments' indexes are kept in the process's `ClosedIndexCache`, so an idle partition
/// costs a few small values.
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

    /// The process's table of open log files, and this partition's key in it.
    let files: LogFiles
    let owner: UInt64
    let indexes: ClosedIndexCache
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
    /// The recorded gaps (`gaps.json`: offsets a repair gave up as lost). When the file is
    /// damaged no gap is known, so the segments' boundaries show as damage (and `topic check`
    /// names the file).
    let gaps = Mutex(PartitionGaps())
    /// Opened read-only (`SegmentLog.readOnly`): no lock, no recovery, no writes.
    let readOnly: Bool

    /// Opens the partition, recovering it under the file lock when the head and the files disagree.
    /// Blocking: call it on the executor.
    init(topic: String, partition: Int, directory: String, config: TopicConfig, archive: SegmentArchive? = nil,
         executor: BlockingExecutor = .shared, files: LogFiles = .shared, indexes: ClosedIndexCache = .shared, readOnly: Bool = false) throws {
        self.readOnly = readOnly
        self.topic = topic
        self.partition = partition
        self.directory = directory
        self.config = config
        self.archive = archive
        self.files = files
        self.indexes = indexes
        owner = files.newOwner()
        self.executor = executor
        writer = executor.lane("kappa.log.\(topic).\(partition)")
        loadGaps()
        // Read-only: checked, never recovered (nothing beyond the head is read anyway).
        if readOnly {
            _ = try checkAcknowledged()
            return
        }
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

    deinit {
        files.forget(owner: owner)
        indexes.forget(owner: owner)
    }

    /// The head file (opened again if the table closed it). Blocking.
    var headFile: FileDescriptor {
        get throws { try files.file("\(directory)/\(PartitionHead.fileName)", flags: readOnly ? O_RDONLY : O_RDWR | O_CREAT, owner: owner) }
    }

    /// The lock file; hold the returned descriptor for as long as the lock (`withFileLock`).
    var lockFile: FileDescriptor {
        get throws { try files.file("\(directory)/lock", flags: O_RDWR | O_CREAT, owner: owner) }
    }

    /// The writer's descriptor of the active segment `s` and of its index. Blocking.
    func segmentFile(writing s: ActiveSegment) throws -> FileDescriptor {
        try files.file(SegmentFiles.logPath(directory, s.base), flags: O_RDWR, owner: owner)
    }

    func indexFile(writing s: ActiveSegment) throws -> FileDescriptor {
        try files.file(SegmentFiles.indexPath(directory, s.base), flags: O_RDWR | O_CREAT, owner: owner)
    }

    /// Forgets open descriptors of files that were deleted or replaced under their name.
    func forgetFiles(_ paths: Set<String>) {
        files.forget(owner: owner) { paths.contains($0) }
    }

    /// Forgets everything kept about segments below `base` (retention removed them).
    func dropSegments(below base: Int64) {
        cache.withLock { $0.dropSegments(below: base) }
        indexes.forget(owner: owner, below: base)
        let prefix = directory + "/"
        files.forget(owner: owner) { path in
            guard path.hasPrefix(prefix) else { return false }
            let name = path.utf8.dropFirst(prefix.utf8.count)
            guard name.count >= 20, let segment = Int64(String(decoding: name.prefix(20), as: UTF8.self)) else { return false }
            return segment < base
        }
    }

    /// The damage known to this process, if any.
    func currentDamage() -> PartitionDamage? {
        damage.withLock { $0 }
    }

    /// The recorded gaps this process knows.
    func currentGaps() -> PartitionGaps {
        gaps.withLock { $0 }
    }

    /// Reads `gaps.json` again. Blocking.
    func loadGaps() {
        let loaded = (try? PartitionGaps.load(directory, topic: topic, partition: partition))
            ?? PartitionGaps(identity: FileSystem.identity(PartitionGaps.path(directory)))
        gaps.withLock { $0 = loaded }
    }

    /// Notices a repair by another process (`gaps.json` replaced since it was read: a stat):
    /// then forgets the damage, the files and what readers kept, reads the gaps again and checks
    /// the partition anew. Returns true when it did. Called where damage shows (a read meeting
    /// it, an append refused for it), so that a sound partition never pays for it. Blocking.
    @discardableResult
    func noticeRepair() throws -> Bool {
        let now = FileSystem.identity(PartitionGaps.path(directory))
        guard now != gaps.withLock({ $0.identity }) else { return false }
        forgetEverything()
        loadGaps()
        _ = try checkAcknowledged()
        return true
    }

    /// Forgets the damage recorded and everything kept about the files (a repair changed them).
    func forgetEverything() {
        damage.withLock { $0 = nil }
        cache.withLock { $0 = ReadCache() }
        indexes.forget(owner: owner)
        files.forget(owner: owner)
    }

    /// The error a reader at `offset`, inside `gap`, gets.
    func gapError(_ gap: PartitionGap, offset: Int64) -> LogError {
        var error = LogError(.gap, "topic \"\(topic)\" partition \(partition): offsets \(gap.range) (\(gap.count) records) were lost and given up "
                             + "by `kappactl topic repair` at \(Render.time(gap.repairedAt)) UTC (\(gap.actor)); the log reads on at offset \(gap.to)",
                             topic: topic, partition: partition, offset: offset, file: PartitionGaps.path(directory))
        error.gapEnd = gap.to
        return error
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
        // This descriptor, held until unlocked: the table may close its own reference meanwhile.
        let lock = try ioErrors { try lockFile }
        try ioErrors { try lock.lockExclusive() }
        defer { lock.unlock() }
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
        if readOnly {
            throw LogError(.io, "topic \"\(topic)\" partition \(partition): opened read-only (this user may not write \(directory)); its head cannot be repaired from here",
                           topic: topic, partition: partition, file: directory)
        }
        return try await writer.run {
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
    var indexBytes: Int64
    var lastIndexed: Int64?
    var position: Int64
    var nextOffset: Int64
    var earliest: Int64

    var head: PartitionHead {
        PartitionHead(nextOffset: nextOffset, segmentBase: base, position: position, earliest: earliest)
    }
}

/// What readers keep between calls: the segment list, closed segments' timestamps, and where
/// recent reads stopped, so a sequential reader never searches. (Open files are in `LogFiles`,
/// closed segments' indexes in `ClosedIndexCache`, both bounded for the whole process.)
struct ReadCache {
    struct Position {
        var base: Int64
        var position: Int64
    }

    var segments: [Int64] = []
    var maxTimestamps: [Int64: Int64] = [:]
    var hints: [Int64: Position] = [:]
    var hintOrder: [Int64] = []

    /// A few readers (versions replaying, a consumer) per partition each find their place.
    static let maxHints = 8

    mutating func remember(_ offset: Int64, _ position: Position) {
        if hints.updateValue(position, forKey: offset) == nil {
            hintOrder.append(offset)
            if hintOrder.count > Self.maxHints { hints[hintOrder.removeFirst()] = nil }
        }
    }

    /// Forgets what it knows about segments that retention removed.
    mutating func dropSegments(below base: Int64) {
        segments.removeAll { $0 < base }
        for b in maxTimestamps.keys where b < base { maxTimestamps[b] = nil }
    }
}
