import Foundation
import KappaCore
import Synchronization

/// deploy, status, lag, promote, rollback, retire, history, query: thin fronts over `Operator`.
enum JobCommands {
    static func makeOperator(_ args: ParsedArguments) throws -> (Operator, StateDirectory) {
        let state = try GlobalOptions.stateDirectory(args)
        // The catalog first: its errors (a server down, a URL wrong) say more than the log's.
        let store = try GlobalOptions.store(args, state: state)
        let op = Operator(log: try GlobalOptions.log(args, state: state), store: store, actor: "kappactl@\(JobHostService.hostname())")
        return (op, state)
    }

    static let all = [deploy, status, wait, lag, promote, rollback, pause, resume, retire, history, query, diff]

    static let deploy = Command(
        "deploy", abstract: "Register a new version of a job from its manifest; JobHost replays it from offset 0.",
        discussion: """
            The version must be above every earlier version of the job. Before a replay from offset 0
            the log must still hold offset 0 of every partition; if retention deleted it the deploy
            is refused (exit 4) unless --allow-partial, which is recorded in the history.
            With --wait, shows progress until the version has caught up (and serves, when it is the
            job's first version or promotes automatically); exit 5 on --timeout.
            """,
        options: [
            .value("file", short: "f", "MANIFEST", help: "The manifest (JSON).", required: true),
            .flag("wait", help: "Wait until caught up (and serving if it promotes automatically)."),
            .value("timeout", "DURATION", help: "With --wait: give up after this long (exit 5)."),
            .flag("allow-partial", help: "Replay from the earliest retained offsets if retention deleted offset 0."),
            .value("max-rate", "N", help: "Replay at most N records a second (sets the manifest's replay.maxRate)."),
            GlobalOptions.output,
        ],
        run: runDeploy)

    static func runDeploy(_ args: ParsedArguments) async throws {
        let json = try GlobalOptions.json(args)
        let timeout = try args.duration("timeout")
        if timeout != nil && !args.flag("wait") { throw args.usageError("--timeout goes with --wait") }
        let (op, state) = try makeOperator(args)
        let path = args.string("file")!
        let maxRate = try args.int("max-rate", in: 1...1_000_000_000_000).map(Double.init)
        let record: VersionRecord
        if let existing = try await op.registeredAlready(try ManifestParser.load(path: path, maxRate: maxRate).spec) {
            // A retry (or re-attaching after Ctrl-C of --wait): the same version, the same manifest.
            record = existing
            if !json { Console.out("\(record.job) version \(record.version) is already registered (\(record.state.rawValue)); nothing changed") }
        } else {
            record = try await op.deploy(manifestPath: path, allowPartial: args.flag("allow-partial"), maxRate: maxRate)
            if !json {
                Console.out("registered \(record.job) version \(record.version) (pending): replays topic \"\(record.spec.source.topic)\" into \(record.spec.versionTable)")
            }
        }
        let spec = record.spec
        if try await !op.jobHostAlive() {
            Console.error("note: no JobHost is running on \(state.path); start one (JobHost --state \(state.path)) to replay")
        }
        var final = record.state
        if args.flag("wait") {
            sayHowToWaitAgainOnInterrupt("\(spec.job) version \(spec.version) goes on replaying")
            let draw = progressDrawer()
            final = try await op.wait(job: spec.job, version: spec.version, timeoutMs: timeout) { v in draw(Render.progress(v)) }
            if Console.stderrIsTerminal { Console.error("") }
            if !json { Console.out("\(spec.job) version \(spec.version) is \(final.rawValue)") }
        }
        if json {
            Console.out("{\"job\":\(JSONScanner.quote(spec.job)),\"version\":\(spec.version),\"state\":\"\(final.rawValue)\",\"table\":\(JSONScanner.quote(spec.versionTable))}")
        }
    }

    static let status = Command(
        "status", abstract: "Show jobs: the serving version, and per version its state, lag, rate, ETA and error.",
        discussion: """
            With --watch, shows the status again every --interval (default 2s) until Ctrl-C: redrawn
            in place on a terminal, one report after another otherwise (with --output json, one JSON
            object a line).
            """,
        options: [GlobalOptions.output, .flag("watch", short: "w", help: "Show it again every --interval until Ctrl-C."),
                  .value("interval", "D", help: "With --watch: how often (default 2s).")],
        arguments: [Argument("job", help: "Only this job.", optional: true)],
        run: runStatus)

    static func runStatus(_ args: ParsedArguments) async throws {
        let json = try GlobalOptions.json(args)
        let interval = try args.duration("interval")
        if interval != nil && !args.flag("watch") { throw args.usageError("--interval goes with --watch") }
        if let interval, interval < 100 { throw args.usageError("--interval: at least 100ms") }
        let (op, state) = try makeOperator(args)
        let tty = Console.stdoutIsTerminal
        while true {
            let report = try await op.status(job: args.argument("job"))
            let text = json ? try jsonText(report) + "\n" : statusText(report, state: state)
            if args.flag("watch") && tty && !json {
                Console.out("\u{1b}[H\u{1b}[2J" + "every \(DurationText.format(milliseconds: interval ?? 2_000)), \(Render.time(currentTimeMillis())) UTC\n\n" + text, terminator: "")
            } else {
                Console.out(text, terminator: "")
            }
            guard args.flag("watch") else { return }
            if !tty && !json { Console.out("") }
            try await Task.sleep(for: .milliseconds(interval ?? 2_000))
        }
    }

    static func statusText(_ report: StatusReport, state: StateDirectory) -> String {
        var out = ""
        let now = currentTimeMillis()
        if report.jobs.isEmpty { out += "no jobs; deploy one with: kappactl deploy -f MANIFEST\n" }
        for job in report.jobs {
            let serving = job.serving.map { "version \($0)" }
                ?? job.viewReadsFailed.map { "nothing: version \($0) failed while serving, and the view still reads its table as it was" } ?? "nothing yet"
            out += "job \(TerminalText.escaped(job.name)): view \(job.view) on topic \(job.topic), serving \(serving)\n"
            var table = TextTable(["VERSION", "STATE", "LAG", "RATE/S", "ETA", "SINCE", "ERROR"])
            for v in job.versions {
                table.add(["\(v.version)", v.state.rawValue, v.lag.map { Render.grouped($0) } ?? "-",
                           v.rate.map { Render.grouped(Int64($0.rounded())) } ?? "-", v.etaSeconds.map { Render.seconds($0) } ?? "-",
                           Render.time(v.since), v.error ?? ""])
            }
            out += table.render().split(separator: "\n").map { "  " + $0 }.joined(separator: "\n") + "\n"
            for v in job.versions {
                if let unmet = v.unmet, !unmet.isEmpty, report.hosts.count > 0 || v.state == .replaying {
                    out += "  version \(v.version) waits for: \(unmet.joined(separator: "; "))\n"
                }
                if let bake = v.bake, bake.outcome == nil || v.state == .serving || bake.outcome == "rolledBack" {
                    out += "  version \(v.version): \(bake.text)" + (bake.outcome == nil ? ", ends \(Render.time(bake.endsAt)) UTC" : "")
                        + (bake.lastFailure.map { "; last failure: \(TerminalText.escaped($0))" } ?? "") + "\n"
                }
            }
            for problem in report.problems ?? [] where problem.job == job.name {
                out += "  version \(problem.version ?? 0) partition \(problem.partition ?? 0) on \(problem.host ?? "?"): "
                    + TerminalText.escaped(problem.text(now: now, subject: false)) + "\n"
            }
            if let error = job.logError { out += "  lag unknown: \(TerminalText.escaped(error))\n" }
            if let error = job.decisionError { out += "  decisions failing: \(TerminalText.escaped(error))\n" }
        }
        out += report.hosts.isEmpty
            ? "no JobHost is running on \(state.path)" + (report.lastHeartbeat.map { " (last heartbeat \(Render.time($0)) UTC); rates and ETAs unknown" } ?? "; rates and ETAs unknown")
            : "JobHost: \(report.hostsText)"
        for problem in report.problems ?? [] where problem.job == nil {
            out += "\n  \(problem.host ?? "?"): \(TerminalText.escaped(problem.text(now: now)))"
        }
        return out + "\n"
    }

    static let wait = Command(
        "wait", abstract: "Wait until a version is caught up, serving, retired or failed (like kubectl rollout status).",
        discussion: """
            Shows a progress bar on a terminal, a line every few seconds otherwise. Only reads the
            catalog: run it any number of times, from anywhere; Ctrl-C stops the waiting, never the
            version. Exit 0 when reached, 6 when the version fails (waiting for caughtUp or serving),
            4 when it is retired (waiting for anything else), 5 on --timeout.
            """,
        options: [.value("version", "N", help: "The version (default: the job's newest)."),
                  .value("for", "STATE", help: "caughtUp (or further: serving, standby), serving, retired or failed.", required: true),
                  .value("timeout", "D", help: "Give up after D (exit 5)."), GlobalOptions.output],
        arguments: [Argument("job", help: "The job.")],
        run: runWait)

    static func runWait(_ args: ParsedArguments) async throws {
        let json = try GlobalOptions.json(args)
        let targetName = args.string("for")!
        guard let target = WaitTarget.allCases.first(where: { $0.rawValue.lowercased() == targetName.lowercased() }) else {
            throw args.usageError("--for: \"\(targetName)\" is not one of \(WaitTarget.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let version = try args.int("version", in: 1...Int64(Int32.max)).map(Int.init)
        let timeout = try args.duration("timeout")
        let (op, _) = try makeOperator(args)
        let job = args.argument("job")!
        sayHowToWaitAgainOnInterrupt("the version goes on")
        let draw = progressDrawer()
        let number = LastVersion()
        let final = try await op.wait(job: job, version: version, for: target, timeoutMs: timeout) { v in
            number.set(v.version)
            draw("version \(v.version): " + Render.progress(v))
        }
        if Console.stderrIsTerminal { Console.error("") }
        if json {
            Console.out("{\"job\":\(JSONScanner.quote(job)),\"version\":\(number.get()),\"state\":\"\(final.rawValue)\"}")
        } else {
            Console.out("\(job) version \(number.get()) is \(final.rawValue)")
        }
    }

    static let lag = Command(
        "lag", abstract: "Show a version's lag per partition: end offset, next offset, lag, time lag.",
        options: [
            .value("version", "N", help: "The version (default: the serving one, else the newest)."),
            .flag("watch", short: "w", help: "Redraw every second until Ctrl-C."),
            GlobalOptions.output,
        ],
        arguments: [Argument("job", help: "The job.")],
        run: runLag)

    static func runLag(_ args: ParsedArguments) async throws {
        let json = try GlobalOptions.json(args)
        let version = try args.int("version", in: 1...Int64(Int32.max)).map(Int.init)
        let (op, _) = try makeOperator(args)
        repeat {
            let report = try await op.lag(job: args.argument("job")!, version: version)
            if json {
                Console.out(try jsonText(report))
            } else {
                var table = TextTable(["PARTITION", "END", "NEXT", "LAG", "TIME LAG"])
                for p in report.partitions {
                    table.add(["\(p.partition)", "\(p.end)", "\(p.next)", "\(p.lag)", p.timeLagMs.map { Render.seconds(Double($0) / 1000) } ?? "-"])
                }
                let e = report.estimate
                let text = "job \(report.job) version \(report.version) (\(report.state.rawValue))\n" + table.render()
                    + "total lag \(Render.grouped(e.totalLag)), rate \(e.rate.map { Render.grouped(Int64($0.rounded())) + "/s" } ?? "-"), "
                    + "ETA \(e.etaSeconds.map { Render.seconds($0) } ?? "-"), \(e.verdict.rawValue)"
                    + (report.unmet.map { $0.isEmpty ? "" : "\nwaiting for: " + $0.joined(separator: "; ") } ?? "")
                Console.out(args.flag("watch") && Console.stdoutIsTerminal ? "\u{1B}[H\u{1B}[2J" + text : text)
            }
            if args.flag("watch") { try await Task.sleep(for: .seconds(1)) }
        } while args.flag("watch")
    }

    static let dryRun = Option.flag("dry-run", help: "Print what would change (and the checks that would run); change nothing.")

    static let promote = Command(
        "promote", abstract: "Switch readers to a version in one transaction; the serving one becomes standby.",
        discussion: """
            Without --version: the newest caught-up or standby version newer than the serving one.
            Safe to retry: when that version already serves, exits 0 and changes nothing. Never goes
            back to an older version (use rollback --to N). Refused (exit 4) when the version has
            not caught up, or a promote check fails, unless --force (recorded).
            """,
        options: [
            .value("version", "N", help: "The version (default: the newest caught-up or standby version newer than the serving one)."),
            .flag("force", help: "Promote even if not caught up, and skip the manifest's checks."),
            .flag("skip-analysis", help: "Do not watch the version after the switch (promote.analysis); recorded in the history."),
            dryRun, GlobalOptions.output,
        ],
        arguments: [Argument("job", help: "The job.")],
        run: runPromote)

    static func runPromote(_ args: ParsedArguments) async throws {
        let json = try GlobalOptions.json(args)
        let (op, _) = try makeOperator(args)
        let job = args.argument("job")!
        let result = try await op.promote(job: job, version: try args.int("version", in: 1...Int64(Int32.max)).map(Int.init),
                                          force: args.flag("force"), skipAnalysis: args.flag("skip-analysis"), dryRun: args.flag("dry-run"))
        let text = result.switched
            ? "\(job): version \(result.serving) serves now" + (result.previous.map { " (version \($0) is standby)" } ?? "")
            : "\(job): version \(result.serving) already serves; nothing changed"
        try await printSwitch(args, op: op, job: job, result: result, text: text, json: json)
    }

    /// A promote's or rollback's outcome: the line (or JSON), and with --dry-run the actions.
    static func printSwitch(_ args: ParsedArguments, op: Operator, job: String, result: SwitchResult, text: String, json: Bool) async throws {
        let dry = args.flag("dry-run")
        let checks = try await op.versions(job: job)
        let lines = result.actions.map { action in action.summary { v in checks.first { $0.version == v }?.spec.promote.checks ?? [] } }
        if json {
            Console.out("{\"job\":\(JSONScanner.quote(job)),\"serving\":\(result.serving),\"previous\":\(result.previous.map(String.init) ?? "null"),"
                        + "\"changed\":\(result.switched && !dry),\"dryRun\":\(dry),\"actions\":[\(lines.map(JSONScanner.quote).joined(separator: ","))]}")
        } else if dry {
            Console.out(result.switched ? "dry run: \(job) would change in one transaction:\n" + lines.map { "  " + TerminalText.escaped($0) }.joined(separator: "\n")
                                        : "dry run: \(job): version \(result.serving) already serves; nothing would change")
        } else {
            Console.out(text)
        }
    }

    static let rollback = Command(
        "rollback", abstract: "Switch readers back to a standby version (instant: it kept running).",
        discussion: """
            Without --to: the newest standby version older than the serving one, so a retried
            rollback never rolls forward again (it is refused, exit 4, once none is older). With
            --to N: that standby version; exits 0 and changes nothing when N already serves.
            """,
        options: [.value("to", "N", help: "The standby version to serve again."), dryRun, GlobalOptions.output],
        arguments: [Argument("job", help: "The job.")],
        run: runRollback)

    static func runRollback(_ args: ParsedArguments) async throws {
        let json = try GlobalOptions.json(args)
        let (op, _) = try makeOperator(args)
        let job = args.argument("job")!
        let result = try await op.rollback(job: job, to: try args.int("to", in: 1...Int64(Int32.max)).map(Int.init), dryRun: args.flag("dry-run"))
        let text = result.switched
            ? "\(job): rolled back: version \(result.serving) serves now (version \(result.previous!) is standby)"
            : "\(job): version \(result.serving) already serves; nothing changed"
        try await printSwitch(args, op: op, job: job, result: result, text: text, json: json)
    }

    static let retire = Command(
        "retire", abstract: "Stop a version and drop its tables (not the serving one).",
        discussion: "Safe to retry: retiring a retired version exits 0 and changes nothing.",
        options: [.value("version", "N", help: "The version to retire.", required: true), dryRun, GlobalOptions.output],
        arguments: [Argument("job", help: "The job.")],
        run: runRetire)

    static func runRetire(_ args: ParsedArguments) async throws {
        let json = try GlobalOptions.json(args)
        let (op, _) = try makeOperator(args)
        let job = args.argument("job")!
        let version = Int(try args.int("version", in: 1...Int64(Int32.max))!)
        let dry = args.flag("dry-run")
        let actions = try await op.retire(job: job, version: version, dryRun: dry)
        let lines = actions.map { $0.summary() }
        if json {
            Console.out("{\"job\":\(JSONScanner.quote(job)),\"version\":\(version),\"changed\":\(!actions.isEmpty && !dry),\"dryRun\":\(dry),"
                        + "\"actions\":[\(lines.map(JSONScanner.quote).joined(separator: ","))]}")
        } else if actions.isEmpty {
            Console.out("\(job): version \(version) is already retired; nothing changed")
        } else if dry {
            Console.out("dry run: \(job) would change in one transaction:\n" + lines.map { "  " + $0 }.joined(separator: "\n"))
        } else {
            Console.out("\(job): version \(version) retired; its tables were dropped")
        }
    }

    static let pause = Command(
        "pause", abstract: "Stop a pending, replaying or caught-up version's workers, keeping its offsets and table.",
        discussion: "A paused version is never promoted. Safe to retry: pausing a paused version exits 0 and changes nothing.",
        options: [.value("version", "N", help: "The version to pause.", required: true), dryRun, GlobalOptions.output],
        arguments: [Argument("job", help: "The job.")],
        run: { try await runPauseOrResume($0, pause: true) })

    static let resume = Command(
        "resume", abstract: "Start a paused version's workers again; it replays on from its offsets.",
        discussion: "Safe to retry: resuming a version that is not paused (and still running) exits 0 and changes nothing.",
        options: [.value("version", "N", help: "The version to resume.", required: true), dryRun, GlobalOptions.output],
        arguments: [Argument("job", help: "The job.")],
        run: { try await runPauseOrResume($0, pause: false) })

    static func runPauseOrResume(_ args: ParsedArguments, pause: Bool) async throws {
        let json = try GlobalOptions.json(args)
        let (op, _) = try makeOperator(args)
        let job = args.argument("job")!
        let version = Int(try args.int("version", in: 1...Int64(Int32.max))!)
        let dry = args.flag("dry-run")
        let actions = pause ? try await op.pause(job: job, version: version, dryRun: dry) : try await op.resume(job: job, version: version, dryRun: dry)
        let lines = actions.map { $0.summary() }
        if json {
            Console.out("{\"job\":\(JSONScanner.quote(job)),\"version\":\(version),\"changed\":\(!actions.isEmpty && !dry),\"dryRun\":\(dry),"
                        + "\"actions\":[\(lines.map(JSONScanner.quote).joined(separator: ","))]}")
        } else if actions.isEmpty {
            Console.out("\(job): version \(version) is already \(pause ? "paused" : "running"); nothing changed")
        } else if dry {
            Console.out("dry run: \(job) would change in one transaction:\n" + lines.map { "  " + $0 }.joined(separator: "\n"))
        } else {
            Console.out(pause ? "\(job): version \(version) paused; its offsets and table are kept (resume with: kappactl resume \(job) --version \(version))"
                              : "\(job): version \(version) resumed; it replays on from its offsets")
        }
    }

    static let history = Command(
        "history", abstract: "Every state transition of a job's versions: time, version, from, to, reason, who.",
        discussion: "Oldest first. --limit keeps the newest N; --since keeps those of the last D (e.g. 1h).",
        options: [
            .value("limit", "N", help: "Only the newest N entries."),
            .value("since", "DURATION", help: "Only the entries of the last DURATION."),
            GlobalOptions.output,
        ],
        arguments: [Argument("job", help: "The job.")],
        run: runHistory)

    static func runHistory(_ args: ParsedArguments) async throws {
        let (op, _) = try makeOperator(args)
        let job = args.argument("job")!
        let limit = try args.int("limit", in: 1...Int64(Int32.max)).map(Int.init)
        let since = try args.duration("since")
        _ = try await op.versions(job: job)
        var entries = try await op.store.history(job: job, limit: since == nil ? limit : nil)
        if let since {
            let from = currentTimeMillis() - since
            entries.removeAll { $0.at < from }
            if let limit { entries = Array(entries.suffix(limit)) }
        }
        if try GlobalOptions.json(args) {
            Console.out(try jsonText(["history": entries]))
            return
        }
        var table = TextTable(["TIME (UTC)", "VERSION", "FROM", "TO", "REASON", "BY"])
        for e in entries {
            table.add([Render.time(e.at), "\(e.version)", e.from?.rawValue ?? "-", e.to.rawValue, TerminalText.escaped(e.reason), TerminalText.escaped(e.actor)])
        }
        Console.out(table.render(), terminator: "")
    }

    static let query = Command(
        "query", abstract: "Read the job's serving view, or run a read-only SQL query.",
        options: [GlobalOptions.output],
        arguments: [Argument("job", help: "The job."), Argument("sql", help: "SQL to run (default: every row of the view).", optional: true)],
        run: runQuery)

    static func runQuery(_ args: ParsedArguments) async throws {
        let (op, _) = try makeOperator(args)
        let result = try await op.query(job: args.argument("job")!, sql: args.argument("sql"))
        if try GlobalOptions.json(args) {
            Console.out(result.json)
            return
        }
        var table = TextTable(result.columns.map { $0.uppercased() })
        for row in result.rows { table.add(row.map(\.display)) }
        Console.out(table.render(), terminator: "")
        Console.out("(\(result.rows.count) row\(result.rows.count == 1 ? "" : "s"))")
    }
}

/// Rate-limits progress lines when stderr is not a terminal.
extension JobCommands {
    /// Ctrl-C (or SIGTERM) stops a wait, never the version: print how to wait again (the same
    /// command, which attaches) and exit 130.
    static func sayHowToWaitAgainOnInterrupt(_ goesOn: String) {
        let signals = TerminationSignal()
        let again = (["kappactl"] + CommandLine.arguments.dropFirst()).joined(separator: " ")
        Task {
            let name = await signals.wait()
            Console.error("\n\(name): stopped waiting; \(goesOn). To wait again: \(again)")
            exit(130)
        }
    }

    /// Draws a wait's progress on stderr: in place on a terminal, a line now and then otherwise.
    static func progressDrawer() -> @Sendable (String) -> Void {
        let tty = Console.stderrIsTerminal
        let lastLine = LastPrint()
        return { line in
            if tty { Console.error("\r" + line, terminator: "") } else if lastLine.due() { Console.error(line) }
        }
    }
}

/// The version a wait reports on (set from its progress callback).
final class LastVersion: Sendable {
    private let value = Mutex(0)
    func set(_ v: Int) { value.withLock { $0 = v } }
    func get() -> Int { value.withLock { $0 } }
}

final class LastPrint: @unchecked Sendable {  // used from one task at a time
    private var last: Int64 = 0
    func due() -> Bool {
        let now = currentTimeMillis()
        if now - last >= 2_000 { last = now; return true }
        return false
    }
}

extension JobCommands {
    static let diff = Command(
        "diff", abstract: "Compare two versions: manifest changes, row counts, and rows only in one or changed.",
        options: [GlobalOptions.output],
        arguments: [Argument("job", help: "The job."), Argument("a", help: "A version."), Argument("b", help: "Another version.")],
        run: runDiff)

    static func runDiff(_ args: ParsedArguments) async throws {
        guard let a = Int(args.argument("a")!), let b = Int(args.argument("b")!) else {
            throw args.usageError("versions are whole numbers")
        }
        let (op, _) = try makeOperator(args)
        let diff = try await op.diff(job: args.argument("job")!, a, b)
        Console.out(try GlobalOptions.json(args) ? try jsonText(diff) : diff.text)
    }
}
