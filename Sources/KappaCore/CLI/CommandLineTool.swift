#if canImport(Glibc)
import Glibc
#endif

/// What `--version` prints.
public enum KappaVersion {
    /// Kappa's release (semantic versioning; while 0.x, commands and the catalog may change,
    /// and a catalog is migrated forward, never back).
    public static let release = "0.1.0"
    /// The catalog's schema version (its migrations): a catalog newer than this is refused.
    public static var catalogSchema: Int { SQLCatalog.schemaVersion }
}

/// Runs a command tree as a program: parse, run, map errors to exit codes and messages.
public enum CommandLineTool {
    /// Parses `arguments` (without the program name), runs the command, and returns the exit
    /// code. Usage errors print the message and the command's help on stderr (exit 2); other
    /// errors print one line on stderr.
    public static func run(_ root: Command, arguments: [String]) async -> Int32 {
        // `--version` among the top level's options (before any command).
        if let at = arguments.firstIndex(of: "--version"),
           !arguments[..<at].contains(where: { argument in root.subcommands.contains { $0.name == argument } }) {
            Console.out("\(root.name) \(KappaVersion.release) (catalog schema \(KappaVersion.catalogSchema))")
            return ExitCode.ok.rawValue
        }
        do {
            switch try root.parse(arguments) {
            case .help(let text):
                Console.out(text, terminator: "")
                return ExitCode.ok.rawValue
            case .run(let command, let parsed):
                try await command.run!(parsed)
                return ExitCode.ok.rawValue
            }
        } catch let error as UsageError {
            Console.error("error: \(TerminalText.escapedKeepingLines(error.message))")
            if !error.usage.isEmpty { Console.error("\n" + error.usage, terminator: "") }
            return ExitCode.usage.rawValue
        } catch {
            Console.error("error: \(TerminalText.escapedKeepingLines("\(error)"))")
            return ExitCode.of(error).rawValue
        }
    }
}

/// Line output for the executables: stdout for results, stderr for errors and progress.
public enum Console {
    public static func out(_ text: String, terminator: String = "\n") {
        write(1, text + terminator)
    }

    public static func error(_ text: String, terminator: String = "\n") {
        write(2, text + terminator)
    }

    /// True when stderr is a terminal (progress lines are drawn only then).
    public static var stderrIsTerminal: Bool { isatty(2) == 1 }

    /// True when stdout is a terminal.
    public static var stdoutIsTerminal: Bool { isatty(1) == 1 }

    /// Writes unbuffered, so that output from several places keeps its order.
    public static func write(_ fd: Int32, _ text: String) {
        var bytes = Array(text.utf8)
        var done = 0
        bytes.withUnsafeMutableBytes { buf in
            while done < buf.count {
                let n = Glibc.write(fd, buf.baseAddress! + done, buf.count - done)
                if n < 0 { if errno == EINTR { continue }; return }
                done += n
            }
        }
    }
}
