import Foundation
import Synchronization
import Testing
@testable import KappaCore

/// Counts closures running at once and remembers the most seen.
private final class Concurrency: Sendable {
    private let now = Atomic<Int>(0)
    private let peak = Atomic<Int>(0)

    func enter() {
        let n = now.wrappingAdd(1, ordering: .sequentiallyConsistent).newValue
        var seen = peak.load(ordering: .sequentiallyConsistent)
        while n > seen {
            let (exchanged, original) = peak.compareExchange(expected: seen, desired: n, ordering: .sequentiallyConsistent)
            if exchanged { break }
            seen = original
        }
    }

    func leave() { now.wrappingSubtract(1, ordering: .sequentiallyConsistent) }

    var most: Int { peak.load(ordering: .sequentiallyConsistent) }
}

/// A gate the closures wait at until the test opens it.
private final class Gate: Sendable {
    private let isOpen = Atomic<Bool>(false)
    func open() { isOpen.store(true, ordering: .sequentiallyConsistent) }
    func wait() { while !isOpen.load(ordering: .sequentiallyConsistent) { usleep(1_000) } }
}

private final class Counter: Sendable {
    private let count = Atomic<Int>(0)
    func add() { count.wrappingAdd(1, ordering: .sequentiallyConsistent) }
    var value: Int { count.load(ordering: .sequentiallyConsistent) }
}

private struct Refused: Error, Equatable { var n: Int }

/// Waits (asynchronously) until `condition` holds, for at most 10 s.
private func eventually(_ condition: () -> Bool) async -> Bool {
    for _ in 0..<1000 {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return condition()
}

@Suite struct BlockingExecutorTests {
    @Test func aBurstNeverRunsMoreThanItsThreads() async throws {
        let executor = BlockingExecutor(threads: 4, name: "test-burst")
        let running = Concurrency()
        let results = try await withThrowingTaskGroup(of: (Int, Int).self) { group in
            for i in 0..<200 {
                group.addTask {
                    let value = try await executor.run { () -> Int in
                        running.enter()
                        defer { running.leave() }
                        usleep(500)
                        return i * i
                    }
                    return (i, value)
                }
            }
            var results: [Int: Int] = [:]
            for try await (i, value) in group { results[i] = value }
            return results
        }
        #expect(results.count == 200)
        #expect((0..<200).allSatisfy { results[$0] == $0 * $0 })
        #expect(running.most <= 4)
        #expect(running.most >= 1)
        #expect(executor.started <= 4)
        #expect(executor.queued == 0)
    }

    @Test func aLaneRunsInOrderOneAtATime() async throws {
        let executor = BlockingExecutor(threads: 4, name: "test-lane")
        let lane = executor.lane("one")
        let running = Concurrency()
        let order = Mutex<[Int]>([])
        // Other work at the same time, so that the lane's closures could run on several threads.
        let noise = (0..<100).map { _ in Task { try await executor.run { _ = usleep(200) } } }
        for i in 0..<300 {
            lane.submit {
                running.enter()
                defer { running.leave() }
                if i % 10 == 0 { usleep(200) }
                order.withLock { $0.append(i) }
            }
        }
        // `run` on a lane comes after everything submitted before it.
        let last = try await lane.run { order.withLock { $0.count } }
        for task in noise { try await task.value }
        #expect(last == 300)
        #expect(order.withLock { $0 } == Array(0..<300))
        #expect(running.most == 1)
        #expect(lane.queued == 0)
    }

    @Test func aWideLaneRunsAtMostItsWidth() async throws {
        let executor = BlockingExecutor(threads: 8, name: "test-wide")
        let lane = executor.lane("two", width: 2)
        let running = Concurrency()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<60 {
                group.addTask {
                    try await lane.run {
                        running.enter()
                        defer { running.leave() }
                        usleep(500)
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(running.most <= 2)
    }

    @Test func errorsReachTheCaller() async throws {
        let executor = BlockingExecutor(threads: 2, name: "test-errors")
        await #expect(throws: Refused(n: 7)) { try await executor.run { () -> Int in throw Refused(n: 7) } }
        let lane = executor.lane("errors")
        await #expect(throws: Refused(n: 8)) { try await lane.run { () -> Int in throw Refused(n: 8) } }
        // The executor and the lane go on after an error.
        #expect(try await executor.run { 1 } == 1)
        #expect(try await lane.run { 2 } == 2)
    }

    @Test func blockedThreadsMakeWorkQueueRatherThanStartThreads() async throws {
        let executor = BlockingExecutor(threads: 3, name: "test-blocked")
        let gate = Gate()
        let blocked = (0..<3).map { _ in Task { try await executor.run { gate.wait() } } }
        #expect(await eventually { executor.busy == 3 })
        let done = Counter()
        let more = (0..<20).map { i in
            Task {
                let value = try await executor.run { () -> Int in
                    done.add()
                    return i
                }
                #expect(value == i)
            }
        }
        #expect(await eventually { executor.queued == 20 })
        #expect(executor.started == 3)
        #expect(done.value == 0)
        gate.open()
        for task in blocked { try await task.value }
        for task in more { try await task.value }
        #expect(done.value == 20)
        #expect(executor.started == 3)
        #expect(await eventually { executor.busy == 0 })
    }

    @Test func aLaneHoldsAtMostOneThread() async throws {
        // A lane whose closures block takes one thread: the executor's other work goes on.
        let executor = BlockingExecutor(threads: 2, name: "test-lane-thread")
        let lane = executor.lane("slow")
        let gate = Gate()
        let slow = (0..<5).map { _ in Task { try await lane.run { gate.wait() } } }
        #expect(await eventually { executor.busy == 1 })
        for i in 0..<10 { #expect(try await executor.run { i } == i) }
        gate.open()
        for task in slow { try await task.value }
    }

    @Test func theSharedExecutorsSizeIsChecked() throws {
        #expect(throws: BlockingExecutorError.self) { try BlockingExecutor.configureShared(threads: 1) }
        #expect(throws: BlockingExecutorError.self) { try BlockingExecutor.configureShared(threads: 257) }
        #expect(try BlockingExecutor.threads(environment: [:]) == nil)
        #expect(try BlockingExecutor.threads(environment: ["KAPPA_BLOCKING_THREADS": "8"]) == 8)
        #expect(throws: BlockingExecutorError.self) { try BlockingExecutor.threads(environment: ["KAPPA_BLOCKING_THREADS": "1"]) }
        #expect(throws: BlockingExecutorError.self) { try BlockingExecutor.threads(environment: ["KAPPA_BLOCKING_THREADS": "many"]) }
        _ = BlockingExecutor.shared
        // Once in use, its size is fixed.
        #expect(throws: BlockingExecutorError.self) { try BlockingExecutor.configureShared(threads: 8) }
        #expect(BlockingExecutor.allowedThreads.contains(BlockingExecutor.shared.threads))
    }
}
