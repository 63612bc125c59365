import Testing
@testable import KappaCore

/// Every event in every state, for a job with one version, then with a serving one beside it.
@Suite struct LifecycleTests {
    enum Outcome: Equatable {
        case actions([CatalogAction])
        case refused(String)
        case notFound
    }

    func outcome(_ event: LifecycleEvent, _ versions: [VersionStatus]) -> Outcome {
        do {
            return .actions(try Lifecycle.decide(event, versions: versions))
        } catch {
            return error.code == .notFound ? .notFound : .refused(error.message)
        }
    }

    static let all = VersionState.allCases

    @Test(arguments: all)
    func startOnlyFromPending(state: VersionState) {
        let got = outcome(.start(version: 1), [VersionStatus(version: 1, state: state)])
        if state == .pending {
            #expect(got == .actions([.transition(version: 1, from: .pending, to: .replaying, reason: "replay started")]))
        } else {
            #expect(got == .refused("version 1 is \(state.rawValue), not pending"))
        }
    }

    @Test(arguments: all)
    func caughtUpFirstVersionServesAtOnce(state: VersionState) {
        let got = outcome(.caughtUp(version: 1), [VersionStatus(version: 1, state: state)])
        if state == .replaying {
            #expect(got == .actions([
                .transition(version: 1, from: .replaying, to: .caughtUp, reason: "caught up"),
                .transition(version: 1, from: .caughtUp, to: .serving, reason: "first version of the job: serves once caught up"),
                .pointView(version: 1),
            ]))
        } else {
            #expect(got == .refused("version 1 is \(state.rawValue), not replaying"))
        }
    }

    @Test(arguments: all)
    func caughtUpLaterVersionWaitsBesideTheServingOne(state: VersionState) {
        let got = outcome(.caughtUp(version: 2), [VersionStatus(version: 1, state: .serving), VersionStatus(version: 2, state: state)])
        if state == .replaying {
            #expect(got == .actions([.transition(version: 2, from: .replaying, to: .caughtUp, reason: "caught up")]))
        } else {
            #expect(got == .refused("version 2 is \(state.rawValue), not replaying"))
        }
    }

    @Test(arguments: all, [false, true])
    func promoteSwitchesAndDemotesTheServingVersion(state: VersionState, force: Bool) {
        let checks = JobSpec.Promote(mode: .manual, checks: ["(SELECT count(*) FROM new) > 0"])
        let versions = [VersionStatus(version: 1, state: .serving), VersionStatus(version: 2, state: state, promote: checks)]
        let got = outcome(.promote(version: 2, force: force), state == .serving ? [VersionStatus(version: 2, state: .serving)] : versions)
        let why = force ? "promoted with --force" : "promoted"
        let switched: [CatalogAction] = (force ? [] : [.checkPromotion(old: 1, new: 2)]) + [
            .transition(version: 1, from: .serving, to: .standby, reason: "\(why): version 2 serves now"),
            .transition(version: 2, from: state, to: .serving, reason: why),
            .pointView(version: 2),
        ]
        switch state {
        case .caughtUp, .standby: #expect(got == .actions(switched))
        case .replaying: #expect(got == (force ? .actions(switched) : .refused("version 2 is replaying and has not caught up; wait for it, or use --force")))
        case .serving: #expect(got == .refused("version 2 is already serving"))
        case .pending, .retired, .failed: #expect(got == .refused("version 2 is \(state.rawValue) and cannot serve"))
        case .paused: #expect(got == .refused("version 2 is paused; resume it and let it catch up first"))
        }
    }

    @Test(arguments: all)
    func pauseAndResumeFromEachState(state: VersionState) {
        let versions = [VersionStatus(version: 1, state: .serving), VersionStatus(version: 2, state: state)]
        let paused = outcome(.pause(version: 2), state == .serving ? [VersionStatus(version: 2, state: .serving)] : versions)
        let resumed = outcome(.resume(version: 2), state == .serving ? [VersionStatus(version: 2, state: .serving)] : versions)
        switch state {
        case .pending, .replaying, .caughtUp:
            #expect(paused == .actions([.transition(version: 2, from: state, to: .paused, reason: "paused by command")]))
            #expect(resumed == .actions([]))
        case .paused:
            #expect(paused == .actions([]))
            #expect(resumed == .actions([.transition(version: 2, from: .paused, to: .replaying, reason: "resumed by command")]))
        case .serving, .standby, .retired, .failed:
            #expect(paused == .refused("version 2 is \(state.rawValue); only a pending, replaying or caught-up version can be paused"))
            #expect(resumed == .refused("version 2 is \(state.rawValue), not paused"))
        }
        // A paused version is never promoted by the lag gate or a tick.
        if state == .paused {
            #expect(outcome(.caughtUp(version: 2), versions) == .refused("version 2 is paused, not replaying"))
            #expect(outcome(.tick(now: 1 << 40), versions) == .actions([]))
        }
    }

    @Test func promoteWithNothingServingJustPointsTheView() {
        let got = outcome(.promote(version: 3, force: false), [VersionStatus(version: 2, state: .failed), VersionStatus(version: 3, state: .caughtUp)])
        #expect(got == .actions([.transition(version: 3, from: .caughtUp, to: .serving, reason: "promoted"), .pointView(version: 3)]))
        #expect(outcome(.promote(version: 9, force: false), [VersionStatus(version: 3, state: .caughtUp)]) == .notFound)
    }

    @Test(arguments: all)
    func rollbackGoesToTheNewestOlderStandby(state: VersionState) {
        // Version 1 went standby last; the newest standby older than 3 is 2 all the same.
        let versions = [VersionStatus(version: 1, state: .standby, since: 300), VersionStatus(version: 2, state: .standby, since: 200),
                        VersionStatus(version: 3, state: state, since: 100)]
        let got = outcome(.rollback(to: nil), versions)
        if state == .serving {
            #expect(got == .actions([
                .transition(version: 3, from: .serving, to: .standby, reason: "rolled back to version 2"),
                .transition(version: 2, from: .standby, to: .serving, reason: "rollback from version 3"),
                .pointView(version: 2),
            ]))
            #expect(outcome(.rollback(to: 1), versions) == .actions([
                .transition(version: 3, from: .serving, to: .standby, reason: "rolled back to version 1"),
                .transition(version: 1, from: .standby, to: .serving, reason: "rollback from version 3"),
                .pointView(version: 1),
            ]))
        } else {
            #expect(got == .refused("no version of the job is serving"))
        }
        #expect(outcome(.rollback(to: nil), [VersionStatus(version: 1, state: .serving)]) == .refused("no standby version older than the serving version 1 to roll back to"))
    }

    /// A retried rollback never rolls forward: after 2 → 1, version 2 is the newest standby, but
    /// not older than 1.
    @Test func aRetriedRollbackDoesNotRollForward() {
        let afterRollback = [VersionStatus(version: 1, state: .serving, since: 300), VersionStatus(version: 2, state: .standby, since: 300)]
        #expect(outcome(.rollback(to: nil), afterRollback) == .refused("no standby version older than the serving version 1 to roll back to"))
        #expect(outcome(.rollback(to: 3), afterRollback) == .notFound)
        #expect(outcome(.rollback(to: 2), afterRollback) != .notFound)  // explicit: the operator chose it
    }

    /// Promote goes forward only: a retried promote cannot put an older version back.
    @Test func promoteNeverGoesBackToAnOlderVersion() {
        let versions = [VersionStatus(version: 1, state: .standby), VersionStatus(version: 2, state: .serving)]
        #expect(outcome(.promote(version: 1, force: false), versions) == .refused("version 1 is older than the serving version 2; promote never goes back: use rollback --to 1"))
        #expect(outcome(.promote(version: 1, force: true), versions) == .refused("version 1 is older than the serving version 2; promote never goes back: use rollback --to 1"))
    }

    @Test(arguments: all)
    func retireStopsAnythingButTheServingVersion(state: VersionState) {
        let got = outcome(.retire(version: 1), [VersionStatus(version: 1, state: state)])
        switch state {
        case .serving: #expect(got == .refused("version 1 is serving; promote another version or roll back first"))
        case .retired: #expect(got == .refused("version 1 is already retired"))
        default:
            #expect(got == .actions([.transition(version: 1, from: state, to: .retired, reason: "retired by command"), .dropTables(version: 1)]))
        }
        #expect(outcome(.retire(version: 2), [VersionStatus(version: 1, state: state)]) == .notFound)
    }

    @Test(arguments: all)
    func tickRetiresStandbyVersionsPastRetireAfter(state: VersionState) {
        let v = VersionStatus(version: 1, state: state, retireAfterMs: 60_000, since: 1_000)
        #expect(outcome(.tick(now: 60_999), [v]) == .actions([]))
        let due = outcome(.tick(now: 61_000), [v])
        if state == .standby {
            #expect(due == .actions([.transition(version: 1, from: .standby, to: .retired, reason: "standby longer than retire.after (1m)"),
                                     .dropTables(version: 1)]))
        } else {
            #expect(due == .actions([]))
        }
        // Without retire.after a standby version stays until retired by command.
        #expect(outcome(.tick(now: .max), [VersionStatus(version: 1, state: state)]) == .actions([]))
    }

    @Test(arguments: all)
    func failureFromAnyRunningState(state: VersionState) {
        let got = outcome(.failed(version: 1, error: "boom"), [VersionStatus(version: 1, state: state)])
        if state == .pending || state == .paused || state.isRunning {
            #expect(got == .actions([.transition(version: 1, from: state, to: .failed, reason: "failed: boom", error: "boom")]))
        } else {
            #expect(got == .actions([]))
        }
    }

    @Test func oneVersionServesAfterAnySequence() throws {
        // Random walks over commands: never two serving versions.
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            var versions = [VersionStatus(version: 1, state: .replaying), VersionStatus(version: 2, state: .replaying), VersionStatus(version: 3, state: .pending)]
            for step in 0..<30 {
                let v = Int.random(in: 1...3, using: &generator)
                let events: [LifecycleEvent] = [.start(version: v), .caughtUp(version: v), .promote(version: v, force: Bool.random()), .rollback(to: nil), .rollback(to: v),
                                                .retire(version: v), .failed(version: v, error: "x"), .tick(now: Int64(step)),
                                                .pause(version: v), .resume(version: v)]
                guard let actions = try? Lifecycle.decide(events.randomElement(using: &generator)!, versions: versions) else { continue }
                for case .transition(let n, let from, let to, _, _) in actions {
                    let i = versions.firstIndex { $0.version == n }!
                    #expect(versions[i].state == from)
                    versions[i].state = to
                    versions[i].since = Int64(step)
                }
                #expect(versions.filter { $0.state == .serving }.count <= 1)
            }
        }
    }
}
