import Foundation
import Synchronization

/// A child process started with posix_spawn and reaped with waitpid by this object alone.
/// (Foundation's Process lost track of a child's exit now and then when tests started many at
/// once, leaving a test waiting forever.)
final class SpawnedProcess: Sendable {
    let processIdentifier: pid_t
    private let exit = Mutex<Int32?>(nil)

    /// Starts `executable` with `args` and the environment `environment` (in this process's
    /// working directory: every test passes its state directory explicitly), with the
    /// given descriptors as its stdin, stdout and stderr (the caller closes its copies).
    init(_ executable: String, _ args: [String], environment: [String: String],
         stdin: Int32, stdout: Int32, stderr: Int32) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, stdin, 0)
        posix_spawn_file_actions_adddup2(&actions, stdout, 1)
        posix_spawn_file_actions_adddup2(&actions, stderr, 2)
        let argv = ([executable] + args).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, nil, argv, envp)
        guard rc == 0 else { throw IOErrorForTests("posix_spawn \(executable): \(String(cString: strerror(rc)))") }
        processIdentifier = pid
    }

    /// Exit code, or 128 + the signal that killed it; nil while it runs.
    private func reap(blocking: Bool) -> Int32? {
        exit.withLock { known in
            if let known { return known }
            var status: Int32 = 0
            var rc: pid_t
            repeat { rc = waitpid(processIdentifier, &status, blocking ? 0 : WNOHANG) } while rc < 0 && errno == EINTR
            guard rc == processIdentifier else { return nil }
            let code = status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
            known = code
            return code
        }
    }

    var isRunning: Bool { reap(blocking: false) == nil }

    /// Waits for the exit and returns the status (see `reap`).
    @discardableResult
    func waitUntilExit() -> Int32 { reap(blocking: true) ?? -1 }

    var terminationStatus: Int32 { reap(blocking: false) ?? -1 }

    func terminate() { kill(processIdentifier, SIGTERM) }
}

struct IOErrorForTests: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
