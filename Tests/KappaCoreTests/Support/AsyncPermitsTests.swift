import Foundation
import Synchronization
import Testing
@testable import KappaCore

@Suite struct AsyncPermitsTests {
    /// Never more holders than permits, however many wait; every waiter gets one in the end.
    @Test func atMostCountHoldersAndEveryWaiterServed() async throws {
        let permits = AsyncPermits(3)
        let counts = Counts()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<200 {
                group.addTask {
                    try await permits.acquire()
                    counts.state.withLock { $0.now += 1; $0.most = max($0.most, $0.now) }
                    try await Task.sleep(for: .microseconds(200))
                    counts.state.withLock { $0.now -= 1; $0.done += 1 }
                    permits.release()
                }
            }
            try await group.waitForAll()
        }
        #expect(counts.state.withLock { $0.most } == 3)
        #expect(counts.state.withLock { $0.done } == 200)
    }

    /// A waiter cancelled while it waits stops waiting at once and takes no permit.
    @Test func aCancelledWaiterStopsWaitingAndTakesNothing() async throws {
        let permits = AsyncPermits(1)
        try await permits.acquire()
        let waiter = Task { try await permits.acquire() }
        try await Task.sleep(for: .milliseconds(20))
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        permits.release()
        try await permits.acquire()  // the one permit is free again: the cancelled waiter took none
        permits.release()
    }
}

private final class Counts: Sendable {
    let state = Mutex((now: 0, most: 0, done: 0))
}
