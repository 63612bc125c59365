import Foundation
import Synchronization

/// `kappactl demo`: the lecture's Bitcoin price pipeline, run through the Kappa workflow on the
/// embedded default, with the controller (JobHost's service) in this process.
///
/// history → deploy v1 → serving → chart → deploy v2 while live ticks arrive → progress → caught
/// up → diff → promote → query v2 → rollback → promote again → retire v1 → history.
public struct KappaDemo: Sendable {
    public var state: StateDirectory
    public var seed: UInt64
    public var minutes: Int
    /// Live ticks per second per currency while v2 replays.
    public var liveRate: Int = 20
    /// One or two lines per step.
    public var narrate: @Sendable (String) -> Void
    /// A progress line, redrawn in place when the caller can.
    public var progress: @Sendable (String) -> Void

    public init(state: StateDirectory, seed: UInt64, minutes: Int,
                narrate: @escaping @Sendable (String) -> Void, progress: @escaping @Sendable (String) -> Void) {
        self.state = state
        self.seed = seed
        self.minutes = minutes
        self.narrate = narrate
        self.progress = progress
    }

    /// What the demo left behind, for checks.
    public struct Result: Sendable {
        public var historyTicks: Int
        public var liveTicks: Int
        public var history: [HistoryEntry]
    }

    public func run() async throws -> Result {
        let log = try SegmentLog(state: state)
        let store = try Store.sqlite(state: state)
        let op = Operator(log: log, store: store, actor: "kappactl demo")
        let started = ContinuousClock.now

        narrate("1. The unified log: topic \"bpi\" with 3 partitions, keyed by currency (Kafka's partitioner), in \(state.logDirectory)")
        _ = try await log.createTopic(BPIProducer.topic, config: TopicConfig(partitions: 3))
        let feed = BPIProducer(log: log, seed: seed)
        let historyTicks = try await feed.history(minutes: minutes)
        narrate("2. Produced \(minutes) minutes of Bitcoin Price Index history: \(Render.grouped(Int64(historyTicks))) ticks (EUR, USD, GBP, one a second each; seed \(seed))")

        var configuration = Controller.Configuration()
        configuration.tickMs = 100
        configuration.recordLagMs = 250
        let controller = Controller(log: log, store: store, logger: EventLogger(format: .text) { _ in }, actor: "JobHost (in the demo)",
                                    configuration: configuration)
        let host = Task { await controller.run() }
        defer { host.cancel() }

        try await deployAndWait(op, DemoManifests.v1, file: "Manifests/btc-v1.json",
                                "3. Deployed btc v1 (per-minute mean rate): JobHost replays the log from offset 0 into btc_prices__v1")
        narrate("   v1 caught up and serves: readers of the view btc_prices now see it")

        let eur = try await store.query("SELECT avg_rate FROM btc_prices WHERE currency = 'EUR' ORDER BY minute").rows.compactMap { row -> Double? in
            if case .real(let d) = row[0] { return d } else { return nil }
        }
        if let first = eur.first, let last = eur.last {
            narrate("4. EUR from the serving view, one point a minute:")
            narrate("   \(Sparkline.render(eur, width: 60))  \(String(format: "%.2f", first)) → \(String(format: "%.2f", last))")
        }

        // Live ticks: the random walk goes on, stamped with the time they arrive.
        let sent = Atomic<Int>(0)
        let liveRate = self.liveRate, afterSeconds = minutes * 60
        let feeder = Task { try await feed.live(rate: liveRate, afterSeconds: afterSeconds) { sent.store($0, ordering: .relaxed) } }
        defer { feeder.cancel() }

        try await deployAndWait(op, DemoManifests.v2, file: "Manifests/btc-v2.json",
                                "5. New logic: btc v2 (OHLC candles) deployed while live ticks arrive; it replays from offset 0 while v1 keeps serving")
        narrate("   v2 has caught up with the live log (lag within its catchUp.maxLag, held for catchUp.holdFor)")

        narrate("6. Before switching, the diff of v1 and v2:")
        narrate(try await op.diff(job: "btc", 1, 2).text.split(separator: "\n").map { "   " + $0 }.joined(separator: "\n"))

        _ = try await op.promote(job: "btc", version: 2, force: false)
        narrate("7. Promoted v2 (its check held: v2 has at least as many rows as v1): one transaction switched the view; v1 is standby")
        let candles = try await store.query("SELECT currency, minute, samples, open, high, low, close FROM btc_prices WHERE currency = 'EUR' ORDER BY minute DESC LIMIT 3")
        var table = TextTable(candles.columns.map { $0.uppercased() })
        for row in candles.rows { table.add(row.map(\.display)) }
        narrate(table.render().split(separator: "\n").map { "   " + $0 }.joined(separator: "\n"))

        _ = try await op.rollback(job: "btc")
        let latest = try await store.query("SELECT max(minute), sum(samples) FROM btc_prices").rows[0]
        narrate("8. Rolled back: v1 serves again at once; it kept running as standby, so it is current: \(latest[1].display) ticks up to minute \(latest[0].display)")
        _ = try await op.promote(job: "btc", version: 2, force: false)
        narrate("9. Promoted v2 again (rolling forward). Its promote.analysis now watches it: every second for 5s, its checks")
        narrate("   (sane candles, few dead letters, lag under 1,000); two failures would roll it back on its own")
        let bakeDeadline = currentTimeMillis() + 60_000
        var bake: StatusReport.Bake?
        while currentTimeMillis() < bakeDeadline {
            bake = try await op.status(job: "btc").jobs[0].versions.first(where: { $0.version == 2 })?.bake
            if bake?.outcome != nil { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        if let bake, bake.outcome == "passed" {
            narrate("   analysis passed: \(bake.evaluations) evaluations, \(bake.failures) failures; v2 keeps serving")
        } else {
            narrate("   analysis: \(bake?.text ?? "not seen") (see kappactl history btc)")
        }

        feeder.cancel()
        try await feeder.value
        let liveTicks = sent.load(ordering: .relaxed)
        try await op.retire(job: "btc", version: 1)
        narrate("10. Retired v1: its workers stopped, its tables dropped. \(liveTicks) live ticks arrived during the demo.")

        // Let v2 take in the last live ticks, so that its table covers the whole log.
        let deadline = currentTimeMillis() + 30_000
        while try await op.status(job: "btc").jobs[0].versions.first(where: { $0.version == 2 })?.lag ?? 0 > 0, currentTimeMillis() < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        host.cancel()
        await host.value

        let entries = try await store.history(job: "btc")
        var historyTable = TextTable(["VERSION", "FROM", "TO", "REASON"])
        for e in entries { historyTable.add(["\(e.version)", e.from?.rawValue ?? "-", e.to.rawValue, e.reason]) }
        narrate("11. The history of every transition:")
        narrate(historyTable.render().split(separator: "\n").map { "   " + $0 }.joined(separator: "\n"))
        let elapsed = ContinuousClock.now - started
        narrate("Done in \(elapsed.formatted(.units(allowed: [.seconds], width: .abbreviated, fractionalPart: .show(length: 1)))).")
        return Result(historyTicks: historyTicks, liveTicks: liveTicks, history: entries)
    }

    /// Deploys a built-in manifest and shows the replay's progress until the version is ready.
    private func deployAndWait(_ op: Operator, _ manifest: String, file: String, _ message: String) async throws {
        let spec = try ManifestParser.parse(manifest, file: file)
        _ = try await op.deploy(spec: spec, manifest: manifest, allowPartial: false)
        narrate(message)
        _ = try await op.wait(job: spec.job, version: spec.version, timeoutMs: 120_000, pollMs: 100) { progress(Render.progress($0)) }
        progress("")
    }
}
