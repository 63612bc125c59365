import Foundation
import Synchronization

/// The embedded unified log: each topic a directory, each partition a directory of segment
/// files (see `PartitionLog`). Several processes may use one log directory at once: appends
/// to a partition are serialized by a file lock held per group commit, reads take no lock.
///
/// Every file operation runs on the blocking executor (`BlockingExecutor.shared`), never on the
/// cooperative pool; each partition's writer is a serial lane of it.
public final class SegmentLog: UnifiedLog {
    /// The directory holding one sub-directory per topic.
    public let directory: String
    /// Topics in use, each with the identity of the `topic.json` it was loaded from.
    private let open = Mutex<[String: (topic: OpenTopic, identity: FileIdentity)]>([:])
    private let router = RecordRouter()
    private let executor = BlockingExecutor.shared
    /// Where partitions keep their open files (a budget for the whole process, `LogFiles`).
    let files: LogFiles
    /// Opened by a command that only reads, from a directory this process may not write: files
    /// are opened read-only, nothing is created, recovered or locked (readers take no lock;
    /// what a crash left beyond a head is never read anyway), appends are refused.
    public let readOnly: Bool

    /// Opens (creating if needed, unless `readOnly`) the log in `directory`.
    /// - Throws: `LogError.io` naming the directory.
    public convenience init(directory: String, readOnly: Bool = false) throws {
        try self.init(directory: directory, files: .shared, readOnly: readOnly)
    }

    /// Opens the log with its own table of open files (tests: a small budget).
    init(directory: String, files: LogFiles, readOnly: Bool = false) throws {
        self.directory = directory
        self.files = files
        self.readOnly = readOnly
        guard !readOnly else { return }
        do {
            try FileSystem.makeDirectories(directory)
        } catch let error as IOError {
            throw LogError(.io, "cannot use log directory: \(error)", file: directory)
        }
    }

    /// The log of a state directory (`<state>/log`). `readOnly` (commands that only read): a
    /// directory this process may not write is opened read-only.
    public convenience init(state: StateDirectory, readOnly: Bool = false) throws {
        try state.requireExisting()
        try self.init(directory: state.logDirectory, readOnly: readOnly && !state.writable)
    }

    // MARK: Topics

    public func createTopic(_ name: String, config: TopicConfig) async throws -> TopicMetadata {
        try await executor.run { try self.createTopicNow(name, config: config) }
    }

    private func createTopicNow(_ name: String, config: TopicConfig) throws -> TopicMetadata {
        if let archive = config.archive {
            // One machine's log: its archive is a directory (an object store is for Kafka's
            // topics, read by JobHosts on several machines: --log kafka://… --archive s3://…).
            guard !archive.contains("://") else {
                throw LogError(.invalidArgument, "topic \"\(name)\": the embedded log's archive is a directory, not \(Redaction.url(archive)); an s3:// archive is for Kafka topics (--log kafka://… --archive s3://BUCKET/PREFIX)", topic: name)
            }
            do { try FileSystem.makeDirectories(archive) } catch let error as IOError {
                throw LogError(.invalidArgument, "topic \"\(name)\": cannot use \(archive) as its archive: \(error)", topic: name)
            }
        }
        try Self.validate(name: name)
        try Self.validate(config)
        let final = "\(directory)/\(name)"
        if FileSystem.exists(final) { throw LogError(.topicExists, "topic \"\(name)\" already exists", topic: name) }
        // An archive of a topic of this name deleted before: its manifests would count the old
        // records as this topic's offsets 0…, with every checksum right (and the archiver would
        // never copy the new ones below their end).
        if let archive = config.archive, let held = (try? FileSystem.list("\(archive)/\(name)"))?
            .filter({ FileSystem.exists("\(archive)/\(name)/\($0)/manifest.json") }).sorted(), !held.isEmpty {
            throw LogError(.invalidArgument, "topic \"\(name)\": its archive \(archive) already holds \(archive)/\(name) (partitions \(held.joined(separator: ", "))), the archive of a topic \"\(name)\" deleted before: move it away, or give the new topic another --archive", topic: name, file: "\(archive)/\(name)")
        }
        let metadata = TopicMetadata(name: name, config: config, createdAt: currentTimeMillis(), id: UUID().uuidString.lowercased())
        let staging = "\(directory)/.create-\(name)-\(UUID().uuidString.prefix(8))"
        do {
            try FileSystem.makeDirectories(staging)
            try FileSystem.writeAtomically(Array(try JSONEncoder.sorted.encode(metadata)), to: "\(staging)/topic.json")
            let empty = PartitionHead(nextOffset: 0, segmentBase: 0, position: 0, earliest: 0).encoded()
            for p in 0..<config.partitions {
                let dir = "\(staging)/\(p)"
                try FileSystem.makeDirectories(dir)
                _ = try FileDescriptor(path: SegmentFiles.logPath(dir, 0), flags: O_RDWR | O_CREAT)
                _ = try FileDescriptor(path: SegmentFiles.indexPath(dir, 0), flags: O_RDWR | O_CREAT)
                try FileSystem.writeAtomically(empty, to: "\(dir)/\(PartitionHead.fileName)")
            }
            try FileSystem.syncDirectory(staging)
            // The topic appears whole or not at all.
            if rename(staging, final) != 0 {
                let code = errno
                try? FileSystem.removeTree(staging)
                if code == EEXIST || code == ENOTEMPTY { throw LogError(.topicExists, "topic \"\(name)\" already exists", topic: name) }
                throw IOError("rename", path: staging, code: code)
            }
            try FileSystem.syncDirectory(directory)
        } catch let error as IOError {
            try? FileSystem.removeTree(staging)
            throw LogError.io(error, topic: name)
        }
        return metadata
    }

    public func deleteTopic(_ name: String) async throws {
        try await executor.run { try self.deleteTopicNow(name) }
    }

    private func deleteTopicNow(_ name: String) throws {
        let path = "\(directory)/\(name)"
        guard (try? Self.validate(name: name)) != nil, FileSystem.isDirectory(path) else { throw LogError.topicNotFound(name) }
        let doomed = "\(directory)/.delete-\(name)-\(UUID().uuidString.prefix(8))"
        do {
            try FileSystem.rename(path, to: doomed)  // gone at once for every reader
            try FileSystem.syncDirectory(directory)
            _ = open.withLock { $0.removeValue(forKey: name) }
            try FileSystem.removeTree(doomed)
        } catch let error as IOError {
            throw LogError.io(error, topic: name)
        }
    }

    public func listTopics() async throws -> [TopicMetadata] {
        let directory = self.directory
        let names = try await executor.run {
            try FileSystem.list(directory).filter { !$0.hasPrefix(".") && FileSystem.exists("\(directory)/\($0)/topic.json") }.sorted()
        }
        var topics: [TopicMetadata] = []
        for name in names { topics.append(try await topic(name).metadata) }
        return topics
    }

    public func metadata(topic name: String) async throws -> TopicMetadata {
        try await topic(name).metadata
    }

    // MARK: Records

    public func append(topic name: String, records: [ProducerRecord]) async throws -> [AppendResult] {
        let topic = try await topic(name)
        let count = topic.metadata.partitions
        let now = currentTimeMillis()
        // Where each record goes; records are not copied unless they go to several partitions.
        var targets = [Int32](repeating: 0, count: records.count)
        var single = true
        for (i, record) in records.enumerated() {
            let size = RecordBatchCodec.bodyBytes(record)
            guard size <= BatchHeader.maxRecordBytes else {
                throw LogError(.invalidArgument, "a record of \(size) bytes is larger than the limit of \(BatchHeader.maxRecordBytes) bytes", topic: name)
            }
            let p = try router.partition(of: record, topic: name, count: count)
            targets[i] = Int32(p)
            if p != Int(targets[0]) { single = false }
        }
        if records.isEmpty { return [] }
        if single { return [try await topic.partition(Int(targets[0])).append(records, now: now)] }
        var slot = [Int32](repeating: -1, count: count)
        var batches: [(partition: Int, records: [ProducerRecord])] = []
        for (i, record) in records.enumerated() {
            let p = Int(targets[i])
            if slot[p] < 0 {
                slot[p] = Int32(batches.count)
                batches.append((p, []))
            }
            batches[Int(slot[p])].records.append(record)
        }
        var partitions: [(PartitionLog, [ProducerRecord])] = []
        for batch in batches.sorted(by: { $0.partition < $1.partition }) {
            partitions.append((try await topic.partition(batch.partition), batch.records))
        }
        // Every partition's append runs to its end, so that a failure in one still reports
        // what the others wrote (in the error's `appended`).
        let outcomes = await withTaskGroup(of: (Int, Result<AppendResult, any Error>).self) { group in
            for (log, batch) in partitions {
                group.addTask {
                    do { return (log.partition, .success(try await log.append(batch, now: now))) } catch { return (log.partition, .failure(error)) }
                }
            }
            var outcomes: [(Int, Result<AppendResult, any Error>)] = []
            for await outcome in group { outcomes.append(outcome) }
            return outcomes.sorted { $0.0 < $1.0 }
        }
        var results: [AppendResult] = []
        var failure: (any Error)?
        for (_, outcome) in outcomes {
            switch outcome {
            case .success(let result): results.append(result)
            case .failure(let error): if failure == nil { failure = error }
            }
        }
        guard let failure else { return results }
        var error = failure as? LogError ?? LogError(.io, "topic \"\(name)\": \(failure)", topic: name)
        error.appended = results
        throw error
    }

    public func read(topic name: String, partition: Int, from offset: Int64, maxRecords: Int, maxBytes: Int) async throws -> LogRecords {
        try await topic(name).partition(partition).read(from: offset, maxRecords: maxRecords, maxBytes: maxBytes)
    }

    public func offsets(topic name: String) async throws -> [PartitionOffsets] {
        try await topic(name).offsets()
    }

    public func describe(topic name: String) async throws -> [PartitionDescription] {
        let topic = try await topic(name)
        let offsets = try await topic.offsets()
        // Opening each partition checks it: damage to acknowledged records is shown.
        var damages: [String?] = []
        for p in offsets.indices { damages.append(try await topic.partition(p).currentDamage()?.description) }
        return try await executor.run { [damages] in
            offsets.map { offsets in
                let dir = "\(topic.directory)/\(offsets.partition)"
                let segments = (try? SegmentFiles.list(dir)) ?? []
                let bytes = segments.reduce(Int64(0)) { $0 + (FileSystem.size(SegmentFiles.logPath(dir, $1)) ?? 0) }
                return PartitionDescription(partition: offsets.partition, earliest: offsets.earliest, end: offsets.end, bytes: bytes,
                                            segments: segments.count, damage: damages[offsets.partition])
            }
        }
    }

    /// Verifies every frame, index, head and archived file of a topic's partitions (or of one),
    /// changing nothing (`LogCheck`).
    /// - Throws: `LogError.topicNotFound`, `.partitionNotFound`.
    public func check(topic name: String, partition: Int? = nil) async throws -> [PartitionCheck] {
        let topic = try await topic(name)
        let count = topic.metadata.partitions
        if let partition, !(0..<count).contains(partition) { throw LogError.partitionNotFound(name, partition, count: count) }
        let partitions = partition.map { [$0] } ?? Array(0..<count)
        // A fresh archive: every archived file is read again, none taken as verified before.
        let archive = topic.metadata.config.archive.map { SegmentArchive(root: $0, incarnation: topic.metadata.id) }
        var checks: [PartitionCheck] = []
        for p in partitions {
            checks.append(try await executor.run { LogCheck.check(topic: name, partition: p, directory: "\(topic.directory)/\(p)", archive: archive) })
        }
        return checks
    }

    /// Repairs one partition's damage by giving up what is lost (`PartitionLog.repair`): cut
    /// after the last sound record, the lost offsets a recorded gap, the end offset kept (at
    /// least `atLeast`, what consumers have read up to). A sound partition is left as it is.
    /// - Throws: `LogError.topicNotFound`, `.partitionNotFound`; `.io` on a read-only log.
    public func repair(topic name: String, partition: Int, atLeast: Int64 = 0, actor: String,
                       now: Int64 = currentTimeMillis()) async throws -> PartitionRepair {
        try await topic(name).partition(partition).repair(atLeast: atLeast, actor: actor, now: now)
    }

    /// Copies the closed segments of a topic with an archive there now (JobHost does it with
    /// retention; retention also does it before deleting). Returns how many were copied.
    public func archiveClosedSegments(topic name: String) async throws -> Int {
        let topic = try await topic(name)
        guard topic.metadata.config.archive != nil else {
            throw LogError(.invalidArgument, "topic \"\(name)\" has no archive (create it with --archive DIR)", topic: name)
        }
        var copied = 0
        for p in 0..<topic.metadata.partitions { copied += try await topic.partition(p).archiveClosedSegments() }
        return copied
    }

    /// Per partition: what the archive holds, what the live log holds, and any gap between.
    /// The archive of topic `name` (created with `--archive DIR`).
    /// - Throws: `LogError(.invalidArgument)` when it has none.
    public func archive(topic name: String) async throws -> SegmentArchive {
        guard let archive = try await topic(name).archive else {
            throw LogError(.invalidArgument, "topic \"\(name)\" has no archive (create it with --archive DIR)", topic: name)
        }
        return archive
    }

    public func archiveStatus(topic name: String) async throws -> [ArchiveStatus] {
        let topic = try await topic(name)
        guard let archive = topic.archive else {
            throw LogError(.invalidArgument, "topic \"\(name)\" has no archive (create it with --archive DIR)", topic: name)
        }
        var statuses: [ArchiveStatus] = []
        for p in 0..<topic.metadata.partitions {
            let head = try await topic.partition(p).head()
            let archived = try await executor.run { try archive.entries(topic: name, partition: p) }
            statuses.append(ArchiveStatus(partition: p, archived: archived, liveEarliest: head.earliest, liveEnd: head.nextOffset))
        }
        return statuses
    }

    /// Applies every topic's retention now; returns how many segments were deleted.
    public func enforceRetention(now: Int64 = currentTimeMillis()) async throws -> Int {
        var deleted = 0
        for metadata in try await listTopics() {
            let topic = try await topic(metadata.name)
            for p in 0..<metadata.partitions {
                // Closed segments go to the archive as soon as they close, not only before deletion.
                if metadata.config.archive != nil { _ = try await topic.partition(p).archiveClosedSegments() }
                if metadata.config.retentionMs != nil || metadata.config.retentionBytes != nil {
                    deleted += try await topic.partition(p).enforceRetention(now: now)
                }
            }
        }
        return deleted
    }

    // MARK: Internals

    /// The topic, its metadata read (on the executor) the first time. Two callers at once may
    /// both read it; one keeps its `OpenTopic`, which opens no file until a partition is asked for.
    ///
    /// Another process may delete the topic and create it again under the same name: each use
    /// compares the `topic.json` there with the one loaded (one stat of a cached inode), so that
    /// this process never reads the new topic's files through the old one's state. A topic gone
    /// is not found; one created again is loaded afresh, with its own id.
    private func topic(_ name: String) async throws -> OpenTopic {
        if let known = open.withLock({ $0[name] }) {
            if FileSystem.identity("\(directory)/\(name)/topic.json") == known.identity { return known.topic }
            open.withLock { if $0[name]?.topic === known.topic { $0[name] = nil } }
        }
        return try await executor.run { try self.loadTopic(name) }
    }

    private func loadTopic(_ name: String) throws -> OpenTopic {
        guard (try? Self.validate(name: name)) != nil else { throw LogError.topicNotFound(name) }
        let dir = "\(directory)/\(name)"
        let metaPath = "\(dir)/topic.json"
        guard let identity = FileSystem.identity(metaPath) else { throw LogError.topicNotFound(name) }
        let bytes: [UInt8]
        do {
            bytes = try FileSystem.readAll(metaPath)
        } catch let error as IOError {
            throw LogError.io(error, topic: name)
        }
        let metadata = try Self.decodeMetadata(bytes, topic: name, path: metaPath)
        let opened = OpenTopic(metadata: metadata, directory: dir, executor: executor, files: files, readOnly: readOnly)
        return open.withLock { topics in
            if let known = topics[name], known.identity == identity { return known.topic }
            topics[name] = (opened, identity)
            return opened
        }
    }

    /// Decodes and checks a topic's `topic.json` (bytes from disk: anything).
    /// - Throws: `LogError.corrupt` naming the file and what is wrong with it.
    static func decodeMetadata(_ bytes: [UInt8], topic name: String, path: String) throws -> TopicMetadata {
        func corrupt(_ problem: String) -> LogError {
            LogError(.corrupt, "topic \"\(name)\": \(path) is damaged: \(problem)", topic: name, file: path)
        }
        let metadata: TopicMetadata
        do {
            metadata = try JSONDecoder().decode(TopicMetadata.self, from: Data(bytes))
        } catch {
            throw corrupt(DecodingProblem.describe(error, bytes: bytes))
        }
        guard metadata.name == name else {
            throw corrupt("it names the topic \"\(metadata.name.prefix(100))\", not the directory's \"\(name)\"")
        }
        do {
            try validate(metadata.config)
        } catch let error as LogError {
            throw corrupt(error.message)
        }
        if let archive = metadata.config.archive, archive.isEmpty || archive.utf8.contains(0) {
            throw corrupt("config.archive is not a directory path")
        }
        return metadata
    }

    static func validate(name: String) throws {
        let allowed = name.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2E || c == 0x5F || c == 0x2D
        }
        guard !name.isEmpty, name.utf8.count <= 249, allowed, !name.hasPrefix(".") else {
            throw LogError(.invalidArgument,
                           "invalid topic name \"\(name)\": use 1 to 249 of A-Z a-z 0-9 . _ - (not starting with a dot)", topic: name)
        }
    }

    static func validate(_ config: TopicConfig) throws {
        guard (1...10_000).contains(config.partitions) else {
            throw LogError(.invalidArgument, "partitions must be between 1 and 10000 (got \(config.partitions))")
        }
        if let ms = config.retentionMs, ms <= 0 { throw LogError(.invalidArgument, "retention must be positive") }
        if let bytes = config.retentionBytes, bytes <= 0 { throw LogError(.invalidArgument, "retention bytes must be positive") }
        guard (1024...(1 << 30)).contains(config.segmentBytes) else {
            throw LogError(.invalidArgument, "segment bytes must be between 1024 and 1073741824 (got \(config.segmentBytes))")
        }
    }
}

/// A partition's archive coverage (`kappactl archive status`).
public struct ArchiveStatus: Sendable, Codable, Equatable {
    public var partition: Int
    public var archived: [SegmentArchive.Entry]
    public var liveEarliest: Int64
    public var liveEnd: Int64

    public init(partition: Int, archived: [SegmentArchive.Entry], liveEarliest: Int64, liveEnd: Int64) {
        self.partition = partition
        self.archived = archived
        self.liveEarliest = liveEarliest
        self.liveEnd = liveEnd
    }

    /// Offsets held neither by the archive nor by the live log, below the live log's earliest:
    /// records that retention deleted before they were archived.
    public var gaps: [ClosedRange<Int64>] {
        var gaps: [ClosedRange<Int64>] = []
        var next: Int64 = 0
        for entry in archived.sorted(by: { $0.base < $1.base }) where entry.base < liveEarliest {
            if entry.base > next { gaps.append(next...(entry.base - 1)) }
            next = max(next, entry.end)
        }
        if next < liveEarliest { gaps.append(next...(liveEarliest - 1)) }
        return gaps
    }
}

/// Per partition: offsets, size on disk and number of segments.
public struct PartitionDescription: Sendable, Equatable, Codable {
    public var partition: Int
    public var earliest: Int64
    public var end: Int64
    public var bytes: Int64
    public var segments: Int
    /// Damage to acknowledged records (`PartitionDamage`), when the partition refuses writes.
    public var damage: String? = nil
}

extension JSONEncoder {
    /// Deterministic JSON: sorted keys, so that files and outputs diff cleanly.
    static var sorted: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }
}
