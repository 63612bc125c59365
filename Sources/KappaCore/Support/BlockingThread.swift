import Foundation

/// Runs blocking work (pipe reads, process waits, a query on its own connection) on a thread of
/// its own. Neither Swift's cooperative pool nor Dispatch's global queues are used for it: both
/// are as wide as the machine has cores, so a few blocked calls there starve everything else
/// (and can deadlock against work that needs the same pool to finish, as Foundation's child
/// process monitoring does).
///
/// Being replaced by `BlockingExecutor.shared.run` (bounded, where this starts a thread per call);
/// kept only until the last callers (in Store/ and Jobs/) move, then deleted. Add no new callers.
public func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result { try body() }) }
        thread.stackSize = 1 << 20
        thread.start()
    }
}
