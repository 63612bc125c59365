/// What a lease is for: one partition of one version (its worker), or the controller loop.
public struct LeaseKey: Hashable, Sendable, Codable, Comparable {
    public var job: String
    public var version: Int
    public var partition: Int

    public init(job: String, version: Int, partition: Int) {
        self.job = job
        self.version = version
        self.partition = partition
    }

    /// The controller loop's lease (a row no job can have: job names are identifiers).
    public static let controller = LeaseKey(job: "", version: 0, partition: -1)

    public var isController: Bool { self == .controller }

    /// The lease of the mirror of `topic` into the archive (`JobHost --mirror TOPIC`): one
    /// mirror per topic across every machine, its epoch the fencing token written into the
    /// archive's manifests. (Job names are identifiers, so `#mirror:…` is never a job's.)
    public static func mirror(topic: String) -> LeaseKey { LeaseKey(job: "#mirror:" + topic, version: 0, partition: -1) }

    /// The topic whose mirror this lease is for, if it is a mirror's.
    public var mirrorTopic: String? {
        job.hasPrefix("#mirror:") && partition == -1 ? String(job.dropFirst("#mirror:".count)) : nil
    }

    /// Whether this is a version's partition (a worker's), not the controller's or a mirror's.
    public var isPartition: Bool { !isController && mirrorTopic == nil }

    public static func < (a: LeaseKey, b: LeaseKey) -> Bool {
        (a.job, a.version, a.partition) < (b.job, b.version, b.partition)
    }

    public var description: String {
        if isController { return "controller" }
        if let topic = mirrorTopic { return "mirror of topic \"\(topic)\"" }
        return "\(job) v\(version) partition \(partition)"
    }
}

/// A lease as the catalog holds it. The epoch grows by one each time the lease changes hands;
/// a batch commits only while its worker's (owner, epoch) is still the lease's (a fencing token),
/// so a worker paused past its expiry whose partition another host took can never write.
public struct Lease: Hashable, Sendable, Codable {
    public var key: LeaseKey
    public var owner: String
    public var epoch: Int64
    /// Milliseconds since the epoch; 0 after a release.
    public var expiresAt: Int64
}

/// The lease a batch was read under is no longer held by its worker: nothing was written.
public struct LeaseLostError: Error, Sendable, CustomStringConvertible {
    public var key: LeaseKey
    public var owner: String
    public var epoch: Int64
    public var description: String { "\(owner) no longer holds the lease on \(key.description) (epoch \(epoch)); another host took it over" }
}

/// When a JobHost counts as alive for status, the page and `deploy`'s note: while its last
/// heartbeat is this recent. The default lease TTL, the window the hosts themselves deal
/// partitions by: a host busy under load (it heartbeats every second, but a heartbeat can wait
/// behind a runaway statement that gives way only every few seconds) is not shown as gone while
/// the others still count it (status once said "no JobHost is running" of a live one at 5 s).
public enum HostLiveness {
    public static let windowMs: Int64 = Controller.Configuration().leaseTtlMs
}
