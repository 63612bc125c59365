#if Kafka
import Foundation
import Testing
@testable import KappaCore

/// Every Kafka broker down and back under the executables (librdkafka's mock cluster in this
/// process, on loopback; the catalog in SQLite): JobHost rides it out into the exact table, and
/// `kappactl produce` writes what it acknowledges exactly once.
@Suite(.serialized) struct KafkaOutageTests {
    /// A cluster of three brokers with topic `bpi` (3 partitions, 3 replicas).
    static func cluster() throws -> KafkaMockCluster {
        let kafka = try KafkaMockCluster(brokers: 3)
        try kafka.createTopic("bpi", partitions: 3, replicationFactor: 3)
        return kafka
    }

    /// How long ago (ms) the first of JobHost's leases expired; 0 when none has.
    static func leasesExpiredFor(_ box: Sandbox) throws -> Int64 {
        let db = try SQLiteConnection(path: box.state + "/kappa.sqlite", readOnly: true)
        let rows = try db.query("SELECT min(expires_at) FROM kappa_leases WHERE owner IS NOT NULL AND expires_at > 0", name: "test")
        guard case .integer(let expires) = rows.first?.first else { return 0 }
        return max(0, currentTimeMillis() - expires)
    }

    @Test func jobHostRidesOutEveryBrokerDownDuringAReplay() async throws {
        let kafka = try Self.cluster()
        let box = try Sandbox(log: kafka.url)
        let seconds = 20_000  // 60,000 records
        #expect(try await box.kappactl(["produce", "bpi"], stdin: WorkflowTests.feedLines(seed: 7, startMinute: 28_000_000, seconds: seconds)).status == 0)
        let total = Int64(3 * seconds)
        // The demo job in small batches: the replay takes long enough for the outage to land in it.
        let manifest = box.root + "/btc-slow.json"
        let text = try String(contentsOfFile: WorkflowTests.root + "/Manifests/btc-v1.json", encoding: .utf8)
            .replacingOccurrences(of: "\"batch\": 10000", with: "\"batch\": 50")
        try text.write(toFile: manifest, atomically: true, encoding: .utf8)
        let host = try box.start(Executables.jobHost, box.hostArguments + ["--lease-ttl", "2s"])
        defer { kill(host.process.processIdentifier, SIGKILL) }
        #expect(try await box.kappactl(["deploy", "-f", manifest]).status == 0)
        let processed = { try await WorkflowTests.status(box, "btc").jobs[0].versions[0].processed ?? 0 }
        try await WorkflowTests.waitUntil("the replay moves") { try await processed() > 0 }
        #expect(try await processed() < total, "the replay ended before the outage; make it longer")

        // Three times the lease TTL. JobHost stays up, its controller keeps ticking (it keeps its
        // leases: a Kafka call waits about a second, not for as long as the brokers are down), and
        // status says what it can: the brokers are named as unreachable, never a hang.
        try kafka.setBrokersDown()
        let down = Date()
        let leases = Task {
            var worst: Int64 = 0
            while Date().timeIntervalSince(down) < 6 {
                worst = max(worst, try Self.leasesExpiredFor(box))
                try await Task.sleep(for: .milliseconds(200))
            }
            return worst
        }
        var saidUnknown = false
        while Date().timeIntervalSince(down) < 6 {
            #expect(host.process.isRunning)
            // Status shows what the catalog knows, and says why the lag is unknown.
            let status = try await box.kappactl(["status", "btc"])
            #expect(status.status == 0, "\(status.stderr)")
            #expect(status.stdout.contains("  1  replaying "), "\(status.stdout)")
            if let line = status.lines.first(where: { $0.hasPrefix("  lag unknown: ") }) {
                saidUnknown = true
                #expect(line.contains("topic \"bpi\": Kafka "), "\(line)")
                #expect(line.contains("no broker of \(kafka.url) answers"), "\(line)")
            }
            try await Task.sleep(for: .milliseconds(300))
        }
        #expect(saidUnknown)
        let worstExpiry = try await leases.value
        try kafka.setBrokersUp()
        // A grace of half the TTL for a loaded machine.
        #expect(worstExpiry <= 1_000, "JobHost's leases expired \(worstExpiry) ms before renewal during the outage")

        try await WorkflowTests.waitUntil("v1 serves after the outage", timeout: 60) {
            (try? await WorkflowTests.status(box, "btc").jobs[0].serving) == 1
        }
        #expect(host.process.isRunning)
        #expect(try await WorkflowTests.scalar(box, "btc", "SELECT sum(samples) FROM btc_prices") == "\(total)")
        #expect(try await WorkflowTests.scalar(box, "btc", "SELECT count(*) FROM btc_prices") == "\(3 * ((seconds + 59) / 60))")
        let report = try await WorkflowTests.status(box, nil)
        #expect(report.hosts.count == 1)
        #expect(report.jobs[0].versions[0].processed == total)
        kill(host.process.processIdentifier, SIGTERM)
        let stopped = await host.finish(timeout: 30)
        #expect(stopped.status == 0)
        // Said once when it starts and once when it ends; librdkafka's lines about each failed
        // reconnection are not repeated in between.
        let log = stopped.stderr
        #expect(log.components(separatedBy: "error kafka unreachable").count - 1 == 1, "\(log.suffix(4000))")
        #expect(log.components(separatedBy: "info kafka reachable again").count - 1 == 1, "\(log.suffix(4000))")
        // The controller cannot read the lag meanwhile: said when it starts failing (again only
        // if the error changes) and when decisions resume, not once per tick.
        let failedDecisions = log.components(separatedBy: "error decision failed job=btc").count - 1
        #expect((1...2).contains(failedDecisions), "\(log.suffix(4000))")
        #expect(log.contains("info decisions resumed job=btc"))
        if let from = log.range(of: "kafka unreachable"), let to = log.range(of: "kafka reachable again"), from.upperBound < to.lowerBound {
            #expect(!log[from.upperBound..<to.lowerBound].contains(" kafka facility="), "\(log[from.upperBound..<to.lowerBound].prefix(3000))")
        }
        withExtendedLifetime(kafka) {}
    }

    /// `kappactl produce` while every broker is down: it acknowledges nothing meanwhile, then
    /// completes once the brokers are back (within `message.timeout.ms`), or fails naming the
    /// topic when they stay down longer; either way what it acknowledged is in the log once.
    @Test func produceWaitsForTheBrokersOrFailsNamingTheTopic() async throws {
        let kafka = try Self.cluster()
        let box = try Sandbox(log: kafka.url)
        let feed = { (minute: Int64) in WorkflowTests.feedLines(seed: 5, startMinute: minute, seconds: 100) }  // 300 records
        let acknowledged = { (child: Child) in
            child.output().stderr.split(separator: "\n").compactMap { $0.hasPrefix("acknowledged ") ? Int($0.dropFirst(13)) : nil }.max() ?? 0
        }
        // The patient one first: once it has its lines acknowledged the cluster has leaders for
        // every partition, so the hasty one's short timeout only ever runs against the outage
        // (on a loaded machine a cold cluster can take longer than that to answer).
        let patient = try box.start(Executables.kappactl, box.backendArguments + ["produce", "bpi", "--progress"])
        defer { kill(patient.process.processIdentifier, SIGKILL) }
        try patient.write(feed(28_000_000))
        try await WorkflowTests.waitUntil("the patient one has its first lines acknowledged") { acknowledged(patient) == 300 || !patient.process.isRunning }
        try #require(acknowledged(patient) == 300, "\(patient.output().stderr.suffix(2000))")
        let hasty = try box.start(Executables.kappactl, box.backendArguments + ["produce", "bpi", "--progress", "-X", "message.timeout.ms=4000"])
        defer { kill(hasty.process.processIdentifier, SIGKILL) }
        try hasty.write(feed(28_000_010))
        try await WorkflowTests.waitUntil("the hasty one has its first lines acknowledged") { acknowledged(hasty) == 300 || !hasty.process.isRunning }
        try #require(acknowledged(hasty) == 300, "\(hasty.output().stderr.suffix(2000))")

        try kafka.setBrokersDown()
        try patient.write(feed(28_000_020))
        try hasty.write(feed(28_000_030))
        try hasty.closeInput()
        // The hasty one gives up after its 4 s: an error naming the topic, and what was
        // acknowledged before it (the 300), never more.
        let failed = await hasty.finish(timeout: 30)
        #expect(failed.status != 0)
        #expect(failed.stderr.contains("error: topic \"bpi\" partition "), "\(failed.stderr.suffix(2000))")
        #expect(failed.stderr.contains("Kafka did not acknowledge the append"), "\(failed.stderr.suffix(2000))")
        #expect(failed.stdout.hasPrefix("appended 300 records to \"bpi\"\n"), "\(failed.stdout)")
        #expect(failed.stderr.contains("(the 300 records listed were acknowledged)"), "\(failed.stderr.suffix(2000))")
        #expect(acknowledged(hasty) == 300)
        try await Task.sleep(for: .seconds(1))
        #expect(patient.process.isRunning)
        #expect(acknowledged(patient) == 300)  // nothing acknowledged while the brokers are down
        try kafka.setBrokersUp()

        try patient.write(feed(28_000_040))
        try patient.closeInput()
        let done = await patient.finish(timeout: 60)
        #expect(done.status == 0, "\(done.stderr.suffix(2000))")
        #expect(done.stdout.hasPrefix("appended 900 records to \"bpi\"\n"))

        // Read back: every acknowledged record once (key and timestamp name a record of the feed).
        let consumed = try await box.kappactl(["consume", "bpi"])
        #expect(consumed.status == 0)
        let records = try consumed.lines.map { line -> String in
            let json = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            return "\(json["key"] as? String ?? "-")@\(json["timestamp"] as? Int ?? -1)"
        }
        let counts = Dictionary(records.map { ($0, 1) }, uniquingKeysWith: +)
        #expect(counts.values.allSatisfy { $0 == 1 }, "doubled: \(counts.filter { $0.value > 1 }.keys.sorted().prefix(5))")
        let expected = [28_000_000, 28_000_020, 28_000_040, 28_000_010].flatMap { minute in
            feed(Int64(minute)).split(separator: "\n").map { line -> String in
                let json = try! JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
                return "\(json["key"] as! String)@\(json["timestamp"] as! Int)"
            }
        }
        let missing = expected.filter { counts[$0] == nil }
        #expect(missing.isEmpty, "lost: \(missing.prefix(5))")
        #expect(records.count <= expected.count + 300)  // at most the unacknowledged lines besides
        withExtendedLifetime(kafka) {}
    }
}
#endif
