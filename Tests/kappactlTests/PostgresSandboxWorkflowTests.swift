#if Postgres
import Foundation
import Testing
@testable import KappaCore

/// The PostgreSQL sandbox as an operator meets it: `kappactl deploy` of SQL that would leave its
/// statement, role or transaction is refused with an error naming `transform.sql`, and leaves no
/// job, version or history behind; with a superuser catalog user, deploy runs no shell command.
@Suite(.enabled(if: ProcessInfo.processInfo.environment["KAPPA_TEST_POSTGRES"] != nil, "needs the PostgreSQL server scripts/test starts"))
struct PostgresSandboxWorkflowTests {
    @Test func deployRefusesSQLThatLeavesItsSandboxAndRegistersNothing() async throws {
        let box = try Sandbox(catalog: await WorkflowTests.postgresDatabase())
        try await box.kappactl(["topic", "create", "bpi", "--partitions", "3"])
        #expect(try await box.kappactl(["produce", "bpi"], stdin: WorkflowTests.feedLines(seed: 1, startMinute: 28_000_000, seconds: 60)).status == 0)
        let manifest = try String(contentsOfFile: WorkflowTests.root + "/Manifests/btc-v1.json", encoding: .utf8)
        let spec = try ManifestParser.parse(manifest)
        guard case .sql(let sql) = spec.transform else { Issue.record("btc-v1 is not a SQL job"); return }
        let marker = "/tmp/kappa-intruded-\(UInt32.random(in: 0...UInt32.max))"
        for attack in [
            "\(sql); COMMIT; BEGIN",
            "RESET ROLE; COPY (SELECT 1) TO PROGRAM 'id > \(marker)'",
            "\(sql); RESET ROLE; UPDATE kappa_offsets SET next_offset = 0",
        ] {
            let quoted = String(decoding: try JSONEncoder().encode(attack), as: UTF8.self)
            let path = box.root + "/attack.json"
            let sqlStart = manifest.range(of: "\"sql\": ")!.upperBound
            let sqlEnd = manifest[sqlStart...].range(of: "\"\n")!.upperBound
            try (manifest[..<sqlStart] + quoted + "\n" + manifest[sqlEnd...]).write(toFile: path, atomically: true, encoding: .utf8)
            let deploy = try await box.kappactl(["deploy", "-f", path])
            #expect(deploy.status == 1, "\(attack): \(deploy.stdout) \(deploy.stderr)")
            #expect(deploy.stderr.hasPrefix("error: transform.sql: must be a single INSERT, UPDATE, DELETE or SELECT statement"), "\(deploy.stderr)")
            #expect(try await WorkflowTests.status(box, nil).jobs.isEmpty)
            #expect(try await box.kappactl(["history", "btc"]).status == 3)
        }
        #expect(!FileManager.default.fileExists(atPath: marker))
        // The shipped manifest deploys after the refused ones.
        #expect(try await box.kappactl(["deploy", "-f", WorkflowTests.root + "/Manifests/btc-v1.json"]).status == 0)
        #expect(try await WorkflowTests.status(box, "btc").jobs[0].versions.map(\.version) == [1])
    }
}
#endif
