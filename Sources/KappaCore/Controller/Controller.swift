import Synchronization

/// The reconciler: reads the catalog, decides with `Lifecycle`, applies the decisions, and keeps
/// one `VersionRunner` per running version. Every decision is one catalog transaction, so a
/// controller killed at any instant restarts from the catalog into a consistent state.
public final class Controller: Sendable {
    public struct Configuration: Sendable {
        /// How often the catalog is read.
        public var tickMs = 200
        /// How often lag samples are written to the catalog (for `kappactl status` elsewhere).
        public var recordLagMs: Int64 = 1_000
        /// How long a worker waits before polling an idle partition again.
        public var pollMs = 50
        /// Before restarting the workers of a version after an infrastructure error.
        public var retryMs: Int64 = 2_000
        public init() {}
    }

    struct VersionKey: Hashable, Sendable {
        var job: String
        var version: Int
    }

    struct State {
        var runners: [VersionKey: Task<Void, Never>] = [:]
        var samples: [VersionKey: [LagSample]] = [:]
        var lastRecorded: [VersionKey: Int64] = [:]
        var failures: [VersionKey: String] = [:]
        var retryAfter: [VersionKey: Int64] = [:]
        var refusedAuto: Set<VersionKey> = []
    }

    let log: any UnifiedLog
    let store: any TableStore
    let logger: EventLogger
    let actor: String
    let configuration: Configuration
    private let state = Mutex(State())

    public init(log: any UnifiedLog, store: any TableStore, logger: EventLogger, actor: String, configuration: Configuration = .init()) {
        self.log = log
        self.store = store
        self.logger = logger
        self.actor = actor
        self.configuration = configuration
    }

    /// Runs until cancelled; then stops the workers, letting batches being committed finish.
    public func run() async {
        while !Task.isCancelled {
            do {
                try await tick()
            } catch {
                logger.log(.error, "controller", ["error": "\(error)"])
            }
            try? await Task.sleep(for: .milliseconds(configuration.tickMs))
        }
        await stopAll()
    }

    /// One pass over every job.
    func tick() async throws {
        let now = currentTimeMillis()
        for job in try await store.jobs() {
            var versions = try await store.versions(job: job.name)
            let failures = state.withLock { s in
                let mine = s.failures.filter { $0.key.job == job.name }
                for key in mine.keys { s.failures[key] = nil }
                return mine
            }
            for (key, error) in failures {
                if try await decide(.failed(version: key.version, error: error), job: job.name, versions: versions) {
                    logger.log(.error, "version failed", ["job": job.name, "version": "\(key.version)", "error": error])
                }
            }
            for v in versions where v.state == .pending {
                if try await decide(.start(version: v.version), job: job.name, versions: versions) {
                    logger.log(.info, "replay started", ["job": job.name, "version": "\(v.version)", "topic": v.spec.source.topic])
                }
            }
            versions = try await store.versions(job: job.name)
            reconcileRunners(job: job.name, versions: versions, now: now)
            try await observeLag(job: job.name, versions: versions, now: now)
            versions = try await store.versions(job: job.name)
            if try await decide(.tick(now: now), job: job.name, versions: versions) {
                logger.log(.info, "retired standby", ["job": job.name])
            }
        }
    }

    /// Decides and applies one event; returns whether anything changed.
    @discardableResult
    func decide(_ event: LifecycleEvent, job: String, versions: [VersionRecord]) async throws -> Bool {
        let actions: [CatalogAction]
        do {
            actions = try Lifecycle.decide(event, versions: versions.map(\.status))
        } catch {
            return false  // a state that moved on meanwhile: nothing to do
        }
        guard !actions.isEmpty else { return false }
        try await store.apply(job: job, actions: actions, actor: actor)
        return true
    }

    private func reconcileRunners(job: String, versions: [VersionRecord], now: Int64) {
        for v in versions {
            let key = VersionKey(job: job, version: v.version)
            let running = state.withLock { $0.runners[key] != nil }
            if v.state.isRunning && !running {
                if let after = state.withLock({ $0.retryAfter[key] }), now < after { continue }
                start(v, key: key)
            } else if !v.state.isRunning && running {
                let task = state.withLock { s -> Task<Void, Never>? in
                    s.samples[key] = nil
                    return s.runners.removeValue(forKey: key)
                }
                task?.cancel()
                logger.log(.info, "workers stopped", ["job": job, "version": "\(v.version)", "state": v.state.rawValue])
            }
        }
    }

    private func start(_ v: VersionRecord, key: VersionKey) {
        let job: any StreamJob
        do {
            job = try StreamJobs.make(v.spec)
        } catch {
            state.withLock { $0.failures[key] = "\(error)" }
            return
        }
        let runner = VersionRunner(log: log, store: store, job: job)
        let pollMs = configuration.pollMs, retryMs = configuration.retryMs
        let logger = self.logger
        let task = Task { [weak self] in
            do {
                try await runner.run(.follow(pollMs: pollMs))
            } catch let failure as JobFailure {
                self?.state.withLock { $0.failures[key] = failure.description }
            } catch {
                logger.log(.warning, "workers stopped on an error; retrying", ["job": key.job, "version": "\(key.version)", "error": "\(error)"])
                self?.state.withLock { $0.retryAfter[key] = currentTimeMillis() + retryMs }
            }
            _ = self?.state.withLock { $0.runners.removeValue(forKey: key) }
        }
        state.withLock { $0.runners[key] = task }
        logger.log(.info, "workers started", ["job": key.job, "version": "\(key.version)", "state": v.state.rawValue])
    }

    private func observeLag(job: String, versions: [VersionRecord], now: Int64) async throws {
        let running = versions.filter { $0.state.isRunning }
        guard !running.isEmpty else { return }
        var ends: [String: [Int64]] = [:]
        for v in running {
            let key = VersionKey(job: job, version: v.version)
            let topic = v.spec.source.topic
            if ends[topic] == nil { ends[topic] = try await log.offsets(topic: topic).map(\.end) }
            let nexts = try await store.nextOffsets(job: job, version: v.version)
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
            if v.state == .replaying,
               LagMath.verdict(window, maxLag: v.spec.catchUp.maxLag, holdForMs: v.spec.catchUp.holdForMs) == .caughtUp {
                if try await decide(.caughtUp(version: v.version), job: job, versions: versions) {
                    logger.log(.info, "caught up", ["job": job, "version": "\(v.version)", "lag": "\(sample.totalLag)"])
                    if try await store.versions(job: job).first(where: { $0.version == v.version })?.state == .serving {
                        logger.log(.info, "serving", ["job": job, "version": "\(v.version)", "reason": "first version"])
                    }
                }
            }
            if v.state == .caughtUp, v.spec.promote.mode == .auto, !state.withLock({ $0.refusedAuto.contains(key) }) {
                do {
                    if try await decide(.promote(version: v.version, force: false), job: job, versions: versions) {
                        logger.log(.info, "promoted", ["job": job, "version": "\(v.version)", "reason": "promote: auto"])
                    }
                } catch let error as CatalogError where error.code == .checkFailed {
                    state.withLock { _ = $0.refusedAuto.insert(key) }
                    logger.log(.warning, "automatic promotion refused", ["job": job, "version": "\(v.version)", "error": error.message])
                }
            }
        }
    }

    private func stopAll() async {
        let tasks = state.withLock { s -> [Task<Void, Never>] in
            let all = Array(s.runners.values)
            s.runners = [:]
            return all
        }
        for task in tasks { task.cancel() }
        for task in tasks { await task.value }
    }
}

extension VersionRecord {
    /// What the lifecycle needs of this version.
    public var status: VersionStatus {
        VersionStatus(version: version, state: state, promote: spec.promote, retireAfterMs: spec.retire.afterMs, since: updatedAt)
    }
}
