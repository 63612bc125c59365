import Foundation
import Testing
@testable import KappaCore

/// The Kappa workflow end to end, with JobHost as a separate process.
@Suite(.serialized) struct WorkflowTests {
    static var root: String { #filePath.components(separatedBy: "/Tests/")[0] }

    static func feedLines(seed: UInt64, startMinute: Int64, seconds: Int) -> String {
        BPIFeed(seed: seed, start: startMinute * 60_000).ticks(seconds: seconds)
            .map { "{\"key\": \"\($0.currency)\", \"value\": \($0.json), \"timestamp\": \($0.ts)}" }
            .joined(separator: "\n") + "\n"
    }

    static func status(_ box: Sandbox, _ job: String?) async throws -> StatusReport {
        let result = try await box.kappactl(["status"] + (job.map { [$0] } ?? []) + ["--output", "json"])
        return try JSONDecoder().decode(StatusReport.self, from: Data(result.stdout.utf8))
    }

    /// The single value a query returns, as `kappactl query` prints it.
    static func scalar(_ box: Sandbox, _ job: String, _ sql: String) async throws -> String? {
        try await box.kappactl(["query", job, sql]).lines.dropFirst().first?.trimmingCharacters(in: .whitespaces)
    }

    static func waitUntil(_ what: String, timeout: Double = 60, _ condition: () async throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("timed out waiting until \(what)")
    }

    @Test func deployReplayPromoteRollbackRetire() async throws {
        try await Self.workflow(try Sandbox())
    }

    #if Postgres
    /// A new database on the server scripts/test started.
    static func postgresDatabase() async throws -> String {
        let base = ProcessInfo.processInfo.environment["KAPPA_TEST_POSTGRES"]!
        let database = "kappa_\(UInt32.random(in: 0...UInt32.max))"
        _ = try await Sandbox().run("/usr/bin/env", ["psql", base, "-q", "-c", "CREATE DATABASE \(database)"])
        return base.replacingOccurrences(of: "/kappa_test", with: "/\(database)")
    }

    @Test(.enabled(if: ProcessInfo.processInfo.environment["KAPPA_TEST_POSTGRES"] != nil, "needs the PostgreSQL server scripts/test starts"))
    func deployReplayPromoteRollbackRetireOnPostgres() async throws {
        try await Self.workflow(try Sandbox(catalog: Self.postgresDatabase()))
    }
    #endif

    #if Kafka
    /// The log in Kafka (librdkafka's mock cluster in this process, on loopback; JobHost and
    /// kappactl reach it as any cluster), the catalog in SQLite.
    @Test func deployReplayPromoteRollbackRetireOnKafka() async throws {
        let kafka = try KafkaMockCluster(brokers: 3)
        try kafka.createTopic("bpi", partitions: 3, replicationFactor: 3)
        try await Self.workflow(try Sandbox(log: kafka.url))
        // Kafka's own tools see the versions' progress: the serving version's group is at the end
        // (a partition without records has nothing committed).
        let log = try KafkaLog(settings: KafkaSettings(url: kafka.url, passthrough: []), logger: EventLogger(format: .text) { _ in })
        let ends = try await log.offsets(topic: "bpi").map(\.end)
        let total: Int64 = ends.reduce(0, +)
        #expect(total == 3600 + 10 * 180)
        let v1: [Int64?] = try await log.groupOffsets(group: "kappa.btc.v1", topic: "bpi")
        #expect(v1 == ends.map { $0 == 0 ? nil : $0 })
        #expect(try await log.groupOffsets(group: "kappa.btc.v9", topic: "bpi") == [nil, nil, nil])
        withExtendedLifetime(kafka) {}
    }
    #endif

    #if Kafka && Postgres
    @Test(.enabled(if: ProcessInfo.processInfo.environment["KAPPA_TEST_POSTGRES"] != nil, "needs the PostgreSQL server scripts/test starts"))
    func deployReplayPromoteRollbackRetireOnKafkaAndPostgres() async throws {
        let kafka = try KafkaMockCluster(brokers: 1)
        try kafka.createTopic("bpi", partitions: 3)
        try await Self.workflow(try Sandbox(catalog: Self.postgresDatabase(), log: kafka.url))
        withExtendedLifetime(kafka) {}
    }
    #endif

    /// deploy v1, v2 replays while v1 serves and ticks arrive, diff, promote, rollback, retire.
    static func workflow(_ box: Sandbox) async throws {
        // Kafka's topic comes from the mock cluster (librdkafka 2.0's mock has no CreateTopics).
        if box.log == nil { try await box.kappactl(["topic", "create", "bpi", "--partitions", "3"]) }
        #expect(try await box.kappactl(["produce", "bpi"], stdin: Self.feedLines(seed: 1, startMinute: 28_000_000, seconds: 1200)).status == 0)
        let host = try box.start(Executables.jobHost, box.hostArguments)
        defer { kill(host.process.processIdentifier, SIGKILL) }

        let v1 = try await box.kappactl(["deploy", "-f", Self.root + "/Manifests/btc-v1.json", "--wait", "--timeout", "60s"])
        #expect(v1.status == 0)
        if v1.status != 0 { Issue.record("deploy said: \(v1.stderr)") }
        #expect(v1.lines.last == "btc version 1 is serving")
        #expect(try await Self.scalar(box, "btc", "SELECT sum(samples) FROM btc_prices") == "3600")

        // More ticks arrive while v2 replays from offset 0; v1 keeps serving meanwhile.
        let producer = try box.start(Executables.kappactl, box.hostArguments + ["produce", "bpi"])
        let deploy = try await box.kappactl(["deploy", "-f", Self.root + "/Manifests/btc-v2.json"])
        #expect(deploy.status == 0)
        #expect(try await box.kappactl(["query", "btc"]).lines.first?.contains("AVG_RATE") == true)
        for chunk in 0..<10 {
            try producer.write(Self.feedLines(seed: UInt64(chunk + 2), startMinute: 28_000_020 + Int64(chunk), seconds: 60))
            try await Task.sleep(for: .microseconds(50_000))
        }
        try producer.closeInput()
        #expect(await producer.finish().status == 0)
        let total: Int64 = 3600 + 10 * 180
        try await Self.waitUntil("v2 has caught up with every record") {
            let versions = try await Self.status(box, "btc").jobs[0].versions
            return versions.allSatisfy { $0.processed == total } && versions[1].state == .caughtUp
        }
        let report = try await Self.status(box, "btc")
        #expect(report.jobs[0].serving == 1)
        #expect(report.hosts.count == 1)

        let diff = try await box.kappactl(["diff", "btc", "1", "2", "--output", "json"])
        let compared = try JSONDecoder().decode(VersionDiff.self, from: Data(diff.stdout.utf8))
        #expect(compared.rowsA == compared.rowsB)
        #expect(compared.rows?.onlyInA == 0 && compared.rows?.onlyInB == 0 && compared.rows?.changed == 0)
        #expect(compared.rows?.compared == ["samples"])
        #expect(compared.manifest.contains("column open REAL added"))
        #expect(try await box.kappactl(["diff", "btc", "1", "9"]).status == 3)

        let promoted = try await box.kappactl(["promote", "btc"])
        #expect(promoted.stdout == "btc: version 2 serves now (version 1 is standby)\n")
        let candles = try await box.kappactl(["query", "btc", "--output", "json"])
        let json = try JSONSerialization.jsonObject(with: Data(candles.stdout.utf8)) as! [String: Any]
        #expect(json["columns"] as? [String] == ["currency", "minute", "samples", "open", "high", "low", "close"])
        #expect((json["rows"] as! [[String: Any]]).reduce(0) { $0 + ($1["samples"] as! Int) } == Int(total))

        let rolledBack = try await box.kappactl(["rollback", "btc"])
        #expect(rolledBack.stdout == "btc: rolled back: version 1 serves now (version 2 is standby)\n")
        // v1 stayed current while it was standby: it holds every record, including the new ones.
        #expect(try await Self.scalar(box, "btc", "SELECT sum(samples) FROM btc_prices") == "\(total)")

        let retired = try await box.kappactl(["retire", "btc", "--version", "2"])
        #expect(retired.status == 0)
        let tables = box.catalog == nil ? "SELECT count(*) FROM sqlite_master WHERE name LIKE 'btc_prices__v2%'"
            : "SELECT count(*) FROM information_schema.tables WHERE table_name LIKE 'btc_prices__v2%'"
        #expect(try await Self.scalar(box, "btc", tables) == "0")
        let refused = try await box.kappactl(["retire", "btc", "--version", "1"])
        #expect(refused.status == 4)
        #expect(refused.stderr == "error: version 1 is serving; promote another version or roll back first\n")

        let history = try await box.kappactl(["history", "btc", "--output", "json"])
        let entries = try JSONDecoder().decode([String: [HistoryEntry]].self, from: Data(history.stdout.utf8))["history"]!
        let steps = entries.map { "v\($0.version) \($0.from?.rawValue ?? "-")>\($0.to.rawValue)" }
        #expect(steps == [
            "v1 ->pending", "v1 pending>replaying", "v1 replaying>caughtUp", "v1 caughtUp>serving",
            "v2 ->pending", "v2 pending>replaying", "v2 replaying>caughtUp",
            "v1 serving>standby", "v2 caughtUp>serving",
            "v2 serving>standby", "v1 standby>serving",
            "v2 standby>retired",
        ])
        kill(host.process.processIdentifier, SIGTERM)
        let stopped = await host.finish(timeout: 30)
        #expect(stopped.status == 0)
        #expect(stopped.stderr.contains("info caught up job=btc version=2"))
    }

    @Test func aDeployOverATopicWhoseRetentionDeletedOffsetZeroIsRefused() async throws {
        let box = try Sandbox()
        try await box.kappactl(["topic", "create", "bpi", "-p", "3", "--retention-bytes", "4096", "--segment-bytes", "2048"])
        for chunk in 0..<6 {
            try await box.kappactl(["produce", "bpi"], stdin: Self.feedLines(seed: 3, startMinute: 28_000_000 + Int64(chunk), seconds: 20))
        }
        let offsets = try await box.kappactl(["topic", "describe", "bpi", "--output", "json"])
        let described = try JSONSerialization.jsonObject(with: Data(offsets.stdout.utf8)) as! [String: Any]
        let gaps = (described["partitions"] as! [[String: Any]]).filter { ($0["earliest"] as! Int) > 0 }
        #expect(!gaps.isEmpty)
        let refused = try await box.kappactl(["deploy", "-f", Self.root + "/Manifests/btc-v1.json"])
        #expect(refused.status == 4)
        let list = gaps.map { "partition \($0["partition"]!) starts at offset \($0["earliest"]!)" }.joined(separator: ", ")
        #expect(refused.stderr.hasPrefix("error: topic \"bpi\" no longer holds offset 0 of every partition (retention deleted it): \(list)."))
        #expect(try await box.kappactl(["status"]).stdout.hasPrefix("no jobs"))

        let partial = try await box.kappactl(["deploy", "-f", Self.root + "/Manifests/btc-v1.json", "--allow-partial"])
        #expect(partial.status == 0)
        let history = try await box.kappactl(["history", "btc"])
        #expect(history.stdout.contains("deployed with --allow-partial: \(list)"))
    }

    @Test func commandsRefusedByStateExitFour() async throws {
        let box = try Sandbox()
        try await box.kappactl(["topic", "create", "bpi", "-p", "1"])
        let deploy = try await box.kappactl(["deploy", "-f", Self.root + "/Manifests/btc-v1.json"])
        #expect(deploy.stderr.contains("note: no JobHost is running on \(box.state)"))
        let promote = try await box.kappactl(["promote", "btc", "--version", "1"])
        #expect(promote.status == 4)
        #expect(promote.stderr == "error: version 1 is pending and cannot serve\n")
        #expect(try await box.kappactl(["promote", "nojob"]).status == 3)
        #expect(try await box.kappactl(["promote", "btc", "--version", "7"]).stderr == "error: the job has no version 7\n")
        #expect(try await box.kappactl(["rollback", "btc"]).stderr == "error: no version of the job is serving\n")
        // The same manifest again is a retry: it attaches and changes nothing.
        let again = try await box.kappactl(["deploy", "-f", Self.root + "/Manifests/btc-v1.json"])
        #expect(again.status == 0)
        #expect(again.stdout == "btc version 1 is already registered (pending); nothing changed\n")
        // Other logic under the same number is refused.
        let changed = box.root + "/btc-v1-changed.json"
        let manifest = try String(contentsOfFile: Self.root + "/Manifests/btc-v2.json", encoding: .utf8)
            .replacingOccurrences(of: "\"version\": 2", with: "\"version\": 1")
        #expect(manifest.contains("\"version\": 1"))
        try manifest.write(toFile: changed, atomically: true, encoding: .utf8)
        let other = try await box.kappactl(["deploy", "-f", changed])
        #expect(other.status == 4)
        #expect(other.stderr == "error: version 1 of job \"btc\" is registered already (pending) with another manifest (or other deploy options, such as --max-rate); deploy the same to attach to it, or this one as a new version\n", "\(other.stderr)")
        let timeout = try await box.kappactl(["deploy", "-f", Self.root + "/Manifests/btc-v2.json", "--wait", "--timeout", "300ms"])
        #expect(timeout.status == 5)
        #expect(timeout.stderr.contains("error: version 2 of job \"btc\" is still pending"))
    }

    /// Several JobHosts on one catalog (here one state directory: SQLite and the segment log)
    /// divide the partitions; the one holding the controller lease is killed with SIGKILL in the
    /// middle of the replay; the other takes over its partitions and the controller role, and
    /// the table equals the aggregate computed straight from the log.
    @Test func twoJobHostsShareTheWorkAndTheSurvivorFinishesAfterAKill() async throws {
        let box = try Sandbox()
        try await box.kappactl(["topic", "create", "bpi", "-p", "4"])
        try await Self.twoJobHosts(box, hostStates: [box.state, box.state])
    }

    #if Kafka && Postgres
    /// The same as two machines would: each JobHost with a state directory of its own, the log
    /// in Kafka and the catalog in PostgreSQL.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["KAPPA_TEST_POSTGRES"] != nil, "needs the PostgreSQL server scripts/test starts"))
    func twoJobHostsOnKafkaAndPostgresShareTheWorkAndTheSurvivorFinishesAfterAKill() async throws {
        let kafka = try KafkaMockCluster(brokers: 1)
        try kafka.createTopic("bpi", partitions: 4)
        let box = try await Sandbox(catalog: Self.postgresDatabase(), log: kafka.url)
        try await Self.twoJobHosts(box, hostStates: [box.root + "/machine-a", box.root + "/machine-b"])
        withExtendedLifetime(kafka) {}
    }
    #endif

    static func twoJobHosts(_ box: Sandbox, hostStates: [String]) async throws {
        // Unkeyed records: spread over the four partitions.
        let lines = BPIFeed(seed: 9, start: 28_000_000 * 60_000).ticks(seconds: 3000)
            .map { "{\"value\": \($0.json), \"timestamp\": \($0.ts)}" }.joined(separator: "\n")
        #expect(try await box.kappactl(["produce", "bpi"], stdin: lines).status == 0)
        let manifest = box.root + "/exact.json"
        try StoreFixtureText.exact(batch: 30).write(toFile: manifest, atomically: true, encoding: .utf8)
        let a = try box.start(Executables.jobHost, ["--state", hostStates[0], "--lease-ttl", "2s"] + box.backendArguments)
        let b = try box.start(Executables.jobHost, ["--state", hostStates[1], "--lease-ttl", "2s"] + box.backendArguments)
        defer { kill(a.process.processIdentifier, SIGKILL); kill(b.process.processIdentifier, SIGKILL) }
        try await Self.waitUntil("both JobHosts are up") { try await Self.status(box, nil).hosts.count == 2 }
        // Capped at 900 records a second, the 9,000 records take ten seconds: the kill lands
        // mid-replay however slowly a loaded machine starts the workers.
        let deployed = try await box.kappactl(["deploy", "-f", manifest, "--max-rate", "900"])
        #expect(deployed.status == 0, "\(deployed.stderr)")

        func working(_ host: Child) -> Bool { host.output().stderr.contains("worker started job=t") }
        try await Self.waitUntil("both JobHosts run workers") { working(a) && working(b) }
        let controllers = [a, b].filter { $0.output().stderr.contains("controller lease taken") }
        #expect(controllers.count == 1)
        let leases = try await Self.status(box, nil).leases
        #expect(leases.filter(\.key.isController).count == 1)
        #expect(Set(leases.filter { !$0.key.isController }.map(\.key.partition)) == [0, 1, 2, 3])
        #expect(Set(leases.filter { !$0.key.isController }.map(\.owner)).count == 2)  // shared: two each
        let (victim, survivor) = controllers.first.map { $0.process.processIdentifier == a.process.processIdentifier ? (a, b) : (b, a) } ?? (a, b)
        let before = try await Self.status(box, "t").jobs[0].versions[0]
        kill(victim.process.processIdentifier, SIGKILL)
        _ = await victim.finish()
        #expect(before.state == .replaying && (before.processed ?? 0) < 9000)  // the kill landed mid-replay

        try await Self.waitUntil("the survivor finished the replay", timeout: 120) { try await Self.status(box, "t").jobs[0].serving == 1 }
        // The victim may have finished its partitions before it died (serving needs no worker on
        // a partition with no lag): the survivor takes them over once their leases expire.
        try await Self.waitUntil("the survivor runs a worker on every partition", timeout: 60) {
            let log = survivor.output().stderr
            return (0..<4).allSatisfy { log.contains("worker started job=t version=1 partition=\($0)") }
        }
        #expect(survivor.output().stderr.contains("controller lease taken"))
        kill(survivor.process.processIdentifier, SIGTERM)
        #expect(await survivor.finish().status == 0)

        try await CrashTests.expectExactTable(box)
    }
}

/// Exactly once across crashes: JobHost killed with SIGKILL at random instants while replaying.
@Suite(.serialized) struct CrashTests {
    @Test func killingJobHostMidReplayNeitherLosesNorDoublesARecord() async throws {
        let box = try Sandbox()
        try await box.kappactl(["topic", "create", "bpi", "-p", "3"])
        // Long enough that a kill 0-250 ms after the first progress lands mid-replay even on a
        // fast machine: 36,000 records in batches of 20 (12,000 in batches of 40 took under
        // half a second there, so every kill came after the end).
        let seconds = 12_000, total = Int64(seconds * 3)
        try await box.kappactl(["produce", "bpi"], stdin: WorkflowTests.feedLines(seed: 5, startMinute: 28_000_000, seconds: seconds))
        let manifest = box.root + "/exact.json"
        try StoreFixtureText.exact(batch: 20).write(toFile: manifest, atomically: true, encoding: .utf8)
        #expect(try await box.kappactl(["deploy", "-f", manifest]).status == 0)
        var kills = 0, midReplay = 0
        while kills < 6 {
            let host = try box.start(Executables.jobHost, ["--state", box.state])
            try await Self.sleepIntoTheReplay(box, job: "t", millis: 0...250)
            kill(host.process.processIdentifier, SIGKILL)
            _ = await host.finish()
            kills += 1
            let version = try await WorkflowTests.status(box, "t").jobs[0].versions[0]
            if version.state == .replaying, let done = version.processed, done > 0, done < total { midReplay += 1 }
            if version.state == .serving { break }
        }
        let host = try box.start(Executables.jobHost, ["--state", box.state])
        try await WorkflowTests.waitUntil("the version serves") { try await WorkflowTests.status(box, "t").jobs[0].serving == 1 }
        kill(host.process.processIdentifier, SIGTERM)
        #expect(await host.finish().status == 0)

        try await Self.expectExactTable(box)
        let history = try await box.kappactl(["history", "t", "--output", "json"])
        let entries = try JSONDecoder().decode([String: [HistoryEntry]].self, from: Data(history.stdout.utf8))["history"]!
        #expect(entries.map { "\($0.from?.rawValue ?? "-")>\($0.to.rawValue)" } == ["->pending", "pending>replaying", "replaying>caughtUp", "caughtUp>serving"])
        #expect(midReplay >= 1)  // at least one kill landed in the middle of the replay
    }

    /// JobHost killed with SIGKILL `KAPPA_TEST_KILLS` times (30 by default) at random instants
    /// while two versions replay and, every other round, while an operator's promote or rollback
    /// runs (itself killed at a random instant); restarted each time. After each crash at most
    /// one version serves; at the end both tables equal the aggregate computed from the log and
    /// the history is one consistent chain per version, never two serving at once.
    @Test func aCrashLoopThroughReplaysPromotesAndRollbacks() async throws {
        let kills = Int(ProcessInfo.processInfo.environment["KAPPA_TEST_KILLS"] ?? "") ?? 30
        let box = try Sandbox()
        try await box.kappactl(["topic", "create", "bpi", "-p", "3"])
        try await box.kappactl(["produce", "bpi"], stdin: WorkflowTests.feedLines(seed: 6, startMinute: 28_000_000, seconds: 3000))
        for (version, batch) in [(1, 40), (2, 25)] {
            let manifest = box.root + "/v\(version).json"
            try StoreFixtureText.exact(batch: batch, version: version).write(toFile: manifest, atomically: true, encoding: .utf8)
            #expect(try await box.kappactl(["deploy", "-f", manifest]).status == 0)
        }
        let total: Int64 = 9000
        func check(_ round: Int) async throws {
            let versions = try await WorkflowTests.status(box, "t").jobs[0].versions
            #expect(versions.filter { $0.state == .serving }.count <= 1, "round \(round): \(versions.map(\.state))")
            #expect(!versions.contains { $0.state == .failed }, "round \(round): \(versions.map { $0.error ?? "" })")
        }
        // First half: kills while the two versions replay.
        for round in 0..<kills / 2 {
            let host = try box.start(Executables.jobHost, ["--state", box.state])
            try await Task.sleep(for: .milliseconds(Int.random(in: 30...300)))
            kill(host.process.processIdentifier, SIGKILL)
            _ = await host.finish()
            try await check(round)
        }
        do {
            let host = try box.start(Executables.jobHost, ["--state", box.state])
            try await WorkflowTests.waitUntil("both versions caught up", timeout: 120) {
                let job = try await WorkflowTests.status(box, "t").jobs[0]
                return job.serving != nil && job.versions.allSatisfy { $0.processed == total && $0.state != .replaying }
            }
            kill(host.process.processIdentifier, SIGKILL)
            _ = await host.finish()
        }
        // Second half: an operator's promote or rollback killed at a random instant (before,
        // inside or after its transaction), and JobHost with it.
        for round in kills / 2..<kills {
            let host = try box.start(Executables.jobHost, ["--state", box.state])
            try await Task.sleep(for: .milliseconds(Int.random(in: 20...150)))
            let op = try box.start(Executables.kappactl, ["--state", box.state, round % 2 == 0 ? "promote" : "rollback", "t"])
            try await Task.sleep(for: .milliseconds(Int.random(in: 0...100)))
            kill(op.process.processIdentifier, SIGKILL)
            _ = await op.finish()
            kill(host.process.processIdentifier, SIGKILL)
            _ = await host.finish()
            try await check(round)
        }
        let host = try box.start(Executables.jobHost, ["--state", box.state])
        try await WorkflowTests.waitUntil("both versions have replayed everything", timeout: 120) {
            let job = try await WorkflowTests.status(box, "t").jobs[0]
            return job.serving != nil && job.versions.allSatisfy { $0.processed == total }
        }
        kill(host.process.processIdentifier, SIGTERM)
        let stopped = await host.finish()
        #expect(stopped.status == 0, "\(stopped.status): \(stopped.stderr.suffix(3000))")
        try await Self.expectExactTable(box, table: "ticks__v1")
        try await Self.expectExactTable(box, table: "ticks__v2")

        // The history, replayed: each entry starts where the version's previous one ended, and
        // no two versions ever serve at once.
        let history = try await box.kappactl(["history", "t", "--output", "json"])
        let entries = try JSONDecoder().decode([String: [HistoryEntry]].self, from: Data(history.stdout.utf8))["history"]!
        var states: [Int: VersionState] = [:]
        for entry in entries {
            #expect(entry.from == states[entry.version], "v\(entry.version): \(entry.from?.rawValue ?? "-") after \(states[entry.version]?.rawValue ?? "-")")
            states[entry.version] = entry.to
            #expect(states.values.filter { $0 == .serving }.count <= 1, "\(entries.map { "v\($0.version) \($0.from?.rawValue ?? "-")>\($0.to.rawValue) \($0.reason) \($0.actor)" })")
        }
        #expect(states.values.filter { $0 == .serving }.count == 1)
        // Some of the killed switches landed (the others died before committing, changing nothing).
        #expect(entries.contains { $0.actor.hasPrefix("kappactl") && $0.to == .serving })
    }

    /// Waits until the just started JobHost has committed something more (a loaded machine may
    /// take a while to start it), then a random while longer: a kill after this lands at a
    /// random instant of the replay, not before it.
    static func sleepIntoTheReplay(_ box: Sandbox, job: String, millis: ClosedRange<Int>) async throws {
        let before = try await WorkflowTests.status(box, job).jobs[0].versions.map { $0.processed ?? 0 }.reduce(0, +)
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            let now = try await WorkflowTests.status(box, job).jobs[0].versions.map { $0.processed ?? 0 }.reduce(0, +)
            if now > before { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        try await Task.sleep(for: .milliseconds(Int.random(in: millis)))
    }

    /// The table of the exact manifest equals the aggregate computed here from the records as
    /// `kappactl consume` prints them (whatever the log and the catalog are).
    static func expectExactTable(_ box: Sandbox, table: String = "ticks__v1") async throws {
        var expected: [String: (Int64, Int64)] = [:]
        let consumed = try await box.kappactl(["consume", "bpi"])
        #expect(consumed.status == 0)
        for line in consumed.lines {
            let record = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            let o = record["value"] as! [String: Any]
            let key = "\(o["currency"]!)|\((o["ts"] as! NSNumber).int64Value / 60_000)"
            let cents = Int64(((o["rate"] as! NSNumber).doubleValue * 100).rounded())
            let (n, c) = expected[key] ?? (0, 0)
            expected[key] = (n + 1, c + cents)
        }
        #expect(!expected.isEmpty)
        let result = try await box.kappactl(["query", "t", "SELECT currency, minute, samples, cents FROM \(table)", "--output", "json"])
        let rows = (try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as! [String: Any])["rows"] as! [[String: Any]]
        #expect(rows.count == expected.count)
        for row in rows {
            let key = "\(row["currency"]!)|\((row["minute"] as! NSNumber).int64Value)"
            let actual = [(row["samples"] as! NSNumber).int64Value, (row["cents"] as! NSNumber).int64Value]
            #expect(expected[key].map { [$0.0, $0.1] } == actual, "\(key)")
        }
    }
}

/// A producer killed mid-stream: what it acknowledged is there, every record whole, offsets
/// contiguous, and each partition holds a prefix of what was sent to it.
@Suite(.serialized) struct ProducerCrashTests {
    @Test func killingAProducerMidStreamLosesNothingAcknowledged() async throws {
        for round in 0..<3 {
            let box = try Sandbox()
            try await box.kappactl(["topic", "create", "t", "-p", "3"])
            let producer = try box.start(Executables.kappactl, ["--state", box.state, "produce", "t", "--progress"])
            var sent: [Int] = []
            // Killed at a random instant after the first acknowledgement (a loaded machine may
            // take a while to start the process).
            var killAt: ContinuousClock.Instant?
            let giveUp = ContinuousClock.now + .seconds(30)
            var n = 0
            while ContinuousClock.now < (killAt ?? giveUp) {
                if killAt == nil, producer.output().stderr.contains("acknowledged ") {
                    killAt = ContinuousClock.now + .milliseconds(Int.random(in: 20...300))
                }
                let lines = (n..<n + 200).map { "{\"key\": \"k\($0 % 10)\", \"value\": {\"i\": \($0)}}" }.joined(separator: "\n") + "\n"
                do { try producer.write(lines) } catch { break }
                sent += Array(n..<n + 200)
                n += 200
                try await Task.sleep(for: .milliseconds(5))
            }
            kill(producer.process.processIdentifier, SIGKILL)
            let output = await producer.finish()
            let acknowledged = output.stderr.split(separator: "\n").compactMap { $0.hasPrefix("acknowledged ") ? Int($0.dropFirst(13)) : nil }.last ?? 0
            #expect(acknowledged > 0, "round \(round): nothing acknowledged before the kill")

            let consumed = try await box.kappactl(["consume", "t"])
            #expect(consumed.status == 0)
            var byPartition: [Int: [(offset: Int, i: Int)]] = [:]
            for line in consumed.lines {
                let record = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
                let value = try #require(record["value"] as? [String: Any], "a record that is not whole: \(line)")
                byPartition[record["partition"] as! Int, default: []].append((record["offset"] as! Int, value["i"] as! Int))
            }
            var total = 0
            for (p, records) in byPartition {
                #expect(records.map(\.offset) == Array(0..<records.count), "partition \(p): offsets not contiguous")
                let mine = sent.filter { Murmur2.partition(forKey: Array("k\($0 % 10)".utf8), partitions: 3) == p }
                #expect(records.map(\.i) == Array(mine.prefix(records.count)), "partition \(p): not a prefix of what was sent")
                total += records.count
            }
            // Every acknowledged line is there (appends are acknowledged in input order).
            let present = Set(byPartition.values.flatMap { $0.map(\.i) })
            #expect(sent.prefix(acknowledged).allSatisfy(present.contains), "round \(round): an acknowledged record is missing")
            #expect(total >= acknowledged)
        }
    }
}

/// A manifest with an exact integer aggregate, so that tables compare bit for bit.
enum StoreFixtureText {
    static func exact(batch: Int, version: Int = 1) -> String {
        """
        {"job": "t", "version": \(version), "source": {"topic": "bpi"},
         "output": {"table": "ticks", "columns": {"currency": "TEXT", "minute": "INTEGER", "samples": "INTEGER", "cents": "INTEGER"}, "primaryKey": ["currency", "minute"]},
         "transform": {"sql": "INSERT INTO output(currency, minute, samples, cents) SELECT value->>'currency', CAST(value->>'ts' AS BIGINT) / 60000, count(*), sum(CAST(round(CAST(value->>'rate' AS DOUBLE PRECISION) * 100) AS INTEGER)) FROM batch WHERE true GROUP BY 1, 2 ON CONFLICT(currency, minute) DO UPDATE SET samples = output.samples + excluded.samples, cents = output.cents + excluded.cents"},
         "batch": \(batch), "catchUp": {"maxLag": 0, "holdFor": "300ms"}}
        """
    }
}
