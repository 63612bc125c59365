import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Runs blocking work (file and database I/O, librdkafka calls, pipe reads) on a fixed number of
/// threads of its own, never on Swift's cooperative pool (as wide as the machine has cores, so a
/// few blocked calls there starve every task) and never on a new thread per call.
///
/// Threads are started as work arrives, up to `threads`, and then kept. Work beyond them waits in
/// one first-in first-out queue. A `Lane` runs its work one closure at a time, in submission order,
/// on these same threads (holding at most one of them at a time).
///
/// Rules for what runs here:
/// - Never wait synchronously for other work submitted to the same executor (a semaphore, a
///   `DispatchQueue.sync`, a blocking read of a Task's result): when every thread is doing that,
///   the work waited for is queued behind them forever.
/// - A call that can wait without bound (a socket read, a child's exit, a consumer poll) does not
///   belong here: hold a thread only as long as a disk or a server takes to answer, and wait for
///   events asynchronously (`Task.sleep`) between short calls.
///
/// Cancellation: a closure whose task is cancelled while it waits in the queue still runs; its
/// caller gets its result. The closure can check nothing (it is not in a task); callers check
/// `Task.isCancelled` before or after.
public final class BlockingExecutor: Sendable {
    /// The most threads this executor starts.
    public let threads: Int
    /// The threads' name prefix (`<name>-<n>`).
    public let name: String
    let core: Core

    /// An executor with at most `threads` threads (at least 1), started as work arrives.
    public init(threads: Int, name: String) {
        self.threads = max(1, threads)
        self.name = name
        core = Core(limit: max(1, threads), name: name)
    }

    /// Threads already started go on with what is queued, then end.
    deinit { core.shutdown() }

    /// Runs `body` on one of the executor's threads and returns (or throws) what it does. The
    /// caller's thread is not blocked: the task is suspended until `body` is done.
    public func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            core.submit { continuation.resume(with: Result { try body() }) }
        }
    }

    /// Queues `job` and returns at once (the caller needs no answer).
    func submit(_ job: @escaping @Sendable () -> Void) { core.submit(job) }

    /// A lane on this executor: its closures run one at a time (at most `width` at a time), in
    /// submission order, on the executor's threads. For a resource that one thread at a time may
    /// use (a database connection, a partition's writer).
    public func lane(_ label: String, width: Int = 1) -> Lane { Lane(executor: self, label: label, width: width) }

    /// Closures waiting for a thread (for tests and metrics).
    public var queued: Int { core.state.withLock { $0.queue.count } }
    /// Threads running a closure now.
    public var busy: Int { core.state.withLock { $0.busy } }
    /// Threads started so far (never more than `threads`).
    public var started: Int { core.state.withLock { $0.threads } }

    /// Work submitted to one lane runs in submission order, at most `width` closures at a time
    /// (one, for a serial lane), on the shared threads of its executor. A lane never holds more
    /// threads than its width, so a lane cannot crowd out the executor's other users; between two
    /// of its closures other work may run (each next closure goes to the back of the executor's
    /// queue).
    public final class Lane: Sendable {
        public let label: String
        /// How many of its closures may run at once.
        public let width: Int
        private let executor: BlockingExecutor
        private let state = Mutex(LaneState())

        init(executor: BlockingExecutor, label: String, width: Int) {
            self.executor = executor
            self.label = label
            self.width = max(1, width)
        }

        /// Runs `body` on the lane (after every closure submitted to it before) and returns what
        /// it does; the caller's thread is not blocked.
        public func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
            try await withCheckedThrowingContinuation { continuation in
                submit { continuation.resume(with: Result { try body() }) }
            }
        }

        /// Closures submitted to the lane and not started yet (not counting one handed to the
        /// executor and waiting for a thread there).
        public var queued: Int { state.withLock { $0.pending.count } }

        /// Queues `job` on the lane and returns at once.
        func submit(_ job: @escaping @Sendable () -> Void) {
            let start = state.withLock { s -> Bool in
                if s.running < width {
                    s.running += 1
                    return true
                }
                s.pending.append(job)
                return false
            }
            if start { schedule(job) }
        }

        /// Hands `job` to the executor; when it is done, the lane's next closure follows it (the
        /// slot passes from one to the next, so at most `width` are ever handed over).
        private func schedule(_ job: @escaping @Sendable () -> Void) {
            executor.submit { [self] in
                job()
                let next = state.withLock { s -> (@Sendable () -> Void)? in
                    if let next = s.pending.pop() { return next }
                    s.running -= 1
                    return nil
                }
                if let next { schedule(next) }
            }
        }
    }

    struct LaneState {
        var pending = JobQueue()
        /// Closures handed to the executor and not finished.
        var running = 0
    }
}

// MARK: The shared executor

extension BlockingExecutor {
    /// The process's executor for blocking work: `KAPPA_BLOCKING_THREADS` threads (2…256; a value
    /// outside that, or not a number, is ignored), else 16, unless `configureShared(threads:)`
    /// said otherwise before first use.
    public static let shared: BlockingExecutor = {
        let count = sharedSettings.withLock { settings -> Int in
            settings.inUse = true
            let environment = try? BlockingExecutor.threads(environment: ProcessInfo.processInfo.environment)
            return settings.threads ?? environment ?? defaultThreads
        }
        return BlockingExecutor(threads: count, name: "kappa-blocking")
    }()

    /// Threads of the shared executor when neither `configureShared` nor the environment says.
    public static let defaultThreads = 16
    /// The allowed sizes of the shared executor.
    public static let allowedThreads = 2...256

    private struct SharedSettings {
        var threads: Int?
        var inUse = false
    }

    private static let sharedSettings = Mutex(SharedSettings())

    /// Sizes the shared executor (JobHost's `--blocking-threads`). Only before its first use.
    /// - Throws: `BlockingExecutorError` when `threads` is outside 2…256 or the shared executor
    ///   is already in use.
    public static func configureShared(threads: Int) throws {
        guard allowedThreads.contains(threads) else {
            throw BlockingExecutorError(.invalidThreads, "blocking threads must be between \(allowedThreads.lowerBound) and \(allowedThreads.upperBound) (got \(threads))")
        }
        try sharedSettings.withLock { settings in
            guard !settings.inUse else {
                throw BlockingExecutorError(.alreadyInUse, "the shared blocking executor is already in use; size it before any blocking work")
            }
            settings.threads = threads
        }
    }

    /// `KAPPA_BLOCKING_THREADS` from `environment`, checked; nil when it is not set (or empty).
    /// - Throws: `BlockingExecutorError` when it is not a whole number in 2…256.
    public static func threads(environment: [String: String]) throws -> Int? {
        guard let text = environment["KAPPA_BLOCKING_THREADS"], !text.isEmpty else { return nil }
        guard let n = Int(text), allowedThreads.contains(n) else {
            throw BlockingExecutorError(.invalidThreads, "KAPPA_BLOCKING_THREADS=\(text): use a whole number between \(allowedThreads.lowerBound) and \(allowedThreads.upperBound)")
        }
        return n
    }
}

/// A misconfigured blocking executor.
public struct BlockingExecutorError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case invalidThreads
        case alreadyInUse
    }

    public var code: Code
    public var message: String
    public var description: String { message }

    init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
}

// MARK: Internals

extension BlockingExecutor {
    /// The queue and the threads; the threads keep it alive until it is shut down.
    final class Core: Sendable {
        struct State {
            var queue = JobQueue()
            var threads = 0
            /// Threads that found the queue empty and sleep (or are about to) on `wakeups`, minus
            /// the wake-ups already given to them.
            var idle = 0
            var busy = 0
            var shutdown = false
        }

        let state = Mutex(State())
        private let wakeups = WakeupCounter()
        private let limit: Int
        private let name: String

        init(limit: Int, name: String) {
            self.limit = limit
            self.name = name
        }

        func submit(_ job: @escaping @Sendable () -> Void) {
            enum Action { case none, wake, start(Int) }
            let action = state.withLock { s -> Action in
                s.queue.append(job)
                if s.idle > 0 {
                    s.idle -= 1
                    return .wake
                }
                if s.threads < limit {
                    s.threads += 1
                    return .start(s.threads)
                }
                return .none  // every thread is busy: the first to finish takes it
            }
            switch action {
            case .none: break
            case .wake: wakeups.signal()
            case .start(let n):
                let thread = Thread { [self] in work() }
                thread.name = "\(name)-\(n)"
                thread.stackSize = 2 << 20
                thread.start()
            }
        }

        func shutdown() {
            let sleeping = state.withLock { s -> Int in
                s.shutdown = true
                defer { s.idle = 0 }
                return s.idle
            }
            wakeups.signal(sleeping)
        }

        /// A thread's loop: the next closure, else sleep until one is queued.
        private func work() {
            enum Step { case run(@Sendable () -> Void), sleep, end }
            var finished = false
            while true {
                let step = state.withLock { s -> Step in
                    if finished { s.busy -= 1 }
                    if let job = s.queue.pop() {
                        s.busy += 1
                        return .run(job)
                    }
                    if s.shutdown {
                        s.threads -= 1
                        return .end
                    }
                    s.idle += 1
                    return .sleep
                }
                switch step {
                case .run(let job):
                    job()
                    finished = true
                case .sleep:
                    finished = false
                    wakeups.wait()
                case .end:
                    return
                }
            }
        }
    }

    /// A first-in first-out queue of closures (an array and a read index, compacted as it goes).
    struct JobQueue {
        private var items: [@Sendable () -> Void] = []
        private var head = 0

        var count: Int { items.count - head }

        mutating func append(_ job: @escaping @Sendable () -> Void) { items.append(job) }

        mutating func pop() -> (@Sendable () -> Void)? {
            guard head < items.count else { return nil }
            let job = items[head]
            head += 1
            if head == items.count {
                items.removeAll(keepingCapacity: true)
                head = 0
            } else if head >= 1024 && head * 2 >= items.count {
                items.removeFirst(head)
                head = 0
            }
            return job
        }
    }
}

/// Wake-ups counted on a condition variable: `signal` adds some, `wait` takes one, sleeping while
/// there are none. (A wake-up given before its sleeper sleeps is not lost.)
final class WakeupCounter: @unchecked Sendable {
    // Safe to share: `permits` is read and written only with `mutex` held, and the pthread
    // objects live at fixed addresses (allocated here, destroyed in deinit).
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var permits = 0

    init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    func signal(_ count: Int = 1) {
        guard count > 0 else { return }
        pthread_mutex_lock(mutex)
        permits += count
        if count == 1 { pthread_cond_signal(condition) } else { pthread_cond_broadcast(condition) }
        pthread_mutex_unlock(mutex)
    }

    func wait() {
        pthread_mutex_lock(mutex)
        while permits == 0 { pthread_cond_wait(condition, mutex) }
        permits -= 1
        pthread_mutex_unlock(mutex)
    }
}
