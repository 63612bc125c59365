import Synchronization

/// Something a JobHost keeps failing at and retries, as `kappactl status` and the page show it:
/// a mirror that cannot reach the object store, a partition's worker that cannot read the
/// archive. Written into the catalog with each heartbeat, so any process sees it.
public struct HostProblem: Sendable, Codable, Equatable {
    /// The JobHost (filled in when read from the catalog).
    public var host: String?
    /// What fails: `mirror of bpi`, `btc v2 partition 0`.
    public var subject: String
    /// A partition's worker: its version and partition (nil for a mirror).
    public var job: String?
    public var version: Int?
    public var partition: Int?
    public var error: String
    /// When it first failed this way (ms since the epoch).
    public var since: Int64
    /// When it is tried again (ms since the epoch).
    public var retryAt: Int64?

    public init(host: String? = nil, subject: String, job: String? = nil, version: Int? = nil, partition: Int? = nil,
                error: String, since: Int64, retryAt: Int64?) {
        self.host = host
        self.subject = subject
        self.job = job
        self.version = version
        self.partition = partition
        self.error = error
        self.since = since
        self.retryAt = retryAt
    }

    /// `mirror of bpi failing for 12 s, retrying in 4 s: <error>` at `now` (without `subject`:
    /// from `failing`).
    public func text(now: Int64, subject withSubject: Bool = true) -> String {
        var out = (withSubject ? subject + " " : "") + "failing for \(Self.seconds(now - since))"
        if let retryAt { out += retryAt > now ? ", retrying in \(Self.seconds(retryAt - now))" : ", retrying" }
        return out + ": " + error
    }

    static func seconds(_ ms: Int64) -> String {
        let s = max(0, ms) / 1000
        return s < 120 ? "\(s) s" : s < 7200 ? "\(s / 60) min" : "\(s / 3600) h"
    }
}

/// This host's current problems, by subject: one owner (the host's controller), reported by
/// whoever fails and cleared by whoever succeeds again, read by the heartbeat.
public final class HostProblems: Sendable {
    private let problems = Mutex<[String: HostProblem]>([:])

    public init() {}

    /// `subject` fails with `error` and is tried again in `retryInMs`; `since` stays that of the
    /// first failure while the subject keeps failing.
    public func report(_ subject: String, error: String, retryInMs: Int64?, now: Int64 = currentTimeMillis()) {
        report(HostProblem(subject: subject, error: error, since: now, retryAt: retryInMs.map { now + $0 }))
    }

    /// A partition's worker of a version fails (subject `job vN partition P`).
    public func report(job: String, version: Int, partition: Int, error: String, retryInMs: Int64?, now: Int64 = currentTimeMillis()) {
        report(HostProblem(subject: Self.subject(job: job, version: version, partition: partition), job: job, version: version, partition: partition,
                           error: error, since: now, retryAt: retryInMs.map { now + $0 }))
    }

    private func report(_ problem: HostProblem) {
        problems.withLock { all in
            var problem = problem
            problem.since = all[problem.subject]?.since ?? problem.since
            all[problem.subject] = problem
        }
    }

    public static func subject(job: String, version: Int, partition: Int) -> String { "\(job) v\(version) partition \(partition)" }

    /// `subject` succeeded: returns whether it had been failing.
    @discardableResult
    public func clear(_ subject: String) -> Bool {
        problems.withLock { $0.removeValue(forKey: subject) != nil }
    }

    /// Every problem that `matches` is gone (a worker stopped for good).
    public func clear(where matches: (HostProblem) -> Bool) {
        problems.withLock { all in for (key, problem) in all where matches(problem) { all[key] = nil } }
    }

    /// The error `subject` fails with now, if it does.
    public func error(of subject: String) -> String? {
        problems.withLock { $0[subject]?.error }
    }

    /// In subject order.
    public var current: [HostProblem] {
        problems.withLock { $0.values.sorted { $0.subject < $1.subject } }
    }
}
