/// Walks the frames of a segment file in order, reading in large chunks.
/// Used by recovery (checksums verified), retention (timestamps) and index rebuilds.
struct FrameWalker {
    enum Stop: Equatable {
        /// Every frame up to `limit` was whole (and valid, when verifying).
        case end(position: Int64)
        /// `body` asked to stop at the frame at `position`.
        case stopped(position: Int64)
        /// The bytes at `position` are not a frame: short, not a header, or a checksum mismatch.
        case invalid(position: Int64, reason: String)
    }

    static let chunk = 1 << 20

    /// Calls `body` with each frame's position and header from `position` up to `limit`, until
    /// it returns false. With `verify`, each frame's checksum is checked before `body` sees it.
    static func walk(_ file: FileDescriptor, from position: Int64, limit: Int64, verify: Bool, chunk: Int = chunk,
                     _ body: (Int64, BatchHeader) throws -> Bool) throws -> Stop {
        var pos = position
        var buffer = [UInt8](repeating: 0, count: chunk)
        while pos < limit {
            let want = Int(min(Int64(chunk), limit - pos))
            if buffer.count < want { buffer = [UInt8](repeating: 0, count: want) }
            let got = try buffer.withUnsafeMutableBytes { try file.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<want]), at: pos) }
            let eof = got < want
            var at = 0
            let result: Stop? = try buffer.withUnsafeBytes { raw -> Stop? in
                let buf = UnsafeRawBufferPointer(rebasing: raw[0..<got])
                while at < got {
                    guard let header = BatchHeader.parse(buf, at: at) else {
                        if got - at < BatchHeader.size && !eof && at > 0 { return nil }  // header split by the chunk: read on from it
                        return .invalid(position: pos + Int64(at), reason: got - at < BatchHeader.size ? "incomplete frame header" : "not a frame header")
                    }
                    if pos + Int64(at) + Int64(header.length) > limit {
                        return .invalid(position: pos + Int64(at), reason: "frame of \(header.length) bytes runs past the end of the data")
                    }
                    if at + header.length > got {
                        if at > 0 { return nil }  // read again from this frame
                        // A frame larger than the chunk: read it whole.
                        if verify {
                            let whole = try file.read(count: header.length, at: pos)
                            let ok = whole.withUnsafeBytes { header.verify($0, at: 0) }
                            if !ok { return .invalid(position: pos, reason: "checksum mismatch") }
                        }
                        if try !body(pos, header) { return .stopped(position: pos) }
                        at = header.length
                        return nil
                    }
                    if verify && !header.verify(buf, at: at) {
                        return .invalid(position: pos + Int64(at), reason: "checksum mismatch")
                    }
                    if try !body(pos + Int64(at), header) { return .stopped(position: pos + Int64(at)) }
                    at += header.length
                }
                return nil
            }
            if let result { return result }
            if got == 0 { return .invalid(position: pos, reason: "file ends before the expected data") }
            pos += Int64(at)
        }
        return .end(position: pos)
    }
}
