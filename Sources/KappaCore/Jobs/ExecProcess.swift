#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Foundation
import Synchronization

/// A job's program, running for one worker: JSON lines in on stdin, JSON lines out on stdout.
/// One `poll` loop up to a deadline writes the batch (stdin is non-blocking) while it reads the
/// answer and stderr, so a program that writes while it reads never deadlocks against full
/// pipes, and no thread is started per batch. The child is killed on deinit.
///
/// `@unchecked Sendable`: used by one worker at a time (its partition's).
final class ExecProcess: @unchecked Sendable {
    let argv: [String]
    private let child: ChildProcess
    private let inputFD: Int32
    private let outputFD: Int32
    private let errorsFD: Int32
    private var pending: [UInt8] = []
    private let stderrTail = StderrTail()

    /// Starts `argv[0]` (looked up in PATH) with the rest as arguments.
    /// - Throws: `ExecError` when it cannot be started.
    init(argv: [String]) throws {
        self.argv = argv
        signal(SIGPIPE, SIG_IGN)  // a program that exits early must not kill us through its pipe
        guard let path = Self.resolve(argv[0]) else {
            throw ExecError("program \"\(argv[0])\" not found (not a file, and not in PATH)")
        }
        let stdin = try ChildProcess.pipe(), stdout = try ChildProcess.pipe(), stderr = try ChildProcess.pipe()
        do {
            child = try ChildProcess(path: path, args: Array(argv.dropFirst()), environment: ProcessInfo.processInfo.environment,
                                     stdin: stdin.read, stdout: stdout.write, stderr: stderr.write)
        } catch {
            [stdin.read, stdin.write, stdout.read, stdout.write, stderr.read, stderr.write].forEach { _ = close($0) }
            throw ExecError("program \"\(argv[0])\" could not start: \(error)")
        }
        // The child's ends of the pipes: closed here so that its exit reads as end of file.
        [stdin.read, stdout.write, stderr.write].forEach { _ = close($0) }
        inputFD = stdin.write
        _ = fcntl(inputFD, F_SETFL, fcntl(inputFD, F_GETFL) | O_NONBLOCK)
        outputFD = stdout.read
        errorsFD = stderr.read
    }

    deinit {
        if child.isRunning { child.signal(SIGKILL) }
        close(inputFD)
        close(outputFD)
        close(errorsFD)
        child.waitUntilExit()  // reap it: no zombie left behind
    }

    var name: String { argv.joined(separator: " ") }

    /// Sends `lines` and returns the lines the program answers up to (not including) the first
    /// line for which `isEnd` holds.
    /// - Throws: `ExecError` when the program exits, or does not answer within `timeoutMs`.
    func exchange(_ lines: [String], timeoutMs: Int64, isEnd: ([UInt8]) -> Bool) throws -> [[UInt8]] {
        var unsent = Array((lines.joined(separator: "\n") + "\n").utf8)[...]
        let deadline = currentTimeMillis() + timeoutMs
        let fd = outputFD
        var answer: [[UInt8]] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            while let newline = pending.firstIndex(of: 0x0A) {
                let line = Array(pending[..<newline])
                pending.removeFirst(newline + 1)
                if isEnd(line) { return answer }
                answer.append(line)
            }
            let remaining = deadline - currentTimeMillis()
            if remaining <= 0 {
                child.signal(SIGKILL)
                throw ExecError("did not finish the batch within \(DurationText.format(milliseconds: timeoutMs)) (transform.timeout); it was stopped")
            }
            // The pipes in one poll (no dispatch sources): stderr is kept for error messages.
            var pollers = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0), pollfd(fd: errorsFD, events: Int16(POLLIN), revents: 0),
                           pollfd(fd: unsent.isEmpty ? -1 : inputFD, events: Int16(POLLOUT), revents: 0)]
            let ready = poll(&pollers, 3, Int32(min(remaining, 1000)))
            if ready < 0 && errno != EINTR { throw ExecError("poll failed: \(String(cString: strerror(errno)))") }
            if ready <= 0 { continue }
            if pollers[1].revents & Int16(POLLIN) != 0 { readErrors(buffer: &buffer) }
            if !unsent.isEmpty && pollers[2].revents != 0 {
                let n = unsent.withUnsafeBytes { Glibc.write(inputFD, $0.baseAddress!, $0.count) }
                if n > 0 {
                    unsent = unsent.dropFirst(n)
                } else if n < 0 && errno != EAGAIN && errno != EINTR {
                    unsent = []  // the program closed its stdin (or exited): its answer, or its end, says what happened
                }
            }
            if pollers[0].revents == 0 { continue }
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, $0.count) }
            if n > 0 {
                pending += buffer[0..<n]
            } else if n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN) {
                let ended = child.waitUntilExit()
                while readErrors(buffer: &buffer) > 0 {}  // the rest of its stderr, to end of file
                let tail = stderrTail.text.trimmingCharacters(in: .whitespacesAndNewlines)
                let how: String
                switch ended {
                case .exited(let code): how = "exited with status \(code)"
                case .signaled(let signal): how = "was killed by signal \(signal)"
                }
                throw ExecError("\(how) before the end of the batch" + (tail.isEmpty ? "" : "; its stderr ends: \(TerminalText.escaped(String(tail.suffix(300))))"))
            }
        }
    }

    /// Reads what the program wrote to stderr into the tail; returns the bytes read.
    @discardableResult
    private func readErrors(buffer: inout [UInt8]) -> Int {
        let n = buffer.withUnsafeMutableBytes { Glibc.read(errorsFD, $0.baseAddress!, $0.count) }
        if n > 0 { stderrTail.append(buffer[0..<n]) }
        return max(0, n)
    }

    /// The program's path: as given when it has a slash, else found in PATH.
    static func resolve(_ program: String) -> String? {
        if program.contains("/") { return FileManager.default.isExecutableFile(atPath: program) ? program : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in path.split(separator: ":") where FileManager.default.isExecutableFile(atPath: "\(dir)/\(program)") {
            return "\(dir)/\(program)"
        }
        return nil
    }
}

/// The last 2 KiB a program wrote to stderr, for error messages.
final class StderrTail: Sendable {
    private let bytes = Mutex<[UInt8]>([])

    func append(_ data: ArraySlice<UInt8>) {
        bytes.withLock { b in
            b += data
            if b.count > 2048 { b.removeFirst(b.count - 2048) }
        }
    }

    var text: String { bytes.withLock { String(decoding: $0, as: UTF8.self) } }
}

/// A program misbehaved (the caller adds which program, partition and offsets).
struct ExecError: Error, CustomStringConvertible {
    var message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}
