#if Kafka
import CRdKafka
import Foundation
import Synchronization

/// Where Kafka is and how to talk to it: `kafka://host:port[,host:port…]` plus librdkafka
/// settings passed through (`-X key=value`, for TLS and SASL). Values are never printed back:
/// `display` shows the brokers and the keys only.
public struct KafkaSettings: Sendable {
    public var bootstrapServers: String
    /// librdkafka settings in the order given; later ones win.
    public var settings: [KafkaSetting]

    public struct KafkaSetting: Sendable, Equatable {
        public var key: String
        public var value: String
    }

    /// - Throws: `LogError.invalidArgument` naming the URL or the setting (never its value).
    public init(url: String, passthrough: [String]) throws {
        guard url.hasPrefix("kafka://") else {
            throw LogError(.invalidArgument, "unsupported log \(Redaction.url(url)): use kafka://host:port[,host:port…]")
        }
        var rest = url.dropFirst("kafka://".count)
        while rest.hasSuffix("/") { rest = rest.dropLast() }
        let brokers = rest.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        guard !brokers.isEmpty, brokers.allSatisfy({ !$0.isEmpty && !$0.contains("@") && !$0.contains("?") }) else {
            throw LogError(.invalidArgument, "bad Kafka URL \(Redaction.url(url)): use kafka://host:port[,host:port…] and -X key=value for settings")
        }
        bootstrapServers = brokers.joined(separator: ",")
        settings = try passthrough.map { text in
            guard let eq = text.firstIndex(of: "="), eq != text.startIndex else {
                throw LogError(.invalidArgument, "-X \(text.prefix(while: { $0 != "=" })): use -X key=value")
            }
            return KafkaSetting(key: String(text[..<eq]), value: String(text[text.index(after: eq)...]))
        }
    }

    /// The `-X` values librdkafka's messages must not repeat: every value of a key that names a
    /// secret (`sasl.password`, `ssl.key.password`, `sasl.oauthbearer.client.secret`…), and every
    /// other value of 4 characters or more (short ones, like `all` or `1`, would blank out
    /// words and numbers of every message).
    public var hiddenValues: [String] {
        let secretWords = ["password", "secret", "key", "token", "jaas", "credential", "oauthbearer"]
        return settings.compactMap { s in
            guard !s.value.isEmpty else { return nil }
            let key = s.key.lowercased()
            return s.value.count >= 4 || secretWords.contains(where: key.contains) ? s.value : nil
        }
    }

    /// `text` (a librdkafka log line or error string) without any `-X` value (see `hiddenValues`).
    public func redact(_ text: String) -> String {
        Redaction.values(hiddenValues, in: text)
    }

    /// For messages: `kafka://b1:9092,b2:9092 (-X security.protocol, -X sasl.password)`.
    public var display: String {
        "kafka://\(bootstrapServers)" + (settings.isEmpty ? "" : " (" + settings.map { "-X \($0.key)" }.joined(separator: ", ") + ")")
    }
}

/// Routes librdkafka's log lines (from its own threads) to Kappa's logger, through the log's
/// reachability (which turns the lines about every broker being down into one state change).
/// Every line is first stripped of the `-X` values given (a warning may quote one).
final class KafkaLogSink: Sendable {
    let logger: EventLogger
    let reachability: KafkaReachability
    let hidden: [String]
    init(logger: EventLogger, reachability: KafkaReachability, settings: KafkaSettings) {
        self.logger = logger
        self.reachability = reachability
        self.hidden = settings.hiddenValues
    }

    /// `text` without the `-X` values; for librdkafka's error strings too.
    func redact(_ text: String) -> String { Redaction.values(hidden, in: text) }

    func line(level: Int32, facility: String, message raw: String) {
        let message = redact(raw)
        // syslog levels: 0…3 errors, 4 warnings, the rest informational.
        let mapped: EventLogger.Level = level <= 3 ? .error : level == 4 ? .warning : .info
        reachability.pass(facility: facility, message: message) {
            logger.log(mapped, "kafka", ["facility": facility, "message": message])
        }
    }
}

/// One librdkafka client instance (a producer or a consumer), destroyed with this object.
/// librdkafka's handles are thread-safe; the pointer never leaves the Kafka files.
final class KafkaHandle: @unchecked Sendable {
    let rk: OpaquePointer
    /// Where librdkafka's log callback goes (its opaque, unretained: this object keeps it alive
    /// until `rd_kafka_destroy` in `deinit` has stopped librdkafka's threads).
    let sink: KafkaLogSink

    /// Kappa's settings for every client, before those of its kind and the user's: brokers that
    /// come back are used within a second (librdkafka waits up to 10 s by default; 1 s is the
    /// Java client's default), and a broker closing a connection is not a line of its own (a
    /// connection that cannot be made again is, and every broker down is one state change).
    static let clientDefaults: [(String, String)] = [("reconnect.backoff.max.ms", "1000"), ("log.connection.close", "false")]

    /// - Parameter defaults: Kappa's settings for this kind of client, applied before the user's.
    init(_ type: rd_kafka_type_t, settings: KafkaSettings, defaults: [(String, String)], sink: KafkaLogSink,
         deliveryReports: Bool = false) throws {
        guard let conf = rd_kafka_conf_new() else { throw LogError(.io, "librdkafka: out of memory") }
        let all = [("bootstrap.servers", settings.bootstrapServers)] + Self.clientDefaults + defaults + settings.settings.map { ($0.key, $0.value) }
        for (key, value) in all {
            try Self.set(conf, key, value, sink: sink)
        }
        self.sink = sink
        rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(sink).toOpaque())
        rd_kafka_conf_set_log_cb(conf) { rk, level, facility, message in
            guard let rk, let opaque = rd_kafka_opaque(rk) else { return }
            Unmanaged<KafkaLogSink>.fromOpaque(opaque).takeUnretainedValue()
                .line(level: level, facility: facility.map { String(cString: $0) } ?? "", message: message.map { String(cString: $0) } ?? "")
        }
        if deliveryReports {
            rd_kafka_conf_set_dr_msg_cb(conf) { _, message, _ in
                guard let message, let opaque = message.pointee._private else { return }
                Unmanaged<DeliveryTracker>.fromOpaque(opaque).takeUnretainedValue()
                    .delivered(partition: Int(message.pointee.partition), offset: message.pointee.offset, error: message.pointee.err)
            }
        }
        var error = [CChar](repeating: 0, count: 512)
        guard let handle = rd_kafka_new(type, conf, &error, error.count) else {
            rd_kafka_conf_destroy(conf)  // rd_kafka_new failed: the configuration is still ours
            throw LogError(.invalidArgument, "Kafka client for \(settings.display): \(sink.redact(KafkaHandle.text(error)))")
        }
        rk = handle
    }

    deinit { rd_kafka_destroy(rk) }

    /// Sets one property; the error names the key and never echoes a user-given value.
    private static func set(_ conf: OpaquePointer, _ key: String, _ value: String, sink: KafkaLogSink) throws {
        var error = [CChar](repeating: 0, count: 512)
        guard rd_kafka_conf_set(conf, key, value, &error, error.count) == RD_KAFKA_CONF_OK else {
            // The value refused, whatever its length, and every other -X value.
            let message = Redaction.values([value], in: sink.redact(KafkaHandle.text(error)))
            rd_kafka_conf_destroy(conf)
            throw LogError(.invalidArgument, "Kafka setting \(key): \(message)")
        }
    }

    /// Every topic's name and partition count (`rd_kafka_metadata` for all topics: asking for
    /// one topic by name makes brokers with auto-creation create it).
    /// - Throws: `KafkaCallError`.
    func topics(timeoutMs: Int32 = 10_000) throws -> [String: Int] {
        var metadata: UnsafePointer<rd_kafka_metadata>?
        let err = rd_kafka_metadata(rk, 1, nil, &metadata, timeoutMs)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let md = metadata else { throw KafkaCallError(what: "metadata", err: err) }
        defer { rd_kafka_metadata_destroy(md) }
        var result: [String: Int] = [:]
        for i in 0..<Int(md.pointee.topic_cnt) {
            let t = md.pointee.topics[i]
            guard t.err == RD_KAFKA_RESP_ERR_NO_ERROR, let name = t.topic else { continue }
            result[String(cString: name)] = Int(t.partition_cnt)
        }
        return result
    }

    /// Earliest and end offsets of `partitions`, in their order: ListOffsets for the logical
    /// offsets -2 (earliest) and -1 (end) through `rd_kafka_offsets_for_times`, one request per
    /// leader for all the partitions, each bounded by `timeoutMs`. (Not
    /// `rd_kafka_query_watermark_offsets`: before librdkafka 2.3 it waits for as long as the
    /// partition's leader is down, whatever its timeout; librdkafka issue #2588.)
    /// - Throws: `KafkaCallError`.
    func listOffsets(topic: String, partitions: [Int], timeoutMs: Int32) throws -> [PartitionOffsets] {
        let earliest = try listOffsets(topic: topic, partitions: partitions, logical: -2, timeoutMs: timeoutMs)
        let end = try listOffsets(topic: topic, partitions: partitions, logical: -1, timeoutMs: timeoutMs)
        return partitions.indices.map { PartitionOffsets(partition: partitions[$0], earliest: earliest[$0], end: end[$0]) }
    }

    private func listOffsets(topic: String, partitions: [Int], logical: Int64, timeoutMs: Int32) throws -> [Int64] {
        guard let list = rd_kafka_topic_partition_list_new(Int32(partitions.count)) else { throw LogError(.io, "librdkafka: out of memory") }
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for p in partitions { rd_kafka_topic_partition_list_add(list, topic, Int32(p)).pointee.offset = logical }
        let err = rd_kafka_offsets_for_times(rk, list, timeoutMs)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaCallError(what: "offsets", err: err) }
        var found: [Int: Int64] = [:]
        for i in 0..<Int(list.pointee.cnt) {
            let e = list.pointee.elems[i]
            guard e.err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaCallError(what: "offsets", err: e.err, partition: Int(e.partition)) }
            found[Int(e.partition)] = e.offset
        }
        return try partitions.map { p in
            guard let offset = found[p], offset >= 0 else { throw KafkaCallError(what: "offsets", err: RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION, partition: p) }
            return offset
        }
    }

    /// A C error buffer's text (up to its NUL).
    static func text(_ buffer: [CChar]) -> String {
        String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func describe(_ err: rd_kafka_resp_err_t) -> String {
        "\(String(cString: rd_kafka_err2str(err))) (\(String(cString: rd_kafka_err2name(err))))"
    }
}

/// Counts the delivery reports of one `append` (called on whichever thread polls).
final class DeliveryTracker: Sendable {
    struct State {
        var pending = 0
        /// partition → the offsets acknowledged
        var delivered: [Int: [Int64]] = [:]
        var failure: (partition: Int, error: rd_kafka_resp_err_t)?
    }

    let state = Mutex(State())

    func sent() { state.withLock { $0.pending += 1 } }
    func notSent() { state.withLock { $0.pending -= 1 } }

    func delivered(partition: Int, offset: Int64, error: rd_kafka_resp_err_t) {
        state.withLock { s in
            s.pending -= 1
            if error != RD_KAFKA_RESP_ERR_NO_ERROR {
                if s.failure == nil { s.failure = (partition, error) }
                return
            }
            s.delivered[partition, default: []].append(offset)
        }
    }

    var done: Bool { state.withLock { $0.pending == 0 } }
}
#endif
