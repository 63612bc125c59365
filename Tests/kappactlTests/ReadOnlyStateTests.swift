import Foundation
import Testing
@testable import KappaCore

/// Commands that only read never create a state directory, and read one this user may not
/// write (an operator looking at JobHost's state) without changing anything in it.
@Suite struct ReadOnlyStateTests {
    static let readers: [[String]] = [["status"], ["lag", "btc"], ["history", "btc"], ["query", "btc"], ["diff", "btc", "1", "2"],
                                      ["consume", "bpi"], ["topic", "list"], ["topic", "describe", "bpi"], ["archive", "status", "bpi"]]

    @Test func readOnlyCommandsNeverCreateAStateDirectory() async throws {
        let box = try Sandbox()
        let missing = box.root + "/no/such/state"
        for command in Self.readers {
            let result = try await box.kappactl(["--state", missing] + command, withState: false)
            #expect(result.status == 1, "\(command)")
            #expect(result.stderr.hasPrefix("error: no Kappa state directory at \(missing)"), "\(command): \(result.stderr)")
        }
        #expect(!FileSystem.exists(box.root + "/no"))
        // A command that changes something still creates it.
        #expect(try await box.kappactl(["--state", missing, "topic", "create", "t", "-p", "1"], withState: false).status == 0)
        #expect(FileSystem.exists(missing + "/kappa.state"))
    }

    /// Every file of the state directory with its size and modification time.
    static func snapshot(_ dir: String) throws -> [String: String] {
        var files: [String: String] = [:]
        let enumerator = FileManager.default.enumerator(atPath: dir)
        while let name = enumerator?.nextObject() as? String {
            let attributes = try FileManager.default.attributesOfItem(atPath: dir + "/" + name)
            files[name] = "\(attributes[.size] ?? 0) \((attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0)"
        }
        return files
    }

    @Test func anotherUsersStateDirectoryIsReadAsItIs() async throws {
        let box = try Sandbox()
        try await box.kappactl(["topic", "create", "bpi", "-p", "2"])
        #expect(try await box.kappactl(["produce", "bpi"], stdin: WorkflowTests.feedLines(seed: 1, startMinute: 28_000_000, seconds: 120)).status == 0)
        #expect(try await box.kappactl(["deploy", "-f", WorkflowTests.root + "/Manifests/btc-v1.json"]).status == 0)
        let records = try await box.kappactl(["consume", "bpi"]).lines.count
        // A crash's leftover beyond a head (which a writer would cut): never read, not touched.
        let segment = box.state + "/log/bpi/0/00000000000000000000.log"
        let tail = try FileDescriptor(path: segment, flags: O_RDWR)
        try tail.write(Array(repeating: 0xEE, count: 57), at: try tail.size())
        // As root, read as nobody; otherwise take write permission away.
        let asRoot = getuid() == 0 && FileSystem.exists("/usr/bin/setpriv")
        if asRoot {
            #expect(chmod(box.root, 0o755) == 0)
            #expect(try await box.run("/bin/chmod", ["-R", "a+rX", box.state]).status == 0)
        } else {
            #expect(try await box.run("/bin/chmod", ["-R", "a-w", box.state]).status == 0)
        }
        defer { _ = try? FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: box.state) }
        let before = try Self.snapshot(box.state)
        func read(_ args: [String]) async throws -> RunResult {
            let command = [Executables.kappactl, "--state", box.state] + args
            return asRoot ? try await box.run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups"] + command)
                : try await box.run(command[0], Array(command.dropFirst()))
        }
        let status = try await read(["status"])
        #expect(status.status == 0, "\(status.stderr)")
        #expect(status.stdout.contains("job btc: view btc_prices on topic bpi"), "\(status.stdout)")
        let history = try await read(["history", "btc"])
        #expect(history.status == 0 && history.stdout.contains("deployed"), "\(history.stderr)")
        let lag = try await read(["lag", "btc"])
        #expect(lag.status == 0, "\(lag.stderr)")
        #expect(try await read(["topic", "list"]).status == 0)
        let consumed = try await read(["consume", "bpi"])
        #expect(consumed.status == 0, "\(consumed.stderr)")
        #expect(consumed.lines.count == records)
        let described = try await read(["topic", "describe", "bpi"])
        #expect(described.status == 0 && !described.stdout.contains("DAMAGED"), "\(described.stderr)")
        let checked = try await read(["topic", "check", "bpi"])
        #expect(checked.status == 0, "\(checked.stderr)")
        #expect(checked.stdout.contains("57 bytes beyond the head"), "\(checked.stdout)")
        #expect(try Self.snapshot(box.state) == before)
        // A reader of its own (Python's sqlite3) closes the database last: SQLite checkpoints and
        // removes its -wal and -shm files, which a read-only WAL reader needs, so it reads the
        // file as an immutable snapshot.
        let closed = try await box.run("/usr/bin/env", ["python3", "-c", "import sqlite3; c = sqlite3.connect('\(box.state)/kappa.sqlite'); c.execute('SELECT count(*) FROM sqlite_master').fetchall(); c.close()"])
        #expect(closed.status == 0, "\(closed.stderr)")
        #expect(!FileSystem.exists(box.state + "/kappa.sqlite-wal"))
        let again = try await read(["status"])
        #expect(again.status == 0, "\(again.stderr)")
        #expect(again.stdout.contains("job btc: view btc_prices on topic bpi"))
        #expect(try await read(["history", "btc"]).status == 0)
    }
}
