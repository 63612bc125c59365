import Foundation
import KappaCore

/// `kappactl archive status|run TOPIC`: the archive beyond retention (embedded log).
enum ArchiveCommands {
    static let group = Command(
        "archive", abstract: "The archive of a topic's closed segments: what it holds, and copying into it.",
        subcommands: [status, run])

    static let status = Command(
        "status", abstract: "Per partition: the archived range, the live log's range, and any gap between them.",
        options: [GlobalOptions.output],
        arguments: [Argument("topic", help: "Topic (created with --archive DIR).")],
        run: runStatus)

    static let run = Command(
        "run", abstract: "Archive what is not archived yet: the embedded log's closed segments, or a Kafka topic's records (mirrored).",
        discussion: """
            Embedded log: copies the topic's closed segments (JobHost also does it every
            --retention-interval, and retention always does it before deleting). Kafka (--log
            kafka://… --archive DIR): mirrors each partition's records from where the archive ends,
            exactly once across restarts (the archive's manifest is the position); with --follow,
            again every --interval until Ctrl-C.
            """,
        options: [
            .flag("follow", short: "f", help: "Keep mirroring (Kafka), every --interval."),
            .value("interval", "DURATION", help: "With --follow: how often (default 5s)."),
            GlobalOptions.output,
        ],
        arguments: [Argument("topic", help: "Topic to archive.")],
        run: runArchive)

    /// The Kafka topics' archive (--archive / KAPPA_ARCHIVE), required for Kafka.
    static func kafkaArchive(_ args: ParsedArguments) throws -> SegmentArchive {
        guard let location = GlobalOptions.archiveRoot(args) else {
            throw args.usageError("a Kafka topic's archive is a directory or an S3 bucket: give --archive DIR or --archive s3://BUCKET/PREFIX (or KAPPA_ARCHIVE)")
        }
        return try Backends.archive(location, environment: ProcessInfo.processInfo.environment)
    }

    static func runStatus(_ args: ParsedArguments) async throws {
        let topic = args.argument("topic")!
        let partitions: [ArchiveStatus]
        // Without the archive: Kafka's offsets as its brokers hold them (the segment log's topics
        // name their archive themselves).
        let log = try GlobalOptions.log(args, withArchive: false)
        if let log = log as? SegmentLog {
            partitions = try await log.archiveStatus(topic: topic)
        } else {
            let archive = try kafkaArchive(args)
            let offsets = try await log.offsets(topic: topic)
            partitions = try await BlockingExecutor.shared.run {  // a directory's files, or requests to the object store
                try offsets.map { live in
                    ArchiveStatus(partition: live.partition, archived: try archive.entries(topic: topic, partition: live.partition),
                                  liveEarliest: live.earliest, liveEnd: live.end)
                }
            }
        }
        if try GlobalOptions.json(args) {
            Console.out(try jsonText(["partitions": partitions]))
            return
        }
        var table = TextTable(["PARTITION", "ARCHIVED", "FILES", "LOG", "FROM 0"])
        for p in partitions {
            let archived = p.archived.isEmpty ? "-" : "\(p.archived.first!.base)…\(p.archived.last!.end - 1)"
            let live = p.liveEnd > p.liveEarliest ? "\(p.liveEarliest)…\(p.liveEnd - 1)" : "empty at \(p.liveEnd)"
            let gaps = p.gaps
            table.add(["\(p.partition)", archived, "\(p.archived.count)", live,
                       gaps.isEmpty ? "complete" : "GAP " + gaps.map { "\($0.lowerBound)…\($0.upperBound)" }.joined(separator: ", ")])
        }
        Console.out(table.render(), terminator: "")
        let lost = partitions.filter { !$0.gaps.isEmpty }
        if !lost.isEmpty {
            Console.out("records lost: retention deleted " + lost.map { p in
                p.gaps.map { "offsets \($0.lowerBound)…\($0.upperBound) of partition \(p.partition)" }.joined(separator: ", ")
            }.joined(separator: "; ") + " before they were archived; a replay from 0 cannot include them")
        }
    }

    static func runArchive(_ args: ParsedArguments) async throws {
        let topic = args.argument("topic")!
        let json = try GlobalOptions.json(args)
        let log = try GlobalOptions.log(args, withArchive: false)
        if let log = log as? SegmentLog {
            if args.flag("follow") { throw args.usageError("--follow is for Kafka topics; JobHost archives the embedded log's segments") }
            let copied = try await log.archiveClosedSegments(topic: topic)
            Console.out(json ? "{\"topic\":\(JSONScanner.quote(topic)),\"segments\":\(copied)}"
                             : "archived \(copied) closed segment\(copied == 1 ? "" : "s") of \"\(topic)\"")
            return
        }
        let mirror = LogMirror(log: log, archive: try kafkaArchive(args), topic: topic)
        let interval = try args.duration("interval") ?? 5_000
        guard args.flag("follow") else {
            let records = try await mirror.runOnce()
            Console.out(json ? "{\"topic\":\(JSONScanner.quote(topic)),\"records\":\(records)}" : "archived \(records) records of \"\(topic)\"")
            return
        }
        let signals = TerminationSignal()
        let loop = Task {
            while !Task.isCancelled {
                let n = try await mirror.runOnce()
                if n > 0 { Console.out(json ? "{\"topic\":\(JSONScanner.quote(topic)),\"records\":\(n)}" : "archived \(n) records of \"\(topic)\"") }
                try? await Task.sleep(for: .milliseconds(interval))
            }
        }
        let watcher = Task {
            _ = await signals.wait()
            loop.cancel()
        }
        defer { watcher.cancel() }
        try await loop.value  // ends on a signal, or with the mirror's error
    }
}
