/// `kappactl status`: per job the serving version, per version its state, lag, rate, ETA, error.
public struct StatusReport: Sendable, Codable, Equatable {
    public struct Job: Sendable, Codable, Equatable {
        public var name: String
        public var view: String
        public var topic: String
        public var serving: Int?
        public var versions: [Version]
        /// Why the log's end offsets of the topic could not be read (its brokers down, the topic
        /// deleted): the lag, rate and ETA are then unknown; the catalog's part still shows.
        public var logError: String?
        /// Why the controller's decisions for the job fail now (the other jobs are decided).
        public var decisionError: String?
        /// Nothing serves, but the reader view still reads this version's table: it failed
        /// while serving (readers see its rows as they were).
        public var viewReadsFailed: Int? = nil
    }

    public struct Version: Sendable, Codable, Equatable {
        public var version: Int
        public var state: VersionState
        /// Records not yet processed (running and pending versions).
        public var lag: Int64?
        /// Records processed so far (sum of next offsets).
        public var processed: Int64?
        /// Records in the log (sum of end offsets).
        public var total: Int64?
        public var rate: Double?
        public var etaSeconds: Double?
        public var verdict: LagVerdict?
        /// For a pending or replaying version: the catch-up conditions still unmet
        /// (`CatchUpGate`), e.g. `time lag 45s > catchUp.maxTimeLag 5s`.
        public var unmet: [String]? = nil
        /// Analysis after promotion of this version: its latest bake.
        public var bake: Bake? = nil
        public var error: String?
        /// When the version entered its state (ms since the epoch).
        public var since: Int64
    }

    /// A version's bake (`promote.analysis`): `baking 4/10, 1 failure`.
    public struct Bake: Sendable, Codable, Equatable {
        public var evaluations: Int
        /// Evaluations in the whole bake.
        public var planned: Int
        public var failures: Int
        public var failureLimit: Int
        /// nil while baking; `passed`, `rolledBack`, `failed`.
        public var outcome: String?
        /// When the bake ended, or, while it bakes, when it should (its remaining evaluations,
        /// one an interval), ms since the epoch.
        public var endsAt: Int64
        public var lastFailure: String?

        public var text: String {
            let failed = "\(failures) failure\(failures == 1 ? "" : "s")"
            switch outcome {
            case nil: return "baking \(evaluations)/\(planned), \(failed)"
            case "passed": return "analysis passed, \(failed)"
            case "rolledBack": return "analysis failed (\(failed)): rolled back"
            case "abandoned": return "analysis stopped (switched away), \(failed)"
            default: return "analysis failed (\(failed))"
            }
        }
    }

    public var jobs: [Job]
    /// JobHosts alive on this catalog.
    public var hosts: [String]
    /// Unexpired leases: which JobHost is the controller and runs which partitions.
    public var leases: [Lease] = []
    /// With no live JobHost: the newest heartbeat of one that stopped without saying so (ms
    /// since the epoch; nil when none is listed). Rates and ETAs are then unknown: nothing runs.
    public var lastHeartbeat: Int64? = nil
    /// What the live JobHosts keep failing at and retry (a mirror or a partition's worker that
    /// cannot reach the object store); nil when nothing fails.
    public var problems: [HostProblem]? = nil

    /// `JobHost@a:1 (controller, 2 partitions)`, one per live host.
    public var hostsText: String {
        hosts.map { host in
            let mine = leases.filter { $0.owner == host }
            var notes: [String] = []
            if mine.contains(where: { $0.key.isController }) { notes.append("controller") }
            for topic in mine.compactMap(\.key.mirrorTopic).sorted() { notes.append("mirror of \(topic)") }
            let partitions = mine.filter(\.key.isPartition).count
            if partitions > 0 { notes.append("\(partitions) partition\(partitions == 1 ? "" : "s")") }
            return host + (notes.isEmpty ? "" : " (\(notes.joined(separator: ", ")))")
        }.joined(separator: ", ")
    }
}

extension Operator {
    /// Builds the status of one job or all, from one snapshot of the catalog (offsets, lag
    /// samples, hosts, leases) and the log's end offsets.
    public func status(job name: String? = nil) async throws -> StatusReport {
        try await status(of: try await store.snapshot(.status(samples: 30, hostsWithinMs: HostLiveness.windowMs)), job: name).report
    }

    /// The report from `snapshot`, and the end offsets of each topic it read from the log.
    func status(of snapshot: CatalogSnapshot, job name: String? = nil) async throws -> (report: StatusReport, ends: [String: [Int64]]) {
        var jobs = snapshot.jobs
        if let name {
            jobs = jobs.filter { $0.name == name }
            if jobs.isEmpty { throw CatalogError(.jobNotFound, "job \"\(name)\" does not exist") }
        }
        var out: [StatusReport.Job] = []
        let now = snapshot.at
        var ends: [String: [Int64]] = [:]
        var logErrors: [String: String] = [:]
        for job in jobs {
            let versions = snapshot.versions(of: job.name)
            var views: [StatusReport.Version] = []
            for v in versions {
                var view = StatusReport.Version(version: v.version, state: v.state, error: v.error, since: v.updatedAt)
                let id = VersionID(job: job.name, version: v.version)
                // The bake of this state only: one that began (or ended) when the version entered
                // it, not one of an earlier promotion (a promote --skip-analysis starts none).
                if let bake = snapshot.bakes[id], let analysis = v.spec.promote.analysis,
                   bake.startedAt >= v.updatedAt - 1_000 || (bake.endedAt ?? 0) >= v.updatedAt - 1_000 {
                    let remaining = Int64(max(0, analysis.evaluations - bake.evaluations)) * analysis.intervalMs
                    view.bake = .init(evaluations: bake.evaluations, planned: analysis.evaluations, failures: bake.failures,
                                      failureLimit: analysis.failureLimit, outcome: bake.outcome,
                                      endsAt: bake.endedAt ?? max(now, bake.lastAt ?? bake.startedAt) + remaining, lastFailure: bake.lastFailure)
                }
                if v.state.isRunning || v.state == .pending || v.state == .paused, let nexts = snapshot.offsets[id] {
                    let topic = v.spec.source.topic
                    if ends[topic] == nil && logErrors[topic] == nil {
                        // The log's failure is the topic's, asked once: the report still says
                        // what the catalog knows (states, progress, hosts).
                        do {
                            ends[topic] = try await log.offsets(topic: topic).map(\.end)
                        } catch let error as LogError {
                            logErrors[topic] = error.message
                        }
                    }
                    guard let topicEnds = ends[topic] else {
                        view.processed = nexts.reduce(0, +)
                        views.append(view)
                        continue
                    }
                    let current = LagSample(at: now, ends: topicEnds, nexts: nexts)
                    let samples = (snapshot.lagSamples[id] ?? []) + [current]
                    let estimate = LagMath.estimate(samples, maxLag: v.spec.catchUp.maxLag, holdForMs: v.spec.catchUp.holdForMs)
                    view.lag = current.totalLag
                    view.processed = current.totalNext
                    view.total = current.totalEnd
                    // Without a live JobHost nothing moves: a rate or ETA would be a stale figure.
                    // Paused, nothing moves either.
                    view.rate = snapshot.hosts.isEmpty || v.state == .paused ? nil : estimate.rate
                    view.etaSeconds = snapshot.hosts.isEmpty || v.state == .paused ? nil : estimate.etaSeconds
                    view.verdict = estimate.verdict
                    if v.state == .pending || v.state == .replaying {
                        // The time lag is read (a record per lagging partition) only when it gates.
                        let age = v.spec.catchUp.maxTimeLagMs == nil ? 0 : await log.timeLag(topic: topic, ends: topicEnds, nexts: nexts, now: now)
                        view.unmet = CatchUpGate.unmet(verdict: estimate.verdict, totalLag: current.totalLag, timeLagMs: age, catchUp: v.spec.catchUp)
                    }
                }
                views.append(view)
            }
            out.append(.init(name: job.name, view: job.view, topic: job.topic,
                             serving: versions.first { $0.state == .serving }?.version, versions: views,
                             logError: Set(versions.map(\.spec.source.topic)).sorted().compactMap { logErrors[$0] }.first,
                             decisionError: job.decisionError, viewReadsFailed: snapshot.viewReadsFailed[job.name]))
        }
        let problems = snapshot.hostProblems.filter { p in name == nil || p.job == nil || p.job == name }
        return (StatusReport(jobs: out, hosts: snapshot.hosts, leases: snapshot.leases.filter { $0.expiresAt > now },
                             lastHeartbeat: snapshot.hosts.isEmpty ? snapshot.lastHeartbeat : nil,
                             problems: problems.isEmpty ? nil : problems), ends)
    }

    /// Per-partition lag of a version (default: the serving one, else the newest), with the age
    /// of the oldest unprocessed record of each lagging partition.
    public func lag(job: String, version: Int?) async throws -> LagReport {
        let versions = try await self.versions(job: job)
        let chosen: VersionRecord
        if let version {
            guard let v = versions.first(where: { $0.version == version }) else {
                throw CatalogError(.versionNotFound, "job \"\(job)\" has no version \(version)")
            }
            chosen = v
        } else {
            chosen = versions.first { $0.state == .serving } ?? versions.last!
        }
        let topic = chosen.spec.source.topic
        let ends = try await log.offsets(topic: topic).map(\.end)
        let nexts = try await store.nextOffsets(job: job, version: chosen.version)
        let now = currentTimeMillis()
        let partitions = await log.partitionLags(topic: topic, ends: ends, nexts: nexts, now: now)
        let current = LagSample(at: now, ends: ends, nexts: nexts)
        let samples = try await store.lagSamples(job: job, version: chosen.version, limit: 30) + [current]
        var estimate = LagMath.estimate(samples, maxLag: chosen.spec.catchUp.maxLag, holdForMs: chosen.spec.catchUp.holdForMs)
        if chosen.state == .paused { (estimate.rate, estimate.etaSeconds) = (nil, nil) }  // nothing moves
        let age = partitions.oldestTimeLagMs
        return LagReport(job: job, version: chosen.version, state: chosen.state, partitions: partitions, estimate: estimate,
                         unmet: chosen.state == .pending || chosen.state == .replaying
                            ? CatchUpGate.unmet(verdict: estimate.verdict, totalLag: current.totalLag, timeLagMs: age, catchUp: chosen.spec.catchUp) : nil)
    }
}


/// `kappactl lag`: a version's lag per partition, and in total.
public struct LagReport: Sendable, Codable, Equatable {
    public var job: String
    public var version: Int
    public var state: VersionState
    public var partitions: [PartitionLag]
    public var estimate: LagEstimate
    /// For a pending or replaying version: the catch-up conditions still unmet.
    public var unmet: [String]? = nil
}
