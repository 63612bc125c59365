import Synchronization

/// The reconciler: reads the catalog, decides with `Lifecycle`, applies the decisions, and runs
/// one worker per partition of every running version. Every decision is one catalog
/// transaction, so a controller killed at any instant restarts from the catalog into a
/// consistent state.
///
/// Several JobHosts may share one catalog. Each runs this loop; leases in the catalog divide the
/// work: the controller lease says which one makes the lifecycle decisions (start, caught up,
/// automatic promotion, retirement, lag samples), and a lease per partition of each running
/// version says which one runs that partition's worker. Each host takes up to its share
/// (partitions ÷ live hosts, rounded up) and gives back what is above it, so a new host gets
/// work and a dead host's partitions move to the others once its leases expire. Every batch
/// commits only under its lease's epoch (`BatchStore.commit(fence:)`).
public final class Controller: Sendable {
    public struct Configuration: Sendable {
        /// How often the catalog is read.
        public var tickMs = 200
        /// How often lag samples are written to the catalog (for `kappactl status` elsewhere).
        public var recordLagMs: Int64 = 1_000
        /// How long a worker waits before polling an idle partition again.
        public var pollMs = 50
        /// Before restarting a partition's worker after an infrastructure error (the log or
        /// the object store unreachable); doubled after each failure in a row up to
        /// `maxRetryMs`, and back to this once a read succeeds.
        public var retryMs: Int64 = 2_000
        public var maxRetryMs: Int64 = 30_000
        /// How long a lease lasts unrenewed: a dead host's partitions and controller role move to
        /// another host after this. Leases are renewed every quarter of it.
        public var leaseTtlMs: Int64 = 10_000
        /// False: no leases, every partition and every decision here (a single process: the
        /// demo, tests).
        public var useLeases = true
        public init() {}
    }

    struct VersionKey: Hashable, Sendable {
        var job: String
        var version: Int
    }

    struct State {
        var workers: [LeaseKey: Task<Void, Never>] = [:]
        /// Leases this host holds (renewed every quarter of the TTL).
        var held: [LeaseKey: Lease] = [:]
        var isController = false
        var lastLeaseCheck: Int64 = 0
        /// When this host's leases were last renewed (by a tick or by `keepLeases`).
        var lastRenewal: Int64 = 0
        /// The running partitions at the last lease check: a change (a version started or
        /// stopped) checks leases at once instead of waiting for the next renewal.
        var leasedWork: Set<LeaseKey> = []
        /// Whether the last tick could not reach the catalog (logged once per change).
        var catalogDown = false
        var samples: [VersionKey: [LagSample]] = [:]
        var lastRecorded: [VersionKey: Int64] = [:]
        var failures: [VersionKey: String] = [:]
        var retryAfter: [LeaseKey: Int64] = [:]
        /// Failures in a row of each partition's worker (for the backoff).
        var retries: [LeaseKey: Int] = [:]
        var refusedAuto: Set<VersionKey> = []
        /// Per replaying version with `replay.maxRate`: each partition's share (records/s).
        var replayRates: [VersionKey: Double] = [:]
        /// The last failed decision per job, logged once until it changes or decisions succeed
        /// again (the log's brokers down fail every tick's lag reading for as long as they are).
        var decisionFailures: [String: String] = [:]
    }

    let log: any UnifiedLog
    let store: any CatalogStore & BatchStore
    let logger: EventLogger
    let actor: String
    let configuration: Configuration
    let clock: any KappaClock
    /// What this host's workers did (batches, records, commit latency), for `/metrics`.
    public let metrics = HostMetrics()
    /// What this host keeps failing at and retries, written with its heartbeat (JobHost's
    /// mirrors report theirs here too).
    public let problems = HostProblems()
    private let state = Mutex(State())
    /// Batches in flight at once across this host's workers (`VersionRunner.permits`).
    let permits = AsyncPermits(VersionRunner.defaultPermits)

    public init(log: any UnifiedLog, store: any CatalogStore & BatchStore, logger: EventLogger, actor: String, configuration: Configuration = .init(),
                clock: any KappaClock = WallClock()) {
        self.clock = clock
        self.log = log
        self.store = store
        self.logger = logger
        self.actor = actor
        self.configuration = configuration
    }

    /// Whether this host makes the lifecycle decisions now (holds the controller lease).
    public var isController: Bool { state.withLock { $0.isController } }

    /// Runs until cancelled; then stops the workers, letting batches being committed finish, and
    /// gives its leases back so that other hosts take over at once.
    public func run() async {
        let keeper = configuration.useLeases ? Task { [weak self] in await self?.keepLeases() } : nil
        await withTaskCancellationHandler {
            await loop()
        } onCancel: {
            // At once, not after the tick in progress: that tick may wait for the store's writer
            // behind the workers' commits, which the cancelled workers now give up.
            for worker in state.withLock({ Array($0.workers.values) }) { worker.cancel() }
        }
        keeper?.cancel()
        await keeper?.value
        await stopWorkers { _ in true }
        let held = state.withLock { s -> [LeaseKey] in
            defer { s.held = [:]; s.isController = false }
            return Array(s.held.keys)
        }
        if configuration.useLeases && !held.isEmpty { try? await store.releaseLeases(held, owner: actor) }
    }

    private func loop() async {
        while !Task.isCancelled {
            do {
                try await tick()
                if state.withLock({ s in defer { s.catalogDown = false }; return s.catalogDown }) {
                    logger.log(.info, "catalog reachable again", ["host": actor])
                }
            } catch where Self.isUnreachable(error) {
                // Logged once per change, not once per tick; the workers stop (their commits
                // cannot land) and start again once the catalog answers.
                if !state.withLock({ s in defer { s.catalogDown = true }; return s.catalogDown }) {
                    logger.log(.error, "catalog unreachable", ["host": actor, "error": "\(error)"])
                    await stopWorkers { _ in true }
                }
            } catch {
                logger.log(.error, "controller", ["error": "\(error)"])
            }
            try? await Task.sleep(for: .milliseconds(configuration.tickMs))
        }
    }

    /// Whether the catalog's server could not be reached (as opposed to a decision refused).
    static func isUnreachable(_ error: any Error) -> Bool {
        error.storeErrorClass == .unreachable || (error as? CatalogError)?.code == .unreachable
    }

    /// Whether the catalog is unreachable now, as the last tick found it.
    public var catalogUnreachable: Bool { state.withLock { $0.catalogDown } }

    /// One pass over one reading of the catalog: failures seen here, leases, the decisions (on
    /// the controller), the workers.
    func tick() async throws {
        let now = clock.now()
        var snapshot = try await store.snapshot(.decisions)
        for job in snapshot.jobs {
            let failures = state.withLock { s in
                let mine = s.failures.filter { $0.key.job == job.name }
                for key in mine.keys { s.failures[key] = nil }
                return mine
            }
            // The host that saw a version fail records it, controller or not.
            for (key, error) in failures {
                if try await decide(.failed(version: key.version, error: error), job: job.name, snapshot: &snapshot) {
                    logger.log(.error, "version failed", ["job": job.name, "version": "\(key.version)", "error": error])
                }
            }
        }
        // The replay caps, from this reading: a version caught up (or further) runs uncapped.
        var rates: [VersionKey: Double] = [:]
        for (job, versions) in snapshot.versions {
            for v in versions where v.state == .replaying || v.state == .pending {
                guard let rate = v.spec.replay.maxRate, let partitions = snapshot.offsets[VersionID(job: job, version: v.version)]?.count, partitions > 0 else { continue }
                rates[VersionKey(job: job, version: v.version)] = rate / Double(partitions)
            }
        }
        state.withLock { $0.replayRates = rates }
        var running = Self.partitions(snapshot)
        try await maintainLeases(running: running, now: now)
        if isController {
            for job in snapshot.jobs.map(\.name).sorted() {
                // A decision that fails for one job is that job's: the others are still decided.
                do {
                    try await decideFor(job: job, snapshot: &snapshot, now: now)
                    if state.withLock({ $0.decisionFailures.removeValue(forKey: job) }) != nil {
                        logger.log(.info, "decisions resumed", ["job": job])
                        try await store.noteDecisionError(job: job, error: nil)
                    }
                } catch where !Self.isUnreachable(error) {
                    let message = "\(error)"
                    if state.withLock({ s in defer { s.decisionFailures[job] = message }; return s.decisionFailures[job] != message }) {
                        logger.log(.error, "decision failed", ["job": job, "error": message])
                        // Shown by status in any process; the catalog may be why it failed.
                        try? await store.noteDecisionError(job: job, error: message)
                    }
                }
            }
        }
        // Versions started or stopped by these decisions get (or give back) their leases and
        // workers in this pass, not the next.
        let decided = Self.partitions(snapshot)
        if decided != running {
            running = decided
            try await maintainLeases(running: running, now: now)
        }
        try await reconcileWorkers(running: running, snapshot: snapshot, now: now)
    }

    /// Every partition of every running version, in order.
    static func partitions(_ snapshot: CatalogSnapshot) -> [LeaseKey] {
        snapshot.jobs.flatMap { job in
            snapshot.versions(of: job.name).filter(\.state.isRunning).flatMap { v in
                (0..<(snapshot.offsets[VersionID(job: job.name, version: v.version)]?.count ?? 0)).map {
                    LeaseKey(job: job.name, version: v.version, partition: $0)
                }
            }
        }
    }

    /// The controller's decisions for one job: start pending versions, watch lag, caught up,
    /// automatic promotion, retirement of old standbys.
    private func decideFor(job: String, snapshot: inout CatalogSnapshot, now: Int64) async throws {
        for v in snapshot.versions(of: job) where v.state == .pending {
            if try await decide(.start(version: v.version), job: job, snapshot: &snapshot) {
                logger.log(.info, "replay started", ["job": job, "version": "\(v.version)", "topic": v.spec.source.topic])
            }
        }
        try await observeLag(job: job, snapshot: &snapshot, now: now)
        try await bake(job: job, snapshot: &snapshot, now: now)
        if try await decide(.tick(now: now), job: job, snapshot: &snapshot) {
            logger.log(.info, "retired standby", ["job": job])
        }
    }

    /// Decides and applies one event from `snapshot`, which then reflects the change (later
    /// decisions in the tick see it). A decision from a reading the catalog has moved on from
    /// is refused in its transaction; the next tick decides again.
    /// - Returns: whether anything changed.
    @discardableResult
    func decide(_ event: LifecycleEvent, job: String, snapshot: inout CatalogSnapshot) async throws -> Bool {
        let actions: [CatalogAction]
        do {
            actions = try Lifecycle.decide(event, versions: snapshot.statuses(of: job))
        } catch {
            return false  // a state that moved on meanwhile: nothing to do
        }
        guard !actions.isEmpty else { return false }
        do {
            try await store.apply(job: job, actions: actions, actor: actor)
        } catch let error as CatalogError where error.code == .stateConflict {
            return false
        }
        snapshot.apply(actions, job: job, at: clock.now())
        return true
    }

    // MARK: Leases

    /// Renews what this host holds, takes the controller lease when free, and takes or gives
    /// back partitions towards this host's part of the assignment (`LeasePlan.assignment`).
    /// Every quarter of the lease TTL, and at once when the running versions change.
    private func maintainLeases(running: [LeaseKey], now: Int64) async throws {
        guard configuration.useLeases else {
            state.withLock { s in
                s.isController = true
                s.held = Dictionary(uniqueKeysWithValues: running.map { ($0, Lease(key: $0, owner: actor, epoch: 0, expiresAt: .max)) })
            }
            return
        }
        let ttl = configuration.leaseTtlMs
        let wanted = Set(running)
        guard state.withLock({ LeasePlan.isDue(now: now, lastCheck: $0.lastLeaseCheck, ttlMs: ttl, running: wanted, checkedWith: $0.leasedWork) }) else { return }
        var held = Dictionary(try await store.renewLeases(owner: actor, ttlMs: ttl).map { ($0.key, $0) }) { a, _ in a }
        state.withLock { $0.lastRenewal = clock.now() }
        if held[.controller] == nil, let lease = try await store.acquireLeases([.controller], owner: actor, ttlMs: ttl, limit: 1).first {
            held[.controller] = lease
        }
        let moves = LeasePlan.moves(held: Set(held.keys), running: running, hosts: try await store.liveHosts(withinMs: ttl), me: actor)
        if moves.limit > 0 {
            for lease in try await store.acquireLeases(moves.acquire, owner: actor, ttlMs: ttl, limit: moves.limit) { held[lease.key] = lease }
        }
        if !moves.release.isEmpty {
            let keys = Set(moves.release)
            await stopWorkers { keys.contains($0) }  // their batches in flight commit first
            try await store.releaseLeases(moves.release, owner: actor)
            for key in moves.release { held[key] = nil }
        }
        let (was, now_) = state.withLock { s -> (Bool, Bool) in
            let was = s.isController
            s.held = held
            s.isController = held[.controller] != nil
            s.lastLeaseCheck = now
            s.leasedWork = wanted
            return (was, s.isController)
        }
        if was != now_ { logger.log(.info, now_ ? "controller lease taken" : "controller lease lost", ["host": actor]) }
    }

    /// Renews the leases this host holds every quarter of the TTL when no tick has, apart from
    /// the ticks: a tick may wait on the log (every Kafka broker down: each offsets call waits
    /// about half a second, queued behind other Kafka calls), and a host waiting on its log is
    /// alive; its workers resume where they are once the log answers, so its partitions must
    /// not move to another host meanwhile. (Taking, giving back and losing leases stay the
    /// tick's: this only extends what is held.)
    private func keepLeases() async {
        let quarter = max(1, configuration.leaseTtlMs / 4)
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(quarter))
            let due = state.withLock { s in !s.held.isEmpty && clock.now() - s.lastRenewal >= quarter }
            guard due, !Task.isCancelled else { continue }
            // A failure (the catalog down) is the tick's to log; the next quarter tries again.
            if (try? await store.renewLeases(owner: actor, ttlMs: configuration.leaseTtlMs)) != nil {
                state.withLock { $0.lastRenewal = clock.now() }
            }
        }
    }

    // MARK: Workers

    private func reconcileWorkers(running: [LeaseKey], snapshot: CatalogSnapshot, now: Int64) async throws {
        let wanted = Set(running)
        let (held, workers) = state.withLock { ($0.held, Set($0.workers.keys)) }
        // A partition no longer run here (retired, failed, its lease moved) has no problem here.
        let gone = { (key: LeaseKey) in !wanted.contains(key) || (self.configuration.useLeases && held[key] == nil) }
        problems.clear { p in
            guard let job = p.job, let version = p.version, let partition = p.partition else { return false }
            return gone(LeaseKey(job: job, version: version, partition: partition))
        }
        // Nor a count of failures: if it comes back here, its first retry is the shortest again.
        state.withLock { s in
            for key in s.retries.keys where gone(key) { s.retries[key] = nil }
            for key in s.retryAfter.keys where gone(key) { s.retryAfter[key] = nil }
        }
        let unwanted = workers.filter { held[$0] == nil || !wanted.contains($0) }
        if !unwanted.isEmpty {
            await stopWorkers { unwanted.contains($0) }
            state.withLock { s in
                for key in unwanted where !wanted.contains(key) { s.samples[VersionKey(job: key.job, version: key.version)] = nil }
            }
        }
        for key in running.sorted() where !workers.contains(key) {
            if Task.isCancelled { return }  // shutting down: a worker started now would only be stopped
            guard let lease = held[key] else { continue }
            if let after = state.withLock({ $0.retryAfter[key] }), now < after { continue }
            guard let v = snapshot.versions(of: key.job).first(where: { $0.version == key.version }) else { continue }
            start(v, key: key, lease: lease)
        }
    }

    private func start(_ v: VersionRecord, key: LeaseKey, lease: Lease) {
        let versionKey = VersionKey(job: key.job, version: key.version)
        let job: any StreamJob
        do {
            job = try StreamJobs.make(v.spec)
        } catch {
            state.withLock { $0.failures[versionKey] = "\(error)" }
            return
        }
        let metrics = self.metrics
        let replayRate: @Sendable () -> Double? = { [weak self] in self?.state.withLock { $0.replayRates[versionKey] } }
        var runner = VersionRunner(log: log, store: store, job: job, permits: permits, sourceIncarnation: v.sourceIncarnation,
                                   replayRate: replayRate) { result, took in
            metrics.recordBatch(job: key.job, version: key.version, result, took: took)
        }
        let problems = self.problems
        let subject = HostProblems.subject(job: key.job, version: key.version, partition: key.partition)
        runner.onRead = { [weak self] in
            guard self?.state.withLock({ $0.retries.removeValue(forKey: key) }) != nil else { return }
            if problems.clear(subject) {
                self?.logger.log(.info, "worker recovered", ["job": key.job, "version": "\(key.version)", "partition": "\(key.partition)"])
            }
        }
        let pollMs = configuration.pollMs, fenced = configuration.useLeases, clock = self.clock
        let retryMs = configuration.retryMs, maxRetryMs = configuration.maxRetryMs
        let logger = self.logger
        // Started and entered under the lock: a worker that fails at once (an object store
        // refusing connections) takes itself out only after it was put in; entered afterwards,
        // its finished task stayed in `workers` and the partition was never started again.
        let run = runner
        let work: @Sendable () async -> Void = { [weak self] in
            do {
                try await run.runPartition(key.partition, fence: fenced ? lease : nil, mode: .follow(pollMs: pollMs))
            } catch let failure as JobFailure {
                metrics.recordFailure(job: key.job)
                self?.state.withLock { $0.failures[versionKey] = failure.description }
            } catch let lost as LeaseLostError {
                logger.log(.warning, "lease lost", ["job": key.job, "version": "\(key.version)", "partition": "\(key.partition)", "error": lost.description])
                _ = self?.state.withLock { $0.held.removeValue(forKey: key) }
            } catch is CancellationError {
            } catch {
                let wait = self?.state.withLock { s -> Int64 in
                    let failures = (s.retries[key] ?? 0) + 1
                    s.retries[key] = failures
                    let wait = min(maxRetryMs, retryMs << Int64(min(failures - 1, 20)))
                    s.retryAfter[key] = clock.now() + wait
                    return wait
                } ?? retryMs
                let text = "\(error)"
                // Logged once while it fails the same way; status shows it meanwhile.
                if problems.error(of: subject) != text {
                    logger.log(.warning, "worker stopped on an error; retrying", ["job": key.job, "version": "\(key.version)", "partition": "\(key.partition)",
                                                                                  "error": text, "retryInMs": "\(wait)"])
                }
                problems.report(job: key.job, version: key.version, partition: key.partition, error: text, retryInMs: wait)
            }
            // A cancelled worker is taken out (and its stop logged) by `stopWorkers`.
            if !Task.isCancelled { _ = self?.state.withLock { $0.workers.removeValue(forKey: key) } }
        }
        state.withLock { $0.workers[key] = Task(operation: work) }
        logger.log(.info, "worker started", ["job": key.job, "version": "\(key.version)", "partition": "\(key.partition)",
                                             "state": v.state.rawValue, "epoch": "\(lease.epoch)"])
    }

    /// Cancels the workers `which` selects and waits until they have stopped.
    private func stopWorkers(_ which: (LeaseKey) -> Bool) async {
        let tasks = state.withLock { s -> [(LeaseKey, Task<Void, Never>)] in
            let chosen = s.workers.filter { which($0.key) }
            for key in chosen.keys { s.workers[key] = nil }
            return chosen.map { ($0.key, $0.value) }
        }
        for (_, task) in tasks { task.cancel() }
        for (key, task) in tasks {
            await task.value
            logger.log(.info, "worker stopped", ["job": key.job, "version": "\(key.version)", "partition": "\(key.partition)"])
        }
    }

    private func observeLag(job: String, snapshot: inout CatalogSnapshot, now: Int64) async throws {
        let running = snapshot.versions(of: job).filter { $0.state.isRunning }
        guard !running.isEmpty else { return }
        var ends: [String: [Int64]] = [:]
        for v in running {
            let key = VersionKey(job: job, version: v.version)
            let topic = v.spec.source.topic
            guard let nexts = snapshot.offsets[VersionID(job: job, version: v.version)] else { continue }
            if ends[topic] == nil { ends[topic] = try await log.offsets(topic: topic).map(\.end) }
            let sample = LagSample(at: now, ends: ends[topic]!, nexts: nexts)
            let (window, record) = state.withLock { s -> ([LagSample], Bool) in
                var samples = s.samples[key] ?? []
                samples.append(sample)
                let keepFrom = now - v.spec.catchUp.holdForMs - 10_000
                samples.removeAll { $0.at < keepFrom }
                s.samples[key] = samples
                let due = now - (s.lastRecorded[key] ?? 0) >= configuration.recordLagMs
                if due { s.lastRecorded[key] = now }
                return (samples, due)
            }
            if record { try await store.recordLag(job: job, version: v.version, sample: sample, keep: 300) }
            // Each decision from the snapshot as earlier decisions of this pass left it (two
            // versions catching up in one pass must not both serve as "the first").
            if v.state == .replaying,
               LagMath.verdict(window, maxLag: v.spec.catchUp.maxLag, holdForMs: v.spec.catchUp.holdForMs) == .caughtUp,
               await timeLagWithin(v.spec, ends: ends[topic]!, nexts: nexts, now: now) {
                if try await decide(.caughtUp(version: v.version), job: job, snapshot: &snapshot) {
                    logger.log(.info, "caught up", ["job": job, "version": "\(v.version)", "lag": "\(sample.totalLag)"])
                    if snapshot.versions(of: job).first(where: { $0.version == v.version })?.state == .serving {
                        logger.log(.info, "serving", ["job": job, "version": "\(v.version)", "reason": "first version"])
                    }
                }
            }
            let current = snapshot.versions(of: job).first { $0.version == v.version }?.state
            let servingVersion = snapshot.versions(of: job).first { $0.state == .serving }?.version
            if current == .caughtUp, v.spec.promote.mode == .auto, servingVersion.map({ $0 < v.version }) ?? true,
               !state.withLock({ $0.refusedAuto.contains(key) }) {
                do {
                    if try await decide(.promote(version: v.version, force: false), job: job, snapshot: &snapshot) {
                        logger.log(.info, "promoted", ["job": job, "version": "\(v.version)", "reason": "promote: auto"])
                    }
                } catch let error as CatalogError where error.code == .checkFailed {
                    state.withLock { _ = $0.refusedAuto.insert(key) }
                    logger.log(.warning, "automatic promotion refused", ["job": job, "version": "\(v.version)", "error": error.message])
                }
            }
        }
    }
}

extension Controller {
    /// Analysis after promotion: while the serving version bakes, every `interval` its checks
    /// are evaluated (and its time lag against `catchUp.maxTimeLag`), each evaluation counted
    /// in the catalog; at `failureLimit` failures it is rolled back, at the end of the bake it
    /// has passed. A controller taking over, or restarted, carries the bake on from the catalog.
    func bake(job: String, snapshot: inout CatalogSnapshot, now: Int64) async throws {
        guard let bake = snapshot.activeBake(of: job),
              let v = snapshot.versions(of: job).first(where: { $0.version == bake.version }),
              let analysis = v.spec.promote.analysis else { return }
        // The bake is its evaluations, not its wall time: while no controller evaluates (every
        // JobHost down), it does not count down, and a restarted one carries it on.
        if bake.evaluations >= analysis.evaluations {
            let reason = "\(bake.evaluations) evaluation\(bake.evaluations == 1 ? "" : "s") every \(DurationText.format(milliseconds: analysis.intervalMs)), "
                + "\(bake.failures) failure\(bake.failures == 1 ? "" : "s") (promote.analysis.failureLimit \(analysis.failureLimit))"
            if try await decide(.analysisPassed(version: v.version, reason: reason), job: job, snapshot: &snapshot) {
                logger.log(.info, "analysis passed", ["job": job, "version": "\(v.version)", "evaluations": "\(bake.evaluations)", "failures": "\(bake.failures)"])
            }
            return
        }
        guard now - (bake.lastAt ?? bake.startedAt) >= analysis.intervalMs else { return }
        let id = VersionID(job: job, version: v.version)
        guard let nexts = snapshot.offsets[id] else { return }
        let topic = v.spec.source.topic
        let ends = try await log.offsets(topic: topic).map(\.end)
        let lag = await log.partitionLags(topic: topic, ends: ends, nexts: nexts, now: now)
        var failing = try await store.evaluateAnalysis(job: job, version: v.version, previous: bake.previous, lag: lag)
        let age = lag.oldestTimeLagMs
        if let max = v.spec.catchUp.maxTimeLagMs, (age ?? Int64.max) > max {
            failing.append("falling behind: time lag \(age.map { DurationText.format(milliseconds: $0) } ?? "unknown") > catchUp.maxTimeLag \(DurationText.format(milliseconds: max))")
        }
        let dead = try await store.deadLetterCount(job: job, version: v.version)
        let seen = "lag \(lag.reduce(0) { $0 + $1.lag }) records, time lag \(age.map { DurationText.format(milliseconds: $0) } ?? "unknown"), \(dead) dead letter\(dead == 1 ? "" : "s")"
        let failure = failing.isEmpty ? nil : failing.joined(separator: "; ") + " (seen: \(seen))"
        try await store.recordEvaluation(job: job, version: v.version, failure: failure, at: now)
        snapshot.bakes[id]?.evaluations += 1
        snapshot.bakes[id]?.lastAt = now
        guard let failure else { return }
        let failures = bake.failures + 1
        snapshot.bakes[id]?.failures = failures
        snapshot.bakes[id]?.lastFailure = failure
        logger.log(.warning, "analysis failed", ["job": job, "version": "\(v.version)", "failures": "\(failures)", "error": failure])
        guard failures >= analysis.failureLimit else { return }
        let reason = "\(failures) of promote.analysis.failureLimit \(analysis.failureLimit): \(failure)"
        if try await decide(.analysisFailed(version: v.version, previous: bake.previous, reason: reason), job: job, snapshot: &snapshot) {
            let serving = snapshot.versions(of: job).first { $0.state == .serving }?.version
            logger.log(.error, serving == v.version ? "analysis failed: no version to roll back to" : "analysis failed: rolled back",
                       ["job": job, "version": "\(v.version)", "serving": serving.map(String.init) ?? "-"])
        }
    }

    /// `catchUp.maxTimeLag`: whether the oldest unprocessed record is at most that old (true
    /// without the setting; false when the record cannot be read).
    func timeLagWithin(_ spec: JobSpec, ends: [Int64], nexts: [Int64], now: Int64) async -> Bool {
        guard let max = spec.catchUp.maxTimeLagMs else { return true }
        guard let age = await log.timeLag(topic: spec.source.topic, ends: ends, nexts: nexts, now: now) else { return false }
        return age <= max
    }
}

extension CatalogSnapshot {
    /// The job's versions as the lifecycle sees them: a standby version's `retire.after` counts
    /// from the end of the serving version's bake at the earliest.
    func statuses(of job: String) -> [VersionStatus] {
        let versions = versions(of: job)
        var hold: Int64 = 0
        if let serving = versions.first(where: { $0.state == .serving }), let analysis = serving.spec.promote.analysis,
           let bake = bakes[VersionID(job: job, version: serving.version)] {
            // While it bakes, nothing standby is retired: it may be rolled back to.
            _ = analysis
            hold = bake.endedAt ?? Int64.max / 4
        }
        return versions.map { v in
            var status = v.status
            if v.state == .standby { status.holdUntil = hold }
            return status
        }
    }
}

extension VersionRecord {
    /// What the lifecycle needs of this version.
    public var status: VersionStatus {
        VersionStatus(version: version, state: state, promote: spec.promote, retireAfterMs: spec.retire.afterMs, since: updatedAt)
    }
}
