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
    /// ones; above it, give back the highest keys; always give back what no longer runs.
    /// - Parameters:
    ///   - held: what this host holds after renewing (the controller's lease included).
    ///   - running: every partition of every running version, in order.
    ///   - liveHosts: hosts with a recent heartbeat (at least 1: this one).
    public static func moves(held: Set<LeaseKey>, running: [LeaseKey], liveHosts: Int) -> Moves {
        let wanted = Set(running)
        let stale = held.filter { !$0.isController && !wanted.contains($0) }.sorted()
        let hosts = max(1, liveHosts)
        let share = (running.count + hosts - 1) / hosts
        let mine = running.filter { held.contains($0) }
        if mine.count < share {
            return Moves(acquire: running.filter { !held.contains($0) }, limit: share - mine.count, release: stale)
        }
        return Moves(acquire: [], limit: 0, release: stale + mine.sorted().suffix(mine.count - share))
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
