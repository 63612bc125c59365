import Foundation

/// The embedded default's state directory (`.kappa/` unless `--state DIR` or `KAPPA_STATE` say
/// otherwise): log segments under `log/`, the catalog in `kappa.sqlite`, and a marker file
/// `kappa.state` that records the layout's version.
public struct StateDirectory: Sendable, Equatable {
    /// The layout this release writes.
    public static let layoutVersion = 1
    static let markerName = "kappa.state"

    public let path: String
    /// False for a directory that was not there and not created (`create: false`): the log and
    /// the catalog in it cannot be opened (`requireExisting`), a catalog elsewhere can.
    public private(set) var exists = true

    public var logDirectory: String { "\(path)/log" }
    public var catalogPath: String { "\(path)/kappa.sqlite" }

    /// Resolves the directory: an explicit flag first, then `KAPPA_STATE`, then `.kappa`.
    public static func resolve(flag: String?, environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        flag ?? environment["KAPPA_STATE"].flatMap { $0.isEmpty ? nil : $0 } ?? ".kappa"
    }

    /// Opens a state directory, creating it when absent (unless `create` is false: then the
    /// value only names it, and `exists` is false).
    /// - Throws: `StateError` when the path is a file, a directory that holds something else, or a
    ///   layout written by a newer Kappa.
    public init(path: String, create: Bool = true) throws {
        self.path = path
        let marker = "\(path)/\(Self.markerName)"
        if FileSystem.exists(path) && !FileSystem.isDirectory(path) {
            throw StateError("\(path) is not a directory; pass a directory with --state or KAPPA_STATE")
        }
        if FileSystem.exists(marker) {
            let text = String(decoding: (try? FileSystem.readAll(marker)) ?? [], as: UTF8.self)
            guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
                  let version = object["layout"] as? Int else {
                throw StateError("\(marker) is damaged: expected {\"layout\": N}")
            }
            if version > Self.layoutVersion {
                throw StateError("\(path) was written by a newer Kappa (layout \(version); this release reads up to \(Self.layoutVersion)); upgrade kappactl")
            }
            return
        }
        // Another process creating the directory at this moment has only its marker's temporary
        // file there: then this one writes the marker too (the same bytes, renamed into place).
        if FileSystem.isDirectory(path), let entries = try? FileSystem.list(path),
           entries.contains(where: { !$0.hasPrefix(Self.markerName + ".tmp-") }) {
            throw StateError("\(path) is not a Kappa state directory (no \(Self.markerName) and not empty); pass another with --state")
        }
        guard create else {
            if !FileSystem.exists(path) { exists = false; return }
            throw StateError("no Kappa state directory at \(path)")
        }
        do {
            try FileSystem.makeDirectories(path)
            try FileSystem.writeAtomically(Array("{\"layout\": \(Self.layoutVersion)}\n".utf8), to: marker)
        } catch {
            throw StateError("cannot create the state directory \(path): \(error)")
        }
    }

    /// Whether this process may create files in the directory.
    public var writable: Bool { exists && access(path, W_OK) == 0 }

    /// - Throws: `StateError` when the directory does not exist (a command that only reads
    ///   never creates it).
    public func requireExisting() throws {
        guard exists else {
            throw StateError("no Kappa state directory at \(path) (pass --state or KAPPA_STATE; a command that changes something creates it, e.g. kappactl topic create)")
        }
    }
}

/// A state directory that cannot be used.
public struct StateError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
