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
    /// Batches sent so far.
    private var exchanges = 0
    private let stderrTail = StderrTail()

    /// Starts `argv[0]` (looked up in the program's PATH) with the rest as arguments and
    /// the variables JobHost passes on (`isInherited`) plus `environment` (`transform.env`) as
    /// its whole environment.
    /// - Throws: `ExecError` when it cannot be started.
    init(argv: [String], environment: [String: String] = [:]) throws {
        self.argv = argv
        signal(SIGPIPE, SIG_IGN)  // a program that exits early must not kill us through its pipe
        let variables = Self.environment(environment)
        let path = try Self.locate(argv[0], environment: variables)
        let stdin = try ChildProcess.pipe(), stdout = try ChildProcess.pipe(), stderr = try ChildProcess.pipe()
        do {
            child = try ChildProcess(path: path, args: Array(argv.dropFirst()), environment: variables,
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
    ///   Output that follows the end line, or that arrived since the last batch's end, is a
    ///   protocol error (it would otherwise count as the next batch's), and so is an end line
    ///   before the whole batch was written.
    func exchange(_ lines: [String], timeoutMs: Int64, isEnd: ([UInt8]) -> Bool) throws -> [[UInt8]] {
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        try checkNothingUnasked(buffer: &buffer)
        exchanges += 1
        var unsent = Array((lines.joined(separator: "\n") + "\n").utf8)[...]
        let deadline = currentTimeMillis() + timeoutMs
        let fd = outputFD
        var answer: [[UInt8]] = []
        while true {
            while let newline = pending.firstIndex(of: 0x0A) {
                let line = Array(pending[..<newline])
                pending.removeFirst(newline + 1)
                guard isEnd(line) else {
                    answer.append(line)
                    continue
                }
                guard unsent.isEmpty else {
                    throw ExecError("protocol error: it wrote {\"batchEnd\": true} before it was sent the whole batch (\(unsent.count) bytes were still to write)")
                }
                if let extra = Self.firstContentLine(pending) {
                    throw ExecError("protocol error: it wrote \(Self.shown(extra)) after {\"batchEnd\": true}; nothing may follow the end of a batch before the next batch is sent")
                }
                return answer
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

    /// Output that is there before a batch is sent: after the last batch's end (or, before the
    /// first batch, at start) the program must wait for input. Blank lines are tolerated.
    private func checkNothingUnasked(buffer: inout [UInt8]) throws {
        var ready = pollfd(fd: outputFD, events: Int16(POLLIN), revents: 0)
        while poll(&ready, 1, 0) > 0 && ready.revents & Int16(POLLIN) != 0 {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(outputFD, $0.baseAddress!, $0.count) }
            guard n > 0 else { break }  // end of file: the exchange reports how it ended
            pending += buffer[0..<n]
        }
        guard let extra = Self.firstContentLine(pending) else { return }
        let when = exchanges == 0 ? "before it was sent its first batch" : "after {\"batchEnd\": true}, before the next batch was sent"
        throw ExecError("protocol error: it wrote \(Self.shown(extra)) \(when)")
    }

    /// The first line (or unterminated rest) of `bytes` that is not blank.
    static func firstContentLine(_ bytes: [UInt8]) -> [UInt8]? {
        bytes.split(separator: 0x0A, omittingEmptySubsequences: true).first { !isBlank($0) }.map(Array.init)
    }

    static func isBlank(_ line: some Collection<UInt8>) -> Bool { line.allSatisfy { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D } }

    /// A line of the program's output as error messages quote it: at most 200 bytes.
    static func shown(_ line: [UInt8]) -> String { JSONScanner.quote(String(decoding: line.prefix(200), as: UTF8.self)) }

    /// Reads what the program wrote to stderr into the tail; returns the bytes read.
    @discardableResult
    private func readErrors(buffer: inout [UInt8]) -> Int {
        let n = buffer.withUnsafeMutableBytes { Glibc.read(errorsFD, $0.baseAddress!, $0.count) }
        if n > 0 { stderrTail.append(buffer[0..<n]) }
        return max(0, n)
    }

    /// What JobHost passes on of its own environment; nothing else of it reaches a program.
    static func isInherited(_ name: String) -> Bool {
        ["PATH", "HOME", "LANG", "TZ"].contains(name) || name.hasPrefix("LC_")
    }

    /// A program's whole environment: what `parent` passes on (`isInherited`), then `manifest`'s.
    static func environment(_ manifest: [String: String],
                            parent: [String: String] = ProcessInfo.processInfo.environment) -> [String: String] {
        parent.filter { isInherited($0.key) }.merging(manifest) { $1 }
    }

    /// The program's path: as given when it has a slash, else found in the PATH of
    /// `environment` (the program's). It must be an executable regular file.
    /// - Throws: `ExecError` saying what is wrong.
    static func locate(_ program: String, environment: [String: String]) throws -> String {
        let quoted = JSONScanner.quote(program)
        guard !program.isEmpty else { throw ExecError("the program's name is empty") }
        if program.contains("/") {
            var info = stat()
            guard stat(program, &info) == 0 else { throw ExecError("program \(quoted) not found (not a file, and not in PATH)") }
            switch info.st_mode & S_IFMT {
            case S_IFREG: break
            case S_IFDIR: throw ExecError("program \(quoted) is a directory, not an executable file")
            default: throw ExecError("program \(quoted) is not a regular file")
            }
            guard access(program, X_OK) == 0 else { throw ExecError("program \(quoted) is not executable (no execute permission)") }
            return program
        }
        let path = environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(program)"
            var info = stat()
            if stat(candidate, &info) == 0, info.st_mode & S_IFMT == S_IFREG, access(candidate, X_OK) == 0 { return candidate }
        }
        throw ExecError("program \(quoted) not found (not a file, and not in PATH)")
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
