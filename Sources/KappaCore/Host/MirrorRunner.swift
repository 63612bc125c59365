/// `JobHost --mirror TOPIC`: mirrors a Kafka topic into the archive while this host holds the
/// topic's mirror lease in the catalog (`LeaseKey.mirror(topic:)`), so that one mirror runs per
/// topic across every machine and another host's takes over once this one's lease expires. The
/// lease's epoch goes into each manifest the mirror writes (`LogMirror.runOnce(epoch:)`), so a
/// mirror that lost its lease while paused can never write over its successor's work.
///
/// A failure (the object store or the brokers down) is logged, once until it changes, reported
/// to `problems` (status shows it) and tried again with backoff from 1 s up to 30 s; the host
/// stays up, and `recovered` is logged (and the problem cleared) when a pass succeeds again.
public struct MirrorRunner: Sendable {
    public var mirror: LogMirror
    public var store: any CatalogStore
    public var owner: String
    public var ttlMs: Int64
    /// Between passes that succeeded.
    public var intervalMs: Int64
    public var logger: EventLogger
    /// Where a failing mirror says so (`mirror of TOPIC`).
    public var problems: HostProblems?

    public init(mirror: LogMirror, store: any CatalogStore, owner: String, ttlMs: Int64, intervalMs: Int64, logger: EventLogger,
                problems: HostProblems? = nil) {
        self.problems = problems
        self.mirror = mirror
        self.store = store
        self.owner = owner
        self.ttlMs = ttlMs
        self.intervalMs = intervalMs
        self.logger = logger
    }

    /// Until cancelled; gives the lease back at the end.
    public func run() async {
        let key = LeaseKey.mirror(topic: mirror.topic)
        let topic = mirror.topic
        let subject = "mirror of \(topic)"
        var holding: Int64?  // the epoch held
        var failure: String?
        var backoff: Int64 = 1_000
        /// Logged once while it fails the same way, reported, retried with backoff.
        func fail(_ text: String, _ pause: inout Int64) {
            if text != failure {
                logger.log(.error, "mirror failed", ["topic": topic, "error": text, "retryInMs": "\(backoff)"])
                failure = text
            }
            problems?.report(subject, error: text, retryInMs: backoff)
            pause = backoff
            backoff = min(backoff * 2, 30_000)
        }
        while !Task.isCancelled {
            var pause = intervalMs
            do {
                // Taking it again while held renews it (same epoch); the controller's renewals
                // keep it alive during a long pass.
                let lease = try await store.acquireLeases([key], owner: owner, ttlMs: ttlMs, limit: 1).first
                if lease?.epoch != holding {
                    if let lease {
                        logger.log(.info, "mirror lease taken", ["topic": topic, "epoch": "\(lease.epoch)"])
                    } else if holding != nil {
                        logger.log(.info, "mirror lease lost", ["topic": topic])
                    }
                    holding = lease?.epoch
                }
                if let epoch = holding {
                    let records = try await mirror.runOnce(epoch: epoch)
                    if records > 0 { logger.log(.info, "mirrored", ["topic": topic, "records": "\(records)"]) }
                } else {
                    pause = max(100, ttlMs / 4)  // another host mirrors: look again for its lease expiring
                }
                if failure != nil {
                    problems?.clear(subject)
                    // Recovered only if it mirrors again (not when another host holds the lease).
                    if holding != nil { logger.log(.info, "mirror recovered", ["topic": topic]) }
                }
                failure = nil
                backoff = 1_000
            } catch is CancellationError {
                break
            } catch let error as LogError where error.code == .fenced {
                // Fenced: another host took the lease while this pass ran (not a failure of this
                // host's), or this host still holds it and the archive's epoch is ahead of the
                // catalog's (a catalog restored or replaced): then it can never write, and says so.
                let still = try? await store.acquireLeases([key], owner: owner, ttlMs: ttlMs, limit: 1).first
                if let still, still.epoch == holding {
                    fail("\(error.message); this host holds the catalog's mirror lease at epoch \(still.epoch): the catalog's lease epochs are behind the archive's (a catalog restored or replaced?)", &pause)
                } else {
                    logger.log(.info, "mirror lease lost", ["topic": topic, "error": error.message])
                    holding = nil
                    if failure != nil { problems?.clear(subject) }
                    failure = nil
                    backoff = 1_000
                    pause = max(100, ttlMs / 4)
                }
            } catch {
                fail("\(error)", &pause)
            }
            try? await Task.sleep(for: .milliseconds(pause))
        }
        if holding != nil { try? await store.releaseLeases([key], owner: owner) }
    }
}
