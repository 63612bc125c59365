#if Kafka
import CRdKafka
import Foundation
import KappaCore
import Synchronization

/// KafkaLog against librdkafka itself, both on librdkafka's mock cluster in this process: an
/// append of 100-byte records in batches of 1,000, each waiting for its acknowledgements, against
/// one producer that enqueues everything and flushes once (the ceiling); a scan through KafkaLog's
/// cursors against librdkafka's partition consumer draining the same partition, both timed from
/// their first record. (librdkafka
/// 2.0's mock keeps about 5 MB per partition: hence a topic per round and 40,000 records.)
/// Then `replay`: the demo's v2 replayed from Kafka and from the embedded log into SQLite.
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
        print("")
        try await replay(cluster: cluster, log: log)
        withExtendedLifetime(cluster) {}
    }

    /// The demo's btc v2 (typed) replayed from Kafka into SQLite, beside the same records
    /// replayed from the embedded log into SQLite (the store's own rate: the ceiling when the
    /// store bounds the replay) and librdkafka's consumer reading them (the read's ceiling).
    /// 3 partitions of `records` BPI ticks each, a topic and a fresh store per round.
    func replay(cluster: KafkaMockCluster, log: KafkaLog) async throws {
        let perPartition = min(records, 40_000)
        let total = perPartition * 3
        let ticks = BPIFeed(seed: 7, start: 1_700_000_000_000).ticks(seconds: perPartition)
        let batchRecords = ticks.enumerated().map { i, tick in var r = tick.record; r.partition = i % 3; return r }
        print("replay: the demo's btc v2 (typed), \(Render.grouped(Int64(total))) BPI ticks over 3 partitions, into SQLite, \(rounds) rounds (medians)")
        var raws: [Double] = [], scans: [Double] = [], firsts: [Double] = [], steadyScans: [Double] = [], rawFirsts: [Double] = [], fromLogs: [Timing] = [], fromKafkas: [Timing] = []
        for round in 0..<rounds {
            let topic = "bpi\(round)"
            try cluster.createTopic(topic, partitions: 3)
            for i in stride(from: 0, to: batchRecords.count, by: 10_000) {
                _ = try await log.append(topic: topic, records: Array(batchRecords[i..<min(i + 10_000, batchRecords.count)]))
            }
            let root = try FileSystem.makeTemporaryDirectory(prefix: "kappa-bench-kafka-replay")
            defer { try? FileSystem.removeTree(root) }
            let embedded = try SegmentLog(state: try StateDirectory(path: root + "/embedded"))
            _ = try await embedded.createTopic(topic, config: TopicConfig(partitions: 3))
            for i in stride(from: 0, to: batchRecords.count, by: 10_000) {
                _ = try await embedded.append(topic: topic, records: Array(batchRecords[i..<min(i + 10_000, batchRecords.count)]))
            }
            // The reads alone: librdkafka's consumer, then KafkaLog's reads, a partition at a time.
            var consumed = 0.0
            for p in 0..<3 {
                let first = ContinuousClock.now
                consumed += try Self.rawConsume(cluster.bootstrapServers, topic: topic, partition: Int32(p), count: perPartition) {
                    rawFirsts.append(seconds(since: first))
                }
            }
            raws.append(consumed)
            var started = ContinuousClock.now
            for p in 0..<3 {
                var offset: Int64 = 0
                // The first record alone, timed apart (as librdkafka's consumer's is): then the rest.
                let first = ContinuousClock.now
                offset = try await log.read(topic: topic, partition: p, from: 0, maxRecords: 1, maxBytes: 1 << 20).nextOffset
                firsts.append(seconds(since: first))
                while offset < Int64(perPartition) {
                    offset = try await log.read(topic: topic, partition: p, from: offset, maxRecords: 10_000, maxBytes: 8 << 20).nextOffset
                }
            }
            scans.append(seconds(since: started))
            steadyScans.append(seconds(since: started) - firsts.suffix(3).reduce(0, +))
            let manifest = DemoManifests.v2.replacingOccurrences(of: #""topic": "bpi""#, with: #""topic": "\#(topic)""#)
            for (source, into) in [(embedded as any UnifiedLog, "embedded"), (log as any UnifiedLog, "kafka")] {
                let spec = try ManifestParser.parse(manifest)
                let store = try Store.sqlite(state: try StateDirectory(path: root + "/" + into))
                _ = try await store.registerVersion(spec, manifest: manifest, startOffsets: [0, 0, 0], actor: "bench", reason: "bench")
                let commits = Mutex<[(ContinuousClock.Instant, Int, Int)]>([])
                started = ContinuousClock.now
                try await VersionRunner(log: source, store: store, job: try StreamJobs.make(spec), onBatch: { result, _ in
                    commits.withLock { $0.append((ContinuousClock.now, result.partition, result.records)) }
                }).run(.untilEnd)
                let ended = ContinuousClock.now
                let sum = try await store.query("SELECT sum(samples) FROM \"\(spec.versionTable)\"").rows[0][0]
                precondition(sum == .integer(Int64(total)), "the replay from \(into) saw \(sum) records of \(total)")
                // The steady part: from the moment every partition has committed a batch.
                let all = commits.withLock { $0 }
                let begun = (0..<3).compactMap { p in all.first { $0.1 == p }?.0 }.max() ?? started
                let before = all.filter { $0.0 <= begun }.reduce(0) { $0 + $1.2 }
                let timing = Timing(total: (ended - started).seconds, start: (begun - started).seconds,
                                    steadyRate: Double(total - before) / max(1e-9, (ended - begun).seconds))
                if into == "embedded" { fromLogs.append(timing) } else { fromKafkas.append(timing) }
            }
        }
        print("rounds (s): librdkafka consume \(raws.map { fmt($0, 3) }) KafkaLog scan \(scans.map { fmt($0, 3) }) replay from the embedded log \(fromLogs.map { fmt($0.total, 3) }) from Kafka \(fromKafkas.map { fmt($0.total, 3) })")
        let raw = median(raws)
        let fromLog = median(fromLogs.map(\.total)), fromKafka = median(fromKafkas.map(\.total))
        let steadyLog = median(fromLogs.map(\.steadyRate)), steadyKafka = median(fromKafkas.map(\.steadyRate))
        let rate = { (s: Double) in fmt(Double(total) / s) }
        print("")
        print("librdkafka consumer, 3 partitions      \(rate(raw)) records/s  (the read's ceiling, from each partition's first record)")
        let steadyScan = median(steadyScans)
        print("KafkaLog.read, 3 partitions            \(rate(steadyScan)) records/s  \(fmt(raw / steadyScan, 2)) x the read's ceiling (from each partition's first record; fetched ahead while that first read waited)")
        print("a partition's first read               \(fmt(median(firsts) * 1000, 1)) ms through KafkaLog, \(fmt(median(rawFirsts) * 1000, 1)) ms through a new librdkafka consumer"
              + " (a partition started on a consumer whose fetch is parked at the head waits for it: fetch.wait.max.ms=100)")
        print("replay from the embedded log           \(rate(fromLog)) records/s, \(fmt(steadyLog)) records/s once every partition has committed a batch (the store's ceiling)")
        print("replay from Kafka                      \(rate(fromKafka)) records/s, \(fmt(steadyKafka)) records/s once every partition has committed a batch: \(fmt(steadyKafka / steadyLog, 2)) x the store's ceiling")
        print("split of the replay from Kafka         first batch of every partition at \(fmt(median(fromKafkas.map(\.start)) * 1000, 0)) ms (embedded: \(fmt(median(fromLogs.map(\.start)) * 1000, 0)) ms); "
              + "after it, reading alone (KafkaLog from each partition's first record) would take \(fmt(100 * steadyKafka * steadyScan / Double(total), 0))% of the time and the store \(fmt(100 * steadyKafka / steadyLog, 0))%"
              + (steadyKafka / steadyLog >= 0.9 ? ": the store bounds it" : ": the read holds it back"))
    }

    struct Timing {
        var total: Double
        /// Until every partition had committed a batch.
        var start: Double
        /// Records a second after `start`.
        var steadyRate: Double
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

    /// Drains a partition with librdkafka's partition consumer, timed from its first record;
    /// `first` is called when that record has come.
    static func rawConsume(_ servers: String, topic: String, partition: Int32 = 0, count: Int, first onFirst: () -> Void = {}) throws -> Double {
        let rk = handle(RD_KAFKA_CONSUMER, servers, [("enable.partition.eof", "false"), ("fetch.wait.max.ms", "100")])
        defer { rd_kafka_destroy(rk) }
        let rkt = rd_kafka_topic_new(rk, topic, nil)!
        defer { rd_kafka_topic_destroy(rkt) }
        rd_kafka_consume_start(rkt, partition, 0)
        guard let first = rd_kafka_consume(rkt, partition, 10_000) else { throw LogError(.io, "raw consume: nothing within 10 s") }
        rd_kafka_message_destroy(first)
        onFirst()
        let started = ContinuousClock.now
        var seen = 1
        var messages = [UnsafeMutablePointer<rd_kafka_message_t>?](repeating: nil, count: 10_000)
        while seen < count {
            let got = rd_kafka_consume_batch(rkt, partition, 1000, &messages, min(messages.count, count - seen))
            for i in 0..<max(0, got) { rd_kafka_message_destroy(messages[i]) }
            seen += max(0, got)
        }
        rd_kafka_consume_stop(rkt, partition)
        return seconds(since: started)
    }
}
extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
#endif
