import Foundation

/// Every parser of the segment log's on-disk data, fed arbitrary bytes: the entry points of the
/// fuzzer (`Tests/Fuzz`, built by `scripts/fuzz`) and of the replay of its corpus in the tests
/// (`LogFuzzCorpusTests`). Each run writes the bytes as the files the parser reads (under
/// `scratch`), runs the log's real code over them and returns the broken promises it saw: an
/// error that is not a `LogError`, a `.corrupt` error naming no file, a read that returns
/// offsets out of order or an appended record it cannot read back. A trap (the promise "no bytes
/// on disk make a reader trap" broken) ends the process, which the fuzzer reports with the input.
///
/// Inputs: a first byte of flags where a parser has options; bit 0 ("seal") rewrites checksums
/// to match the bytes, so that mutations get past them to the code behind.
enum LogFuzzTarget: String, CaseIterable, Sendable {
    /// A segment file: `flags | bytes` walked by `FrameWalker` (verifying and not), each frame decoded.
    case frames
    /// One frame in memory: `flags | skip | limit | frame`, decoded by `RecordBatchCodec`.
    case batch
    /// A head file: `flags | bytes` decoded by `PartitionHead`.
    case head
    /// A sparse index: `relative u32 | limit u32 | bytes`, decoded and searched by `SegmentIndex`.
    case index
    /// A partition directory: `flags | head (40) | indexLength u16 | index | segmentLength u32 |
    /// segment 0 | rest`, the rest a second segment at the head's base (flag bit 1). Opened
    /// (damage check, recovery), read from its earliest offset to its end, then (bit 3) retention
    /// and (bit 4) an append read back.
    case partition
    /// An archive: `flags | manifestLength u16 | manifest.json | the first entry's file`, listed
    /// and read (bit 0: the manifest rewritten with that file's size and checksum).
    case archive
    /// A topic's `topic.json`.
    case topic

    /// Runs the parser over `bytes`, with `scratch` a directory it may use (emptied first).
    /// Returns the promises broken; empty when none.
    func run(_ bytes: [UInt8], scratch: String) async -> [String] {
        var problems: [String] = []
        func check(_ error: any Error, _ during: String) {
            guard let error = error as? LogError else {
                problems.append("\(during): an error that is not a LogError: \(error)")
                return
            }
            if error.code == .corrupt && error.file == nil { problems.append("\(during): a .corrupt error naming no file: \(error)") }
        }
        if [.frames, .partition, .archive].contains(self) {
            do {
                try? FileSystem.removeTree(scratch)
                try FileSystem.makeDirectories(scratch)
            } catch {
                return ["cannot use the scratch directory \(scratch): \(error)"]
            }
        }
        var input = Input(bytes)
        switch self {
        case .frames:
            let flags = input.byte()
            var segment = input.rest()
            if flags & 1 != 0 { Self.seal(&segment) }
            let path = "\(scratch)/00000000000000000000.log"
            do {
                try Self.write(segment, to: path)
                let file = try FileDescriptor(path: path, flags: O_RDONLY)
                let size = try file.size()
                for verify in [true, false] {
                    _ = try FrameWalker.walk(file, from: 0, limit: size, verify: verify, chunk: 4096) { at, header in
                        let frame = try file.read(count: header.length, at: at)
                        var entries: [LogRecords.Entry] = []
                        let ok = frame.withUnsafeBytes {
                            RecordBatchCodec.decode($0, at: 0, header: header, fromOffset: header.baseOffset, limit: .max, into: &entries)
                        }
                        if ok { problems += Self.touch(LogRecords(partition: 0, storage: frame, entries: entries, nextOffset: header.nextOffset)) }
                        return true
                    }
                }
            } catch {
                check(error, "walking frames")
            }
        case .batch:
            let flags = input.byte(), skip = Int64(input.byte()), limit = Int(input.byte())
            var frame = input.rest()
            if flags & 1 != 0 { Self.seal(&frame) }
            frame.withUnsafeBytes { buf in
                guard let header = BatchHeader.parse(buf, at: 0) else { return }
                if flags & 1 != 0, !header.verify(buf, at: 0) { return }
                var entries: [LogRecords.Entry] = []
                let from = header.baseOffset + skip
                guard RecordBatchCodec.decode(buf, at: 0, header: header, fromOffset: from, limit: limit, into: &entries) else { return }
                if let first = entries.first, first.offset != from { problems.append("decode began at \(first.offset), not \(from)") }
                let records = LogRecords(partition: 0, storage: frame, entries: entries, nextOffset: (entries.last?.offset ?? from - 1) + 1)
                problems += Self.touch(records)
                _ = records.firstRecords(limit / 2).payloadBytes
            }
        case .head:
            let flags = input.byte()
            var bytes = input.rest()
            if flags & 1 != 0 { Self.sealHead(&bytes) }
            if let head = PartitionHead.decode(bytes) {
                if head.encoded() != Array(bytes.prefix(PartitionHead.size)) { problems.append("a head does not encode back to its bytes") }
                _ = SegmentFiles.logPath(scratch, head.segmentBase)
            }
        case .index:
            let relative = input.uint32(), limit = Int64(input.uint32())
            let index = SegmentIndex.decode(input.rest())
            if let entry = index.floor(relative, below: limit), entry.relativeOffset > relative || Int64(entry.position) >= limit {
                problems.append("floor(\(relative), below: \(limit)) returned \(entry)")
            }
        case .partition:
            problems += await partition(&input, scratch: scratch, check: check)
        case .archive:
            problems += await archive(&input, scratch: scratch, check: check)
        case .topic:
            let name = "fuzz"
            let path = "\(scratch)/\(name)/topic.json"
            do {
                let metadata = try SegmentLog.decodeMetadata(input.rest(), topic: name, path: path)
                if !(1...10_000).contains(metadata.partitions) { problems.append("a topic.json with \(metadata.partitions) partitions was accepted") }
            } catch {
                check(error, "reading topic.json")
                if let error = error as? LogError, error.file != path || !error.message.contains(path) {
                    problems.append("the error does not name \(path): \(error)")
                }
            }
        }
        return problems
    }

    private func partition(_ input: inout Input, scratch: String, check: (any Error, String) -> Void) async -> [String] {
        var problems: [String] = []
        let flags = input.byte()
        var head = input.take(PartitionHead.size)
        if flags & 1 != 0 { Self.sealHead(&head) }
        let index = input.take(Int(input.uint16()))
        var first = input.take(Int(input.uint32()))
        var second = input.rest()
        if flags & 4 != 0 { Self.seal(&first); Self.seal(&second) }
        let dir = "\(scratch)/0"
        var config = TopicConfig(partitions: 1, segmentBytes: 1024)
        if flags & 8 != 0 { (config.retentionMs, config.retentionBytes) = (1, 1) }
        do {
            try FileSystem.makeDirectories(dir)
            if head.count > 0 { try Self.write(head, to: "\(dir)/\(PartitionHead.fileName)") }
            try Self.write(index, to: SegmentFiles.indexPath(dir, 0))
            try Self.write(first, to: SegmentFiles.logPath(dir, 0))
            let secondBase = PartitionHead.decode(head)?.segmentBase ?? 0
            if flags & 2 != 0, secondBase > 0 { try Self.write(second, to: SegmentFiles.logPath(dir, secondBase)) }
        } catch {
            return ["cannot write the partition's files: \(error)"]
        }
        let executor = BlockingExecutor.shared
        let log: PartitionLog
        do {
            log = try await executor.run { [config] in try PartitionLog(topic: "fuzz", partition: 0, directory: dir, config: config, executor: executor) }
        } catch {
            check(error, "opening the partition")
            return problems
        }
        _ = log.currentDamage()?.description
        do {
            let offsets = try await log.offsets()
            var offset = offsets.earliest
            for _ in 0..<64 where offset < offsets.end {
                let records = try await log.read(from: offset, maxRecords: 50, maxBytes: 1024)
                problems += Self.touch(records)
                if let firstOffset = records.first?.offset, firstOffset != offset {
                    problems.append("a read from \(offset) began at \(firstOffset)")
                }
                guard records.nextOffset > offset else { break }
                offset = records.nextOffset
            }
        } catch {
            check(error, "reading the partition")
        }
        if flags & 8 != 0 {
            do { _ = try await log.enforceRetention(now: 1 << 40) } catch { check(error, "retention") }
        }
        if flags & 16 != 0 {
            let value = Array("appended".utf8)
            do {
                let appended = try await log.append([ProducerRecord(value: value, timestamp: 1)], now: 1)
                let back = try await log.read(from: appended.baseOffset, maxRecords: 1, maxBytes: 1024)
                if back.first?.offset != appended.baseOffset || back.first.map({ $0.value.map(Array.init) }) != value {
                    problems.append("the record appended at offset \(appended.baseOffset) does not read back")
                }
            } catch {
                check(error, "appending")
            }
        }
        return problems
    }

    private func archive(_ input: inout Input, scratch: String, check: (any Error, String) -> Void) async -> [String] {
        var problems: [String] = []
        let flags = input.byte()
        var manifest = input.take(Int(input.uint16()))
        let file = input.rest()
        let root = "\(scratch)/archive"
        let (topic, partition) = ("fuzz", 0)
        let archive = SegmentArchive(root: root)
        let dir = archive.directory(topic, partition)
        let manifestPath = "\(dir)/manifest.json"
        do {
            try FileSystem.makeDirectories(dir)
            if flags & 1 != 0,
               var decoded = try? JSONDecoder().decode(SegmentArchive.Manifest.self, from: Data(manifest)), !decoded.files.isEmpty {
                decoded.files[0].bytes = Int64(file.count)
                decoded.files[0].crc32c = CRC32C.checksum(file)
                manifest = Array(try JSONEncoder().encode(decoded))
            }
            try Self.write(manifest, to: manifestPath)
        } catch {
            return ["cannot write the archive's files: \(error)"]
        }
        do {
            let entries = try await BlockingExecutor.shared.run { try archive.entries(topic: topic, partition: partition) }
            if let firstEntry = entries.first {
                try Self.write(file, to: archive.path(topic, partition, firstEntry))
            }
            _ = try archive.earliest(topic: topic, partition: partition, liveEarliest: entries.last?.end ?? 0)
            _ = ArchiveStatus(partition: partition, archived: entries, liveEarliest: entries.last?.end ?? 0, liveEnd: 1 << 40).gaps
            for entry in entries.prefix(4) {
                var offset = entry.base
                for _ in 0..<16 where offset < entry.end {
                    do {
                        guard let records = try archive.read(topic: topic, partition: partition, from: offset, maxRecords: 50, maxBytes: 1024)
                        else { break }
                        problems += Self.touch(records)
                        if records.first?.offset != offset { problems.append("an archive read from \(offset) began at \(records.first?.offset ?? -1)") }
                        guard records.nextOffset > offset else { break }
                        offset = records.nextOffset
                    } catch {
                        check(error, "reading the archive")
                        break
                    }
                }
            }
        } catch let error as IOError {
            return ["cannot write the archive's files: \(error)"]
        } catch {
            check(error, "listing the archive")
            if let error = error as? LogError, error.file != manifestPath { problems.append("the error does not name \(manifestPath): \(error)") }
        }
        return problems
    }

    /// Reads every record (each slice of the storage), checking offsets ascend by one.
    private static func touch(_ records: LogRecords) -> [String] {
        var previous: Int64?
        for record in records {
            _ = record.key?.count
            _ = record.value?.count
            _ = record.headers.count
            if let p = previous, record.offset != p + 1 { return ["offsets \(p) then \(record.offset)"] }
            previous = record.offset
        }
        if let p = previous, records.nextOffset != p + 1 { return ["the next offset \(records.nextOffset) after \(p)"] }
        _ = records.payloadBytes
        return []
    }

    /// Writes a file without fsync (the scratch files are thrown away; the log's own writes are
    /// its own).
    private static func write(_ bytes: [UInt8], to path: String) throws {
        try FileDescriptor(path: path, flags: O_WRONLY | O_CREAT | O_TRUNC).write(bytes, at: 0)
    }

    /// Rewrites the checksum of each frame from the start, up to the first that does not parse.
    static func seal(_ bytes: inout [UInt8]) {
        var at = 0
        while true {
            guard let header = bytes.withUnsafeBytes({ BatchHeader.parse($0, at: at) }), at + header.length <= bytes.count else { return }
            let crc = bytes.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[(at + 12)..<(at + header.length)])) }
            bytes.storeLE(crc, at: at + 8)
            at += header.length
        }
    }

    /// Rewrites a head's checksum to match its bytes.
    static func sealHead(_ bytes: inout [UInt8]) {
        guard bytes.count >= PartitionHead.size else { return }
        bytes.storeLE(CRC32C.checksum(Array(bytes[0..<36])), at: 36)
    }

    /// The input, read front to back; short reads give zeros.
    private struct Input {
        let bytes: [UInt8]
        var at = 0
        init(_ bytes: [UInt8]) { self.bytes = bytes }

        mutating func take(_ count: Int) -> [UInt8] {
            let end = min(bytes.count, at + max(0, count))
            defer { at = end }
            return Array(bytes[at..<end])
        }

        mutating func byte() -> UInt8 { take(1).first ?? 0 }
        mutating func uint16() -> UInt16 { take(2).reversed().reduce(0) { $0 << 8 | UInt16($1) } }
        mutating func uint32() -> UInt32 { take(4).reversed().reduce(0) { $0 << 8 | UInt32($1) } }
        mutating func rest() -> [UInt8] { take(bytes.count - at) }
    }
}
