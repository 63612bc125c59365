#if canImport(Glibc)
import Glibc
#endif
import CKappaSys
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

    /// Starts `path` with `args` and exactly `environment` (`KEY=VALUE`), with `stdin`, `stdout`
    /// and `stderr` as its descriptors 0, 1 and 2 (a negative one: the child keeps this process's);
    /// the caller closes its own copies. The child gets no other descriptor of this process,
    /// whatever its close-on-exec flag, and starts with every signal at its default action and
    /// none blocked (JobHost ignores SIGPIPE and handles SIGTERM through ignored dispositions,
    /// which a child would otherwise inherit).
    /// - Throws: `IOError` naming the program.
    public init(path: String, args: [String], environment: [String: String], stdin: Int32, stdout: Int32, stderr: Int32) throws {
        // A source among 0…2 could be overwritten by an earlier dup2 of the three: use a copy above.
        var copies: [Int32] = []
        defer { copies.forEach { _ = close($0) } }
        func above(_ fd: Int32) -> Int32 {
            guard fd >= 0 && fd <= 2 else { return fd }
            let copy = fcntl(fd, F_DUPFD_CLOEXEC, 3)
            guard copy >= 0 else { return fd }
            copies.append(copy)
            return copy
        }
        let sources = [above(stdin), above(stdout), above(stderr)]
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (target, source) in sources.enumerated() where source >= 0 {
            posix_spawn_file_actions_adddup2(&actions, source, Int32(target))
        }
        // Everything else closed in the child, including descriptors a library opened without
        // O_CLOEXEC: a program never holds the log's files, the catalog or another child's pipe.
        _ = kappa_spawn_closefrom(&actions, 3)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var all = sigset_t(), none = sigset_t()
        sigfillset(&all)
        sigemptyset(&none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        let argv = ([path] + args).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, &attributes, argv, envp)
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

    /// A pipe whose two ends are close-on-exec from the start (pipe2), so that a child another
    /// thread starts meanwhile cannot inherit them (a child gets its end through dup2, which
    /// clears the flag).
    public static func pipe() throws -> (read: Int32, write: Int32) {
        var fds: [Int32] = [0, 0]
        guard kappa_pipe_cloexec(&fds) == 0 else { throw IOError("pipe", path: "-") }
        return (fds[0], fds[1])
    }
}
