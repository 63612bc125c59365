import Foundation
import Testing
@testable import KappaCore

/// `source.fields` on every store: each record's value decoded once into typed columns of
/// `batch`; a value that does not fit is a bad record naming the field and the offset.
extension StoreContractTests {
    /// The exact aggregate of `StoreFixture.exactManifest`, reading typed fields instead of
    /// parsing `value`.
    static func typedExactManifest(version: Int, batch: Int) -> String {
        """
        {"job": "t", "version": \(version), "source": {"topic": "bpi", "fields": {"currency": "TEXT", "ts": "BIGINT", "rate": "NUMERIC"}},
         "output": {"table": "ticks", "columns": {"currency": "TEXT", "minute": "INTEGER", "samples": "INTEGER", "cents": "INTEGER", "last_offset": "INTEGER"},
                    "primaryKey": ["currency", "minute"]},
         "transform": {"sql": "INSERT INTO output(currency, minute, samples, cents, last_offset) SELECT currency, ts / 60000, count(*), sum(CAST(round(rate * 100) AS BIGINT)), max(\\"offset\\") FROM batch WHERE true GROUP BY 1, 2 ON CONFLICT(currency, minute) DO UPDATE SET samples = output.samples + excluded.samples, cents = output.cents + excluded.cents, last_offset = CASE WHEN output.last_offset > excluded.last_offset THEN output.last_offset ELSE excluded.last_offset END"},
         "batch": \(batch)}
        """
    }

    /// An untyped and a typed version replayed at once through one store, so that batches of
    /// the two shapes of `batch` alternate on its one connection: both tables are exact.
    @Test(arguments: StoreKind.available)
    func typedFieldsGiveTheTableThatParsingTheValueGives(kind: StoreKind) async throws {
        let f = try await StoreFixture.make(kind, minutes: 10)
        let untyped = try await f.register(StoreFixture.exactManifest(version: 1, batch: 37))
        let typed = try await f.register(Self.typedExactManifest(version: 2, batch: 41))
        async let a: Void = f.replay(untyped)
        async let b: Void = f.replay(typed)
        _ = try await (a, b)
        let expected = try await f.expectedExact()
        #expect(try await f.rows("ticks__v1") == expected)
        #expect(try await f.rows("ticks__v2") == expected)
    }

    static func typedManifest(version: Int, onBadRecord: String) -> String {
        """
        {"job": "typed", "version": \(version), "source": {"topic": "typed", "fields": {"s": "TEXT", "i": "BIGINT", "r": "DOUBLE", "n": "NUMERIC", "b": "BOOLEAN"}},
         "output": {"table": "typed", "columns": {"o": "INTEGER", "s": "TEXT", "i": "BIGINT", "r": "DOUBLE", "n": "DOUBLE", "b": "BOOLEAN", "raw": "TEXT"}, "primaryKey": ["o"]},
         "transform": {"sql": "INSERT INTO output(o, s, i, r, n, b, raw) SELECT \\"offset\\", s, i, r, n, b, value->>'extra' FROM batch"},
         "batch": 100, "onBadRecord": "\(onBadRecord)"\(onBadRecord == "deadLetter" ? #", "deadLetter": {"maxFraction": 1}"# : "")}
        """
    }

    /// Values that fit and values that do not, each kind once. Under `fail` the version stops at
    /// the first misfit naming field and offset; under `deadLetter` each misfit is kept with its
    /// reason and the rest are in the table, typed; then an untyped version on the same store
    /// reads every record (the failed transaction left `batch` in a shape it knows).
    @Test(arguments: StoreKind.available)
    func valuesThatDoNotFitTheFieldsAreBadRecordsNamingTheField(kind: StoreKind) async throws {
        let f = try await StoreFixture.make(kind, partitions: 1, minutes: 1)
        _ = try await f.log.createTopic("typed", config: TopicConfig(partitions: 1))
        let values: [(String?, String?)] = [  // a value, and why it does not fit (nil: it fits)
            (#"{"s": "a", "i": 1, "r": 1.5, "n": 2.50, "b": true}"#, nil),
            (#"{"b": false, "n": 3, "r": 2, "i": -2, "s": "b", "extra": "kept in value"}"#, nil),
            (#"{"s": null, "i": null, "r": null, "n": null, "b": null}"#, nil),
            (nil, nil),  // a tombstone: every field NULL
            (#"{"s": 5, "i": 1, "r": 1, "n": 1, "b": true}"#, #"field "s" (TEXT) must be a string, got a number"#),
            (#"{"s": "x", "i": 1.5, "r": 1, "n": 1, "b": true}"#, #"field "i" (BIGINT) must be an integer, got 1.5"#),
            (#"{"s": "x", "i": 9223372036854775808, "r": 1, "n": 1, "b": true}"#, #"field "i" (BIGINT) is out of the 64-bit range: 9223372036854775808"#),
            (#"{"s": "x", "i": 1, "r": 1, "n": 1}"#, #"field "b" is missing (source.fields; a JSON null is NULL)"#),
            (#"[1, 2]"#, #"the value is an array, not a JSON object, so it has no field "s" (source.fields)"#),
            (#"{"s": "a\u0000b", "i": 1, "r": 1, "n": 1, "b": true}"#, #"the value escapes a NUL character (\u0000), which PostgreSQL's jsonb cannot store, so no store takes it"#),
            (#"{"s": "x", "s": "y", "i": 1, "r": 1, "n": 1, "b": true}"#, #"field "s" appears twice in the value"#),
            (#"{"s": "x", "i": 1"#, "the value is not JSON text (17 bytes)"),
            (#"{"s": "x", "i": 1, "r": "1.5", "n": 1, "b": true}"#, #"field "r" (DOUBLE) must be a number, got a string"#),
            (#"{"s": "x", "i": 1, "r": 1e999, "n": 1, "b": true}"#, #"field "r" (DOUBLE) is out of the range of a double: 1e999"#),
            (#"{"s": "x", "i": 1, "r": 1, "n": 1, "b": "yes"}"#, #"field "b" (BOOLEAN) must be true or false, got a string"#),
            (#"{"s": "x", "i": 1, "r": 1, "n": {"v": 1}, "b": true}"#, #"field "n" (NUMERIC) must be a number, got an object"#),
            (#"{"\u0073": "é\"q", "i": -9223372036854775808, "r": 1e300, "n": 0.125, "b": false, "nested": {"s": 1}}"#, nil),
        ]
        _ = try await f.log.append(topic: "typed", records: values.map { ProducerRecord(value: $0.0.map { Array($0.utf8) }) })

        _ = try await f.register(Self.typedManifest(version: 1, onBadRecord: "fail"))
        let failure = await #expect(throws: JobFailure.self) { try await f.replay(StreamJobs.make(ManifestParser.parse(Self.typedManifest(version: 1, onBadRecord: "fail")))) }
        #expect(failure?.offset == 4 && failure?.partition == 0, "\(String(describing: failure))")
        #expect(failure?.message == #"bad record: field "s" (TEXT) must be a string, got a number (onBadRecord is "fail")"#, "\(String(describing: failure))")

        let job = try await f.register(Self.typedManifest(version: 2, onBadRecord: "deadLetter"))
        try await f.replay(job)
        let rows = try await f.rows("typed__v2", orderBy: "o")
        #expect(rows == [
            [.integer(0), .text("a"), .integer(1), .real(1.5), .real(2.5), .integer(1), .null],
            [.integer(1), .text("b"), .integer(-2), .real(2), .real(3), .integer(0), .text("kept in value")],
            [.integer(2), .null, .null, .null, .null, .null, .null],
            [.integer(3), .null, .null, .null, .null, .null, .null],
            [.integer(16), .text("é\"q"), .integer(Int64.min), .real(1e300), .real(0.125), .integer(0), .null],
        ], "\(rows)")
        let dead = try await f.rows("typed__v2__dead", orderBy: "\"offset\"").map { [$0[1], $0[5]] }
        let expected = values.enumerated().compactMap { i, v in v.1.map { [SQLValue.integer(Int64(i)), .text($0)] } }
        #expect(dead == expected, "\(dead)")

        let counting = """
            {"job": "typed", "version": 3, "source": {"topic": "typed"},
             "output": {"table": "typed", "columns": {"k": "TEXT", "n": "INTEGER"}, "primaryKey": ["k"]},
             "transform": {"sql": "INSERT INTO output(k, n) SELECT 'all', count(*) FROM batch WHERE true ON CONFLICT(k) DO UPDATE SET n = output.n + excluded.n"},
             "onBadRecord": "deadLetter"}
            """
        try await f.replay(try await f.register(counting))
        // Untyped, the value that is not JSON and the one escaping NUL are the only bad
        // records (the tombstone is NULL), on both stores.
        #expect(try await f.rows("typed__v3", orderBy: "k") == [[.text("all"), .integer(Int64(values.count - 2))]])
        #expect(try await f.rows("typed__v3__dead", orderBy: "\"offset\"").map(\.[1]) == [.integer(9), .integer(11)])
    }
}

/// SQLite loads `key`, `value` and `key_bytes` into `batch` only when the version's SQL reads
/// them (its authorizer reports each column a statement reads as it compiles). Reads hidden in
/// a subquery, a CTE, a function's argument or `SELECT *` must count as reads on every store.
extension StoreContractTests {
    @Test(arguments: StoreKind.available)
    func columnsReadOnlyInHiddenPlacesAreLoaded(kind: StoreKind) async throws {
        let f = try await StoreFixture.make(kind, partitions: 1, minutes: 1)
        _ = try await f.log.createTopic("hidden", config: TopicConfig(partitions: 1))
        var records: [ProducerRecord] = []
        for i in 0..<300 {
            let key: [UInt8]? = i % 3 == 0 ? nil : i % 3 == 1 ? Array("k\(i % 7)".utf8) : [0xFF, 0x00, UInt8(i % 5)]
            records.append(ProducerRecord(key: key, value: Array("{\"tag\": \"\(i % 4 == 0 ? "x" : "y")\", \"i\": \(i)}".utf8)))
        }
        _ = try await f.log.append(topic: "hidden", records: records)
        let tagged = records.filter { String(decoding: $0.value!, as: UTF8.self).contains("\"x\"") }.count
        let textKeys = records.filter { $0.key.map { !$0.contains(0) && !$0.contains(0xFF) } ?? false }.count
        let keyBytes = records.reduce(0) { $0 + ($1.key?.count ?? 0) }
        let upsert = "ON CONFLICT(k) DO UPDATE SET n = output.n + excluded.n"
        let jobs: [(String, Int)] = [
            ("INSERT INTO output(k, n) SELECT 'a', count(*) FROM batch WHERE \\\"offset\\\" IN (SELECT \\\"offset\\\" FROM batch WHERE value->>'tag' = 'x') \(upsert)", tagged),
            ("WITH c AS (SELECT key FROM batch) INSERT INTO output(k, n) SELECT 'b', count(*) FROM c WHERE c.key IS NOT NULL \(upsert)", textKeys),
            ("INSERT INTO output(k, n) SELECT 'c', coalesce(sum(length(key_bytes)), 0) FROM batch WHERE true \(upsert)", keyBytes),
            ("INSERT INTO output(k, n) SELECT 'd', count(*) FROM (SELECT * FROM batch) s WHERE s.value->>'tag' = 'x' \(upsert)", tagged),
            ("INSERT INTO output(k, n) SELECT 'e', count(*) FROM batch WHERE tag = 'x' \(upsert)", tagged),  // the typed field alone
        ]
        for (n, (sql, expected)) in jobs.enumerated() {
            let manifest = """
                {"job": "hidden", "version": \(n + 1), "source": {"topic": "hidden", "fields": {"tag": "TEXT"}},
                 "output": {"table": "hidden", "columns": {"k": "TEXT", "n": "INTEGER"}, "primaryKey": ["k"]},
                 "transform": {"sql": "\(sql)"}, "batch": 64}
                """
            try await f.replay(try await f.register(manifest))
            let rows = try await f.rows("hidden__v\(n + 1)", orderBy: "k")
            #expect(rows.map { $0[1] } == [.integer(Int64(expected))], "job \(n + 1): \(sql) gave \(rows)")
        }
    }
}
