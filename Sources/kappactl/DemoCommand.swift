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
        run: runDemo)

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
