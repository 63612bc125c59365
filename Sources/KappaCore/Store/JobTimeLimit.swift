import Synchronization

/// How long a job's SQL may run over one batch (`transform.timeout`), and when it should give
/// the store's writer to the work waiting for it.
///
/// The writer is one connection (and on SQLite, the database's one write lock): a job statement
/// that runs long would hold up every other job's commits, the heartbeats, the leases and the
/// catalog reads behind it. So a statement that has run `yieldAfterMs` while other work waits
/// (on SQLite, `unaskedAfterMs` in any case: other processes wait on the database's lock unseen)
/// is stopped (SQLite's progress handler; PostgreSQL's cancel, sent by a watchdog) and its batch
/// rolled back; the store
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
    /// How long the statement runs before it gives way to work of this process waiting for the
    /// writer.
    let yieldAfterMs: Int64
    /// How long it runs before it gives way whether or not anything here waits; nil: never.
    /// (SQLite: the statement holds the database's write lock, and other processes wait for it
    /// unseen.)
    let unaskedAfterMs: Int64?
    private let othersWaiting: @Sendable () -> Bool
    private let state: Mutex<State>

    /// How soon a cancelled worker's statement stops (a quick batch commits first).
    static let cancelAfterMs: Int64 = 250

    /// - Parameter spentMs: what earlier attempts at this batch ran.
    init(timeoutMs: Int64, spentMs: Int64 = 0, yieldAfterMs: Int64 = 250, unaskedAfterMs: Int64? = 1_000,
         othersWaiting: @escaping @Sendable () -> Bool) {
        self.timeoutMs = timeoutMs
        self.yieldAfterMs = yieldAfterMs
        self.unaskedAfterMs = unaskedAfterMs
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
    /// `cancelAfterMs` (a quick batch commits first).
    func cancel() { state.withLock { $0.cancelled = true } }

    /// Whether the worker was cancelled (a commit still queued then does not start).
    var isCancelled: Bool { state.withLock { $0.cancelled } }

    /// Called while the statement runs (SQLite's progress handler): whether to stop it now.
    func shouldStop() -> Bool {
        let now = currentTimeMillis()
        return state.withLock { decide(&$0, now: now) } != nil
    }

    /// Called from another thread while the statement may run (PostgreSQL's cancel): when it
    /// runs and should stop, marks it stopped and calls `cancel` before `finish` can return, so
    /// the cancel is sent while the statement is still the connection's (the caller undoes the
    /// whole transaction whenever `stop` is set, in case the cancel lands on what follows).
    func stopIfDue(_ cancel: () -> Void) {
        let now = currentTimeMillis()
        state.withLock { s in
            guard s.startedAt != nil, s.stop == nil, decide(&s, now: now) != nil else { return }
            cancel()
        }
    }

    private func decide(_ s: inout State, now: Int64) -> Stop? {
        let running = s.startedAt.map { now - $0 } ?? 0
        let stop: Stop?
        if s.cancelled && running >= Self.cancelAfterMs {
            stop = .cancelled  // a batch that is quick commits first; a slow one stops
        } else if s.spentMs + running >= timeoutMs {
            stop = .timeout
        } else if running >= yieldAfterMs && othersWaiting() {
            stop = .yield  // work of this process waits for the writer
        } else if let unaskedAfterMs, running >= unaskedAfterMs {
            stop = .yield  // work of other processes may wait for the database's lock, unseen here
        } else {
            stop = nil
        }
        if let stop { s.stop = stop }
        return stop
    }
}

/// A job's statement gave the writer to waiting work: the store retries the batch, smaller.
enum JobSQLYield: Error {
    case gaveWay
    /// Not started: job SQL pauses after a statement gave way.
    case paused
}
