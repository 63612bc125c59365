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
        "run", abstract: "Copy every closed segment not yet archived into the archive now (JobHost does it every --retention-interval).",
        arguments: [Argument("topic", help: "Topic (created with --archive DIR).")],
        run: runArchive)

    static func segmentLog(_ args: ParsedArguments) throws -> SegmentLog {
        guard let log = try GlobalOptions.log(args) as? SegmentLog else {
            throw LogError(.invalidArgument, "the archive is built for the embedded log; for Kafka topics it is not there yet")
        }
        return log
    }

    static func runStatus(_ args: ParsedArguments) async throws {
        let topic = args.argument("topic")!
        let partitions = try await segmentLog(args).archiveStatus(topic: topic)
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
        let copied = try await segmentLog(args).archiveClosedSegments(topic: topic)
        Console.out("archived \(copied) closed segment\(copied == 1 ? "" : "s") of \"\(topic)\"")
    }
}
