import Synchronization

/// Time as the controller sees it: the wall clock in production, one moved by hand in tests, so
/// that holds, retirement grace periods and lease expiry are tested without waiting for them.
public protocol KappaClock: Sendable {
    /// Milliseconds since the epoch.
    func now() -> Int64
}

/// The system's wall clock.
public struct WallClock: KappaClock {
    public init() {}
    public func now() -> Int64 { currentTimeMillis() }
}

/// A clock that moves only when told to (tests).
public final class ManualClock: KappaClock {
    private let millis: Mutex<Int64>

    public init(_ start: Int64 = currentTimeMillis()) { millis = Mutex(start) }

    public func now() -> Int64 { millis.withLock { $0 } }

    /// Moves the clock forward by `ms`.
    public func advance(_ ms: Int64) { millis.withLock { $0 += ms } }
}
