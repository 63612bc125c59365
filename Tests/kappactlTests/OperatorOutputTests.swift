import Foundation
import Testing
@testable import KappaCore

#if canImport(Glibc)
import Glibc
#endif

/// Job-controlled text reaches the operator with its control characters escaped: a program's
/// stderr or a value cannot clear the screen (`ESC [2J`) or forge a line of output.
@Suite(.serialized) struct OperatorOutputTests {
    static let attack = "\u{1b}[2J\nforged: all is well"

    static func expectEscaped(_ output: String, _ what: String, shown: Bool = true) {
        #expect(!output.contains("\u{1b}"), "a raw ESC in \(what)")
        if shown { #expect(output.contains("\\e[2J"), "\(what): \(output)") }
        #expect(!output.split(separator: "\n").contains { $0.hasPrefix("forged") }, "a forged line in \(what)")
    }

    @Test func anExecProgramsStderrCannotDrawOnTheTerminal() async throws {
        let box = try Sandbox()
        try await box.kappactl(["demo", "produce", "--minutes", "2"])
        let script = #"read -r l; printf '\033[2J\nforged: all is well\n' >&2; exit 1"#
        let manifest = """
            {"job": "x", "version": 1, "source": {"topic": "bpi"},
             "output": {"table": "latest", "columns": {"currency": "TEXT", "rate": "REAL"}, "primaryKey": ["currency"]},
             "transform": {"exec": ["/bin/sh", "-c", \(JSONScanner.quote(script))], "timeout": "20s"}, "batch": 100}
            """
        try manifest.write(toFile: box.root + "/x.json", atomically: true, encoding: .utf8)
        #expect(try await box.kappactl(["deploy", "-f", box.root + "/x.json"]).status == 0)
        let host = try box.start(Executables.jobHost, box.hostArguments)
        defer { kill(host.process.processIdentifier, SIGKILL) }
        try await WorkflowTests.waitUntil("version 1 fails") {
            try await WorkflowTests.status(box, "x").jobs.first?.versions.first?.state == .failed
        }
        let status = try await box.kappactl(["status", "x"])
        Self.expectEscaped(status.stdout, "kappactl status")
        #expect(status.stdout.contains("its stderr ends: \\e[2J\\nforged: all is well"))
        Self.expectEscaped(try await box.kappactl(["history", "x"]).stdout, "kappactl history", shown: false)
        // JSON carries the text escaped as JSON does (\u001b), never a raw byte.
        #expect(!(try await box.kappactl(["status", "x", "--output", "json"])).stdout.contains("\u{1b}"))
    }

    @Test func aValueInATableCannotDrawOnTheTerminal() async throws {
        let box = try Sandbox()
        try await box.kappactl(["demo", "produce", "--minutes", "2"])
        let host = try box.start(Executables.jobHost, box.hostArguments)
        defer { kill(host.process.processIdentifier, SIGKILL) }
        #expect(try await box.kappactl(["deploy", "-f", WorkflowTests.root + "/Manifests/btc-v1.json", "--wait", "--timeout", "60s"]).status == 0)
        let query = try await box.kappactl(["query", "btc", "SELECT char(27) || '[2J' || char(10) || 'forged: all is well' AS note"])
        #expect(query.status == 0, "\(query.stderr)")
        Self.expectEscaped(query.stdout, "kappactl query")
        #expect(query.lines == ["NOTE", "\\e[2J\\nforged: all is well", "(1 row)"])
    }

    @Test func controlCharactersAreEscapedAndTheRestKept() {
        #expect(TerminalText.escaped("a\u{1b}[2Jb\r\n\t\u{7f}\u{9b}\u{202e}é\\") == "a\\e[2Jb\\r\\n\\t\\x7f\\u{9b}\\u{202e}é\\")
        #expect(TerminalText.escaped("plain text") == "plain text")
        #expect(TerminalText.escapedKeepingLines("one\u{1b}\ntwo") == "one\\e\ntwo")
    }

    /// A catalog URL read from a file is never shown back, whichever build reads it (no
    /// PostgreSQL support, or a server that does not answer).
    @Test func aCatalogURLFromAFileIsNeverShown() async throws {
        let box = try Sandbox()
        try "postgres://kappa:s3cret-pw@127.0.0.1:1/x\n".write(toFile: box.root + "/catalog", atomically: true, encoding: .utf8)
        let status = try await box.kappactl(["--catalog-file", box.root + "/catalog", "status"])
        #expect(status.status != 0)
        #expect(status.stderr.contains("postgres://kappa:***@127.0.0.1:1/x"), "\(status.stderr)")
        #expect(!status.stderr.contains("s3cret"))
        let missing = try await box.kappactl(["--catalog-file", box.root + "/nope", "status"])
        #expect(missing.status == 2 && missing.stderr.hasPrefix("error: --catalog-file \(box.root)/nope: no such file\n"))
    }

    /// The page's `esc` (run by Node, the page's own script text): HTML escaped and control
    /// characters shown as `\u001b`, so a version's error cannot forge a line on the page either.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/node"), "Node is not installed"))
    func thePageEscapesControlCharacters() async throws {
        let box = try Sandbox()
        let page = StatusPage.html
        let start = try #require(page.range(of: "const esc = "))
        let end = try #require(page.range(of: ";\n", range: start.upperBound..<page.endIndex))
        let script = String(page[start.lowerBound..<end.upperBound]) + "\nprocess.stdout.write(esc(\"<b>\\u001b[2J\\nforged\"));\n"
        try script.write(toFile: box.root + "/esc.js", atomically: true, encoding: .utf8)
        let run = try await box.run("/usr/bin/node", [box.root + "/esc.js"])
        #expect(run.stdout == "&lt;b&gt;\\u001b[2J\\u000aforged", "\(run.stdout) \(run.stderr)")
    }
}
