import Foundation
import Testing
@testable import KappaCore

/// The segment log under a small budget of open files (`LogFiles`): partitions far beyond it
/// work, the budget holds, and the file lock still keeps two writers of a partition apart.
@Suite struct LogFilesTests {
    @Test func manyMorePartitionsThanTheBudgetAppendReadAndReopen() async throws {
        let dir = try TempDirectory()
        let files = LogFiles(limit: 16)
        let log = try SegmentLog(directory: dir.path, files: files)
        _ = try await log.createTopic("t", config: TopicConfig(partitions: 300, segmentBytes: 2048))
        for round in 0..<4 {  // round-robin: every partition in each batch; segments roll
            let records = (0..<900).map { ProducerRecord(value: bytes("r\(round)-\($0)"), partition: $0 % 300) }
            let results = try await log.append(topic: "t", records: records)
            #expect(results.count == 300)
            #expect(files.openCount <= 16)
        }
        for p in [0, 1, 150, 299] {
            let all = try await readAll(log, "t", p, batch: 5)
            #expect(all.count == 12)
            #expect(text(all.last?.value) == "r3-\(600 + p)")
        }
        #expect(files.openCount <= 16)
        let offsets = try await log.offsets(topic: "t")
        #expect(offsets.allSatisfy { $0.end == 12 })
        // Another log of the directory (another table) sees the same.
        let other = try SegmentLog(directory: dir.path, files: LogFiles(limit: 8))
        #expect(try await readAll(other, "t", 77).count == 12)
    }

    /// The attacker's case for the lock: two logs of one directory in one process (as two
    /// processes would) share one table while both append to the same partitions at once.
    /// With a table of one file every call closes the other descriptors, the lock file's
    /// included, while it is locked; with room for all, the two logs must still not be given
    /// one descriptor of the lock file (a flock belongs to the open file: neither would keep
    /// the other out). No offset is handed out twice, nothing is lost.
    @Test(arguments: [1, 64])
    func twoWritersOfAPartitionStayApartSharingATable(limit: Int) async throws {
        let dir = try TempDirectory()
        let files = LogFiles(limit: limit)
        let a = try SegmentLog(directory: dir.path, files: files)
        let b = try SegmentLog(directory: dir.path, files: files)
        _ = try await a.createTopic("t", config: TopicConfig(partitions: 3, segmentBytes: 4096))
        let results = try await withThrowingTaskGroup(of: [AppendResult].self) { group in
            for (w, log) in [a, b, a, b].enumerated() {
                group.addTask {
                    var mine: [AppendResult] = []
                    for i in 0..<30 {
                        mine += try await log.append(topic: "t", records: (0..<6).map { ProducerRecord(value: bytes("\(w)-\(i)-\($0)"), partition: $0 % 3) })
                    }
                    return mine
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        for p in 0..<3 {
            let ranges = results.filter { $0.partition == p }.map { $0.baseOffset..<($0.baseOffset + Int64($0.count)) }.sorted { $0.lowerBound < $1.lowerBound }
            #expect(ranges.count == 120)
            #expect(zip(ranges, ranges.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound })  // contiguous, no overlap
            let all = try await readAll(try SegmentLog(directory: dir.path), "t", p, batch: 17)
            #expect(all.map(\.offset) == Array(0..<240))
            #expect(Set(all.map { text($0.value) }).count == 240)
        }
    }

    @Test func theBudgetFollowsTheEnvironmentAndTheDescriptorLimit() {
        #expect(LogFiles.limit(environment: nil, descriptorLimit: 1024) == 512)
        #expect(LogFiles.limit(environment: nil, descriptorLimit: 256) == 128)
        #expect(LogFiles.limit(environment: nil, descriptorLimit: nil) == 512)
        #expect(LogFiles.limit(environment: "64", descriptorLimit: 1024) == 64)
        #expect(LogFiles.limit(environment: "3", descriptorLimit: 1024) == 512)  // out of range: ignored
        #expect(LogFiles.limit(environment: nil, descriptorLimit: 10) == 8)
    }
}
