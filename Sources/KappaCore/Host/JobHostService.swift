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
    /// How often retention is applied to the embedded log's topics.
    public var retentionIntervalMs: Int64 = 60_000
    public var controller = Controller.Configuration()

    public init(state: StateDirectory) { self.state = state }
}

/// The daemon's service: the controller loop (and through it one worker per partition of every
/// running version), the heartbeat in the catalog, and the embedded log's retention.
/// One JobHost per state directory: a second one refuses to start.
public struct JobHostService: Sendable {
    public var configuration: JobHostConfiguration
    public var logger: EventLogger

    public init(configuration: JobHostConfiguration, logger: EventLogger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// Runs until the task is cancelled; returns after in-flight batches have committed.
    /// - Throws: `StateError` when another JobHost holds the state directory.
    public func run() async throws {
        let state = configuration.state
        let lock = try HostLock(state: state)
        let log = try Backends.log(state: state, url: configuration.log, settings: configuration.kafkaSettings, logger: logger)
        let store = try Backends.store(state: state, catalog: configuration.catalog)
        let owner = "JobHost@\(Self.hostname()):\(getpid())"
        let startedAt = currentTimeMillis()
        let controller = Controller(log: log, store: store, logger: logger, actor: owner, configuration: configuration.controller)
        logger.log(.info, "started", ["state": state.path, "host": owner, "log": configuration.log.map(Redaction.url) ?? "segment log"])
        try await store.heartbeat(owner: owner, pid: getpid(), startedAt: startedAt)
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await controller.run() }
            group.addTask {
                while !Task.isCancelled {
                    try? await store.heartbeat(owner: owner, pid: getpid(), startedAt: startedAt)
                    try? await Task.sleep(for: .seconds(1))
                }
            }
            // Kafka's brokers apply its retention; the embedded log's is applied here.
            if let log = log as? SegmentLog { group.addTask {
                while !Task.isCancelled {
                    do {
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
        withExtendedLifetime(lock) {}
        logger.log(.info, "stopped")
    }

    /// The machine's name, from `gethostname` (never a DNS lookup, which can hang offline).
    public static func hostname() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        gethostname(&buffer, buffer.count)
        return String(cString: buffer)
    }
}

/// The state directory's JobHost lock (`jobhost.lock`, flock): held while JobHost runs.
final class HostLock: Sendable {
    private let file: FileDescriptor

    init(state: StateDirectory) throws {
        let path = "\(state.path)/jobhost.lock"
        file = try FileDescriptor(path: path, flags: O_RDWR | O_CREAT)
        guard try file.tryLockExclusive() else {
            let pid = String(decoding: (try? file.read(count: 32, at: 0)) ?? [], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw StateError("another JobHost\(pid.isEmpty ? "" : " (pid \(pid))") is running on \(state.path); one JobHost per state directory")
        }
        try file.truncate(to: 0)
        try file.write(Array("\(getpid())\n".utf8), at: 0)
    }
}

import Foundation
