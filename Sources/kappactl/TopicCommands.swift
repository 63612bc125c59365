import Foundation
import KappaCore

enum TopicCommands {
    static let group = Command(
        "topic", abstract: "Create, list, describe and delete topics of the unified log.",
        subcommands: [create, list, describe, check, repair, delete])

    static let create = Command(
        "create", abstract: "Create a topic.",
        discussion: """
            With --archive DIR (a global option), the embedded log copies each closed segment
            there before retention deletes it, and replays from offset 0 read it from there.
            """,
        options: [
            .value("partitions", short: "p", "N", help: "Number of partitions (1…10000).", required: true),
            .value("retention", "DURATION", help: "Delete closed segments whose records are older (e.g. 7d); default: keep forever."),
            .value("retention-bytes", "N", help: "Keep at most about N bytes per partition; default: no limit."),
            .value("segment-bytes", "N", help: "Segment file size (default 67108864)."),
            GlobalOptions.output,
        ],
        arguments: [Argument("name", help: "Topic name: A-Z a-z 0-9 . _ - (up to 249).")],
        run: runGroup)

    static func runGroup(_ args: ParsedArguments) async throws {
        let json = try GlobalOptions.json(args)
        let config = TopicConfig(
            partitions: Int(try args.int("partitions", in: 1...10_000)!),
            retentionMs: try args.duration("retention"),
            retentionBytes: try args.int("retention-bytes", in: 1...Int64.max),
            segmentBytes: try args.int("segment-bytes", in: 1024...(1 << 30)) ?? TopicConfig.defaultSegmentBytes,
            archive: GlobalOptions.archiveRoot(args))
        let metadata = try await GlobalOptions.log(args).createTopic(args.argument("name")!, config: config)
        if json {
            Console.out(try jsonText(TopicView(metadata)))
        } else {
            Console.out("created topic \"\(metadata.name)\" with \(metadata.partitions) partition\(metadata.partitions == 1 ? "" : "s")")
        }
    }

    static let list = Command(
        "list", abstract: "List topics.", options: [GlobalOptions.output],
        run: runList)

    static func runList(_ args: ParsedArguments) async throws {
        let json = try GlobalOptions.json(args)
        let log = try GlobalOptions.log(args)
        let topics = try await log.listTopics()
        if json {
            Console.out(try jsonText(["topics": topics.map(TopicView.init)]))
            return
        }
        var table = TextTable(["TOPIC", "PARTITIONS", "RETENTION", "RETENTION BYTES"])
        for t in topics {
            // Kafka's retention is its brokers' topic configuration: not shown as if it were ours.
            table.add([t.name, "\(t.partitions)",
                       log.configuredElsewhere ? "(brokers)" : t.config.retentionMs.map { DurationText.format(milliseconds: $0) } ?? "forever",
                       log.configuredElsewhere ? "(brokers)" : t.config.retentionBytes.map(String.init) ?? "-"])
        }
        Console.out(topics.isEmpty ? "no topics" : table.render(), terminator: topics.isEmpty ? "\n" : "")
    }

    static let describe = Command(
        "describe", abstract: "Show a topic's partitions: earliest and end offsets, bytes, segments.",
        options: [GlobalOptions.output],
        arguments: [Argument("name", help: "Topic name.")],
        run: runDescribe)

    static func runDescribe(_ args: ParsedArguments) async throws {
        let json = try GlobalOptions.json(args)
        let log = try GlobalOptions.log(args)
        let name = args.argument("name")!
        let metadata = try await log.metadata(topic: name)
        let partitions = try await log.describe(topic: name)
        if json {
            Console.out(try jsonText(DescribeView(topic: TopicView(metadata), partitions: partitions)))
            return
        }
        let remote = log.configuredElsewhere
        Console.out("topic \"\(name)\": \(metadata.partitions) partitions, retention "
                    + (remote ? "as the Kafka brokers' topic configuration says"
                       : (metadata.config.retentionMs.map { DurationText.format(milliseconds: $0) } ?? "forever")
                        + (metadata.config.retentionBytes.map { ", at most \($0) bytes per partition" } ?? "")))
        var table = TextTable(["PARTITION", "EARLIEST", "END", "RECORDS", "BYTES", "SEGMENTS"])
        for p in partitions {
            table.add(["\(p.partition)", "\(p.earliest)", "\(p.end)", "\(p.end - p.earliest)",
                       remote ? "-" : "\(p.bytes)", remote ? "-" : "\(p.segments)"])
        }
        Console.out(table.render(), terminator: "")
        for p in partitions { if let damage = p.damage { Console.out("DAMAGED: \(damage)") } }
    }

    static let check = Command(
        "check", abstract: "Verify every frame, index, head and archived file of a topic (embedded log); exit 1 on damage.",
        discussion: """
            Reads every segment file whole and verifies each frame's checksum and offsets, the
            segments against each other and against the partition's head, the sparse indexes, and
            each archived file against the archive's manifest. Changes nothing and takes no lock:
            producers and JobHost may go on. Prints per partition what is sound and what is not;
            warnings (a stale index, an unacknowledged tail) are repaired when the partition is
            next opened and do not fail the check. Exit 0: sound; 1: damage to acknowledged records.
            """,
        options: [.value("partition", short: "p", "P", help: "Only this partition (default: all)."), GlobalOptions.output],
        arguments: [Argument("name", help: "Topic name.")],
        run: runCheck)

    static func runCheck(_ args: ParsedArguments) async throws {
        let json = try GlobalOptions.json(args)
        let name = args.argument("name")!
        guard let log = try GlobalOptions.log(args) as? SegmentLog else {
            throw LogError(.invalidArgument, "topic check verifies the embedded log's files; Kafka's brokers check their own segments")
        }
        let partition = try args.int("partition", in: 0...Int64(Int32.max)).map(Int.init)
        let checks = try await log.check(topic: name, partition: partition)
        if json {
            Console.out(try jsonText(CheckView(topic: name, sound: checks.allSatisfy(\.sound), partitions: checks)))
        } else {
            var table = TextTable(["PARTITION", "STATUS", "EARLIEST", "END", "SEGMENTS", "FRAMES", "RECORDS", "BYTES", "ARCHIVED"])
            for c in checks {
                table.add(["\(c.partition)", c.sound ? "sound" : "DAMAGED", c.earliest.map { "\($0)" } ?? "?", c.end.map { "\($0)" } ?? "?",
                           "\(c.segments)", "\(c.frames)", "\(c.records)", "\(c.bytes)", "\(c.archivedFiles)"])
            }
            Console.out(table.render(), terminator: "")
            for c in checks { for d in c.damage { Console.out("DAMAGED: \(TerminalText.escaped(d))") } }
            for c in checks { for w in c.warnings { Console.out("warning: \(TerminalText.escaped(w))") } }
            for c in checks {
                for g in c.gaps {
                    Console.out("gap: partition \(c.partition) offsets \(g.range) (\(g.count) records) given up as lost by topic repair at \(Render.time(g.repairedAt)) UTC (\(TerminalText.escaped(g.actor)))")
                }
            }
        }
        let damaged = checks.filter { !$0.sound }.map(\.partition)
        guard damaged.isEmpty else {
            throw LogError(.corrupt, "topic \"\(name)\": damage to acknowledged records in partition\(damaged.count == 1 ? "" : "s") \(damaged.map(String.init).joined(separator: ", "))", topic: name)
        }
    }

    static let repair = Command(
        "repair", abstract: "Repair a damaged partition of the embedded log by giving up what is lost (--accept-loss).",
        discussion: """
            For damage that `topic check` reports: acknowledged records missing or unreadable (a
            truncated or deleted segment, a bad frame, a lost head). Each damaged segment is cut
            after its last sound record; the bytes cut are kept beside it (<segment>.log.cut-<ms>).
            The offsets lost become a recorded gap (the partition's gaps.json), never handed out
            again: the end offset is kept, at least the head's acknowledged end and what every
            version has read up to. Records after a gap still read. A version that reaches a gap
            fails naming it, unless its manifest says "source": {"allowGaps": true}: it then skips
            the gap, recorded in its history. JobHost notices the repair at its next read of the
            partition. Without --accept-loss it shows the damage and changes nothing (exit 4).
            Safe to run again: a sound partition is left as it is; an interrupted repair is finished.
            """,
        options: [
            .value("partition", short: "p", "P", help: "The partition to repair.", required: true),
            .flag("accept-loss", help: "Cut the damaged records: their offsets become a recorded gap."),
            GlobalOptions.output,
        ],
        arguments: [Argument("name", help: "Topic name.")],
        run: runRepair)

    static func runRepair(_ args: ParsedArguments) async throws {
        let json = try GlobalOptions.json(args)
        let name = args.argument("name")!
        let partition = Int(try args.int("partition", in: 0...Int64(Int32.max))!)
        let (op, _) = try JobCommands.makeOperator(args)
        let result = try await op.repairTopic(name, partition: partition, acceptLoss: args.flag("accept-loss"))
        if json {
            Console.out(try jsonText(result))
            return
        }
        guard result.repaired else {
            Console.out("topic \"\(name)\" partition \(partition) is sound: nothing to repair (end offset \(result.end))")
            return
        }
        for change in result.changes { Console.out(TerminalText.escaped(change)) }
        let lost = result.gaps.reduce(Int64(0)) { $0 + $1.count }
        Console.out("repaired topic \"\(name)\" partition \(partition): \(lost) records given up as lost; the end offset is \(result.end)")
    }

    static let delete = Command(
        "delete", abstract: "Delete a topic and all its records.",
        discussion: """
            Refused (exit 4) while a version of a job reads the topic (pending, replaying, caught up,
            serving or standby), naming them. --force fails those versions first (recorded in their
            history), then deletes. A topic created again under the name is another topic: versions
            deployed over the old one fail rather than read it.
            """,
        options: [.flag("force", help: "Delete even though versions read the topic; those versions fail."), GlobalOptions.output],
        arguments: [Argument("name", help: "Topic name.")],
        run: runDelete)

    static func runDelete(_ args: ParsedArguments) async throws {
        let name = args.argument("name")!
        let (op, _) = try JobCommands.makeOperator(args)
        let json = try GlobalOptions.json(args)
        let failed = try await op.deleteTopic(name, force: args.flag("force"))
        if json {
            let versions = failed.map { "{\"job\":\(JSONScanner.quote($0.job)),\"version\":\($0.version),\"was\":\"\($0.state.rawValue)\"}" }
            Console.out("{\"topic\":\(JSONScanner.quote(name)),\"deleted\":true,\"failedVersions\":[\(versions.joined(separator: ","))]}")
            return
        }
        for v in failed { Console.out("\(v.job) version \(v.version) (\(v.state.rawValue)) failed: it read topic \"\(name)\"") }
        Console.out("deleted topic \"\(name)\"")
    }
}

/// `topic check --output json`.
struct CheckView: Encodable {
    var topic: String
    var sound: Bool
    var partitions: [PartitionCheck]
}

/// A topic as `--output json` shows it.
struct TopicView: Codable {
    var name: String
    var partitions: Int
    var retentionMs: Int64?
    var retentionBytes: Int64?
    var segmentBytes: Int64
    var archive: String?
    var createdAt: Int64

    init(_ m: TopicMetadata) {
        name = m.name
        partitions = m.partitions
        retentionMs = m.config.retentionMs
        retentionBytes = m.config.retentionBytes
        segmentBytes = m.config.segmentBytes
        archive = m.config.archive
        createdAt = m.createdAt
    }
}

struct DescribeView: Codable {
    var topic: TopicView
    var partitions: [PartitionDescription]
}

func jsonText<T: Encodable>(_ value: T) throws -> String { try Render.json(value) }

