import Foundation
import Testing
@testable import KappaCore

/// The users' reports against the embedded log, through the commands they ran: damage to
/// acknowledged records is shown and refused, never a shorter end, a reused offset or a trap.
@Suite struct LogDamageCommandTests {
    private func produce(_ box: Sandbox, _ count: Int) async throws {
        let lines = (0..<count).map { #"{"value": "record \#($0) \#(String(repeating: "x", count: 40))"}"# }
        // Several appends, so that the segments hold several frames.
        for chunk in stride(from: 0, to: count, by: 10) {
            let produced = try await box.kappactl(["produce", "t"], stdin: lines[chunk..<min(count, chunk + 10)].joined(separator: "\n"))
            #expect(produced.status == 0, "\(produced.stderr)")
        }
    }

    private func partitionDir(_ box: Sandbox) -> String { "\(box.state)/log/t/0" }

    @Test func truncatedActiveSegmentIsShownAndRefusesProduce() async throws {
        let box = try Sandbox()
        try await box.kappactl(["topic", "create", "t", "-p", "1"])
        try await produce(box, 100)
        let segment = SegmentFiles.logPath(partitionDir(box), 0)
        #expect(truncate(segment, off_t(FileSystem.size(segment)! / 2)) == 0)

        let described = try await box.kappactl(["topic", "describe", "t"])
        #expect(described.stdout.contains("DAMAGED"))
        #expect(described.stdout.contains(segment))
        #expect(described.lines.contains { $0.split(separator: " ", omittingEmptySubsequences: true).prefix(3) == ["0", "0", "100"] })
        let produced = try await box.kappactl(["produce", "t"], stdin: #"{"value": "new"}"#)
        #expect(produced.status == 1)
        #expect(produced.stderr.contains("refused"))
        #expect(!produced.stdout.contains("appended"))
        let consumed = try await box.kappactl(["consume", "t"])
        #expect(consumed.status == 1)
        #expect(consumed.stderr.contains(segment))
        #expect(!consumed.stderr.contains("Fatal error"))
    }

    /// `topic check` finds a flipped byte in the middle of a segment, which opening the
    /// partition (and so `describe`) does not look at; it exits 1 and names file and offsets.
    @Test func topicCheckFindsWhatDescribeCannot() async throws {
        let box = try Sandbox()
        try await box.kappactl(["topic", "create", "t", "-p", "2"])
        try await produce(box, 100)
        let sound = try await box.kappactl(["topic", "check", "t"])
        #expect(sound.status == 0, "\(sound.stderr)")
        #expect(sound.lines.filter { $0.contains(" sound ") }.count == 2, "\(sound.stdout)")
        let segment = SegmentFiles.logPath(partitionDir(box), 0)
        let file = try FileDescriptor(path: segment, flags: O_RDWR)
        try file.write([0x5A], at: 300)
        #expect(try await box.kappactl(["topic", "describe", "t"]).stdout.contains("DAMAGED") == false)
        let damaged = try await box.kappactl(["topic", "check", "t"])
        #expect(damaged.status == 1)
        #expect(damaged.stdout.contains("DAMAGED: topic \"t\" partition 0: \(segment) byte "), "\(damaged.stdout)")
        #expect(damaged.stdout.contains("checksum mismatch"))
        #expect(damaged.stderr == "error: topic \"t\": damage to acknowledged records in partition 0\n")
        let one = try await box.kappactl(["topic", "check", "t", "--partition", "1", "--output", "json"])
        #expect(one.status == 0)
        let json = try JSONSerialization.jsonObject(with: Data(one.stdout.utf8)) as? [String: Any]
        #expect(json?["sound"] as? Bool == true)
        #expect(try await box.kappactl(["topic", "check", "t", "--partition", "2"]).status == 3)
    }

    @Test(arguments: ["delete", "empty"])
    func damagedMiddleSegmentIsAnErrorNotACrash(_ attack: String) async throws {
        let box = try Sandbox()
        try await box.kappactl(["topic", "create", "t", "-p", "1", "--segment-bytes", "1024"])
        try await produce(box, 100)
        let segments = try SegmentFiles.list(partitionDir(box))
        #expect(segments.count >= 3)
        let victim = SegmentFiles.logPath(partitionDir(box), segments[1])
        if attack == "delete" { try FileSystem.removeFile(victim) } else { #expect(truncate(victim, 0) == 0) }

        for _ in 0..<2 {  // and again, as after a restart
            let consumed = try await box.kappactl(["consume", "t"])
            #expect(consumed.status == 1, "exit \(consumed.status): \(consumed.stderr)")
            #expect(!consumed.stderr.contains("Fatal error"))
            #expect(consumed.stderr.contains("partition 0"))
            #expect(consumed.stderr.contains(victim))
            #expect(consumed.lines.count == Int(segments[1]))
        }
        let produced = try await box.kappactl(["produce", "t"], stdin: #"{"value": "new"}"#)
        #expect(produced.status == 1)
    }
}
