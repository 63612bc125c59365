#if Kafka
import CRdKafka
import Foundation
import Synchronization

/// The unified log in Apache Kafka, through librdkafka.
///
/// - Appends: an idempotent producer with `acks=all`; records are partitioned here exactly as on
///   the embedded log (explicit partition, else Kafka's murmur2 of the key, else spread), and an
///   append returns once every record is acknowledged by all in-sync replicas.
/// - Reads: by explicit partition and offset (the offsets a version stored in the catalog, never
///   a consumer group's), through a small pool of consumer cursors that keep fetching ahead, so a
///   version reading a partition sequentially never waits for a round trip per batch.
/// - Offsets: watermarks from the partition leaders; topics through the admin API.
/// - Progress: after a version commits, its next offsets are also committed (best effort, at most
///   once a second) to the consumer group `kappa.<job>.v<N>`, for Kafka's own lag tools.
///
/// Every blocking librdkafka call runs on the blocking executor. Those that wait for the brokers go
/// through one lane for all of the process's Kafka logs (`blocking`), at most half as wide as the
/// executor: a cluster that stops answering makes each wait up to its timeout (10 s for metadata
/// and watermarks, 35 s for an admin request, a minute for an acknowledgement), and those waits
/// must not take the threads the store and the files need. Reads do not wait for the brokers on a
/// thread: a read polls what the consumer has fetched ahead without waiting, on the executor
/// itself (not the lane, so that it never queues behind a slow append), and sleeps
/// (asynchronously, holding no thread) between polls.
///
/// Brokers that go down and come back (`KafkaReachability`): the clients reconnect by
/// themselves. Meanwhile reads return what was fetched ahead, then nothing; offsets and metadata
/// fail with an error naming the topic and the brokers, within about half a second once
/// connections to the brokers fail (the controller asks every tick: it asks again); an append waits for the acknowledgements, up to
/// `message.timeout.ms` (60 s; `-X message.timeout.ms=…`), then fails naming topic and
/// partition: an acknowledged record is written exactly once (the producer is idempotent), and no
/// record is reported appended before it is acknowledged. The outage is logged once when it
/// starts and once when it ends.
public final class KafkaLog: UnifiedLog, Sendable {
    public let settings: KafkaSettings
    let logger: EventLogger
    /// Producer, metadata, offsets and admin requests.
    private let client: KafkaHandle
    private let cursors: KafkaCursorPool
    private let reachability: KafkaReachability
    private let progress: KafkaProgressCommitter
    private let router = RecordRouter()
    /// Partition counts seen, to check partitions without a metadata request per read.
    private let partitionCounts = Mutex<[String: Int]>([:])
    /// How long a read waits for a first record when none is fetched yet.
    let readWaitMs: Int32
    /// Where the topics' records below the brokers' retention are kept (`LogMirror` writes it):
    /// reads below the earliest offset come from there, and the earliest offset counts it.
    public let archive: SegmentArchive?

    /// Kappa's producer settings; the user's `-X` settings come after and win.
    static let producerDefaults: [(String, String)] = [
        ("acks", "all"), ("enable.idempotence", "true"), ("linger.ms", "1"),
        ("message.timeout.ms", "60000"),
    ]

    public init(settings: KafkaSettings, logger: EventLogger, readWaitMs: Int32 = 500, archive: SegmentArchive? = nil) throws {
        self.settings = settings
        self.archive = archive
        self.logger = logger
        self.readWaitMs = readWaitMs
        let reachability = KafkaReachability(logger: logger, brokers: settings.display)
        let sink = KafkaLogSink(logger: logger, reachability: reachability, settings: settings)
        self.reachability = reachability
        client = try KafkaHandle(RD_KAFKA_PRODUCER, settings: settings, defaults: Self.producerDefaults, sink: sink,
                                 deliveryReports: true)
        cursors = KafkaCursorPool(settings: settings, sink: sink)
        progress = KafkaProgressCommitter(client: client, logger: logger, lane: Self.blocking)
    }

    deinit { progress.stop() }

    /// Retention and segments are the brokers' topic configuration (`kafka-configs`).
    public var configuredElsewhere: Bool { true }

    /// The lane for the calls that wait for the brokers (see above).
    static let blocking = BlockingExecutor.shared.lane("kafka", width: max(1, BlockingExecutor.shared.threads / 2))

    // MARK: Topics

    public func createTopic(_ name: String, config: TopicConfig) async throws -> TopicMetadata {
        try SegmentLog.validate(name: name)
        guard (1...100_000).contains(config.partitions) else {
            throw LogError(.invalidArgument, "partitions must be between 1 and 100000 (got \(config.partitions))")
        }
        // A topic that exists is said so at once, from the cluster's metadata: CreateTopics for
        // it would wait on brokers (the mock cluster never answers it) before failing.
        if try await listTopics().contains(where: { $0.name == name }) {
            throw LogError(.topicExists, "topic \"\(name)\" already exists", topic: name)
        }
        let client = self.client
        try await Self.blocking.run {
            try KafkaAdmin(client).createTopic(name, config: config)
        }
        partitionCounts.withLock { $0[name] = config.partitions }
        return TopicMetadata(name: name, config: config, createdAt: currentTimeMillis())
    }

    public func deleteTopic(_ name: String) async throws {
        _ = try await metadata(topic: name)
        let client = self.client
        try await Self.blocking.run { try KafkaAdmin(client).deleteTopic(name) }
        partitionCounts.withLock { $0[name] = nil }
    }

    public func listTopics() async throws -> [TopicMetadata] {
        let topics = try await topics(for: nil)
        partitionCounts.withLock { known in for (k, v) in topics { known[k] = v } }
        return topics.filter { !$0.key.hasPrefix("__") }.sorted { $0.key < $1.key }.map(Self.metadata)
    }

    public func metadata(topic name: String) async throws -> TopicMetadata {
        let topics = try await topics(for: name)
        guard let count = topics[name] else { throw LogError.topicNotFound(name) }
        partitionCounts.withLock { $0[name] = count }
        return Self.metadata((name, count))
    }

    /// Every topic's partition count; an error names `topic` (the one asked about), if any.
    private func topics(for topic: String?) async throws -> [String: Int] {
        let client = self.client, reachability = self.reachability
        return try await Self.blocking.run {
            do {
                return try reachability.ask { try client.topics(timeoutMs: $0) }
            } catch let error as KafkaCallError {
                throw error.logError(topic: topic, reachability: reachability)
            }
        }
    }

    /// Kafka keeps retention and segment size in the broker's topic configuration
    /// (`kafka-configs`); Kappa knows the partition count only.
    private static func metadata(_ topic: (key: String, value: Int)) -> TopicMetadata {
        TopicMetadata(name: topic.key, config: TopicConfig(partitions: topic.value), createdAt: 0)
    }

    private func partitionCount(_ topic: String) async throws -> Int {
        if let known = partitionCounts.withLock({ $0[topic] }) { return known }
        return try await metadata(topic: topic).partitions
    }

    // MARK: Records

    public func append(topic name: String, records: [ProducerRecord]) async throws -> [AppendResult] {
        let count = try await partitionCount(name)
        let now = currentTimeMillis()
        var routed: [(Int, ProducerRecord)] = []
        routed.reserveCapacity(records.count)
        for (i, record) in records.enumerated() {
            // librdkafka takes 0 as "no timestamp" and stamps the time of the append; Kafka has
            // no negative times. Refused, never stored as another time than the one given.
            if let timestamp = record.timestamp, timestamp < 1 {
                throw LogError(.invalidArgument,
                               "topic \"\(name)\": record \(i + 1) of the append has timestamp \(timestamp); Kafka takes timestamps from 1 (ms since 1970) on (librdkafka would store 0 as the time of the append); nothing was appended",
                               topic: name)
            }
            routed.append((try router.partition(of: record, topic: name, count: count), record))
        }
        let client = self.client, batch = routed, reachability = self.reachability
        return try await Self.blocking.run {
            let results = try Self.produce(client, topic: name, batch, now: now)
            if !results.isEmpty { reachability.answered() }
            return results
        }
    }

    /// Bytes for librdkafka: nil for no bytes (a null key or value), a non-nil pointer (to a
    /// byte not read) for empty bytes, which librdkafka would otherwise take for null.
    private static func withValue<R>(_ bytes: [UInt8]?, _ body: (UnsafeRawPointer?, Int) -> R) -> R {
        guard let bytes else { return body(nil, 0) }
        if bytes.isEmpty { return withUnsafeBytes(of: UInt8(0)) { body($0.baseAddress, 0) } }
        return bytes.withUnsafeBytes { body($0.baseAddress, $0.count) }
    }

    /// A librdkafka header list for `headers` (nil for none; the produce call takes it over).
    private static func makeHeaders(_ headers: [RecordHeader]) -> OpaquePointer? {
        if headers.isEmpty { return nil }
        let list = rd_kafka_headers_new(headers.count)
        for h in headers {
            _ = withValue(h.value) { value, count in
                rd_kafka_header_add(list, h.name, -1, value, count)
            }
        }
        return list
    }

    /// Enqueues every record, then serves delivery reports until all are acknowledged.
    private static func produce(_ client: KafkaHandle, topic: String, _ records: [(Int, ProducerRecord)], now: Int64) throws -> [AppendResult] {
        let tracker = DeliveryTracker()
        let opaque = Unmanaged.passRetained(tracker)
        defer {
            while !tracker.done { rd_kafka_poll(client.rk, 50) }
            opaque.release()
        }
        for (p, record) in records {
            tracker.sent()
            while true {
                let headers = makeHeaders(record.headers)
                let err = withValue(record.value) { value, valueCount in
                    withValue(record.key) { key, keyCount in
                        kappa_rd_produce_headers(client.rk, topic, Int32(p), value, valueCount, key, keyCount,
                                                 record.timestamp ?? now, headers, opaque.toOpaque())
                    }
                }
                if err != RD_KAFKA_RESP_ERR_NO_ERROR, let headers { rd_kafka_headers_destroy(headers) }  // still ours
                if err == RD_KAFKA_RESP_ERR_NO_ERROR { break }
                if err == RD_KAFKA_RESP_ERR__QUEUE_FULL { rd_kafka_poll(client.rk, 20); continue }
                tracker.notSent()
                throw LogError(err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ? .invalidArgument : .io,
                               "topic \"\(topic)\" partition \(p): Kafka refused a record: \(KafkaHandle.describe(err))",
                               topic: topic, partition: p)
            }
            rd_kafka_poll(client.rk, 0)
        }
        while !tracker.done { rd_kafka_poll(client.rk, 50) }
        return try tracker.state.withLock { s in
            if let failure = s.failure {
                throw LogError(.io, "topic \"\(topic)\" partition \(failure.partition): Kafka did not acknowledge the append: \(KafkaHandle.describe(failure.error)); records before this error may have been written (retrying can duplicate them)",
                               topic: topic, partition: failure.partition)
            }
            return s.delivered.sorted { $0.key < $1.key }.map { AppendResult(partition: $0.key, offsets: $0.value) }
        }
    }

    public func read(topic name: String, partition: Int, from offset: Int64, maxRecords: Int, maxBytes: Int) async throws -> LogRecords {
        let count = try await partitionCount(name)
        guard partition >= 0 && partition < count else { throw LogError.partitionNotFound(name, partition, count: count) }
        // librdkafka takes -1 and -2 for its logical offsets (end, beginning): never pass one on.
        if offset < 0 {
            let earliest = try await offsets(topic: name)[partition].earliest
            throw LogError(.offsetBelowEarliest,
                           "topic \"\(name)\" partition \(partition): offset \(offset) is no longer retained; the earliest offset available is \(earliest)",
                           topic: name, partition: partition, offset: offset)
        }
        if maxRecords <= 0 { return .empty(partition: partition, nextOffset: offset) }
        let cursors = self.cursors, archive = self.archive
        // Taking a cursor may start a consumer or stop idle ones: blocking too.
        let executor = BlockingExecutor.shared
        let start = try await executor.run { () -> ReadStart in
            // What the archive holds is read from there (the same records, byte for byte): no
            // broker round trip, and no waiting for a fetch below the brokers' retention to fail.
            if let archived = try archive?.read(topic: name, partition: partition, from: offset, maxRecords: maxRecords, maxBytes: maxBytes) {
                return .archived(archived)
            }
            return .cursor(try cursors.checkout(topic: name, partition: partition, offset: offset))
        }
        let cursor: KafkaCursor
        switch start {
        case .archived(let records): return records
        case .cursor(let checkedOut): cursor = checkedOut
        }
        defer { cursors.checkin(cursor) }
        // Up to `readWaitMs` after the first poll for a first record: polls that do not wait, with
        // pauses from 1 ms growing to 50 ms between them (records fetched ahead are there at the
        // first poll; a reader at the head sees new ones at most 50 ms late). Time spent waiting
        // for a thread does not count, so a loaded executor does not turn reads empty.
        var deadline: Int64?
        var pause: Int64 = 1
        while true {
            let records = try await executor.run {
                try cursor.read(from: offset, maxRecords: maxRecords, maxBytes: maxBytes, waitMs: 0)
            }
            if !records.isEmpty || Task.isCancelled { return records }
            let now = currentTimeMillis()
            let end = deadline ?? now + Int64(readWaitMs)
            deadline = end
            if now >= end {
                // Records fetched ahead say nothing about the brokers: while they are down, an
                // empty read asks them (once a second for the whole log) so that an outage ends.
                if reachability.probeDue() { _ = try? await offsets(topic: name) }
                return records
            }
            try? await Task.sleep(for: .milliseconds(min(pause, end - now)))
            pause = min(pause * 2, 50)
        }
    }

    /// Where a read starts: records in the archive, or a cursor checked out of the pool.
    private enum ReadStart: Sendable {
        case archived(LogRecords)
        case cursor(KafkaCursor)
    }

    public func offsets(topic name: String) async throws -> [PartitionOffsets] {
        // The partition count this log has seen (a metadata request only the first time): the
        // controller asks for offsets every tick.
        let count = try await partitionCount(name)
        let client = self.client, archive = self.archive, reachability = self.reachability
        return try await Self.blocking.run {
            let live: [PartitionOffsets]
            do {
                live = try reachability.ask { try client.listOffsets(topic: name, partitions: Array(0..<count), timeoutMs: $0) }
            } catch let error as KafkaCallError {
                throw error.logError(topic: name, reachability: reachability)
            }
            guard let archive else { return live }
            return try live.map { offsets in
                var offsets = offsets
                offsets.earliest = try archive.earliest(topic: name, partition: offsets.partition, liveEarliest: offsets.earliest)
                return offsets
            }
        }
    }

    /// Every partition's archive against the brokers' end: a partition whose archive ends
    /// beyond it holds another topic's records (or ones the brokers lost).
    /// - Throws: `LogError.corrupt` naming each such partition's folder and both ends.
    public func checkArchive(topic name: String) async throws {
        guard let archive else { return }
        let live = try await offsets(topic: name)
        try await Self.blocking.run {
            var refused: [LogError] = []
            for offsets in live {
                do { try archive.checkNotBeyond(topic: name, partition: offsets.partition, liveEnd: offsets.end) } catch let error as LogError { refused.append(error) }
            }
            guard let first = refused.first else { return }
            var all = first
            all.message = refused.map(\.message).joined(separator: "; ")
            throw all
        }
    }

    /// Offsets only (bytes and segments -1): Kafka's brokers know them (`kafka-log-dirs`).
    public func describe(topic name: String) async throws -> [PartitionDescription] {
        try await offsets(topic: name).map {
            PartitionDescription(partition: $0.partition, earliest: $0.earliest, end: $0.end, bytes: -1, segments: -1)
        }
    }

    public func commitProgress(group: String, topic: String, partition: Int, nextOffset: Int64) {
        progress.record(group: group, topic: topic, partition: partition, nextOffset: nextOffset)
    }

    /// A consumer group's committed offset per partition (nil where it has none): what
    /// `kafka-consumer-groups --describe` reads.
    public func groupOffsets(group: String, topic: String) async throws -> [Int64?] {
        let count = try await metadata(topic: topic).partitions
        let client = self.client
        return try await Self.blocking.run { try KafkaAdmin(client).groupOffsets(group: group, topic: topic, partitions: count) }
    }
}

/// Admin requests (CreateTopics, DeleteTopics) on the client's handle. Blocking: call it on the
/// executor (`KafkaLog.blocking`).
struct KafkaAdmin {
    let client: KafkaHandle
    var timeoutMs: Int32 = 30_000

    init(_ client: KafkaHandle) { self.client = client }

    func createTopic(_ name: String, config: TopicConfig) throws {
        var error = [CChar](repeating: 0, count: 512)
        guard let topic = rd_kafka_NewTopic_new(name, Int32(config.partitions), -1, &error, error.count) else {
            throw LogError(.invalidArgument, "topic \"\(name)\": \(KafkaHandle.text(error))", topic: name)
        }
        defer { rd_kafka_NewTopic_destroy(topic) }
        // Kappa replays from offset 0: without a retention given, keep everything.
        rd_kafka_NewTopic_set_config(topic, "retention.ms", String(config.retentionMs ?? -1))
        rd_kafka_NewTopic_set_config(topic, "retention.bytes", String(config.retentionBytes ?? -1))
        rd_kafka_NewTopic_set_config(topic, "segment.bytes", String(config.segmentBytes))
        try request("CreateTopics", topic: name) { options, queue in
            var topics: [OpaquePointer?] = [topic]
            rd_kafka_CreateTopics(client.rk, &topics, 1, options, queue)
        } check: { event in
            var n = 0
            guard let result = rd_kafka_event_CreateTopics_result(event),
                  let topics = rd_kafka_CreateTopics_result_topics(result, &n), n > 0 else { return }
            try self.check(topics[0], name)
        }
    }

    func deleteTopic(_ name: String) throws {
        guard let topic = rd_kafka_DeleteTopic_new(name) else { throw LogError(.io, "librdkafka: out of memory") }
        defer { rd_kafka_DeleteTopic_destroy(topic) }
        try request("DeleteTopics", topic: name) { options, queue in
            var topics: [OpaquePointer?] = [topic]
            rd_kafka_DeleteTopics(client.rk, &topics, 1, options, queue)
        } check: { event in
            var n = 0
            guard let result = rd_kafka_event_DeleteTopics_result(event),
                  let topics = rd_kafka_DeleteTopics_result_topics(result, &n), n > 0 else { return }
            try self.check(topics[0], name)
        }
    }

    func groupOffsets(group: String, topic: String, partitions: Int) throws -> [Int64?] {
        guard let list = rd_kafka_topic_partition_list_new(Int32(partitions)) else { throw LogError(.io, "librdkafka: out of memory") }
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for p in 0..<partitions { rd_kafka_topic_partition_list_add(list, topic, Int32(p)) }
        var offsets = [Int64?](repeating: nil, count: partitions)
        let request = rd_kafka_ListConsumerGroupOffsets_new(group, list)
        defer { rd_kafka_ListConsumerGroupOffsets_destroy(request) }
        try self.request("ListConsumerGroupOffsets", topic: topic) { options, queue in
            var requests: [OpaquePointer?] = [request]
            rd_kafka_ListConsumerGroupOffsets(client.rk, &requests, 1, options, queue)
        } check: { event in
            var n = 0
            guard let result = rd_kafka_event_ListConsumerGroupOffsets_result(event),
                  let groups = rd_kafka_ListConsumerGroupOffsets_result_groups(result, &n), n > 0,
                  let found = rd_kafka_group_result_partitions(groups[0]) else { return }
            for i in 0..<Int(found.pointee.cnt) {
                let e = found.pointee.elems[i]
                if e.err == RD_KAFKA_RESP_ERR_NO_ERROR, e.offset >= 0, Int(e.partition) < partitions { offsets[Int(e.partition)] = e.offset }
            }
        }
        return offsets
    }

    private func check(_ result: OpaquePointer?, _ name: String) throws {
        let err = rd_kafka_topic_result_error(result)
        switch err {
        case RD_KAFKA_RESP_ERR_NO_ERROR: return
        case RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS:
            throw LogError(.topicExists, "topic \"\(name)\" already exists", topic: name)
        case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
            throw LogError.topicNotFound(name)
        default:
            let text = rd_kafka_topic_result_error_string(result).map { client.sink.redact(String(cString: $0)) } ?? KafkaHandle.describe(err)
            throw LogError(.invalidArgument, "topic \"\(name)\": Kafka refused: \(text)", topic: name)
        }
    }

    /// Issues one admin request on a queue of its own and waits for its result event.
    private func request(_ what: String, topic: String, issue: (OpaquePointer?, OpaquePointer?) -> Void,
                         check: (OpaquePointer?) throws -> Void) throws {
        guard let queue = rd_kafka_queue_new(client.rk) else { throw LogError(.io, "librdkafka: out of memory") }
        defer { rd_kafka_queue_destroy(queue) }
        let options = rd_kafka_AdminOptions_new(client.rk, RD_KAFKA_ADMIN_OP_ANY)
        defer { rd_kafka_AdminOptions_destroy(options) }
        var error = [CChar](repeating: 0, count: 512)
        _ = rd_kafka_AdminOptions_set_request_timeout(options, timeoutMs, &error, error.count)
        _ = rd_kafka_AdminOptions_set_operation_timeout(options, timeoutMs, &error, error.count)
        issue(options, queue)
        guard let event = rd_kafka_queue_poll(queue, timeoutMs + 5_000) else {
            throw LogError(.io, "topic \"\(topic)\": Kafka did not answer \(what) within \(timeoutMs / 1000) s (does the cluster support the admin API?)", topic: topic)
        }
        defer { rd_kafka_event_destroy(event) }
        let err = rd_kafka_event_error(event)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
            let text = rd_kafka_event_error_string(event).map { client.sink.redact(String(cString: $0)) } ?? KafkaHandle.describe(err)
            throw LogError(.io, "topic \"\(topic)\": Kafka \(what) failed: \(text)", topic: topic)
        }
        try check(event)
    }
}
#endif
