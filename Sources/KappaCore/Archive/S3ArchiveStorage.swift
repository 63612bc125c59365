#if S3
/// The archive in an S3 bucket (`--archive s3://BUCKET/PREFIX`): keys below the location's
/// prefix. Immutable objects are single PUTs (an object appears whole or not at all); a manifest
/// is replaced with `If-Match` of the ETag read (`If-None-Match: *` for the first), which the
/// store checks atomically against every other writer, on any machine.
public struct S3ArchiveStorage: ArchiveStorage {
    public let client: S3Client

    public init(client: S3Client) { self.client = client }

    public var description: String { client.location.description }
    public func display(_ key: String) -> String { client.location.display(key: key) }
    /// A manifest read is reused for a second: each ask is a request, and readers ask on every
    /// offsets call.
    public var freshnessMs: Int64 { 1_000 }

    public func get(_ key: String, range: Range<Int64>) throws -> [UInt8]? {
        do {
            return try client.get(key, range: range)
        } catch let error as S3Error where error.code == .notFound {
            return nil
        } catch let error as S3Error where error.code == .invalidRange && range.lowerBound == 0 {
            return []  // an empty object: no byte 0 to start at
        }
    }

    public func getChecksummed(_ key: String, range: Range<Int64>) throws -> (bytes: [UInt8], crc32c: UInt32)? {
        do {
            return try client.getChecksummed(key, range: range)
        } catch let error as S3Error where error.code == .notFound {
            return nil
        } catch let error as S3Error where error.code == .invalidRange && range.lowerBound == 0 {
            return ([], 0)
        }
    }

    public func list(_ prefix: String) throws -> [ArchiveObject] {
        // A listing without a time says nothing of the object's age: taken as written now.
        let now = currentTimeMillis()
        return try client.list(prefix: prefix).map { ArchiveObject(key: $0.key, bytes: $0.size, modifiedMs: $0.lastModifiedMs ?? now) }
    }

    public func delete(_ key: String) throws {
        try client.delete(key)
    }

    public func put(_ key: String, _ bytes: [UInt8]) throws {
        try client.put(key, bytes)
    }

    public func getVersioned(_ key: String) throws -> (bytes: [UInt8], tag: String)? {
        try client.getVersioned(key).map { ($0.bytes, $0.etag) }
    }

    public func tag(_ key: String) throws -> String? {
        try client.head(key).map { $0.etag ?? "" }
    }

    public func replace(_ key: String, _ bytes: [UInt8], ifTag tag: String?) throws -> String {
        do {
            guard let etag = try client.put(key, bytes, condition: tag.map { .ifMatch($0) } ?? .ifAbsent), !etag.isEmpty else {
                // Written, but without an ETag to replace it by next time: read it back.
                guard let now = try client.head(key)?.etag else { throw ArchiveConflict(object: display(key)) }
                return now
            }
            return etag
        } catch let error as S3Error where error.code == .preconditionFailed || error.status == 409 {
            throw ArchiveConflict(object: display(key))
        }
    }
}
#endif
