import Foundation
import Testing
@testable import KappaCore

@Suite struct UsageTests {
    @Test(arguments: [[], ["topic"], ["topic", "create"], ["topic", "list"], ["topic", "describe"], ["topic", "delete"], ["produce"], ["consume"]])
    func everyCommandHasHelp(path: [String]) async throws {
        let box = try Sandbox()
        let result = try await box.kappactl(path + ["--help"])
        #expect(result.status == 0)
        #expect(result.stdout.contains("USAGE: kappactl"))
        #expect(result.stdout.contains("-h, --help"))
    }

    @Test func helpDescribesOptions() async throws {
        let box = try Sandbox()
        let out = try await box.kappactl(["topic", "create", "--help"]).stdout
        #expect(out.contains("USAGE: kappactl topic create <name> --partitions <N> [options]"))
        #expect(out.contains("--retention <DURATION>"))
        #expect(out.contains("--state <DIR>"))
    }

    @Test func jobHostHasHelp() async throws {
        let box = try Sandbox()
        let result = try await box.run(Executables.jobHost, ["--help"])
        #expect(result.status == 0)
        #expect(result.stdout.contains("--log-format <FORMAT>"))
        #expect(result.stdout.contains("--lease-ttl <DURATION>"))
        #expect(result.stdout.contains("--log <URL>"))
    }

    /// `--version` on both executables: the release and the catalog schema they migrate to,
    /// without a state directory (nothing is created).
    @Test func bothExecutablesSayTheirVersion() async throws {
        let box = try Sandbox()
        let expected = "\(KappaVersion.release) (catalog schema \(SQLCatalog.schemaVersion))\n"
        let ctl = try await box.kappactl(["--version"])
        #expect(ctl.status == 0 && ctl.stdout == "kappactl " + expected)
        let host = try await box.run(Executables.jobHost, ["--version"])
        #expect(host.status == 0 && host.stdout == "JobHost " + expected)
        #expect(!FileManager.default.fileExists(atPath: box.state + "/kappa.sqlite"))
    }

    @Test func aLogThisBuildCannotUseIsRefusedByName() async throws {
        let box = try Sandbox()
        let wrong = try await box.kappactl(["--log", "pulsar://u:secret@h:1", "topic", "list"])
        #expect(wrong.status == 1)
        #expect(wrong.stderr == "error: unsupported log pulsar://u:***@h:1: use kafka://host:port[,host:port…] (or no --log for the embedded log)\n")
        let setting = try await box.kappactl(["-X", "sasl.password=secret", "topic", "list"])
        #expect(setting.stderr == "error: -X sasl.password is a librdkafka setting: it needs --log kafka://…\n")
        #if !Kafka
        let kafka = try await box.kappactl(["--log", "kafka://127.0.0.1:9092", "topic", "list"])
        #expect(kafka.stderr == "error: this build has no Kafka support: build with `swift build --traits Kafka` to use kafka://127.0.0.1:9092\n")
        #endif
    }

    @Test(arguments: [
        (["frobnicate"], "error: unknown command 'frobnicate' for 'kappactl'"),
        (["topic", "crate", "x"], "error: unknown command 'crate' for 'kappactl topic'"),
        (["topic", "list", "--colour"], "error: unknown option '--colour' for 'kappactl topic list'"),
        (["topic", "create", "t"], "error: missing --partitions N"),
        (["topic", "create", "--partitions", "3"], "error: missing <name>"),
        (["topic", "create", "t", "--partitions", "three"], "error: --partitions: \"three\" is not a whole number"),
        (["topic", "create", "t", "--partitions", "0"], "error: --partitions: 0 is out of range (1…10000)"),
        (["topic", "create", "t", "-p", "1", "--retention", "5 weeks"], "error: --retention: invalid duration \"5 weeks\": use a number and a unit, e.g. 500ms, 30s, 5m, 2h, 7d"),
        (["topic", "list", "--output", "yaml"], "error: --output: \"yaml\" is not one of text, json"),
        (["topic", "list", "extra"], "error: unexpected argument 'extra'"),
        (["consume", "t", "--offset", "1", "--from-beginning"], "error: --offset and --from-beginning exclude each other"),
        (["topic"], "error: 'kappactl topic' needs a command"),
    ] as [([String], String)])
    func usageErrorsExitTwoWithTheirMessage(args: [String], message: String) async throws {
        let box = try Sandbox()
        let result = try await box.kappactl(args)
        #expect(result.status == 2)
        #expect(result.stderr.split(separator: "\n").first.map(String.init) == message)
        #expect(result.stderr.contains("USAGE:"))
        #expect(result.stdout.isEmpty)
    }

    @Test func stateThatIsNotADirectoryIsRefused() async throws {
        let box = try Sandbox()
        _ = FileManager.default.createFile(atPath: box.root + "/file", contents: Data("x".utf8))
        let result = try await box.kappactl(["--state", box.root + "/file", "topic", "list"], withState: false)
        #expect(result.status == 1)
        #expect(result.stderr == "error: \(box.root)/file is not a directory; pass a directory with --state or KAPPA_STATE\n")
        try FileManager.default.createDirectory(atPath: box.root + "/other", withIntermediateDirectories: false)
        _ = FileManager.default.createFile(atPath: box.root + "/other/notes.txt", contents: Data("x".utf8))
        let other = try await box.kappactl(["--state", box.root + "/other", "topic", "list"], withState: false)
        #expect(other.status == 1)
        #expect(other.stderr.contains("is not a Kappa state directory"))
    }

    @Test func stateWrittenByANewerKappaIsRefused() async throws {
        let box = try Sandbox()
        try FileManager.default.createDirectory(atPath: box.state, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: box.state + "/kappa.state", contents: Data("{\"layout\": 99}".utf8))
        let result = try await box.kappactl(["topic", "list"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("was written by a newer Kappa (layout 99"))
    }
}

@Suite struct TopicCommandTests {
    @Test func createListDescribeDelete() async throws {
        let box = try Sandbox()
        let created = try await box.kappactl(["topic", "create", "bpi", "--partitions", "3", "--retention", "7d", "--retention-bytes", "1000000"])
        #expect(created.status == 0)
        #expect(created.stdout == "created topic \"bpi\" with 3 partitions\n")
        #expect(try await box.kappactl(["topic", "create", "bpi", "-p", "1"]).stderr == "error: topic \"bpi\" already exists\n")

        let list = try await box.kappactl(["topic", "list"])
        #expect(list.lines == ["TOPIC  PARTITIONS  RETENTION  RETENTION BYTES", "bpi             3  7d                 1000000"])
        let json = try await box.kappactl(["topic", "list", "--output", "json"])
        let parsed = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as! [String: Any]
        let topics = parsed["topics"] as! [[String: Any]]
        #expect(topics.count == 1)
        #expect(topics[0]["name"] as? String == "bpi")
        #expect(topics[0]["partitions"] as? Int == 3)
        #expect(topics[0]["retentionMs"] as? Int == 604_800_000)

        let describe = try await box.kappactl(["topic", "describe", "bpi"])
        #expect(describe.status == 0)
        #expect(describe.lines.count == 5)
        #expect(describe.lines[1] == "PARTITION  EARLIEST  END  RECORDS  BYTES  SEGMENTS")
        #expect(describe.lines[2].split(separator: " ") == ["0", "0", "0", "0", "0", "1"])

        #expect(try await box.kappactl(["topic", "delete", "bpi"]).stdout == "deleted topic \"bpi\"\n")
        let gone = try await box.kappactl(["topic", "describe", "bpi"])
        #expect(gone.status == 3)
        #expect(gone.stderr == "error: topic \"bpi\" does not exist\n")
        #expect(try await box.kappactl(["topic", "list"]).stdout == "no topics\n")
    }

    @Test func badTopicNamesAreRefused() async throws {
        let box = try Sandbox()
        for name in ["a/b", "x;DROP", ".hidden", String(repeating: "a", count: 250)] {
            let result = try await box.kappactl(["topic", "create", name, "-p", "1"])
            #expect(result.status == 1)
            #expect(result.stderr.hasPrefix("error: invalid topic name"))
        }
    }
}

#if Kafka
/// The record and topic commands on Kafka: `kappactl kafka-mock` in a process of its own, the
/// other commands pointed at it with `--log`.
@Suite struct KafkaCommandTests {
    /// `kappactl kafka-mock ARGS` in a process of its own, and the `kafka://` URL it prints.
    static func kafkaMock(_ box: Sandbox, _ args: [String]) async throws -> (Child, String) {
        let mock = try box.start(Executables.kappactl, ["kafka-mock"] + args)
        var url = ""
        do {
            try await WorkflowTests.waitUntil("the mock cluster is up", timeout: 20) {
                url = mock.output().stdout.split(separator: "\n").first.map(String.init) ?? ""
                return url.hasPrefix("kafka://127.0.0.1:")
            }
        } catch {
            kill(mock.process.processIdentifier, SIGKILL)
            throw error
        }
        return (mock, url)
    }

    @Test func produceDescribeAndConsumeThroughKafka() async throws {
        let box = try Sandbox()
        let (mock, url) = try await Self.kafkaMock(box, ["--brokers", "2", "--topic", "t:2"])
        defer { kill(mock.process.processIdentifier, SIGKILL) }
        let lines = (0..<10).map { "{\"key\": \"k\($0 % 3)\", \"value\": {\"n\": \($0)}, \"timestamp\": \(1_000 + $0)}" }.joined(separator: "\n")
        let produced = try await box.kappactl(["--log", url, "produce", "t", "--output", "json"], stdin: lines)
        #expect(produced.status == 0, "\(produced.stderr)")
        let list = try await box.kappactl(["--log", url, "topic", "list"])
        #expect(list.lines.dropFirst().map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) } == [["t", "2", "(brokers)", "(brokers)"]])
        let described = try await box.kappactl(["--log", url, "topic", "describe", "t"])
        #expect(described.lines.first == "topic \"t\": 2 partitions, retention as the Kafka brokers' topic configuration says")
        let consumed = try await box.kappactl(["--log", url, "consume", "t"])
        let records = try consumed.lines.map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        #expect(records.count == 10)
        // Per key, the records keep their order (one partition per key, as Kafka's partitioner says).
        for key in ["k0", "k1", "k2"] {
            let mine = records.filter { $0["key"] as? String == key }
            #expect(Set(mine.map { $0["partition"] as! Int }).count == 1)
            let partition = Murmur2.partition(forKey: Array(key.utf8), partitions: 2)
            #expect(mine.first?["partition"] as? Int == partition)
            #expect(mine.map { ($0["value"] as! [String: Any])["n"] as! Int } == (0..<10).filter { "k\($0 % 3)" == key })
        }
        let beyond = try await box.kappactl(["--log", url, "consume", "t", "-p", "0", "--offset", "99"])
        #expect(beyond.status == 1)
        #expect(beyond.stderr.contains("error: topic \"t\" partition 0: offset 99 is beyond the end offset"))
    }

    /// An archive that ends beyond the log's end holds another topic's records (one of this name
    /// deleted and created again, another cluster): the mirror, a deploy and `archive status`
    /// refuse or flag it instead of serving the old records as the new topic's offsets 0….
    @Test func anArchiveBeyondTheLogsEndIsRefusedNotServed() async throws {
        let box = try Sandbox()
        let archive = box.root + "/archive"
        func lines(_ n: Int, partition: Int) -> String { (0..<n).map { "{\"value\": \($0), \"partition\": \(partition)}" }.joined(separator: "\n") }
        var (mock, url) = try await Self.kafkaMock(box, ["--brokers", "1", "--topic", "bpi:2"])
        #expect(try await box.kappactl(["--log", url, "produce", "bpi"], stdin: lines(10, partition: 0)).status == 0)
        let first = try await box.kappactl(["--log", url, "--archive", archive, "archive", "run", "bpi"])
        #expect(first.stdout == "archived 10 records of \"bpi\"\n", "\(first.stderr)")
        // The cluster replaced by a new one: partition 0 holds 3 records (below its archive's
        // end), partition 1 holds 7 (nothing archived: healthy).
        kill(mock.process.processIdentifier, SIGKILL)
        _ = await mock.finish()
        (mock, url) = try await Self.kafkaMock(box, ["--brokers", "1", "--topic", "bpi:2"])
        defer { kill(mock.process.processIdentifier, SIGKILL) }
        #expect(try await box.kappactl(["--log", url, "produce", "bpi"], stdin: lines(3, partition: 0) + "\n" + lines(7, partition: 1)).status == 0)
        let says = "the archive \(archive)/bpi/0 ends at offset 10, beyond the log's end 3: it holds another topic of this name"
        // The mirror copies the healthy partition, then fails naming the other.
        let mirror = try await box.kappactl(["--log", url, "--archive", archive, "archive", "run", "bpi"])
        #expect(mirror.status == 1 && mirror.stderr.contains(says), "\(mirror.stderr)")
        let deploy = try await box.kappactl(["--log", url, "--archive", archive, "deploy", "-f", WorkflowTests.root + "/Manifests/btc-v1.json"])
        #expect(deploy.status == 1 && deploy.stderr.contains(says), "\(deploy.stderr)")
        let status = try await box.kappactl(["--log", url, "--archive", archive, "archive", "status", "bpi"])
        #expect(status.status == 0 && status.stdout.contains("ARCHIVE BEYOND THE LOG") && status.stdout.contains("ends at offset 10, beyond the log's end 3"), "\(status.stdout)")
        #expect(status.lines.contains { $0.hasPrefix("        1  0…6 ") }, "\(status.stdout)")
        #expect(!status.stdout.contains("records lost"))
    }

    /// The README's tour on `kafka-mock`: `demo produce` into a topic that exists already, and
    /// `topic create` of an existing topic, answer from the metadata (no CreateTopics wait).
    @Test func demoProduceAndTopicCreateOnAnExistingKafkaTopic() async throws {
        let box = try Sandbox()
        let (mock, url) = try await Self.kafkaMock(box, ["--brokers", "1", "--topic", "bpi:3"])
        defer { kill(mock.process.processIdentifier, SIGKILL) }
        // Before, each of these waited 30 s on CreateTopics and failed.
        for _ in 0..<2 {
            let produced = try await box.kappactl(["--log", url, "demo", "produce", "--minutes", "1"])
            #expect(produced.status == 0, "\(produced.stderr)")
            #expect(produced.stdout == "appended 180 ticks of history (1 minutes) to \"bpi\"\n")
        }
        let again = try await box.kappactl(["--log", url, "topic", "create", "bpi", "-p", "3"])
        #expect(again.status == 1)
        #expect(again.stderr == "error: topic \"bpi\" already exists\n")
    }

    /// Where the archive of `aKafkaTopicMirroredThroughAKillReplaysFromZero` is: a directory, and
    /// with the `S3` trait beside `scripts/with-seaweedfs`'s server, a prefix of its own there.
    static var archiveKinds: [String] {
        #if S3
        ProcessInfo.processInfo.environment["KAPPA_TEST_S3"] == nil ? ["directory"] : ["directory", "s3"]
        #else
        ["directory"]
        #endif
    }

    /// A Kafka topic mirrored by `kappactl archive run --follow`, which is killed with SIGKILL
    /// mid-way and restarted, while the brokers drop old records (the mock keeps about 5 MB a
    /// partition); a version deployed afterwards replays from offset 0 across archive and
    /// brokers into the exact table. With S3, the JobHost has no archive of its own on disk.
    @Test(arguments: archiveKinds)
    func aKafkaTopicMirroredThroughAKillReplaysFromZero(_ archiveKind: String) async throws {
        let kafka = try KafkaMockCluster()
        try kafka.createTopic("bpi", partitions: 1)
        let box = try Sandbox(log: kafka.url)
        var archive = box.root + "/archive"
        if archiveKind == "s3", let test = ProcessInfo.processInfo.environment["KAPPA_TEST_S3"] {
            let parts = test.split(separator: "?", maxSplits: 1)
            archive = "\(parts[0])/mirror-\(UUID().uuidString.prefix(8))" + (parts.count > 1 ? "?\(parts[1])" : "")
        }
        let mirrorArgs = ["--state", box.state, "--log", kafka.url, "--archive", archive, "archive", "run", "bpi", "--follow", "--interval", "50ms"]
        var mirror = try box.start(Executables.kappactl, mirrorArgs)
        defer { kill(mirror.process.processIdentifier, SIGKILL) }
        for chunk in 0..<8 {
            try await Self.produceChunk(box, chunk)
            try await Task.sleep(for: .milliseconds(300))
            if chunk == 3 {  // the mirror killed at some instant, and started again
                kill(mirror.process.processIdentifier, SIGKILL)
                _ = await mirror.finish()
                mirror = try box.start(Executables.kappactl, mirrorArgs)
            }
        }
        let withArchive = ["--archive", archive]
        try await WorkflowTests.waitUntil("the archive has every record") { try await Self.archivedEnd(box, withArchive) == 48_000 }
        let status = try await box.kappactl(withArchive + ["archive", "status", "bpi"])
        #expect(status.lines.dropFirst().first?.hasSuffix("complete") == true, "\(status.stdout)")
        #expect(status.stdout.contains(" 0…47999 "))
        let live = try await KafkaLog(settings: KafkaSettings(url: kafka.url, passthrough: []), logger: EventLogger(format: .text) { _ in }).offsets(topic: "bpi")
        #expect(live[0].earliest > 0)  // the brokers dropped the oldest records

        let manifest = box.root + "/exact.json"
        try StoreFixtureText.exact(batch: 2000).write(toFile: manifest, atomically: true, encoding: .utf8)
        let host = try box.start(Executables.jobHost, box.hostArguments + withArchive)
        defer { kill(host.process.processIdentifier, SIGKILL) }
        let deploy = try await box.kappactl(withArchive + ["deploy", "-f", manifest, "--wait", "--timeout", "60s"])
        #expect(deploy.status == 0, "\(deploy.stderr)\nJobHost: \(host.output().stderr.suffix(3000))")
        let result = try await box.kappactl(["query", "t", "SELECT count(*), sum(samples), sum(cents) FROM ticks", "--output", "json"])
        let row = ((try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as! [String: Any])["rows"] as! [[String: Any]])[0]
        #expect(row["count(*)"] as? Int == 800)  // 48,000 seconds: 800 minutes of EUR
        #expect(row["sum(samples)"] as? Int == 48_000)
        #expect(row["sum(cents)"] as? Int == (0..<48_000).reduce(0) { $0 + (1000 + $1 % 97) * 100 + 25 })
        if archiveKind == "s3" {  // all of it in the bucket: nothing on disk took the URL for a path
            #expect(!FileSystem.exists(box.root + "/archive") && !FileSystem.exists(box.root + "/s3:"))
            #expect(!FileSystem.exists(FileManager.default.currentDirectoryPath + "/s3:"))
        }
    }

    /// The archive location of a test: a directory in the sandbox, or a fresh prefix of the test
    /// bucket.
    static func archiveLocation(_ kind: String, _ box: Sandbox) -> String {
        if kind == "s3", let test = ProcessInfo.processInfo.environment["KAPPA_TEST_S3"] {
            let parts = test.split(separator: "?", maxSplits: 1)
            return "\(parts[0])/mirror-\(UUID().uuidString.prefix(8))" + (parts.count > 1 ? "?\(parts[1])" : "")
        }
        return box.root + "/archive"
    }

    /// `JobHost --mirror`: two JobHosts asked to mirror one topic; exactly one holds the mirror
    /// lease and mirrors while the brokers drop the oldest records; it is killed with SIGKILL
    /// and the other takes the lease over (a higher epoch, written into the manifests) and goes
    /// on without a gap or a double; then a third JobHost, which mirrors nothing and has no
    /// archive of its own on disk with S3, replays a version from offset 0 into the exact table.
    @Test(arguments: hostSetups)
    func aMirrorHostKilledIsTakenOverAndAThirdHostReplaysFromZero(_ setup: String) async throws {
        let kafka = try KafkaMockCluster()
        try kafka.createTopic("bpi", partitions: 1)
        let archiveKind = setup == "directory" ? "directory" : "s3"
        // "s3+postgres": as on three machines, each JobHost has a state directory of its own and
        // they share the catalog and the tables in PostgreSQL, the log in Kafka and the archive
        // in the bucket. Otherwise the hosts share the sandbox's SQLite state directory.
        var catalog: String? = nil
        #if Postgres
        if setup == "s3+postgres" { catalog = try await WorkflowTests.postgresDatabase() }
        #endif
        let box = try Sandbox(catalog: catalog, log: kafka.url)
        func hostArguments(_ name: String) -> [String] {
            catalog == nil ? box.hostArguments : ["--state", box.root + "/host-" + name] + box.backendArguments
        }
        let archive = Self.archiveLocation(archiveKind, box)
        let withArchive = ["--archive", archive]
        let mirrorFlags = withArchive + ["--mirror", "bpi", "--mirror-interval", "50ms", "--lease-ttl", "1s"]
        let a = try box.start(Executables.jobHost, hostArguments("a") + mirrorFlags)
        let b = try box.start(Executables.jobHost, hostArguments("b") + mirrorFlags)
        defer { kill(a.process.processIdentifier, SIGKILL); kill(b.process.processIdentifier, SIGKILL) }
        func archivedEnd() async throws -> Int? { try await Self.archivedEnd(box, withArchive) }
        func produce(_ chunk: Int) async throws { try await Self.produceChunk(box, chunk) }
        for chunk in 0..<4 { try await produce(chunk) }
        try await WorkflowTests.waitUntil("the first mirror has archived 24,000 records", timeout: 60) { try await archivedEnd() == 24_000 }
        let holders = [a, b].filter { $0.output().stderr.contains("mirror lease taken topic=bpi") }
        #expect(holders.count == 1, "A: \(a.output().stderr.suffix(1500))\nB: \(b.output().stderr.suffix(1500))")
        let (victim, survivor) = holders.first?.process.processIdentifier == b.process.processIdentifier ? (b, a) : (a, b)
        let status = try await WorkflowTests.status(box, nil)
        #expect(status.leases.filter { $0.key == LeaseKey.mirror(topic: "bpi") }.map(\.owner).count == 1)
        kill(victim.process.processIdentifier, SIGKILL)
        _ = await victim.finish()
        for chunk in 4..<8 { try await produce(chunk) }
        try await WorkflowTests.waitUntil("the second mirror has archived all 48,000 records", timeout: 60) { try await archivedEnd() == 48_000 }
        #expect(survivor.output().stderr.contains("mirror lease taken topic=bpi epoch=2"), "\(survivor.output().stderr.suffix(2000))")
        let text = try await box.kappactl(withArchive + ["archive", "status", "bpi"])
        #expect(text.lines.dropFirst().first?.hasSuffix("complete") == true, "\(text.stdout)")
        let live = try await KafkaLog(settings: KafkaSettings(url: kafka.url, passthrough: []), logger: EventLogger(format: .text) { _ in }).offsets(topic: "bpi")
        #expect(live[0].earliest > 0)  // the brokers dropped the oldest records
        kill(survivor.process.processIdentifier, SIGTERM)
        #expect(await survivor.finish().status == 0)

        // Host C: no --mirror, and with "s3+postgres" a state directory of its own that never
        // held any of the archive.
        let manifest = box.root + "/exact.json"
        try StoreFixtureText.exact(batch: 2000).write(toFile: manifest, atomically: true, encoding: .utf8)
        let c = try box.start(Executables.jobHost, hostArguments("c") + withArchive)
        defer { kill(c.process.processIdentifier, SIGKILL) }
        let deploy = try await box.kappactl(withArchive + ["deploy", "-f", manifest, "--wait", "--timeout", "60s"])
        #expect(deploy.status == 0, "\(deploy.stderr)\nJobHost C: \(c.output().stderr.suffix(3000))")
        let result = try await box.kappactl(["query", "t", "SELECT CAST(sum(samples) AS BIGINT) AS samples, CAST(sum(cents) AS BIGINT) AS cents FROM ticks", "--output", "json"])
        let row = ((try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as! [String: Any])["rows"] as! [[String: Any]])[0]
        #expect(row["samples"] as? Int == 48_000)
        #expect(row["cents"] as? Int == (0..<48_000).reduce(0) { $0 + (1000 + $1 % 97) * 100 + 25 })
        if archiveKind == "s3" { #expect(!FileSystem.exists(box.root + "/archive")) }
        if catalog != nil {  // C's work was its own: A and B are gone, and C's directory has no segment
            #expect(c.output().stderr.contains("worker started job=t version=1 partition=0"), "\(c.output().stderr.suffix(2000))")
            let files = (FileManager.default.enumerator(atPath: box.root + "/host-c")?.allObjects as? [String]) ?? []
            #expect(!files.contains { $0.hasSuffix(".seg") || $0.hasSuffix("manifest.json") }, "\(files)")
        }
    }

    /// Where partition 0 of bpi's archive ends, as `kappactl archive status` says.
    static func archivedEnd(_ box: Sandbox, _ withArchive: [String]) async throws -> Int? {
        let status = try await box.kappactl(withArchive + ["archive", "status", "bpi", "--output", "json"])
        let p = (try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as! [String: Any])["partitions"] as! [[String: Any]]
        return (p[0]["archived"] as! [[String: Any]]).last?["end"] as? Int
    }

    /// Chunk `chunk` of 6,000 EUR ticks a second apart into bpi (about 150 bytes each: the mock
    /// drops the oldest after some 5 MB).
    static func produceChunk(_ box: Sandbox, _ chunk: Int) async throws {
        let pad = String(repeating: "x", count: 60)
        let lines = (0..<6000).map { i -> String in
            let n = chunk * 6000 + i
            return "{\"value\": {\"currency\": \"EUR\", \"ts\": \(28_000_000 * 60_000 + n * 1000), \"rate\": \(1000 + n % 97).25, \"pad\": \"\(pad)\"}}"
        }.joined(separator: "\n")
        let produced = try await box.kappactl(["produce", "bpi"], stdin: lines)
        #expect(produced.status == 0, "chunk \(chunk): \(produced.stderr.suffix(2000))")
    }

    /// A TCP proxy on loopback in front of the S3 server: killed, the object store is down for
    /// whoever reaches it through the proxy (connections refused, those open reset); started
    /// again on the same port, it is back.
    static let proxyScript = """
        import asyncio, sys
        listen, target = int(sys.argv[1]), int(sys.argv[2])
        async def pipe(r, w):
            try:
                while True:
                    b = await r.read(65536)
                    if not b: break
                    w.write(b); await w.drain()
            except Exception: pass
            finally:
                try: w.close()
                except Exception: pass
        async def handle(r, w):
            try: tr, tw = await asyncio.open_connection('127.0.0.1', target)
            except Exception: w.close(); return
            await asyncio.gather(pipe(r, tw), pipe(tr, w))
        async def main():
            server = await asyncio.start_server(handle, '127.0.0.1', listen, reuse_address=True)
            print(server.sockets[0].getsockname()[1], flush=True)
            await server.serve_forever()
        asyncio.run(main())
        """

    /// JobHost mirrors a topic into S3 and replays a version from offset 0 through an object
    /// store that goes down (its proxy killed): it stays up, `kappactl status` names the mirror
    /// and the partition that fail and when they are retried, the version is not failed, and
    /// once the store is back both go on by themselves: the table exact, the problems gone.
    @Test(.enabled(if: archiveKinds.contains("s3"), "needs the S3 server scripts/with-seaweedfs starts"))
    func aMirrorAndAReplayRideOutAnObjectStoreOutage() async throws {
        let kafka = try KafkaMockCluster()
        try kafka.createTopic("bpi", partitions: 1)
        let box = try Sandbox(log: kafka.url)
        let archive = Self.archiveLocation("s3", box)
        let endpoint = try #require(archive.firstMatch(of: /endpoint=http:\/\/127\.0\.0\.1:(\d+)/))
        func startProxy(_ port: Int) async throws -> (Child, Int) {
            let proxy = try box.start("/usr/bin/env", ["python3", "-c", Self.proxyScript, "\(port)", String(endpoint.1)])
            var bound = 0
            try await WorkflowTests.waitUntil("the proxy listens", timeout: 20) {
                bound = Int(proxy.output().stdout.split(separator: "\n").first ?? "") ?? 0
                return bound > 0
            }
            return (proxy, bound)
        }
        var (proxy, port) = try await startProxy(0)
        defer { kill(proxy.process.processIdentifier, SIGKILL) }
        let proxied = archive.replacingOccurrences(of: "127.0.0.1:\(endpoint.1)", with: "127.0.0.1:\(port)")
        let host = try box.start(Executables.jobHost, box.hostArguments + ["--archive", proxied, "--mirror", "bpi", "--mirror-interval", "50ms"])
        defer { kill(host.process.processIdentifier, SIGKILL) }
        let withArchive = ["--archive", archive]  // kappactl reaches the store directly
        func archivedEnd() async throws -> Int? { try await Self.archivedEnd(box, withArchive) }
        func produce(_ chunk: Int) async throws { try await Self.produceChunk(box, chunk) }
        for chunk in 0..<8 { try await produce(chunk) }
        try await WorkflowTests.waitUntil("the mirror has archived 48,000 records", timeout: 60) { try await archivedEnd() == 48_000 }
        let live = try await KafkaLog(settings: KafkaSettings(url: kafka.url, passthrough: []), logger: EventLogger(format: .text) { _ in }).offsets(topic: "bpi")
        #expect(live[0].earliest > 0)  // offset 0 is only in the archive now

        // The store goes down: the mirror fails, and so does the replay of a version deployed now.
        kill(proxy.process.processIdentifier, SIGKILL)
        _ = await proxy.finish()
        try await produce(8)
        let manifest = box.root + "/exact.json"
        try StoreFixtureText.exact(batch: 2000).write(toFile: manifest, atomically: true, encoding: .utf8)
        let deploy = try await box.kappactl(withArchive + ["deploy", "-f", manifest])
        #expect(deploy.status == 0, "\(deploy.stderr)")
        var problems: [HostProblem] = []
        try await WorkflowTests.waitUntil("status shows the mirror and the replay failing", timeout: 60) {
            problems = try await WorkflowTests.status(box, nil).problems ?? []
            return Set(problems.map(\.subject)) == ["mirror of bpi", "t v1 partition 0"]
        }
        #expect(problems.allSatisfy { $0.host?.hasPrefix("JobHost@") == true && $0.retryAt != nil && $0.error.contains("127.0.0.1:\(port)") }, "\(problems)")
        let text = try await box.kappactl(["status"])
        #expect(text.stdout.contains("  version 1 partition 0 on JobHost@"), "\(text.stdout)")
        #expect(text.stdout.contains(": mirror of bpi failing for "), "\(text.stdout)")
        #expect(!text.stdout.contains(ProcessInfo.processInfo.environment["AWS_SECRET_ACCESS_KEY"] ?? "no secret"))
        let version = try await WorkflowTests.status(box, "t").jobs[0].versions[0]
        #expect(version.state == .replaying && (version.processed ?? 0) == 0, "\(version)")
        #expect(host.process.isRunning)

        // Back: both go on by themselves.
        (proxy, _) = try await startProxy(port)
        try await WorkflowTests.waitUntil("the version serves", timeout: 90) { try await WorkflowTests.status(box, "t").jobs[0].serving == 1 }
        try await WorkflowTests.waitUntil("the mirror has archived 54,000 records", timeout: 60) { try await archivedEnd() == 54_000 }
        try await WorkflowTests.waitUntil("status shows no problem", timeout: 30) { try await WorkflowTests.status(box, nil).problems == nil }
        let result = try await box.kappactl(["query", "t", "SELECT sum(samples), sum(cents) FROM ticks", "--output", "json"])
        let row = ((try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as! [String: Any])["rows"] as! [[String: Any]])[0]
        #expect(row["sum(samples)"] as? Int == 54_000)
        #expect(row["sum(cents)"] as? Int == (0..<54_000).reduce(0) { $0 + (1000 + $1 % 97) * 100 + 25 })
        let log = host.output().stderr
        #expect(log.contains("mirror recovered topic=bpi") && log.contains("worker recovered job=t version=1 partition=0"), "\(log.suffix(3000))")
        #expect(log.components(separatedBy: "worker stopped on an error; retrying").count - 1 <= 2, "\(log.suffix(3000))")  // once per distinct error
        withExtendedLifetime(kafka) {}
    }

    /// Where the hosts of `aMirrorHostKilledIsTakenOverAndAThirdHostReplaysFromZero` keep their
    /// state: one SQLite directory shared, or (PostgreSQL and S3) a directory each.
    static var hostSetups: [String] {
        var setups = archiveKinds
        #if Postgres
        if setups.contains("s3"), ProcessInfo.processInfo.environment["KAPPA_TEST_POSTGRES"] != nil { setups.append("s3+postgres") }
        #endif
        return setups
    }

    /// The retention check reads Kafka's low watermarks (the mock keeps about 5 MB a partition).
    @Test func aDeployOverAKafkaTopicThatLostOffsetZeroIsRefused() async throws {
        let kafka = try KafkaMockCluster()
        try kafka.createTopic("bpi", partitions: 1)
        let box = try Sandbox(log: kafka.url)
        let pad = String(repeating: "x", count: 80)
        let lines = (0..<70_000).map { "{\"value\": {\"currency\": \"EUR\", \"ts\": \($0), \"rate\": 1.5, \"pad\": \"\(pad)\"}}" }.joined(separator: "\n")
        #expect(try await box.kappactl(["produce", "bpi"], stdin: lines).status == 0)
        let earliest = try await KafkaLog(settings: KafkaSettings(url: kafka.url, passthrough: []), logger: EventLogger(format: .text) { _ in })
            .offsets(topic: "bpi")[0].earliest
        #expect(earliest > 0)
        let refused = try await box.kappactl(["deploy", "-f", WorkflowTests.root + "/Manifests/btc-v1.json"])
        #expect(refused.status == 4)
        #expect(refused.stderr.hasPrefix("error: topic \"bpi\" no longer holds offset 0 of every partition (retention deleted it): partition 0 starts at offset \(earliest)."))
        withExtendedLifetime(kafka) {}
    }
}
#endif

/// The archive from the command line: a topic with short retention and an archive; JobHost
/// archives and applies retention; a version deployed afterwards replays from offset 0 across
/// archive and log (JobHost killed with SIGKILL during it) into the exact table, and its
/// progress counts the archived records.
@Suite struct ArchiveCommandTests {
    @Test func aReplayFromZeroReadsTheArchiveBeyondRetention() async throws {
        let box = try Sandbox()
        let archive = box.root + "/archive"
        try await box.kappactl(["topic", "create", "bpi", "-p", "3", "--retention-bytes", "8192", "--segment-bytes", "4096", "--archive", archive])
        for chunk in 0..<5 {
            #expect(try await box.kappactl(["produce", "bpi"], stdin: WorkflowTests.feedLines(seed: 8, startMinute: 28_000_000 + Int64(chunk) * 10, seconds: 600)).status == 0)
        }
        let host = try box.start(Executables.jobHost, ["--state", box.state, "--retention-interval", "100ms"])
        defer { kill(host.process.processIdentifier, SIGKILL) }
        try await WorkflowTests.waitUntil("retention deleted segments (after archiving them)") {
            let live = try JSONSerialization.jsonObject(with: Data(try await box.kappactl(["archive", "status", "bpi", "--output", "json"]).stdout.utf8)) as! [String: Any]
            return (live["partitions"] as! [[String: Any]]).contains { ($0["liveEarliest"] as! Int) > 0 }
        }
        let status = try await box.kappactl(["archive", "status", "bpi"])
        #expect(status.status == 0)
        #expect(status.lines.first?.hasPrefix("PARTITION  ARCHIVED") == true)
        #expect(!status.stdout.contains("GAP"))
        #expect(status.lines.dropFirst().allSatisfy { $0.hasSuffix("complete") })

        kill(host.process.processIdentifier, SIGKILL)
        _ = await host.finish()

        let manifest = box.root + "/exact.json"
        try StoreFixtureText.exact(batch: 10).write(toFile: manifest, atomically: true, encoding: .utf8)
        let deploy = try await box.kappactl(["deploy", "-f", manifest])
        #expect(deploy.status == 0, "\(deploy.stderr)")  // no retention refusal: archive + log hold offset 0
        // JobHost killed with SIGKILL while the replay crosses from the archive to the log.
        var midReplay = 0
        for _ in 0..<4 {
            let h = try box.start(Executables.jobHost, ["--state", box.state])
            try await CrashTests.sleepIntoTheReplay(box, job: "t", millis: 0...200)
            kill(h.process.processIdentifier, SIGKILL)
            _ = await h.finish()
            if let done = try await WorkflowTests.status(box, "t").jobs[0].versions[0].processed, done > 0, done < 9000 { midReplay += 1 }
        }
        #expect(midReplay >= 1)
        let last = try box.start(Executables.jobHost, ["--state", box.state])
        defer { kill(last.process.processIdentifier, SIGKILL) }
        try await WorkflowTests.waitUntil("the version serves") { try await WorkflowTests.status(box, "t").jobs[0].serving == 1 }
        let version = try await WorkflowTests.status(box, "t").jobs[0].versions[0]
        #expect(version.total == 9000 && version.processed == 9000)
        try await CrashTests.expectExactTable(box)  // computed from `kappactl consume`, which reads the archive too
        kill(last.process.processIdentifier, SIGTERM)
        #expect(await last.finish().status == 0)
    }
}

/// `kappactl archive prune`: objects no manifest names go once older than the grace, and
/// nothing else; a dry run deletes nothing; a grace under a minute is refused.
@Suite struct ArchivePruneCommandTests {
    /// Sets the file's modification time `seconds` ago.
    static func age(_ path: String, seconds: Int) {
        let then = timespec(tv_sec: time(nil) - seconds, tv_nsec: 0)
        var times = [then, then]
        #expect(utimensat(AT_FDCWD, path, &times, 0) == 0, "utimensat \(path)")
    }

    @Test func pruneDeletesUnrecordedObjectsOnceOlderAndNothingElse() async throws {
        let box = try Sandbox()
        let archive = box.root + "/archive"
        try await box.kappactl(["topic", "create", "bpi", "-p", "1", "--segment-bytes", "4096", "--archive", archive])
        for chunk in 0..<3 {  // each append closes the segment before it
            #expect(try await box.kappactl(["produce", "bpi"], stdin: WorkflowTests.feedLines(seed: 8, startMinute: 28_000_000 + Int64(chunk) * 10, seconds: 600)).status == 0)
        }
        #expect(try await box.kappactl(["archive", "run", "bpi"]).status == 0)
        let folder = archive + "/bpi/0"
        let recorded = try FileSystem.list(folder).filter { $0.hasSuffix(".seg") }
        #expect(!recorded.isEmpty)
        for name in recorded { Self.age(folder + "/" + name, seconds: 3 * 86_400) }  // named by the manifest: kept, however old
        let orphan = "00000000000000000000-abc.seg", cutOff = "00000000000000009000.seg.tmp", young = "00000000000000009000-ff.seg"
        for name in [orphan, cutOff, young, "notes.txt"] { try FileSystem.writeAtomically(Array("leftover".utf8), to: folder + "/" + name) }
        for name in [orphan, cutOff, "notes.txt"] { Self.age(folder + "/" + name, seconds: 2 * 86_400) }

        let refused = try await box.kappactl(["archive", "prune", "bpi", "--older-than", "59m"])
        #expect(refused.status == 2 && refused.stderr.contains("--older-than must be at least 1h"), "\(refused.stderr)")

        let dry = try await box.kappactl(["archive", "prune", "bpi", "--dry-run", "--output", "json"])
        #expect(dry.stdout.contains(#""wouldDelete""#) && !dry.stdout.contains(#""deleted""#), "\(dry.stdout)")
        let dryText = try await box.kappactl(["archive", "prune", "bpi", "--dry-run"])
        #expect(dryText.status == 0, "\(dryText.stderr)")
        #expect(dryText.stdout.contains("would delete 2 (0.0 MiB) objects that no manifest of \"bpi\" names, written over 1d ago; kept 1 (0.0 MiB) younger ones"), "\(dryText.stdout)")
        #expect(FileSystem.exists(folder + "/" + orphan))

        let pruned = try await box.kappactl(["archive", "prune", "bpi", "--output", "json"])
        #expect(pruned.status == 0, "\(pruned.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(pruned.stdout.utf8)) as? [String: Any])
        let partitions = try #require(report["partitions"] as? [[String: Any]])
        #expect((partitions[0]["deleted"] as? [[String: Any]])?.compactMap { $0["key"] as? String }.sorted() == ["bpi/0/" + orphan, "bpi/0/" + cutOff].sorted())
        #expect((partitions[0]["kept"] as? [[String: Any]])?.compactMap { $0["key"] as? String } == ["bpi/0/" + young])
        #expect(!FileSystem.exists(folder + "/" + orphan) && !FileSystem.exists(folder + "/" + cutOff))
        #expect(FileSystem.exists(folder + "/" + young) && FileSystem.exists(folder + "/notes.txt"))
        #expect(recorded.allSatisfy { FileSystem.exists(folder + "/" + $0) })
        // Again: nothing more goes.
        #expect(try await box.kappactl(["archive", "prune", "bpi"]).stdout.contains("deleted 0 (0.0 MiB) objects"))
        // Its manifest gone, the partition is not pruned: said, exit 1, objects kept.
        for name in recorded { Self.age(folder + "/" + name, seconds: 3 * 86_400) }
        try FileSystem.removeFile(folder + "/manifest.json")
        let noManifest = try await box.kappactl(["archive", "prune", "bpi"])
        #expect(noManifest.status == 1 && noManifest.stdout.contains("NOT PRUNED"), "\(noManifest.stdout)")
        #expect(noManifest.stderr.contains("partition 0 not pruned: topic \"bpi\" partition 0 has archived objects but no manifest"), "\(noManifest.stderr)")
        #expect(recorded.allSatisfy { FileSystem.exists(folder + "/" + $0) })
    }

    /// A topic deleted and created again under its name with the same archive: the old topic's
    /// archive would stand for the new one's offsets 0… (found by the outside attack: `topic
    /// check` said sound, and `archive run` never copied the new records below the old end).
    @Test func aTopicCreatedAgainOverItsOldArchiveIsRefused() async throws {
        let box = try Sandbox()
        let archive = box.root + "/archive"
        try await box.kappactl(["topic", "create", "t2", "-p", "1", "--segment-bytes", "4096", "--archive", archive])
        for chunk in 0..<2 {
            #expect(try await box.kappactl(["produce", "t2"], stdin: WorkflowTests.feedLines(seed: 8, startMinute: 28_000_000 + Int64(chunk) * 10, seconds: 300)).status == 0)
        }
        #expect(try await box.kappactl(["archive", "run", "t2"]).status == 0)
        #expect(FileSystem.exists(archive + "/t2/0/manifest.json"))
        #expect(try await box.kappactl(["topic", "delete", "t2"]).status == 0)
        let again = try await box.kappactl(["topic", "create", "t2", "-p", "1", "--archive", archive])
        #expect(again.status == 1)
        #expect(again.stderr.contains("its archive \(archive) already holds \(archive)/t2 (partitions 0), the archive of a topic \"t2\" deleted before"), "\(again.stderr)")
        #expect(try await box.kappactl(["topic", "list"]).stdout.contains("t2") == false)
        // Another archive, or the old one moved away: fine.
        #expect(try await box.kappactl(["topic", "create", "t2", "-p", "1", "--archive", box.root + "/archive-2"]).status == 0)
    }

    /// Two state directories whose topics of one name share an archive, both created before
    /// either archived (so `topic create` could not tell): the second one's segments are never
    /// taken for archived because the first's have the same offsets (found by the outside
    /// attack: the second topic served the first's records for offsets 0…59, `topic check`
    /// said sound); its archiving, its reads and `topic check` fail naming the other incarnation.
    @Test func anotherIncarnationsArchiveIsNeverTakenForThisTopics() async throws {
        let box = try Sandbox()
        let archive = box.root + "/archive"
        let a = ["--state", box.root + "/a"], b = ["--state", box.root + "/b"]
        func run(_ state: [String], _ args: [String], stdin: String = "") async throws -> RunResult {
            try await box.kappactl(state + args, stdin: stdin, withState: false)
        }
        for state in [a, b] { #expect(try await run(state, ["topic", "create", "t", "-p", "1", "--segment-bytes", "1024", "--archive", archive]).status == 0) }
        for (state, text) in [(a, "AAAA"), (b, "BBBB")] {
            for _ in 0..<4 {  // each append closes the segment before it
                #expect(try await run(state, ["produce", "t"], stdin: (0..<20).map { _ in "{\"valueText\": \"\(text)\"}" }.joined(separator: "\n")).status == 0)
            }
        }
        #expect(try await run(a, ["archive", "run", "t"]).status == 0)
        let second = try await run(b, ["archive", "run", "t"])
        #expect(second.status == 1 && second.stderr.contains("lists the files of another topic named \"t\" (incarnation"), "\(second.stderr)")
        let check = try await run(b, ["topic", "check", "t"])
        #expect(check.status == 1 && check.stdout.contains("another topic named"), "\(check.stdout)")
        // B's reads refuse the archive, naming it, rather than serve A's records as B's.
        let consumed = try await run(b, ["consume", "t", "--from-beginning", "--format", "hex"])
        #expect(consumed.status == 1 && consumed.stderr.contains("another topic named"), "\(consumed.stderr)")
        #expect(!consumed.stdout.contains("41414141"))
    }
}
