import Foundation
import Testing
@testable import KappaCore

/// `kappactl topic repair --accept-loss` on each damage of `LogDamageTests`: cut after the last
/// sound record, the lost offsets a recorded gap that reads as an error naming it, the end offset
/// kept (never handed out again), records after the gap still read, and a process that held the
/// partition open (JobHost) notices the repair at its next read or append.
extension LogDamageTests {
    /// Reads from the earliest offset to the end, stepping over recorded gaps: (offset, value) pairs, the gaps met
    /// (`LogError.gap`), and any other error.
    func readSkippingGaps(_ log: SegmentLog, batch: Int = 7) async -> ([(Int64, String)], [LogError], LogError?) {
        var records: [(Int64, String)] = []
        var gaps: [LogError] = []
        // From the earliest offset: a missing oldest segment cannot be told from retention.
        var next = (try? await log.offsets(topic: "t")[0].earliest) ?? 0
        while true {
            do {
                let read = try await log.read(topic: "t", partition: 0, from: next, maxRecords: batch, maxBytes: 1 << 16)
                if read.isEmpty { return (records, gaps, nil) }
                records += read.map { ($0.offset, text($0.value) ?? "") }
                next = read.nextOffset
            } catch let error as LogError where error.code == .gap {
                guard let end = error.gapEnd, end > next, gaps.count < 1000 else { return (records, gaps, error) }
                gaps.append(error)
                next = end
            } catch let error as LogError {
                return (records, gaps, error)
            } catch {
                Issue.record("not a LogError: \(error)")
                return (records, gaps, nil)
            }
        }
    }

    /// The users' report, repaired: the active segment truncated to 50 of 200 acknowledged
    /// records. Before the repair appends were refused; after it offsets 50…199 are a gap, the
    /// next append gets 200, and the process that held the partition open reads the gap's error.
    @Test func repairOfATruncatedActiveSegmentKeepsTheEndAndRecordsTheGap() async throws {
        let dir = try TempDirectory()
        let values = try await makeTopic(dir, count: 200, segmentBytes: 1 << 20)
        let running = try SegmentLog(directory: dir.path)  // JobHost, holding the partition open
        #expect(try await running.read(topic: "t", partition: 0, from: 0, maxRecords: 3, maxBytes: 1 << 16).count == 3)
        let path = SegmentFiles.logPath(partitionDir(dir), 0)
        #expect(truncate(path, off_t(try framePositions(path)[10])) == 0)
        await expectRefusesAppends(running, mentioning: ["offsets 50…199"])

        let repair = try await SegmentLog(directory: dir.path).repair(topic: "t", partition: 0, actor: "ops", now: 1_764_000_000_000)
        #expect(repair.gaps.map { [$0.from, $0.to] } == [[50, 200]])
        #expect(repair.gaps.first?.actor == "ops")
        #expect(repair.gaps.first?.reason.contains("offsets 50…199") == true)
        #expect(repair.end == 200)
        #expect(repair.repaired)

        for log in [running, try SegmentLog(directory: dir.path)] {
            let (read, gaps, error) = await readSkippingGaps(log)
            #expect(error == nil)
            #expect(read.map(\.1) == Array(values.prefix(50)))
            #expect(gaps.count == 1)
            #expect(gaps.first?.offset == 50 && gaps.first?.gapEnd == 200)
            #expect(gaps.first?.message.contains("offsets 50…199 (150 records) were lost") == true, "\(gaps)")
            #expect(gaps.first?.message.contains("ops") == true)
            // A read inside the gap names it too.
            await #expect(throws: LogError.self) { _ = try await log.read(topic: "t", partition: 0, from: 120, maxRecords: 1, maxBytes: 1 << 16) }
        }
        // The process that held it open appends after the gap: no offset is handed out twice.
        #expect(try await running.append(topic: "t", records: [ProducerRecord(value: bytes("new"))])[0].baseOffset == 200)
        let fresh = try SegmentLog(directory: dir.path)
        #expect(try await fresh.append(topic: "t", records: [ProducerRecord(value: bytes("newer"))])[0].baseOffset == 201)
        #expect(try await fresh.read(topic: "t", partition: 0, from: 200, maxRecords: 5, maxBytes: 1 << 16).map { text($0.value)! } == ["new", "newer"])
        let check = try await fresh.check(topic: "t")
        #expect(check[0].sound, "\(check[0].damage)")
        #expect(check[0].gaps.map(\.range) == ["50…199"])
        #expect(try await fresh.describe(topic: "t")[0].damage == nil)
        // Run again: nothing to repair, nothing changed.
        let again = try await fresh.repair(topic: "t", partition: 0, actor: "ops")
        #expect(!again.repaired && again.gaps.isEmpty && again.end == 202)
        #expect(try await fresh.check(topic: "t")[0].gaps.count == 1)
    }

    /// Damage in closed segments (deleted, cut at a frame boundary, emptied) and a checksum
    /// flipped in the middle of one (met only by a reader, or by the repair's full read): the
    /// gap runs to the next segment, and every record after it still reads.
    @Test(arguments: ["delete", "frameBoundary", "empty", "flipMiddleFrame"])
    func repairOfAClosedSegmentLosesOnlyUpToTheNextSegment(_ attack: String) async throws {
        let dir = try TempDirectory()
        let values = try await makeTopic(dir, count: 300)
        let segments = try SegmentFiles.list(partitionDir(dir))
        let victim = SegmentFiles.logPath(partitionDir(dir), segments[1])
        let size = FileSystem.size(victim)!
        let lostFrom = try damageClosedSegment(dir, segments, attack)
        let repair = try await SegmentLog(directory: dir.path).repair(topic: "t", partition: 0, actor: "ops")
        #expect(repair.gaps.map { [$0.from, $0.to] } == [[lostFrom, segments[2]]], "\(repair)")
        #expect(repair.end == 300)
        if attack == "flipMiddleFrame" {
            // The bytes cut are kept beside the segment.
            let aside = try FileSystem.list(partitionDir(dir)).filter { $0.hasPrefix(SegmentFiles.name(segments[1]) + ".log.cut-") }
            #expect(aside.count == 1)
            #expect(FileSystem.size(victim)! + (aside.first.flatMap { FileSystem.size("\(partitionDir(dir))/\($0)") } ?? 0) == size)
        }
        let log = try SegmentLog(directory: dir.path)
        let (read, gaps, error) = await readSkippingGaps(log)
        #expect(error == nil)
        let expected = values.enumerated().filter { Int64($0.offset) < lostFrom || Int64($0.offset) >= segments[2] }
        #expect(read.map(\.0) == expected.map { Int64($0.offset) })
        #expect(read.map(\.1) == expected.map(\.element))
        #expect(gaps.count == 1)
        #expect(try await log.check(topic: "t")[0].sound)
        #expect(try await log.append(topic: "t", records: [ProducerRecord(value: bytes("new"))])[0].baseOffset == 300)
    }

    /// The head lost: the repair cannot know what was acknowledged. It keeps what the files hold
    /// and, given what consumers read up to (`atLeast`, from the catalog), keeps that end.
    @Test(arguments: [Int64(0), 40])
    func repairOfALostHeadTrustsTheFilesOnlyUpToWhatConsumersRead(_ consumersRead: Int64) async throws {
        let dir = try TempDirectory()
        let values = try await makeTopic(dir, count: 40, segmentBytes: 1 << 20)
        let path = SegmentFiles.logPath(partitionDir(dir), 0)
        var data = try FileSystem.readAll(path)
        data[Int(try framePositions(path).last!) + 40] ^= 0x5A
        try FileDescriptor(path: path, flags: O_RDWR).write(data, at: 0)
        try FileSystem.removeFile("\(partitionDir(dir))/head")

        let repair = try await SegmentLog(directory: dir.path).repair(topic: "t", partition: 0, atLeast: consumersRead, actor: "ops")
        #expect(repair.end == max(35, consumersRead))
        #expect(repair.gaps.map { [$0.from, $0.to] } == (consumersRead > 35 ? [[35, consumersRead]] : []))
        let log = try SegmentLog(directory: dir.path)
        let (read, _, error) = await readSkippingGaps(log)
        #expect(error == nil)
        #expect(read.map(\.1) == Array(values.prefix(35)))
        #expect(try await log.append(topic: "t", records: [ProducerRecord(value: bytes("new"))])[0].baseOffset == max(35, consumersRead))
        #expect(try await log.check(topic: "t")[0].sound)
    }

    /// A repair interrupted by a crash after it recorded the gap, before it cut: the next open
    /// goes on after the gap (never inside it), and repairing again finishes it.
    @Test func aRepairInterruptedAfterRecordingTheGapIsFinishedNeverReusingItsOffsets() async throws {
        let dir = try TempDirectory()
        _ = try await makeTopic(dir, count: 200, segmentBytes: 1 << 20)
        let path = SegmentFiles.logPath(partitionDir(dir), 0)
        #expect(truncate(path, off_t(try framePositions(path)[10])) == 0)
        let gap = PartitionGap(from: 50, to: 200, repairedAt: 1, actor: "ops", reason: "test")
        try PartitionGaps(gaps: [gap]).save(partitionDir(dir))

        let log = try SegmentLog(directory: dir.path)
        #expect(try await log.append(topic: "t", records: [ProducerRecord(value: bytes("new"))])[0].baseOffset == 200)
        let repair = try await SegmentLog(directory: dir.path).repair(topic: "t", partition: 0, actor: "ops")
        #expect(!repair.repaired, "\(repair)")
        #expect(try await log.check(topic: "t")[0].sound)
    }

    /// A damaged `gaps.json` is named, never trusted or trapped on; the repair writes it again
    /// from the segments' boundaries.
    @Test func aDamagedGapsFileIsNamedAndWrittenAgainByTheRepair() async throws {
        let dir = try TempDirectory()
        let values = try await makeTopic(dir, count: 300)
        let segments = try SegmentFiles.list(partitionDir(dir))
        try FileSystem.removeFile(SegmentFiles.logPath(partitionDir(dir), segments[1]))
        _ = try await SegmentLog(directory: dir.path).repair(topic: "t", partition: 0, actor: "ops")
        let gapsPath = PartitionGaps.path(partitionDir(dir))
        for garbage in ["{\"gaps\": [{\"from\": 9, \"to\": 3}]}", "not json", ""] {
            try FileSystem.writeAtomically(Array(garbage.utf8), to: gapsPath)
            let log = try SegmentLog(directory: dir.path)
            let check = try await log.check(topic: "t")
            #expect(check[0].damage.contains { $0.contains(gapsPath) }, "\(check[0].damage)")
            // Below the gap reads; appends are refused (the gap is not known to be accepted).
            let (read, _) = await readFromZero(log)
            #expect(read == Array(values.prefix(Int(segments[1]))))
            await expectRefusesAppends(log, mentioning: ["offsets \(segments[1])…\(segments[2] - 1)"])
            let repair = try await SegmentLog(directory: dir.path).repair(topic: "t", partition: 0, actor: "ops")
            #expect(repair.gaps.map { [$0.from, $0.to] } == [[segments[1], segments[2]]])
            #expect(try await SegmentLog(directory: dir.path).check(topic: "t")[0].sound)
        }
    }

    /// Random damage, then the repair (told that consumers read up to the end): the partition
    /// is sound, every record read is the one acknowledged at its offset, and the next append
    /// gets an offset at or past the true end. Repairing again changes nothing.
    @Test func randomDamageRepairedReadsTrueRecordsAndNeverReusesAnOffset() async throws {
        let seed = UInt64(ProcessInfo.processInfo.environment["KAPPA_DAMAGE_SEED"] ?? "") ?? UInt64.random(in: 1...UInt64.max)
        var rng = SplitMix64(seed: seed)
        let template = try TempDirectory("kappa-repair-template")
        let values = try await makeTopic(template, count: 400, perAppend: 7, segmentBytes: 2048)
        let end = Int64(values.count)
        for round in 0..<60 {
            let dir = try TempDirectory("kappa-repair")
            try FileSystem.removeTree(dir.path)
            try copyTree(template.path, dir.path)
            let pdir = partitionDir(dir)
            var done: [String] = []
            for _ in 0...rng.below(3) { done.append(try damage(pdir, &rng)) }
            let context = "seed \(seed) (KAPPA_DAMAGE_SEED=\(seed)) round \(round): \(done.joined(separator: "; "))"

            let repair = try await SegmentLog(directory: dir.path).repair(topic: "t", partition: 0, atLeast: end, actor: "test")
            #expect(repair.end >= end, "end \(repair.end): \(context)")
            let log = try SegmentLog(directory: dir.path)
            let check = try await log.check(topic: "t")
            #expect(check[0].sound, "\(check[0].damage): \(context)")
            let (read, _, error) = await readSkippingGaps(log, batch: 1 + rng.below(50))
            #expect(error == nil, "\(String(describing: error)): \(context)")
            for (offset, value) in read where offset >= end || values[Int(offset)] != value {
                Issue.record("offset \(offset) reads \(value.prefix(20)): \(context)")
                break
            }
            #expect(read.map(\.0) == read.map(\.0).sorted(), "out of order: \(context)")
            let appended = try await log.append(topic: "t", records: [ProducerRecord(value: bytes("new"))])
            #expect(appended[0].baseOffset >= end, "offset \(appended[0].baseOffset) handed out again: \(context)")
            let again = try await SegmentLog(directory: dir.path).repair(topic: "t", partition: 0, atLeast: end, actor: "test")
            #expect(!again.repaired, "a second repair changed \(again.changes): \(context)")
        }
    }
}
