/// The on-disk frame of a batch of records (all integers little-endian):
///
///     magic u32 "KAP1" | length u32 (whole frame) | crc32c u32 (of bytes 12..<length)
///     baseOffset i64 | count u32 | maxTimestamp i64
///     count × [ timestamp i64 | keyLength i32 (-1: no key) | valueLength u32 | key | value ]
///
/// A frame holding a null value (tombstone) or headers is a "KAP2" frame instead: the same
/// header with magic "KAP2", and records
///
///     count × [ timestamp i64 | keyLength i32 (-1: no key) | valueLength i32 (-1: null)
///               | headersLength u32 (0: none) | key | value | headers ]
///     headers = headerCount u32 | headerCount × [ nameLength u32 | valueLength i32 (-1: null) | name | value ]
///
/// Frames without either stay KAP1, byte for byte as before; readers take both.
///
/// A frame is written with one `pwrite` and is only made visible to readers once fsynced (see
/// `PartitionHead`), so a reader never meets a torn frame below the head; a torn frame above it
/// is a crash's leftover that recovery cuts off.
struct BatchHeader: Equatable {
    static let magic: UInt32 = 0x3150_414B  // "KAP1" read little-endian
    static let magic2: UInt32 = 0x3250_414B  // "KAP2"
    static let size = 32
    static let recordOverhead = 16
    static let recordOverhead2 = 20
    /// Frames are cut at about this size so that readers work in bounded buffers.
    static let targetFrameBytes = 4 << 20
    /// The largest record accepted (key + value).
    static let maxRecordBytes = 64 << 20
    /// The longest frame written: a frame is cut at `targetFrameBytes` unless it holds one record.
    static let maxFrameBytes = max(targetFrameBytes, size + recordOverhead2 + maxRecordBytes)
    /// Offsets (and byte positions) in files are below 2^62: bytes claiming more are not a frame
    /// or head, and every sum of an offset and a count (or a position and a length) stays far
    /// from overflowing.
    static let offsetLimit: Int64 = 1 << 62

    var length: Int
    var crc: UInt32
    var baseOffset: Int64
    var count: Int
    var maxTimestamp: Int64
    /// 1 for a KAP1 frame, 2 for KAP2.
    var version: Int = 1

    var lastOffset: Int64 { baseOffset + Int64(count) - 1 }
    var nextOffset: Int64 { baseOffset + Int64(count) }

    /// Reads a header at `at`; nil when the bytes there are not a plausible header: no magic,
    /// no records, a length that cannot hold them or longer than any frame written, offsets
    /// outside `0..<offsetLimit`.
    static func parse(_ buf: UnsafeRawBufferPointer, at: Int) -> BatchHeader? {
        guard at >= 0, at <= buf.count - size else { return nil }
        let version: Int
        switch buf.loadLE(UInt32.self, at: at) {
        case magic: version = 1
        case magic2: version = 2
        default: return nil
        }
        let length = Int(buf.loadLE(UInt32.self, at: at + 4))
        let count = Int(buf.loadLE(UInt32.self, at: at + 20))
        let baseOffset = buf.loadLE(Int64.self, at: at + 12)
        guard count > 0, length >= size + count * (version == 1 ? recordOverhead : recordOverhead2), length <= maxFrameBytes,
              baseOffset >= 0, baseOffset < offsetLimit - Int64(count) else { return nil }
        return BatchHeader(length: length, crc: buf.loadLE(UInt32.self, at: at + 8),
                           baseOffset: baseOffset, count: count,
                           maxTimestamp: buf.loadLE(Int64.self, at: at + 24), version: version)
    }

    /// True when the frame at `at` (whole, inside `buf`) matches its checksum.
    func verify(_ buf: UnsafeRawBufferPointer, at: Int) -> Bool {
        guard at >= 0, length >= BatchHeader.size, at <= buf.count - length else { return false }
        return CRC32C.checksum(UnsafeRawBufferPointer(rebasing: buf[(at + 12)..<(at + length)])) == crc
    }
}

/// The headers of one record as stored (in a KAP2 frame, and in a Kafka read's storage):
/// `count u32 | count × [ nameLength u32 | valueLength i32 (-1: null) | name | value ]`.
enum RecordHeaderBlock {
    /// Bytes the block of `headers` takes; 0 for none (no block is written).
    static func length(_ headers: [RecordHeader]) -> Int {
        if headers.isEmpty { return 0 }
        return headers.reduce(4) { $0 + 8 + $1.name.utf8.count + ($1.value?.count ?? 0) }
    }

    /// Appends the block of `headers` (nothing for none).
    static func append(_ headers: [RecordHeader], to out: inout [UInt8]) {
        if headers.isEmpty { return }
        out.appendLE(UInt32(headers.count))
        for h in headers {
            out.appendLE(UInt32(h.name.utf8.count))
            out.appendLE(h.value.map { Int32($0.count) } ?? -1)
            out.append(contentsOf: h.name.utf8)
            if let v = h.value { out.append(contentsOf: v) }
        }
    }

    /// True when `start..<start+length` of `buf` is exactly a well-formed block: every count and
    /// length is checked against what is left before anything is read past it.
    static func isValid(_ buf: UnsafeRawBufferPointer, start: Int, length: Int) -> Bool {
        guard length >= 4, start >= 0, start <= buf.count - length else { return false }
        let end = start + length
        let count = Int(buf.loadLE(UInt32.self, at: start))
        guard count > 0, count <= (length - 4) / 8 else { return false }
        var p = start + 4
        for _ in 0..<count {
            guard end - p >= 8 else { return false }
            let nameLength = Int(buf.loadLE(UInt32.self, at: p))
            let valueLength = Int(buf.loadLE(Int32.self, at: p + 4))
            guard valueLength >= -1 else { return false }
            p += 8
            guard nameLength <= end - p else { return false }
            p += nameLength
            guard max(0, valueLength) <= end - p else { return false }
            p += max(0, valueLength)
        }
        return p == end
    }

    /// The headers of a block already checked by `isValid` (or written by `append`); names that
    /// are not UTF-8 are read with replacement characters.
    static func headers(_ storage: [UInt8], start: Int, length: Int) -> [RecordHeader] {
        storage.withUnsafeBytes { buf in
            guard isValid(buf, start: start, length: length) else { return [] }
            let count = Int(buf.loadLE(UInt32.self, at: start))
            var out: [RecordHeader] = []
            out.reserveCapacity(count)
            var p = start + 4
            for _ in 0..<count {
                let nameLength = Int(buf.loadLE(UInt32.self, at: p))
                let valueLength = Int(buf.loadLE(Int32.self, at: p + 4))
                p += 8
                let name = String(decoding: UnsafeRawBufferPointer(rebasing: buf[p..<(p + nameLength)]), as: UTF8.self)
                p += nameLength
                var value: [UInt8]? = nil
                if valueLength >= 0 {
                    value = Array(UnsafeRawBufferPointer(rebasing: buf[p..<(p + valueLength)]))
                    p += valueLength
                }
                out.append(RecordHeader(name, value))
            }
            return out
        }
    }
}

enum RecordBatchCodec {
    /// True when `record` needs a KAP2 frame: a null value or headers.
    @inline(__always)
    static func needsVersion2(_ record: ProducerRecord) -> Bool {
        record.value == nil || !record.headers.isEmpty
    }

    /// Bytes a record takes in a frame, beyond the per-record overhead.
    @inline(__always)
    static func bodyBytes(_ record: ProducerRecord) -> Int {
        (record.key?.count ?? 0) + (record.value?.count ?? 0) + (record.headers.isEmpty ? 0 : RecordHeaderBlock.length(record.headers))
    }

    /// Bytes `records` take as frames at most (as if every record were in a KAP2 frame), for
    /// segment-size decisions.
    static func encodedBytes(_ records: some Collection<ProducerRecord>) -> Int {
        records.reduce(0) { $0 + BatchHeader.recordOverhead2 + bodyBytes($1) } + BatchHeader.size
    }

    /// Encodes `records` as frames starting at `baseOffset` (records without a timestamp get
    /// `now`), appending to `out`. Returns the start position (in `out`) and header of each frame.
    /// A frame is KAP2 when a record in it has a null value or headers, else KAP1.
    static func encode(_ records: ArraySlice<ProducerRecord>, baseOffset: Int64, now: Int64, into out: inout [UInt8]) -> [(position: Int, header: BatchHeader)] {
        var frames: [(Int, BatchHeader)] = []
        var i = records.startIndex
        var offset = baseOffset
        while i < records.endIndex {
            // Size the frame first, then write it in place: no per-record reallocation.
            var body = 0
            var version2 = false
            var end = i
            while end < records.endIndex {
                let r = records[end]
                let v2 = version2 || needsVersion2(r)
                let size = bodyBytes(r)
                let length = BatchHeader.size + body + size + (end - i + 1) * (v2 ? BatchHeader.recordOverhead2 : BatchHeader.recordOverhead)
                if end > i && length > BatchHeader.targetFrameBytes { break }
                body += size
                version2 = v2
                end += 1
            }
            let count = end - i
            let length = BatchHeader.size + body + count * (version2 ? BatchHeader.recordOverhead2 : BatchHeader.recordOverhead)
            let start = out.count
            var maxTs = Int64.min
            if version2 {
                out.reserveCapacity(start + length)
                out.append(contentsOf: repeatElement(0, count: BatchHeader.size))
                for r in records[i..<end] {
                    let ts = r.timestamp ?? now
                    maxTs = max(maxTs, ts)
                    out.appendLE(ts)
                    out.appendLE(r.key.map { Int32($0.count) } ?? -1)
                    out.appendLE(r.value.map { Int32($0.count) } ?? -1)
                    out.appendLE(UInt32(RecordHeaderBlock.length(r.headers)))
                    if let key = r.key { out.append(contentsOf: key) }
                    if let value = r.value { out.append(contentsOf: value) }
                    RecordHeaderBlock.append(r.headers, to: &out)
                }
            } else {
                out.append(contentsOf: repeatElement(0, count: length))
            }
            out.withUnsafeMutableBytes { buf in
                if !version2 {
                    var p = start + BatchHeader.size
                    for r in records[i..<end] {
                        let ts = r.timestamp ?? now
                        maxTs = max(maxTs, ts)
                        let value = r.value ?? []
                        buf.storeBytes(of: ts.littleEndian, toByteOffset: p, as: Int64.self)
                        buf.storeBytes(of: Int32(r.key.map { Int32($0.count) } ?? -1).littleEndian, toByteOffset: p + 8, as: Int32.self)
                        buf.storeBytes(of: UInt32(value.count).littleEndian, toByteOffset: p + 12, as: UInt32.self)
                        p += BatchHeader.recordOverhead
                        if let key = r.key {
                            key.withUnsafeBytes { k in
                                if k.count > 0 { (buf.baseAddress! + p).copyMemory(from: k.baseAddress!, byteCount: k.count) }
                            }
                            p += key.count
                        }
                        value.withUnsafeBytes { v in
                            if v.count > 0 { (buf.baseAddress! + p).copyMemory(from: v.baseAddress!, byteCount: v.count) }
                        }
                        p += value.count
                    }
                }
                buf.storeBytes(of: (version2 ? BatchHeader.magic2 : BatchHeader.magic).littleEndian, toByteOffset: start, as: UInt32.self)
                buf.storeBytes(of: UInt32(length).littleEndian, toByteOffset: start + 4, as: UInt32.self)
                buf.storeBytes(of: offset.littleEndian, toByteOffset: start + 12, as: Int64.self)
                buf.storeBytes(of: UInt32(count).littleEndian, toByteOffset: start + 20, as: UInt32.self)
                buf.storeBytes(of: maxTs.littleEndian, toByteOffset: start + 24, as: Int64.self)
                let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: buf[(start + 12)..<(start + length)]))
                buf.storeBytes(of: crc.littleEndian, toByteOffset: start + 8, as: UInt32.self)
                frames.append((start, BatchHeader(length: length, crc: crc, baseOffset: offset, count: count, maxTimestamp: maxTs,
                                                  version: version2 ? 2 : 1)))
            }
            offset += Int64(count)
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
        var cursor: Cursor? = nil
        return decode(buf, at: at, header: header, fromOffset: fromOffset, limit: limit, into: &entries, cursor: &cursor)
    }

    /// A record inside a frame: where it starts and its offset (where a read that stopped at its
    /// limit goes on, without parsing the frame again from its start).
    struct Cursor: Sendable, Equatable {
        var position: Int
        var offset: Int64
    }

    /// `decode`, starting at `cursor` when it is set (a record of this frame, as an earlier call
    /// left it), and leaving in it the first record not taken when `limit` stopped it (nil: the
    /// frame was read to its end). A cursor outside the frame is refused (false).
    static func decode(_ buf: UnsafeRawBufferPointer, at: Int, header: BatchHeader, fromOffset: Int64,
                       limit: Int, into entries: inout [LogRecords.Entry], cursor: inout Cursor?) -> Bool {
        guard at >= 0, header.length >= BatchHeader.size, header.count >= 0, at <= buf.count - header.length,
              header.baseOffset >= 0, header.baseOffset < BatchHeader.offsetLimit - Int64(header.count) else { return false }
        var p = at + BatchHeader.size
        let end = at + header.length
        var offset = header.baseOffset
        if let start = cursor {
            guard start.offset >= header.baseOffset, start.offset < header.baseOffset + Int64(header.count), start.position >= p, start.position < end else { return false }
            (p, offset) = (start.position, start.offset)
            cursor = nil
        }
        let count = header.count - Int(offset - header.baseOffset)
        if header.version == 2 { return decode2(buf, p: p, offset: offset, count: count, end: end, fromOffset: fromOffset, limit: limit, into: &entries, cursor: &cursor) }
        for _ in 0..<count {
            guard p + BatchHeader.recordOverhead <= end else { return false }
            let ts = buf.loadLE(Int64.self, at: p)
            let keyLength = buf.loadLE(Int32.self, at: p + 8)
            let valueLength = buf.loadLE(UInt32.self, at: p + 12)
            let keyStart = p + BatchHeader.recordOverhead
            let valueStart = keyStart + Int(max(0, keyLength))
            let next = valueStart + Int(valueLength)
            guard keyLength >= -1, next <= end else { return false }
            if offset >= fromOffset {
                if entries.count >= limit {
                    cursor = Cursor(position: p, offset: offset)
                    return true
                }
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

    /// `decode` for a KAP2 frame: null values and header blocks, each checked before use.
    private static func decode2(_ buf: UnsafeRawBufferPointer, p start: Int, offset first: Int64, count: Int, end: Int, fromOffset: Int64,
                                limit: Int, into entries: inout [LogRecords.Entry], cursor: inout Cursor?) -> Bool {
        var p = start
        var offset = first
        for _ in 0..<count {
            guard end - p >= BatchHeader.recordOverhead2 else { return false }
            let ts = buf.loadLE(Int64.self, at: p)
            let keyLength = buf.loadLE(Int32.self, at: p + 8)
            let valueLength = buf.loadLE(Int32.self, at: p + 12)
            let headersLength = Int(buf.loadLE(UInt32.self, at: p + 16))
            guard keyLength >= -1, valueLength >= -1 else { return false }
            let keyStart = p + BatchHeader.recordOverhead2
            guard Int(max(0, keyLength)) <= end - keyStart else { return false }
            let valueStart = keyStart + Int(max(0, keyLength))
            guard Int(max(0, valueLength)) <= end - valueStart else { return false }
            let headersStart = valueStart + Int(max(0, valueLength))
            guard headersLength <= end - headersStart else { return false }
            if headersLength > 0 && !RecordHeaderBlock.isValid(buf, start: headersStart, length: headersLength) { return false }
            let next = headersStart + headersLength
            if offset >= fromOffset {
                if entries.count >= limit {
                    cursor = Cursor(position: p, offset: offset)
                    return true
                }
                guard let keyAt = Int32(exactly: keyStart), let valueAt = Int32(exactly: valueStart),
                      let headersAt = Int32(exactly: headersStart), let headersCount = Int32(exactly: headersLength) else { return false }
                entries.append(LogRecords.Entry(offset: offset, timestamp: ts, keyStart: keyAt, keyLength: keyLength,
                                                valueStart: valueAt, valueLength: valueLength,
                                                headersStart: headersAt, headersLength: headersCount))
            }
            offset += 1
            p = next
        }
        return p == end
    }
}
