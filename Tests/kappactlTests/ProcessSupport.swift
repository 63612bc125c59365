import Foundation
@testable import KappaCore

/// The built executables, found beside the test bundle (`swift build` puts them together).
enum Executables {
    static var directory: String {
        let beside = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path
        if FileManager.default.isExecutableFile(atPath: beside + "/kappactl") { return beside }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        return root + "/.build/debug"
    }

    static var kappactl: String { directory + "/kappactl" }
    static var jobHost: String { directory + "/JobHost" }
}

struct RunResult {
    var status: Int32
    var stdout: String
    var stderr: String

    var lines: [String] { stdout.split(separator: "\n").map(String.init) }
}

/// A temp state directory and helpers to run the executables against it.
final class Sandbox: Sendable {
    let root: String
    var state: String { root + "/state" }
    /// A catalog URL every kappactl and JobHost run of this sandbox gets (`--catalog`), if any.
    let catalog: String?
    /// A log URL (`--log kafka://…`) every kappactl and JobHost run of this sandbox gets, if any.
    let log: String?

    init(catalog: String? = nil, log: String? = nil) throws {
        root = try FileSystem.makeTemporaryDirectory(prefix: "kappactl-test")
        self.catalog = catalog
        self.log = log
    }

    /// `--catalog` and `--log` when the sandbox has them.
    var backendArguments: [String] { (catalog.map { ["--catalog", $0] } ?? []) + (log.map { ["--log", $0] } ?? []) }

    /// `--state` (and `--catalog`, `--log`) for JobHost.
    var hostArguments: [String] { ["--state", state] + backendArguments }

    deinit { try? FileSystem.removeTree(root) }

    /// Runs `kappactl --state <state> args…` to completion, with `stdin` as its input.
    @discardableResult
    func kappactl(_ args: [String], stdin: String = "", withState: Bool = true) async throws -> RunResult {
        try await run(Executables.kappactl, (withState ? ["--state", state] : []) + backendArguments + args, stdin: stdin)
    }

    /// Runs a process to completion. The waiting happens on a thread of its own, never on the
    /// cooperative pool, which async tests running beside this one need.
    func run(_ executable: String, _ args: [String], stdin: String = "", environment extra: [String: String] = [:]) async throws -> RunResult {
        try await offPool { try self.runBlocking(executable, args, stdin: stdin, environment: extra) }
    }

    private func runBlocking(_ executable: String, _ args: [String], stdin: String, environment extra: [String: String]) throws -> RunResult {
        let inPath = "\(root)/\(UUID().uuidString).in"
        _ = FileManager.default.createFile(atPath: inPath, contents: Data(stdin.utf8))
        defer { try? FileManager.default.removeItem(atPath: inPath) }
        let input = open(inPath, O_RDONLY | O_CLOEXEC)
        defer { close(input) }
        let child = try launch(executable, args, input: input, environment: extra)
        child.process.waitUntilExit()
        defer { child.removeFiles() }
        return child.output()
    }

    /// Starts a process with a pipe for stdin; stdout and stderr go to files read by `finish`.
    func start(_ executable: String, _ args: [String], environment extra: [String: String] = [:]) throws -> Child {
        let (read, write) = try ChildProcess.pipe()
        defer { close(read) }
        var child = try launch(executable, args, input: read, environment: extra)
        child.input = FileHandle(fileDescriptor: write, closeOnDealloc: true)
        return child
    }

    /// Starts `executable` in the sandbox (without KAPPA_STATE), stdout and stderr to files.
    private func launch(_ executable: String, _ args: [String], input: Int32, environment extra: [String: String]) throws -> Child {
        let id = UUID().uuidString
        let outPath = "\(root)/\(id).out", errPath = "\(root)/\(id).err"
        let out = open(outPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        let err = open(errPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        defer { close(out); close(err) }
        var environment = ProcessInfo.processInfo.environment
        environment["KAPPA_STATE"] = nil
        environment.merge(extra) { $1 }
        let process = try ChildProcess(path: executable, args: args, environment: environment, stdin: input, stdout: out, stderr: err)
        return Child(process: process, input: nil, outPath: outPath, errPath: errPath)
    }
}

/// A running child process.
struct Child: @unchecked Sendable {  // used from one test at a time; ChildProcess is Sendable
    let process: ChildProcess
    var input: FileHandle?
    let outPath: String
    let errPath: String

    func write(_ text: String) throws { try input!.write(contentsOf: Data(text.utf8)) }

    func closeInput() throws { try input!.close() }

    /// What the process printed so far.
    func output() -> RunResult {
        RunResult(status: process.terminationStatus,
                  stdout: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
                  stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")
    }

    func removeFiles() {
        [outPath, errPath].forEach { try? FileManager.default.removeItem(atPath: $0) }
    }

    /// Waits for exit (killing the child after `timeout` seconds) and returns its output.
    func finish(timeout: Double = 60) async -> RunResult {
        let child = self
        return (try? await offPool { child.finishBlocking(timeout: timeout) }) ?? RunResult(status: -1, stdout: "", stderr: "")
    }

    private func finishBlocking(timeout: Double) -> RunResult {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning { process.terminate(); process.waitUntilExit() }
        return output()
    }
}

/// Process waits block: on a thread of their own (tests may wait on many processes at once,
/// which the product's bounded executor would queue).
func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result { try body() }) }
        thread.stackSize = 1 << 20
        thread.start()
    }
}
