import Foundation
import Testing
@testable import KappaCore

@Suite struct ExecJobTests {
    static func manifest(_ argv: [String], timeout: String = "10s") -> String {
        """
        {"job": "x", "version": 1, "source": {"topic": "bpi"},
         "output": {"table": "latest", "columns": {"currency": "TEXT", "ts": "INTEGER", "rate": "REAL"}, "primaryKey": ["currency"]},
         "transform": {"exec": [\(argv.map(JSONScanner.quote).joined(separator: ", "))], "timeout": "\(timeout)"}, "batch": 300}
        """
    }

    static func sh(_ script: String) -> [String] { ["/bin/sh", "-c", script] }

    @Test func theShippedPythonExampleKeepsTheLatestRatePerCurrency() async throws {
        let f = try await StoreFixture.make(minutes: 3)
        let root = #filePath.components(separatedBy: "/Tests/")[0]
        let job = try await f.register(Self.manifest(["python3", root + "/Manifests/examples/latest_rate.py"]))
        try await f.replay(job)
        let rows = try await f.rows("latest__v1", orderBy: "currency")
        let expected = BPIFeed.currencies.sorted().map { c -> [SQLValue] in
            let last = f.ticks.last { $0.currency == c }!
            return [.text(c), .integer(last.ts), .real(Double(String(format: "%.2f", last.rate))!)]
        }
        #expect(rows == expected)
        #expect(try await f.store.nextOffsets(job: "x", version: 1) == (try await f.log.offsets(topic: "bpi").map(\.end)))
    }

    @Test func deletesAndUpsertsFromAShellProgram() async throws {
        let f = try await StoreFixture.make(partitions: 1, minutes: 1)
        // Upserts a fixed row per record, then deletes EUR at each batch's end.
        let script = #"while read -r l; do case "$l" in *batchEnd*) echo '{"delete": {"currency": "EUR"}}'; echo '{"batchEnd": true}';; *) echo '{"upsert": {"currency": "EUR", "ts": 1, "rate": 2.5}}'; echo '{"upsert": {"currency": "ALL", "ts": 7}}';; esac; done"#
        try await f.replay(f.register(Self.manifest(Self.sh(script))))
        #expect(try await f.rows("latest__v1", orderBy: "currency") == [[.text("ALL"), .integer(7), .null]])
    }

    @Test(arguments: [
        ("read -r l; exit 3", "program \"/bin/sh -c read -r l; exit 3\", partition 0 offsets 0…179: exited with status 3 before the end of the batch"),
        ("echo oops >&2; kill -9 $$", "was killed by signal 9 before the end of the batch; its stderr ends: oops"),
        (#"while read -r l; do case "$l" in *batchEnd*) echo 'not json'; echo '{"batchEnd": true}';; esac; done"#, #"malformed output line "not json": not JSON (invalid literal at column 1)"#),
        (#"while read -r l; do case "$l" in *batchEnd*) echo '{"upsert": {"price": 1}}'; echo '{"batchEnd": true}';; esac; done"#, #"malformed output line "{\"upsert\": {\"price\": 1}}": unknown column "price""#),
        (#"while read -r l; do case "$l" in *batchEnd*) echo '{"upsert": {"rate": 1}}'; echo '{"batchEnd": true}';; esac; done"#, "missing primary key column currency"),
        ("sleep 30", "did not finish the batch within 300ms (transform.timeout); it was stopped"),
    ])
    func misbehavingProgramsFailTheVersionWithWhereAndWhat(script: String, message: String) async throws {
        let f = try await StoreFixture.make(partitions: 1, minutes: 1)
        let job = try await f.register(Self.manifest(Self.sh(script), timeout: script.hasPrefix("sleep") ? "300ms" : "20s"))
        do {
            try await f.replay(job)
            Issue.record("a misbehaving program did not fail the version")
        } catch let failure as JobFailure {
            #expect(failure.description.contains(message), "\(failure)")
            #expect(failure.description.hasPrefix("job x v1 partition 0 offset 0: program \"/bin/sh -c "))
        }
        #expect(try await f.store.nextOffsets(job: "x", version: 1) == [0])  // nothing committed
    }

    @Test func aProgramThatDoesNotExistIsRefusedAtDeploy() async throws {
        let f = try await StoreFixture.make(partitions: 1, minutes: 1)
        let text = Self.manifest(["no-such-program-kappa"])
        let op = Operator(log: f.log, store: f.store, actor: "test")
        do {
            _ = try await op.deploy(spec: ManifestParser.parse(text), manifest: text, allowPartial: false)
            Issue.record("deployed a missing program")
        } catch let error as CatalogError {
            #expect(error.message == "transform.exec: program \"no-such-program-kappa\" not found (not a file, and not in PATH)")
        }
    }
}
