#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// A child process started with posix_spawn and reaped with waitpid by this object alone.
/// (Foundation's Process can lose track of a child's exit when many are started at once,
/// leaving its waiter blocked forever.)
public final class ChildProcess: Sendable {
    public enum Termination: Sendable, Equatable {
        case exited(Int32)
        case signaled(Int32)

        /// The exit code, or 128 + the signal, as a shell reports it.
        public var status: Int32 {
            switch self {
            case .exited(let code): return code
            case .signaled(let signal): return 128 + signal
            }
        }
    }

    public let processIdentifier: pid_t
    private let termination = Mutex<Termination?>(nil)

    /// Starts `path` with `args` and `environment` (`KEY=VALUE`), with `stdin`, `stdout` and
    /// `stderr` as its descriptors 0, 1 and 2; the caller closes its own copies.
    /// - Throws: `IOError` naming the program.
    public init(path: String, args: [String], environment: [String: String], stdin: Int32, stdout: Int32, stderr: Int32) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, stdin, 0)
        posix_spawn_file_actions_adddup2(&actions, stdout, 1)
        posix_spawn_file_actions_adddup2(&actions, stderr, 2)
        let argv = ([path] + args).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, nil, argv, envp)
        guard rc == 0 else { throw IOError("posix_spawn", path: path, code: rc) }
        processIdentifier = pid
    }

    private func reap(blocking: Bool) -> Termination? {
        if blocking, termination.withLock({ $0 }) == nil {
            // Wait for the exit outside the lock, without reaping (WNOWAIT), so that `isRunning`
            // on another thread never waits behind this; the reaping below then does not block.
            var info = siginfo_t()
            var rc: Int32
            repeat { rc = waitid(P_PID, id_t(processIdentifier), &info, WEXITED | WNOWAIT) } while rc < 0 && errno == EINTR
        }
        return termination.withLock { known in
            if let known { return known }
            var status: Int32 = 0
            var rc: pid_t
            repeat { rc = waitpid(processIdentifier, &status, WNOHANG) } while rc < 0 && errno == EINTR
            guard rc == processIdentifier else { return nil }
            let ended: Termination = status & 0x7F == 0 ? .exited((status >> 8) & 0xFF) : .signaled(status & 0x7F)
            known = ended
            return ended
        }
    }

    public var isRunning: Bool { reap(blocking: false) == nil }

    /// Waits for the child to end. Blocking, for as long as the child runs: on the blocking
    /// executor, only for a child that was told to end (or is known to end soon).
    @discardableResult
    public func waitUntilExit() -> Termination { reap(blocking: true) ?? .exited(-1) }

    /// How it ended (`exited(-1)` while it runs).
    public var terminationStatus: Int32 { reap(blocking: false)?.status ?? -1 }

    public func signal(_ number: Int32) { kill(processIdentifier, number) }

    /// SIGTERM.
    public func terminate() { signal(SIGTERM) }

    /// A pipe whose two ends are closed on exec (a child gets its end through dup2, which clears the flag).
    public static func pipe() throws -> (read: Int32, write: Int32) {
        var fds: [Int32] = [0, 0]
        guard Glibc.pipe(&fds) == 0 else { throw IOError("pipe", path: "-") }
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        return (fds[0], fds[1])
    }
}
