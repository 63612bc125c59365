import Foundation
import Testing
@testable import KappaCore

/// Records as Kafka has them, through `kappactl produce` and `consume`: a tombstone, an empty
/// value and the JSON string `""` stay three records; a binary key and headers (one null) come
/// back byte for byte, in every `--format`, and consume's lines produce the same records again.
enum RecordFidelity {
    static let input = [
        #"{"key": "gone", "value": null, "timestamp": 1}"#,
        #"{"key": "empty", "valueText": "", "timestamp": 2}"#,
        #"{"key": "quotes", "value": "", "timestamp": 3}"#,
        #"{"keyBase64": "/wBiaW4=", "value": {"a": 1}, "timestamp": 4}"#,
        #"{"value": 5, "headers": [{"key": "trace", "value": "t-1"}, {"key": "none", "value": null}, {"key": "bin", "valueBase64": "AP8="}], "timestamp": 5}"#,
        #"{"value": 6, "headers": {"a": "1", "b": null}, "timestamp": 6}"#,
    ].joined(separator: "\n")

    static let expected = [
        #"{"partition":0,"offset":0,"timestamp":1,"key":"gone","value":null}"#,
        #"{"partition":0,"offset":1,"timestamp":2,"key":"empty","valueText":""}"#,
        #"{"partition":0,"offset":2,"timestamp":3,"key":"quotes","value":""}"#,
        #"{"partition":0,"offset":3,"timestamp":4,"keyBase64":"/wBiaW4=","value":{"a": 1}}"#,
        #"{"partition":0,"offset":4,"timestamp":5,"key":null,"value":5,"headers":[{"key":"trace","value":"t-1"},{"key":"none","value":null},{"key":"bin","valueBase64":"AP8="}]}"#,
        #"{"partition":0,"offset":5,"timestamp":6,"key":null,"value":6,"headers":[{"key":"a","value":"1"},{"key":"b","value":null}]}"#,
    ]

    static let expectedHex = [
        #"{"partition":0,"offset":0,"timestamp":1,"key":"676f6e65","value":null}"#,
        #"{"partition":0,"offset":1,"timestamp":2,"key":"656d707479","value":""}"#,
        #"{"partition":0,"offset":2,"timestamp":3,"key":"71756f746573","value":"2222"}"#,
        #"{"partition":0,"offset":3,"timestamp":4,"key":"ff0062696e","value":"7b2261223a20317d"}"#,
        #"{"partition":0,"offset":4,"timestamp":5,"key":null,"value":"35","headers":[{"key":"trace","value":"742d31"},{"key":"none","value":null},{"key":"bin","value":"00ff"}]}"#,
        #"{"partition":0,"offset":5,"timestamp":6,"key":null,"value":"36","headers":[{"key":"a","value":"31"},{"key":"b","value":null}]}"#,
    ]

    /// Produces `input` to `t`, checks what consume prints in each format, and that each
    /// format's lines produced again to another topic read back the same.
    static func check(_ box: Sandbox, log: [String], topics: (String, String, String)) async throws {
        let produced = try await box.kappactl(log + ["produce", topics.0], stdin: input)
        #expect(produced.status == 0, "\(produced.stderr)")
        let json = try await box.kappactl(log + ["consume", topics.0])
        #expect(json.lines == expected, "\(json.stderr)")
        let hex = try await box.kappactl(log + ["consume", topics.0, "--format", "hex"])
        #expect(hex.lines == expectedHex)
        let base64 = try await box.kappactl(log + ["consume", topics.0, "--format", "base64"])
        #expect(base64.lines.count == expected.count)
        #expect(base64.lines.first == #"{"partition":0,"offset":0,"timestamp":1,"key":"Z29uZQ==","value":null}"#)

        // consume | produce: the same records, in json form and in base64 form.
        let again = try await box.kappactl(log + ["produce", topics.1], stdin: json.stdout)
        #expect(again.status == 0, "\(again.stderr)")
        #expect(try await box.kappactl(log + ["consume", topics.1]).lines == expected)
        let fromBase64 = try await box.kappactl(log + ["produce", topics.2, "--format", "base64"], stdin: base64.stdout)
        #expect(fromBase64.status == 0, "\(fromBase64.stderr)")
        #expect(try await box.kappactl(log + ["consume", topics.2, "--format", "hex"]).lines == expectedHex)
    }
}

@Suite struct RecordFidelityTests {
    @Test func nullsEmptiesBinaryKeysAndHeadersRoundTripOnTheSegmentLog() async throws {
        let box = try Sandbox()
        for t in ["a", "b", "c"] { try await box.kappactl(["topic", "create", t, "-p", "1"]) }
        try await RecordFidelity.check(box, log: [], topics: ("a", "b", "c"))
    }

    @Test func badHexNamesTheLineAndTheMember() async throws {
        let box = try Sandbox()
        try await box.kappactl(["topic", "create", "t", "-p", "1"])
        let result = try await box.kappactl(["produce", "t", "--format", "hex"], stdin: "{\"value\": \"00\"}\n{\"key\": \"0g\", \"value\": null}\n")
        #expect(result.status == 1)
        #expect(result.stderr == "error: line 2: \"key\" is not hex (at character 1)\n")
        #expect(result.lines.first == "appended 1 record to \"t\"")
    }
}
