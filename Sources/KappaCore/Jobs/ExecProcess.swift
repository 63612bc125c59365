#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Foundation
import Synchronization

/// A job's program, running for one worker: JSON lines in on stdin, JSON lines out on stdout.
/// Reads wait with `poll` up to a deadline; writes happen on a thread of their own, so a program
/// that writes while it reads never deadlocks against full pipes. The child is killed on deinit.
///
/// `@unchecked Sendable`: used by one worker at a time (its partition's), and the only state
/// touched from the writer thread is the input pipe's write end.
final class ExecProcess: @unchecked Sendable {
    let argv: [String]
    private let process = Process()
    private let input = Pipe()
    private let output = Pipe()
    private let errors = Pipe()
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
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = Array(argv.dropFirst())
        process.standardInput = input
        process.standardOutput = output
        process.standardError = errors
        do {
            try process.run()
        } catch {
            throw ExecError("program \"\(argv[0])\" could not start: \(error.localizedDescription)")
        }
        // The child's ends of the pipes: closed here so that its exit reads as end of file.
        try? output.fileHandleForWriting.close()
        try? errors.fileHandleForWriting.close()
        try? input.fileHandleForReading.close()
        let tail = stderrTail
        errors.fileHandleForReading.readabilityHandler = { handle in tail.append(handle.availableData) }
    }

    deinit {
        errors.fileHandleForReading.readabilityHandler = nil
        if process.isRunning { process.terminate() }
        try? input.fileHandleForWriting.close()
    }

    var name: String { argv.joined(separator: " ") }

    /// Sends `lines` and returns the lines the program answers up to (not including) the first
    /// line for which `isEnd` holds.
    /// - Throws: `ExecError` when the program exits, or does not answer within `timeoutMs`.
    func exchange(_ lines: [String], timeoutMs: Int64, isEnd: ([UInt8]) -> Bool) throws -> [[UInt8]] {
        let text = Data((lines.joined(separator: "\n") + "\n").utf8)
        let writer = input.fileHandleForWriting
        let written = DispatchSemaphore(value: 0)
        let writeFailed = Mutex(false)
        // Its own thread: a full pipe may block this write until the program reads.
        Thread {
            do { try writer.write(contentsOf: text) } catch { writeFailed.withLock { $0 = true } }
            written.signal()
        }.start()
        defer { written.wait() }
        let deadline = currentTimeMillis() + timeoutMs
        let fd = output.fileHandleForReading.fileDescriptor
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
                process.terminate()
                throw ExecError("did not finish the batch within \(DurationText.format(milliseconds: timeoutMs)) (transform.timeout); it was stopped")
            }
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, Int32(min(remaining, 1000)))
            if ready < 0 && errno != EINTR { throw ExecError("poll failed: \(String(cString: strerror(errno)))") }
            if ready <= 0 { continue }
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, $0.count) }
            if n > 0 {
                pending += buffer[0..<n]
            } else if n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN) {
                process.waitUntilExit()
                errors.fileHandleForReading.readabilityHandler = nil
                stderrTail.append(errors.fileHandleForReading.readDataToEndOfFile())
                let tail = stderrTail.text.trimmingCharacters(in: .whitespacesAndNewlines)
                let how = process.terminationReason == .uncaughtSignal ? "was killed by signal \(process.terminationStatus)" : "exited with status \(process.terminationStatus)"
                throw ExecError("\(how) before the end of the batch" + (tail.isEmpty ? "" : "; its stderr ends: \(tail.suffix(300))"))
            }
        }
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

    func append(_ data: Data) {
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
