#if Kafka
import CRdKafka
import Foundation
import Synchronization

/// Consumer cursors by (topic, partition): each one a partition started on a consumer handle
/// (librdkafka's partition consumer, no group), fetching ahead from where the last read ended.
/// A read takes the idle cursor already at its offset, else an idle one it seeks, else a new
/// one; a handle ("lane") holds one cursor per partition, so two versions reading the same
/// partition at different offsets use two lanes and never make each other seek.
final class KafkaCursorPool: Sendable {
    private let settings: KafkaSettings
    private let sink: KafkaLogSink
    private let lanes = Mutex<[KafkaLane]>([])

    /// Consumer settings: no group, no automatic offset handling, an error (not a silent jump)
    /// when an offset is out of range, and a bounded read-ahead per partition.
    static let consumerDefaults: [(String, String)] = [
        ("enable.auto.commit", "false"), ("enable.auto.offset.store", "false"),
        ("enable.partition.eof", "false"), ("fetch.wait.max.ms", "100"),
        ("queued.max.messages.kbytes", "4096"),
    ]

    init(settings: KafkaSettings, sink: KafkaLogSink) {
        self.settings = settings
        self.sink = sink
    }

    /// A cursor unused this long stops fetching ahead (a retired version's, a finished replay's).
    static let idleMs: Int64 = 30_000

    func checkout(topic: String, partition: Int, offset: Int64) throws -> KafkaCursor {
        let key = KafkaCursor.Key(topic: topic, partition: partition)
        let now = currentTimeMillis()
        let idle = lanes.withLock { lanes in
            lanes.flatMap { $0.cursors.values }.filter { !$0.busy && $0.position != nil && now - $0.lastUsed > Self.idleMs }
                .map { cursor in cursor.busy = true; return cursor }
        }
        for cursor in idle {
            cursor.stop()
            checkin(cursor)
        }
        while true {
            let cursor = try lanes.withLock { lanes -> KafkaCursor? in
                let idle = lanes.compactMap { $0.cursors[key] }.filter { !$0.busy }
                if let cursor = idle.first(where: { $0.position == offset }) ?? idle.first {
                    cursor.busy = true
                    return cursor
                }
                guard let free = lanes.first(where: { $0.cursors[key] == nil }) else { return nil }
                let cursor = try free.cursor(key)
                cursor.busy = true
                return cursor
            }
            if let cursor { return cursor }
            // Every lane reads this partition already: a new consumer, started outside the lock
            // (librdkafka starts its threads), then taken on the next pass.
            let lane = KafkaLane(handle: try KafkaHandle(RD_KAFKA_CONSUMER, settings: settings, defaults: Self.consumerDefaults, sink: sink))
            lanes.withLock { $0.append(lane) }
        }
    }

    func checkin(_ cursor: KafkaCursor) {
        lanes.withLock { _ in
            cursor.busy = false
            cursor.lastUsed = currentTimeMillis()
        }
    }
}

/// One consumer handle and its topic handles and cursors. Guarded by the pool's lock.
final class KafkaLane: @unchecked Sendable {
    let handle: KafkaHandle
    var topics: [String: OpaquePointer] = [:]
    var cursors: [KafkaCursor.Key: KafkaCursor] = [:]

    init(handle: KafkaHandle) { self.handle = handle }

    deinit {
        for cursor in cursors.values where cursor.position != nil { rd_kafka_consume_stop(cursor.rkt, Int32(cursor.key.partition)) }
        for rkt in topics.values { rd_kafka_topic_destroy(rkt) }
    }

    func cursor(_ key: KafkaCursor.Key) throws -> KafkaCursor {
        let rkt: OpaquePointer
        if let known = topics[key.topic] {
            rkt = known
        } else {
            let conf = rd_kafka_topic_conf_new()
            var error = [CChar](repeating: 0, count: 256)
            _ = rd_kafka_topic_conf_set(conf, "auto.offset.reset", "error", &error, error.count)
            guard let created = rd_kafka_topic_new(handle.rk, key.topic, conf) else {
                throw LogError(.io, "topic \"\(key.topic)\": \(KafkaHandle.describe(rd_kafka_last_error()))", topic: key.topic)
            }
            topics[key.topic] = created
            rkt = created
        }
        let cursor = KafkaCursor(key: key, rkt: rkt, handle: handle)
        cursors[key] = cursor
        return cursor
    }
}

/// A partition being consumed on one lane. Used by one reader at a time (checked out of the
/// pool); `busy` is read and written under the pool's lock.
final class KafkaCursor: @unchecked Sendable {
    struct Key: Hashable { var topic: String; var partition: Int }

    let key: Key
    let rkt: OpaquePointer
    let handle: KafkaHandle
    var busy = false
    var lastUsed: Int64 = 0
    /// The offset the next fetched record will have; nil while not consuming.
    var position: Int64?

    init(key: Key, rkt: OpaquePointer, handle: KafkaHandle) {
        self.key = key
        self.rkt = rkt
        self.handle = handle
    }

    private var place: String { "topic \"\(key.topic)\" partition \(key.partition)" }

    /// Reads from `offset`: waits up to `waitMs` for a first record, then takes what is already
    /// fetched, up to `maxRecords` (and roughly `maxBytes`). Blocking.
    func read(from offset: Int64, maxRecords: Int, maxBytes: Int, waitMs: Int32) throws -> LogRecords {
        let p = Int32(key.partition)
        if position == nil {
            guard rd_kafka_consume_start(rkt, p, offset) == 0 else {
                throw LogError(.io, "\(place): cannot consume from offset \(offset): \(KafkaHandle.describe(rd_kafka_last_error()))",
                               topic: key.topic, partition: key.partition, offset: offset)
            }
            position = offset
        } else if position != offset {
            let err = rd_kafka_seek(rkt, p, offset, 10_000)
            guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
                stop()
                throw LogError(.io, "\(place): cannot seek to offset \(offset): \(KafkaHandle.describe(err))",
                               topic: key.topic, partition: key.partition, offset: offset)
            }
            position = offset
        }
        guard let first = rd_kafka_consume(rkt, p, Int32(waitMs)) else {
            return .empty(partition: key.partition, nextOffset: offset)
        }
        var messages = [first]
        defer { messages.forEach { rd_kafka_message_destroy($0) } }
        if first.pointee.err == RD_KAFKA_RESP_ERR_NO_ERROR && maxRecords > 1 {
            var more = [UnsafeMutablePointer<rd_kafka_message_t>?](repeating: nil, count: min(maxRecords - 1, 100_000))
            let n = rd_kafka_consume_batch(rkt, p, 0, &more, more.count)
            if n > 0 { messages += more[0..<n].compactMap { $0 } }
        }

        var storage: [UInt8] = []
        var entries: [LogRecords.Entry] = []
        var next = offset
        var bytes = 0
        for message in messages {
            let m = message.pointee
            if m.err != RD_KAFKA_RESP_ERR_NO_ERROR {
                if m.err == RD_KAFKA_RESP_ERR__PARTITION_EOF { continue }
                // Records after an error are fetched again from `next` on the next read.
                stop()
                if entries.isEmpty { throw error(m.err, at: offset) }
                break
            }
            if m.offset < next { continue }  // fetched before a seek
            if bytes >= maxBytes && !entries.isEmpty {
                break  // over the byte budget: the rest is fetched again (a seek back) on the next read

            }
            let keyStart = Int32(storage.count)
            if let k = m.key { storage.append(contentsOf: UnsafeRawBufferPointer(start: k, count: m.key_len)) }
            let valueStart = Int32(storage.count)
            if let v = m.payload { storage.append(contentsOf: UnsafeRawBufferPointer(start: v, count: m.len)) }
            var type = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
            let ts = rd_kafka_message_timestamp(message, &type)
            let headersStart = storage.count
            Self.appendHeaders(of: message, to: &storage)
            entries.append(LogRecords.Entry(offset: m.offset, timestamp: ts, keyStart: keyStart,
                                            keyLength: m.key == nil ? -1 : Int32(m.key_len),
                                            valueStart: valueStart, valueLength: m.payload == nil ? -1 : Int32(m.len),
                                            headersStart: Int32(headersStart), headersLength: Int32(storage.count - headersStart)))
            bytes += storage.count - Int(keyStart)
            next = m.offset + 1
        }
        if position != nil {
            // The fetcher has moved past `next` when records were left unread: seek on next read.
            let last = messages.last.map { $0.pointee.offset + 1 } ?? next
            position = last == next ? next : -1
        }
        return LogRecords(partition: key.partition, storage: storage, entries: entries, nextOffset: next)
    }

    /// Appends a message's headers as a `RecordHeaderBlock` (nothing when it has none).
    private static func appendHeaders(of message: UnsafeMutablePointer<rd_kafka_message_t>, to storage: inout [UInt8]) {
        var list: OpaquePointer?
        guard rd_kafka_message_headers(message, &list) == RD_KAFKA_RESP_ERR_NO_ERROR, let list else { return }
        var headers: [RecordHeader] = []
        var i = 0
        while true {
            var name: UnsafePointer<CChar>?
            var value: UnsafeRawPointer?
            var size = 0
            guard rd_kafka_header_get_all(list, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR, let name else { break }
            headers.append(RecordHeader(String(cString: name), value.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) }))
            i += 1
        }
        RecordHeaderBlock.append(headers, to: &storage)
    }

    /// Stops consuming; the next read starts again at the offset it asks for.
    func stop() {
        if position != nil { rd_kafka_consume_stop(rkt, Int32(key.partition)) }
        position = nil
    }

    /// An out-of-range offset becomes the log's own errors, with the watermarks named.
    private func error(_ err: rd_kafka_resp_err_t, at offset: Int64) -> LogError {
        if err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET || err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE,
           let marks = try? handle.listOffsets(topic: key.topic, partitions: [key.partition], timeoutMs: 5_000).first {
            if offset < marks.earliest {
                return LogError(.offsetBelowEarliest,
                                "\(place): offset \(offset) is no longer retained; the earliest offset available is \(marks.earliest)",
                                topic: key.topic, partition: key.partition, offset: offset)
            }
            if offset > marks.end {
                return LogError(.offsetBeyondEnd, "\(place): offset \(offset) is beyond the end offset \(marks.end)",
                                topic: key.topic, partition: key.partition, offset: offset)
            }
        }
        return LogError(.io, "\(place): Kafka fetch at offset \(offset): \(KafkaHandle.describe(err))",
                        topic: key.topic, partition: key.partition, offset: offset)
    }
}

/// Commits versions' next offsets to their consumer groups (`kappa.<job>.v<N>`) so that Kafka's
/// lag tools see them: best effort, coalesced, at most once a second per group, through the
/// admin API (AlterConsumerGroupOffsets; the groups have no members). A task sleeps between
/// rounds; a round's requests run on the Kafka lane of the blocking executor.
final class KafkaProgressCommitter: Sendable {
    private struct Pending { var offsets: [String: [KafkaCursor.Key: Int64]] = [:]; var stopped = false; var warned: Set<String> = [] }
    private let pending = Mutex(Pending())
    private let client: KafkaHandle
    private let logger: EventLogger
    private let lane: BlockingExecutor.Lane

    init(client: KafkaHandle, logger: EventLogger, lane: BlockingExecutor.Lane) {
        self.client = client
        self.logger = logger
        self.lane = lane
        Task { [self] in await loop() }
    }

    func record(group: String, topic: String, partition: Int, nextOffset: Int64) {
        pending.withLock { $0.offsets[group, default: [:]][KafkaCursor.Key(topic: topic, partition: partition)] = nextOffset }
    }

    func stop() { pending.withLock { $0.stopped = true } }

    private func loop() async {
        while true {
            let (batch, stopped) = pending.withLock { p -> ([String: [KafkaCursor.Key: Int64]], Bool) in
                defer { p.offsets = [:] }
                return (p.offsets, p.stopped)
            }
            if !batch.isEmpty {
                _ = try? await lane.run { [self] in for (group, offsets) in batch { commit(group: group, offsets) } }
            }
            if stopped { return }
            try? await Task.sleep(for: .seconds(1))
        }
    }

    private func commit(group: String, _ offsets: [KafkaCursor.Key: Int64]) {
        guard let list = rd_kafka_topic_partition_list_new(Int32(offsets.count)) else { return }
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for (key, offset) in offsets { rd_kafka_topic_partition_list_add(list, key.topic, Int32(key.partition)).pointee.offset = offset }
        guard let queue = rd_kafka_queue_new(client.rk) else { return }
        defer { rd_kafka_queue_destroy(queue) }
        var request: [OpaquePointer?] = [rd_kafka_AlterConsumerGroupOffsets_new(group, list)]
        defer { rd_kafka_AlterConsumerGroupOffsets_destroy(request[0]) }
        rd_kafka_AlterConsumerGroupOffsets(client.rk, &request, 1, nil, queue)
        guard let event = rd_kafka_queue_poll(queue, 15_000) else { return warn(group, "no answer") }
        defer { rd_kafka_event_destroy(event) }
        let err = rd_kafka_event_error(event)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { warn(group, KafkaHandle.describe(err)) }
    }

    /// Once per group: the table is exact either way; only Kafka's view of the lag is stale.
    private func warn(_ group: String, _ reason: String) {
        guard pending.withLock({ $0.warned.insert(group).inserted }) else { return }
        logger.log(.warning, "kafka group offsets not committed", ["group": group, "reason": reason])
    }
}
#endif
