import Foundation
import KappaCore

/// `kappactl archive status|run TOPIC`: the archive beyond retention (embedded log).
enum ArchiveCommands {
    static let group = Command(
        "archive", abstract: "The archive of a topic's closed segments: what it holds, and copying into it.",
        subcommands: [status, run, prune])

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

    static let prune = Command(
        "prune", abstract: "Delete the archived objects no manifest names (uploads cut off by a kill, fenced-off copies), once older than --older-than.",
        discussion: """
            A mirror killed mid-upload, or fenced off by another host's, leaves an object that its
            partition's manifest never names: never read, but kept (and paid for). This deletes
            those, partition by partition, once they were written longer ago than --older-than
            (default 1d, at least 1h; by the store's clock), so that a writer between its upload
            and its manifest update keeps its object. Only names a writer never reuses go (a
            mirror's <base>-<hex>.seg, temporary files); nothing a manifest names, no other key,
            no other folder. A partition with objects but no manifest is not pruned (exit 1,
            after the others). Safe to run again, and beside running mirrors.
            """,
        options: [
            .value("older-than", "DURATION", help: "Only objects written longer ago than this (default 1d; at least 1h)."),
            .flag("dry-run", help: "Say what would be deleted; delete nothing."),
            GlobalOptions.output,
        ],
        arguments: [Argument("topic", help: "Topic whose archive to prune.")],
        run: runPrune)

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
            let beyond = (p.archived.last?.end ?? 0) > p.liveEnd
            table.add(["\(p.partition)", archived, "\(p.archived.count)", live,
                       beyond ? "ARCHIVE BEYOND THE LOG" : gaps.isEmpty ? "complete" : "GAP " + gaps.map { "\($0.lowerBound)…\($0.upperBound)" }.joined(separator: ", ")])
        }
        Console.out(table.render(), terminator: "")
        for p in partitions where (p.archived.last?.end ?? 0) > p.liveEnd {
            Console.out("partition \(p.partition): the archive ends at offset \(p.archived.last!.end), beyond the log's end \(p.liveEnd): it holds another topic of this name"
                        + (log is SegmentLog ? "; move it away" : " (deleted and created again, or another cluster's) or records the brokers lost; deploys and the mirror refuse it until it is moved away"))
        }
        let lost = partitions.filter { !$0.gaps.isEmpty && ($0.archived.last?.end ?? 0) <= $0.liveEnd }
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

    static func runPrune(_ args: ParsedArguments) async throws {
        let topic = args.argument("topic")!
        let olderThan = try args.duration("older-than") ?? 86_400_000
        // An upload's manifest update is retried up to 8 times, each request bounded only by the
        // client's connect and low-speed limits; and ages are measured by the store's clock.
        guard olderThan >= 3_600_000 else {
            throw args.usageError("--older-than must be at least 1h: a writer's upload that is not in its manifest yet may be that old, and ages are taken from the store's clock")
        }
        let dryRun = args.flag("dry-run")
        let log = try GlobalOptions.log(args, withArchive: false)
        let archive = try await (log as? SegmentLog)?.archive(topic: topic) ?? kafkaArchive(args)
        let partitions = try await log.offsets(topic: topic).map(\.partition)
        var rows: [PruneRow] = []
        for p in partitions {
            // One partition's failure (the store down, a damaged manifest) does not hide what
            // was done in the others: each says what happened, and the command fails at the end.
            do {
                let pruned = try await BlockingExecutor.shared.run { try archive.prune(topic: topic, partition: p, olderThanMs: olderThan, dryRun: dryRun) }
                rows.append(PruneRow(partition: p, deleted: pruned.deleted, kept: pruned.kept, error: pruned.refused, dryRun: dryRun))
            } catch {
                rows.append(PruneRow(partition: p, deleted: [], kept: [], error: "\(error)", dryRun: dryRun))
            }
        }
        let failed = rows.filter { $0.error != nil }
        if try GlobalOptions.json(args) {
            Console.out(try jsonText(PruneReport(topic: topic, dryRun: dryRun, olderThanMs: olderThan, partitions: rows)))
        } else {
            func size(_ objects: [ArchiveObject]) -> String {
                let bytes = objects.reduce(0) { $0 + $1.bytes }
                return "\(objects.count) (\(String(format: "%.1f", Double(bytes) / 1_048_576)) MiB)"
            }
            var table = TextTable(["PARTITION", dryRun ? "TO DELETE" : "DELETED", "KEPT (YOUNGER)", ""])
            for row in rows { table.add(["\(row.partition)", size(row.deleted), size(row.kept), row.error == nil ? "" : "NOT PRUNED"]) }
            Console.out(table.render(), terminator: "")
            let deleted = rows.flatMap(\.deleted), kept = rows.flatMap(\.kept)
            Console.out((dryRun ? "would delete " : "deleted ") + "\(size(deleted)) objects that no manifest of \"\(topic)\" names, written over \(DurationText.format(milliseconds: olderThan)) ago"
                        + (kept.isEmpty ? "" : "; kept \(size(kept)) younger ones (a writer may yet record them)"))
        }
        if !failed.isEmpty {
            throw LogError(.io, failed.map { "partition \($0.partition) not pruned: \($0.error!)" }.joined(separator: "\n"), topic: topic)
        }
    }

    struct PruneRow: Encodable {
        var partition: Int
        var deleted: [ArchiveObject]
        var kept: [ArchiveObject]
        /// Why the partition was not pruned (nothing deleted after it failed).
        var error: String?

        enum CodingKeys: String, CodingKey { case partition, deleted, wouldDelete, kept, error }
        /// In a dry run, what would go is `wouldDelete`, not `deleted`.
        var dryRun = false

        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(partition, forKey: .partition)
            try c.encode(deleted, forKey: dryRun ? .wouldDelete : .deleted)
            try c.encode(kept, forKey: .kept)
            try c.encodeIfPresent(error, forKey: .error)
        }
    }

    struct PruneReport: Encodable {
        var topic: String
        var dryRun: Bool
        var olderThanMs: Int64
        var partitions: [PruneRow]
    }
}
