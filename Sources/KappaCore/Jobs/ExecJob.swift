import Synchronization

/// An exec job: any program, started once per partition worker. For each batch it receives the
/// records as JSON lines (`{"partition","offset","timestamp","key","value"}`) and then
/// `{"batchEnd": {"partition": P, "nextOffset": N}}`; it answers with operations,
/// `{"upsert": {column: value, …}}` or `{"delete": {key column: value, …}}`, one per line, and
/// `{"batchEnd": true}`, and then writes nothing until it is sent the next batch. The operations
/// and the next offset are committed in one transaction. A crash, a timeout, a malformed line or
/// a break of the protocol fails the version, naming the program, the partition, the batch's
/// offsets and the line; a value that does not fit its column's type is a bad record
/// (`onBadRecord`).
public final class ExecJob: StreamJob {
    public let spec: JobSpec
    private let argv: [String]
    private let processes = Mutex<[Int: ExecProcess]>([:])

    public init(spec: JobSpec) {
        guard case .exec(let argv) = spec.transform else { preconditionFailure("not an exec transform") }
        self.spec = spec
        self.argv = argv
    }

    /// Exchanges with programs block up to their time limit: on a lane of the shared executor
    /// at most half as wide, so that slow programs never hold every thread the store and the
    /// log need.
    static let programs = BlockingExecutor.shared.lane("kappa.exec", width: max(1, BlockingExecutor.shared.threads / 2))

    public func plan(_ records: LogRecords) async throws -> BatchPlan {
        guard let first = records.first, let last = records.last else { return .rows([], rejected: []) }
        let partition = records.partition
        let place = "partition \(partition) offsets \(first.offset)…\(last.offset)"
        func failure(_ message: String) -> JobFailure {
            JobFailure(job: spec.job, version: spec.version, partition: partition, offset: first.offset,
                       message: "program \"\(argv.joined(separator: " "))\", \(place): \(message)")
        }
        let process: ExecProcess
        do {
            process = try processes.withLock { p in
                if let running = p[partition] { return running }
                let started = try ExecProcess(argv: argv, environment: spec.execEnvironment)
                p[partition] = started
                return started
            }
        } catch let error as ExecError {
            throw failure(error.message)
        }
        let lines = records.map(RecordJSON.consumerLine)
            + ["{\"batchEnd\": {\"partition\": \(partition), \"nextOffset\": \(records.nextOffset)}}"]
        let timeout = spec.timeoutMs
        let answer: [[UInt8]]
        do {
            answer = try await Self.programs.run { try process.exchange(lines, timeoutMs: timeout, isEnd: Self.isBatchEnd) }
        } catch let error as ExecError {
            _ = processes.withLock { $0.removeValue(forKey: partition) }  // a fresh program next time
            throw failure(error.message)
        }
        var operations: [RowOperation] = []
        var rejected: [RejectedOutput] = []
        for line in answer where !ExecProcess.isBlank(line) {
            do {
                operations.append(try parse(line))
            } catch let error as ValueParseError {
                _ = processes.withLock { $0.removeValue(forKey: partition) }
                throw failure("malformed output line \(ExecProcess.shown(line)): \(error.message)")
            } catch let error as BadOutputValue {
                guard spec.onBadRecord == .deadLetter else {
                    _ = processes.withLock { $0.removeValue(forKey: partition) }
                    throw failure("bad record: output line \(ExecProcess.shown(line)): \(error.message) (onBadRecord is \"fail\")")
                }
                rejected.append(RejectedOutput(line: line, error: error.message))
            }
        }
        return .rows(operations, rejected: rejected)
    }

    /// One output line → an operation, checked against the manifest's columns.
    /// - Throws: `ValueParseError` for a line that breaks the protocol (not JSON, an unknown
    ///   operation or column, a missing key); `BadOutputValue` for a value its column's type refuses.
    func parse(_ line: [UInt8]) throws -> RowOperation {
        let value: JSONValue
        do {
            value = try JSONScanner.parse(line)
        } catch let error as JSONScanner.SyntaxError {
            throw ValueParseError("not JSON (\(error))")
        }
        guard case .object(let members) = value, members.count == 1, case .object(let row) = members[0].1 else {
            throw ValueParseError("expected {\"upsert\": {…}} or {\"delete\": {…}}")
        }
        let operation = members[0].0
        guard operation == "upsert" || operation == "delete" else { throw ValueParseError("unknown operation \"\(operation)\" (upsert or delete)") }
        let columns = Dictionary(uniqueKeysWithValues: spec.output.columns.map { ($0.name, $0.type) })
        // (The JSON scanner refuses a member named twice.)
        for (name, _) in row where columns[name] == nil { throw ValueParseError("unknown column \"\(name)\"") }
        let missing = spec.output.primaryKey.filter { key in !row.contains { $0.0 == key } }
        guard missing.isEmpty else { throw ValueParseError("missing primary key column\(missing.count > 1 ? "s" : "") \(missing.joined(separator: ", "))") }
        if operation == "delete" && row.count != spec.output.primaryKey.count { throw ValueParseError("a delete names only the primary key columns") }
        let values = try row.map { name, v in
            (name, try Self.sqlValue(v, column: name, type: columns[name]!, inKey: spec.output.primaryKey.contains(name)))
        }
        return operation == "upsert" ? .upsert(values) : .delete(values)
    }

    /// A value for a column of `type`, or why it does not fit: INTEGER and BIGINT take a whole
    /// number in the 64-bit range (`3`, `3.0`, `3e2`; not `3.5`, `1e400`, `"3"`), REAL and DOUBLE
    /// a finite number, NUMERIC a finite number (whole numbers kept exact), BOOLEAN `true` or
    /// `false` (stored as 1 and 0 on SQLite), TEXT a string without NUL, BLOB a string (stored as its UTF-8
    /// bytes). `null` fits any column but the primary key's.
    static func sqlValue(_ v: JSONValue, column: String, type: JobSpec.ColumnType, inKey: Bool) throws -> SQLValue {
        func refuse(_ expected: String) -> BadOutputValue {
            BadOutputValue("column \"\(column)\" (\(type.rawValue)): expected \(expected), got \(describe(v))")
        }
        if case .null = v {
            guard !inKey else { throw BadOutputValue("column \"\(column)\" is in the primary key and cannot be null") }
            return .null
        }
        switch type {
        case .integer, .bigint:
            guard case .number(let n) = v else { throw refuse("a whole number") }
            if let i = Int64(n) { return .integer(i) }
            // Written with a fraction or an exponent: whole and exactly representable.
            guard let d = Double(n), d.isFinite, d == d.rounded(), abs(d) <= 9_007_199_254_740_992 else {
                throw refuse("a whole number in the 64-bit range")
            }
            return .integer(Int64(d))
        case .real, .double, .numeric:
            guard case .number(let n) = v else { throw refuse("a number") }
            if type == .numeric, let i = Int64(n) { return .integer(i) }
            guard let d = Double(n), d.isFinite else { throw refuse("a finite number") }
            return .real(d)
        case .boolean:
            guard case .bool(let b) = v else { throw refuse("true or false") }
            return .integer(b ? 1 : 0)
        case .text:
            guard case .string(let s) = v else { throw refuse("a string") }
            // PostgreSQL's text cannot hold NUL (a parameter would end there): refused on every store.
            guard !s.utf8.contains(0) else { throw BadOutputValue("column \"\(column)\" (TEXT): the string contains a NUL character (\\u0000)") }
            return .text(s)
        case .blob:
            guard case .string(let s) = v else { throw refuse("a string (stored as its UTF-8 bytes)") }
            return .blob(Array(s.utf8))
        }
    }

    /// A value as a bad record's message shows it (at most 40 characters of it).
    static func describe(_ v: JSONValue) -> String {
        switch v {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .number(let n): return n.count > 40 ? String(n.prefix(40)) + "…" : n
        case .string(let s): return "the string " + JSONScanner.quote(s.count > 40 ? String(s.prefix(40)) + "…" : s)
        case .array, .object: return v.kind
        }
    }

    static func isBatchEnd(_ line: [UInt8]) -> Bool {
        guard line.count < 200, let members = try? JSONScanner.members(of: line) else { return false }
        return members.count == 1 && members[0].name == "batchEnd"
    }
}

/// A value of an exec program's output that its column's type refuses: a bad record.
struct BadOutputValue: Error {
    var message: String
    init(_ message: String) { self.message = message }
}
