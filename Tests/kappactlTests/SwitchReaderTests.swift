import Foundation
import Testing
@testable import KappaCore

/// Readers of the SQLite reader view in processes of their own while `kappactl` switches the
/// view 500 times and JobHost runs: the `sqlite3` CLI one process per read, and Python's
/// `sqlite3` module. None of their reads fails. (Kappa's connections never checkpoint when they
/// close, which made readers without a busy timeout fail; a reader's own close still tries to,
/// so several readers at once need a busy timeout: README, "Reading the tables".)
@Suite struct SwitchReaderTests {
    static func tool(_ name: String) -> String? {
        ["/usr/bin/\(name)", "/usr/local/bin/\(name)"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    @Test func readersSeeNoErrorAcrossSwitches() async throws {
        guard let sqlite3 = Self.tool("sqlite3"), let python = Self.tool("python3") else {
            print("SwitchReaderTests: sqlite3 or python3 is not installed; skipped (apt-get install sqlite3 python3)")
            return
        }
        let switches = Int(ProcessInfo.processInfo.environment["KAPPA_TEST_SWITCHES"] ?? "") ?? 500
        let box = try Sandbox()
        try await box.kappactl(["topic", "create", "bpi", "--partitions", "2"])
        #expect(try await box.kappactl(["produce", "bpi"], stdin: WorkflowTests.feedLines(seed: 8, startMinute: 28_000_000, seconds: 600)).status == 0)
        let host = try box.start(Executables.jobHost, box.hostArguments)
        defer { kill(host.process.processIdentifier, SIGKILL) }
        #expect(try await box.kappactl(["deploy", "-f", WorkflowTests.root + "/Manifests/btc-v1.json", "--wait", "--timeout", "60s"]).status == 0)
        #expect(try await box.kappactl(["deploy", "-f", WorkflowTests.root + "/Manifests/btc-v2.json", "--wait", "--timeout", "60s"]).status == 0)
        #expect(try await box.kappactl(["promote", "btc"]).status == 0)

        let db = box.state + "/kappa.sqlite"
        // Each reader prints "ok N bad M" at the end and its errors on stderr.
        func cliReader(_ settings: String, stop: String) throws -> Child {
            try box.start("/bin/bash", ["-c", """
                ok=0; bad=0
                while [ ! -e \(stop) ]; do
                  if out=$(\(sqlite3) -cmd "\(settings)" \(db) "SELECT sum(samples) FROM btc_prices" 2>&1) && [ "$out" = 1800 ]; then ok=$((ok+1)); else bad=$((bad+1)); echo "got: $out" >&2; fi
                done
                echo "ok $ok bad $bad"
                """])
        }
        func pythonReader(timeout: String, stop: String) throws -> Child {
            try box.start(python, ["-c", """
                import os, sqlite3, sys
                ok = bad = 0
                while not os.path.exists(\(JSONScanner.quote(stop))):
                    try:
                        db = sqlite3.connect(\(JSONScanner.quote(db)), timeout=\(timeout))
                        (n,), = db.execute("SELECT sum(samples) FROM btc_prices").fetchall()
                        db.close()
                        if n == 1800: ok += 1
                        else: bad += 1; print(n, file=sys.stderr)
                    except Exception as e:
                        bad += 1; print(e, file=sys.stderr)
                print("ok", ok, "bad", bad)
                """])
        }
        func switchWhile(_ readers: [(String, Child)], stop: String, count: Int) async throws {
            defer { readers.forEach { kill($0.1.process.processIdentifier, SIGKILL) } }
            for i in 0..<count {
                let result = try await box.kappactl(i % 2 == 0 ? ["rollback", "btc"] : ["promote", "btc"])
                #expect(result.status == 0, "\(result.stderr)")
            }
            _ = FileManager.default.createFile(atPath: stop, contents: nil)
            for (name, reader) in readers {
                let done = await reader.finish(timeout: 30)
                let words = done.stdout.split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
                #expect(words.count == 4 && words[0] == "ok" && (Int(words[1]) ?? 0) > 0, "\(name): \(done.stdout) \(done.stderr.suffix(500))")
                #expect(words.count == 4 && words[3] == "0", "\(name) read errors: \(done.stdout) \(Array(Set(done.stderr.split(separator: "\n"))).prefix(3))")
            }
        }
        // A reader with no busy timeout that does not checkpoint when it closes: nothing Kappa
        // does (switches, kappactl's processes opening and closing) gets in its way.
        let first = box.root + "/stop1"
        try await switchWhile([("sqlite3, no busy timeout", try cliReader(".output /dev/null\" -cmd \".dbconfig no_ckpt_on_close on\" -cmd \".output stdout", stop: first))], stop: first, count: switches / 2)
        // Readers as the README says, several at once: a busy timeout covers the instant in which
        // another reader's own close tries to checkpoint.
        let second = box.root + "/stop2"
        try await switchWhile([("sqlite3 .timeout 1000", try cliReader(".timeout 1000", stop: second)),
                               ("python3 timeout=1", try pythonReader(timeout: "1", stop: second))], stop: second, count: switches - switches / 2)
    }
}
