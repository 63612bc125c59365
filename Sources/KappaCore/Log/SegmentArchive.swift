import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Where a topic's closed segments go before retention deletes them, so that a replay from
/// offset 0 is not limited by retention (the lecture's answer: mirror the log to cheap storage).
///
/// Layout, the same in a directory and in an object store (`ArchiveStorage`): per partition,
/// immutable objects named by their base offset, `<topic>/<partition>/<20-digit base>.seg` (a
/// closed segment's frames, byte for byte), and `<topic>/<partition>/manifest.json`, replaced
/// only by a writer that read the version it replaces, listing each object's offsets, size and
/// CRC-32C, and the fencing epoch of the mirror that last wrote it. An object not in the
/// manifest is not archived (a copy cut short by a crash); the next copy replaces it.
///
/// Reads take a whole object at a time, verify its checksum once, and keep it (up to
/// `cacheBytes` of objects, least recently used out first); reading one starts fetching the
/// partition's next `readAheadObjects` objects in the background, so a replay from an object
/// store does not wait for one request at a time, and a reader that reaches an object being
/// fetched waits for that fetch.
///
/// Every method but `init` does I/O: call them on the blocking executor (the logs do), never on
/// the cooperative pool.
public final class SegmentArchive: Sendable {
    public let storage: any ArchiveStorage
    /// The most bytes of verified objects kept for reads.
    public let cacheBytes: Int
    private let objects: Mutex<ObjectCache>
    /// Manifests read, by key, with their version tag and when they were read (reads of a live
    /// topic check the archive first: a manifest is not read again unless it changed).
    private let manifests = Mutex<[String: (tag: String, readAt: Int64, manifest: Manifest)]>([:])

    /// The topic's incarnation (`TopicMetadata.id`, the embedded log's), written into each
    /// manifest this archive writes; a manifest of another incarnation is damage (a topic of the
    /// name deleted and created again, or another state directory's, sharing the folder). Nil:
    /// not known (Kafka through librdkafka 2.0), not checked.
    public let incarnation: String?

    public init(storage: any ArchiveStorage, cacheBytes: Int = 256 << 20, incarnation: String? = nil) {
        self.storage = storage
        self.cacheBytes = cacheBytes
        self.incarnation = incarnation
        objects = Mutex(ObjectCache(capacity: cacheBytes))
    }

    /// The archive in the directory `root` (of the topic incarnation `incarnation`, if known).
    public convenience init(root: String, incarnation: String? = nil) { self.init(storage: DirectoryArchiveStorage(root: root), incarnation: incarnation) }

    /// The directory, when the archive is one (a mirror's lock file lives there).
    public var root: String? { (storage as? DirectoryArchiveStorage)?.root }

    public struct Entry: Codable, Sendable, Equatable {
        /// First offset in the file, and the offset after its last record.
        public var base: Int64
        public var end: Int64
        public var bytes: Int64
        public var crc32c: UInt32
        /// The object's name in the partition's folder when it is not `<20-digit base>.seg`: a
        /// mirror writes each object under a name of its own (`<base>-<random>.seg`), so that
        /// a second or fenced-off writer's upload can never replace an object a manifest names.
        public var object: String? = nil

        /// The object's key in the storage.
        public func key(_ topic: String, _ partition: Int) -> String {
            "\(topic)/\(partition)/" + (object ?? SegmentFiles.name(base) + ".seg")
        }

        /// Whether `name` is one a writer gives (no other folder, no other partition's key).
        static func isObjectName(_ name: String) -> Bool {
            // `[0-9]{20}(-[0-9a-f]{1,32})?\.seg`, by hand (the fuzz build has no regex literals).
            let b = Array(name.utf8)
            guard b.count >= 24, b.suffix(4).elementsEqual(".seg".utf8), b.prefix(20).allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return false }
            let suffix = b[20..<(b.count - 4)]
            if suffix.isEmpty { return true }
            return suffix.first == UInt8(ascii: "-") && (2...33).contains(suffix.count)
                && suffix.dropFirst().allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }
        }
    }

    struct Manifest: Codable, Equatable {
        var version = 1
        var files: [Entry] = []
        /// The fencing epoch of the mirror that wrote it last (nil: never written by a leased
        /// mirror): a mirror with a lower epoch, one fenced off since, cannot write over it.
        var epoch: Int64?
        /// The partition it lists (nil: written before Kappa recorded it): a manifest copied
        /// into another partition's folder, with the objects beside it, would serve that
        /// partition another one's records with every checksum right.
        var topic: String?
        var partition: Int?
        /// The incarnation of the topic whose files it lists, when the writer knew it.
        var incarnation: String?
    }

    static func manifestKey(_ topic: String, _ partition: Int) -> String { "\(topic)/\(partition)/manifest.json" }
    static func objectKey(_ topic: String, _ partition: Int, _ base: Int64) -> String { "\(topic)/\(partition)/" + SegmentFiles.name(base) + ".seg" }
    /// Where the partition's objects are, as the storage names it (a directory's path).
    func directory(_ topic: String, _ partition: Int) -> String { storage.display("\(topic)/\(partition)") }
    func path(_ topic: String, _ partition: Int, _ entry: Entry) -> String { storage.display(entry.key(topic, partition)) }
    /// The path of the object of `base` under its default name (the embedded log's archive).
    func path(_ topic: String, _ partition: Int, _ base: Int64) -> String { storage.display(Self.objectKey(topic, partition, base)) }

    /// Runs a call to the storage, naming the topic and partition in its error.
    private func call<T>(_ topic: String, _ partition: Int, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as IOError {
            throw LogError.io(error, topic: topic, partition: partition)
        } catch let error as LogError {
            throw error
        } catch let error as ArchiveConflict {
            throw error
        } catch {
            throw LogError(.io, "topic \"\(topic)\" partition \(partition): the archive at \(storage): \(error)", topic: topic, partition: partition)
        }
    }

    /// The archived files of a partition, in offset order.
    public func entries(topic: String, partition: Int) throws -> [Entry] {
        try manifest(topic: topic, partition: partition).manifest.files
    }

    /// The partition's manifest, from the cache while it is fresh or unchanged; its tag (nil:
    /// there is none yet).
    private func manifest(topic: String, partition: Int, fresh: Bool = false) throws -> (manifest: Manifest, tag: String?) {
        let key = Self.manifestKey(topic, partition)
        let now = currentTimeMillis()
        let known = manifests.withLock { $0[key] }
        if !fresh, let known, now - known.readAt < storage.freshnessMs { return (known.manifest, known.tag) }
        let read: (bytes: [UInt8], tag: String)?
        do {
            if !fresh, let known, try call(topic, partition, { try storage.tag(key) }) == known.tag {
                manifests.withLock { $0[key]?.readAt = now }
                return (known.manifest, known.tag)
            }
            read = try call(topic, partition, { try storage.getVersioned(key) })
        } catch let error as LogError where !fresh && error.code == .io {
            // The store unreachable: readers go on with the manifest they have (objects cached
            // or not, each read says so); writers (fresh) get the error.
            guard let known else { throw error }
            return (known.manifest, known.tag)
        }
        guard let (bytes, tag) = read else {
            manifests.withLock { _ = $0.removeValue(forKey: key) }
            return (Manifest(), nil)
        }
        let manifest = try Self.decodeManifest(bytes, topic: topic, partition: partition, path: storage.display(key), incarnation: incarnation)
        manifests.withLock { $0[key] = (tag, now, manifest) }
        return (manifest, tag)
    }

    /// Decodes and checks a manifest (bytes from disk: anything): version 1, each file's offsets
    /// `0 ≤ base < end < 2^62` and size not negative, files not overlapping. Returns them in
    /// offset order.
    /// - Throws: `LogError.corrupt` naming the manifest and what is wrong with it.
    /// The largest archived object a manifest may name (4 GiB).
    static let maxObjectBytes: Int64 = 4 << 30

    static func decodeManifest(_ bytes: [UInt8], topic: String, partition: Int, path: String, incarnation: String? = nil) throws -> Manifest {
        func corrupt(_ problem: String) -> LogError {
            LogError(.corrupt, "topic \"\(topic)\" partition \(partition): the archive's manifest \(path) is damaged: \(problem)",
                     topic: topic, partition: partition, file: path)
        }
        var manifest: Manifest
        do {
            manifest = try JSONDecoder().decode(Manifest.self, from: Data(bytes))
        } catch {
            throw corrupt(DecodingProblem.describe(error, bytes: bytes))
        }
        guard manifest.version == 1 else { throw corrupt("version \(manifest.version) is not one this Kappa reads (1)") }
        manifest.files.sort { $0.base < $1.base }
        let entries = manifest.files
        for (i, entry) in entries.enumerated() {
            guard entry.base >= 0, entry.base < entry.end, entry.end < BatchHeader.offsetLimit else {
                throw corrupt("the file for offsets \(entry.base) to \(entry.end) (\(entry.bytes) bytes) is not a range of offsets")
            }
            // An object is read whole into memory: no size a segment could have is near this.
            guard entry.bytes >= 0, entry.bytes <= Self.maxObjectBytes else {
                throw corrupt("the file for offsets \(entry.base) to \(entry.end) has a size of \(entry.bytes) bytes, not one from 0 to \(Self.maxObjectBytes)")
            }
            if let name = entry.object, !Entry.isObjectName(name) || !name.hasPrefix(SegmentFiles.name(entry.base)) {
                throw corrupt("the file for offsets \(entry.base) to \(entry.end) is named \(TerminalText.escaped(name)), not <its 20-digit base offset>[-<hex>].seg")
            }
            if i > 0, entries[i - 1].end > entry.base {
                throw corrupt("the files for offsets from \(entries[i - 1].base) and from \(entry.base) overlap")
            }
        }
        if let epoch = manifest.epoch, epoch < 0 { throw corrupt("the writer's epoch \(epoch) is negative") }
        if manifest.topic != nil || manifest.partition != nil, manifest.topic != topic || manifest.partition != partition {
            let theirs = "topic \"\(manifest.topic ?? "?")\" partition \(manifest.partition.map(String.init) ?? "?")"
            throw corrupt("it lists the files of \(TerminalText.escaped(theirs)), not of this partition (copied from another folder?)")
        }
        if let incarnation, let theirs = manifest.incarnation, theirs != incarnation {
            throw corrupt("it lists the files of another topic named \"\(topic)\" (incarnation \(TerminalText.escaped(theirs)), this one is \(incarnation)): one deleted and created again, or another state directory's, sharing this archive; move it away, or give this topic another archive")
        }
        return manifest
    }

    /// The first offset from which the archive and the live log together hold every record up to
    /// `liveEarliest`: the archive's first base if its files reach `liveEarliest` without a gap,
    /// else `liveEarliest` itself.
    public func earliest(topic: String, partition: Int, liveEarliest: Int64) throws -> Int64 {
        var covered = liveEarliest
        for entry in try entries(topic: topic, partition: partition).reversed() where entry.base < covered {
            guard entry.end >= covered else { break }
            covered = entry.base
        }
        return covered
    }

    /// Refuses an archive that ends beyond the log's end `liveEnd`: a log's offsets never go
    /// back, so its records are another topic's of this name (one deleted and created again, a
    /// new cluster) or records the brokers lost, and serving them as this topic's offsets would
    /// be wrong with every checksum right.
    /// - Throws: `LogError.corrupt` naming the archive's folder and both ends.
    public func checkNotBeyond(topic: String, partition: Int, liveEnd: Int64) throws {
        guard let end = try entries(topic: topic, partition: partition).last?.end, end > liveEnd else { return }
        throw LogError(.corrupt, "topic \"\(topic)\" partition \(partition): the archive \(directory(topic, partition)) ends at offset \(end), beyond the log's end \(liveEnd): it holds another topic of this name (deleted and created again, or another cluster's) or records the brokers lost; move it away, or give this topic another --archive",
                       topic: topic, partition: partition, offset: liveEnd, file: directory(topic, partition))
    }

    /// Copies a closed segment into the archive (checksummed, durable) and records it in the
    /// manifest. Returns false when it was there already.
    @discardableResult
    func store(topic: String, partition: Int, segment: String, base: Int64, end: Int64) throws -> Bool {
        if try entries(topic: topic, partition: partition).contains(where: { $0.base == base && $0.end == end }) { return false }
        let key = Self.objectKey(topic, partition, base)
        let (size, crc) = try call(topic, partition) { () throws -> (Int64, UInt32) in
            let source = try FileDescriptor(path: segment, flags: O_RDONLY)
            // A directory copies it 1 MiB at a time; an object store is sent it whole.
            if let directory = storage as? DirectoryArchiveStorage { return try directory.put(key, copying: source) }
            let bytes = try source.read(count: Int(try source.size()), at: 0)
            try storage.put(key, bytes)
            return (Int64(bytes.count), CRC32C.checksum(bytes))
        }
        try record(Entry(base: base, end: end, bytes: size, crc32c: crc), topic: topic, partition: partition, epoch: nil)
        return true
    }

    /// Writes frames holding offsets `base..<end` as an archived object, then records it in the
    /// manifest as written by a mirror holding `epoch` (nil: no lease).
    /// - Throws: `LogError(.fenced)` when the manifest was written since by a mirror with a
    ///   higher epoch: this one was fenced off (the object stays unrecorded).
    func store(topic: String, partition: Int, bytes: [UInt8], base: Int64, end: Int64, epoch: Int64? = nil) throws {
        if try entries(topic: topic, partition: partition).contains(where: { $0.base == base && $0.end == end }) { return }
        try checkEpoch(topic: topic, partition: partition, epoch: epoch)
        // A name of its own: another mirror (an `archive run` beside JobHost's, one fenced off
        // whose upload lands late) writes another object, never over the one a manifest names.
        let suffix = String(UInt64.random(in: 0...UInt64.max), radix: 16)
        let entry = Entry(base: base, end: end, bytes: Int64(bytes.count), crc32c: CRC32C.checksum(bytes),
                          object: SegmentFiles.name(base) + "-" + suffix + ".seg")
        try call(topic, partition) { try storage.put(entry.key(topic, partition), bytes) }
        try record(entry, topic: topic, partition: partition, epoch: epoch)
    }

    private func fenced(_ topic: String, _ partition: Int, mine: Int64, theirs: Int64) -> LogError {
        LogError(.fenced, "topic \"\(topic)\" partition \(partition): this mirror (lease epoch \(mine)) was fenced off: the archive's manifest \(storage.display(Self.manifestKey(topic, partition))) was written by a mirror with epoch \(theirs)",
                 topic: topic, partition: partition, file: storage.display(Self.manifestKey(topic, partition)))
    }

    private func checkEpoch(topic: String, partition: Int, epoch: Int64?) throws {
        guard let epoch else { return }
        let theirs = try manifest(topic: topic, partition: partition).manifest.epoch ?? -1
        if theirs > epoch { throw fenced(topic, partition, mine: epoch, theirs: theirs) }
    }

    /// Adds `entry` to the manifest. The object is whole before this, so the manifest never
    /// names a partial one.
    private func record(_ entry: Entry, topic: String, partition: Int, epoch: Int64?) throws {
        try update(topic: topic, partition: partition, epoch: epoch) { manifest in
            if manifest.files.contains(entry) { return false }
            // The same offsets written by another writer meanwhile (with an object of its own).
            if manifest.files.contains(where: { $0.base == entry.base && $0.end == entry.end }) { return false }
            if let overlap = manifest.files.first(where: { $0.base < entry.end && entry.base < $0.end }) {
                throw LogError(.corrupt, "topic \"\(topic)\" partition \(partition): the archive already holds offsets \(overlap.base)…\(overlap.end - 1), which the file for \(entry.base)…\(entry.end - 1) overlaps (two mirrors?)",
                               topic: topic, partition: partition, file: self.storage.display(Self.manifestKey(topic, partition)))
            }
            manifest.files.append(entry)
            manifest.files.sort { $0.base < $1.base }
            return true
        }
    }

    /// Writes `epoch` into the partition's manifest (nothing else changes): a mirror that took
    /// the lease fences off the one before it before it copies anything, so that one's next
    /// record is refused even if it read the manifest before this.
    /// - Throws: `LogError(.fenced)` when a higher epoch wrote the manifest already.
    public func claim(topic: String, partition: Int, epoch: Int64) throws {
        try update(topic: topic, partition: partition, epoch: epoch) { manifest in manifest.epoch != epoch }
    }

    /// Read (fresh), `change` (returns whether it changed anything), replace only if nobody
    /// replaced it meanwhile, else read again and decide again (up to 8 times). A writer whose
    /// `epoch` is below the manifest's is refused; one above it raises it.
    private func update(topic: String, partition: Int, epoch: Int64?, _ change: (inout Manifest) throws -> Bool) throws {
        let key = Self.manifestKey(topic, partition)
        for _ in 0..<8 {
            var (manifest, tag) = try self.manifest(topic: topic, partition: partition, fresh: true)
            if let theirs = manifest.epoch, let epoch, theirs > epoch { throw fenced(topic, partition, mine: epoch, theirs: theirs) }
            guard try change(&manifest) else { return }
            if let epoch { manifest.epoch = epoch }
            (manifest.topic, manifest.partition) = (topic, partition)
            if let incarnation { manifest.incarnation = incarnation }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
            let bytes = Array(try encoder.encode(manifest))
            do {
                let now = try call(topic, partition) { try storage.replace(key, bytes, ifTag: tag) }
                manifests.withLock { $0[key] = (now, currentTimeMillis(), manifest) }
                return
            } catch is ArchiveConflict {
                continue  // another writer: read what it wrote, and decide again
            }
        }
        throw LogError(.io, "topic \"\(topic)\" partition \(partition): the archive's manifest \(storage.display(key)) kept changing under this writer (8 tries)",
                       topic: topic, partition: partition, file: storage.display(key))
    }

    /// The archived object of `entry`, whole and its checksum verified (from the cache when read
    /// before).
    /// - Throws: `LogError.corrupt` naming the object and its offsets when its bytes do not match
    ///   the manifest, or it is missing.
    func object(topic: String, partition: Int, entry: Entry) throws -> [UInt8] {
        let key = entry.key(topic, partition)
        if let bytes = objects.withLock({ $0.get(key) }) { return bytes }
        // Being fetched ahead already: wait for that rather than fetch it twice (a reader faster
        // than the store asked for each object again, and both requests shared the link). Only
        // a fetch that has started is waited for, so no reader waits on a job still queued
        // behind it on the executor.
        if let running = objects.withLock({ $0.running(key) }) {
            running.wait()
            if let bytes = objects.withLock({ $0.get(key) }) { return bytes }
        }
        return try fetch(topic: topic, partition: partition, entry: entry)
    }

    /// Fetches the object of `entry`, verifies it and keeps it.
    private func fetch(topic: String, partition: Int, entry: Entry) throws -> [UInt8] {
        let key = entry.key(topic, partition)
        // Its checksum as the storage computed it while the bytes came in (an object store's
        // client does; a directory's is one pass after the read).
        let read = try call(topic, partition) { try storage.getChecksummed(key, range: 0..<(entry.bytes + 1)) }
        guard let (bytes, crc) = read, Int64(bytes.count) == entry.bytes, crc == entry.crc32c else {
            let what = read == nil ? "is missing" : "does not match its checksum in the manifest"
            throw LogError(.corrupt, "topic \"\(topic)\" partition \(partition): archived file \(storage.display(key)) \(what) (offsets \(entry.base)…\(entry.end - 1))",
                           topic: topic, partition: partition, offset: entry.base, file: storage.display(key))
        }
        objects.withLock { $0.put(key, bytes) }
        return bytes
    }

    /// What `prune` did with the objects in a partition's folder that its manifest does not name.
    public struct Pruned: Sendable, Codable, Equatable {
        /// Deleted (or, in a dry run, to be deleted): older than the grace.
        public var deleted: [ArchiveObject] = []
        /// Kept: younger than the grace (a writer may be about to record it).
        public var kept: [ArchiveObject] = []
        /// Why nothing was deleted in the partition, when prune refused it.
        public var refused: String?
    }

    /// Deletes the objects in the partition's folder that its manifest does not name (an upload
    /// cut off by a kill, a fenced-off or losing writer's copy, a directory's temporary file
    /// left by a crash) once they are older than `olderThanMs`; nothing else (no other name, no
    /// other folder). The grace is what keeps a writer's upload that it has not recorded yet:
    /// the objects are listed before the manifest is read, so one recorded meanwhile is kept,
    /// and one uploaded but not yet recorded is young (Iceberg's `remove_orphan_files` keeps
    /// such files by age for the same reason, 3 days by default).
    ///
    /// Only names never used twice are deleted: a mirror's `<base>-<hex>.seg` and temporary
    /// files. The embedded log's `<base>.seg` is copied again under the same name by its
    /// archiver (which replaces one cut off), so deleting an old listing of it could delete the
    /// copy recorded since. A partition with objects but no manifest is refused (`refused`):
    /// its manifest is what is missing, not its objects.
    public func prune(topic: String, partition: Int, olderThanMs: Int64, now: Int64 = currentTimeMillis(), dryRun: Bool = false) throws -> Pruned {
        let folder = "\(topic)/\(partition)/"
        let listed = try call(topic, partition) { try storage.list(folder) }
        let read = try manifest(topic: topic, partition: partition, fresh: true)
        let named = Set(read.manifest.files.map { $0.key(topic, partition) })
        func name(_ object: ArchiveObject) -> String { String(decoding: object.key.utf8.dropFirst(folder.utf8.count), as: UTF8.self) }
        if read.tag == nil, listed.contains(where: { Entry.isObjectName(name($0)) }) {
            return Pruned(refused: "topic \"\(topic)\" partition \(partition) has archived objects but no manifest (\(storage.display(Self.manifestKey(topic, partition)))): nothing is pruned there; restore the manifest first")
        }
        var out = Pruned()
        for object in listed where !named.contains(object.key) && Self.isLeftover(name(object)) {
            if now - object.modifiedMs < olderThanMs {
                out.kept.append(object)
                continue
            }
            if !dryRun {
                try call(topic, partition) { try storage.delete(object.key) }
                objects.withLock { $0.remove(object.key) }
            }
            out.deleted.append(object)
        }
        return out
    }

    /// A name prune may delete when no manifest names it, exactly as the writers make them: a
    /// mirror's object (`<base>-<hex>.seg`), a directory's copy in progress (`<object>.tmp`)
    /// or atomic write in progress (`<object or manifest.json>.tmp-<pid>-<n>`). Never a name
    /// with a folder in it, never the embedded log's `<base>.seg` (see `prune`).
    static func isLeftover(_ name: String) -> Bool {
        guard !name.contains("/") else { return false }
        func isTemporary(_ suffix: Substring) -> Bool {  // ".tmp", or ".tmp-<digits>-<digits>"
            guard suffix.hasPrefix(".tmp") else { return false }
            let rest = suffix.dropFirst(4)
            if rest.isEmpty { return true }
            let parts = rest.split(separator: "-", omittingEmptySubsequences: false)
            return parts.count == 3 && parts[0].isEmpty && parts[1...].allSatisfy { !$0.isEmpty && $0.count <= 20 && $0.allSatisfy { $0.isASCII && $0.isNumber } }
        }
        if Entry.isObjectName(name) { return name.count > 24 }  // `<base>.seg` is 24 long: a reused name
        if name.hasPrefix("manifest.json") { return isTemporary(name.dropFirst("manifest.json".count)) && name.count > 17 }
        guard let range = name.range(of: ".seg.tmp") else { return false }
        return Entry.isObjectName(String(name[..<range.lowerBound]) + ".seg") && isTemporary(name[name.index(range.lowerBound, offsetBy: 4)...])
    }

    /// The archived file holding `offset`, its checksum verified.
    /// - Throws: `LogError.corrupt` naming the file when its bytes do not match the manifest.
    func file(topic: String, partition: Int, holding offset: Int64) throws -> (entry: Entry, path: String)? {
        guard let entry = try entries(topic: topic, partition: partition).first(where: { $0.base <= offset && offset < $0.end }) else { return nil }
        _ = try object(topic: topic, partition: partition, entry: entry)
        return (entry, path(topic, partition, entry))
    }

    /// Starts fetching the object after `entry` in the background when it is not kept already.
    private func readAhead(topic: String, partition: Int, after entry: Entry, entries: [Entry]) {
        guard let i = entries.firstIndex(where: { $0.base >= entry.end }) else { return }
        for next in entries[i..<min(i + Self.readAheadObjects, entries.count)] { readAhead(topic: topic, partition: partition, next) }
    }

    /// How many objects past the one being read are fetched ahead: two transfers at once keep
    /// the link busy while the reader decodes (with one, the link idled between an object
    /// fetched and the reader reaching it: 0.75-0.97x of curl; with two, 1.07-1.33x).
    public static let readAheadObjects = 2

    private func readAhead(topic: String, partition: Int, _ next: Entry) {
        let key = next.key(topic, partition)
        guard objects.withLock({ $0.startFetch(key) }) else { return }
        Task.detached { [self] in
            _ = try? await BlockingExecutor.shared.run {
                guard let started = self.objects.withLock({ $0.beginFetch(key) }) else { return }  // read meanwhile
                defer { self.objects.withLock { $0.finishFetch(key, started) } }
                _ = try self.fetch(topic: topic, partition: partition, entry: next)
            }
            objects.withLock { $0.endFetch(key) }
        }
    }

    /// Reads records from the archive from `offset` (up to the end of the file holding it);
    /// nil when no archived file holds it. Frames are checked as on the live log.
    /// - Throws: `LogError.corrupt` naming the file and offset.
    public func read(topic: String, partition: Int, from offset: Int64, maxRecords: Int, maxBytes: Int) throws -> LogRecords? {
        let all = try entries(topic: topic, partition: partition)
        guard let entry = all.first(where: { $0.base <= offset && offset < $0.end }) else { return nil }
        let path = path(topic, partition, entry)
        let object = try object(topic: topic, partition: partition, entry: entry)
        readAhead(topic: topic, partition: partition, after: entry, entries: all)
        func corrupt(_ what: String) -> LogError {
            LogError(.corrupt, "topic \"\(topic)\" partition \(partition): \(what) at offset \(offset) in \(path)",
                     topic: topic, partition: partition, offset: offset, file: path)
        }
        var entries: [LogRecords.Entry] = []
        entries.reserveCapacity(Int(min(Int64(maxRecords), entry.end - offset)))
        let key = entry.key(topic, partition)
        // Where a read of this object that ended at `offset` stopped: a replay reading batch
        // after batch goes on there, rather than parsing a mirrored frame (4 MiB of records)
        // again from its start for each batch.
        let hint = objects.withLock { $0.resumePoint(key, offset: offset) }
        var stopped: ObjectCache.ResumePoint?
        try object.withUnsafeBytes { buf in
            var at = 0
            var cursor: RecordBatchCodec.Cursor?
            if let hint, let header = BatchHeader.parse(buf, at: hint.frameAt), hint.frameAt + header.length <= buf.count,
               header.baseOffset <= offset, offset < header.nextOffset {
                at = hint.frameAt
                cursor = hint.record.map { RecordBatchCodec.Cursor(position: $0, offset: offset) }
            } else {
                // The frame holding the offset: headers only, from the start.
                while true {
                    guard at < buf.count, let header = BatchHeader.parse(buf, at: at), at + header.length <= buf.count else {
                        throw corrupt("no frame holds the offset")
                    }
                    if offset < header.nextOffset { break }
                    at += header.length
                }
            }
            var read = 0
            while at < buf.count, entries.count < maxRecords, let header = BatchHeader.parse(buf, at: at), at + header.length <= buf.count {
                if !entries.isEmpty && read + header.length > max(maxBytes, 64 << 10) {
                    stopped = ObjectCache.ResumePoint(frameAt: at, record: nil)
                    break
                }
                let expected = entries.last.map { $0.offset + 1 } ?? offset
                if header.baseOffset >= entry.end && !entries.isEmpty { break }  // past the file's offsets
                // No CRC of each frame: the object's CRC-32C, checked when it was fetched, covers
                // every byte of every frame (checking both cost a sixth of a read).
                // Offsets in order, as on the live log: a reader never gets an offset twice or out of order.
                guard header.baseOffset <= expected, header.nextOffset > expected, header.nextOffset <= entry.end else {
                    throw corrupt("the frame at byte \(at) holds offsets \(header.baseOffset)…\(header.lastOffset), expected \(expected) (the file holds \(entry.base)…\(entry.end - 1))")
                }
                guard RecordBatchCodec.decode(buf, at: at, header: header, fromOffset: expected, limit: maxRecords, into: &entries, cursor: &cursor) else {
                    throw corrupt("record lengths overrun the frame at byte \(at)")
                }
                if let left = cursor {  // the limit stopped it inside this frame
                    stopped = ObjectCache.ResumePoint(frameAt: at, record: left.position)
                    break
                }
                read += header.length
                at += header.length
                if entries.count >= maxRecords { stopped = ObjectCache.ResumePoint(frameAt: at, record: nil) }
            }
        }
        guard let last = entries.last else { throw corrupt("no whole frame") }
        // Read to its end: a replay reads on from the next object, so this one's memory goes
        // back now (its records keep it alive until they are processed) rather than when it is
        // least recently used.
        if last.offset + 1 >= entry.end {
            objects.withLock { $0.remove(key) }
        } else if let stopped {
            objects.withLock { $0.setResumePoint(key, offset: last.offset + 1, stopped) }
        }
        return LogRecords(partition: partition, storage: object, entries: entries, nextOffset: last.offset + 1)
    }
}

/// Verified archived objects by key, least recently used out first once over `capacity` bytes
/// (the last one put always stays), and the keys being fetched ahead.
struct ObjectCache: Sendable {
    let capacity: Int
    private var objects: [String: (bytes: [UInt8], used: UInt64)] = [:]
    private var bytes = 0
    private var clock: UInt64 = 0
    private var fetching: Set<String> = []
    /// The fetches ahead that have started, each left when it ends (readers of the object wait).
    private var started: [String: DispatchGroup] = [:]
    /// Per object, where reads that stopped before its end go on, by the offset they go on at.
    private var resumePoints: [String: [Int64: ResumePoint]] = [:]

    /// Where a read goes on in an object: the frame holding its offset, and the record's
    /// position inside it (nil: the frame's first record).
    struct ResumePoint: Sendable, Equatable {
        var frameAt: Int
        var record: Int?
    }

    init(capacity: Int) { self.capacity = capacity }

    /// The point where a read that ended at `offset` stopped, taken (a read from there leaves
    /// its own).
    mutating func resumePoint(_ key: String, offset: Int64) -> ResumePoint? {
        resumePoints[key]?.removeValue(forKey: offset)
    }

    /// Keeps where a read of `key` stopped (a few per object: readers at several places).
    mutating func setResumePoint(_ key: String, offset: Int64, _ point: ResumePoint) {
        guard objects[key] != nil else { return }
        if resumePoints[key, default: [:]].count >= 8 { resumePoints[key]?.removeAll() }
        resumePoints[key, default: [:]][offset] = point
    }

    mutating func get(_ key: String) -> [UInt8]? {
        guard let object = objects[key] else { return nil }
        clock += 1
        objects[key]?.used = clock
        return object.bytes
    }

    mutating func put(_ key: String, _ value: [UInt8]) {
        clock += 1
        if let old = objects.updateValue((value, clock), forKey: key) { bytes -= old.bytes.count }
        bytes += value.count
        while bytes > capacity, objects.count > 1, let oldest = objects.filter({ $0.key != key }).min(by: { $0.value.used < $1.value.used }) {
            bytes -= oldest.value.bytes.count
            objects[oldest.key] = nil
            resumePoints[oldest.key] = nil
        }
    }

    /// Whether a fetch of `key` should start (not kept, not being fetched).
    mutating func startFetch(_ key: String) -> Bool {
        guard objects[key] == nil else { return false }
        return fetching.insert(key).inserted
    }

    mutating func endFetch(_ key: String) { fetching.remove(key) }

    /// A fetch ahead of `key` starts now, unless the object is kept already (a reader fetched it).
    mutating func beginFetch(_ key: String) -> DispatchGroup? {
        guard objects[key] == nil, started[key] == nil else { return nil }
        let group = DispatchGroup()
        group.enter()
        started[key] = group
        return group
    }

    mutating func finishFetch(_ key: String, _ group: DispatchGroup) {
        started[key] = nil
        group.leave()
    }

    /// The fetch of `key` under way, if one has started.
    func running(_ key: String) -> DispatchGroup? { started[key] }

    mutating func remove(_ key: String) {
        if let old = objects.removeValue(forKey: key) { bytes -= old.bytes.count }
        resumePoints[key] = nil
    }
}
