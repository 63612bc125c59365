import Synchronization

/// The retained unified log: topics split into partitions, each an append-only sequence of
/// records numbered 0, 1, 2, … (contiguous, never reused), deleted only by retention.
///
/// Backends: `SegmentLog` (embedded files, the default) and, with the `Kafka` trait, `KafkaLog`.
public protocol UnifiedLog: Sendable {
    /// Creates a topic. - Throws: `LogError` (`.topicExists`, `.invalidArgument`, `.io`).
    func createTopic(_ name: String, config: TopicConfig) async throws -> TopicMetadata

    /// Deletes a topic and all its records. - Throws: `LogError.topicNotFound`.
    func deleteTopic(_ name: String) async throws

    /// All topics, sorted by name.
    func listTopics() async throws -> [TopicMetadata]

    /// One topic's metadata. - Throws: `LogError.topicNotFound`.
    func metadata(topic: String) async throws -> TopicMetadata

    /// Appends records durably: returns once they are on stable storage. Records with a
    /// `partition` go there; keyed records go where Kafka's default partitioner would put them;
    /// unkeyed ones are spread across partitions. Records for one partition keep their order.
    /// - Returns: one result per partition written, in partition order.
    func append(topic: String, records: [ProducerRecord]) async throws -> [AppendResult]

    /// Reads records of one partition starting at `offset`, at most `maxRecords` of them (and
    /// roughly `maxBytes`). Empty when `offset` is the end offset.
    /// - Throws: `LogError.offsetBelowEarliest` (naming the earliest offset still retained) or
    ///   `.offsetBeyondEnd`; `.corrupt` naming the file and offset.
    func read(topic: String, partition: Int, from offset: Int64, maxRecords: Int, maxBytes: Int) async throws -> LogRecords

    /// Earliest retained and end (next to be written) offsets of every partition, without
    /// reading records.
    func offsets(topic: String) async throws -> [PartitionOffsets]

    /// Per partition: offsets, bytes held and segment count (where the backend knows them).
    func describe(topic: String) async throws -> [PartitionDescription]

    /// Tells the log how far a reader has durably got (`nextOffset` of `partition`), after the
    /// catalog committed it: Kafka records it as the consumer group's offset, for its own lag
    /// tools. Best effort and non-blocking; Kappa's own offsets stay in the catalog.
    func commitProgress(group: String, topic: String, partition: Int, nextOffset: Int64)

    /// True when retention, bytes and segments are kept by the log's own servers (Kafka's
    /// brokers) and `TopicMetadata.config` holds the partition count only.
    var configuredElsewhere: Bool { get }

    /// Refuses a topic whose archive cannot be this topic's (`SegmentArchive.checkNotBeyond`):
    /// `deploy` asks before a replay from offset 0 would read it.
    func checkArchive(topic: String) async throws
}

extension UnifiedLog {
    public var configuredElsewhere: Bool { false }
    /// The embedded log's archive is its own (`topic create` refuses another topic's).
    public func checkArchive(topic: String) async throws {}

    /// The embedded log has no consumer groups: the catalog's offsets are the only ones.
    public func commitProgress(group: String, topic: String, partition: Int, nextOffset: Int64) {}
}

/// Where an append puts a record, the same on every log: its explicit partition, else where
/// Kafka's default partitioner puts its key (murmur2), else the next partition in turn.
final class RecordRouter: Sendable {
    private let spread = Atomic<Int>(0)

    func partition(of record: ProducerRecord, topic: String, count: Int) throws -> Int {
        if let explicit = record.partition {
            guard explicit >= 0 && explicit < count else { throw LogError.partitionNotFound(topic, explicit, count: count) }
            return explicit
        }
        if let key = record.key { return Murmur2.partition(forKey: key, partitions: count) }
        return spread.wrappingAdd(1, ordering: .relaxed).oldValue % count
    }
}

/// How a topic is created.
public struct TopicConfig: Sendable, Codable, Equatable {
    /// Number of partitions (1…10,000).
    public var partitions: Int
    /// Delete closed segments whose newest record is older than this (milliseconds); nil keeps forever.
    public var retentionMs: Int64?
    /// Delete the oldest closed segments while a partition holds more than this; nil keeps all.
    public var retentionBytes: Int64?
    /// Size at which a partition starts a new segment file.
    public var segmentBytes: Int64
    /// A directory that keeps closed segments before retention deletes them (`SegmentArchive`);
    /// reads below the live log's earliest offset come from there.
    public var archive: String?

    /// Default segment size: 64 MiB.
    public static let defaultSegmentBytes: Int64 = 64 << 20

    public init(partitions: Int, retentionMs: Int64? = nil, retentionBytes: Int64? = nil,
                segmentBytes: Int64 = TopicConfig.defaultSegmentBytes, archive: String? = nil) {
        self.archive = archive
        self.partitions = partitions
        self.retentionMs = retentionMs
        self.retentionBytes = retentionBytes
        self.segmentBytes = segmentBytes
    }
}

/// A topic as stored.
public struct TopicMetadata: Sendable, Codable, Equatable {
    public var name: String
    public var config: TopicConfig
    /// Creation time, milliseconds since the epoch.
    public var createdAt: Int64
    /// This incarnation of the topic: a random id given at creation, so that a topic deleted and
    /// created again under the same name is another topic (nil for topics of a log that has no
    /// such id, as Kafka through librdkafka 2.0).
    public var id: String? = nil

    public var partitions: Int { config.partitions }

    /// What a version is bound to when it is deployed: the id, or for a topic the embedded log
    /// created before ids, its creation time; nil when the log cannot tell incarnations apart.
    public var incarnation: String? {
        if let id { return id }
        return createdAt > 0 ? "created-\(createdAt)" : nil
    }
}

/// One header of a record, as Kafka has them: a name and bytes, or no bytes (null).
public struct RecordHeader: Sendable, Equatable {
    public var name: String
    /// The header's bytes; nil is a null header value, distinct from no bytes.
    public var value: [UInt8]?

    public init(_ name: String, _ value: [UInt8]?) {
        self.name = name
        self.value = value
    }
}

/// A record to append.
public struct ProducerRecord: Sendable, Equatable {
    public var key: [UInt8]?
    /// The value's bytes; nil is a tombstone (Kafka's null value), distinct from no bytes.
    public var value: [UInt8]?
    /// Headers in order (names may repeat); most records have none.
    public var headers: [RecordHeader]
    /// Milliseconds since the epoch; nil means the time of the append.
    public var timestamp: Int64?
    /// An explicit partition, overriding the key.
    public var partition: Int?

    public init(key: [UInt8]? = nil, value: [UInt8]?, headers: [RecordHeader] = [], timestamp: Int64? = nil, partition: Int? = nil) {
        self.key = key
        self.value = value
        self.headers = headers
        self.timestamp = timestamp
        self.partition = partition
    }

    /// Bytes of key, value and headers (names and values), for size limits and budgets.
    public var payloadBytes: Int {
        var n = (key?.count ?? 0) + (value?.count ?? 0)
        for h in headers { n += h.name.utf8.count + (h.value?.count ?? 0) }
        return n
    }
}

/// Where an append put records in `partition`: `count` records, the first at `baseOffset`, in
/// `ranges` (one range unless another producer's records came in between, as on Kafka).
public struct AppendResult: Sendable, Equatable, Codable {
    public var partition: Int
    public var baseOffset: Int64
    public var count: Int
    public var ranges: [OffsetRange]

    /// `count` contiguous records from `baseOffset`.
    public init(partition: Int, baseOffset: Int64, count: Int) {
        self.partition = partition
        self.baseOffset = baseOffset
        self.count = count
        ranges = count > 0 ? [OffsetRange(first: baseOffset, last: baseOffset + Int64(count) - 1)] : []
    }

    /// Records at `offsets` (any order, no repeats).
    public init(partition: Int, offsets: [Int64]) {
        self.partition = partition
        count = offsets.count
        ranges = OffsetRange.covering(offsets)
        baseOffset = ranges.first?.first ?? 0
    }

    /// Adds what another append put in the same partition.
    mutating func add(_ other: AppendResult) {
        count += other.count
        ranges = OffsetRange.merged(ranges + other.ranges)
        baseOffset = ranges.first?.first ?? baseOffset
    }
}

/// Offsets `first…last` of one partition.
public struct OffsetRange: Sendable, Equatable, Codable, CustomStringConvertible {
    public var first: Int64
    public var last: Int64

    public var description: String { first == last ? "\(first)" : "\(first)…\(last)" }

    /// The fewest ranges holding exactly `offsets`.
    static func covering(_ offsets: [Int64]) -> [OffsetRange] {
        merged(offsets.map { OffsetRange(first: $0, last: $0) })
    }

    /// Ranges sorted, with adjacent ones joined.
    static func merged(_ ranges: [OffsetRange]) -> [OffsetRange] {
        var out: [OffsetRange] = []
        for r in ranges.sorted(by: { $0.first < $1.first }) {
            if let last = out.last, r.first <= last.last + 1 {
                out[out.count - 1].last = max(last.last, r.last)
            } else {
                out.append(r)
            }
        }
        return out
    }
}

/// The earliest retained and the end offset of a partition; `end - earliest` records are held.
public struct PartitionOffsets: Sendable, Equatable, Codable {
    public var partition: Int
    public var earliest: Int64
    public var end: Int64
}

/// One record read from the log.
public struct LogRecord: Sendable {
    public var partition: Int
    public var offset: Int64
    /// Milliseconds since the epoch.
    public var timestamp: Int64
    /// The key's bytes (a view into the batch's storage; indices do not start at 0).
    public var key: ArraySlice<UInt8>?
    /// The value's bytes (a view into the batch's storage; indices do not start at 0); nil is a
    /// tombstone (a null value), distinct from no bytes.
    public var value: ArraySlice<UInt8>?
    /// Headers in order; empty (and not allocated) for the records that have none.
    public var headers: [RecordHeader] = []
}

/// Records read in one call: one contiguous storage buffer and an entry per record, so that a
/// scan allocates per call, not per record.
public struct LogRecords: Sendable, RandomAccessCollection {
    struct Entry: Sendable {
        var offset: Int64
        var timestamp: Int64
        var keyStart: Int32
        var keyLength: Int32  // -1: no key
        var valueStart: Int32
        var valueLength: Int32  // -1: null value (a tombstone)
        var headersStart: Int32 = 0
        var headersLength: Int32 = 0  // 0: no headers; else a `RecordHeaderBlock` in storage
    }

    public let partition: Int
    let storage: [UInt8]
    let entries: [Entry]
    /// The offset to read from next: after the last record returned, or the offset asked for
    /// when nothing was returned.
    public let nextOffset: Int64

    init(partition: Int, storage: [UInt8], entries: [Entry], nextOffset: Int64) {
        self.partition = partition
        self.storage = storage
        self.entries = entries
        self.nextOffset = nextOffset
    }

    /// No records, continuing at `nextOffset`.
    public static func empty(partition: Int, nextOffset: Int64) -> LogRecords {
        LogRecords(partition: partition, storage: [], entries: [], nextOffset: nextOffset)
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { entries.count }

    public subscript(position: Int) -> LogRecord {
        let e = entries[position]
        let vs = Int(e.valueStart)
        let key: ArraySlice<UInt8>? = e.keyLength < 0 ? nil : storage[Int(e.keyStart)..<Int(e.keyStart) + Int(e.keyLength)]
        let value: ArraySlice<UInt8>? = e.valueLength < 0 ? nil : storage[vs..<vs + Int(e.valueLength)]
        let headers = e.headersLength == 0 ? [] : RecordHeaderBlock.headers(storage, start: Int(e.headersStart), length: Int(e.headersLength))
        return LogRecord(partition: partition, offset: e.offset, timestamp: e.timestamp, key: key,
                         value: value, headers: headers)
    }

    /// The first `count` records (all of them if there are fewer), continuing at the next
    /// record's offset: a batch cut short commits its first records only.
    public func firstRecords(_ count: Int) -> LogRecords {
        guard count < entries.count else { return self }
        return LogRecords(partition: partition, storage: storage, entries: Array(entries.prefix(Swift.max(0, count))),
                          nextOffset: entries[Swift.max(0, count)].offset)
    }

    /// Total bytes of keys, values and headers, for progress and rate figures.
    public var payloadBytes: Int {
        entries.reduce(0) { $0 + Int(Swift.max(0, $1.keyLength)) + Int(Swift.max(0, $1.valueLength)) + Int($1.headersLength) }
    }
}
