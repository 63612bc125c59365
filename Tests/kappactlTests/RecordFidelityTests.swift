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

#if Kafka
/// The same on Kafka (`kappactl kafka-mock`), and with an outside client: kcat producing a
/// tombstone and headers that kappactl consumes, and reading back what kappactl produced.
@Suite struct KafkaCommandFidelityTests {
    static let kcat = ["/usr/bin/kcat", "/usr/local/bin/kcat", "/usr/bin/kafkacat"].first { FileManager.default.isExecutableFile(atPath: $0) }

    @Test func nullsEmptiesBinaryKeysAndHeadersRoundTripOnKafka() async throws {
        let box = try Sandbox()
        let (mock, url) = try await KafkaCommandTests.kafkaMock(box, ["--brokers", "1", "--topic", "a:1", "--topic", "b:1", "--topic", "c:1"])
        defer { kill(mock.process.processIdentifier, SIGKILL) }
        try await RecordFidelity.check(box, log: ["--log", url], topics: ("a", "b", "c"))
    }

    @Test(.enabled(if: kcat != nil, "kcat is not installed (scripts/test installs it: apt-get install kcat)"))
    func kcatAndKappactlReadEachOthersTombstonesAndHeaders() async throws {
        let kcat = try #require(Self.kcat)
        let box = try Sandbox()
        let (mock, url) = try await KafkaCommandTests.kafkaMock(box, ["--brokers", "1", "--topic", "k:1", "--topic", "a:1"])
        defer { kill(mock.process.processIdentifier, SIGKILL) }
        let brokers = String(url.dropFirst("kafka://".count))

        // kcat → kappactl: -Z sends the empty value after "k2:" as NULL.
        let sent = try await box.run(kcat, ["-P", "-b", brokers, "-t", "k", "-p", "0", "-K", ":", "-Z", "-H", "trace=t-1", "-H", "h2=v"],
                                     stdin: "k1:hello\nk2:\n")
        #expect(sent.status == 0, "\(sent.stderr)")
        let consumed = try await box.kappactl(["--log", url, "consume", "k"])
        #expect(consumed.lines.count == 2, "\(consumed.stderr)")
        let headers = #""headers":[{"key":"trace","value":"t-1"},{"key":"h2","value":"v"}]}"#
        #expect(consumed.lines.first?.hasSuffix(#""key":"k1","valueText":"hello","# + headers) == true, "\(consumed.lines)")
        #expect(consumed.lines.last?.hasSuffix(#""key":"k2","value":null,"# + headers) == true, "\(consumed.lines)")

        // kappactl → kcat: the tombstone is NULL (-1 bytes), the empty value 0 bytes, headers there.
        // Text only: the test reads kcat's output as UTF-8 (kcat prints bytes as they are).
        let input = RecordFidelity.input.split(separator: "\n").filter { !$0.contains("keyBase64") }.joined(separator: "\n")
            .replacingOccurrences(of: #", {"key": "bin", "valueBase64": "AP8="}"#, with: "")
        let produced = try await box.kappactl(["--log", url, "produce", "a"], stdin: input)
        #expect(produced.status == 0, "\(produced.stderr)")
        var read = RunResult(status: 0, stdout: "", stderr: "")
        for _ in 0..<10 {  // kcat's -e may meet the end before the mock's first fetch answers
            read = try await box.run(kcat, ["-C", "-b", brokers, "-t", "a", "-p", "0", "-o", "beginning", "-e", "-q", "-Z", "-f", "%k|%S|%h\\n"])
            if read.status != 0 || read.lines.count >= 5 { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(read.status == 0, "\(read.stderr)")
        let lines = read.lines
        #expect(lines.count == 5, "\(read.stdout) \(read.stderr)")
        guard lines.count == 5 else { return }
        #expect(lines[0] == "gone|-1|")
        #expect(lines[1] == "empty|0|")
        #expect(lines[2] == "quotes|2|")
        #expect(lines[3] == "NULL|1|trace=t-1,none=NULL")  // -Z: no key, a null header value
        #expect(lines[4] == "NULL|1|a=1,b=NULL")
    }
}
#endif
