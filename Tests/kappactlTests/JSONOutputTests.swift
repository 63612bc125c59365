import Foundation
import Testing
@testable import KappaCore

/// Every command that changes something answers `--output json` with one JSON object.
@Suite struct JSONOutputTests {
    static func object(_ result: RunResult, _ what: String) -> [String: Any]? {
        #expect(result.status == 0, "\(what): \(result.stderr)")
        let object = try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        #expect(object != nil, "\(what) printed no JSON object: \(result.stdout)")
        return object
    }

    @Test func changingCommandsAnswerInJSON() async throws {
        let box = try Sandbox()
        let json = ["--output", "json"]
        #expect(Self.object(try await box.kappactl(["topic", "create", "bpi", "-p", "1", "--archive", box.root + "/archive"] + json), "topic create")?["name"] as? String == "bpi")
        #expect(Self.object(try await box.kappactl(["demo", "produce", "--minutes", "1"] + json), "demo produce")?["history"] as? Int == 180)
        #expect(Self.object(try await box.kappactl(["produce", "bpi"] + json, stdin: "{\"value\": 1}\n"), "produce")?["records"] as? Int == 1)
        #expect(Self.object(try await box.kappactl(["archive", "run", "bpi"] + json), "archive run")?["segments"] as? Int == 0)
        #expect(Self.object(try await box.kappactl(["deploy", "-f", WorkflowTests.root + "/Manifests/btc-v1.json"] + json), "deploy")?["state"] as? String == "pending")
        #expect(Self.object(try await box.kappactl(["pause", "btc", "--version", "1"] + json), "pause")?["changed"] as? Bool == true)
        #expect(Self.object(try await box.kappactl(["resume", "btc", "--version", "1"] + json), "resume")?["changed"] as? Bool == true)
        #expect(Self.object(try await box.kappactl(["retire", "btc", "--version", "1"] + json), "retire")?["changed"] as? Bool == true)
        let deleted = Self.object(try await box.kappactl(["topic", "delete", "bpi"] + json), "topic delete")
        #expect(deleted?["deleted"] as? Bool == true)
        #expect((deleted?["failedVersions"] as? [Any])?.isEmpty == true)
    }
}
