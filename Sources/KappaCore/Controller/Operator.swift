/// What a promote or rollback did: the version serving now, the one that served before (nil:
/// nothing switched, `serving` served already) and the catalog actions decided.
public struct SwitchResult: Sendable, Equatable {
    public var serving: Int
    public var previous: Int?
    public var actions: [CatalogAction]
    public var switched: Bool { !actions.isEmpty }
}

/// What an operator does through the catalog (the catalog is the API: these work whether or not
/// JobHost runs, and while it runs in another process). `kappactl` is a thin front over this.
public struct Operator: Sendable {
    public var log: any UnifiedLog
    public var store: any CatalogStore & QueryStore
    /// Recorded in the history (`kappactl@host`).
    public var actor: String

    public init(log: any UnifiedLog, store: any CatalogStore & QueryStore, actor: String) {
        self.log = log
        self.store = store
        self.actor = actor
    }

    /// Registers a new version from a manifest file, after checking that the log still holds
    /// offset 0 of every partition (else refuses, unless `allowPartial`, which is recorded).
    /// - Throws: `ManifestError`, `LogError.topicNotFound`, `LifecycleRefusal` (retention),
    ///   `CatalogError`.
    public func deploy(manifestPath: String, allowPartial: Bool, maxRate: Double? = nil) async throws -> VersionRecord {
        let (spec, text) = try ManifestParser.load(path: manifestPath, maxRate: maxRate)
        return try await deploy(spec: spec, manifest: text, allowPartial: allowPartial)
    }

    public func deploy(spec: JobSpec, manifest: String, allowPartial: Bool) async throws -> VersionRecord {
        if let registered = try? await store.versions(job: spec.job).first(where: { $0.version == spec.version }), registered.spec != spec {
            throw LifecycleRefusal(code: .refused, message: """
                version \(spec.version) of job "\(spec.job)" is registered already (\(registered.state.rawValue)) with another manifest \
                (or other deploy options, such as --max-rate); deploy the same to attach to it, or this one as a new version
                """)
        }
        if case .exec(let argv) = spec.transform {
            do {
                _ = try ExecProcess.locate(argv[0], environment: ExecProcess.environment(spec.execEnvironment))
            } catch let error as ExecError {
                throw CatalogError(.invalidJob, "transform.exec: \(error.message)")
            }
        }
        let incarnation = try await log.metadata(topic: spec.source.topic).incarnation
        try await log.checkArchive(topic: spec.source.topic)
        let offsets = try await log.offsets(topic: spec.source.topic)
        let gaps = offsets.filter { $0.earliest > 0 }
        var reason = "deployed"
        if !gaps.isEmpty {
            let list = gaps.map { "partition \($0.partition) starts at offset \($0.earliest)" }.joined(separator: ", ")
            guard allowPartial else {
                throw LifecycleRefusal(code: .refused, message: """
                    topic "\(spec.source.topic)" no longer holds offset 0 of every partition (retention deleted it): \(list). \
                    A replay would build a partial table; deploy with --allow-partial to replay from the earliest offsets retained
                    """)
            }
            reason = "deployed with --allow-partial: \(list)"
        }
        let starts = allowPartial ? offsets.map(\.earliest) : Array(repeating: 0, count: offsets.count)
        return try await store.registerVersion(spec, manifest: manifest, startOffsets: starts, sourceIncarnation: incarnation,
                                               actor: actor, reason: reason)
    }

    /// The version `spec` names, when it is registered already with the same manifest and still
    /// running or serving: a retried deploy then changes nothing (and `--wait` attaches to it).
    public func registeredAlready(_ spec: JobSpec) async throws -> VersionRecord? {
        guard let existing = try await store.versions(job: spec.job).first(where: { $0.version == spec.version }),
              existing.spec == spec, existing.state == .pending || existing.state.isRunning else { return nil }
        return existing
    }

    /// Versions of a job. - Throws: `CatalogError.jobNotFound`.
    public func versions(job: String) async throws -> [VersionRecord] {
        let versions = try await store.versions(job: job)
        guard !versions.isEmpty else { throw CatalogError(.jobNotFound, "job \"\(job)\" does not exist") }
        return versions
    }

    /// Switches readers to `version` (default: the newest caught-up or standby version newer
    /// than the serving one). Safe to retry: when `version` (or, by default, the newest running
    /// version) already serves, nothing changes. Never goes back to an older version (that is
    /// `rollback`). With `dryRun`, decides and returns the actions without applying them.
    public func promote(job: String, version: Int?, force: Bool, skipAnalysis: Bool = false, dryRun: Bool = false) async throws -> SwitchResult {
        let versions = try await self.versions(job: job)
        let serving = versions.first { $0.state == .serving }
        let target: Int
        if let version {
            target = version
        } else {
            let newer = versions.filter { $0.version > (serving?.version ?? 0) }
            if let newest = newer.last(where: { $0.state == .caughtUp || $0.state == .standby }) {
                target = newest.version
            } else if let waiting = newer.last(where: { $0.state == .replaying || $0.state == .pending }) {
                if force {
                    target = waiting.version
                } else {
                    throw LifecycleRefusal(code: .refused, message: "version \(waiting.version) of job \"\(job)\" is \(waiting.state.rawValue) and has not caught up; wait for it (kappactl status shows its lag), or use --force")
                }
            } else if let serving {
                return SwitchResult(serving: serving.version, previous: nil, actions: [])
            } else {
                let newest = versions.last!
                throw LifecycleRefusal(code: .refused, message: "no version of job \"\(job)\" is caught up (the newest, \(newest.version), is \(newest.state.rawValue))")
            }
        }
        if target == serving?.version { return SwitchResult(serving: target, previous: nil, actions: []) }
        let actions = try await decide(.promote(version: target, force: force, skipAnalysis: skipAnalysis), job: job, versions: versions, dryRun: dryRun)
        return SwitchResult(serving: target, previous: serving?.version, actions: actions)
    }

    /// Switches readers back to standby version `to`, or by default to the newest standby version
    /// older than the serving one (so a retried rollback never rolls forward again). Safe to
    /// retry with `to`: when it already serves, nothing changes.
    public func rollback(job: String, to: Int? = nil, dryRun: Bool = false) async throws -> SwitchResult {
        let versions = try await self.versions(job: job)
        let serving = versions.first { $0.state == .serving }
        if let to, to == serving?.version { return SwitchResult(serving: to, previous: nil, actions: []) }
        let actions = try await decide(.rollback(to: to), job: job, versions: versions, dryRun: dryRun)
        let back = actions.compactMap { if case .pointView(let v) = $0 { return v } else { return nil } }.first!
        return SwitchResult(serving: back, previous: serving?.version, actions: actions)
    }

    /// Stops a version and drops its tables. Safe to retry: a retired version stays retired.
    /// - Returns: the actions (none when it was retired already).
    @discardableResult
    public func retire(job: String, version: Int, dryRun: Bool = false) async throws -> [CatalogAction] {
        let versions = try await self.versions(job: job)
        if versions.first(where: { $0.version == version })?.state == .retired { return [] }
        return try await decide(.retire(version: version), job: job, versions: versions, dryRun: dryRun)
    }

    @discardableResult
    private func decide(_ event: LifecycleEvent, job: String, versions: [VersionRecord], dryRun: Bool) async throws -> [CatalogAction] {
        let actions = try Lifecycle.decide(event, versions: versions.map(\.status))
        if !dryRun { try await store.apply(job: job, actions: actions, actor: actor) }
        return actions
    }

    /// Stops a pending, replaying or caught-up version's workers, keeping its offsets and table
    /// (recorded in the history). Safe to retry: a paused version stays paused.
    /// - Returns: the actions (none when it was paused already).
    @discardableResult
    public func pause(job: String, version: Int, dryRun: Bool = false) async throws -> [CatalogAction] {
        try await decide(.pause(version: version), job: job, versions: try await versions(job: job), dryRun: dryRun)
    }

    /// Starts a paused version's workers again: it replays on from its offsets. Safe to retry.
    @discardableResult
    public func resume(job: String, version: Int, dryRun: Bool = false) async throws -> [CatalogAction] {
        try await decide(.resume(version: version), job: job, versions: try await versions(job: job), dryRun: dryRun)
    }

    /// The versions that read `topic` and are pending or running, by job and version.
    public func readers(ofTopic topic: String) async throws -> [VersionRecord] {
        var readers: [VersionRecord] = []
        for job in try await store.jobs() {
            readers += try await store.versions(job: job.name).filter { v in
                v.spec.source.topic == topic && (v.state == .pending || v.state == .paused || v.state.isRunning)
            }
        }
        return readers
    }

    /// Deletes a topic of the log. Refused while a version reads it (pending or running), naming
    /// them; `force` fails those versions first, recorded in their history, then deletes.
    /// - Returns: the versions failed.
    /// - Throws: `LogError.topicNotFound`; `LifecycleRefusal` naming the readers.
    @discardableResult
    public func deleteTopic(_ name: String, force: Bool) async throws -> [VersionRecord] {
        _ = try await log.metadata(topic: name)
        let readers = try await readers(ofTopic: name)
        if !readers.isEmpty && !force {
            let list = readers.map { "job \"\($0.job)\" version \($0.version) (\($0.state.rawValue))" }.joined(separator: ", ")
            throw LifecycleRefusal(code: .refused, message: """
                topic "\(name)" is read by \(list); retire \(readers.count == 1 ? "it" : "them") first, \
                or delete with --force, which fails \(readers.count == 1 ? "it" : "them")
                """)
        }
        for v in readers {
            let versions = try await self.versions(job: v.job)
            try await decide(.failed(version: v.version, error: "topic \"\(name)\" was deleted with --force by \(actor)",
                                     reason: "topic \"\(name)\" deleted with --force"),
                             job: v.job, versions: versions, dryRun: false)
        }
        try await log.deleteTopic(name)
        return readers
    }

    /// Repairs a damaged partition of the embedded log by giving up what is lost
    /// (`SegmentLog.repair`). The end offset kept is at least what any version of any job over
    /// this incarnation of the topic has read up to, so that no offset a version consumed is
    /// handed out again, even when the head that said so is lost.
    /// Without `acceptLoss` nothing changes: a sound partition gives a result with no change, a
    /// damaged one a refusal naming the damage.
    /// - Throws: `LogError.invalidArgument` on a log other than the embedded one;
    ///   `LifecycleRefusal` without `acceptLoss` on a damaged partition.
    public func repairTopic(_ name: String, partition: Int, acceptLoss: Bool) async throws -> PartitionRepair {
        guard let segments = log as? SegmentLog else {
            throw LogError(.invalidArgument, "topic repair is for the embedded log; Kafka's brokers keep their own replicas", topic: name)
        }
        if !acceptLoss {
            let checks = try await segments.check(topic: name, partition: partition)
            let damage = checks.flatMap(\.damage)
            guard damage.isEmpty else {
                throw LifecycleRefusal(code: .refused, message: damage.joined(separator: "\n") + "\n"
                    + "topic repair cuts these damaged acknowledged records and records their offsets as a gap, never used again; pass --accept-loss to do it")
            }
            return PartitionRepair(topic: name, partition: partition, gaps: [], changes: [], end: checks.first?.end ?? 0)
        }
        let incarnation = try await log.metadata(topic: name).incarnation
        var read: Int64 = 0
        for job in try await store.jobs() {
            for v in try await store.versions(job: job.name) where v.spec.source.topic == name {
                guard v.sourceIncarnation == nil || v.sourceIncarnation == incarnation else { continue }
                let offsets = try await store.nextOffsets(job: v.job, version: v.version)
                if partition < offsets.count { read = max(read, offsets[partition]) }
            }
        }
        return try await segments.repair(topic: name, partition: partition, atLeast: read, actor: actor)
    }

    /// Reads the job's serving view (all rows) or runs `sql` (read-only).
    public func query(job: String, sql: String?) async throws -> QueryResult {
        let jobs = try await store.jobs()
        guard let record = jobs.first(where: { $0.name == job }) else { throw CatalogError(.jobNotFound, "job \"\(job)\" does not exist") }
        guard try await versions(job: job).contains(where: { $0.state == .serving }) || sql != nil else {
            throw LifecycleRefusal(code: .refused, message: "no version of job \"\(job)\" is serving yet")
        }
        return try await store.query(sql ?? "SELECT * FROM \(SQLText.quote(record.view))")
    }

    /// Whether a JobHost is alive on this catalog.
    public func jobHostAlive() async throws -> Bool {
        try await !store.liveHosts(withinMs: HostLiveness.windowMs).isEmpty
    }
}
