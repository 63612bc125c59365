import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// How JobHost runs.
public struct JobHostConfiguration: Sendable {
    public var state: StateDirectory
    /// The catalog database's URL (PostgreSQL); nil: SQLite in the state directory.
    public var catalog: String?
    /// The log's URL (Kafka) and its librdkafka settings; nil: the segment log in the state directory.
    public var log: String?
    public var kafkaSettings: [String] = []
    /// With Kafka: where its topics are archived (reads below the brokers' retention).
    public var archive: String?
    /// With Kafka and an archive: the topics this host mirrors into the archive while it holds
    /// their mirror leases (`MirrorRunner`), and how long between passes.
    public var mirrors: [String] = []
    public var mirrorIntervalMs: Int64 = 1_000
    /// How often retention is applied to the embedded log's topics.
    public var retentionIntervalMs: Int64 = 60_000
    public var controller = Controller.Configuration()
    /// Where to serve `/metrics`, `/api/…` and the page (nil: no HTTP endpoint).
    public var http: (host: String, port: Int)?
    /// Required on every HTTP request when set; required to listen beyond loopback.
    public var httpToken: String?
    public var httpAllowRemote = false

    public init(state: StateDirectory) { self.state = state }
}

/// The daemon's service: the controller loop (and through it one worker per partition of every
/// running version this host holds a lease on), the heartbeat in the catalog, and, on the host
/// holding the controller lease, the embedded log's retention. Several JobHosts may run on one
/// catalog (and, with SQLite, on one state directory): the leases divide the work.
public struct JobHostService: Sendable {
    public var configuration: JobHostConfiguration
    public var logger: EventLogger

    public init(configuration: JobHostConfiguration, logger: EventLogger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// Runs until the task is cancelled; returns after in-flight batches have committed and
    /// its leases are given back.
    public func run() async throws {
        let state = configuration.state
        let log = try Backends.log(state: state, url: configuration.log, settings: configuration.kafkaSettings, logger: logger, archive: configuration.archive)
        let store = try Backends.store(state: state, catalog: configuration.catalog)
        let owner = "JobHost@\(Self.hostname()):\(getpid())"
        let controller = Controller(log: log, store: store, logger: logger, actor: owner, configuration: configuration.controller)
        var mirrors: [MirrorRunner] = []
        if !configuration.mirrors.isEmpty {
            guard let location = configuration.archive, !(log is SegmentLog) else {
                throw LogError(.invalidArgument, "--mirror is for Kafka topics: it needs --log kafka://… and --archive DIR or s3://BUCKET/PREFIX")
            }
            let archive = try Backends.archive(location, environment: ProcessInfo.processInfo.environment)
            mirrors = Set(configuration.mirrors).sorted().map { topic in
                MirrorRunner(mirror: LogMirror(log: log, archive: archive, topic: topic), store: store, owner: owner,
                             ttlMs: configuration.controller.leaseTtlMs, intervalMs: configuration.mirrorIntervalMs, logger: logger,
                             problems: controller.problems)
            }
        }
        let startedAt = currentTimeMillis()
        var server: HTTPServer?
        if let http = configuration.http {
            try Observability.checkBinding(host: http.host, allowRemote: configuration.httpAllowRemote, token: configuration.httpToken)
            let observe = Observability(op: Operator(log: log, store: store, actor: owner), controller: controller, token: configuration.httpToken)
            server = try HTTPServer(host: http.host, port: http.port) { await observe.handle($0) }
        }
        logger.log(.info, "started", ["state": state.path, "host": owner, "log": configuration.log.map(Redaction.url) ?? "segment log",
                                      "archive": configuration.archive.map(Redaction.url) ?? "none"])
        if let server { logger.log(.info, "http listening", ["url": "http://\(server.host):\(server.port)/"]) }
        try await store.heartbeat(owner: owner, pid: getpid(), startedAt: startedAt)
        try await releaseLeasesOfDeadPredecessors(store, me: owner)
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await controller.run() }
            if let server { group.addTask { await server.run() } }
            for mirror in mirrors { group.addTask { await mirror.run() } }
            group.addTask {
                // Often enough that a live host never looks dead to the others' share count.
                let every = min(1_000, configuration.controller.leaseTtlMs / 4)
                while !Task.isCancelled {
                    try? await store.heartbeat(owner: owner, pid: getpid(), startedAt: startedAt, problems: controller.problems.current)
                    try? await Task.sleep(for: .milliseconds(every))
                }
            }
            // Kafka's brokers apply its retention; the embedded log's is applied by the controller.
            if let log = log as? SegmentLog { group.addTask {
                while !Task.isCancelled {
                    do {
                        guard controller.isController else { try? await Task.sleep(for: .seconds(1)); continue }
                        let deleted = try await log.enforceRetention()
                        if deleted > 0 { logger.log(.info, "retention", ["segmentsDeleted": "\(deleted)"]) }
                    } catch {
                        logger.log(.error, "retention failed", ["error": "\(error)"])
                    }
                    try? await Task.sleep(for: .milliseconds(configuration.retentionIntervalMs))
                }
            } }
        }
        try? await store.removeHost(owner: owner)
        logger.log(.info, "stopped")
    }

    /// A JobHost killed on this machine (SIGKILL, a crash) leaves leases that would block its
    /// partitions until they expire, and a heartbeat that counts it live until it ages out; its
    /// successor here sees that its pid is gone and removes both at once. (Other machines' hosts
    /// are only ever judged by expiry.)
    private func releaseLeasesOfDeadPredecessors(_ store: any CatalogStore, me: String) async throws {
        let isGone: (Int32) -> Bool = { pid in pid != getpid() && kill(pid, 0) != 0 && errno == ESRCH }
        let dead = LeasePlan.deadPredecessors(try await store.leases(), machine: Self.hostname(), me: me, isGone: isGone)
        for (owner, keys) in dead.sorted(by: { $0.key < $1.key }) {
            try await store.releaseLeases(keys, owner: owner)
            try? await store.removeHost(owner: owner)
            logger.log(.info, "released the leases of a dead JobHost", ["host": owner, "leases": "\(keys.count)"])
        }
        // One that held none still has a heartbeat the others would deal partitions to.
        let hosts = try await store.liveHosts(withinMs: configuration.controller.leaseTtlMs)
        for owner in hosts where dead[owner] == nil && LeasePlan.isDeadPredecessor(owner, machine: Self.hostname(), me: me, isGone: isGone) {
            try? await store.removeHost(owner: owner)
            logger.log(.info, "removed the heartbeat of a dead JobHost", ["host": owner])
        }
    }

    /// The machine's name, from `gethostname` (never a DNS lookup, which can hang offline).
    public static func hostname() -> String {
        var buffer = [UInt8](repeating: 0, count: 256)
        _ = buffer.withUnsafeMutableBufferPointer { gethostname(UnsafeMutableRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), $0.count - 1) }
        return String(decoding: buffer.prefix { $0 != 0 }, as: UTF8.self)
    }
}
