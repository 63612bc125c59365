import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Where an archive keeps its objects: a flat namespace of keys such as
/// `bpi/0/00000000000000000000.seg`, holding immutable objects (archived segments) and
/// replaceable ones (a partition's manifest), replaced only by a writer that read the version
/// it replaces. A local directory (`DirectoryArchiveStorage`) or an S3 bucket
/// (`S3ArchiveStorage`, trait `S3`); `SegmentArchive` is the one archive over either, and
/// `ArchiveStorageContractTests` hold both to the same promises.
///
/// Every method blocks the calling thread for its I/O (a file, or a request to the object
/// store): call them on the blocking executor, as the logs do.
public protocol ArchiveStorage: Sendable, CustomStringConvertible {
    /// Names `key` where it is, for messages: a path, or an `s3://` URL (never a credential).
    func display(_ key: String) -> String
    /// The object's bytes in `range` (past the end: cut at the end), or nil when there is no
    /// object `key`.
    func get(_ key: String, range: Range<Int64>) throws -> [UInt8]?
    /// `get` with the bytes' CRC-32C (a store that checksums while receiving saves a pass).
    func getChecksummed(_ key: String, range: Range<Int64>) throws -> (bytes: [UInt8], crc32c: UInt32)?
    /// Stores an immutable object whole: a reader sees all of it or none (never a part).
    func put(_ key: String, _ bytes: [UInt8]) throws
    /// A replaceable object with a tag naming its version, or nil when there is none.
    func getVersioned(_ key: String) throws -> (bytes: [UInt8], tag: String)?
    /// Replaces `key` with `bytes` only if its version is still `tag` (nil: only if there is
    /// none yet), atomically against every other writer; returns the new version's tag.
    /// - Throws: `ArchiveConflict` when another writer replaced it meanwhile.
    func replace(_ key: String, _ bytes: [UInt8], ifTag tag: String?) throws -> String
    /// How long (milliseconds) a replaceable object read may be reused without asking again:
    /// 0 for a directory (a `stat` is cheap), more for a remote store (each ask is a request).
    var freshnessMs: Int64 { get }
    /// The version tag of a replaceable object without reading it (nil: none), when cheaper
    /// than `getVersioned`.
    func tag(_ key: String) throws -> String?
    /// The objects whose keys start with `prefix` (a folder, `t/0/`, and what is below it), in
    /// key order, each with its size and when it was written.
    func list(_ prefix: String) throws -> [ArchiveObject]
    /// Deletes `key` (no error when it is gone already).
    func delete(_ key: String) throws
}

extension ArchiveStorage {
    public func getChecksummed(_ key: String, range: Range<Int64>) throws -> (bytes: [UInt8], crc32c: UInt32)? {
        try get(key, range: range).map { ($0, CRC32C.checksum($0)) }
    }
}

/// An object as a storage lists it.
public struct ArchiveObject: Sendable, Equatable, Codable {
    /// Its key (`t/0/00000000000000000000-1f.seg`).
    public var key: String
    public var bytes: Int64
    /// When it was written (milliseconds since 1970), by the storage's clock.
    public var modifiedMs: Int64

    public init(key: String, bytes: Int64, modifiedMs: Int64) {
        self.key = key
        self.bytes = bytes
        self.modifiedMs = modifiedMs
    }
}

/// A replaceable object was replaced by another writer since it was read: nothing was written.
public struct ArchiveConflict: Error, Sendable, CustomStringConvertible {
    public var object: String
    public var description: String { "\(object) was replaced by another writer since it was read" }
}

/// The archive in a local directory: `<root>/<key>`. Immutable objects are written to a
/// temporary file, fsynced and renamed into place; a replaceable one is swapped the same way
/// under an exclusive `flock` on `<key>.lock` after checking its tag (size, modification time
/// and inode of the file), so that two writers on one machine cannot both replace one version.
public struct DirectoryArchiveStorage: ArchiveStorage {
    public let root: String

    public init(root: String) { self.root = root }

    public var description: String { root }
    public func display(_ key: String) -> String { path(key) }
    public var freshnessMs: Int64 { 0 }

    func path(_ key: String) -> String { root + "/" + key }

    public func get(_ key: String, range: Range<Int64>) throws -> [UInt8]? {
        let file: FileDescriptor
        do {
            file = try FileDescriptor(path: path(key), flags: O_RDONLY)
        } catch let error as IOError where error.code == ENOENT {
            return nil
        }
        let size = try file.size()
        let upper = min(range.upperBound, size)
        guard range.lowerBound < upper else { return [] }
        return try file.read(count: Int(upper - range.lowerBound), at: range.lowerBound)
    }

    public func put(_ key: String, _ bytes: [UInt8]) throws {
        let target = path(key)
        try FileSystem.makeDirectories(String(target[..<target.lastIndex(of: "/")!]))
        try FileSystem.writeAtomically(bytes, to: target)
    }

    /// Copies the file at `source` into `key` (1 MiB at a time, never whole in memory), the same
    /// way as `put`; returns its size and CRC-32C.
    func put(_ key: String, copying source: FileDescriptor) throws -> (bytes: Int64, crc32c: UInt32) {
        let target = path(key)
        try FileSystem.makeDirectories(String(target[..<target.lastIndex(of: "/")!]))
        let temporary = target + ".tmp"
        let file = try FileDescriptor(path: temporary, flags: O_WRONLY | O_CREAT | O_TRUNC)
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        var at: Int64 = 0, crc: UInt32 = 0
        while true {
            let n = try chunk.withUnsafeMutableBytes { try source.read(into: $0, at: at) }
            if n == 0 { break }
            try chunk.withUnsafeBytes { try file.write(UnsafeRawBufferPointer(rebasing: $0[0..<n]), at: at) }
            crc = chunk.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<n]), continuing: crc) }
            at += Int64(n)
        }
        try file.sync()
        try FileSystem.rename(temporary, to: target)
        return (at, crc)
    }

    public func getVersioned(_ key: String) throws -> (bytes: [UInt8], tag: String)? {
        // The tag of the file opened, not of the path (which a writer may swap meanwhile).
        let file: FileDescriptor
        do {
            file = try FileDescriptor(path: path(key), flags: O_RDONLY)
        } catch let error as IOError where error.code == ENOENT {
            return nil
        }
        let info = try file.status()
        return (try file.read(count: Int(info.st_size), at: 0), Self.tag(info))
    }

    public func tag(_ key: String) throws -> String? {
        var info = stat()
        guard stat(path(key), &info) == 0 else {
            if errno == ENOENT { return nil }
            throw IOError("stat", path: path(key))
        }
        return Self.tag(info)
    }

    public func list(_ prefix: String) throws -> [ArchiveObject] {
        // A folder's files and the folders below it (the prefix up to its last slash).
        let folder = prefix.lastIndex(of: "/").map { String(prefix[..<$0]) } ?? ""
        var out: [ArchiveObject] = []
        func walk(_ relative: String) throws {
            let directory = relative.isEmpty ? root : path(relative)
            guard FileSystem.isDirectory(directory) else { return }
            for name in try FileSystem.list(directory) {
                let key = relative.isEmpty ? name : relative + "/" + name
                var info = stat()
                guard lstat(directory + "/" + name, &info) == 0 else {
                    if errno == ENOENT { continue }  // deleted meanwhile
                    throw IOError("stat", path: directory + "/" + name)
                }
                if (info.st_mode & S_IFMT) == S_IFDIR {
                    if key.utf8.starts(with: prefix.utf8) || prefix.utf8.starts(with: (key + "/").utf8) { try walk(key) }
                } else if (info.st_mode & S_IFMT) == S_IFREG, key.utf8.starts(with: prefix.utf8) {
                    out.append(ArchiveObject(key: key, bytes: Int64(info.st_size),
                                             modifiedMs: Int64(info.st_mtim.tv_sec) * 1000 + Int64(info.st_mtim.tv_nsec) / 1_000_000))
                }
            }
        }
        try walk(folder)
        return out.sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
    }

    public func delete(_ key: String) throws {
        try FileSystem.removeFile(path(key))
    }

    static func tag(_ info: stat) -> String {
        "\(info.st_ino)-\(info.st_size)-\(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec)"
    }

    public func replace(_ key: String, _ bytes: [UInt8], ifTag expected: String?) throws -> String {
        let target = path(key)
        try FileSystem.makeDirectories(String(target[..<target.lastIndex(of: "/")!]))
        let lock = try FileDescriptor(path: target + ".lock", flags: O_RDWR | O_CREAT)
        try lock.lockExclusive()
        defer { lock.unlock() }
        guard try tag(key) == expected else { throw ArchiveConflict(object: target) }
        try FileSystem.writeAtomically(bytes, to: target)
        guard let now = try tag(key) else { throw ArchiveConflict(object: target) }
        return now
    }
}
