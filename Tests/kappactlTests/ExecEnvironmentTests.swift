import Foundation
import Testing
@testable import KappaCore

/// What an exec job's program can see of JobHost: its environment is a short allow-list plus the
/// manifest's `transform.env`, so JobHost's secrets cannot be copied into a table and read back.
@Suite struct ExecEnvironmentTests {
    @Test func aProgramCannotCopyJobHostsSecretsIntoItsTable() async throws {
        let box = try Sandbox()
        try await box.kappactl(["demo", "produce", "--minutes", "1"])
        // Every variable the program sees, into its table.
        let program = box.root + "/env.py"
        try """
            import json, os, sys
            for line in sys.stdin:
                if "batchEnd" in json.loads(line):
                    for name, value in os.environ.items():
                        print(json.dumps({"upsert": {"name": name, "value": value}}))
                    print(json.dumps({"batchEnd": True}), flush=True)
            """.write(toFile: program, atomically: true, encoding: .utf8)
        // The interpreter itself, not a launcher (pyenv's shim, a shell) that would add variables of its own.
        let python = try await box.run("/usr/bin/env", ["python3", "-c", "import sys; print(sys.executable)"]).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let manifest = box.root + "/env.json"
        try """
            {"job": "env", "version": 1, "source": {"topic": "bpi"},
             "output": {"table": "seen", "columns": {"name": "TEXT", "value": "TEXT"}, "primaryKey": ["name"]},
             "transform": {"exec": [\(JSONScanner.quote(python)), \(JSONScanner.quote(program))], "env": {"MODE": "fast", "TZ": "UTC"}}}
            """.write(toFile: manifest, atomically: true, encoding: .utf8)
        let token = "secret-token-\(UUID().uuidString)"
        let host = try box.start(Executables.jobHost, ["--state", box.state],
                                 environment: ["KAPPA_HTTP_TOKEN": token, "DATABASE_PASSWORD": "hunter2", "LC_ALL": "C.UTF-8", "TZ": "Europe/Paris"])
        defer { kill(host.process.processIdentifier, SIGKILL) }
        let deployed = try await box.kappactl(["deploy", "-f", manifest, "--wait", "--timeout", "60s"])
        #expect(deployed.status == 0, "\(deployed.stderr)")

        let result = try await box.kappactl(["query", "env", "--output", "json"])
        #expect(!result.stdout.contains(token) && !result.stdout.contains("hunter2"))
        let json = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        let rows = (json?["rows"] as? [[String: Any]]) ?? []
        let seen = Dictionary(rows.compactMap { row in (row["name"] as? String).map { ($0, row["value"] as? String ?? "") } }) { a, _ in a }
        let allowed: Set = ["PATH", "HOME", "LANG", "TZ", "MODE"]
        #expect(seen.keys.filter { !allowed.contains($0) && !$0.hasPrefix("LC_") }.sorted() == [])
        #expect(seen["MODE"] == "fast")
        #expect(seen["TZ"] == "UTC")  // the manifest's value over JobHost's
        #expect(seen["LC_ALL"] == "C.UTF-8")
    }
}
