/// Little-endian fixed-width integers in byte buffers: the on-disk encoding of the log.
extension Array where Element == UInt8 {
    @inlinable
    mutating func appendLE<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }

    @inlinable
    mutating func storeLE<T: FixedWidthInteger>(_ value: T, at index: Int) {
        withUnsafeMutableBytes { $0.storeBytes(of: value.littleEndian, toByteOffset: index, as: T.self) }
    }
}

extension UnsafeRawBufferPointer {
    @inlinable
    func loadLE<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        T(littleEndian: loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}
