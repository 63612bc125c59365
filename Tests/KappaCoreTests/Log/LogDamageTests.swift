import Foundation
import Testing
@testable import KappaCore

/// Damage to acknowledged records (the head is the truth about what was acknowledged): the
/// partition refuses writes, reads below the damage work, a read reaching it gets an error
/// naming topic, partition, file and offsets; nothing crashes and no offset is handed out twice.
@Suite struct LogDamageTests {
    static let value = String(repeating: "v", count: 60)

    /// A topic "t" of one partition with `count` records "i vvv…", in appends of `perAppend`.
    func makeTopic(_ dir: TempDirectory, count: Int = 200, perAppend: Int = 5, segmentBytes: Int64 = 4096) async throws -> [String] {
        let log = try SegmentLog(directory: dir.path)
        _ = try await log.createTopic("t", config: TopicConfig(partitions: 1, segmentBytes: segmentBytes))
        let values = (0..<count).map { "\($0) \(Self.value)" }
        for start in stride(from: 0, to: count, by: perAppend) {
            _ = try await log.append(topic: "t", records: values[start..<min(count, start + perAppend)].map { ProducerRecord(value: bytes($0)) })
        }
        return values
    }

    func partitionDir(_ dir: TempDirectory) -> String { "\(dir.path)/t/0" }

    /// Reads from 0 in small reads until the end or an error; returns the values and the error.
    func readFromZero(_ log: SegmentLog, batch: Int = 7) async -> ([String], LogError?) {
        var values: [String] = []
        var next: Int64 = 0
        while true {
            do {
                let records = try await log.read(topic: "t", partition: 0, from: next, maxRecords: batch, maxBytes: 1 << 16)
                if records.isEmpty { return (values, nil) }
                values += records.map { text($0.value)! }
                next = records.nextOffset
            } catch let error as LogError {
                return (values, error)
            } catch {
                Issue.record("not a LogError: \(error)")
                return (values, nil)
            }
        }
    }

    /// Frame start positions of a segment file.
    func framePositions(_ path: String) throws -> [Int64] {
        let file = try FileDescriptor(path: path, flags: O_RDONLY)
        var positions: [Int64] = []
        _ = try FrameWalker.walk(file, from: 0, limit: try file.size(), verify: false) { at, _ in positions.append(at); return true }
        return positions
    }

    func expectRefusesAppends(_ log: SegmentLog, mentioning parts: [String], sourceLocation: SourceLocation = #_sourceLocation) async {
        do {
            let result = try await log.append(topic: "t", records: [ProducerRecord(value: bytes("new"))])
            Issue.record("a damaged partition accepted an append at offset \(result[0].baseOffset)", sourceLocation: sourceLocation)
        } catch let error as LogError {
            #expect(error.code == .corrupt, sourceLocation: sourceLocation)
            for part in parts { #expect(error.message.contains(part), "\(error.message) lacks \(part)", sourceLocation: sourceLocation) }
        } catch {
            Issue.record("not a LogError: \(error)", sourceLocation: sourceLocation)
        }
    }

    /// The users' report: the active segment truncated, `describe` showed the shorter end and
    /// the next produce reused offsets that a serving version had already consumed.
    @Test func truncatedActiveSegmentRefusesWritesAndKeepsTheAcknowledgedEnd() async throws {
        let dir = try TempDirectory()
        let values = try await makeTopic(dir, count: 200, segmentBytes: 1 << 20)
        let path = SegmentFiles.logPath(partitionDir(dir), 0)
        let cut = try framePositions(path)[10]  // at a frame boundary: 50 records remain
        #expect(truncate(path, off_t(cut)) == 0)

        let log = try SegmentLog(directory: dir.path)
        #expect(try await log.offsets(topic: "t")[0].end == 200)
        let described = try await log.describe(topic: "t")
        #expect(described[0].end == 200)
        #expect(described[0].damage?.contains("offsets 50…199") == true)
        await expectRefusesAppends(log, mentioning: ["topic \"t\"", "partition 0", path, "offsets 50…199", "acknowledged end is 200", "refused"])
        let (read, error) = await readFromZero(log)
        #expect(read == Array(values.prefix(50)))
        #expect(error?.code == .corrupt)
        #expect(error?.offset == 50)
        #expect(error?.file == path)
        // A version whose next offset is 200 gets nothing new: no offset is handed out again.
        #expect(try await log.read(topic: "t", partition: 0, from: 200, maxRecords: 10, maxBytes: 1 << 16).isEmpty)
        #expect(FileSystem.size(path) == cut)  // nothing cut or rewritten
        // And again on the next open.
        await expectRefusesAppends(try SegmentLog(directory: dir.path), mentioning: ["offsets 50…199"])
    }

    /// Cut in the middle of a frame: the acknowledged records in it are lost, not a torn tail.
    @Test func activeSegmentCutMidFrameIsDamageNotATornTail() async throws {
        let dir = try TempDirectory()
        let values = try await makeTopic(dir, count: 40, segmentBytes: 1 << 20)
        let path = SegmentFiles.logPath(partitionDir(dir), 0)
        let cut = try framePositions(path)[3] + 50
        #expect(truncate(path, off_t(cut)) == 0)
        let log = try SegmentLog(directory: dir.path)
        await expectRefusesAppends(log, mentioning: ["offsets 15…39", path])
        let (read, error) = await readFromZero(log)
        #expect(read == Array(values.prefix(15)))
        #expect(error?.offset == 15)
    }

    /// A bad checksum in the last acknowledged frame, the head intact: found at open.
    @Test func flippedLastAcknowledgedFrameRefusesWrites() async throws {
        let dir = try TempDirectory()
        let values = try await makeTopic(dir, count: 40, segmentBytes: 1 << 20)
        let path = SegmentFiles.logPath(partitionDir(dir), 0)
        var data = try FileSystem.readAll(path)
        let last = try framePositions(path).last!
        data[Int(last) + 40] ^= 0x5A
        try FileDescriptor(path: path, flags: O_RDWR).write(data, at: 0)
        let log = try SegmentLog(directory: dir.path)
        await expectRefusesAppends(log, mentioning: ["offsets 35…39", "checksum mismatch", path])
        let (read, error) = await readFromZero(log)
        #expect(read == Array(values.prefix(35)))
        #expect(error?.offset == 35)
    }

    /// The head lost: nothing says what was acknowledged, so nothing is trusted or cut.
    @Test func lostHeadWithAFlippedLastFrameRefusesWrites() async throws {
        let dir = try TempDirectory()
        let values = try await makeTopic(dir, count: 40, segmentBytes: 1 << 20)
        let path = SegmentFiles.logPath(partitionDir(dir), 0)
        var data = try FileSystem.readAll(path)
        let last = try framePositions(path).last!
        data[Int(last) + 40] ^= 0x5A
        try FileDescriptor(path: path, flags: O_RDWR).write(data, at: 0)
        try FileSystem.removeFile("\(partitionDir(dir))/head")

        let log = try SegmentLog(directory: dir.path)
        #expect(try await log.offsets(topic: "t")[0].end == 35)  // what the files hold, readable
        await expectRefusesAppends(log, mentioning: ["head file", "missing", "offsets 0…34 (35 records)", "torn tail"])
        let (read, error) = await readFromZero(log)
        #expect(read == Array(values.prefix(35)))
        #expect(error?.code == .corrupt)
        #expect(FileSystem.size(path) == Int64(data.count))
        #expect(try await log.describe(topic: "t")[0].damage?.contains("head file") == true)
    }

    @Test func lostHeadAloneRefusesWrites() async throws {
        let dir = try TempDirectory()
        let values = try await makeTopic(dir, count: 300)
        try FileSystem.removeFile("\(partitionDir(dir))/head")
        let log = try SegmentLog(directory: dir.path)
        #expect(try await log.offsets(topic: "t")[0].end == 300)
        await expectRefusesAppends(log, mentioning: ["head file", "offsets 0…299 (300 records)"])
        let (read, _) = await readFromZero(log)
        #expect(read == values)
    }

    /// A fresh partition directory (no head, no segment) is not damage.
    @Test func emptyPartitionDirectoryWithoutHeadIsFresh() async throws {
        let dir = try TempDirectory()
        _ = try await makeTopic(dir, count: 0)
        for name in try FileSystem.list(partitionDir(dir)) { try FileSystem.removeFile("\(partitionDir(dir))/\(name)") }
        let log = try SegmentLog(directory: dir.path)
        #expect(try await log.append(topic: "t", records: [ProducerRecord(value: bytes("a"))])[0].baseOffset == 0)
    }

    /// The crash reports: deleted middle segment, closed segment cut at a frame boundary, segment
    /// truncated to 0. Each is an error naming the file and the missing offsets, in a fresh
    /// process and in one that had the partition open before.
    @Test(arguments: ["delete", "frameBoundary", "empty"])
    func damagedClosedSegmentIsAnErrorNotACrash(_ attack: String) async throws {
        let dir = try TempDirectory()
        let values = try await makeTopic(dir, count: 300)
        let running = try SegmentLog(directory: dir.path)
        #expect(try await running.read(topic: "t", partition: 0, from: 0, maxRecords: 1, maxBytes: 1 << 16).count == 1)
        let segments = try SegmentFiles.list(partitionDir(dir))
        #expect(segments.count >= 4)
        let lostFrom = try damageClosedSegment(dir, segments, attack)

        for log in [running, try SegmentLog(directory: dir.path)] {
            let (read, error) = await readFromZero(log)
            #expect(read == Array(values.prefix(Int(lostFrom))))
            #expect(error?.code == .corrupt)
            #expect(error?.offset == lostFrom)
            #expect(error?.message.contains("partition 0") == true)
            #expect(error?.file.map { $0.hasPrefix(partitionDir(dir)) } == true)
            // A reader past the damage reads on.
            let late = try await log.read(topic: "t", partition: 0, from: segments[2], maxRecords: 3, maxBytes: 1 << 16)
            #expect(late.first.map { text($0.value)! } == values[Int(segments[2])])
        }
        let fresh = try SegmentLog(directory: dir.path)
        #expect(try await fresh.offsets(topic: "t")[0].end == 300)
        await expectRefusesAppends(fresh, mentioning: ["offsets \(lostFrom)…\(segments[2] - 1)", "acknowledged end is 300"])
        #expect(try await fresh.describe(topic: "t")[0].damage != nil)
    }

    /// Damages the second segment (of `makeTopic`'s appends of 5): deletes it, cuts it before
    /// its last frame, empties it, or flips a byte of its second frame. Returns the first offset lost.
    func damageClosedSegment(_ dir: TempDirectory, _ segments: [Int64], _ attack: String) throws -> Int64 {
        let victim = SegmentFiles.logPath(partitionDir(dir), segments[1])
        switch attack {
        case "delete":
            try FileSystem.removeFile(victim)
            return segments[1]
        case "frameBoundary":
            let positions = try framePositions(victim)
            #expect(truncate(victim, off_t(positions[positions.count - 1])) == 0)
            return segments[2] - 5
        case "empty":
            #expect(truncate(victim, 0) == 0)
            return segments[1]
        default:
            var data = try FileSystem.readAll(victim)
            data[Int(try framePositions(victim)[1]) + 40] ^= 0x5A
            try FileDescriptor(path: victim, flags: O_RDWR).write(data, at: 0)
            return segments[1] + 5
        }
    }

    /// A segment renamed to another base (or two swapped) holds offsets its name does not.
    @Test func renamedSegmentIsNamed() async throws {
        let dir = try TempDirectory()
        let values = try await makeTopic(dir, count: 300)
        let segments = try SegmentFiles.list(partitionDir(dir))
        let a = SegmentFiles.logPath(partitionDir(dir), segments[1]), b = SegmentFiles.logPath(partitionDir(dir), segments[2])
        try FileSystem.rename(a, to: a + ".x")
        try FileSystem.rename(b, to: a)
        try FileSystem.rename(a + ".x", to: b)
        let log = try SegmentLog(directory: dir.path)
        let (read, error) = await readFromZero(log)
        #expect(read == Array(values.prefix(Int(segments[1]))))
        #expect(error?.code == .corrupt)
        await expectRefusesAppends(log, mentioning: [a])
    }

    // MARK: Randomized damage

    /// Random damage to a real topic of several segments, reopened each time: every read from
    /// offset 0 yields a prefix of the exact records and then ends at the true end or throws a
    /// LogError; an append never gets an offset below the true end.
    @Test func randomDamageNeverYieldsWrongRecordsOrReusedOffsets() async throws {
        let seed = UInt64(ProcessInfo.processInfo.environment["KAPPA_DAMAGE_SEED"] ?? "") ?? UInt64.random(in: 1...UInt64.max)
        var rng = SplitMix64(seed: seed)
        let template = try TempDirectory("kappa-damage-template")
        let values = try await makeTopic(template, count: 400, perAppend: 7, segmentBytes: 2048)
        let end = Int64(values.count)
        let rounds = 100
        for round in 0..<rounds {
            let dir = try TempDirectory("kappa-damage")
            try FileSystem.removeTree(dir.path)
            try copyTree(template.path, dir.path)
            let pdir = partitionDir(dir)
            var done: [String] = []
            for _ in 0...rng.below(3) { done.append(try damage(pdir, &rng)) }
            let context = "seed \(seed) (KAPPA_DAMAGE_SEED=\(seed)) round \(round): \(done.joined(separator: "; "))"

            let log = try SegmentLog(directory: dir.path)
            let (read, error) = await readFromZero(log, batch: 1 + rng.below(50))
            #expect(read == Array(values.prefix(read.count)), "wrong records: \(context)")
            if error == nil { #expect(read.count == values.count, "silently fewer records (\(read.count)): \(context)") }
            if let error { #expect(error.message.contains("partition 0"), "unclear error \(error): \(context)") }
            do {
                let appended = try await log.append(topic: "t", records: [ProducerRecord(value: bytes("new"))])
                #expect(appended[0].baseOffset >= end, "offset \(appended[0].baseOffset) handed out again: \(context)")
            } catch let error as LogError {
                #expect(error.code == .corrupt || error.code == .io, "\(error): \(context)")
            }
        }
    }

    /// One random act of damage to the partition's files; returns what it did.
    func damage(_ dir: String, _ rng: inout SplitMix64) throws -> String {
        let names = try FileSystem.list(dir).filter { $0.hasSuffix(".log") || $0.hasSuffix(".index") || $0 == "head" }.sorted()
        guard !names.isEmpty else { return "nothing left" }
        let name = names[rng.below(names.count)]
        let path = "\(dir)/\(name)"
        let size = FileSystem.size(path) ?? 0
        switch rng.below(5) {
        case 0:
            let to = size == 0 ? 0 : Int64(rng.below(Int(size)))
            _ = truncate(path, off_t(to))
            return "truncated \(name) to \(to) of \(size)"
        case 1:
            guard size > 0 else { return "nothing to flip in \(name)" }
            var data = try FileSystem.readAll(path)
            let at = rng.below(data.count)
            data[at] ^= UInt8(1 + rng.below(255))
            try FileDescriptor(path: path, flags: O_RDWR).write(data, at: 0)
            return "flipped byte \(at) of \(name)"
        case 2:
            try FileSystem.removeFile(path)
            return "deleted \(name)"
        case 3:
            let other = names[rng.below(names.count)]
            guard other != name, other != "head", name != "head" else { return "kept \(name)" }
            try FileSystem.rename(path, to: path + ".swap")
            try FileSystem.rename("\(dir)/\(other)", to: path)
            try FileSystem.rename(path + ".swap", to: "\(dir)/\(other)")
            return "swapped \(name) and \(other)"
        default:
            try FileSystem.removeFile("\(dir)/head")
            return "deleted head"
        }
    }

    func copyTree(_ from: String, _ to: String) throws {
        try FileManager.default.copyItem(atPath: from, toPath: to)
    }
}

/// A small seeded generator, so that a failing round can be replayed (`KAPPA_DAMAGE_SEED`).
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(1, n))) }
}
