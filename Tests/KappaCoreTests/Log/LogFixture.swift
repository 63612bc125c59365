import Foundation
import Testing
@testable import KappaCore

/// The log backends of this build, for tests written once against `UnifiedLog` and run on each
/// (`@Test(arguments: LogBackendKind.available)`).
enum LogBackendKind: String, Sendable, CaseIterable, CustomTestStringConvertible {
    /// `SegmentLog` in a temporary directory.
    case segment
    #if Kafka
    /// `KafkaLog` against librdkafka's mock cluster, in this process.
    case kafka
    #endif

    static var available: [LogBackendKind] { allCases }

    /// For the known disagreements of `KafkaLog` with the contract (`withKnownIssue … when:`).
    var isKafka: Bool { rawValue == "kafka" }

    var testDescription: String { rawValue }
}

/// One backend's log, with what it needs kept alive, and the steps each backend does its own
/// way: creating a topic (librdkafka 2.0's mock cluster has no CreateTopics, so topics are made
/// on the mock directly) and filling a topic until the log has dropped its oldest records.
final class LogFixture: Sendable {
    let kind: LogBackendKind
    let log: any UnifiedLog
    let directory: TempDirectory
    #if Kafka
    private let cluster: KafkaMockCluster?
    #endif

    /// How long a Kafka read waits for a first record: long enough that a read below the end
    /// offset is never empty on the loopback mock, short enough for the few reads at the end.
    static let kafkaReadWaitMs: Int32 = 1500

    init(_ kind: LogBackendKind) throws {
        self.kind = kind
        directory = try TempDirectory("kappa-contract")
        switch kind {
        case .segment:
            log = try SegmentLog(directory: directory.path + "/log")
            #if Kafka
            cluster = nil
            #endif
        #if Kafka
        case .kafka:
            let cluster = try KafkaMockCluster()
            self.cluster = cluster
            log = try Self.kafkaLog(cluster)
        #endif
        }
    }

    #if Kafka
    private static func kafkaLog(_ cluster: KafkaMockCluster, archive: SegmentArchive? = nil) throws -> KafkaLog {
        try KafkaLog(settings: KafkaSettings(url: cluster.url, passthrough: []), logger: EventLogger(format: .text) { _ in },
                     readWaitMs: kafkaReadWaitMs, archive: archive)
    }
    #endif

    /// Creates a topic. `segmentBytes` is the embedded log's segment size (the mock ignores it).
    func createTopic(_ name: String, partitions: Int, segmentBytes: Int64 = TopicConfig.defaultSegmentBytes) async throws {
        switch kind {
        case .segment:
            _ = try await log.createTopic(name, config: TopicConfig(partitions: partitions, segmentBytes: segmentBytes))
        #if Kafka
        case .kafka:
            try cluster!.createTopic(name, partitions: partitions)
        #endif
        }
    }

    /// The record `i` of the topics filled past retention: every other one keyed, each with
    /// its own value and timestamp.
    static func retained(_ i: Int, valueBytes: Int) -> ProducerRecord {
        let head = "\(i) "
        return ProducerRecord(key: i % 2 == 0 ? nil : Array("k\(i % 5)".utf8),
                              value: Array((head + String(repeating: "r", count: max(0, valueBytes - head.utf8.count))).utf8),
                              timestamp: 1_700_000_000_000 + Int64(i))
    }

    /// A topic filled past retention and where to read it.
    struct Retained {
        /// Every record appended to partition 0, in order.
        var records: [ProducerRecord]
        /// The earliest offset the live log (without the archive) still holds.
        var liveEarliest: Int64
        /// The log to read the topic from: with the archive when there is one.
        var reader: any UnifiedLog
    }

    /// Creates a one-partition topic and appends to it until the log has dropped its oldest
    /// records: by retention (8 KiB in 4 KiB segments) on the embedded log; on Kafka by the mock
    /// cluster, which keeps about 5 MB per partition. With `archive`, the dropped records are
    /// kept there first: on the embedded log by the topic's own archive, on Kafka by a
    /// `LogMirror` run after each round of appends but the last (so that the newest records are
    /// in the live log only), read back through a `KafkaLog` given the archive.
    func createTopicPastRetention(_ name: String, archive: String? = nil) async throws -> Retained {
        switch kind {
        case .segment:
            let segmentLog = log as! SegmentLog
            _ = try await log.createTopic(name, config: TopicConfig(partitions: 1, retentionBytes: 8192, segmentBytes: 4096, archive: archive))
            let records = (0..<600).map { Self.retained($0, valueBytes: 100) }
            for round in stride(from: 0, to: records.count, by: 10) {
                _ = try await log.append(topic: name, records: Array(records[round..<round + 10]))
            }
            _ = try await segmentLog.enforceRetention()
            // With an archive, `offsets` counts what the archive holds: the live log's own earliest is in its status.
            let liveEarliest: Int64
            if archive == nil {
                liveEarliest = try await log.offsets(topic: name)[0].earliest
            } else {
                liveEarliest = try await segmentLog.archiveStatus(topic: name)[0].liveEarliest
            }
            return Retained(records: records, liveEarliest: liveEarliest, reader: log)
        #if Kafka
        case .kafka:
            try cluster!.createTopic(name, partitions: 1)
            // 7 rounds of 1 MB: the mock drops the first 2 MB or so.
            let records = (0..<7000).map { Self.retained($0, valueBytes: 1000) }
            let mirror = archive.map { LogMirror(log: log, archive: SegmentArchive(root: $0), topic: name) }
            for round in stride(from: 0, to: records.count, by: 1000) {
                _ = try await log.append(topic: name, records: Array(records[round..<round + 1000]))
                if let mirror, round + 1000 < records.count { _ = try await mirror.runOnce() }
            }
            let liveEarliest = try await log.offsets(topic: name)[0].earliest
            let reader = try mirror.map { try Self.kafkaLog(cluster!, archive: $0.archive) } ?? log
            return Retained(records: records, liveEarliest: liveEarliest, reader: reader)
        #endif
        }
    }

    /// Reads a partition from `offset` up to the end offset the log reports now, in reads of at
    /// most `batch` records and `maxBytes`, recording an issue unless every read returns at least
    /// one record, starting exactly where the previous one ended, with contiguous offsets.
    func readAll(_ topic: String, partition: Int, from offset: Int64 = 0, batch: Int = 1000, maxBytes: Int = 1 << 20,
                 using reader: (any UnifiedLog)? = nil, sourceLocation: SourceLocation = #_sourceLocation) async throws -> [LogRecord] {
        let log = reader ?? self.log
        let end = try await log.offsets(topic: topic)[partition].end
        var out: [LogRecord] = []
        var next = offset
        while next < end {
            let records = try await log.read(topic: topic, partition: partition, from: next, maxRecords: batch, maxBytes: maxBytes)
            guard !records.isEmpty else {
                Issue.record("\(kind): a read at offset \(next) below the end offset \(end) returned nothing", sourceLocation: sourceLocation)
                return out
            }
            let offsets = records.map(\.offset)
            if offsets != Array(next..<next + Int64(records.count)) || records.count > batch || records.nextOffset != next + Int64(records.count) {
                Issue.record("\(kind): a read at offset \(next) (at most \(batch)) returned offsets \(offsets.first!)…\(offsets.last!) (\(records.count)), next \(records.nextOffset)",
                             sourceLocation: sourceLocation)
                return out
            }
            out += records
            next = records.nextOffset
        }
        return out
    }
}
