import KappaCore

enum ProduceCommand {
    static let command = Command(
        "produce", abstract: "Append records read from standard input, one per line.",
        discussion: """
            Each line is a JSON object {"key": …, "value": …, "timestamp": …}: key and timestamp
            (milliseconds) are optional; a string key is stored as its UTF-8 bytes and decides the
            partition as Kafka's default partitioner would; the value, any JSON, is stored as its
            JSON text. With --raw each line is stored as a value as it is.
            A malformed line stops the command with its line number: the lines before it are
            appended, none after. When the log fails, the command prints what was appended
            until then, if anything (partitions the failing batch reached included), and the
            error. Records are acknowledged once fsynced; with --progress each
            acknowledged batch prints `acknowledged N` (the total so far) on stderr, so that a
            script knows how far a stream got if the command is interrupted.
            """,
        options: [
            .flag("raw", help: "Each line is a value, stored as it is."),
            .flag("progress", help: "Print `acknowledged N` on stderr after each acknowledged batch."),
            GlobalOptions.output,
        ],
        arguments: [Argument("topic", help: "Topic to append to.")],
        run: runCommand)

    static func runCommand(_ args: ParsedArguments) async throws {
        let json = try GlobalOptions.json(args)
        let producer = LineProducer(log: try GlobalOptions.log(args), topic: args.argument("topic")!, raw: args.flag("raw"))
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

enum ConsumeCommand {
    static let command = Command(
        "consume", abstract: "Print records as JSON lines {partition, offset, timestamp, key, value}.",
        discussion: """
            Starts at the earliest retained offset (or at the end with --follow alone). Values that
            are valid JSON are printed as JSON, others as strings.
            """,
        options: [
            .value("partition", short: "p", "P", help: "Only this partition (default: all, taking turns)."),
            .value("offset", "N", help: "Start at offset N (in every partition read)."),
            .flag("from-beginning", help: "Start at the earliest retained offset."),
            .value("limit", short: "n", "N", help: "Stop after N records."),
            .flag("follow", short: "f", help: "Keep waiting for new records (Ctrl-C stops)."),
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
        try await tail.run { records in
            var out = ""
            for record in records { out += RecordJSON.consumerLine(record) + "\n" }
            Console.write(1, out)
        }
    }
}

