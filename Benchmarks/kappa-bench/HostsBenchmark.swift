#if Postgres && Kafka
import Foundation
import KappaCore

#if canImport(Glibc)
import Glibc
#endif

/// A replay with one JobHost and with two, sharing one PostgreSQL catalog and one Kafka log
/// (librdkafka's mock cluster in this process; the server from KAPPA_TEST_POSTGRES): the demo's
/// btc v2 (typed) over 8 partitions, from `deploy` to caught up, each round with a topic and a
/// job of its own. Beside each figure, the CPU time every process spent in it (JobHosts, the
/// PostgreSQL server's processes, this process's mock brokers) against the machine's cores:
/// where the limit is when two hosts are not faster.
struct HostsBenchmark {
    var url: String
    var perPartition: Int
    static let partitions = 8

    func run() async throws {
        let (kappactl, jobHost) = try siblingExecutables()
        let root = try FileSystem.makeTemporaryDirectory(prefix: "kappa-bench-hosts")
        defer { try? FileSystem.removeTree(root) }
        let cluster = try KafkaMockCluster(brokers: 1)
        let log = try KafkaLog(settings: KafkaSettings(url: cluster.url, passthrough: []), logger: EventLogger(format: .text) { _ in })
        let total = perPartition * Self.partitions
        let cores = ProcessInfo.processInfo.activeProcessorCount
        print("kappa-bench hosts: the demo's btc v2 (typed) over \(Render.grouped(Int64(total))) records in \(Self.partitions) partitions, Kafka (mock) into PostgreSQL, \(cores) cores")
        let child = Children(root: root)
        let backends = ["--catalog", url, "--log", cluster.url]
        let tag = UInt32.random(in: 0...UInt32.max)
        var results: [(hosts: Int, seconds: Double, cpu: CPUTimes)] = []
        for hosts in ProcessInfo.processInfo.environment["KAPPA_BENCH_HOSTS"].map({ $0.split(separator: ",").compactMap { Int($0) } }) ?? [1, 2] {
            let topic = "bpi\(hosts)", job = "btc\(hosts)_\(tag)"
            try cluster.createTopic(topic, partitions: Self.partitions)
            let ticks = BPIFeed(seed: UInt64(hosts), start: 1_700_000_000_000).ticks(seconds: (total + 2) / 3).prefix(total)
            let records = ticks.enumerated().map { i, tick in var r = tick.record; r.partition = i % Self.partitions; return r }
            for i in stride(from: 0, to: records.count, by: 10_000) {
                _ = try await log.append(topic: topic, records: Array(records[i..<min(i + 10_000, records.count)]))
            }
            let started = (0..<hosts).map { h in
                Result { try child.spawn(jobHost, ["--state", root + "/host-\(hosts)-\(h)", "--lease-ttl", "5s"] + backends,
                                         output: root + "/jobhost-\(hosts)-\(h).log") }
            }
            let processes = try started.map { try $0.get() }
            defer { for p in processes { p.signal(SIGKILL); _ = p.waitUntilExit() } }
            try await waitUntil("\(hosts) JobHost(s) up", timeout: 60) {
                let status = try child.run(kappactl, backends + ["status", "--output", "json"])
                let json = try JSONSerialization.jsonObject(with: Data(status.utf8)) as? [String: Any]
                return (json?["hosts"] as? [Any])?.count ?? 0 >= hosts
            }
            let manifest = DemoManifests.v2
                .replacingOccurrences(of: #""topic": "bpi""#, with: "\"topic\": \"\(topic)\"")
                .replacingOccurrences(of: #""job": "btc""#, with: "\"job\": \"\(job)\"")
                .replacingOccurrences(of: #""table": "btc_prices""#, with: "\"table\": \"\(job)_prices\"")
            try Array(manifest.utf8).write(to: root + "/\(job).json")
            let before = CPUTimes.now(jobHosts: processes.map(\.processIdentifier))
            let clock = ContinuousClock.now
            _ = try child.run(kappactl, backends + ["deploy", "-f", root + "/\(job).json"])
            try await waitUntil("\(job) caught up", timeout: 1800) {
                // A first version serves as soon as it has caught up.
                let status = try child.run(kappactl, backends + ["status", job, "--output", "json"])
                return status.contains("\"state\":\"caughtUp\"") || status.contains("\"state\":\"serving\"")
            }
            let took = seconds(since: clock)
            let cpu = CPUTimes.now(jobHosts: processes.map(\.processIdentifier)).minus(before)
            let status = try child.run(kappactl, backends + ["status", job, "--output", "json"])
            precondition(status.contains("\"processed\":\(total)"), "\(job): not all \(total) records processed: \(status.prefix(400))")
            let workers = (0..<hosts).map { h in
                ((try? String(contentsOfFile: root + "/jobhost-\(hosts)-\(h).log", encoding: .utf8)) ?? "")
                    .components(separatedBy: "worker started job=\(job)").count - 1
            }
            print("\(hosts) JobHost(s): \(fmt(took, 2)) s; workers started per host \(workers)")
            results.append((hosts, took, cpu))
        }
        withExtendedLifetime(cluster) {}

        print("")
        print("JobHosts  records/s       x one   CPU s: JobHosts  PostgreSQL  this process (mock)   busy (of \(cores) cores)")
        let one = results[0].seconds
        for r in results {
            let busy = (r.cpu.jobHosts + r.cpu.postgres + r.cpu.own) / (r.seconds * Double(cores))
            print("\(r.hosts)".leftPadded(8) + fmt(Double(total) / r.seconds).leftPadded(11) + fmt(one / r.seconds, 2).leftPadded(12)
                  + fmt(r.cpu.jobHosts, 2).leftPadded(18) + fmt(r.cpu.postgres, 2).leftPadded(12) + fmt(r.cpu.own, 2).leftPadded(21)
                  + "\(fmt(busy * 100, 0))%".leftPadded(12))
        }
        if let two = results.first(where: { $0.hosts == 2 }), results[0].hosts == 1 {
            print("two JobHosts / one                      \(fmt(one / two.seconds, 2)) x  (target >= 1.6)")
        }
    }

    private func waitUntil(_ what: String, timeout: Double, _ done: () throws -> Bool) async throws {
        let start = ContinuousClock.now
        while try !done() {
            guard seconds(since: start) < timeout else { throw LogError(.io, "kappa-bench hosts: \(what): not within \(Int(timeout)) s") }
            try await Task.sleep(for: .milliseconds(100))
        }
    }
}

/// CPU seconds (user + system) from /proc: the JobHosts', every `postgres` process's, this one's.
struct CPUTimes {
    var jobHosts: Double
    var postgres: Double
    var own: Double

    static func now(jobHosts: [Int32]) -> CPUTimes {
        var postgres = 0.0
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry), (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?.hasPrefix("postgres") == true else { continue }
            postgres += seconds(pid)
        }
        return CPUTimes(jobHosts: jobHosts.map(seconds).reduce(0, +), postgres: postgres, own: seconds(getpid()))
    }

    func minus(_ other: CPUTimes) -> CPUTimes {
        CPUTimes(jobHosts: jobHosts - other.jobHosts, postgres: postgres - other.postgres, own: own - other.own)
    }

    /// utime + stime of /proc/PID/stat (fields 14 and 15, after the parenthesised name).
    static func seconds(_ pid: Int32) -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}
#endif
