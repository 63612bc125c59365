import Foundation

/// JobHost's HTTP endpoint: `/metrics` (Prometheus), `/api/status` (the JSON of `kappactl status
/// --output json`), `/api/jobs/JOB/history`, `/api/jobs/JOB/lag`, `/api/jobs/JOB/rows` (the
/// serving view, for the page's chart) and `/` (the live page). Every answer is built from the
/// catalog, the log's offsets and this host's counters; nothing here waits on the controller.
public struct Observability: Sendable {
    public var op: Operator
    public var controller: Controller?
    /// When set, every request must carry it (`Authorization: Bearer …` or `?token=…`).
    public var token: String?

    public init(op: Operator, controller: Controller?, token: String?) {
        self.op = op
        self.controller = controller
        self.token = token
    }

    /// Where JobHost may listen: loopback freely; anything else only when allowed and with a token.
    /// - Throws: `UsageError` saying what is missing.
    public static func checkBinding(host: String, allowRemote: Bool, token: String?) throws {
        let loopback = host == "127.0.0.1" || host.hasPrefix("127.")
        guard !loopback else { return }
        guard allowRemote else {
            throw UsageError("--http \(host): not a loopback address; add --http-allow-remote (with a token) to listen there")
        }
        guard let token, token.count >= 16 else {
            throw UsageError("--http \(host) with --http-allow-remote needs --http-token (or KAPPA_HTTP_TOKEN) of at least 16 characters")
        }
    }

    public func handle(_ request: HTTPServer.Request) async -> HTTPServer.Response {
        if let token, !authorized(request, token) {
            var response = HTTPServer.Response.text(401, "a token is required: Authorization: Bearer TOKEN, or ?token=TOKEN")
            response.headers = [("WWW-Authenticate", "Bearer")]
            return response
        }
        let parts = request.path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        do {
            switch parts.count {
            case 0: return HTTPServer.Response(status: 200, contentType: "text/html; charset=utf-8", body: Array(StatusPage.html.utf8))
            case 1 where parts[0] == "metrics":
                return HTTPServer.Response(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8", body: Array(try await metrics().utf8))
            case 2 where parts == ["api", "status"]:
                return .json(try Render.json(try await op.status()))
            case 4 where parts[0] == "api" && parts[1] == "jobs":
                return try await job(parts[2], parts[3], request)
            default:
                return .text(404, "no such page: \(request.path) (try /, /metrics, /api/status, /api/jobs/JOB/history)")
            }
        } catch let error as CatalogError where error.code == .jobNotFound || error.code == .versionNotFound {
            return .text(404, error.message)
        } catch let error as UsageError {
            return .text(400, error.message)
        } catch where Controller.isUnreachable(error) {
            return .text(503, "catalog unreachable: \(error); JobHost keeps running and resumes when it answers")
        } catch {
            return .text(500, "\(error)")
        }
    }

    private func authorized(_ request: HTTPServer.Request, _ token: String) -> Bool {
        let given = request.headers["authorization"].flatMap { $0.hasPrefix("Bearer ") ? String($0.dropFirst(7)) : nil } ?? request.query["token"] ?? ""
        // Compared in constant time.
        let a = Array(given.utf8), b = Array(token.utf8)
        var difference = a.count ^ b.count
        for i in 0..<b.count { difference |= Int((i < a.count ? a[i] : 0) ^ b[i]) }
        return difference == 0
    }

    private func job(_ name: String, _ what: String, _ request: HTTPServer.Request) async throws -> HTTPServer.Response {
        let versions = try await op.versions(job: name)  // 404 for an unknown job
        switch what {
        case "history":
            let limit = try request.query["limit"].map { _ in try Self.limit(request.query["limit"]) }
            return .json(try Render.json(["history": try await op.store.history(job: name, limit: limit)]))
        case "lag":
            // The newest lag samples of each running version, for the page's chart.
            var series: [LagSeries] = []
            for v in versions where v.state.isRunning {
                let samples = try await op.store.lagSamples(job: name, version: v.version, limit: 300)
                series.append(LagSeries(version: v.version, state: v.state, at: samples.map(\.at), lag: samples.map(\.totalLag)))
            }
            return .json(try Render.json(["versions": series]))
        case "rows":
            let limit = try Self.limit(request.query["limit"])
            guard let view = try await op.store.jobs().first(where: { $0.name == name })?.view,
                  versions.contains(where: { $0.state == .serving }) else {
                return .json(QueryResult(columns: [], rows: []).json)
            }
            let result = try await op.store.query("SELECT * FROM \(SQLText.quote(view)) LIMIT \(limit)")
            return .json(result.json)
        default:
            return .text(404, "no such page: \(request.path) (history, lag or rows)")
        }
    }

    static func limit(_ text: String?) throws -> Int {
        guard let text else { return 1000 }
        guard let n = Int(text), (1...10_000).contains(n) else { throw UsageError("limit must be a whole number from 1 to 10000, got \"\(text)\"") }
        return n
    }

    struct LagSeries: Codable {
        var version: Int
        var state: VersionState
        var at: [Int64]
        var lag: [Int64]
    }

    // MARK: Prometheus

    /// The exposition text: catalog-wide gauges (states, lag, rate, switches) and this host's
    /// counters (batches, records, dead letters, failures, commit latency).
    func metrics() async throws -> String {
        var out = PrometheusText()
        // One reading of the catalog for the whole scrape.
        let snapshot = try await op.store.snapshot(.status(samples: 30, hostsWithinMs: HostLiveness.windowMs))
        let (report, ends) = try await op.status(of: snapshot)
        out.family("kappa_version_state", .gauge, "1 for the state each version is in.")
        for job in report.jobs {
            for v in job.versions {
                for state in VersionState.allCases {
                    out.sample("kappa_version_state", ["kappa_job": job.name, "version": "\(v.version)", "state": state.rawValue], v.state == state ? 1 : 0)
                }
            }
        }
        out.family("kappa_version_serving", .gauge, "1 for the version the job's reader view points at.")
        for job in report.jobs { for v in job.versions { out.sample("kappa_version_serving", ["kappa_job": job.name, "version": "\(v.version)"], job.serving == v.version ? 1 : 0) } }

        out.family("kappa_version_lag_records", .gauge, "Records of the log not yet processed by the version, per partition.")
        var timeLags: [(String, Int, Int, Double)] = []
        for job in report.jobs {
            for v in job.versions where v.state.isRunning {
                guard let topic = snapshot.versions(of: job.name).first(where: { $0.version == v.version })?.spec.source.topic,
                      let nexts = snapshot.offsets[VersionID(job: job.name, version: v.version)], let topicEnds = ends[topic] else { continue }
                let partitions = await op.log.partitionLags(topic: topic, ends: topicEnds, nexts: nexts, now: snapshot.at)
                for p in partitions {
                    out.sample("kappa_version_lag_records", ["kappa_job": job.name, "version": "\(v.version)", "partition": "\(p.partition)"], Double(p.lag))
                    timeLags.append((job.name, v.version, p.partition, Double(p.timeLagMs ?? 0) / 1000))
                }
            }
        }
        out.family("kappa_version_lag_seconds", .gauge, "Age of the oldest record the version has not processed, per partition (0 when caught up).")
        for (job, version, partition, seconds) in timeLags {
            out.sample("kappa_version_lag_seconds", ["kappa_job": job, "version": "\(version)", "partition": "\(partition)"], seconds)
        }
        // Each family's samples directly after its HELP and TYPE (the format wants one group each).
        let running = report.jobs.flatMap { job in job.versions.filter { $0.state.isRunning }.map { (job.name, $0) } }
        out.family("kappa_version_processed_records", .gauge, "Records processed by the version (sum of its committed offsets).")
        for (job, v) in running { if let n = v.processed { out.sample("kappa_version_processed_records", ["kappa_job": job, "version": "\(v.version)"], Double(n)) } }
        out.family("kappa_version_replay_records_per_second", .gauge, "Records processed per second, smoothed over the recent lag samples.")
        for (job, v) in running { if let r = v.rate { out.sample("kappa_version_replay_records_per_second", ["kappa_job": job, "version": "\(v.version)"], r) } }
        out.family("kappa_version_eta_seconds", .gauge, "Estimated seconds until the version has caught up.")
        for (job, v) in running { if let e = v.etaSeconds { out.sample("kappa_version_eta_seconds", ["kappa_job": job, "version": "\(v.version)"], e) } }
        out.family("kappa_switches_total", .counter, "Times a version started serving (first versions, promotions, rollbacks).")
        for job in report.jobs { out.sample("kappa_switches_total", ["kappa_job": job.name], Double(snapshot.entered[job.name]?[.serving] ?? 0)) }
        out.family("kappa_version_failures_total", .counter, "Times a version failed, from the catalog's history.")
        for job in report.jobs { out.sample("kappa_version_failures_total", ["kappa_job": job.name], Double(snapshot.entered[job.name]?[.failed] ?? 0)) }
        out.family("kappa_hosts_live", .gauge, "JobHosts with a recent heartbeat on this catalog.")
        out.sample("kappa_hosts_live", [:], Double(report.hosts.count))

        guard let controller else { return out.text }
        out.family("kappa_controller", .gauge, "1 when this JobHost holds the controller lease.")
        out.sample("kappa_controller", [:], controller.isController ? 1 : 0)
        let host = controller.metrics.snapshot
        // Every counter exists from the start, at 0: each running version's, and each job's failures.
        var perVersion = host.versions
        for job in report.jobs {
            for v in job.versions where v.state.isRunning && perVersion[job.name]?[v.version] == nil {
                perVersion[job.name, default: [:]][v.version] = .init()
            }
        }
        let counters = perVersion.sorted { $0.key < $1.key }.flatMap { job, versions in versions.sorted { $0.key < $1.key }.map { (job, $0.key, $0.value) } }
        var failures = host.failures
        for job in report.jobs where failures[job.name] == nil { failures[job.name] = 0 }
        out.family("kappa_batches_processed_total", .counter, "Batches committed by this JobHost's workers.")
        for (job, version, c) in counters { out.sample("kappa_batches_processed_total", ["kappa_job": job, "version": "\(version)"], Double(c.batches)) }
        out.family("kappa_records_processed_total", .counter, "Records committed by this JobHost's workers.")
        for (job, version, c) in counters { out.sample("kappa_records_processed_total", ["kappa_job": job, "version": "\(version)"], Double(c.records)) }
        out.family("kappa_dead_lettered_records_total", .counter, "Bad records this JobHost's workers put in dead-letter tables.")
        for (job, version, c) in counters { out.sample("kappa_dead_lettered_records_total", ["kappa_job": job, "version": "\(version)"], Double(c.deadLettered)) }
        out.family("kappa_worker_failures_total", .counter, "Version failures (SQL errors, bad records under fail) seen by this JobHost's workers.")
        for (job, n) in failures.sorted(by: { $0.key < $1.key }) { out.sample("kappa_worker_failures_total", ["kappa_job": job], Double(n)) }
        out.family("kappa_catalog_commit_seconds", .histogram, "Time to commit one batch (rows and offsets) to the catalog database.")
        for (i, bound) in HostMetrics.buckets.enumerated() {
            out.sample("kappa_catalog_commit_seconds_bucket", ["le": PrometheusText.number(bound)], Double(host.commitBuckets[i]))
        }
        out.sample("kappa_catalog_commit_seconds_bucket", ["le": "+Inf"], Double(host.commitBuckets.last!))
        out.sample("kappa_catalog_commit_seconds_sum", [:], host.commitSum)
        out.sample("kappa_catalog_commit_seconds_count", [:], Double(host.commitCount))
        return out.text
    }
}

/// Prometheus' text exposition format (0.0.4): `# HELP`, `# TYPE`, samples with escaped labels.
struct PrometheusText {
    enum Kind: String { case gauge, counter, histogram }
    private(set) var text = ""

    mutating func family(_ name: String, _ kind: Kind, _ help: String) {
        text += "# HELP \(name) \(help.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n"))\n"
        text += "# TYPE \(name) \(kind.rawValue)\n"
    }

    mutating func sample(_ name: String, _ labels: [String: String], _ value: Double) {
        text += name
        if !labels.isEmpty {
            text += "{" + labels.sorted { $0.key < $1.key }.map { "\($0.key)=\"\(Self.escape($0.value))\"" }.joined(separator: ",") + "}"
        }
        text += " \(Self.number(value))\n"
    }

    /// Label values: backslash, double quote and line feed escaped.
    static func escape(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }

    static func number(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded() && abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }
}
