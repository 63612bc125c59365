#if S3
import Foundation
import KappaCore

/// Archive reads from an S3-compatible store (the one KAPPA_TEST_S3 names; `scripts/with-seaweedfs
/// kappa-bench archive` starts one): a fresh `SegmentArchive` reading a partition from offset 0
/// as a replay does (whole objects, CRC-32C verified, frames decoded, the next object fetched
/// ahead), against `curl` fetching the same objects in one process (kept connections, SigV4)
/// into /dev/null, in the same run, interleaved rounds, medians.
struct ArchiveBenchmark {
    var location: String
    var objects: Int
    var objectBytes: Int
    var rounds: Int
    /// Records a read asks for.
    var batch: Int

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let parts = location.split(separator: "?", maxSplits: 1)
        let unique = "\(parts[0])/bench-\(UInt32.random(in: 0...UInt32.max))" + (parts.count > 1 ? "?\(parts[1])" : "")
        let archive = try Backends.archive(unique, environment: environment)
        guard let storage = archive.storage as? S3ArchiveStorage else { throw UsageError("kappa-bench archive: \(location) is not an s3:// location") }
        let s3 = storage.client.location
        let executor = BlockingExecutor.shared

        // Objects of about `objectBytes` each, written as `JobHost --mirror` writes them: the
        // mirror copying a topic of the embedded log (100-byte values).
        let root = try FileSystem.makeTemporaryDirectory(prefix: "kappa-bench-archive")
        defer { try? FileSystem.removeTree(root) }
        let log = try SegmentLog(directory: root + "/log")
        _ = try await log.createTopic("bench", config: TopicConfig(partitions: 1))
        let total = objects * max(1, objectBytes / 130)
        var appended = 0
        while appended < total {
            let n = min(10_000, total - appended)
            _ = try await log.append(topic: "bench", records: (0..<n).map { i in
                ProducerRecord(key: Array("k\(appended + i)".utf8), value: [UInt8](repeating: UInt8(truncatingIfNeeded: i), count: 100), partition: 0)
            })
            appended += n
        }
        var mirror = LogMirror(log: log, archive: archive, topic: "bench")
        mirror.fileBytes = objectBytes
        let base = Int64(try await mirror.runOnce())
        let entries = try await executor.run { try archive.entries(topic: "bench", partition: 0) }
        let totalBytes = entries.reduce(0) { $0 + $1.bytes }
        print("kappa-bench archive: \(entries.count) objects, \(fmt(Double(totalBytes) / 1_048_576, 1)) MiB, \(Render.grouped(base)) records, at \(s3.endpoint) (bucket \(s3.bucket)); \(rounds) rounds (medians), reads of \(Render.grouped(Int64(batch))) records")

        // curl's config on its standard input: the secret is not in its argv.
        guard let key = environment["AWS_ACCESS_KEY_ID"], let secret = environment["AWS_SECRET_ACCESS_KEY"] else {
            throw UsageError("kappa-bench archive: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (scripts/with-seaweedfs does)")
        }
        var config = "silent\nfail\naws-sigv4 = \"aws:amz:\(s3.region):s3\"\nuser = \"\(key):\(secret)\"\n"
        for entry in entries {
            let objectKey = s3.fullKey(entry.key("bench", 0))
            config += "url = \"\(s3.endpoint)/\(s3.bucket)/\(objectKey)\"\noutput = \"/dev/null\"\n"
        }
        // The same with two transfers at once, as the archive fetches the two objects after the
        // one being read.
        let parallelConfig = "parallel\nparallel-max = \(SegmentArchive.readAheadObjects)\n" + config
        var curlTimes: [Double] = [], kappaTimes: [Double] = [], fetchTimes: [Double] = [], parallelTimes: [Double] = []
        var records = 0
        let readSize = batch
        for _ in 0..<rounds {
            let started = ContinuousClock.now
            let status = try runCurl(config)
            guard status == 0 else { throw UsageError("kappa-bench archive: curl exited with \(status)") }
            curlTimes.append(seconds(since: started))
            let parallelStarted = ContinuousClock.now
            guard try runCurl(parallelConfig) == 0 else { throw UsageError("kappa-bench archive: curl --parallel failed") }
            parallelTimes.append(seconds(since: parallelStarted))

            let reader = try Backends.archive(unique, environment: environment)  // nothing cached
            let clock = ContinuousClock.now
            records = try await executor.run {
                var offset: Int64 = 0, n = 0
                while let batch = try reader.read(topic: "bench", partition: 0, from: offset, maxRecords: readSize, maxBytes: 8 << 20) {
                    n += batch.count
                    offset = batch.nextOffset
                }
                return n
            }
            kappaTimes.append(seconds(since: clock))

            // The transport alone: the client fetching each object whole into memory, one after
            // another (what the read spends that is not verifying and decoding).
            let fetchClock = ContinuousClock.now
            let fetched = try await executor.run {
                try entries.reduce(0) { $0 + (try storage.getChecksummed($1.key("bench", 0), range: 0..<($1.bytes + 1))?.bytes.count ?? 0) }
            }
            fetchTimes.append(seconds(since: fetchClock))
            precondition(fetched == Int(totalBytes), "fetched \(fetched) of \(totalBytes) bytes")
        }
        precondition(records == Int(base), "read \(records) of \(base) records")
        let curl = median(curlTimes), kappa = median(kappaTimes)
        let mb = Double(totalBytes) / 1_000_000
        print("rounds (s): curl \(curlTimes.map { fmt($0, 3) }) curl --parallel \(parallelTimes.map { fmt($0, 3) }) archive \(kappaTimes.map { fmt($0, 3) }) fetch \(fetchTimes.map { fmt($0, 3) })")
        print("")
        let parallel = median(parallelTimes)
        print("curl, the same objects, one process      \(fmt(mb / curl, 1)) MB/s  (ceiling: one transfer at a time)")
        print("curl --parallel-max \(SegmentArchive.readAheadObjects)                     \(fmt(mb / parallel, 1)) MB/s  (as many transfers as the archive's read-ahead)")
        print("SegmentArchive.read from offset 0        \(fmt(mb / kappa, 1)) MB/s  \(fmt(curl / kappa, 2)) x curl  (target >= 0.8), \(fmt(parallel / kappa, 2)) x curl --parallel; \(Render.grouped(Int64(Double(records) / kappa))) records/s")
        let fetch = median(fetchTimes)
        print("S3Client fetch alone, whole objects      \(fmt(mb / fetch, 1)) MB/s  \(fmt(curl / fetch, 2)) x curl  (into memory, CRC-32C as it arrives; no read-ahead, no decoding)")
    }

    private func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }

    /// Runs `curl -K -` with `config` on its standard input; returns its exit status.
    private func runCurl(_ config: String) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        process.arguments = ["-K", "-"]
        let input = Pipe()
        process.standardInput = input
        try process.run()
        input.fileHandleForWriting.write(Data(config.utf8))
        try input.fileHandleForWriting.close()
        process.waitUntilExit()
        return process.terminationStatus
    }
}
#endif
