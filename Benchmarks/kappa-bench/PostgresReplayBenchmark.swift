#if Postgres
import CLibPQ
import Foundation
import KappaCore

/// `kappa-bench replay --store postgres`: the demo's v2 (typed and untyped) replayed by
/// `VersionRunner` from the log into PostgreSQL, beside two ceilings on the same server in the
/// same run, both through libpq alone:
/// - the same SQL over the same batches: the records already in a table, and per batch one
///   transaction that refills a temporary `batch` from it and runs the job's statement;
/// - `COPY` of the same records into a plain table, a transaction per batch (the load alone).
struct PostgresReplayBenchmark {
    var url: String
    var only: String?

    func run(log: SegmentLog, produced: Int) async throws {
        let schema = "bench_\(UInt32.random(in: 0...UInt32.max))"
        let store = try Store.postgres(url: url, schema: schema)
        let client = try BarePG(url: url)
        defer { try? client.exec("DROP SCHEMA IF EXISTS \(schema) CASCADE; DROP SCHEMA IF EXISTS \(schema)_ceiling CASCADE") }
        try client.exec("CREATE SCHEMA \(schema)_ceiling; SET search_path = \(schema)_ceiling")
        // The records, once, in a table of the ceiling's (not timed).
        try client.exec("CREATE TABLE src (id BIGSERIAL PRIMARY KEY, partition INTEGER, \"offset\" BIGINT, timestamp BIGINT, key TEXT, value JSONB, key_bytes BYTEA)")
        var counts: [Int] = []
        var copyText: [[UInt8]] = []  // per partition, COPY rows (for the COPY ceiling)
        for p in 0..<3 {
            var offset: Int64 = 0, n = 0
            var rows: [UInt8] = []
            while true {
                let batch = try await log.read(topic: "bpi", partition: p, from: offset, maxRecords: 50_000, maxBytes: 16 << 20)
                if batch.isEmpty { break }
                rows += BarePG.copyRows(batch)
                n += batch.count
                offset = batch.nextOffset
            }
            try client.copy("COPY src (partition, \"offset\", timestamp, key, value, key_bytes) FROM STDIN", rows)
            counts.append(n)
            copyText.append(rows)
        }
        try client.exec("ANALYZE src")
        print("postgres: \(Redaction.url(url)), schema \(schema); records loaded into the ceiling's table")

        var results: [(String, Double, Double)] = []
        for (name, manifest) in [("untyped v2 (value->>…)", ReplayBenchmark.untypedV2), ("typed v2 (source.fields)", DemoManifests.v2)] {
            let spec = try ManifestParser.parse(manifest)
            if only == "typed" && spec.source.fields.isEmpty || only == "untyped" && !spec.source.fields.isEmpty { continue }
            _ = try await store.registerVersion(spec, manifest: manifest, startOffsets: [0, 0, 0], actor: "bench", reason: "bench")
            let started = ContinuousClock.now
            try await VersionRunner(log: log, store: store, job: try StreamJobs.make(spec)).run(.untilEnd)
            let replay = seconds(since: started)
            let sum = try await store.query("SELECT sum(samples) FROM \"\(spec.versionTable)\"").rows[0][0]
            precondition(sum == .integer(Int64(produced)), "replay saw \(sum) records")
            let ceiling = try sameSQL(client, spec: spec, counts: counts)
            results.append((name, replay, ceiling))
        }
        // COPY alone, in the same batches (a transaction each).
        try client.exec("CREATE TABLE copied (partition INTEGER, \"offset\" BIGINT, timestamp BIGINT, key TEXT, value JSONB, key_bytes BYTEA)")
        let batch = try ManifestParser.parse(DemoManifests.v2).batch
        let copyStarted = ContinuousClock.now
        for rows in copyText {
            var start = rows.startIndex
            while start < rows.endIndex {
                var end = start, lines = 0
                while end < rows.endIndex && lines < batch {
                    end = (rows[end...].firstIndex(of: 0x0A) ?? rows.endIndex - 1) + 1
                    lines += 1
                }
                try client.exec("BEGIN")
                try client.copy("COPY copied FROM STDIN", Array(rows[start..<end]))
                try client.exec("COMMIT")
                start = end
            }
        }
        let copySeconds = seconds(since: copyStarted)

        print("")
        print("COPY of the records, a transaction per batch        \(fmt(Double(produced) / copySeconds)) records/s  (ceiling of the load)")
        for (name, replay, ceiling) in results {
            print("\(name)")
            print("  libpq alone, same SQL and batches   \(fmt(Double(produced) / ceiling)) records/s  (ceiling)")
            print("  Kappa replay (log → v2 → PostgreSQL) \(fmt(Double(produced) / replay)) records/s  \(fmt(ceiling / replay, 2)) x ceiling  (target >= 0.7); \(fmt(copySeconds / replay, 2)) x COPY")
        }
    }

    /// The ceiling: per batch of one partition, a transaction that refills `batch` from `src`
    /// and runs the job's statement, through libpq; its seconds.
    func sameSQL(_ client: BarePG, spec: JobSpec, counts: [Int]) throws -> Double {
        let fields = spec.source.fields
        let typedColumns = fields.map { ", \"\($0.name)\" \($0.type == .text ? "TEXT" : $0.type == .bigint || $0.type == .integer ? "BIGINT" : "DOUBLE PRECISION")" }.joined()
        let typedValues = fields.map { ", \"\($0.name)\"" }.joined()
        let table = "v\(spec.version)_out"
        let columns = spec.output.columns.map { "\"\($0.name)\" \($0.type == .text ? "TEXT" : $0.type == .integer ? "BIGINT" : "DOUBLE PRECISION")" }.joined(separator: ", ")
        try client.exec("""
            DROP TABLE IF EXISTS pg_temp.batch; CREATE TEMP TABLE batch (partition INTEGER, "offset" BIGINT, timestamp BIGINT, key TEXT, value JSONB, key_bytes BYTEA\(typedColumns));
            CREATE TABLE \(table) (\(columns), PRIMARY KEY (\(spec.output.primaryKey.map { "\"\($0)\"" }.joined(separator: ", "))))
            """)
        // The typed fields decoded before the timed part, as Kappa decodes them before its SQL.
        if !fields.isEmpty {
            func type(_ f: JobSpec.Column) -> String { f.type == .text ? "TEXT" : f.type == .bigint || f.type == .integer ? "BIGINT" : "DOUBLE PRECISION" }
            try client.exec("ALTER TABLE src " + fields.map { "ADD COLUMN IF NOT EXISTS \"\($0.name)\" \(type($0))" }.joined(separator: ", "))
            try client.exec("UPDATE src SET " + fields.map { "\"\($0.name)\" = (value->>'\($0.name)')::\(type($0))" }.joined(separator: ", "))
            try client.exec("VACUUM ANALYZE src")
        }
        let sql = SQLJob(spec: spec).statements.replacingOccurrences(of: "\"\(spec.versionTable)\"", with: table)
        let refill = "INSERT INTO batch SELECT partition, \"offset\", timestamp, key, value, key_bytes\(typedValues) FROM src WHERE id >= $1 AND id < $2"
        try client.prepare("refill", refill)
        let started = ContinuousClock.now
        var id = 1
        for loaded in counts {
            var done = 0
            while done < loaded {
                let n = min(spec.batch, loaded - done)
                try client.exec("BEGIN; DELETE FROM pg_temp.batch")
                try client.execPrepared("refill", [String(id), String(id + n)])
                try client.exec(sql)
                try client.exec("COMMIT")
                id += n
                done += n
            }
        }
        let took = seconds(since: started)
        try client.exec("DEALLOCATE refill")
        return took
    }
}

/// libpq alone, nothing of Kappa's.
final class BarePG {
    private let conn: OpaquePointer

    init(url: String) throws {
        guard let c = PQconnectdb(url), PQstatus(c) == CONNECTION_OK else { throw LogError(.io, "ceiling: cannot connect to PostgreSQL") }
        conn = c
        try exec("SET client_min_messages = warning")
    }

    deinit { PQfinish(conn) }

    private func check(_ result: OpaquePointer?, _ what: String) throws {
        let status = PQresultStatus(result)
        guard status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK else {
            throw LogError(.io, "ceiling: \(what): \(String(cString: PQresultErrorMessage(result)))")
        }
    }

    func exec(_ sql: String) throws {
        let result = PQexec(conn, sql)
        defer { PQclear(result) }
        try check(result, String(sql.prefix(60)))
    }

    func prepare(_ name: String, _ sql: String) throws {
        let result = PQprepare(conn, name, sql, 0, nil)
        defer { PQclear(result) }
        try check(result, "prepare \(name)")
    }

    func execPrepared(_ name: String, _ values: [String]) throws {
        let cStrings = values.map { strdup($0) }
        defer { cStrings.forEach { free($0) } }
        let pointers = cStrings.map { UnsafePointer<CChar>($0) }
        let result = pointers.withUnsafeBufferPointer { PQexecPrepared(conn, name, Int32(values.count), $0.baseAddress, nil, nil, 0) }
        defer { PQclear(result) }
        try check(result, name)
    }

    func copy(_ sql: String, _ rows: [UInt8]) throws {
        let start = PQexec(conn, sql)
        guard PQresultStatus(start) == PGRES_COPY_IN else { defer { PQclear(start) }; try check(start, "copy"); return }
        PQclear(start)
        rows.withUnsafeBufferPointer { buf in
            var at = 0
            while at < buf.count {
                let n = min(1 << 20, buf.count - at)
                _ = (buf.baseAddress! + at).withMemoryRebound(to: CChar.self, capacity: n) { PQputCopyData(conn, $0, Int32(n)) }
                at += n
            }
        }
        _ = PQputCopyEnd(conn, nil)
        while let result = PQgetResult(conn) {
            defer { PQclear(result) }
            try check(result, "copy")
        }
    }

    /// BPI records as COPY text rows (their keys are text, their values JSON without escapes to
    /// double: the demo's ticks).
    static func copyRows(_ records: LogRecords) -> [UInt8] {
        var out: [UInt8] = []
        let hex = Array("0123456789abcdef".utf8)
        for r in records {
            out += Array("\(r.partition)\t\(r.offset)\t\(r.timestamp)\t".utf8)
            if let key = r.key { out += key } else { out += Array("\\N".utf8) }
            out.append(0x09)
            if let value = r.value { out += value } else { out += Array("\\N".utf8) }
            out.append(0x09)
            if let key = r.key {
                out += Array("\\\\x".utf8)
                for b in key { out.append(hex[Int(b >> 4)]); out.append(hex[Int(b & 0x0F)]) }
            } else {
                out += Array("\\N".utf8)
            }
            out.append(0x0A)
        }
        return out
    }
}
#endif
