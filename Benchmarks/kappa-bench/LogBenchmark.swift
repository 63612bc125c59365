import KappaCore

#if canImport(Glibc)
import Glibc
#endif

/// Durable append of 100-byte records in batches of 1,000 against the raw sequential write
/// bandwidth with one fdatasync per batch (the same bytes, plain writes), and scan rate from
/// the page cache against a raw read of the same files.
struct LogBenchmark {
    struct Options {
        var records: Int
        var rounds: Int
        var directory: String?
    }

    static let valueBytes = 100
    static let batch = 1000

    var options: Options

    func run() async throws {
        let root = try options.directory.map { dir -> String in try FileSystem.makeDirectories(dir); return dir }
            ?? FileSystem.makeTemporaryDirectory(prefix: "kappa-bench")
        defer { if options.directory == nil { try? FileSystem.removeTree(root) } }
        let batches = options.records / Self.batch
        let records = batches * Self.batch
        let values = (0..<Self.batch).map { i in ProducerRecord(value: (0..<Self.valueBytes).map { UInt8(truncatingIfNeeded: i &+ $0) }, timestamp: 1_700_000_000_000 + Int64(i)) }
        // One frame per batch: a 32-byte header and 16 bytes of framing per record.
        let frameBytes = 32 + Self.batch * (16 + Self.valueBytes)
        print("kappa-bench log: \(records) records of \(Self.valueBytes) bytes in batches of \(Self.batch), \(options.rounds) rounds, in \(root)")

        var raw: [Double] = [], append: [Double] = [], scan: [Double] = [], rawRead: [Double] = [], group: [Double] = []
        for round in 0..<options.rounds {
            let rawPath = "\(root)/raw-\(round)"
            raw.append(try rawWrite(path: rawPath, batches: batches, bytesPerBatch: frameBytes))
            try FileSystem.removeFile(rawPath)

            let log = try SegmentLog(directory: "\(root)/log-\(round)")
            _ = try await log.createTopic("bench", config: TopicConfig(partitions: 1, segmentBytes: 256 << 20))
            let started = ContinuousClock.now
            for _ in 0..<batches { _ = try await log.append(topic: "bench", records: values) }
            append.append(seconds(since: started))

            let files = try FileSystem.list("\(root)/log-\(round)/bench/0").filter { $0.hasSuffix(".log") }.map { "\(root)/log-\(round)/bench/0/\($0)" }
            rawRead.append(try rawReadAll(files))
            scan.append(try await scanAll(log, records: records))

            // Group commit: 8 producers at once on a second topic.
            _ = try await log.createTopic("group", config: TopicConfig(partitions: 1, segmentBytes: 256 << 20))
            let groupStarted = ContinuousClock.now
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                for producer in 0..<8 {
                    tasks.addTask {
                        for _ in stride(from: producer, to: batches, by: 8) { _ = try await log.append(topic: "group", records: values) }
                    }
                }
                try await tasks.waitForAll()
            }
            group.append(seconds(since: groupStarted))
            try FileSystem.removeTree("\(root)/log-\(round)")
        }

        let totalBytes = Double(batches * frameBytes)
        let rawS = median(raw), appendS = median(append), scanS = median(scan), rawReadS = median(rawRead), groupS = median(group)
        let mb = { (s: Double) in totalBytes / s / 1e6 }
        print("")
        print("raw write + fdatasync per batch  \(fmt(mb(rawS))) MB/s  (ceiling)")
        print("durable append, 1 producer       \(fmt(Double(records) / appendS)) records/s  \(fmt(mb(appendS))) MB/s  payload \(fmt(Double(records * Self.valueBytes) / appendS / 1e6)) MB/s")
        print("  ratio to raw                   \(fmt(rawS / appendS, 2))  (target >= 0.5)")
        print("durable append, 8 producers      \(fmt(Double(records) / groupS)) records/s  (group commit; \(fmt(rawS / groupS, 2)) x raw)")
        print("raw read of the segment files    \(fmt(mb(rawReadS))) MB/s  (ceiling, page cache)")
        print("scan, checksums verified         \(fmt(Double(records) / scanS)) records/s  \(fmt(mb(scanS))) MB/s  (target >= 5000000 records/s)")
        print("  ratio to raw read              \(fmt(rawReadS / scanS, 2))")
        print("rounds (s): raw \(raw.map { fmt($0, 3) }) append \(append.map { fmt($0, 3) }) scan \(scan.map { fmt($0, 3) })")
    }

    private func rawWrite(path: String, batches: Int, bytesPerBatch: Int) throws -> Double {
        let file = try FileDescriptor(path: path, flags: O_WRONLY | O_CREAT | O_TRUNC)
        let chunk = [UInt8](repeating: 0xAB, count: bytesPerBatch)
        let started = ContinuousClock.now
        var at: Int64 = 0
        for _ in 0..<batches {
            try file.write(chunk, at: at)
            try file.sync()
            at += Int64(bytesPerBatch)
        }
        return seconds(since: started)
    }

    private func rawReadAll(_ paths: [String]) throws -> Double {
        var buffer = [UInt8](repeating: 0, count: 4 << 20)
        let started = ContinuousClock.now
        var sum = 0
        for path in paths {
            let file = try FileDescriptor(path: path, flags: O_RDONLY)
            var at: Int64 = 0
            while true {
                let n = try buffer.withUnsafeMutableBytes { try file.read(into: $0, at: at) }
                if n == 0 { break }
                sum &+= Int(buffer[n - 1])
                at += Int64(n)
            }
        }
        if sum == -1 { print(sum) }
        return seconds(since: started)
    }

    private func scanAll(_ log: SegmentLog, records: Int) async throws -> Double {
        let started = ContinuousClock.now
        var offset: Int64 = 0
        var seen = 0
        var bytes = 0
        while true {
            let batch = try await log.read(topic: "bench", partition: 0, from: offset, maxRecords: 50_000, maxBytes: 4 << 20)
            if batch.isEmpty { break }
            seen += batch.count
            bytes += batch.payloadBytes
            offset = batch.nextOffset
        }
        precondition(seen == records && bytes == records * Self.valueBytes, "scan saw \(seen) records")
        return seconds(since: started)
    }
}

func seconds(since start: ContinuousClock.Instant) -> Double {
    let d = ContinuousClock.now - start
    return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}

func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }

func fmt(_ x: Double, _ decimals: Int = 0) -> String {
    if decimals == 0 { return Render.grouped(Int64(x.rounded())) }
    var p = 1.0
    for _ in 0..<decimals { p *= 10 }
    let v = (x * p).rounded() / p
    return "\(v)"
}
