#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// The process's budget of open segment-log files: every descriptor a `PartitionLog` keeps
/// between calls (head, lock, segments, the active index) is opened here, lazily, and closed
/// least recently used once more than `limit` are open. A partition whose files were closed
/// opens them again on its next call, so a topic of 10,000 partitions works under the default
/// `ulimit -n` of 1024.
///
/// Closing is safe while a file is in use: the table drops its reference, and the descriptor
/// closes when the last user lets go (`FileDescriptor` closes in `deinit`). So a lock file held
/// by a writer stays open (and locked) until the writer unlocks it; descriptors in use beyond
/// the limit are bounded by the executor's threads. Keys carry an owner (one per
/// `PartitionLog`), so two logs of one directory in a process never share a descriptor, nor,
/// above all, a `flock` (flock belongs to the open file, not to the process).
final class LogFiles: Sendable {
    /// The process's table: `KAPPA_LOG_FILES` descriptors (8…65536), else 512, or half the
    /// process's descriptor limit (`ulimit -n`) when that is lower.
    static let shared = LogFiles(limit: limit(environment: getenv("KAPPA_LOG_FILES").map { String(cString: $0) },
                                              descriptorLimit: descriptorLimit()))
    static let defaultLimit = 512
    static let allowedLimits = 8...65_536

    static func limit(environment value: String?, descriptorLimit: Int?) -> Int {
        if let value, let n = Int(value), allowedLimits.contains(n) { return n }
        guard let descriptorLimit else { return defaultLimit }
        return max(allowedLimits.lowerBound, min(defaultLimit, descriptorLimit / 2))
    }

    /// The soft `RLIMIT_NOFILE`, nil when unlimited or unknown.
    static func descriptorLimit() -> Int? {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur != rlim_t.max else { return nil }
        return Int(clamping: limit.rlim_cur)
    }

    struct Key: Hashable {
        var owner: UInt64
        var path: String
        var flags: Int32
    }

    private struct Entry {
        var file: FileDescriptor
        var used: UInt64
    }

    private struct State {
        var entries: [Key: Entry] = [:]
        var clock: UInt64 = 0
        var nextOwner: UInt64 = 0
        var opened = 0
    }

    /// How many descriptors the table keeps open at most.
    let limit: Int
    private let state = Mutex(State())

    init(limit: Int) {
        self.limit = max(1, limit)
    }

    /// A new owner for the keys of one `PartitionLog`.
    func newOwner() -> UInt64 {
        state.withLock { s in
            s.nextOwner += 1
            return s.nextOwner
        }
    }

    /// How many descriptors the table holds now (for tests and benchmarks).
    var openCount: Int { state.withLock { $0.entries.count } }
    /// How many opens the table has done (for tests: a reopened file counts again).
    var opens: Int { state.withLock { $0.opened } }

    /// The open file for `path` opened with `flags` by `owner`, opened now if the table does not
    /// hold it. Blocking (an `open`).
    /// - Throws: `IOError` naming the path; EMFILE only when closing the table's least recently
    ///   used half did not make room.
    func file(_ path: String, flags: Int32, owner: UInt64) throws -> FileDescriptor {
        let key = Key(owner: owner, path: path, flags: flags)
        if let known = state.withLock({ s -> FileDescriptor? in
            guard let entry = s.entries[key] else { return nil }
            s.clock += 1
            s.entries[key]?.used = s.clock
            return entry.file
        }) { return known }
        let opened: FileDescriptor
        do {
            opened = try FileDescriptor(path: path, flags: flags)
        } catch let error as IOError where error.code == EMFILE || error.code == ENFILE {
            // Other descriptors of the process (sockets, SQLite, children's pipes) took the room.
            shrink(to: state.withLock { $0.entries.count } / 2)
            opened = try FileDescriptor(path: path, flags: flags)
        }
        var evicted: [FileDescriptor] = []
        let file = state.withLock { s -> FileDescriptor in
            s.opened += 1
            s.clock += 1
            if let raced = s.entries[key] {  // another thread opened it meanwhile: keep one
                s.entries[key]?.used = s.clock
                return raced.file
            }
            s.entries[key] = Entry(file: opened, used: s.clock)
            if s.entries.count > limit { evicted = Self.evict(&s, keeping: limit - max(1, limit / 8)) }
            return opened
        }
        evicted.removeAll()  // closed here, outside the Mutex (unless still in use)
        return file
    }

    /// Closes the least recently used entries until at most `count` remain.
    func shrink(to count: Int) {
        var evicted = state.withLock { Self.evict(&$0, keeping: max(0, count)) }
        evicted.removeAll()
    }

    /// Forgets `owner`'s files whose path `matches` (a file deleted, renamed over or replaced).
    func forget(owner: UInt64, where matches: (String) -> Bool) {
        var dropped: [FileDescriptor] = []
        state.withLock { s in
            for key in s.entries.keys where key.owner == owner && matches(key.path) {
                if let entry = s.entries.removeValue(forKey: key) { dropped.append(entry.file) }
            }
        }
        dropped.removeAll()
    }

    /// Forgets every file of `owner` (its partition closed).
    func forget(owner: UInt64) {
        forget(owner: owner) { _ in true }
    }

    private static func evict(_ s: inout State, keeping count: Int) -> [FileDescriptor] {
        guard s.entries.count > count else { return [] }
        // Oldest first; a sort per limit/8 opens keeps the cost per open at O(log n).
        let doomed = s.entries.sorted { $0.value.used < $1.value.used }.prefix(s.entries.count - count)
        var files: [FileDescriptor] = []
        files.reserveCapacity(doomed.count)
        for (key, entry) in doomed {
            files.append(entry.file)
            s.entries[key] = nil
        }
        return files
    }
}

/// Closed segments' sparse indexes that readers keep, across all partitions of the process,
/// up to `limit` entries in all (8 bytes each), least recently used dropped first: a partition
/// not read lately holds none.
final class ClosedIndexCache: Sendable {
    static let shared = ClosedIndexCache(limit: 2 << 20)  // 16 MiB of entries

    struct Key: Hashable {
        var owner: UInt64
        var base: Int64
    }

    private struct State {
        var indexes: [Key: (index: SegmentIndex, used: UInt64)] = [:]
        var entries = 0
        var clock: UInt64 = 0
    }

    let limit: Int
    private let state = Mutex(State())

    init(limit: Int) {
        self.limit = limit
    }

    func index(owner: UInt64, base: Int64) -> SegmentIndex? {
        state.withLock { s in
            let key = Key(owner: owner, base: base)
            guard let known = s.indexes[key] else { return nil }
            s.clock += 1
            s.indexes[key]?.used = s.clock
            return known.index
        }
    }

    func keep(_ index: SegmentIndex, owner: UInt64, base: Int64) {
        var dropped: [SegmentIndex] = []
        state.withLock { s in
            s.clock += 1
            let key = Key(owner: owner, base: base)
            if let old = s.indexes.updateValue((index, s.clock), forKey: key) { s.entries -= old.index.entries.count }
            s.entries += index.entries.count
            guard s.entries > limit else { return }
            for (key, value) in s.indexes.sorted(by: { $0.value.used < $1.value.used }) where s.entries > limit * 7 / 8 {
                s.indexes[key] = nil
                s.entries -= value.index.entries.count
                dropped.append(value.index)
            }
        }
        dropped.removeAll()
    }

    /// Forgets `owner`'s indexes of segments below `base` (deleted by retention), or all of them.
    func forget(owner: UInt64, below base: Int64 = .max) {
        state.withLock { s in
            for key in s.indexes.keys where key.owner == owner && key.base < base {
                if let old = s.indexes.removeValue(forKey: key) { s.entries -= old.index.entries.count }
            }
        }
    }
}
