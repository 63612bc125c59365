import KappaCore

enum DemoCommand {
    static let command = Command(
        "demo", abstract: "Run the Bitcoin price pipeline demo on the embedded log.",
        discussion: """
            Produces a synthetic, deterministic Bitcoin Price Index feed (EUR, USD, GBP) into topic
            "bpi" in a fresh state directory, then runs the Kappa workflow with the controller in
            this process: deploy v1, chart, deploy v2 while live ticks arrive, diff, promote,
            rollback, promote again, retire v1, history. Needs no network. The directory is removed
            afterwards unless --keep (or --state) is given.
            """,
        options: [
            .value("seed", "N", help: "Seed of the random walk (default 42)."),
            .value("minutes", "N", help: "Minutes of history at one tick per second per currency (default 180)."),
            .flag("keep", help: "Keep the temporary state directory for inspection."),
        ],
        subcommands: [produce],
        run: runDemo)

    static let produce = Command(
        "produce", abstract: "Produce the BPI feed into topic bpi of the state directory (created if missing).",
        discussion: """
            Appends --minutes of history ending now (default 180, or 0 with --rate), then with --rate
            keeps appending live ticks, N a second per currency, until Ctrl-C.
            """,
        options: [
            .value("minutes", "N", help: "Minutes of history (one tick per second per currency)."),
            .value("rate", "N", help: "Live ticks per second per currency, until Ctrl-C."),
            .value("seed", "N", help: "Seed of the random walk (default 42)."),
            GlobalOptions.output,
        ],
        run: runProduce)

    static func runProduce(_ args: ParsedArguments) async throws {
        let signals = TerminationSignal()
        let json = try GlobalOptions.json(args)
        let seed = UInt64(try args.int("seed", in: 0...Int64.max) ?? 42)
        let rate = try args.int("rate", in: 1...1000).map(Int.init)
        let minutes = Int(try args.int("minutes", in: 0...100_000) ?? (rate == nil ? 180 : 0))
        let producer = BPIProducer(log: try GlobalOptions.log(args), seed: seed)
        try await producer.ensureTopic()
        if minutes > 0 {
            let n = try await producer.history(minutes: minutes)
            Console.out(json ? "{\"topic\":\"bpi\",\"history\":\(n),\"minutes\":\(minutes)}" : "appended \(n) ticks of history (\(minutes) minutes) to \"bpi\"")
        }
        guard let rate else { return }
        if !json { Console.out("producing \(rate) live ticks a second per currency into \"bpi\"; Ctrl-C stops") }
        let tty = Console.stderrIsTerminal
        let live = Task {
            try await producer.live(rate: rate, afterSeconds: minutes * 60) { n in
                if tty && n % (rate * 3) == 0 { Console.error("\rsent \(n) live ticks", terminator: "") }
            }
        }
        _ = await signals.wait()
        live.cancel()
        try await live.value
        if tty { Console.error("") }
    }

    static func demo(_ state: StateDirectory, seed: UInt64, minutes: Int) -> KappaDemo {
        let tty = Console.stderrIsTerminal
        return KappaDemo(state: state, seed: seed, minutes: minutes, narrate: { Console.out($0) }, progress: { line in
            if tty { Console.error("\r\u{1B}[2K" + line, terminator: "") }
        })
    }

    static func runDemo(_ args: ParsedArguments) async throws {
        let seed = UInt64(try args.int("seed", in: 0...Int64.max) ?? 42)
        let minutes = Int(try args.int("minutes", in: 1...100_000) ?? 180)
        let explicit = args.string("state")
        let path = try explicit ?? FileSystem.makeTemporaryDirectory(prefix: "kappa-demo") + "/state"
        let state = try StateDirectory(path: path)
        if explicit == nil && !args.flag("keep") {
            defer { try? FileSystem.removeTree(FileSystem.parentDirectory(path)) }
            _ = try await demo(state, seed: seed, minutes: minutes).run()
            Console.out("The temporary state directory was removed (--keep leaves it).")
        } else {
            _ = try await demo(state, seed: seed, minutes: minutes).run()
            Console.out("State kept in \(path). Try: kappactl --state \(path) status; kappactl --state \(path) query btc")
        }
    }
}
