import Foundation
@testable import KappaCore

/// A state directory with the BPI topic filled and a SQLite store beside it.
struct StoreFixture {
    let dir: TempDirectory
    let state: StateDirectory
    let log: SegmentLog
    let store: SQLiteStore
    let ticks: [BPIFeed.Tick]

    static func make(partitions: Int = 3, minutes: Int = 20, seed: UInt64 = 1) async throws -> StoreFixture {
        let dir = try TempDirectory()
        let state = try StateDirectory(path: dir.path + "/state")
        let log = try SegmentLog(state: state)
        _ = try await log.createTopic("bpi", config: TopicConfig(partitions: partitions))
        let ticks = BPIFeed(seed: seed, start: 28_333_333 * 60_000).ticks(seconds: minutes * 60)
        for chunk in stride(from: 0, to: ticks.count, by: 500) {
            _ = try await log.append(topic: "bpi", records: ticks[chunk..<min(chunk + 500, ticks.count)].map(\.record))
        }
        return StoreFixture(dir: dir, state: state, log: log, store: try SQLiteStore(state: state), ticks: ticks)
    }

    /// An exact (integer) aggregate per currency and minute: count, sum of cents, last offset.
    static func exactManifest(version: Int = 1, batch: Int = 97, table: String = "ticks", onBadRecord: String = "fail") -> String {
        """
        {"job": "t", "version": \(version), "source": {"topic": "bpi"},
         "output": {"table": "\(table)", "columns": {"currency": "TEXT", "minute": "INTEGER", "samples": "INTEGER", "cents": "INTEGER", "last_offset": "INTEGER"},
                    "primaryKey": ["currency", "minute"]},
         "transform": {"sql": "INSERT INTO output(currency, minute, samples, cents, last_offset) SELECT value->>'currency', (value->>'ts') / 60000, count(*), sum(CAST(round((value->>'rate') * 100) AS INTEGER)), max(\\"offset\\") FROM batch WHERE true GROUP BY 1, 2 ON CONFLICT(currency, minute) DO UPDATE SET samples = output.samples + excluded.samples, cents = output.cents + excluded.cents, last_offset = max(output.last_offset, excluded.last_offset)"},
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

    /// The exact aggregate computed here, from the records read straight from the log.
    func expectedExact() async throws -> [[SQLValue]] {
        var groups: [String: (samples: Int64, cents: Int64, last: Int64)] = [:]
        for p in 0..<(try await log.metadata(topic: "bpi").partitions) {
            for record in try await readAll(log, "bpi", p) {
                let object = try JSONSerialization.jsonObject(with: Data(record.value)) as! [String: Any]
                let currency = object["currency"] as! String
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
