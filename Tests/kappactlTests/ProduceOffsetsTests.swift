import Foundation
import Testing
@testable import KappaCore

/// `produce` reports the offsets it appended, as they are: with another producer writing to
/// the same partition at once, and when an append fails part-way through the input.
@Suite struct ProduceOffsetsTests {
    /// `lines` JSON lines of about 100 bytes each, valued `tag-n`, for partition 0.
    static func lines(_ tag: String, _ n: Int) -> String {
        let pad = String(repeating: "x", count: 80)
        return (0..<n).map { "{\"value\": \"\(tag)-\($0)-\(pad)\"}\n" }.joined()
    }

    @Test func twoProducersOnOnePartitionEachReportTheirOwnOffsets() async throws {
        let box = try Sandbox()
        try await box.kappactl(["topic", "create", "t", "-p", "1"])
        // About 4 MiB each: read and appended in several chunks, so the two interleave.
        let count = 40_000
        async let a = box.kappactl(["produce", "t", "--output", "json"], stdin: Self.lines("a", count))
        async let b = box.kappactl(["produce", "t", "--output", "json"], stdin: Self.lines("b", count))
        let results = try await [a, b]
        var claimed: [String: [OffsetRange]] = [:]
        for (tag, result) in zip(["a", "b"], results) {
            #expect(result.status == 0, "\(result.stderr)")
            let summary = try JSONDecoder().decode(ProduceSummary.self, from: Data(result.stdout.utf8))
            #expect(summary.records == count)
            #expect(summary.partitions.count == 1)
            let ranges = summary.partitions[0].ranges
            #expect(ranges.reduce(0) { $0 + Int($1.last - $1.first + 1) } == count)
            claimed[tag] = ranges
        }
        // Every offset reported holds a record of the producer that reported it.
        let consumed = try await box.kappactl(["consume", "t"]).lines
        #expect(consumed.count == 2 * count)
        for (tag, ranges) in claimed {
            for range in ranges {
                for offset in [range.first, range.last] {
                    let line = consumed[Int(offset)]
                    #expect(line.contains("\"offset\":\(offset),") && line.contains("\"value\":\"\(tag)-"), "offset \(offset) claimed by \(tag): \(line.prefix(80))")
                }
            }
        }
        let all = (claimed["a"]! + claimed["b"]!).sorted { $0.first < $1.first }
        for (x, y) in zip(all, all.dropFirst()) { #expect(x.last < y.first, "\(x) and \(y) overlap") }
    }

    /// Partition 1 is damaged (its acknowledged record lost), so the append that reaches it
    /// fails: the records acknowledged are reported, with their offsets, those of the failing
    /// batch that reached partition 0 included.
    @Test func anAppendThatFailsPartWayReportsWhatWasAcknowledgedBeforeIt() async throws {
        let box = try Sandbox()
        try await box.kappactl(["topic", "create", "t", "-p", "2"])
        var keys: [Int: String] = [:]
        for n in 0..<50 where keys.count < 2 { keys[Murmur2.partition(forKey: Array("k\(n)".utf8), partitions: 2)] = keys[Murmur2.partition(forKey: Array("k\(n)".utf8), partitions: 2)] ?? "k\(n)" }
        let (zero, one) = (keys[0]!, keys[1]!)
        #expect(try await box.kappactl(["produce", "t"], stdin: "{\"key\": \"\(one)\", \"value\": 1}\n").status == 0)
        let segment = box.state + "/log/t/1/00000000000000000000.log"
        #expect(truncate(segment, 0) == 0)
        // More than one read of input (1 MiB) for partition 0, then a record for partition 1.
        let input = (0..<15_000).map { "{\"key\": \"\(zero)\", \"value\": \"\($0)-\(String(repeating: "y", count: 60))\"}\n" }.joined()
            + "{\"key\": \"\(one)\", \"value\": 2}\n"
        let result = try await box.kappactl(["produce", "t", "--output", "json"], stdin: input)
        #expect(result.status == 1)
        #expect(result.stderr.contains("partition 1"), "\(result.stderr)")
        #expect(result.stderr.contains("records listed were acknowledged"), "\(result.stderr)")
        let summary = try JSONDecoder().decode(ProduceSummary.self, from: Data(result.stdout.utf8))
        // Every record for partition 0 was acknowledged (the failing batch reached it too); the
        // one for partition 1 was not.
        #expect(summary.records == 15_000)
        #expect(summary.partitions.map(\.partition) == [0])
        #expect(summary.partitions[0].ranges == [OffsetRange(first: 0, last: 14_999)])
        let consumed = try await box.kappactl(["consume", "t", "--partition", "0"]).lines
        #expect(consumed.count == summary.records)
    }
}
