#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Synchronization

/// Catches SIGTERM and SIGINT (graceful-shutdown requests) from the moment it is created, so
/// that no signal arriving during start-up kills the process with its default action.
///
/// `@unchecked Sendable`: `sources` is set once in `init` and never touched again (it only keeps
/// the dispatch sources alive); the mutable state is behind a `Mutex`.
public final class TerminationSignal: @unchecked Sendable {
    private struct State {
        var received: String?
        var waiter: CheckedContinuation<String, Never>?
    }

    private let state = Mutex(State())
    private let sources: [any DispatchSourceSignal]

    public init() {
        let queue = DispatchQueue(label: "kappa.signals")
        var made: [any DispatchSourceSignal] = []
        for (number, _) in [(SIGTERM, "SIGTERM"), (SIGINT, "SIGINT")] {
            signal(number, SIG_IGN)
            made.append(DispatchSource.makeSignalSource(signal: number, queue: queue))
        }
        sources = made
        for (source, name) in zip(sources, ["SIGTERM", "SIGINT"]) {
            source.setEventHandler { [weak self] in self?.fire(name) }
            source.resume()
        }
    }

    private func fire(_ name: String) {
        let waiter = state.withLock { s -> CheckedContinuation<String, Never>? in
            if s.received == nil { s.received = name }
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume(returning: name)
    }

    /// Returns the name of the first signal received (at once if one already arrived).
    public func wait() async -> String {
        await withCheckedContinuation { continuation in
            let already = state.withLock { s -> String? in
                if let name = s.received { return name }
                s.waiter = continuation
                return nil
            }
            if let already { continuation.resume(returning: already) }
        }
    }
}
