/// A host's lease decisions as pure functions (no I/O, no clock of their own): when to check,
/// what to take and what to give back, and whose leases a dead predecessor left. The controller
/// performs them; tests drive them without a catalog.
public enum LeasePlan {
    /// Whether leases are due a check: every quarter of the TTL, and at once when the work to
    /// run changed (a version started or stopped), so that a new version's workers do not wait.
    public static func isDue(now: Int64, lastCheck: Int64, ttlMs: Int64, running: Set<LeaseKey>, checkedWith: Set<LeaseKey>) -> Bool {
        now - lastCheck >= ttlMs / 4 || running != checkedWith
    }

    /// What to do after renewing: take up to `limit` of `acquire` (in order), give back `release`.
    public struct Moves: Equatable, Sendable {
        public var acquire: [LeaseKey]
        public var limit: Int
        public var release: [LeaseKey]
    }

    /// This host's share is the running partitions ÷ live hosts, rounded up. Below it, take free
    /// ones; above it, give back some; always give back what no longer runs.
    ///
    /// Which ones: each version's partitions are spread over the hosts (as Kafka's assignors
    /// spread each topic's), not the first keys in order: a serving version's partitions are
    /// idle once caught up while a replay's are busy, so a host holding every partition of the
    /// one and another every partition of the other would leave the replay to one host. A host
    /// takes first from the versions it holds the smallest part of, and gives back from those it
    /// holds the largest part of (a version's highest partitions first).
    /// - Parameters:
    ///   - held: what this host holds after renewing (the controller's lease included).
    ///   - running: every partition of every running version, in order.
    ///   - liveHosts: hosts with a recent heartbeat (at least 1: this one).
    public static func moves(held: Set<LeaseKey>, running: [LeaseKey], liveHosts: Int) -> Moves {
        let wanted = Set(running)
        let stale = held.filter { !$0.isController && !wanted.contains($0) }.sorted()
        let hosts = max(1, liveHosts)
        let share = (running.count + hosts - 1) / hosts
        var versions = Spread(running: running, held: held)
        let mine = versions.heldCount
        if mine < share {
            return Moves(acquire: versions.takeOrder(), limit: share - mine, release: stale)
        }
        return Moves(acquire: [], limit: 0, release: stale + versions.giveBack(mine - share).sorted())
    }

    /// The running partitions by version, with what this host holds of each.
    private struct Spread {
        struct Version {
            var free: [LeaseKey] = []  // in partition order
            var mine: [LeaseKey] = []
            var size = 0
        }
        var versions: [Version] = []  // in the order of `running`

        init(running: [LeaseKey], held: Set<LeaseKey>) {
            var index: [LeaseKey: Int] = [:]  // by the version's partition 0
            for key in running {
                let v = LeaseKey(job: key.job, version: key.version, partition: 0)
                let i = index[v] ?? { versions.append(Version()); index[v] = versions.count - 1; return versions.count - 1 }()
                versions[i].size += 1
                if held.contains(key) { versions[i].mine.append(key) } else { versions[i].free.append(key) }
            }
        }

        var heldCount: Int { versions.reduce(0) { $0 + $1.mine.count } }

        /// Whether this host holds a smaller part of `a` than of `b`.
        private static func smallerPart(_ a: Version, _ b: Version) -> Bool { a.mine.count * b.size < b.mine.count * a.size }

        /// Every free partition, each next one from the version this host would then hold the
        /// smallest part of (the earlier version on a tie).
        mutating func takeOrder() -> [LeaseKey] {
            var order: [LeaseKey] = []
            var next = [Int](repeating: 0, count: versions.count)
            while true {
                var best: Int?
                for i in versions.indices where next[i] < versions[i].free.count {
                    if let b = best, !Self.smallerPart(versions[i], versions[b]) { continue }
                    best = i
                }
                guard let i = best else { return order }
                let key = versions[i].free[next[i]]
                order.append(key)
                versions[i].mine.append(key)
                next[i] += 1
            }
        }

        /// `count` held partitions, each from the version this host holds the largest part of
        /// (the later version on a tie), its highest partition.
        mutating func giveBack(_ count: Int) -> [LeaseKey] {
            var out: [LeaseKey] = []
            while out.count < count {
                var best: Int?
                for i in versions.indices where !versions[i].mine.isEmpty {
                    if let b = best, Self.smallerPart(versions[i], versions[b]) { continue }
                    best = i
                }
                guard let i = best else { return out }
                out.append(versions[i].mine.removeLast())
            }
            return out
        }
    }

    /// The owners whose leases are to be released at once: JobHosts of this machine
    /// (`JobHost@<machine>:<pid>`) other than `me` whose process `isGone`. Hosts of other
    /// machines are only ever judged by lease expiry.
    public static func deadPredecessors(_ leases: [Lease], machine: String, me: String, isGone: (Int32) -> Bool) -> [String: [LeaseKey]] {
        let prefix = "JobHost@\(machine):"
        var out: [String: [LeaseKey]] = [:]
        for lease in leases where lease.owner != me && lease.owner.hasPrefix(prefix) {
            guard let pid = Int32(lease.owner.dropFirst(prefix.count)), isGone(pid) else { continue }
            out[lease.owner, default: []].append(lease.key)
        }
        return out
    }
}
