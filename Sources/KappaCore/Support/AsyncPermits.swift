import Synchronization

/// At most `count` holders at a time, for async code; waiters are served first come, first
/// served, and a waiter cancelled while it waits stops waiting (`CancellationError`).
///
/// Partition workers take one for each batch (read, plan, commit): with 10,000 partitions,
/// every worker holding a batch while it waits for the store's one writer would keep 10,000
/// batches in memory and put the heartbeat and the controller's reads behind 10,000 commits.
public final class AsyncPermits: Sendable {
    private struct State {
        var available: Int
        var waiters: [(id: UInt64, continuation: CheckedContinuation<Void, any Error>)] = []
        var nextID: UInt64 = 0
    }

    private let state: Mutex<State>

    public init(_ count: Int) {
        state = Mutex(State(available: max(1, count)))
    }

    /// Waits for a permit.
    /// - Throws: `CancellationError` when the task is cancelled before it gets one.
    public func acquire() async throws {
        let id = state.withLock { s -> UInt64 in
            s.nextID += 1
            return s.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let outcome = state.withLock { s -> Bool? in
                    // Checked under the lock: a cancellation either is seen here or finds the waiter.
                    if Task.isCancelled { return false }
                    if s.available > 0 && s.waiters.isEmpty {
                        s.available -= 1
                        return true
                    }
                    s.waiters.append((id, continuation))
                    return nil
                }
                switch outcome {
                case true?: continuation.resume()
                case false?: continuation.resume(throwing: CancellationError())
                case nil: break
                }
            }
        } onCancel: {
            let waiter = state.withLock { s -> CheckedContinuation<Void, any Error>? in
                guard let i = s.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                return s.waiters.remove(at: i).continuation
            }
            waiter?.resume(throwing: CancellationError())
        }
    }

    /// Gives a permit back (to the first waiter, if any).
    public func release() {
        let next = state.withLock { s -> CheckedContinuation<Void, any Error>? in
            if s.waiters.isEmpty {
                s.available += 1
                return nil
            }
            return s.waiters.removeFirst().continuation
        }
        next?.resume()
    }
}
