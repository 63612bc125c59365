/// Kafka's murmur2 hash (`org.apache.kafka.common.utils.Utils.murmur2`), bit for bit, so that a
/// keyed record lands in the partition Kafka's default partitioner would choose.
public enum Murmur2 {
    /// The 32-bit hash of `data`, as a signed Java `int`.
    public static func hash<Bytes: Collection>(_ data: Bytes) -> Int32 where Bytes.Element == UInt8 {
        let bytes = Array(data)
        let m: UInt32 = 0x5BD1_E995
        let length = bytes.count
        var h: UInt32 = 0x9747_B28C ^ UInt32(truncatingIfNeeded: length)
        var i = 0
        while i + 4 <= length {
            var k = UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16 | UInt32(bytes[i + 3]) << 24
            k &*= m
            k ^= k >> 24
            k &*= m
            h &*= m
            h ^= k
            i += 4
        }
        let tail = length & ~3
        switch length % 4 {
        case 3:
            h ^= UInt32(bytes[tail + 2]) << 16
            h ^= UInt32(bytes[tail + 1]) << 8
            h ^= UInt32(bytes[tail])
            h &*= m
        case 2:
            h ^= UInt32(bytes[tail + 1]) << 8
            h ^= UInt32(bytes[tail])
            h &*= m
        case 1:
            h ^= UInt32(bytes[tail])
            h &*= m
        default:
            break
        }
        h ^= h >> 13
        h &*= m
        h ^= h >> 15
        return Int32(bitPattern: h)
    }

    /// Kafka's `toPositive(murmur2(key)) % partitions`.
    public static func partition<Bytes: Collection>(forKey key: Bytes, partitions: Int) -> Int where Bytes.Element == UInt8 {
        precondition(partitions > 0)
        let positive = UInt32(bitPattern: hash(key)) & 0x7FFF_FFFF
        return Int(positive) % partitions
    }
}
