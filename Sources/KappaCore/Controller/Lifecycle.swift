/// What the lifecycle needs to know about each version of a job.
public struct VersionStatus: Sendable, Equatable {
    public var version: Int
    public var state: VersionState
    public var promote: JobSpec.Promote
    public var retireAfterMs: Int64?
    /// When the version entered its current state (milliseconds since the epoch).
    public var since: Int64
    /// `retire.after` counts from no earlier than this: the end of the serving version's bake
    /// (analysis after promotion), so the version a failed analysis rolls back to stays.
    public var holdUntil: Int64 = 0

    public init(version: Int, state: VersionState, promote: JobSpec.Promote = .init(mode: .manual, checks: []),
                retireAfterMs: Int64? = nil, since: Int64 = 0) {
        self.version = version
        self.state = state
        self.promote = promote
        self.retireAfterMs = retireAfterMs
        self.since = since
    }
}

/// Something that happens to a job: an operator's command or an observation of the controller.
public enum LifecycleEvent: Sendable, Equatable {
    /// A host starts replaying a pending version.
    case start(version: Int)
    /// The lag verdict says the version has caught up.
    case caughtUp(version: Int)
    /// Switch readers to `version` (`force`: even if not caught up, and without checks;
    /// `skipAnalysis`: without `promote.analysis` after the switch, recorded).
    case promote(version: Int, force: Bool, skipAnalysis: Bool = false)
    /// Switch readers back to standby version `to`, or (nil) to the newest standby version older
    /// than the serving one.
    case rollback(to: Int?)
    /// Stop a version and drop its tables.
    case retire(version: Int)
    /// Time passes: standby versions past `retire.after` are retired.
    case tick(now: Int64)
    /// Stop a pending, replaying or caught-up version's workers, keeping offsets and table.
    case pause(version: Int)
    /// Start a paused version's workers again (it replays on from its offsets).
    case resume(version: Int)
    /// The serving version's analysis reached its failure limit: back to `previous` (`reason`:
    /// the failing check and the values it saw).
    case analysisFailed(version: Int, previous: Int?, reason: String)
    /// The serving version's bake ended without reaching its failure limit.
    case analysisPassed(version: Int, reason: String)
    /// The version's job failed (`reason` goes into the history).
    case failed(version: Int, error: String, reason: String = "failed")
}

/// A change to the catalog. The actions of one decision are applied in one transaction.
public enum CatalogAction: Sendable, Equatable {
    /// Move a version from `from` to `to` (only if it is still in `from`), with a history entry.
    case transition(version: Int, from: VersionState, to: VersionState, reason: String, error: String? = nil)
    /// Point the reader view at the version's table.
    case pointView(version: Int)
    /// Drop the version's tables.
    case dropTables(version: Int)
    /// Evaluate the new version's `promote.checks` over `old` and `new`; refuse all if one fails.
    case checkPromotion(old: Int, new: Int)
    /// Start watching the version just switched to (`promote.analysis`); `previous` served before.
    case startBake(version: Int, previous: Int?)
    /// End the version's bake with `outcome`, recorded in its history with `reason`.
    case endBake(version: Int, outcome: String, reason: String)
}

extension CatalogAction {
    /// The action as `--dry-run` prints it; `checks` gives a version's `promote.checks`.
    public func summary(checks: (Int) -> [String] = { _ in [] }) -> String {
        switch self {
        case .transition(let v, let from, let to, let reason, _):
            return "version \(v): \(from.rawValue) -> \(to.rawValue) (\(reason))"
        case .pointView(let v):
            return "point the reader view at version \(v)'s table"
        case .dropTables(let v):
            return "drop version \(v)'s tables"
        case .checkPromotion(let old, let new):
            let list = checks(new)
            return "check version \(new) against version \(old): " + (list.isEmpty ? "(no checks)" : list.joined(separator: "; "))
        case .startBake(let v, _):
            return "start analysis of version \(v) (promote.analysis)"
        case .endBake(let v, let outcome, _):
            return "end analysis of version \(v): \(outcome)"
        }
    }
}

/// A command the lifecycle refuses, with a message for the operator.
public struct LifecycleRefusal: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable { case notFound, refused }
    public var code: Code
    public var message: String
    public var description: String { message }
}

/// The version lifecycle as a pure function: events in, catalog actions out, no I/O.
///
///     pending → replaying → caughtUp → serving ⇄ standby → retired,  failed from any running state
///     pending, replaying, caughtUp → paused → replaying (pause, resume)
///
/// One version of a job serves at a time: every switch moves the serving one to standby in the
/// same set of actions.
public enum Lifecycle {
    public static func decide(_ event: LifecycleEvent, versions: [VersionStatus]) throws(LifecycleRefusal) -> [CatalogAction] {
        let serving = versions.first { $0.state == .serving }
        switch event {
        case .start(let v):
            let version = try find(v, in: versions)
            guard version.state == .pending else { throw refuse("version \(v) is \(version.state.rawValue), not pending") }
            return [.transition(version: v, from: .pending, to: .replaying, reason: "replay started")]

        case .caughtUp(let v):
            let version = try find(v, in: versions)
            guard version.state == .replaying else { throw refuse("version \(v) is \(version.state.rawValue), not replaying") }
            var actions: [CatalogAction] = [.transition(version: v, from: .replaying, to: .caughtUp, reason: "caught up")]
            if serving == nil && !versions.contains(where: { $0.state == .standby }) {
                // The job's first version: nothing serves yet, so it serves as soon as it has caught up.
                actions += [.transition(version: v, from: .caughtUp, to: .serving, reason: "first version of the job: serves once caught up"),
                            .pointView(version: v)]
            }
            return actions

        case .promote(let v, let force, let skipAnalysis):
            let version = try find(v, in: versions)
            switch version.state {
            case .serving:
                throw refuse("version \(v) is already serving")
            case .caughtUp, .standby:
                if let old = serving, v < old.version {
                    // Promote goes forward only: a retried promote must never put old logic back.
                    throw refuse("version \(v) is older than the serving version \(old.version); promote never goes back: use rollback --to \(v)")
                }
            case .replaying where force:
                break
            case .replaying:
                throw refuse("version \(v) is replaying and has not caught up; wait for it, or use --force")
            case .pending, .retired, .failed:
                throw refuse("version \(v) is \(version.state.rawValue) and cannot serve")
            case .paused:
                throw refuse("version \(v) is paused; resume it and let it catch up first")
            }
            var actions: [CatalogAction] = []
            if let old = serving, !force, !version.promote.checks.isEmpty {
                actions.append(.checkPromotion(old: old.version, new: v))
            }
            var why = force ? "promoted with --force" : "promoted"
            if skipAnalysis && version.promote.analysis != nil { why += " (promote.analysis skipped with --skip-analysis)" }
            if let old = serving {
                actions.append(.transition(version: old.version, from: .serving, to: .standby, reason: "\(why): version \(v) serves now"))
            }
            actions += [.transition(version: v, from: version.state, to: .serving, reason: why), .pointView(version: v)]
            if version.promote.analysis != nil && !skipAnalysis { actions.append(.startBake(version: v, previous: serving?.version)) }
            return actions

        case .analysisFailed(let v, let previous, let reason):
            let version = try find(v, in: versions)
            guard version.state == .serving else { throw refuse("version \(v) is \(version.state.rawValue), not serving") }
            // The version that served before; if it is no longer standby (retired meanwhile), the
            // newest standby version older than this one, as `rollback` would choose.
            let before = versions.first { $0.version == previous && $0.state == .standby }
            guard let back = before ?? newestStandby(olderThan: v, in: versions) else {
                return [.endBake(version: v, outcome: "failed", reason: "analysis failed: \(reason); no standby version to roll back to, so it serves on")]
            }
            return [.endBake(version: v, outcome: "rolledBack", reason: "analysis failed: \(reason)"),
                    .transition(version: v, from: .serving, to: .standby, reason: "analysis failed, rolled back to version \(back.version): \(reason)"),
                    .transition(version: back.version, from: .standby, to: .serving, reason: "rollback from version \(v): its analysis failed"),
                    .pointView(version: back.version)]

        case .analysisPassed(let v, let reason):
            let version = try find(v, in: versions)
            guard version.state == .serving else { throw refuse("version \(v) is \(version.state.rawValue), not serving") }
            return [.endBake(version: v, outcome: "passed", reason: "analysis passed: \(reason)")]

        case .rollback(let to):
            guard let current = serving else { throw refuse("no version of the job is serving") }
            let back: VersionStatus
            if let to {
                let version = try find(to, in: versions)
                guard version.state == .standby else {
                    throw refuse("version \(to) is \(version.state.rawValue), not standby: only a standby version can serve again at once")
                }
                back = version
            } else {
                guard let older = newestStandby(olderThan: current.version, in: versions) else {
                    throw refuse("no standby version older than the serving version \(current.version) to roll back to")
                }
                back = older
            }
            return [.transition(version: current.version, from: .serving, to: .standby, reason: "rolled back to version \(back.version)"),
                    .transition(version: back.version, from: .standby, to: .serving, reason: "rollback from version \(current.version)"),
                    .pointView(version: back.version)]

        case .retire(let v):
            let version = try find(v, in: versions)
            switch version.state {
            case .serving:
                throw refuse("version \(v) is serving; promote another version or roll back first")
            case .retired:
                throw refuse("version \(v) is already retired")
            case .pending, .replaying, .caughtUp, .standby, .failed, .paused:
                return retirement(version, reason: "retired by command")
            }

        case .pause(let v):
            let version = try find(v, in: versions)
            switch version.state {
            case .paused:
                return []  // a retried pause changes nothing
            case .pending, .replaying, .caughtUp:
                return [.transition(version: v, from: version.state, to: .paused, reason: "paused by command")]
            case .serving, .standby, .retired, .failed:
                throw refuse("version \(v) is \(version.state.rawValue); only a pending, replaying or caught-up version can be paused")
            }

        case .resume(let v):
            let version = try find(v, in: versions)
            switch version.state {
            case .paused:
                return [.transition(version: v, from: .paused, to: .replaying, reason: "resumed by command")]
            case .pending, .replaying, .caughtUp:
                return []  // not paused (a retried resume): nothing to do
            case .serving, .standby, .retired, .failed:
                throw refuse("version \(v) is \(version.state.rawValue), not paused")
            }

        case .tick(let now):
            return versions.filter { v in
                v.state == .standby && v.retireAfterMs.map { now - max(v.since, v.holdUntil) >= $0 } == true
            }.flatMap { retirement($0, reason: "standby longer than retire.after (\(DurationText.format(milliseconds: $0.retireAfterMs!)))") }

        case .failed(let v, let error, let reason):
            let version = try find(v, in: versions)
            guard version.state == .pending || version.state == .paused || version.state.isRunning else { return [] }
            // The history says why (the start of the error; the whole of it stays on the version).
            let why = reason == "failed" ? "failed: " + (error.count > 300 ? error.prefix(300) + "…" : error) : reason
            return [.transition(version: v, from: version.state, to: .failed, reason: why, error: error)]
        }
    }

    /// What `rollback` without `--to` goes back to.
    private static func newestStandby(olderThan v: Int, in versions: [VersionStatus]) -> VersionStatus? {
        versions.filter { $0.state == .standby && $0.version < v }.max { $0.version < $1.version }
    }

    private static func retirement(_ version: VersionStatus, reason: String) -> [CatalogAction] {
        [.transition(version: version.version, from: version.state, to: .retired, reason: reason), .dropTables(version: version.version)]
    }

    private static func find(_ v: Int, in versions: [VersionStatus]) throws(LifecycleRefusal) -> VersionStatus {
        guard let version = versions.first(where: { $0.version == v }) else {
            throw LifecycleRefusal(code: .notFound, message: "the job has no version \(v)")
        }
        return version
    }

    private static func refuse(_ message: String) -> LifecycleRefusal {
        LifecycleRefusal(code: .refused, message: message)
    }
}
