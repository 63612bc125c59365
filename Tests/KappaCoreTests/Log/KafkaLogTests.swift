#if Kafka
import Foundation
import Synchronization
import Testing
@testable import KappaCore

/// KafkaLog against librdkafka's mock cluster (in this process, on loopback): what only Kafka has
/// (replicas, cursors, the mirror, settings, consumer groups). The contract it shares with the
/// embedded log: LogContractTests.
@Suite struct KafkaLogTests {
    static func cluster(partitions: Int = 3, brokers: Int = 1) throws -> (KafkaMockCluster, KafkaLog) {
        let cluster = try KafkaMockCluster(brokers: brokers)
        try cluster.createTopic("t", partitions: partitions, replicationFactor: brokers)
        let log = try KafkaLog(settings: KafkaSettings(url: cluster.url, passthrough: []), logger: EventLogger(format: .text) { _ in },
                               readWaitMs: 200)
        return (cluster, log)
    }

    static func readAll(_ log: KafkaLog, partition: Int, from start: Int64 = 0, chunk: Int = 100) async throws -> [LogRecord] {
        var out: [LogRecord] = []
        var offset = start
        let end = try await log.offsets(topic: "t")[partition].end
        while offset < end {
            let records = try await log.read(topic: "t", partition: partition, from: offset, maxRecords: chunk, maxBytes: 1 << 20)
            out += records
            offset = records.nextOffset
        }
        return out
    }

    @Test func appendsAreAcknowledgedAndReadBackInOrderByOffset() async throws {
        let (cluster, log) = try Self.cluster(brokers: 3)
        let records = (0..<900).map { i in ProducerRecord(key: Array("key-\(i % 37)".utf8), value: Array("{\"i\":\(i)}".utf8), timestamp: 1_000 + Int64(i)) }
        let results = try await log.append(topic: "t", records: records)
        #expect(results.map(\.count).reduce(0, +) == 900)
        #expect(results.allSatisfy { $0.baseOffset == 0 })

        let offsets = try await log.offsets(topic: "t")
        for p in 0..<3 {
            // Keyed records land where Kafka's default partitioner (murmur2) puts them, as on the embedded log.
            let expected = records.filter { Murmur2.partition(forKey: $0.key!, partitions: 3) == p }
            #expect(offsets[p] == PartitionOffsets(partition: p, earliest: 0, end: Int64(expected.count)))
            let read = try await Self.readAll(log, partition: p)
            #expect(read.map(\.offset) == Array(0..<Int64(expected.count)))
            #expect(read.map { $0.value.map(Array.init) } == expected.map(\.value))
            #expect(read.map { $0.key.map(Array.init) } == expected.map(\.key))
            #expect(read.map(\.timestamp) == expected.map { $0.timestamp! })
        }
        withExtendedLifetime(cluster) {}
    }

    @Test func twoReadersOfOnePartitionAtDifferentOffsetsEachGetTheirRecords() async throws {
        let (cluster, log) = try Self.cluster(partitions: 1)
        _ = try await log.append(topic: "t", records: (0..<2000).map { ProducerRecord(value: Array("\($0)".utf8)) })
        // A replaying version from 0 and a serving one near the end, interleaved, as in JobHost.
        var a: Int64 = 0, b: Int64 = 1500
        for _ in 0..<5 {
            let ra = try await log.read(topic: "t", partition: 0, from: a, maxRecords: 100, maxBytes: 1 << 20)
            let rb = try await log.read(topic: "t", partition: 0, from: b, maxRecords: 100, maxBytes: 1 << 20)
            #expect(ra.map { String(decoding: $0.value ?? [], as: UTF8.self) } == (a..<a + Int64(ra.count)).map { "\($0)" })
            #expect(rb.map { String(decoding: $0.value ?? [], as: UTF8.self) } == (b..<b + Int64(rb.count)).map { "\($0)" })
            #expect(!ra.isEmpty && !rb.isEmpty)
            a = ra.nextOffset
            b = rb.nextOffset
        }
        // Going back (a retry after a failed commit) reads the same records again.
        let again = try await log.read(topic: "t", partition: 0, from: 10, maxRecords: 5, maxBytes: 1 << 20)
        #expect(again.map(\.offset) == [10, 11, 12, 13, 14])
        withExtendedLifetime(cluster) {}
    }

    /// The archive for Kafka: a mirror running as records arrive keeps every record before the
    /// brokers' retention (the mock's 5 MB) drops it; reads from offset 0 then cross archive and
    /// live log; a mirror interrupted between a file and its manifest redoes that file only.
    @Test func aMirroredTopicReadsFromZeroBeyondRetention() async throws {
        let (cluster, raw) = try Self.cluster(partitions: 1)
        let dir = try TempDirectory()
        let archive = SegmentArchive(root: dir.path)
        var mirror = LogMirror(log: raw, archive: archive, topic: "t")
        mirror.fileBytes = 256 << 10
        let value = { (i: Int) in Array("{\"i\": \(i), \"pad\": \"\(String(repeating: "p", count: 90))\"}".utf8) }
        var produced = 0
        for round in 0..<10 {
            _ = try await raw.append(topic: "t", records: (produced..<produced + 7000).map { ProducerRecord(value: value($0), partition: 0) })
            produced += 7000
            if round == 4 {
                // A crash between a file and its manifest: a file the manifest does not name.
                let next = try archive.entries(topic: "t", partition: 0).last!.end
                try FileSystem.writeAtomically(Array("torn".utf8), to: archive.path("t", 0, next))
            }
            #expect(try await mirror.runOnce() == 7000)
        }
        let live = try await raw.offsets(topic: "t")[0]
        #expect(live.earliest > 0 && live.end == Int64(produced))  // the brokers dropped the oldest records
        let entries = try archive.entries(topic: "t", partition: 0)
        #expect(entries.first?.base == 0 && entries.last?.end == Int64(produced))
        #expect(zip(entries, entries.dropFirst()).allSatisfy { $0.end == $1.base })  // no gap, no overlap

        let log = try KafkaLog(settings: KafkaSettings(url: cluster.url, passthrough: []), logger: EventLogger(format: .text) { _ in },
                               readWaitMs: 200, archive: archive)
        #expect(try await log.offsets(topic: "t")[0] == PartitionOffsets(partition: 0, earliest: 0, end: Int64(produced)))
        var offset: Int64 = 0
        var values: [[UInt8]] = []
        while offset < Int64(produced) {
            let records = try await log.read(topic: "t", partition: 0, from: offset, maxRecords: 5000, maxBytes: 1 << 20)
            #expect(records.first?.offset == offset)
            values += records.map { Array($0.value ?? []) }
            offset = records.nextOffset
        }
        #expect(values == (0..<produced).map(value))
        withExtendedLifetime(cluster) {}
    }

    @Test func settingsAreNeverPrintedBack() throws {
        let settings = try KafkaSettings(url: "kafka://b1:9092,b2:9092/", passthrough: ["sasl.password=hunter2", "acks=hunter2"])
        #expect(settings.bootstrapServers == "b1:9092,b2:9092")
        #expect(settings.display == "kafka://b1:9092,b2:9092 (-X sasl.password, -X acks)")
        let error = #expect(throws: LogError.self) { try KafkaLog(settings: settings, logger: EventLogger(format: .text) { _ in }) }
        #expect(error?.message.hasPrefix("Kafka setting acks: ") == true)
        #expect(error?.message.contains("hunter2") == false)
        #expect(throws: LogError.self) { try KafkaSettings(url: "kafka://", passthrough: []) }
        let noValue = #expect(throws: LogError.self) { try KafkaSettings(url: "kafka://h:1", passthrough: ["=secret"]) }
        #expect(noValue?.message.contains("secret") == false)
        let wrongScheme = #expect(throws: LogError.self) {
            try Backends.log(state: StateDirectory(path: "/nonexistent"), url: "pulsar://u:pw@h:1", settings: [], logger: EventLogger(format: .text))
        }
        #expect(wrongScheme?.message == "unsupported log pulsar://u:***@h:1: use kafka://host:port[,host:port…] (or no --log for the embedded log)")
    }

    /// librdkafka's lines never repeat a -X value: with `debug=conf` it prints its whole
    /// configuration at start, values included (it hides only the properties it knows are secret).
    @Test func librdkafkasLinesNeverRepeatASetting() async throws {
        let lines = Mutex<[String]>([])
        let log = try KafkaLog(settings: KafkaSettings(url: "kafka://127.0.0.1:1", passthrough: ["debug=conf", "client.id=hunter2-client"]),
                               logger: EventLogger(format: .json) { line in lines.withLock { $0.append(line) } })
        let deadline = ContinuousClock.now + .seconds(10)
        while !lines.withLock({ $0.contains { $0.contains("client.id") } }) && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        let all = lines.withLock { $0 }
        #expect(all.contains { $0.contains("client.id") })
        #expect(!all.contains { $0.contains("hunter2") })
        // A warning quoting a secret, as a line from librdkafka's threads.
        let settings = try KafkaSettings(url: "kafka://h:1", passthrough: ["sasl.password=pw", "sasl.username=operator-name"])
        let sink = KafkaLogSink(logger: EventLogger(format: .text) { line in lines.withLock { $0 = [line] } },
                                reachability: KafkaReachability(logger: EventLogger(format: .text) { _ in }, brokers: settings.display), settings: settings)
        sink.line(level: 4, facility: "SASL", message: "login as operator-name with password pw failed")
        let shown = lines.withLock { $0[0] }
        #expect(shown.contains("login as *** with password *** failed"), "\(shown)")
        withExtendedLifetime(log) {}
    }

    @Test func librdkafkasLogLinesGoToKappasLogger() async throws {
        let lines = Mutex<[String]>([])
        // Nothing listens on port 1: librdkafka logs the failed connection.
        let log = try KafkaLog(settings: KafkaSettings(url: "kafka://127.0.0.1:1", passthrough: []),
                               logger: EventLogger(format: .json) { line in lines.withLock { $0.append(line) } })
        let deadline = ContinuousClock.now + .seconds(10)
        while lines.withLock({ $0.isEmpty }) && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        let first = try #require(lines.withLock { $0.first })
        #expect(first.contains("\"event\":\"kafka\""))
        #expect(first.contains("127.0.0.1:1"))
        withExtendedLifetime(log) {}
    }

    /// Every broker down: offsets fail (asked again and again, as the controller does) with an
    /// error naming the topic instead of waiting for the brokers (librdkafka's watermark query
    /// waits for as long as they are down), an append waits for them, and the outage is logged
    /// once when it starts and once when it ends, not once per failed connection.
    @Test(.timeLimit(.minutes(1))) func everyBrokerDownAndBackIsOneOutage() async throws {
        let cluster = try KafkaMockCluster(brokers: 3)
        try cluster.createTopic("t", partitions: 3, replicationFactor: 3)
        let lines = Mutex<[String]>([])
        let log = try KafkaLog(settings: KafkaSettings(url: cluster.url, passthrough: []),
                               logger: EventLogger(format: .text) { line in lines.withLock { $0.append(line) } }, readWaitMs: 200)
        _ = try await log.append(topic: "t", records: (0..<30).map { ProducerRecord(value: Array("\($0)".utf8)) })
        try cluster.setBrokersDown()
        for _ in 0..<4 {
            let error = await #expect(throws: LogError.self) { try await log.offsets(topic: "t") }
            #expect(error?.topic == "t")
            #expect(error?.message.hasPrefix("topic \"t\": Kafka offsets: ") == true, "\(error?.message ?? "")")
            #expect(error?.message.hasSuffix("; no broker of \(cluster.url) answers") == true, "\(error?.message ?? "")")
        }
        let append = Task { try await log.append(topic: "t", records: [ProducerRecord(key: Array("k".utf8), value: Array("late".utf8))]) }
        try await Task.sleep(for: .seconds(2))
        try cluster.setBrokersUp()
        let appended = try await append.value
        #expect(appended.map(\.count) == [1])
        let ends = try await log.offsets(topic: "t").map(\.end).reduce(0, +)
        #expect(ends == 31)  // acknowledged once, not once per retry
        let logged = lines.withLock { $0 }
        #expect(logged.filter { $0.contains("error kafka unreachable") }.count == 1, "\(logged)")
        #expect(logged.filter { $0.contains("info kafka reachable again") }.count == 1, "\(logged)")
        withExtendedLifetime(cluster) {}
    }

    @Test func progressIsCommittedToTheVersionsConsumerGroup() async throws {
        let (cluster, log) = try Self.cluster()
        log.commitProgress(group: "kappa.j.v3", topic: "t", partition: 0, nextOffset: 5)
        log.commitProgress(group: "kappa.j.v3", topic: "t", partition: 0, nextOffset: 9)  // coalesced: the last one wins
        log.commitProgress(group: "kappa.j.v3", topic: "t", partition: 2, nextOffset: 4)
        let deadline = ContinuousClock.now + .seconds(10)
        var seen: [Int64?] = []
        while ContinuousClock.now < deadline {
            seen = try await log.groupOffsets(group: "kappa.j.v3", topic: "t")
            if seen == [9, nil, 4] { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(seen == [9, nil, 4])
        withExtendedLifetime(cluster) {}
    }
}
#endif
