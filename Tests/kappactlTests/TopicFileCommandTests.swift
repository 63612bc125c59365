import Foundation
import Testing
@testable import KappaCore

/// A topic whose `topic.json` is damaged, through the commands an operator runs: the error names
/// the file and what is wrong with it (not a Swift `DecodingError` dump), and nothing traps.
@Suite struct TopicFileCommandTests {
    @Test(arguments: [
        ("garbage", "not valid JSON: expected a JSON object at line 1, column 1"),
        (#"{"name": "t", "createdAt": 0, "config": {"partitions": "2", "segmentBytes": 67108864}}"#, "config.partitions: expected an integer"),
        (#"{"name": "t", "createdAt": 0, "config": {"partitions": -1, "segmentBytes": 67108864}}"#, "partitions must be between 1 and 10000 (got -1)"),
    ] as [(String, String)])
    func describeNamesTheDamagedTopicFile(_ json: String, _ problem: String) async throws {
        let box = try Sandbox()
        #expect(try await box.kappactl(["topic", "create", "t", "-p", "2"]).status == 0)
        let path = "\(box.state)/log/t/topic.json"
        try FileSystem.writeAtomically(Array(json.utf8), to: path)
        for command in [["topic", "describe", "t"], ["topic", "list"], ["consume", "t"]] {
            let result = try await box.kappactl(command)
            #expect(result.status == 1, "\(command): exit \(result.status): \(result.stderr)")
            #expect(result.stderr == "error: topic \"t\": \(path) is damaged: \(problem)\n", "\(command)")
            #expect(!result.stderr.contains("DecodingError") && !result.stderr.contains("Fatal error"))
        }
    }
}
