import Foundation
import Testing
@testable import KappaCore

/// `topic check`: every frame, index, head and archived file verified, damage named, harmless
/// findings only warned about, nothing changed.
@Suite struct LogCheckTests {
    /// A topic "t" of one partition: 200 records in appends of 5, segments of 4 KiB, archived.
    static func makeTopic(_ dir: TempDirectory) async throws -> SegmentLog {
        let log = try SegmentLog(directory: dir.path + "/log")
        _ = try await log.createTopic("t", config: TopicConfig(partitions: 1, segmentBytes: 4096, archive: dir.path + "/archive"))
        for start in stride(from: 0, to: 200, by: 5) {
            _ = try await log.append(topic: "t", records: (start..<start + 5).map { ProducerRecord(value: Array("\($0) \(String(repeating: "v", count: 60))".utf8)) })
        }
        #expect(try await log.archiveClosedSegments(topic: "t") > 0)
        return log
    }

    static func segments(_ dir: TempDirectory) throws -> [String] {
        try SegmentFiles.list(dir.path + "/log/t/0").map { SegmentFiles.logPath(dir.path + "/log/t/0", $0) }
    }

    static func flip(_ path: String, at position: Int64) throws {
        let file = try FileDescriptor(path: path, flags: O_RDWR)
        var byte = try file.read(count: 1, at: position)
        byte[0] ^= 0xFF
        try file.write(byte, at: position)
    }

    /// Every file under the directory with its bytes, to see that the check changes nothing.
    static func contents(_ root: String) throws -> [String: [UInt8]] {
        var out: [String: [UInt8]] = [:]
        let enumerator = FileManager.default.enumerator(atPath: root)
        while let name = enumerator?.nextObject() as? String {
            if !FileSystem.isDirectory(root + "/" + name) { out[name] = try FileSystem.readAll(root + "/" + name) }
        }
        return out
    }

    @Test func aSoundTopicIsSoundWithEveryRecordCounted() async throws {
        let dir = try TempDirectory()
        let log = try await Self.makeTopic(dir)
        let check = try await log.check(topic: "t")
        #expect(check.count == 1)
        #expect(check[0].sound, "\(check[0].damage)")
        #expect(check[0].warnings.isEmpty, "\(check[0].warnings)")
        #expect(check[0].records == 200 && check[0].frames == 40 && check[0].end == 200)
        #expect(check[0].segments == (try Self.segments(dir)).count && check[0].segments > 2)
        #expect(check[0].archivedFiles == check[0].segments - 1)
    }

    enum Damage: String, CaseIterable, Sendable {
        case flippedMiddleFrame, truncatedActive, deletedMiddleSegment, deletedHead, flippedArchive, emptiedClosedSegment
    }

    @Test(arguments: Damage.allCases)
    func damageIsNamedAndNothingChanged(_ damage: Damage) async throws {
        let dir = try TempDirectory()
        _ = try await Self.makeTopic(dir)
        let segments = try Self.segments(dir)
        let expected: [String]
        switch damage {
        case .flippedMiddleFrame:
            // Inside a closed segment, where opening the partition does not look.
            try Self.flip(segments[1], at: 200)
            expected = [segments[1], "checksum mismatch"]
        case .truncatedActive:
            let size = FileSystem.size(segments.last!)!
            #expect(truncate(segments.last!, off_t(size / 2)) == 0)
            expected = [segments.last!, "but the head acknowledged"]
        case .deletedMiddleSegment:
            try FileManager.default.removeItem(atPath: segments[1])
            expected = ["are missing between segments"]
        case .deletedHead:
            try FileManager.default.removeItem(atPath: dir.path + "/log/t/0/head")
            expected = ["head file", "cannot be read"]
        case .flippedArchive:
            let archived = try FileSystem.list(dir.path + "/archive/t/0").filter { $0.hasSuffix(".seg") }.sorted()
            try Self.flip(dir.path + "/archive/t/0/" + archived[0], at: 100)
            expected = ["archived file", "does not match its checksum"]
        case .emptiedClosedSegment:
            #expect(truncate(segments[0], 0) == 0)
            expected = [segments[0]]
        }
        let before = try Self.contents(dir.path)
        // A fresh log, as `kappactl topic check` opens it.
        let check = try await SegmentLog(directory: dir.path + "/log").check(topic: "t")[0]
        #expect(!check.sound, "\(damage) not found")
        let text = check.damage.joined(separator: "\n")
        for part in expected + ["topic \"t\" partition 0"] { #expect(text.contains(part), "\(damage): \(text) lacks \(part)") }
        #expect(try Self.contents(dir.path) == before, "the check changed files")
    }

    @Test func aStaleIndexAndAnUnacknowledgedTailAreWarningsOnly() async throws {
        let dir = try TempDirectory()
        _ = try await Self.makeTopic(dir)
        let segments = try Self.segments(dir)
        let index = segments[0].replacingOccurrences(of: ".log", with: ".index")
        try FileSystem.writeAtomically([1, 0, 0, 0, 9, 0, 0, 0], to: index)
        let tail = try FileDescriptor(path: segments.last!, flags: O_RDWR)
        try tail.write(Array(repeating: 0xAB, count: 37), at: try tail.size())
        let check = try await SegmentLog(directory: dir.path + "/log").check(topic: "t")[0]
        #expect(check.sound, "\(check.damage)")
        #expect(check.records == 200)
        #expect(check.warnings.count == 2, "\(check.warnings)")
        #expect(check.warnings.contains { $0.contains(index) && $0.contains("1 wrong entry") })
        #expect(check.warnings.contains { $0.contains("37 bytes beyond the head") })
    }

    @Test func unknownPartitionsAndTopicsAreNamed() async throws {
        let dir = try TempDirectory()
        let log = try await Self.makeTopic(dir)
        await #expect(throws: LogError.self) { try await log.check(topic: "t", partition: 1) }
        await #expect(throws: LogError.self) { try await log.check(topic: "nope") }
    }
}
