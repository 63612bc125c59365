#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A failed system call on a file, with the path and the operation that failed.
public struct IOError: Error, Sendable, CustomStringConvertible {
    /// What was being done (`open`, `pwrite`, `fsync`, …).
    public var operation: String
    /// The file or directory concerned.
    public var path: String
    /// The `errno` value.
    public var code: Int32

    public init(_ operation: String, path: String, code: Int32 = errno) {
        self.operation = operation
        self.path = path
        self.code = code
    }

    /// True when the device is full (ENOSPC) or over quota (EDQUOT).
    public var isOutOfSpace: Bool { code == ENOSPC || code == EDQUOT }

    public var description: String {
        "\(operation) \(path): \(String(cString: strerror(code)))"
    }
}

/// An open file descriptor. Closes itself on deinit; the descriptor never leaves this type.
///
/// `@unchecked Sendable`: the only stored state is the immutable descriptor and path; every
/// operation is a positional system call (`pread`/`pwrite`/`fsync`), which the kernel makes safe
/// to issue from several threads at once.
public final class FileDescriptor: @unchecked Sendable {
    public let path: String
    private let fd: Int32

    /// Opens `path` with POSIX `flags` (e.g. `O_RDWR | O_CREAT`).
    /// - Throws: `IOError` naming the path.
    public init(path: String, flags: Int32, mode: mode_t = 0o644) throws {
        var fd: Int32
        repeat { fd = open(path, flags | O_CLOEXEC, mode) } while fd < 0 && errno == EINTR
        guard fd >= 0 else { throw IOError("open", path: path) }
        self.fd = fd
        self.path = path
    }

    /// Opens `name` relative to the open directory `directory` (`openat`: a shorter path walk
    /// when many files of one directory tree are opened).
    /// - Throws: `IOError` naming the whole path.
    public init(_ name: String, in directory: FileDescriptor, flags: Int32, mode: mode_t = 0o644) throws {
        var fd: Int32
        repeat { fd = openat(directory.fd, name, flags | O_CLOEXEC, mode) } while fd < 0 && errno == EINTR
        guard fd >= 0 else { throw IOError("open", path: directory.path + "/" + name) }
        self.fd = fd
        self.path = directory.path + "/" + name
    }

    deinit { close(fd) }

    /// The size of `name` relative to this open directory, or nil when it does not exist.
    public func size(of name: String) -> Int64? {
        var st = stat()
        return fstatat(fd, name, &st, 0) == 0 ? Int64(st.st_size) : nil
    }

    /// The file's `fstat`.
    public func status() throws -> stat {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw IOError("fstat", path: path) }
        return st
    }

    /// The file's current size in bytes.
    public func size() throws -> Int64 {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw IOError("fstat", path: path) }
        return Int64(st.st_size)
    }

    /// Reads up to `buffer.count` bytes at `offset`; returns how many were read (less only at end of file).
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws -> Int {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw IOError("pread", path: path)
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// Reads up to `count` bytes at `offset` into a new array (shorter at end of file).
    public func read(count: Int, at offset: Int64) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        let n = try bytes.withUnsafeMutableBytes { try read(into: $0, at: offset) }
        if n < count { bytes.removeLast(count - n) }
        return bytes
    }

    /// Writes all of `bytes` at `offset`.
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw IOError("pwrite", path: path)
            }
            done += n
        }
    }

    /// Writes all of `bytes` at `offset`.
    public func write(_ bytes: [UInt8], at offset: Int64) throws {
        try bytes.withUnsafeBytes { try write($0, at: offset) }
    }

    /// Flushes the file's data (and the metadata needed to read it back) to stable storage.
    public func sync() throws {
        var rc: Int32
        repeat { rc = fdatasync(fd) } while rc != 0 && errno == EINTR
        guard rc == 0 else { throw IOError("fdatasync", path: path) }
    }

    /// Flushes data and all metadata (`fsync`); needed for directories.
    public func syncAll() throws {
        var rc: Int32
        repeat { rc = fsync(fd) } while rc != 0 && errno == EINTR
        guard rc == 0 else { throw IOError("fsync", path: path) }
    }

    /// Cuts the file to `length` bytes.
    public func truncate(to length: Int64) throws {
        guard ftruncate(fd, off_t(length)) == 0 else { throw IOError("ftruncate", path: path) }
    }

    /// Takes an exclusive advisory lock (flock), waiting for it; released by `unlock()` or on close.
    public func lockExclusive() throws {
        var rc: Int32
        repeat { rc = flock(fd, LOCK_EX) } while rc != 0 && errno == EINTR
        guard rc == 0 else { throw IOError("flock", path: path) }
    }

    /// Tries to take an exclusive lock without waiting; returns false when another holder has it.
    public func tryLockExclusive() throws -> Bool {
        if flock(fd, LOCK_EX | LOCK_NB) == 0 { return true }
        if errno == EWOULDBLOCK { return false }
        throw IOError("flock", path: path)
    }

    /// Releases the lock taken by `lockExclusive()`.
    public func unlock() {
        _ = flock(fd, LOCK_UN)
    }
}

/// File-system operations on paths, each failing with an `IOError` that names the path.
/// A file's device and inode.
public struct FileIdentity: Sendable, Hashable {
    public var device: UInt64
    public var inode: UInt64
}

public enum FileSystem {
    /// True when something exists at `path`.
    public static func exists(_ path: String) -> Bool {
        access(path, F_OK) == 0
    }

    /// True when `path` is a directory.
    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// The file's identity (device and inode), or nil when it does not exist: a file replaced
    /// under the same name has another.
    public static func identity(_ path: String) -> FileIdentity? {
        var st = stat()
        return stat(path, &st) == 0 ? FileIdentity(device: UInt64(st.st_dev), inode: UInt64(st.st_ino)) : nil
    }

    /// Size of the file at `path`, or nil when it does not exist.
    public static func size(_ path: String) -> Int64? {
        var st = stat()
        return stat(path, &st) == 0 ? Int64(st.st_size) : nil
    }

    /// Creates `path` and its missing parents.
    public static func makeDirectories(_ path: String) throws {
        if isDirectory(path) { return }
        let parent = parentDirectory(path)
        if !parent.isEmpty, parent != path { try makeDirectories(parent) }
        if mkdir(path, 0o755) != 0 && errno != EEXIST { throw IOError("mkdir", path: path) }
    }

    /// The names in a directory (without `.` and `..`), unsorted.
    public static func list(_ path: String) throws -> [String] {
        guard let dir = opendir(path) else { throw IOError("opendir", path: path) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: Int(NAME_MAX) + 1) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Renames atomically (replacing `to` if it is a file).
    public static func rename(_ from: String, to: String) throws {
        guard Glibc.rename(from, to) == 0 else { throw IOError("rename", path: from) }
    }

    /// Removes a file; a file that is already gone is not an error.
    public static func removeFile(_ path: String) throws {
        if unlink(path) != 0 && errno != ENOENT { throw IOError("unlink", path: path) }
    }

    /// Removes a directory tree; a tree that is already gone is not an error.
    public static func removeTree(_ path: String) throws {
        guard isDirectory(path) else { return try removeFile(path) }
        for name in try list(path) { try removeTree(path + "/" + name) }
        if rmdir(path) != 0 && errno != ENOENT { throw IOError("rmdir", path: path) }
    }

    /// Makes a directory's entries (new, renamed or removed files) durable.
    public static func syncDirectory(_ path: String) throws {
        let dir = try FileDescriptor(path: path, flags: O_RDONLY | O_DIRECTORY)
        do {
            try dir.syncAll()
        } catch let error as IOError where error.code == EINVAL {
            // Some file systems refuse fsync on directories; their entries are durable anyway.
        }
    }

    /// Writes `bytes` to `path` atomically: a temp file beside it, fsync, rename, fsync of the directory.
    public static func writeAtomically(_ bytes: [UInt8], to path: String) throws {
        let tmp = path + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        do {
            let file = try FileDescriptor(path: tmp, flags: O_WRONLY | O_CREAT | O_TRUNC)
            try file.write(bytes, at: 0)
            try file.sync()
        }
        try rename(tmp, to: path)
        try syncDirectory(parentDirectory(path))
    }

    /// Reads a whole (small) file.
    public static func readAll(_ path: String) throws -> [UInt8] {
        let file = try FileDescriptor(path: path, flags: O_RDONLY)
        return try file.read(count: Int(try file.size()), at: 0)
    }

    /// The directory part of `path` (`.` for a bare name).
    public static func parentDirectory(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// A new empty directory under the system temp directory.
    public static func makeTemporaryDirectory(prefix: String) throws -> String {
        let base = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        var template = Array("\(base)/\(prefix)-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw IOError("mkdtemp", path: base)
        }
        return String(cString: made)
    }
}
