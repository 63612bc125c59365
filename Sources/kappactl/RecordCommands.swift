import KappaCore

enum ProduceCommand {
    static let command = Command(
        "produce", abstract: "Append records read from standard input, one per line.",
        discussion: """
            Each line is a JSON object {"key": …, "value": …, "headers": …, "timestamp": …}: key,
            headers and timestamp (milliseconds) are optional; a string key is stored as its UTF-8
            bytes and decides the partition as Kafka's default partitioner would; the value, any
            JSON, is stored as its JSON text, and "value": null is a tombstone. "keyBase64",
            "valueText" (a string stored as its text) and "valueBase64" give other bytes; headers
            are [{"key": name, "value": text|null|"valueBase64": …}] or {"name": text|null}.
            With --format base64|hex, key, value and header values are strings in that encoding.
            What consume prints (in the same format) produces the same records again.
            With --raw each line is stored as a value as it is.
            A malformed line stops the command with its line number: the lines before it are
            appended, none after. When the log fails, the command prints what was appended
            until then, if anything (partitions the failing batch reached included), and the
            error. Records are acknowledged once fsynced; with --progress each
            acknowledged batch prints `acknowledged N` (the total so far) on stderr, so that a
            script knows how far a stream got if the command is interrupted.
            """,
        options: [
            .flag("raw", help: "Each line is a value, stored as it is."),
            .value("format", "FORMAT", help: "How key, value and header values are written: json (default), base64 or hex."),
            .flag("progress", help: "Print `acknowledged N` on stderr after each acknowledged batch."),
            GlobalOptions.output,
        ],
        arguments: [Argument("topic", help: "Topic to append to.")],
        run: runCommand)

    static func runCommand(_ args: ParsedArguments) async throws {
        let json = try GlobalOptions.json(args)
        let format = try recordFormat(args)
        if format != .json && args.flag("raw") { throw args.usageError("--raw and --format exclude each other") }
        let producer = LineProducer(log: try GlobalOptions.log(args), topic: args.argument("topic")!, raw: args.flag("raw"), format: format)
        let showProgress = Console.stderrIsTerminal && !args.flag("progress")
        var progress: (@Sendable (Int) -> Void)? = showProgress ? drawProgress : nil
        if args.flag("progress") { progress = { @Sendable total in Console.error("acknowledged \(total)") } }
        do {
            let summary = try await producer.run(progress: progress)
            if showProgress && summary.records > 0 { Console.error("\r", terminator: "") }
            report(summary, json: json)
        } catch let error as ProduceError {
            if showProgress { Console.error("\r", terminator: "") }
            report(error.summary, json: json)
            throw error
        } catch let error as ProduceInterrupted {
            if showProgress { Console.error("\r", terminator: "") }
            if error.summary.records > 0 { report(error.summary, json: json) }  // else the error alone
            throw error
        }
    }

    @Sendable static func drawProgress(_ records: Int) {
        Console.error("\rappended \(records) records…", terminator: "")
    }

    static func report(_ summary: ProduceSummary, json: Bool) {
        if json {
            Console.out((try? jsonText(summary)) ?? "{}")
            return
        }
        Console.out("appended \(summary.records) record\(summary.records == 1 ? "" : "s") to \"\(summary.topic)\"")
        for p in summary.partitions {
            Console.out("  partition \(p.partition): \(p.count) (offset\(p.count == 1 ? "" : "s") \(p.ranges.map(\.description).joined(separator: ", ")))")
        }
    }
}

/// `--format json|base64|hex` of produce and consume.
func recordFormat(_ args: ParsedArguments) throws -> RecordFormat {
    guard let text = args.string("format") else { return .json }
    guard let format = RecordFormat(rawValue: text) else {
        throw args.usageError("--format must be json, base64 or hex, not \"\(text)\"")
    }
    return format
}

enum ConsumeCommand {
    static let command = Command(
        "consume", abstract: "Print records as JSON lines {partition, offset, timestamp, key, value, headers}.",
        discussion: """
            Starts at the earliest retained offset (or at the end with --follow alone). With
            --format json (the default) a value that is JSON is printed as JSON, other UTF-8 text
            as "valueText": "…", other bytes as "valueBase64"; a key that is not UTF-8 as
            "keyBase64"; a tombstone as "value": null; headers, when a record has any, as
            "headers": [{"key": name, "value": text|null}] ("valueBase64" for bytes). With
            --format base64|hex, key, value and header values are strings in that encoding.
            """,
        options: [
            .value("partition", short: "p", "P", help: "Only this partition (default: all, taking turns)."),
            .value("offset", "N", help: "Start at offset N (in every partition read)."),
            .flag("from-beginning", help: "Start at the earliest retained offset."),
            .value("limit", short: "n", "N", help: "Stop after N records."),
            .flag("follow", short: "f", help: "Keep waiting for new records (Ctrl-C stops)."),
            .value("format", "FORMAT", help: "How key, value and header values are printed: json (default), base64 or hex."),
        ],
        arguments: [Argument("topic", help: "Topic to read.")],
        run: runCommand)

    static func runCommand(_ args: ParsedArguments) async throws {
        if args.string("offset") != nil && args.flag("from-beginning") {
            throw args.usageError("--offset and --from-beginning exclude each other")
        }
        let follow = args.flag("follow")
        let start: LogTail.Start
        if let offset = try args.int("offset", in: 0...Int64.max) {
            start = .offset(offset)
        } else if args.flag("from-beginning") || !follow {
            start = .beginning
        } else {
            start = .end
        }
        let tail = LogTail(log: try GlobalOptions.log(args), topic: args.argument("topic")!,
                           partition: try args.int("partition", in: 0...10_000).map(Int.init), start: start,
                           limit: try args.int("limit", in: 0...Int64.max).map(Int.init), follow: follow)
        let format = try recordFormat(args)
        try await tail.run { records in
            var out = ""
            for record in records { out += RecordJSON.consumerLine(record, format: format) + "\n" }
            Console.write(1, out)
        }
    }
}

