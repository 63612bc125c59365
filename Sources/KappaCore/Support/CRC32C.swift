import CKappaCRC

/// CRC-32C (Castagnoli), the checksum Kafka's record batches and iSCSI use.
/// With the CPU's CRC32 instruction where there is one (the C target `CKappaCRC`), else
/// slicing-by-8: eight table look-ups per 8 input bytes.
public enum CRC32C {
    private static let tables: [UInt32] = {
        var t = [UInt32](repeating: 0, count: 8 * 256)
        for i in 0..<256 {
            var c = UInt32(i)
            for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
            t[i] = c
        }
        for i in 0..<256 {
            for k in 1..<8 {
                let prev = t[(k - 1) * 256 + i]
                t[k * 256 + i] = (prev >> 8) ^ t[Int(prev & 0xFF)]
            }
        }
        return t
    }()

    /// Whether this CPU computes CRC-32C itself (x86-64 SSE4.2, AArch64 CRC); checked once.
    public static let hardware = kappa_crc32c_hw_available() == 1

    /// The checksum of `bytes`, continuing from `crc` (0 to start): with the CPU's instruction
    /// when it has one, else slicing-by-8.
    public static func checksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return crc }
        if hardware { return kappa_crc32c_hw(crc, base, bytes.count) }
        return portable(bytes, continuing: crc)
    }

    /// Slicing-by-8, for CPUs without the instruction (and to check the instruction's results).
    static func portable(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        var c = ~crc
        guard var p = bytes.baseAddress, bytes.count > 0 else { return crc }
        var n = bytes.count
        tables.withUnsafeBufferPointer { t in
            let t0 = t.baseAddress!
            while n > 0 && (UInt(bitPattern: p) & 7) != 0 {
                c = t0[Int((c ^ UInt32(p.load(as: UInt8.self))) & 0xFF)] ^ (c >> 8)
                p += 1
                n -= 1
            }
            while n >= 8 {
                let word = UInt64(littleEndian: p.load(as: UInt64.self)) ^ UInt64(c)
                c = t0[7 * 256 + Int(word & 0xFF)]
                    ^ t0[6 * 256 + Int((word >> 8) & 0xFF)]
                    ^ t0[5 * 256 + Int((word >> 16) & 0xFF)]
                    ^ t0[4 * 256 + Int((word >> 24) & 0xFF)]
                    ^ t0[3 * 256 + Int((word >> 32) & 0xFF)]
                    ^ t0[2 * 256 + Int((word >> 40) & 0xFF)]
                    ^ t0[1 * 256 + Int((word >> 48) & 0xFF)]
                    ^ t0[Int(word >> 56)]
                p += 8
                n -= 8
            }
            while n > 0 {
                c = t0[Int((c ^ UInt32(p.load(as: UInt8.self))) & 0xFF)] ^ (c >> 8)
                p += 1
                n -= 1
            }
        }
        return ~c
    }

    /// The checksum of `bytes`.
    public static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0) }
    }
}
