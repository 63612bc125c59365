import Foundation
import Testing
@testable import KappaCore

@Suite struct ExecJobTests {
    static func manifest(_ argv: [String], timeout: String = "10s", batch: Int = 300, onBadRecord: String = "fail", env: String = "{}",
                         columns: String = #"{"currency": "TEXT", "ts": "INTEGER", "rate": "REAL"}"#, key: String = "currency") -> String {
        """
        {"job": "x", "version": 1, "source": {"topic": "bpi"},
         "output": {"table": "latest", "columns": \(columns), "primaryKey": ["\(key)"]},
         "transform": {"exec": [\(argv.map(JSONScanner.quote).joined(separator: ", "))], "timeout": "\(timeout)", "env": \(env)},
         "batch": \(batch), "onBadRecord": "\(onBadRecord)"}
        """
    }

    static func sh(_ script: String) -> [String] { ["/bin/sh", "-c", script] }

    /// A shell program that answers each batch with `lines` (one JSON line each), then its end.
    static func answering(_ lines: String...) -> [String] {
        sh(#"while read -r l; do case "$l" in *batchEnd*) "# + lines.map { "echo '\($0)'; " }.joined() + #"echo '{"batchEnd": true}';; esac; done"#)
    }

    /// A python3 program written into `dir`, for output a shell cannot write in one go.
    static func python(_ code: String, in dir: TempDirectory, name: String = "job.py") throws -> [String] {
        let path = dir.path + "/" + name
        try code.write(toFile: path, atomically: true, encoding: .utf8)
        return ["python3", path]
    }

    /// Replays `job` and returns how its version failed (recording an issue when it did not).
    static func failure(_ f: StoreFixture, _ job: any StreamJob) async throws -> String {
        do {
            try await f.replay(job)
            Issue.record("the version did not fail")
            return ""
        } catch let failure as JobFailure {
            return failure.description
        }
    }

    @Test func theShippedPythonExampleKeepsTheLatestRatePerCurrency() async throws {
        let f = try await StoreFixture.make(minutes: 3)
        let root = #filePath.components(separatedBy: "/Tests/")[0]
        let job = try await f.register(Self.manifest(["python3", root + "/Manifests/examples/latest_rate.py"]))
        try await f.replay(job)
        let rows = try await f.rows("latest__v1", orderBy: "currency")
        let expected = BPIFeed.currencies.sorted().map { c -> [SQLValue] in
            let last = f.ticks.last { $0.currency == c }!
            return [.text(c), .integer(last.ts), .real(Double(String(format: "%.2f", last.rate))!)]
        }
        #expect(rows == expected)
        #expect(try await f.store.nextOffsets(job: "x", version: 1) == (try await f.log.offsets(topic: "bpi").map(\.end)))
    }

    @Test func deletesAndUpsertsFromAShellProgram() async throws {
        let f = try await StoreFixture.make(partitions: 1, minutes: 1)
        // Upserts a fixed row per record, then deletes EUR at each batch's end.
        let script = #"while read -r l; do case "$l" in *batchEnd*) echo '{"delete": {"currency": "EUR"}}'; echo '{"batchEnd": true}';; *) echo '{"upsert": {"currency": "EUR", "ts": 1, "rate": 2.5}}'; echo '{"upsert": {"currency": "ALL", "ts": 7}}';; esac; done"#
        try await f.replay(f.register(Self.manifest(Self.sh(script))))
        #expect(try await f.rows("latest__v1", orderBy: "currency") == [[.text("ALL"), .integer(7), .null]])
    }

    @Test(arguments: [
        ("read -r l; exit 3", "program \"/bin/sh -c read -r l; exit 3\", partition 0 offsets 0…179: exited with status 3 before the end of the batch"),
        ("echo oops >&2; kill -9 $$", "was killed by signal 9 before the end of the batch; its stderr ends: oops"),
        (#"while read -r l; do case "$l" in *batchEnd*) echo 'not json'; echo '{"batchEnd": true}';; esac; done"#, #"malformed output line "not json": not JSON (invalid literal at column 1)"#),
        (#"while read -r l; do case "$l" in *batchEnd*) echo '{"upsert": {"price": 1}}'; echo '{"batchEnd": true}';; esac; done"#, #"malformed output line "{\"upsert\": {\"price\": 1}}": unknown column "price""#),
        (#"while read -r l; do case "$l" in *batchEnd*) echo '{"upsert": {"rate": 1}}'; echo '{"batchEnd": true}';; esac; done"#, "missing primary key column currency"),
        ("sleep 30", "did not finish the batch within 300ms (transform.timeout); it was stopped"),
    ])
    func misbehavingProgramsFailTheVersionWithWhereAndWhat(script: String, message: String) async throws {
        let f = try await StoreFixture.make(partitions: 1, minutes: 1)
        let job = try await f.register(Self.manifest(Self.sh(script), timeout: script.hasPrefix("sleep") ? "300ms" : "20s"))
        do {
            try await f.replay(job)
            Issue.record("a misbehaving program did not fail the version")
        } catch let failure as JobFailure {
            #expect(failure.description.contains(message), "\(failure)")
            #expect(failure.description.hasPrefix("job x v1 partition 0 offset 0: program \"/bin/sh -c "))
        }
        #expect(try await f.store.nextOffsets(job: "x", version: 1) == [0])  // nothing committed
    }

    @Test func aProgramThatDoesNotExistIsRefusedAtDeploy() async throws {
        let f = try await StoreFixture.make(partitions: 1, minutes: 1)
        let text = Self.manifest(["no-such-program-kappa"])
        let op = Operator(log: f.log, store: f.store, actor: "test")
        do {
            _ = try await op.deploy(spec: ManifestParser.parse(text), manifest: text, allowPartial: false)
            Issue.record("deployed a missing program")
        } catch let error as CatalogError {
            #expect(error.message == "transform.exec: program \"no-such-program-kappa\" not found (not a file, and not in PATH)")
        }
    }

    // MARK: values against the declared column types

    @Test(arguments: [
        (#"{"upsert": {"currency": "EUR", "ts": 1e400}}"#, #"column "ts" (INTEGER): expected a whole number in the 64-bit range, got 1e400"#),
        (#"{"upsert": {"currency": "EUR", "ts": "notanint"}}"#, #"column "ts" (INTEGER): expected a whole number, got the string "notanint""#),
        (#"{"upsert": {"currency": "EUR", "ts": 1.5}}"#, #"column "ts" (INTEGER): expected a whole number in the 64-bit range, got 1.5"#),
        (#"{"upsert": {"currency": "EUR", "ts": 9223372036854775808}}"#, #"column "ts" (INTEGER): expected a whole number in the 64-bit range, got 9223372036854775808"#),
        (#"{"upsert": {"currency": "EUR", "ts": true}}"#, #"column "ts" (INTEGER): expected a whole number, got true"#),
        (#"{"upsert": {"currency": "EUR", "rate": 1e400}}"#, #"column "rate" (REAL): expected a finite number, got 1e400"#),
        (#"{"upsert": {"currency": "EUR", "rate": "2.5"}}"#, #"column "rate" (REAL): expected a number, got the string "2.5""#),
        (#"{"upsert": {"currency": 5}}"#, #"column "currency" (TEXT): expected a string, got 5"#),
        (#"{"upsert": {"currency": ["EUR"]}}"#, #"column "currency" (TEXT): expected a string, got an array"#),
        (#"{"upsert": {"currency": "EU\u0000R"}}"#, #"column "currency" (TEXT): the string contains a NUL character (\u0000)"#),
        (#"{"delete": {"currency": null}}"#, #"column "currency" is in the primary key and cannot be null"#),
    ])
    func aValueItsColumnsTypeRefusesIsABadRecordNamingTheColumn(line: String, message: String) async throws {
        let f = try await StoreFixture.make(partitions: 1, minutes: 1)
        let failure = try await Self.failure(f, f.register(Self.manifest(Self.answering(line))))
        #expect(failure.hasPrefix("job x v1 partition 0 offset 0: program \"/bin/sh -c "), "\(failure)")
        #expect(failure.hasSuffix(", partition 0 offsets 0…179: bad record: output line \(JSONScanner.quote(line)): \(message) (onBadRecord is \"fail\")"), "\(failure)")
        #expect(try await f.store.nextOffsets(job: "x", version: 1) == [0])  // nothing committed
        #expect(try await f.rows("latest__v1", orderBy: "currency") == [])
    }

    @Test func underDeadLetterABadValueIsLeftOutAndKeptWithTheColumnAndItsLine() async throws {
        let f = try await StoreFixture.make(partitions: 1, minutes: 1)
        let bad = #"{"upsert": {"currency": "USD", "ts": "late"}}"#
        let job = try await f.register(Self.manifest(Self.answering(#"{"upsert": {"currency": "EUR", "ts": 1, "rate": 2.5}}"#, bad),
                                                     batch: 60, onBadRecord: "deadLetter"))
        try await f.replay(job)
        #expect(try await f.rows("latest__v1", orderBy: "currency") == [[.text("EUR"), .integer(1), .real(2.5)]])
        #expect(try await f.store.nextOffsets(job: "x", version: 1) == [180])
        // One row per batch (its first offset): no key, the rejected line as the value, and why.
        let dead = try await f.rows("latest__v1__dead", orderBy: "\"offset\"")
        #expect(dead.map { [$0[1], $0[3], $0[4], $0[5]] } == [0, 60, 120].map { (offset: Int64) -> [SQLValue] in
            [.integer(offset), .null, .blob(Array(bad.utf8)),
             .text(#"1 program output line for offsets \#(offset)…\#(offset + 59) left out: column "ts" (INTEGER): expected a whole number, got the string "late""#)]
        })
    }

    @Test func eachDeclaredTypeTakesItsJSONForm() async throws {
        let f = try await StoreFixture.make(partitions: 1, minutes: 1)
        let columns = #"{"k": "TEXT", "i": "INTEGER", "b": "BIGINT", "r": "REAL", "d": "DOUBLE", "n": "NUMERIC", "f": "BOOLEAN", "x": "BLOB", "z": "INTEGER"}"#
        let line = #"{"upsert": {"k": "a", "i": 3.0, "b": -3e2, "r": 1, "d": -0.5, "n": 12, "f": true, "x": "hi", "z": null}}"#
        try await f.replay(f.register(Self.manifest(Self.answering(line), columns: columns, key: "k")))
        #expect(try await f.rows("latest__v1", orderBy: "k")
                == [[.text("a"), .integer(3), .integer(-300), .real(1), .real(-0.5), .integer(12), .integer(1), .blob(Array("hi".utf8)), .null]])
    }

    // MARK: the protocol around batchEnd

    @Test func outputAfterBatchEndInTheSameWriteFailsTheVersion() async throws {
        let f = try await StoreFixture.make(partitions: 1, minutes: 1)
        let program = try Self.python("""
            import json, sys
            for line in sys.stdin:
                if "batchEnd" in json.loads(line):
                    sys.stdout.write('{"batchEnd": true}\\n{"upsert": {"currency": "LATE", "ts": 1}}\\n')
                    sys.stdout.flush()
            """, in: f.dir)
        let failure = try await Self.failure(f, f.register(Self.manifest(program)))
        #expect(failure.hasSuffix(#"partition 0 offsets 0…179: protocol error: it wrote "{\"upsert\": {\"currency\": \"LATE\", \"ts\": 1}}" after {"batchEnd": true}; nothing may follow the end of a batch before the next batch is sent"#), "\(failure)")
        #expect(try await f.store.nextOffsets(job: "x", version: 1) == [0])
    }

    @Test func outputBetweenBatchesIsNotTakenForTheNextBatchs() async throws {
        let f = try await StoreFixture.make(partitions: 1, minutes: 1)
        let go = f.dir.path + "/first-batch-taken", marker = f.dir.path + "/wrote-late"
        // Once the first batch was taken (the test says so with a file): one more line, then a
        // file that says it was written.
        let program = try Self.python("""
            import json, os, sys, time
            batches = 0
            for line in sys.stdin:
                if "batchEnd" in json.loads(line):
                    batches += 1
                    print('{"batchEnd": true}', flush=True)
                    if batches == 1:
                        while not os.path.exists(\(JSONScanner.quote(go))):
                            time.sleep(0.01)
                        print('{"upsert": {"currency": "LATE", "ts": 1}}', flush=True)
                        open(\(JSONScanner.quote(marker)), "w").close()
            """, in: f.dir)
        let job = ExecJob(spec: try ManifestParser.parse(Self.manifest(program, batch: 60)))
        let first = try await f.log.read(topic: "bpi", partition: 0, from: 0, maxRecords: 60, maxBytes: 1 << 20)
        #expect(try await job.plan(first) == .rows([], rejected: []))
        try "".write(toFile: go, atomically: true, encoding: .utf8)
        let deadline = Date().addingTimeInterval(30)
        while !FileManager.default.fileExists(atPath: marker) && Date() < deadline { try await Task.sleep(for: .milliseconds(20)) }
        #expect(FileManager.default.fileExists(atPath: marker), "the program did not write its late line")
        let second = try await f.log.read(topic: "bpi", partition: 0, from: 60, maxRecords: 60, maxBytes: 1 << 20)
        do {
            let plan = try await job.plan(second)
            Issue.record("the late line was taken as the next batch's: \(plan)")
        } catch let failure as JobFailure {
            #expect(failure.message.hasSuffix(#"partition 0 offsets 60…119: protocol error: it wrote "{\"upsert\": {\"currency\": \"LATE\", \"ts\": 1}}" after {"batchEnd": true}, before the next batch was sent"#), "\(failure)")
        }
    }

    @Test func batchEndBeforeTheWholeBatchWasSentFailsTheVersion() async throws {
        // 900 records, more than a pipe holds, and a program that ends the batch unread.
        let f = try await StoreFixture.make(partitions: 1, minutes: 5)
        let program = try Self.python("""
            import sys, time
            print('{"batchEnd": true}', flush=True)
            time.sleep(60)
            """, in: f.dir)
        let failure = try await Self.failure(f, f.register(Self.manifest(program, batch: 1000)))
        #expect(failure.contains("partition 0 offsets 0…899: protocol error: it wrote "), "\(failure)")
        #expect(try await f.store.nextOffsets(job: "x", version: 1) == [0])
    }

    // MARK: the program: what it is, what it sees

    @Test func onlyAnExecutableRegularFileIsAProgram() async throws {
        let f = try await StoreFixture.make(partitions: 1, minutes: 1)
        let plain = f.dir.path + "/plain.py"
        try "print(1)".write(toFile: plain, atomically: true, encoding: .utf8)
        let bin = f.dir.path + "/bin"
        try FileManager.default.createDirectory(atPath: bin + "/tool", withIntermediateDirectories: true)
        try "#!/bin/sh".write(toFile: bin + "/script", atomically: true, encoding: .utf8)
        let op = Operator(log: f.log, store: f.store, actor: "test")
        let cases: [(argv: [String], env: String, message: String)] = [
            ([f.dir.path], "{}", "program \(JSONScanner.quote(f.dir.path)) is a directory, not an executable file"),
            ([plain], "{}", "program \(JSONScanner.quote(plain)) is not executable (no execute permission)"),
            (["/dev/null"], "{}", #"program "/dev/null" is not a regular file"#),
            // Looked up in the program's own PATH: a directory or a file without x is skipped.
            (["tool"], #"{"PATH": "\#(bin)"}"#, #"program "tool" not found (not a file, and not in PATH)"#),
            (["script"], #"{"PATH": "\#(bin)"}"#, #"program "script" not found (not a file, and not in PATH)"#),
        ]
        for c in cases {
            let text = Self.manifest(c.argv, env: c.env)
            do {
                _ = try await op.deploy(spec: ManifestParser.parse(text), manifest: text, allowPartial: false)
                Issue.record("deployed \(c.argv)")
            } catch let error as CatalogError {
                #expect(error.message == "transform.exec: " + c.message)
            }
        }
        do {
            _ = try ManifestParser.parse(Self.manifest([""]))
            Issue.record("parsed an empty program")
        } catch let error as ManifestError {
            #expect(error.description == "transform.exec[0]: is empty: it names the program")
        }
        #expect(try await f.store.versions(job: "x").isEmpty)
    }

    @Test func theEnvironmentIsTheAllowListPlusTransformEnv() {
        let parent = ["KAPPA_HTTP_TOKEN": "t0ken", "PGPASSWORD": "pw", "PATH": "/bin", "HOME": "/home/k", "LANG": "C.UTF-8",
                      "LC_ALL": "C", "LC_TIME": "en_GB", "TZ": "UTC", "LD_PRELOAD": "/x.so", "SHELL": "/bin/bash"]
        #expect(ExecProcess.environment(["MODE": "fast", "TZ": "Europe/Paris"], parent: parent)
                == ["PATH": "/bin", "HOME": "/home/k", "LANG": "C.UTF-8", "LC_ALL": "C", "LC_TIME": "en_GB", "TZ": "Europe/Paris", "MODE": "fast"])
    }

    @Test func aProgramGetsNoOtherDescriptorAndDefaultSignals() async throws {
        let f = try await StoreFixture.make(partitions: 1, minutes: 1)
        // Opened without O_CLOEXEC, as a library might: still not the program's.
        let leaked = open(f.dir.path + "/leak", O_RDWR | O_CREAT, 0o600)
        #expect(leaked >= 3)
        defer { close(leaked) }
        let program = try Self.python("""
            import json, os, sys
            for line in sys.stdin:
                if "batchEnd" in json.loads(line):
                    fds = [fd for fd in range(3, 4096) if os.path.exists("/proc/self/fd/%d" % fd)]
                    print(json.dumps({"upsert": {"currency": "fds", "ts": len(fds)}}))
                    print(json.dumps({"upsert": {"currency": "leaked", "ts": int(\(leaked) in fds)}}))
                    print('{"batchEnd": true}', flush=True)
            """, in: f.dir)
        try await f.replay(f.register(Self.manifest(program)))
        #expect(try await f.rows("latest__v1", orderBy: "currency") == [[.text("fds"), .integer(0), .null], [.text("leaked"), .integer(0), .null]])

        // JobHost ignores SIGPIPE (and SIGTERM, through its signal sources): a program does not.
        let g = try await StoreFixture.make(partitions: 1, minutes: 1)
        let ignored = Self.sh(#"while read -r l; do case "$l" in *batchEnd*) m=$(sed -n 's/^SigIgn:[[:space:]]*//p' /proc/$$/status); echo "{\"upsert\": {\"currency\": \"$m\"}}"; echo '{"batchEnd": true}';; esac; done"#)
        try await g.replay(g.register(Self.manifest(ignored)))
        let rows = try await g.rows("latest__v1", orderBy: "currency")
        // Signals 1…31 (glibc keeps 32 and 33 for itself, which a spawn cannot reset).
        let mask = rows.first.flatMap { UInt64($0[0].string, radix: 16) }
        #expect(mask.map { $0 & 0x7FFF_FFFF } == 0, "ignored signals: \(rows)")
    }
}
