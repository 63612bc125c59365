import CSQLite
import Foundation
import KappaCore

#if canImport(Glibc)
import Glibc
#endif

/// A replay into SQLite: the demo's v2 job (per-minute OHLC candles) over N BPI ticks, typed
/// (`source.fields`, as shipped) and untyped (its SQL parsing `value`), each read from
/// the embedded log by `VersionRunner` (a worker per partition, a transaction per batch with the
/// offsets), against the ceiling: SQLite itself running the same job SQL over the same rows
/// already in a table, in the same batches (`INSERT INTO batch SELECT … FROM src`, then the
/// job's `INSERT … SELECT … ON CONFLICT DO UPDATE`), a transaction per batch, same pragmas.
/// Also the resident memory during the replay, sampled every 100 ms.
struct ReplayBenchmark {
    var records: Int
    var directory: String?
    /// "typed" or "untyped": that form only.
    var only: String?
    /// The PostgreSQL server to replay into instead of SQLite (`--store postgres`).
    var postgres: String?

    func run() async throws {
        let root = try directory.map { dir -> String in try FileSystem.makeDirectories(dir); return dir }
            ?? FileSystem.makeTemporaryDirectory(prefix: "kappa-bench-replay")
        defer { if directory == nil { try? FileSystem.removeTree(root) } }
        let state = try StateDirectory(path: root + "/state")
        let log = try SegmentLog(state: state)
        _ = try await log.createTopic("bpi", config: TopicConfig(partitions: 3))
        print("kappa-bench replay: \(Render.grouped(Int64(records))) BPI ticks, the demo's btc v2 job, in \(root)")

        // The log: ticks in chunks of 100,000 seconds (a walk per chunk; the content does not matter).
        var produced = 0, chunk = 0
        while produced < records {
            let seconds = min(100_000, (records - produced + 2) / 3)
            let ticks = BPIFeed(seed: UInt64(chunk + 1), start: 1_700_000_000_000 + Int64(chunk) * 100_000_000).ticks(seconds: seconds)
            for i in stride(from: 0, to: ticks.count, by: 10_000) {
                _ = try await log.append(topic: "bpi", records: ticks[i..<min(i + 10_000, ticks.count)].map(\.record))
            }
            produced += ticks.count
            chunk += 1
        }
        print("produced \(Render.grouped(Int64(produced))) records")

        if let postgres {
            #if Postgres
            try await PostgresReplayBenchmark(url: postgres, only: only).run(log: log, produced: produced)
            return
            #else
            throw UsageError("--store postgres needs kappa-bench built with the Postgres trait")
            #endif
        }

        // The shipped v2 reads typed fields (`source.fields`); the same job parsing `value`
        // itself in its SQL is what every job did before them.
        let store = try Store.sqlite(state: state)
        let untyped = only == "typed" ? nil : try await measure(Self.untypedV2, log: log, store: store, root: root, produced: produced)
        let typed = only == "untyped" ? nil : try await measure(DemoManifests.v2, log: log, store: store, root: root, produced: produced)
        print("")
        for (name, m) in [("untyped v2 (value->>…)", untyped), ("typed v2 (source.fields)", typed)] {
            guard let m else { continue }
            print("\(name)")
            print("  SQLite alone, same SQL and batches   \(fmt(Double(produced) / m.ceiling)) records/s  (ceiling)")
            print("  Kappa replay (log → v2 → SQLite)     \(fmt(Double(produced) / m.replay)) records/s  \(fmt(m.ceiling / m.replay, 2)) x ceiling  (target >= 0.9)")
            print("  resident memory                      \(mib(m.startRSS)) MiB before, \(mib(m.peakRSS)) MiB peak during the replay (\(mib(m.peakRSS - m.startRSS)) MiB growth)")
        }
        if let untyped, let typed {
            print("typed replay / untyped replay         \(fmt(untyped.replay / typed.replay, 2)) x  (target >= 3)")
        }
    }

    /// The demo's v2 without `source.fields`, as it shipped before them (2026-12-03): each
    /// expression parses the value (as version 1, below the shipped one, so that both register
    /// in one store).
    static let untypedV2 = DemoManifests.v2
        .replacingOccurrences(of: #", "fields": {"currency": "TEXT", "ts": "BIGINT", "rate": "DOUBLE"}"#, with: "")
        .replacingOccurrences(of: #""sql": "WITH t AS (SELECT currency, ts / 60000 AS minute, rate, \"offset\" AS o FROM batch)"#,
                              with: #""sql": "WITH t AS (SELECT value->>'currency' AS currency, CAST(value->>'ts' AS BIGINT) / 60000 AS minute, CAST(value->>'rate' AS DOUBLE PRECISION) AS rate, \"offset\" AS o FROM batch)"#)
        .replacingOccurrences(of: #""version": 2"#, with: #""version": 1"#)

    struct Measured {
        var replay: Double
        var ceiling: Double
        var startRSS: Int
        var peakRSS: Int
    }

    /// Kappa's replay of `manifest` (VersionRunner over the log into the store), then the
    /// ceiling: the same rows in a table, the same SQL and batches, in SQLite alone.
    func measure(_ manifest: String, log: SegmentLog, store: Store, root: String, produced: Int) async throws -> Measured {
        let spec = try ManifestParser.parse(manifest)
        precondition(spec.source.fields.isEmpty == (manifest == Self.untypedV2), "the untyped manifest still has fields")
        precondition(manifest != Self.untypedV2 || manifest.contains("value->>'rate'"), "the untyped manifest still reads typed fields")
        _ = try await store.registerVersion(spec, manifest: manifest, startOffsets: [0, 0, 0], actor: "bench", reason: "bench")
        let sampler = MemorySampler()
        let startRSS = MemorySampler.residentBytes()
        let sampling = Task { await sampler.run() }
        let started = ContinuousClock.now
        try await VersionRunner(log: log, store: store, job: try StreamJobs.make(spec)).run(.untilEnd)
        let replay = seconds(since: started)
        sampling.cancel()
        let kappaRows = try await store.query("SELECT count(*), sum(samples) FROM \"\(spec.versionTable)\"").rows[0]
        precondition(kappaRows[1] == .integer(Int64(produced)), "replay saw \(kappaRows[1]) records")

        let ceiling = try Ceiling(path: root + "/ceiling-v\(spec.version).sqlite", spec: spec)
        for p in 0..<3 {
            var offset: Int64 = 0
            while true {
                let batch = try await log.read(topic: "bpi", partition: p, from: offset, maxRecords: 50_000, maxBytes: 16 << 20)
                if batch.isEmpty { break }
                try ceiling.load(batch)
                offset = batch.nextOffset
            }
        }
        try ceiling.decodeFields()
        let ceilingSeconds = try ceiling.run(batch: spec.batch)
        let ceilingRows = try ceiling.count(spec.versionTable)
        precondition(ceilingRows == kappaRows[0].displayInt, "ceiling made \(ceilingRows) rows, Kappa \(kappaRows[0])")
        return Measured(replay: replay, ceiling: ceilingSeconds, startRSS: startRSS, peakRSS: sampler.peak)
    }

    func mib(_ bytes: Int) -> String { fmt(Double(bytes) / 1_048_576, 1) }
}

extension SQLValue {
    var displayInt: Int64 { if case .integer(let n) = self { return n } else { return -1 } }
}

/// VmRSS from /proc/self/status, the peak of samples every 100 ms.
final class MemorySampler: @unchecked Sendable {
    private let lock = NSLock()
    private var maximum = 0
    var peak: Int { lock.withLock { maximum } }

    func run() async {
        while !Task.isCancelled {
            let now = Self.residentBytes()
            lock.withLock { maximum = max(maximum, now) }
            try? await Task.sleep(for: .milliseconds(100))
        }
    }

    static func residentBytes() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kb = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") else { return 0 }
        return kb * 1024
    }
}

/// SQLite through its C API, nothing of Kappa's in the timed part.
final class Ceiling {
    private var db: OpaquePointer?
    private let statements: String
    private var counts: [Int] = []

    private let fields: [JobSpec.Column]

    init(path: String, spec: JobSpec) throws {
        guard sqlite3_open(path, &db) == SQLITE_OK else { throw LogError(.io, "cannot open \(path)") }
        statements = SQLJob(spec: spec).statements
        fields = spec.source.fields
        let columns = spec.output.columns.map { "\"\($0.name)\" \($0.type.rawValue)" }.joined(separator: ", ")
        let key = spec.output.primaryKey.map { "\"\($0)\"" }.joined(separator: ", ")
        // Typed fields as the same columns in `src` and `batch` (decoded before the timed part).
        let typed = fields.map { ", \"\($0.name)\" \($0.type == .text ? "TEXT" : $0.type == .real || $0.type == .double ? "REAL" : "INTEGER")" }.joined()
        try exec("""
            PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
            CREATE TABLE src (id INTEGER PRIMARY KEY, partition INTEGER, "offset" INTEGER, timestamp INTEGER, key, value\(typed));
            CREATE TABLE "\(spec.versionTable)" (\(columns), PRIMARY KEY (\(key))) WITHOUT ROWID;
            CREATE TEMP TABLE batch (partition INTEGER, "offset" INTEGER, timestamp INTEGER, key, value, key_bytes\(typed));
            """)
    }

    /// Fills the typed fields' columns of `src` from the values (not timed).
    func decodeFields() throws {
        guard !fields.isEmpty else { return }
        try exec("UPDATE src SET " + fields.map { "\"\($0.name)\" = value->>'\($0.name)'" }.joined(separator: ", "))
    }

    deinit { sqlite3_close_v2(db) }

    func exec(_ sql: String) throws {
        var error: UnsafeMutablePointer<CChar>?
        guard sqlite3_exec(db, sql, nil, nil, &error) == SQLITE_OK else {
            let message = error.map { String(cString: $0) } ?? "?"
            sqlite3_free(error)
            throw LogError(.io, "ceiling: \(message)")
        }
    }

    /// Appends a partition's records to `src` (not timed), keeping where each batch starts.
    func load(_ records: LogRecords) throws {
        try exec("BEGIN")
        var insert: OpaquePointer?
        sqlite3_prepare_v2(db, "INSERT INTO src (partition, \"offset\", timestamp, key, value) VALUES (?, ?, ?, ?, ?)", -1, &insert, nil)
        defer { sqlite3_finalize(insert) }
        let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
        for r in records {
            sqlite3_reset(insert)
            sqlite3_bind_int64(insert, 1, Int64(r.partition))
            sqlite3_bind_int64(insert, 2, r.offset)
            sqlite3_bind_int64(insert, 3, r.timestamp)
            _ = r.key.map { k in k.withUnsafeBytes { sqlite3_bind_text(insert, 4, $0.baseAddress, Int32($0.count), transient) } }
            _ = r.value.map { v in v.withUnsafeBytes { sqlite3_bind_text(insert, 5, $0.baseAddress, Int32($0.count), transient) } }
            guard sqlite3_step(insert) == SQLITE_DONE else { throw LogError(.io, "ceiling: insert failed") }
        }
        try exec("COMMIT")
        counts.append(records.count)
    }

    /// The timed part: per batch of `batch` rows of one partition (as a worker reads them), one
    /// transaction that refills `batch` from `src` and runs the job's statements.
    func run(batch: Int) throws -> Double {
        var prepared: [OpaquePointer?] = []
        var refill: OpaquePointer?
        let typed = fields.map { ", \"\($0.name)\"" }.joined()
        sqlite3_prepare_v2(db, "INSERT INTO temp.batch SELECT partition, \"offset\", timestamp, key, value, NULL\(typed) FROM src WHERE id >= ? AND id < ?", -1, &refill, nil)
        try statements.withCString { base in
            var tail: UnsafePointer<CChar>? = base
            while let start = tail, start.pointee != 0 {
                var statement: OpaquePointer?
                guard sqlite3_prepare_v2(db, start, -1, &statement, &tail) == SQLITE_OK else { throw LogError(.io, "ceiling: job SQL") }
                if let statement { prepared.append(statement) } else { break }
            }
        }
        defer { prepared.forEach { sqlite3_finalize($0) }; sqlite3_finalize(refill) }
        let started = ContinuousClock.now
        var id: Int64 = 1
        for loaded in counts {  // one call to load = one partition's contiguous rows
            var done = 0
            while done < loaded {
                let n = min(batch, loaded - done)
                try exec("BEGIN; DELETE FROM temp.batch")
                sqlite3_reset(refill)
                sqlite3_bind_int64(refill, 1, id)
                sqlite3_bind_int64(refill, 2, id + Int64(n))
                guard sqlite3_step(refill) == SQLITE_DONE else { throw LogError(.io, "ceiling: refill") }
                for statement in prepared {
                    sqlite3_reset(statement)
                    while sqlite3_step(statement) == SQLITE_ROW {}
                }
                try exec("COMMIT")
                id += Int64(n)
                done += n
            }
        }
        return seconds(since: started)
    }

    func count(_ table: String) throws -> Int64 {
        var statement: OpaquePointer?
        sqlite3_prepare_v2(db, "SELECT count(*) FROM \"\(table)\"", -1, &statement, nil)
        defer { sqlite3_finalize(statement) }
        sqlite3_step(statement)
        return sqlite3_column_int64(statement, 0)
    }
}
