import Foundation
import Testing
@testable import KappaCore

@Suite struct ProduceConsumeTests {
    @Test func produceThenConsumeRoundTrips() async throws {
        let box = try Sandbox()
        try await box.kappactl(["topic", "create", "bpi", "-p", "3"])
        let input = """
            {"key": "EUR", "value": {"ts": 1000, "rate": 25123.50}, "timestamp": 1000}
            {"key": "GBP", "value": {"ts": 1000, "rate": 21999.1}, "timestamp": 1000}

            {"value": [1, 2, 3], "timestamp": 2000}
            {"key": null, "value": "text", "timestamp": 3000}
            """
        let produced = try await box.kappactl(["produce", "bpi"], stdin: input)
        #expect(produced.status == 0)
        #expect(produced.lines.first == "appended 4 records to \"bpi\"")
        let eur = Murmur2.partition(forKey: Array("EUR".utf8), partitions: 3)
        let gbp = Murmur2.partition(forKey: Array("GBP".utf8), partitions: 3)

        let consumed = try await box.kappactl(["consume", "bpi", "--partition", "\(eur)"])
        #expect(consumed.status == 0)
        #expect(consumed.lines.first == #"{"partition":\#(eur),"offset":0,"timestamp":1000,"key":"EUR","value":{"ts": 1000, "rate": 25123.50}}"#)
        let all = try await box.kappactl(["consume", "bpi"]).lines
        #expect(all.count == 4)
        #expect(all.contains(#"{"partition":\#(gbp),"offset":\#(eur == gbp ? 1 : 0),"timestamp":1000,"key":"GBP","value":{"ts": 1000, "rate": 21999.1}}"#))
        #expect(all.contains { $0.hasSuffix(#""timestamp":2000,"key":null,"value":[1, 2, 3]}"#) })
        #expect(all.contains { $0.hasSuffix(#""timestamp":3000,"key":null,"value":"text"}"#) })

        let json = try await box.kappactl(["produce", "bpi", "--output", "json"], stdin: #"{"key":"EUR","value":1}"#)
        let summary = try JSONDecoder().decode(ProduceSummary.self, from: Data(json.stdout.utf8))
        #expect(summary.records == 1)
        #expect(summary.partitions.map(\.partition) == [eur])
        #expect(summary.partitions.map(\.count) == [1])
    }

    @Test func aMalformedLineStopsAfterAppendingTheLinesBeforeIt() async throws {
        let box = try Sandbox()
        try await box.kappactl(["topic", "create", "t", "-p", "1"])
        let input = "{\"value\": 1}\n{\"value\": 2}\n{\"value\": 3,}\n{\"value\": 4}\n"
        let result = try await box.kappactl(["produce", "t"], stdin: input)
        #expect(result.status == 1)
        #expect(result.stderr == "error: line 3: not a JSON object: expected a member name at column 13\n")
        #expect(result.lines.first == "appended 2 records to \"t\"")
        let values = try await box.kappactl(["consume", "t"]).lines
        #expect(values.count == 2)
        #expect(values[1].hasSuffix(#""value":2}"#))
    }

    @Test(arguments: [
        ("{\"key\": \"k\"}", "line 1: missing \"value\""),
        ("{\"value\": 1, \"partiton\": 2}", "line 1: unknown member \"partiton\" (expected \"key\", \"keyBase64\", \"value\", \"valueText\", \"valueBase64\", \"headers\", \"timestamp\", \"partition\")"),
        ("{\"valueBase64\": \"%%\"}", "line 1: \"valueBase64\" is not base64"),
        ("{\"value\": 1, \"headers\": [{\"key\": \"h\", \"value\": 5}]}", "line 1: \"headers\"[0].\"value\" must be a string or null, not a number"),
        ("{\"value\": 1, \"headers\": [{\"value\": \"v\"}]}", "line 1: \"headers\"[0]: missing \"key\""),
        ("{\"value\": 1, \"valueText\": \"x\"}", "line 1: \"valueText\": the value is given twice"),
        ("{\"value\": 1, \"timestamp\": \"now\"}", "line 1: \"timestamp\" must be a whole number of milliseconds since the epoch, got \"now\""),
        ("[1, 2]", "line 1: not a JSON object: expected a JSON object at column 1"),
        ("{\"value\": 1, \"value\": 2}", "line 1: not a JSON object: duplicate member \"value\" at column 21"),
    ])
    func badLinesAreExplained(line: String, message: String) async throws {
        let box = try Sandbox()
        try await box.kappactl(["topic", "create", "t", "-p", "1"])
        let result = try await box.kappactl(["produce", "t"], stdin: line + "\n")
        #expect(result.status == 1)
        #expect(result.stderr == "error: \(message)\n")
    }

    @Test func rawLinesAreStoredAsTheyAre() async throws {
        let box = try Sandbox()
        try await box.kappactl(["topic", "create", "t", "-p", "1"])
        #expect(try await box.kappactl(["produce", "t", "--raw"], stdin: "not json\n{\"a\":1}\n\n").status == 0)
        let lines = try await box.kappactl(["consume", "t"]).lines
        #expect(lines.count == 3)
        #expect(lines[0].hasSuffix(#""valueText":"not json"}"#))
        #expect(lines[1].hasSuffix(#""value":{"a":1}}"#))
        #expect(lines[2].hasSuffix(#""valueText":""}"#))
    }

    @Test func consumeFromAnOffsetWithALimit() async throws {
        let box = try Sandbox()
        try await box.kappactl(["topic", "create", "t", "-p", "2"])
        let input = (0..<20).map { "{\"value\": \($0)}" }.joined(separator: "\n")
        try await box.kappactl(["produce", "t"], stdin: input)
        let some = try await box.kappactl(["consume", "t", "-p", "1", "--offset", "3", "--limit", "4"])
        #expect(some.lines.count == 4)
        #expect(some.lines.first?.hasPrefix(#"{"partition":1,"offset":3,"#) == true)
        #expect(some.lines.last?.hasPrefix(#"{"partition":1,"offset":6,"#) == true)
        let beyond = try await box.kappactl(["consume", "t", "-p", "1", "--offset", "11"])
        #expect(beyond.status == 1)
        #expect(beyond.stderr == "error: topic \"t\" partition 1: offset 11 is beyond the end offset 10\n")
        let noPartition = try await box.kappactl(["consume", "t", "-p", "7"])
        #expect(noPartition.status == 3)
        #expect(noPartition.stderr == "error: topic \"t\" has no partition 7 (it has 2: 0…1)\n")
    }

    @Test func consumeBelowTheEarliestOffsetNamesIt() async throws {
        let box = try Sandbox()
        try await box.kappactl(["topic", "create", "t", "-p", "1", "--retention-bytes", "2048", "--segment-bytes", "1024"])
        for batch in 0..<10 {  // one produce, one segment-filling frame each
            let input = (0..<20).map { "{\"value\": \"record number \(batch * 20 + $0)\"}" }.joined(separator: "\n")
            try await box.kappactl(["produce", "t"], stdin: input)
        }
        let earliest = try await SegmentLog(state: StateDirectory(path: box.state)).offsets(topic: "t")[0].earliest
        #expect(earliest > 0)
        let result = try await box.kappactl(["consume", "t", "--offset", "0"])
        #expect(result.status == 1)
        #expect(result.stderr == "error: topic \"t\" partition 0: offset 0 is no longer retained; the earliest offset available is \(earliest)\n")
        #expect(try await box.kappactl(["consume", "t"]).lines.count == 200 - Int(earliest))
    }
}
