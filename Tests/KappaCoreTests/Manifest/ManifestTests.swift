import Testing
@testable import KappaCore

@Suite struct ManifestTests {
    static let valid = """
        {"job": "btc", "version": 1, "source": {"topic": "bpi"},
         "output": {"table": "btc_prices", "columns": {"currency": "TEXT", "minute": "integer", "n": "INTEGER"}, "primaryKey": ["currency", "minute"]},
         "transform": {"sql": "INSERT INTO output SELECT 'x', 1, count(*) FROM batch"}}
        """

    /// The valid manifest with one key replaced (or removed with nil) at the top level or one level down.
    static func with(_ path: String, _ json: String?) -> String {
        var object = try! JSONScanner.parse(Array(valid.utf8))
        func set(_ value: inout JSONValue, _ keys: ArraySlice<String>) {
            guard case .object(var members) = value, let key = keys.first else { return }
            if keys.count == 1 {
                members.removeAll { $0.0 == key }
                if let json { members.append((key, try! JSONScanner.parse(Array(json.utf8)))) }
            } else if let i = members.firstIndex(where: { $0.0 == key }) {
                set(&members[i].1, keys.dropFirst())
            }
            value = .object(members)
        }
        set(&object, path.split(separator: ".").map(String.init)[...])
        return object.text
    }

    @Test func validManifestHasDefaults() throws {
        let spec = try ManifestParser.parse(Self.valid)
        #expect(spec.job == "btc" && spec.version == 1 && spec.source.topic == "bpi")
        #expect(spec.output.columns.map(\.name) == ["currency", "minute", "n"])
        #expect(spec.output.columns[1].type == .integer)
        #expect(spec.batch == 10_000)
        #expect(spec.catchUp == JobSpec.CatchUp(maxLag: 100, holdForMs: 2_000))
        #expect(spec.promote == JobSpec.Promote(mode: .manual, checks: []))
        #expect(spec.retire.afterMs == nil)
        #expect(spec.onBadRecord == .fail)
        #expect(spec.versionTable == "btc_prices__v1")
    }

    @Test func shippedManifestsParse() throws {
        let root = #filePath.components(separatedBy: "/Tests/")[0]
        let v1 = try ManifestParser.load(path: root + "/Manifests/btc-v1.json").spec
        let v2 = try ManifestParser.load(path: root + "/Manifests/btc-v2.json").spec
        #expect(v1.output.columns.map(\.name) == ["currency", "minute", "samples", "avg_rate"])
        #expect(v2.output.columns.map(\.name) == ["currency", "minute", "samples", "open", "high", "low", "close"])
        #expect(v2.promote.checks.count == 1)
        #expect(v1.onBadRecord == .deadLetter && v1.retire.afterMs == 3_600_000 && v1.catchUp.holdForMs == 1_000)
    }

    @Test func typedFieldsAreForSQLJobsOnly() throws {
        let text = #"{"job": "x", "version": 1, "source": {"topic": "bpi", "fields": {"rate": "REAL"}}, "output": {"table": "t", "columns": {"k": "TEXT"}, "primaryKey": ["k"]}, "transform": {"exec": ["job"]}}"#
        let error = #expect(throws: ManifestError.self) { try ManifestParser.parse(text) }
        #expect(error?.description == "source.fields: applies to SQL transforms only: an exec program reads each record's value itself")
    }

    @Test func optionalFieldsAreRead() throws {
        var text = Self.with("batch", "500")
        text = try JSONScanner.parse(Array(text.utf8)).text
        let spec = try ManifestParser.parse(Self.with("promote", #"{"mode": "auto", "checks": ["(SELECT count(*) FROM new) > 0"]}"#))
        #expect(spec.promote.mode == .auto && spec.promote.checks == ["(SELECT count(*) FROM new) > 0"])
        #expect(try ManifestParser.parse(text).batch == 500)
        #expect(try ManifestParser.parse(Self.with("catchUp", #"{"maxLag": 0, "holdFor": "500ms"}"#)).catchUp == .init(maxLag: 0, holdForMs: 500))
        #expect(try ManifestParser.parse(Self.with("catchUp", #"{"maxTimeLag": "5s"}"#)).catchUp.maxTimeLagMs == 5_000)
        #expect(try ManifestParser.parse(Self.with("replay", #"{"maxRate": 2500}"#)).replay.maxRate == 2_500)
        #expect(try ManifestParser.parse(Self.with("retire", #"{"after": "2h"}"#)).retire.afterMs == 7_200_000)
        #expect(try ManifestParser.parse(Self.with("onBadRecord", #""deadLetter""#)).onBadRecord == .deadLetter)
        #expect(try ManifestParser.parse(Self.with("source", #"{"topic": "bpi", "fields": {"currency": "text", "ts": "BIGINT", "rate": "DOUBLE"}}"#)).source.fields
                == [.init(name: "currency", type: .text), .init(name: "ts", type: .bigint), .init(name: "rate", type: .double)])
        #expect(try ManifestParser.parse(Self.with("transform", #"{"exec": ["python3", "job.py"]}"#)).transform == .exec(["python3", "job.py"]))
        #expect(try ManifestParser.parse(Self.with("transform", #"{"exec": ["job"], "env": {"MODE": "fast", "PATH": "/opt/bin"}}"#)).execEnvironment
                == ["MODE": "fast", "PATH": "/opt/bin"])
    }

    @Test(arguments: [
        ("job", nil, "job: is missing"),
        ("job", "7", "job: must be a string, got a number"),
        ("job", #""btc; DROP TABLE x""#, #"job: "btc; DROP TABLE x" is not a valid identifier (letters, digits and _, not starting with a digit, at most 63)"#),
        ("version", #""1""#, "version: must be a whole number, got a string"),
        ("version", "1.5", "version: must be a whole number, got 1.5"),
        ("version", "0", "version: must be between 1 and 1000000000, got 0"),
        ("source", nil, "source: is missing"),
        ("source", #"{"topic": "bpi", "from": 0}"#, "source.from: unknown key (expected one of: topic, allowGaps, fields)"),
        ("source", #"{"topic": "bpi", "fields": []}"#, "source.fields: must be an object, got an array"),
        ("source", #"{"topic": "bpi", "fields": {}}"#, "source.fields: needs at least one field (or leave it out: the job reads value)"),
        ("source", #"{"topic": "bpi", "fields": {"rate": "MONEY"}}"#, #"source.fields.rate: unknown type "MONEY" for a field of a JSON value (use TEXT, INTEGER, BIGINT, REAL, DOUBLE, NUMERIC, BOOLEAN)"#),
        ("source", #"{"topic": "bpi", "fields": {"raw": "BLOB"}}"#, #"source.fields.raw: unknown type "BLOB" for a field of a JSON value (use TEXT, INTEGER, BIGINT, REAL, DOUBLE, NUMERIC, BOOLEAN)"#),
        ("source", #"{"topic": "bpi", "fields": {"Offset": "INTEGER"}}"#, #"source.fields.Offset: "Offset" is a column batch has already (key, key_bytes, offset, partition, timestamp, value)"#),
        ("source", #"{"topic": "bpi", "fields": {"rate": "REAL", "RATE": "REAL"}}"#, #"source.fields.RATE: field "RATE" appears twice"#),
        ("source", #"{"topic": "bpi", "fields": {"a b": "TEXT"}}"#, #"source.fields.a b: "a b" is not a valid identifier (letters, digits and _, not starting with a digit, at most 63)"#),
        ("source", #"{"topic": "bpi", "fields": {"rate": 1}}"#, "source.fields.rate: must be a string, got a number"),
        ("source", #"{"topic": "b/p"}"#, #"source.topic: invalid topic name "b/p": use 1 to 249 of A-Z a-z 0-9 . _ - (not starting with a dot)"#),
        ("output.table", #""btc\"prices""#, #"output.table: "btc\"prices" is not a valid identifier (letters, digits and _, not starting with a digit, at most 63)"#),
        ("output.table", #""kappa_jobs""#, #"output.table: "kappa_jobs" starts with "kappa_", which is reserved for Kappa's catalog"#),
        ("output.table", #""batch""#, #"output.table: "batch" is the name the job's SQL reads its batch or writes its table by; choose another"#),
        ("output.table", #""Output""#, #"output.table: "Output" is the name the job's SQL reads its batch or writes its table by; choose another"#),
        ("output.table", #""sqlite_stat1""#, #"output.table: "sqlite_stat1" starts with "sqlite_", which SQLite reserves"#),
        ("output.table", #""JSON_each""#, #"output.table: "JSON_each" is the name of one of SQLite's table-valued functions, which job SQL may call; choose another"#),
        ("output.table", #""a1_t__v2""#, #"output.table: "a1_t__v2" contains "__v<N>", which names the tables of versions (<view>__v<N>); choose another"#),
        ("output.table", #""t__v1__dead""#, #"output.table: "t__v1__dead" contains "__v<N>", which names the tables of versions (<view>__v<N>); choose another"#),
        ("output.table", #""a_very_long_table_name_that_goes_on_and_on""#, #"output.table: "a_very_long_table_name_that_goes_on_and_on" is longer than 40 characters"#),
        ("output.columns", #"{"currency": "TEXT", "price": "DUBBLE"}"#, #"output.columns.price: unknown type "DUBBLE" (use TEXT, INTEGER, BIGINT, REAL, DOUBLE, NUMERIC, BOOLEAN, BLOB)"#),
        ("output.columns", #"{"cur;rency": "TEXT"}"#, #"output.columns.cur;rency: "cur;rency" is not a valid identifier (letters, digits and _, not starting with a digit, at most 63)"#),
        ("output.columns", #"{"output": "TEXT"}"#, #"output.columns.output: "output" is reserved: in the job's SQL it names the version's table"#),
        ("output.columns", "{}", "output.columns: needs at least one column"),
        ("output.columns", #"{"a": 1}"#, "output.columns.a: must be a string, got a number"),
        ("output.primaryKey", #"["currency", "hour"]"#, #"output.primaryKey[1]: "hour" is not one of output.columns"#),
        ("output.primaryKey", "[]", "output.primaryKey: needs at least one column"),
        ("output.primaryKey", #""currency""#, "output.primaryKey: must be an array of column names"),
        ("transform", "{}", #"transform: needs "sql" or "exec""#),
        ("transform", #"{"sql": "SELECT 1", "exec": ["x"]}"#, #"transform: has both "sql" and "exec"; choose one"#),
        ("transform", #"{"sql": "  "}"#, "transform.sql: is empty"),
        ("transform", #"{"exec": []}"#, "transform.exec: must be a non-empty array: the program and its arguments"),
        ("transform", #"{"python": "x"}"#, "transform.python: unknown key (expected one of: sql, exec, timeout, env)"),
        ("transform", #"{"exec": [""]}"#, "transform.exec[0]: is empty: it names the program"),
        ("transform", #"{"exec": ["x"], "env": ["A=1"]}"#, "transform.env: must be an object, got an array"),
        ("transform", #"{"exec": ["x"], "env": {"KAPPA_HTTP_TOKEN": "t"}}"#, #"transform.env.KAPPA_HTTP_TOKEN: names starting with "KAPPA_" are reserved: Kappa's own settings never reach a program"#),
        ("transform", #"{"exec": ["x"], "env": {"A-B": "1"}}"#, #"transform.env.A-B: "A-B" is not a valid variable name (letters, digits and _, not starting with a digit)"#),
        ("transform", #"{"exec": ["x"], "env": {"A": 1}}"#, "transform.env.A: must be a string, got a number"),
        ("transform", #"{"exec": ["x"], "env": {"A": "a\u0000b"}}"#, "transform.env.A: contains a NUL character"),
        ("transform", #"{"sql": "SELECT 1", "env": {"A": "1"}}"#, "transform.env: is for exec programs; an SQL job has no environment"),
        ("batch", "0", "batch: must be between 1 and 1000000, got 0"),
        ("catchUp", #"{"maxLag": -1}"#, "catchUp.maxLag: must be between 0 and 1000000000000, got -1"),
        ("catchUp", #"{"maxTimeLag": 5}"#, "catchUp.maxTimeLag: must be a string, got a number"),
        ("replay", #"{"maxRate": 0}"#, "replay.maxRate: must be a number of records a second, at least 1, got 0"),
        ("promote", #"{"analysis": {"bake": "106751991167d"}}"#, #"promote.analysis.bake: duration "106751991167d" is too long (at most 36500d)"#),
        ("promote", #"{"analysis": {"interval": "1s", "bake": "2s", "failureLimit": 3}}"#, "promote.analysis.failureLimit: is 3 but a bake of 2s every 1s evaluates only 2 times: it could never fail"),
        ("replay", #"{"maxRate": "fast"}"#, "replay.maxRate: must be a number of records a second, at least 1, got a string"),
        ("replay", #"{"rate": 5}"#, "replay.rate: unknown key (expected one of: maxRate)"),
        ("catchUp", #"{"holdFor": "soon"}"#, #"catchUp.holdFor: invalid duration "soon": use a number and a unit, e.g. 500ms, 30s, 5m, 2h, 7d"#),
        ("promote", #""sometimes""#, #"promote: must be "manual" or "auto", got "sometimes""#),
        ("promote", "true", #"promote: must be "manual", "auto" or {"mode": …, "checks": […]}, got a boolean"#),
        ("promote", #"{"checks": "x"}"#, "promote.checks: must be an array of SQL expressions"),
        ("retire", #"{"after": 5}"#, "retire.after: must be a string, got a number"),
        ("onBadRecord", #""skip""#, #"onBadRecord: must be "fail" or "deadLetter", got "skip""#),
        ("retries", "3", "retries: unknown key (expected one of: job, version, source, output, transform, batch, catchUp, replay, promote, retire, onBadRecord, deadLetter)"),
    ] as [(String, String?, String)])
    func errorsNameTheKeyPath(path: String, json: String?, message: String) {
        do {
            _ = try ManifestParser.parse(Self.with(path, json), file: "m.json")
            Issue.record("accepted: \(path) = \(json ?? "nil")")
        } catch let error as ManifestError {
            #expect(error.description == "m.json: " + message)
        } catch {
            Issue.record(error)
        }
    }

    @Test func notJSONIsExplained() {
        #expect(throws: ManifestError(file: "m.json", path: "", message: "not valid JSON: expected ',' or '}' at column 13")) {
            try ManifestParser.parse(#"{"job": "a" "version": 1}"#, file: "m.json")
        }
        #expect(throws: ManifestError(file: "m.json", path: "", message: "the manifest must be a JSON object")) {
            try ManifestParser.parse("[]", file: "m.json")
        }
    }

    @Test func missingFileIsNamed() {
        do {
            _ = try ManifestParser.load(path: "/nonexistent/m.json")
            Issue.record("loaded a missing file")
        } catch let error as ManifestError {
            #expect(error.description.hasPrefix("/nonexistent/m.json: cannot read the manifest: open /nonexistent/m.json: No such file or directory"))
        } catch {
            Issue.record(error)
        }
    }
}
