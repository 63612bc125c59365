/// The on-disk frame of a batch of records (all integers little-endian):
///
///     magic u32 "KAP1" | length u32 (whole frame) | crc32c u32 (of bytes 12..<length)
///     baseOffset i64 | count u32 | maxTimestamp i64
///     count × [ timestamp i64 | keyLength i32 (-1: no key) | valueLength u32 | key | value ]
///
/// A frame is written with one `pwrite` and is only made visible to readers once fsynced (see
/// `PartitionHead`), so a reader never meets a torn frame below the head; a torn frame above it
/// is a crash's leftover that recovery cuts off.
struct BatchHeader: Equatable {
    static let magic: UInt32 = 0x3150_414B  // "KAP1" read little-endian
    static let size = 32
    static let recordOverhead = 16
    /// Frames are cut at about this size so that readers work in bounded buffers.
    static let targetFrameBytes = 4 << 20
    /// The largest record accepted (key + value).
    static let maxRecordBytes = 64 << 20
    /// The longest frame written: a frame is cut at `targetFrameBytes` unless it holds one record.
    static let maxFrameBytes = max(targetFrameBytes, size + recordOverhead + maxRecordBytes)
    /// Offsets (and byte positions) in files are below 2^62: bytes claiming more are not a frame
    /// or head, and every sum of an offset and a count (or a position and a length) stays far
    /// from overflowing.
    static let offsetLimit: Int64 = 1 << 62

    var length: Int
    var crc: UInt32
    var baseOffset: Int64
    var count: Int
    var maxTimestamp: Int64

    var lastOffset: Int64 { baseOffset + Int64(count) - 1 }
    var nextOffset: Int64 { baseOffset + Int64(count) }

    /// Reads a header at `at`; nil when the bytes there are not a plausible header: no magic,
    /// no records, a length that cannot hold them or longer than any frame written, offsets
    /// outside `0..<offsetLimit`.
    static func parse(_ buf: UnsafeRawBufferPointer, at: Int) -> BatchHeader? {
        guard at >= 0, at <= buf.count - size, buf.loadLE(UInt32.self, at: at) == magic else { return nil }
        let length = Int(buf.loadLE(UInt32.self, at: at + 4))
        let count = Int(buf.loadLE(UInt32.self, at: at + 20))
        let baseOffset = buf.loadLE(Int64.self, at: at + 12)
        guard count > 0, length >= size + count * recordOverhead, length <= maxFrameBytes,
              baseOffset >= 0, baseOffset < offsetLimit - Int64(count) else { return nil }
        return BatchHeader(length: length, crc: buf.loadLE(UInt32.self, at: at + 8),
                           baseOffset: baseOffset, count: count,
                           maxTimestamp: buf.loadLE(Int64.self, at: at + 24))
    }

    /// True when the frame at `at` (whole, inside `buf`) matches its checksum.
    func verify(_ buf: UnsafeRawBufferPointer, at: Int) -> Bool {
        guard at >= 0, length >= BatchHeader.size, at <= buf.count - length else { return false }
        return CRC32C.checksum(UnsafeRawBufferPointer(rebasing: buf[(at + 12)..<(at + length)])) == crc
    }
}

enum RecordBatchCodec {
    /// Encodes `records` as frames starting at `baseOffset` (records without a timestamp get
    /// `now`), appending to `out`. Returns the start position (in `out`) and header of each frame.
    static func encode(_ records: ArraySlice<ProducerRecord>, baseOffset: Int64, now: Int64, into out: inout [UInt8]) -> [(position: Int, header: BatchHeader)] {
        var frames: [(Int, BatchHeader)] = []
        var i = records.startIndex
        var offset = baseOffset
        while i < records.endIndex {
            // Size the frame first, then write it in place: no per-record reallocation.
            var length = BatchHeader.size
            var end = i
            while end < records.endIndex {
                let size = BatchHeader.recordOverhead + (records[end].key?.count ?? 0) + records[end].value.count
                if end > i && length + size > BatchHeader.targetFrameBytes { break }
                length += size
                end += 1
            }
            let start = out.count
            out.append(contentsOf: repeatElement(0, count: length))
            var maxTs = Int64.min
            out.withUnsafeMutableBytes { buf in
                var p = start + BatchHeader.size
                for r in records[i..<end] {
                    let ts = r.timestamp ?? now
                    maxTs = max(maxTs, ts)
                    buf.storeBytes(of: ts.littleEndian, toByteOffset: p, as: Int64.self)
                    buf.storeBytes(of: Int32(r.key.map { Int32($0.count) } ?? -1).littleEndian, toByteOffset: p + 8, as: Int32.self)
                    buf.storeBytes(of: UInt32(r.value.count).littleEndian, toByteOffset: p + 12, as: UInt32.self)
                    p += BatchHeader.recordOverhead
                    if let key = r.key {
                        key.withUnsafeBytes { k in
                            if k.count > 0 { (buf.baseAddress! + p).copyMemory(from: k.baseAddress!, byteCount: k.count) }
                        }
                        p += key.count
                    }
                    r.value.withUnsafeBytes { v in
                        if v.count > 0 { (buf.baseAddress! + p).copyMemory(from: v.baseAddress!, byteCount: v.count) }
                    }
                    p += r.value.count
                }
                let count = end - i
                buf.storeBytes(of: BatchHeader.magic.littleEndian, toByteOffset: start, as: UInt32.self)
                buf.storeBytes(of: UInt32(length).littleEndian, toByteOffset: start + 4, as: UInt32.self)
                buf.storeBytes(of: offset.littleEndian, toByteOffset: start + 12, as: Int64.self)
                buf.storeBytes(of: UInt32(count).littleEndian, toByteOffset: start + 20, as: UInt32.self)
                buf.storeBytes(of: maxTs.littleEndian, toByteOffset: start + 24, as: Int64.self)
                let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: buf[(start + 12)..<(start + length)]))
                buf.storeBytes(of: crc.littleEndian, toByteOffset: start + 8, as: UInt32.self)
                frames.append((start, BatchHeader(length: length, crc: crc, baseOffset: offset, count: count, maxTimestamp: maxTs)))
            }
            offset += Int64(end - i)
            i = end
        }
        return frames
    }

    /// Decodes the records of a frame at `at` into `entries`, skipping those below `fromOffset`
    /// and stopping after `limit` entries in total. Returns false when the frame does not lie
    /// inside `buf` or a record's lengths overrun it (corruption that passes the checksum is
    /// impossible in practice, but nothing read from the bytes is trusted, so that no read goes
    /// out of bounds whatever the frame holds).
    static func decode(_ buf: UnsafeRawBufferPointer, at: Int, header: BatchHeader, fromOffset: Int64,
                       limit: Int, into entries: inout [LogRecords.Entry]) -> Bool {
        guard at >= 0, header.length >= BatchHeader.size, header.count >= 0, at <= buf.count - header.length,
              header.baseOffset >= 0, header.baseOffset < BatchHeader.offsetLimit - Int64(header.count) else { return false }
        var p = at + BatchHeader.size
        let end = at + header.length
        var offset = header.baseOffset
        for _ in 0..<header.count {
            guard p + BatchHeader.recordOverhead <= end else { return false }
            let ts = buf.loadLE(Int64.self, at: p)
            let keyLength = buf.loadLE(Int32.self, at: p + 8)
            let valueLength = buf.loadLE(UInt32.self, at: p + 12)
            let keyStart = p + BatchHeader.recordOverhead
            let valueStart = keyStart + Int(max(0, keyLength))
            let next = valueStart + Int(valueLength)
            guard keyLength >= -1, next <= end else { return false }
            if offset >= fromOffset {
                if entries.count >= limit { return true }
                // Positions are kept as Int32: a buffer past 2 GiB is refused rather than trapped on.
                guard let keyAt = Int32(exactly: keyStart), let valueAt = Int32(exactly: valueStart),
                      let valueCount = Int32(exactly: valueLength) else { return false }
                entries.append(LogRecords.Entry(offset: offset, timestamp: ts, keyStart: keyAt,
                                                keyLength: keyLength, valueStart: valueAt, valueLength: valueCount))
            }
            offset += 1
            p = next
        }
        return p == end
    }
}
