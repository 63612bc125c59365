import Foundation
import Testing
@testable import KappaCore

/// A small tmpfs, mounted for a test (needs root, as CI runs; skipped with a message otherwise).
final class TmpfsMount {
    let path: String

    static let available: Bool = {
        guard getuid() == 0, let probe = try? TmpfsMount(kilobytes: 64) else { return false }
        _ = probe
        return true
    }()

    init(kilobytes: Int) throws {
        path = try FileSystem.makeTemporaryDirectory(prefix: "kappa-tmpfs")
        let child = try ChildProcess(path: "/bin/mount", args: ["-t", "tmpfs", "-o", "size=\(kilobytes)k", "tmpfs", path],
                                     environment: [:], stdin: -1, stdout: -1, stderr: -1)
        guard child.waitUntilExit() == .exited(0) else {
            try? FileSystem.removeTree(path)
            throw IOError("mount tmpfs", path: path, code: EPERM)
        }
    }

    deinit {
        let child = try? ChildProcess(path: "/bin/umount", args: [path], environment: [:], stdin: -1, stdout: -1, stderr: -1)
        _ = child?.waitUntilExit()
        try? FileSystem.removeTree(path)
    }

    /// Fills the file system, leaving about `leave` bytes free; returns the filler's path.
    func fill(leaving leave: Int) throws -> String {
        let filler = path + "/filler"
        let file = try FileDescriptor(path: filler, flags: O_WRONLY | O_CREAT | O_TRUNC)
        let chunk = [UInt8](repeating: 0xEE, count: 4096)
        var at: Int64 = 0
        while (try? file.write(chunk, at: at)) != nil { at += 4096 }
        try file.truncate(to: max(0, at - Int64(leave)))
        return filler
    }
}

@Suite(.serialized, .enabled(if: TmpfsMount.available, "needs root to mount a small tmpfs"))
struct FullDiskTests {
    /// Appends on a full disk fail with a clear error; everything acknowledged stays readable;
    /// once space returns, appends go on from the same offset.
    @Test func aFullDiskRefusesAppendsLosesNothingAcknowledgedAndRecovers() async throws {
        let disk = try TmpfsMount(kilobytes: 2048)
        let filler = try disk.fill(leaving: 400 << 10)
        let log = try SegmentLog(directory: disk.path + "/log")
        _ = try await log.createTopic("t", config: TopicConfig(partitions: 1, segmentBytes: 128 << 10))
        let value = { (i: Int) in Array("{\"i\": \(i), \"pad\": \"\(String(repeating: "p", count: 1000))\"}".utf8) }
        var acknowledged = 0
        var failure: LogError?
        while failure == nil && acknowledged < 10_000 {
            do {
                _ = try await log.append(topic: "t", records: (acknowledged..<acknowledged + 50).map { ProducerRecord(value: value($0)) })
                acknowledged += 50
            } catch let error as LogError {
                failure = error
            }
        }
        let error = try #require(failure)
        #expect(error.code == .outOfSpace)
        #expect(error.message.contains("topic \"t\" partition 0"))
        #expect(error.file?.hasPrefix(disk.path + "/log/t/0/") == true)
        #expect(acknowledged > 0)
        let before = try await readAll(log, "t", 0)
        #expect(before.map { Array($0.value ?? []) } == (0..<acknowledged).map(value))

        try FileSystem.removeFile(filler)
        let resumed = try await log.append(topic: "t", records: [ProducerRecord(value: value(acknowledged))])
        #expect(resumed[0].baseOffset == Int64(acknowledged))
        let after = try await readAll(SegmentLog(directory: disk.path + "/log"), "t", 0)
        #expect(after.map(\.offset) == Array(0...Int64(acknowledged)))
        #expect(after.map { Array($0.value ?? []) } == (0...acknowledged).map(value))
    }

    /// A replay into SQLite on a full disk stops with the database's error (not blamed on a
    /// record); once space returns it resumes from the committed offsets into the exact table.
    @Test func aReplayOnAFullDiskStopsAndResumesExactly() async throws {
        let disk = try TmpfsMount(kilobytes: 16 << 10)
        let state = try StateDirectory(path: disk.path + "/state")
        let log = try SegmentLog(state: state)
        _ = try await log.createTopic("bpi", config: TopicConfig(partitions: 3))
        let ticks = BPIFeed(seed: 4, start: 28_333_333 * 60_000).ticks(seconds: 1200)
        _ = try await log.append(topic: "bpi", records: ticks.map(\.record))
        let f = StoreFixture(dir: try TempDirectory(), state: state, log: log, store: try Store.sqlite(state: state), kind: .sqlite, schema: "", ticks: ticks)
        let job = try await f.register(StoreFixture.exactManifest(batch: 20))
        let filler = try disk.fill(leaving: 48 << 10)

        let stopped = await #expect(throws: (any Error).self) { try await f.replay(job) }
        #expect(!(stopped is JobFailure))  // a full disk is not a bad record
        #expect("\(stopped.map { "\($0)" } ?? "")".contains("full"))
        let committed = try await f.store.nextOffsets(job: "t", version: 1)
        #expect(committed.reduce(0, +) < Int64(ticks.count))

        try FileSystem.removeFile(filler)
        try await f.replay(job)
        #expect(try await f.rows("ticks__v1") == f.expectedExact())
    }
}
