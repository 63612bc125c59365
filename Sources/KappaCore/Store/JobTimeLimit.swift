import Synchronization

/// How long a job's SQL may run over one batch (`transform.timeout`), and when it should give
/// the store's writer to the work waiting for it.
///
/// The writer is one connection (and on SQLite, the database's one write lock): a job statement
/// that runs long would hold up every other job's commits, the heartbeats, the leases and the
/// catalog reads behind it. So a statement that has run `yieldAfterMs` while other work waits
/// (or four times that in any case: other processes wait on the database's lock unseen) is
/// stopped (where the store can: SQLite's progress handler) and its batch rolled back; the store
/// retries it with half the records, behind what was waiting and after a pause that lets other
/// processes take the lock. A batch that keeps running past
/// its budget, summed over every attempt, fails its version naming the limit. Cancelling the
/// worker (JobHost shutting down) stops the statement too.
final class JobTimeLimit: Sendable {
    enum Stop: Sendable { case yield, timeout, cancelled }

    private struct State {
        var spentMs: Int64
        var startedAt: Int64?
        var stop: Stop?
        var cancelled = false
    }

    /// `transform.timeout`: what the batch's SQL may take in all.
    let timeoutMs: Int64
    let yieldAfterMs: Int64
    private let othersWaiting: @Sendable () -> Bool
    private let state: Mutex<State>

    /// - Parameter spentMs: what earlier attempts at this batch ran.
    init(timeoutMs: Int64, spentMs: Int64 = 0, yieldAfterMs: Int64 = 250, othersWaiting: @escaping @Sendable () -> Bool) {
        self.timeoutMs = timeoutMs
        self.yieldAfterMs = yieldAfterMs
        self.othersWaiting = othersWaiting
        state = Mutex(State(spentMs: spentMs))
    }

    /// The job's SQL starts (again: a bad record's bisection runs it several times).
    func start() {
        let now = currentTimeMillis()
        state.withLock { $0.startedAt = now }
    }

    /// The job's SQL ended (or was stopped).
    func finish() {
        let now = currentTimeMillis()
        state.withLock { s in
            if let started = s.startedAt { s.spentMs += now - started }
            s.startedAt = nil
        }
    }

    /// What the batch's SQL has run so far, every attempt included.
    var spentMs: Int64 {
        let now = currentTimeMillis()
        return state.withLock { s in s.spentMs + (s.startedAt.map { now - $0 } ?? 0) }
    }

    /// What is left of the budget.
    var remainingMs: Int64 { max(0, timeoutMs - spentMs) }

    /// Why the statement was stopped, if it was.
    var stop: Stop? { state.withLock { $0.stop } }

    /// The worker is cancelled: the running statement stops at its next check once it has run
    /// `yieldAfterMs` (a quick batch commits first).
    func cancel() { state.withLock { $0.cancelled = true } }

    /// Called while the statement runs (SQLite's progress handler): whether to stop it now.
    func shouldStop() -> Bool {
        let now = currentTimeMillis()
        let (running, spent, cancelled) = state.withLock { s in (s.startedAt.map { now - $0 } ?? 0, s.spentMs, s.cancelled) }
        let stop: Stop?
        if cancelled && running >= yieldAfterMs {
            stop = .cancelled  // a batch that is quick commits first; a slow one stops
        } else if spent + running >= timeoutMs {
            stop = .timeout
        } else if running >= yieldAfterMs && othersWaiting() || running >= yieldAfterMs * 4 {
            // Work of this process waits for the writer; or, after a while, work of others may
            // (another process's deploy or status waits on the database's lock, unseen here).
            stop = .yield
        } else {
            stop = nil
        }
        guard let stop else { return false }
        state.withLock { $0.stop = stop }
        return true
    }
}

/// A job's statement gave the writer to waiting work: the store retries the batch, smaller.
enum JobSQLYield: Error {
    case gaveWay
    /// Not started: job SQL pauses after a statement gave way.
    case paused
}
