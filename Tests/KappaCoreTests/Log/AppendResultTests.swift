import Testing
@testable import KappaCore

/// Append results add up to the offsets actually appended, however they interleave.
@Suite struct AppendResultTests {
    @Test func rangesAreTheOffsetsAppendedNotFirstPlusCount() {
        var summary = ProduceSummary(topic: "t", records: 0, partitions: [])
        summary.add([AppendResult(partition: 0, baseOffset: 0, count: 10), AppendResult(partition: 1, baseOffset: 5, count: 1)])
        summary.add([AppendResult(partition: 0, baseOffset: 20, count: 5)])  // another producer wrote 10…19
        summary.add([AppendResult(partition: 0, baseOffset: 25, count: 5)])
        #expect(summary.records == 21)
        #expect(summary.partitions[0].count == 20)
        #expect(summary.partitions[0].ranges == [OffsetRange(first: 0, last: 9), OffsetRange(first: 20, last: 29)])
        #expect(summary.partitions[1].ranges.map(\.description) == ["5"])
        // Kafka's delivery reports, in any order, with another producer's records between.
        let kafka = AppendResult(partition: 2, offsets: [7, 3, 4, 9, 5])
        #expect(kafka.baseOffset == 3 && kafka.count == 5)
        #expect(kafka.ranges.map(\.description) == ["3…5", "7", "9"])
    }
}
