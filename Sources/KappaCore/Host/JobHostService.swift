/// How JobHost runs.
public struct JobHostConfiguration: Sendable {
    public var state: StateDirectory
    /// How often retention is applied to the embedded log's topics.
    public var retentionIntervalMs: Int64 = 60_000

    public init(state: StateDirectory) { self.state = state }
}

/// The daemon's service. Today it owns the embedded log's housekeeping (retention); the
/// controller loop and the workers join it as they are built.
public struct JobHostService: Sendable {
    public var configuration: JobHostConfiguration
    public var logger: EventLogger

    public init(configuration: JobHostConfiguration, logger: EventLogger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// Runs until the task is cancelled.
    public func run() async throws {
        let log = try SegmentLog(state: configuration.state)
        logger.log(.info, "started", ["state": configuration.state.path])
        while !Task.isCancelled {
            do {
                let deleted = try await log.enforceRetention()
                if deleted > 0 { logger.log(.info, "retention", ["segmentsDeleted": "\(deleted)"]) }
            } catch {
                logger.log(.error, "retention failed", ["error": "\(error)"])
            }
            try? await Task.sleep(for: .milliseconds(configuration.retentionIntervalMs))
        }
        logger.log(.info, "stopped")
    }
}
