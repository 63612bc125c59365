import Foundation
@testable import KappaCore

/// The stores a contract suite runs on: SQLite always; PostgreSQL with the `Postgres` trait when
/// `scripts/test` started its throwaway server (KAPPA_TEST_POSTGRES).
enum StoreKind: String, Sendable, CaseIterable, CustomStringConvertible {
    case sqlite
    case postgres

    var description: String { rawValue }

    static var postgresURL: String? { ProcessInfo.processInfo.environment["KAPPA_TEST_POSTGRES"].flatMap { $0.isEmpty ? nil : $0 } }

    static var available: [StoreKind] {
        #if Postgres
        return postgresURL == nil ? [.sqlite] : [.sqlite, .postgres]
        #else
        return [.sqlite]
        #endif
    }

    /// The store of this kind: SQLite in `state`, or `schema` on the server.
    func make(state: StateDirectory, schema: String) throws -> Store {
        switch self {
        case .sqlite: return try Store.sqlite(state: state)
        case .postgres:
            #if Postgres
            return try Store.postgres(url: Self.postgresURL!, schema: schema)
            #else
            fatalError("PostgreSQL is not in this build")
            #endif
        }
    }

    /// Runs `sql` on a connection of the test's own, past the store (to damage the catalog).
    func raw(_ sql: String, state: StateDirectory, schema: String) throws {
        switch self {
        case .sqlite: try SQLiteConnection(path: state.catalogPath).execute(sql, name: "test")
        case .postgres:
            #if Postgres
            try PGConnection(url: Self.postgresURL!).execute("SET search_path = \(schema); " + sql, name: "test")
            #endif
        }
    }
}

/// A state directory with the BPI topic filled and a store beside it.
struct StoreFixture {
    let dir: TempDirectory
    let state: StateDirectory
    let log: SegmentLog
    let store: Store
    let kind: StoreKind
    /// The PostgreSQL schema of this fixture's catalog.
    let schema: String
    let ticks: [BPIFeed.Tick]

    /// The same catalog, opened again (as another process would).
    func reopen() throws -> Store { try kind.make(state: state, schema: schema) }

    /// Runs `sql` past the store, on the catalog's database (table names unqualified).
    func raw(_ sql: String) throws { try kind.raw(sql, state: state, schema: schema) }

    static func make(_ kind: StoreKind = .sqlite, partitions: Int = 3, minutes: Int = 20, seed: UInt64 = 1) async throws -> StoreFixture {
        let dir = try TempDirectory()
        let state = try StateDirectory(path: dir.path + "/state")
        let log = try SegmentLog(state: state)
        _ = try await log.createTopic("bpi", config: TopicConfig(partitions: partitions))
        let ticks = BPIFeed(seed: seed, start: 28_333_333 * 60_000).ticks(seconds: minutes * 60)
        for chunk in stride(from: 0, to: ticks.count, by: 500) {
            _ = try await log.append(topic: "bpi", records: ticks[chunk..<min(chunk + 500, ticks.count)].map(\.record))
        }
        let schema = "k\(UInt32.random(in: 0...UInt32.max))"
        return StoreFixture(dir: dir, state: state, log: log, store: try kind.make(state: state, schema: schema), kind: kind, schema: schema, ticks: ticks)
    }

    /// An exact (integer) aggregate per currency and minute: count, sum of cents, last offset, in
    /// SQL both stores accept.
    static func exactManifest(version: Int = 1, batch: Int = 97, table: String = "ticks", onBadRecord: String = "fail") -> String {
        """
        {"job": "t", "version": \(version), "source": {"topic": "bpi"},
         "output": {"table": "\(table)", "columns": {"currency": "TEXT", "minute": "INTEGER", "samples": "INTEGER", "cents": "INTEGER", "last_offset": "INTEGER"},
                    "primaryKey": ["currency", "minute"]},
         "transform": {"sql": "INSERT INTO output(currency, minute, samples, cents, last_offset) SELECT value->>'currency', CAST(value->>'ts' AS BIGINT) / 60000, count(*), sum(CAST(round(CAST(value->>'rate' AS NUMERIC) * 100) AS BIGINT)), max(\\"offset\\") FROM batch WHERE true GROUP BY 1, 2 ON CONFLICT(currency, minute) DO UPDATE SET samples = output.samples + excluded.samples, cents = output.cents + excluded.cents, last_offset = CASE WHEN output.last_offset > excluded.last_offset THEN output.last_offset ELSE excluded.last_offset END"},
         "batch": \(batch), "onBadRecord": "\(onBadRecord)"}
        """
    }

    func register(_ manifest: String, startOffsets: [Int64]? = nil) async throws -> any StreamJob {
        let spec = try ManifestParser.parse(manifest)
        let partitions = try await log.metadata(topic: spec.source.topic).partitions
        let starts = startOffsets ?? Array(repeating: 0, count: partitions)
        _ = try await store.registerVersion(spec, manifest: manifest, startOffsets: starts, actor: "test", reason: "deployed")
        return try StreamJobs.make(spec)
    }

    func replay(_ job: any StreamJob) async throws {
        try await VersionRunner(log: log, store: store, job: job).run(.untilEnd)
    }

    func rows(_ table: String, orderBy: String = "currency, minute") async throws -> [[SQLValue]] {
        try await store.query("SELECT * FROM \"\(table)\" ORDER BY \(orderBy)").rows
    }

    /// Whether a table or view of Kappa's exists, on either store.
    func relationExists(_ name: String) async throws -> Bool {
        let sql = kind == .sqlite
            ? "SELECT count(*) FROM sqlite_master WHERE name = '\(name)'"
            : "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relname = '\(name)'"
        return try await store.query(sql).rows != [[.integer(0)]]
    }

    /// Moves a version along `states` (each step one transition).
    func walk(_ version: Int, _ states: [VersionState], job: String = "t") async throws {
        for (from, to) in zip(states, states.dropFirst()) {
            try await store.transition(job: job, version: version, from: from, to: to, reason: "test", actor: "test", error: nil)
        }
    }

    /// The exact aggregate computed here, from the records read straight from the log.
    func expectedExact() async throws -> [[SQLValue]] {
        var groups: [String: (samples: Int64, cents: Int64, last: Int64)] = [:]
        for p in 0..<(try await log.metadata(topic: "bpi").partitions) {
            for record in try await readAll(log, "bpi", p) {
                guard let object = try? JSONSerialization.jsonObject(with: Data(record.value ?? [])) as? [String: Any],
                      let currency = object["currency"] as? String else { continue }
                let minute = (object["ts"] as! NSNumber).int64Value / 60_000
                let cents = Int64((Double(String(format: "%.2f", (object["rate"] as! NSNumber).doubleValue))! * 100).rounded())
                let key = "\(currency)|\(minute)"
                let g = groups[key] ?? (0, 0, -1)
                groups[key] = (g.samples + 1, g.cents + cents, max(g.last, record.offset))
            }
        }
        return groups.keys.sorted().map { key in
            let parts = key.split(separator: "|")
            let g = groups[key]!
            return [.text(String(parts[0])), .integer(Int64(parts[1])!), .integer(g.samples), .integer(g.cents), .integer(g.last)]
        }
    }
}

extension SQLValue {
    /// The text of a TEXT value (empty otherwise), for assertions.
    var string: String {
        if case .text(let s) = self { return s }
        return ""
    }
}
