#if Kafka
import CRdKafka
import Foundation
import KappaCore

/// KafkaLog against librdkafka itself, both on librdkafka's mock cluster in this process: an
/// append of 100-byte records in batches of 1,000, each waiting for its acknowledgements, against
/// one producer that enqueues everything and flushes once (the ceiling); a scan through KafkaLog's
/// cursors against librdkafka's partition consumer draining the same partition, both timed from
/// their first record. (librdkafka
/// 2.0's mock keeps about 5 MB per partition: hence a topic per round and 40,000 records.)
struct KafkaBenchmark {
    var records: Int
    var rounds: Int
    static let batch = 1000

    func run() async throws {
        let cluster = try KafkaMockCluster(brokers: 1)
        let n = records / Self.batch * Self.batch
        let value = [UInt8](repeating: 0x61, count: 100)
        print("kappa-bench kafka: \(n) records of 100 bytes, \(rounds) rounds (medians), librdkafka \(String(cString: rd_kafka_version_str())) mock cluster at \(cluster.bootstrapServers)")
        let log = try KafkaLog(settings: KafkaSettings(url: cluster.url, passthrough: []), logger: EventLogger(format: .text) { _ in })
        let batch = (0..<Self.batch).map { _ in ProducerRecord(value: value, partition: 0) }
        var rawProduces: [Double] = [], appends: [Double] = [], rawConsumes: [Double] = [], scans: [Double] = []
        for round in 0..<rounds {
            try cluster.createTopic("raw\(round)", partitions: 1)
            try cluster.createTopic("bench\(round)", partitions: 1)
            rawProduces.append(try Self.rawProduce(cluster.bootstrapServers, topic: "raw\(round)", count: n, value: value))
            var started = ContinuousClock.now
            for _ in 0..<(n / Self.batch) { _ = try await log.append(topic: "bench\(round)", records: batch) }
            appends.append(seconds(since: started))

            rawConsumes.append(try Self.rawConsume(cluster.bootstrapServers, topic: "raw\(round)", count: n))
            // Timed from the first record on, for both: a cursor's start (metadata, first fetch) is
            // a one-off latency, not the replay rate.
            var offset = try await log.read(topic: "bench\(round)", partition: 0, from: 0, maxRecords: 1, maxBytes: 1 << 20).nextOffset
            started = ContinuousClock.now
            while offset < Int64(n) {
                offset = try await log.read(topic: "bench\(round)", partition: 0, from: offset, maxRecords: 10_000, maxBytes: 8 << 20).nextOffset
            }
            scans.append(seconds(since: started))
        }
        print("rounds (s): raw produce \(rawProduces.map { fmt($0, 3) }) append \(appends.map { fmt($0, 3) }) raw consume \(rawConsumes.map { fmt($0, 3) }) scan \(scans.map { fmt($0, 3) })")
        let rawProduce = median(rawProduces), append = median(appends), rawConsume = median(rawConsumes), scan = median(scans)
        print("")
        print("librdkafka produce, one flush      \(fmt(Double(n) / rawProduce)) records/s  (ceiling)")
        print("KafkaLog.append, acked per 1,000   \(fmt(Double(n) / append)) records/s  \(fmt(rawProduce / append, 2)) x ceiling")
        print("librdkafka partition consumer      \(fmt(Double(n) / rawConsume)) records/s  (ceiling)")
        print("KafkaLog.read scan                 \(fmt(Double(n) / scan)) records/s  \(fmt(rawConsume / scan, 2)) x ceiling")
        withExtendedLifetime(cluster) {}
    }

    static func handle(_ type: rd_kafka_type_t, _ servers: String, _ settings: [(String, String)]) -> OpaquePointer {
        let conf = rd_kafka_conf_new()
        var error = [CChar](repeating: 0, count: 256)
        for (k, v) in [("bootstrap.servers", servers)] + settings { _ = rd_kafka_conf_set(conf, k, v, &error, error.count) }
        return rd_kafka_new(type, conf, &error, error.count)!
    }

    static func rawProduce(_ servers: String, topic: String, count: Int, value: [UInt8]) throws -> Double {
        let rk = handle(RD_KAFKA_PRODUCER, servers, [("acks", "all"), ("enable.idempotence", "true"), ("linger.ms", "2")])
        defer { rd_kafka_destroy(rk) }
        let started = ContinuousClock.now
        for _ in 0..<count {
            while value.withUnsafeBytes({ kappa_rd_produce(rk, topic, 0, $0.baseAddress, $0.count, nil, 0, 0, nil) }) == RD_KAFKA_RESP_ERR__QUEUE_FULL {
                rd_kafka_poll(rk, 10)
            }
        }
        guard rd_kafka_flush(rk, 60_000) == RD_KAFKA_RESP_ERR_NO_ERROR else { throw LogError(.io, "raw produce: flush timed out") }
        return seconds(since: started)
    }

    static func rawConsume(_ servers: String, topic: String, count: Int) throws -> Double {
        let rk = handle(RD_KAFKA_CONSUMER, servers, [("enable.partition.eof", "false"), ("fetch.wait.max.ms", "100")])
        defer { rd_kafka_destroy(rk) }
        let rkt = rd_kafka_topic_new(rk, topic, nil)!
        defer { rd_kafka_topic_destroy(rkt) }
        rd_kafka_consume_start(rkt, 0, 0)
        guard let first = rd_kafka_consume(rkt, 0, 10_000) else { throw LogError(.io, "raw consume: nothing within 10 s") }
        rd_kafka_message_destroy(first)
        let started = ContinuousClock.now
        var seen = 1
        var messages = [UnsafeMutablePointer<rd_kafka_message_t>?](repeating: nil, count: 10_000)
        while seen < count {
            let got = rd_kafka_consume_batch(rkt, 0, 1000, &messages, min(messages.count, count - seen))
            for i in 0..<max(0, got) { rd_kafka_message_destroy(messages[i]) }
            seen += max(0, got)
        }
        rd_kafka_consume_stop(rkt, 0)
        return seconds(since: started)
    }
}
#endif
