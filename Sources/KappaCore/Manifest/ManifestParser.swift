import Foundation

/// Reads and validates manifests (JSON). Every error names the file and the key path.
public enum ManifestParser {
    /// Why `table` cannot be a job's view, or nil: a name the job's SQL or Kappa already means
    /// something by, or one that a version's table or dead-letter table of any job could have.
    static func reservedTableReason(_ table: String) -> String? {
        let name = table.lowercased()
        if name == "batch" || name == "output" {
            return "is the name the job's SQL reads its batch or writes its table by; choose another"
        }
        if name.hasPrefix("kappa_") { return "starts with \"kappa_\", which is reserved for Kappa's catalog" }
        if name.hasPrefix("sqlite_") { return "starts with \"sqlite_\", which SQLite reserves" }
        if name.hasPrefix("pg_") { return "starts with \"pg_\", which PostgreSQL reserves" }
        if SQLiteSandbox.tableFunctions.contains(name) { return "is the name of one of SQLite's table-valued functions, which job SQL may call; choose another" }
        // <view>__v<N> and <view>__v<N>__dead are the tables of versions: a view named like one
        // would take another job's version table.
        if name.range(of: "__v[0-9]+(__|$)", options: .regularExpression) != nil {
            return "contains \"__v<N>\", which names the tables of versions (<view>__v<N>); choose another"
        }
        return nil
    }

    /// Longest output table name, so that `<table>__v<N>__dead` fits PostgreSQL's 63 bytes.
    static let maxTableName = 40
    static let topLevelKeys = ["job", "version", "source", "output", "transform", "batch", "catchUp", "replay", "promote", "retire", "onBadRecord", "deadLetter"]
    public static let defaultBatch = 10_000
    public static let defaultCatchUp = JobSpec.CatchUp(maxLag: 100, holdForMs: 2_000)

    /// Parses a manifest file. - Throws: `ManifestError`.
    public static func load(path: String) throws -> (spec: JobSpec, text: String) {
        let bytes: [UInt8]
        do {
            bytes = try FileSystem.readAll(path)
        } catch let error as IOError {
            throw ManifestError(file: path, path: "", message: "cannot read the manifest: \(error)")
        }
        let text = String(decoding: bytes, as: UTF8.self)
        return (try parse(text, file: path), text)
    }

    /// A manifest file with `replay.maxRate` set to `maxRate` (`kappactl deploy --max-rate`):
    /// the text stored is the one that runs. - Throws: `ManifestError`.
    public static func load(path: String, maxRate: Double?) throws -> (spec: JobSpec, text: String) {
        let loaded = try load(path: path)
        guard let maxRate else { return loaded }
        guard var object = try? JSONSerialization.jsonObject(with: Data(loaded.text.utf8)) as? [String: Any] else {
            throw ManifestError(file: path, path: "", message: "not a JSON object")
        }
        var replay = object["replay"] as? [String: Any] ?? [:]
        replay["maxRate"] = maxRate == maxRate.rounded() && maxRate < 1e15 ? Int64(maxRate) as Any : maxRate as Any
        object["replay"] = replay
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted])
        let text = String(decoding: data, as: UTF8.self)
        return (try parse(text, file: path), text)
    }

    /// Parses manifest text. - Throws: `ManifestError` naming `file` and the key path.
    public static func parse(_ text: String, file: String? = nil) throws -> JobSpec {
        let root: JSONValue
        do {
            root = try JSONScanner.parse(Array(text.utf8))
        } catch let error as JSONScanner.SyntaxError {
            throw ManifestError(file: file, path: "", message: "not valid JSON: \(error)")
        }
        let r = Reader(file: file)
        let top = try r.object(root, "")
        try r.known(top, topLevelKeys, "")

        let job = try r.identifier(r.required(top, "job", ""), "job")
        let versionValue = try r.required(top, "version", "")
        let version = try r.integer(versionValue, "version", in: 1...1_000_000_000)

        let source = try r.object(r.required(top, "source", ""), "source")
        try r.known(source, ["topic", "allowGaps", "fields"], "source")
        let topic = try r.string(r.required(source, "topic", "source"), "source.topic")
        var allowGaps = false
        if let value = r.member(source, "allowGaps") {
            guard case .bool(let allow) = value else { throw r.fail("source.allowGaps", "must be true or false, got \(value.kind)") }
            allowGaps = allow
        }
        do {
            try SegmentLog.validate(name: topic)
        } catch let error as LogError {
            throw r.fail("source.topic", error.message)
        }
        var fields: [JobSpec.Column] = []
        if let fieldsValue = r.member(source, "fields") {
            let members = try r.object(fieldsValue, "source.fields")
            guard !members.isEmpty else { throw r.fail("source.fields", "needs at least one field (or leave it out: the job reads value)") }
            guard members.count <= JobSpec.Source.maxFields else { throw r.fail("source.fields", "has \(members.count) fields; at most \(JobSpec.Source.maxFields)") }
            for (name, typeValue) in members {
                let path = "source.fields.\(name)"
                _ = try r.identifier(.string(name), path)
                if fields.contains(where: { $0.name.lowercased() == name.lowercased() }) { throw r.fail(path, "field \"\(name)\" appears twice") }
                if JobSpec.Source.batchColumns.contains(name.lowercased()) {
                    throw r.fail(path, "\"\(name)\" is a column batch has already (\(JobSpec.Source.batchColumns.sorted().joined(separator: ", ")))")
                }
                let typeName = try r.string(typeValue, path)
                let allowed = JobSpec.ColumnType.allCases.filter { $0 != .blob }
                guard let type = JobSpec.ColumnType(rawValue: typeName.uppercased()), type != .blob else {
                    throw r.fail(path, "unknown type \"\(typeName)\" for a field of a JSON value (use \(allowed.map(\.rawValue).joined(separator: ", ")))")
                }
                fields.append(JobSpec.Column(name: name, type: type))
            }
        }

        let output = try r.object(r.required(top, "output", ""), "output")
        try r.known(output, ["table", "columns", "primaryKey"], "output")
        let table = try r.identifier(r.required(output, "table", "output"), "output.table")
        if let reason = ManifestParser.reservedTableReason(table) { throw r.fail("output.table", "\"\(table)\" \(reason)") }
        if table.utf8.count > maxTableName { throw r.fail("output.table", "\"\(table)\" is longer than \(maxTableName) characters") }
        let columnsValue = try r.object(r.required(output, "columns", "output"), "output.columns")
        guard !columnsValue.isEmpty else { throw r.fail("output.columns", "needs at least one column") }
        var columns: [JobSpec.Column] = []
        for (name, typeValue) in columnsValue {
            let path = "output.columns.\(name)"
            _ = try r.identifier(.string(name), path)
            if columns.contains(where: { $0.name.lowercased() == name.lowercased() }) { throw r.fail(path, "column \"\(name)\" appears twice") }
            if name.lowercased() == "output" { throw r.fail(path, "\"output\" is reserved: in the job's SQL it names the version's table") }
            let typeName = try r.string(typeValue, path)
            guard let type = JobSpec.ColumnType(rawValue: typeName.uppercased()) else {
                throw r.fail(path, "unknown type \"\(typeName)\" (use \(JobSpec.ColumnType.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            columns.append(JobSpec.Column(name: name, type: type))
        }
        guard case .array(let keyValues) = try r.required(output, "primaryKey", "output") else {
            throw r.fail("output.primaryKey", "must be an array of column names")
        }
        guard !keyValues.isEmpty else { throw r.fail("output.primaryKey", "needs at least one column") }
        var primaryKey: [String] = []
        for (i, value) in keyValues.enumerated() {
            let name = try r.string(value, "output.primaryKey[\(i)]")
            guard columns.contains(where: { $0.name == name }) else {
                throw r.fail("output.primaryKey[\(i)]", "\"\(name)\" is not one of output.columns")
            }
            if primaryKey.contains(name) { throw r.fail("output.primaryKey[\(i)]", "\"\(name)\" appears twice") }
            primaryKey.append(name)
        }

        let transformObject = try r.object(r.required(top, "transform", ""), "transform")
        try r.known(transformObject, ["sql", "exec", "timeout", "env"], "transform")
        let transform: JobSpec.Transform
        let timeoutMs = try r.member(transformObject, "timeout").map { try r.duration($0, "transform.timeout") } ?? 30_000
        guard timeoutMs > 0 else { throw r.fail("transform.timeout", "must be longer than 0 ms") }
        var execEnvironment: [String: String] = [:]
        switch (r.member(transformObject, "sql"), r.member(transformObject, "exec")) {
        case (let sql?, nil):
            let text = try r.string(sql, "transform.sql")
            guard !text.allSatisfy(\.isWhitespace) else { throw r.fail("transform.sql", "is empty") }
            transform = .sql(text)
            if r.member(transformObject, "env") != nil { throw r.fail("transform.env", "is for exec programs; an SQL job has no environment") }
        case (nil, let exec?):
            guard case .array(let parts) = exec, !parts.isEmpty else { throw r.fail("transform.exec", "must be a non-empty array: the program and its arguments") }
            let argv = try parts.enumerated().map { try r.string($1, "transform.exec[\($0)]") }
            guard !argv[0].isEmpty else { throw r.fail("transform.exec[0]", "is empty: it names the program") }
            transform = .exec(argv)
            if let env = r.member(transformObject, "env") { execEnvironment = try r.environment(env, "transform.env") }
        case (nil, nil):
            throw r.fail("transform", "needs \"sql\" or \"exec\"")
        case (_?, _?):
            throw r.fail("transform", "has both \"sql\" and \"exec\"; choose one")
        }

        let batch = try r.member(top, "batch").map { try r.integer($0, "batch", in: 1...1_000_000) } ?? defaultBatch

        var catchUp = defaultCatchUp
        if let value = r.member(top, "catchUp") {
            let object = try r.object(value, "catchUp")
            try r.known(object, ["maxLag", "holdFor", "maxTimeLag"], "catchUp")
            if let lag = r.member(object, "maxLag") { catchUp.maxLag = Int64(try r.integer(lag, "catchUp.maxLag", in: 0...1_000_000_000_000)) }
            if let hold = r.member(object, "holdFor") { catchUp.holdForMs = try r.duration(hold, "catchUp.holdFor") }
            if let age = r.member(object, "maxTimeLag") { catchUp.maxTimeLagMs = try r.duration(age, "catchUp.maxTimeLag") }
        }
        var replay = JobSpec.Replay()
        if let value = r.member(top, "replay") {
            let object = try r.object(value, "replay")
            try r.known(object, ["maxRate"], "replay")
            if let rate = r.member(object, "maxRate") {
                guard case .number(let text) = rate, let n = Double(text), n.isFinite, n >= 1, n <= 1e12 else {
                    throw r.fail("replay.maxRate", "must be a number of records a second, at least 1, got \(rate.kind == "a number" ? rate.text : rate.kind)")
                }
                replay.maxRate = n
            }
        }

        var promote = JobSpec.Promote(mode: .manual, checks: [])
        if let value = r.member(top, "promote") {
            if case .string = value {
                promote.mode = try r.promoteMode(value, "promote")
            } else if case .object(let object) = value {
                try r.known(object, ["mode", "checks", "analysis"], "promote")
                if let mode = r.member(object, "mode") { promote.mode = try r.promoteMode(mode, "promote.mode") }
                if let checks = r.member(object, "checks") { promote.checks = try r.checks(checks, "promote.checks") }
                if let value = r.member(object, "analysis") {
                    let analysis = try r.object(value, "promote.analysis")
                    try r.known(analysis, ["checks", "interval", "bake", "failureLimit"], "promote.analysis")
                    var a = JobSpec.Analysis(checks: [])
                    if let checks = r.member(analysis, "checks") { a.checks = try r.checks(checks, "promote.analysis.checks") }
                    if let interval = r.member(analysis, "interval") { a.intervalMs = try r.duration(interval, "promote.analysis.interval") }
                    if let bake = r.member(analysis, "bake") { a.bakeMs = try r.duration(bake, "promote.analysis.bake") }
                    if let limit = r.member(analysis, "failureLimit") { a.failureLimit = try r.integer(limit, "promote.analysis.failureLimit", in: 1...1_000_000) }
                    guard a.intervalMs >= 100 else { throw r.fail("promote.analysis.interval", "must be at least 100ms") }
                    guard a.bakeMs >= a.intervalMs else { throw r.fail("promote.analysis.bake", "must be at least promote.analysis.interval") }
                    guard a.failureLimit <= a.evaluations else {
                        throw r.fail("promote.analysis.failureLimit", "is \(a.failureLimit) but a bake of \(DurationText.format(milliseconds: a.bakeMs)) every \(DurationText.format(milliseconds: a.intervalMs)) evaluates only \(a.evaluations) times: it could never fail")
                    }
                    promote.analysis = a
                }
            } else {
                throw r.fail("promote", "must be \"manual\", \"auto\" or {\"mode\": …, \"checks\": […]}, got \(value.kind)")
            }
        }

        var retire = JobSpec.Retire(afterMs: nil)
        if let value = r.member(top, "retire") {
            let object = try r.object(value, "retire")
            try r.known(object, ["after"], "retire")
            if let after = r.member(object, "after") { retire.afterMs = try r.duration(after, "retire.after") }
        }

        var onBadRecord = JobSpec.BadRecordPolicy.fail
        if let value = r.member(top, "onBadRecord") {
            let text = try r.string(value, "onBadRecord")
            guard let policy = JobSpec.BadRecordPolicy(rawValue: text) else {
                throw r.fail("onBadRecord", "must be \"fail\" or \"deadLetter\", got \"\(text)\"")
            }
            onBadRecord = policy
        }
        var deadLetterMaxFraction = 0.01
        if let value = r.member(top, "deadLetter") {
            guard onBadRecord == .deadLetter else { throw r.fail("deadLetter", "applies only with onBadRecord \"deadLetter\"") }
            let object = try r.object(value, "deadLetter")
            try r.known(object, ["maxFraction"], "deadLetter")
            if let fraction = r.member(object, "maxFraction") {
                guard case .number(let text) = fraction, let n = Double(text), n.isFinite, (0...1).contains(n) else {
                    throw r.fail("deadLetter.maxFraction", "must be a number from 0 to 1 (the share of the records read), got \(fraction.kind == "a number" ? fraction.text : fraction.kind)")
                }
                deadLetterMaxFraction = n
            }
        }

        if !fields.isEmpty, case .exec = transform {
            throw r.fail("source.fields", "applies to SQL transforms only: an exec program reads each record's value itself")
        }
        var spec = JobSpec(job: job, version: version, source: .init(topic: topic, allowGaps: allowGaps, fields: fields),
                           output: .init(table: table, columns: columns, primaryKey: primaryKey), transform: transform,
                           batch: batch, catchUp: catchUp, promote: promote, retire: retire, onBadRecord: onBadRecord,
                           timeoutMs: timeoutMs, execEnvironment: execEnvironment)
        spec.deadLetterMaxFraction = deadLetterMaxFraction
        spec.replay = replay
        return spec
    }

    /// True for `[A-Za-z_][A-Za-z0-9_]*`: identifiers that need no quoting and carry no SQL.
    public static func isIdentifier(_ s: String) -> Bool {
        guard let first = s.utf8.first, !s.isEmpty, s.utf8.count <= 63 else { return false }
        let letter = { (c: UInt8) in (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F }
        return letter(first) && s.utf8.allSatisfy { letter($0) || ($0 >= 0x30 && $0 <= 0x39) }
    }

    /// Walks the parsed document, turning every mismatch into a `ManifestError` with its path.
    private struct Reader {
        var file: String?

        func fail(_ path: String, _ message: String) -> ManifestError {
            ManifestError(file: file, path: path, message: message)
        }

        func join(_ parent: String, _ key: String) -> String { parent.isEmpty ? key : "\(parent).\(key)" }

        func object(_ value: JSONValue, _ path: String) throws -> [(String, JSONValue)] {
            guard case .object(let members) = value else { throw fail(path, path.isEmpty ? "the manifest must be a JSON object" : "must be an object, got \(value.kind)") }
            return members
        }

        func member(_ object: [(String, JSONValue)], _ key: String) -> JSONValue? {
            object.first { $0.0 == key }?.1
        }

        func required(_ object: [(String, JSONValue)], _ key: String, _ parent: String) throws -> JSONValue {
            guard let value = member(object, key) else { throw fail(join(parent, key), "is missing") }
            return value
        }

        func known(_ object: [(String, JSONValue)], _ keys: [String], _ parent: String) throws {
            for (key, _) in object where !keys.contains(key) {
                throw fail(join(parent, key), "unknown key (expected one of: \(keys.joined(separator: ", ")))")
            }
        }

        func string(_ value: JSONValue, _ path: String) throws -> String {
            guard case .string(let s) = value else { throw fail(path, "must be a string, got \(value.kind)") }
            return s
        }

        func identifier(_ value: JSONValue, _ path: String) throws -> String {
            let s = try string(value, path)
            guard ManifestParser.isIdentifier(s) else {
                throw fail(path, "\(JSONScanner.quote(s)) is not a valid identifier (letters, digits and _, not starting with a digit, at most 63)")
            }
            return s
        }

        func integer(_ value: JSONValue, _ path: String, in range: ClosedRange<Int>) throws -> Int {
            guard case .number(let text) = value, let n = Int(text) else {
                throw fail(path, "must be a whole number, got \(value.kind == "a number" ? value.text : value.kind)")
            }
            guard range.contains(n) else { throw fail(path, "must be between \(range.lowerBound) and \(range.upperBound), got \(n)") }
            return n
        }

        /// A non-empty array of non-blank SQL expressions.
        func checks(_ value: JSONValue, _ path: String) throws -> [String] {
            guard case .array(let list) = value else { throw fail(path, "must be an array of SQL expressions") }
            return try list.enumerated().map { i, v in
                let check = try string(v, "\(path)[\(i)]")
                guard !check.allSatisfy(\.isWhitespace) else { throw fail("\(path)[\(i)]", "is empty") }
                return check
            }
        }

        func duration(_ value: JSONValue, _ path: String) throws -> Int64 {
            let text = try string(value, path)
            do {
                return try DurationText.milliseconds(text)
            } catch let error as ValueParseError {
                throw fail(path, error.message)
            }
        }

        /// `transform.env`: variable name → value, added to the few JobHost passes on.
        func environment(_ value: JSONValue, _ path: String) throws -> [String: String] {
            var environment: [String: String] = [:]
            for (name, v) in try object(value, path) {
                let key = "\(path).\(name)"
                guard ManifestParser.isIdentifier(name) else {
                    throw fail(key, "\(JSONScanner.quote(name)) is not a valid variable name (letters, digits and _, not starting with a digit)")
                }
                if name.uppercased().hasPrefix("KAPPA_") { throw fail(key, "names starting with \"KAPPA_\" are reserved: Kappa's own settings never reach a program") }
                let text = try string(v, key)
                if text.utf8.contains(0) { throw fail(key, "contains a NUL character") }
                environment[name] = text
            }
            return environment
        }

        func promoteMode(_ value: JSONValue, _ path: String) throws -> JobSpec.Promote.Mode {
            let text = try string(value, path)
            guard let mode = JobSpec.Promote.Mode(rawValue: text) else { throw fail(path, "must be \"manual\" or \"auto\", got \"\(text)\"") }
            return mode
        }
    }
}
