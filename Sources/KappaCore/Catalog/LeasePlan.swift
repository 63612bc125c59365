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

    /// The running partitions dealt round-robin over the live hosts, as Kafka's round-robin
    /// assignor deals a group's partitions over its members: the i-th running partition (in key
    /// order) goes to the (i mod n)-th host (in name order). Each version's partitions are thus
    /// spread over the hosts (each holds ⌊p/n⌋ or ⌈p/n⌉ of them) and so are all of them together.
    /// Spreading each version matters: a caught-up serving version's partitions are idle while a
    /// replay's are busy, and a host holding all of one and another all of the other leaves the
    /// replay to one host (`kappa-bench hosts` measured 0.6x with two hosts that way).
    ///
    /// Every host computes this from the same catalog rows (the running versions and the hosts'
    /// heartbeats), so none needs to be told its part: there is no assignment to write, read or
    /// lose. A host that decided alone towards a share could not also hold each version to its
    /// share: with 3 hosts and versions of 5, 2 and 2 partitions, holdings like {v0, v3},
    /// {v1, x0, y0} and {v2, x1, y1} leave v4 to nobody, each host being at one cap or the other.
    /// Views differ only while a heartbeat ages out (a host that died, or one just started); a
    /// partition then waits at most until the views agree, as it would for an expiring lease.
    public static func assignment(running: [LeaseKey], hosts: [String], me: String) -> [LeaseKey] {
        let members = Set(hosts).union([me]).sorted()
        let index = members.firstIndex(of: me)!
        return running.sorted().enumerated().compactMap { i, key in i % members.count == index ? key : nil }
    }

    /// Towards `assignment`: take what is this host's and free (another host still holding one
    /// gives it back at its own next check), give back what is another's or no longer runs.
    /// - Parameters:
    ///   - held: what this host holds after renewing (the controller's and mirrors' leases
    ///     included; never given back here).
    ///   - running: every partition of every running version.
    ///   - hosts: the hosts with a recent heartbeat (this one counted even when missing).
    ///   - me: this host.
    public static func moves(held: Set<LeaseKey>, running: [LeaseKey], hosts: [String], me: String) -> Moves {
        let mine = assignment(running: running, hosts: hosts, me: me)
        let target = Set(mine)
        let acquire = mine.filter { !held.contains($0) }
        return Moves(acquire: acquire, limit: acquire.count, release: held.filter { $0.isPartition && !target.contains($0) }.sorted())
    }

    /// The owners whose leases are to be released at once: JobHosts of this machine
    /// (`JobHost@<machine>:<pid>`) other than `me` whose process `isGone`. Hosts of other
    /// machines are only ever judged by lease expiry.
    public static func deadPredecessors(_ leases: [Lease], machine: String, me: String, isGone: (Int32) -> Bool) -> [String: [LeaseKey]] {
        var out: [String: [LeaseKey]] = [:]
        for lease in leases where isDeadPredecessor(lease.owner, machine: machine, me: me, isGone: isGone) {
            out[lease.owner, default: []].append(lease.key)
        }
        return out
    }

    /// Whether `owner` is a JobHost of this machine other than `me` whose process `isGone`: its
    /// heartbeat row is removed at once, so that the others stop dealing it partitions (one that
    /// held no lease would otherwise count as live until its heartbeat aged out).
    public static func isDeadPredecessor(_ owner: String, machine: String, me: String, isGone: (Int32) -> Bool) -> Bool {
        let prefix = "JobHost@\(machine):"
        guard owner != me, owner.hasPrefix(prefix), let pid = Int32(owner.dropFirst(prefix.count)) else { return false }
        return isGone(pid)
    }
}
