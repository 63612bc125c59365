import Synchronization

/// An exec job: any program, started once per partition worker. For each batch it receives the
/// records as JSON lines (`{"partition","offset","timestamp","key","value"}`) and then
/// `{"batchEnd": {"partition": P, "nextOffset": N}}`; it answers with operations,
/// `{"upsert": {column: value, …}}` or `{"delete": {key column: value, …}}`, one per line, and
/// `{"batchEnd": true}`. The operations and the next offset are committed in one transaction.
/// A crash, a timeout or a malformed line fails the version, naming the program, the partition,
/// the batch's offsets and the line.
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
        guard let first = records.first, let last = records.last else { return .rows([]) }
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
                let started = try ExecProcess(argv: argv)
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
        for line in answer where !line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) {
            do {
                operations.append(try parse(line))
            } catch let error as ValueParseError {
                _ = processes.withLock { $0.removeValue(forKey: partition) }
                let shown = String(decoding: line.prefix(200), as: UTF8.self)
                throw failure("malformed output line \(JSONScanner.quote(shown)): \(error.message)")
            }
        }
        return .rows(operations)
    }

    /// One output line → an operation, checked against the manifest's columns.
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
        let columns = Dictionary(uniqueKeysWithValues: spec.output.columns.map { ($0.name, $0.type) })
        var values: [(String, SQLValue)] = []
        for (name, v) in row {
            guard columns[name] != nil else { throw ValueParseError("unknown column \"\(name)\"") }
            values.append((name, Self.sqlValue(v)))
        }
        let missing = spec.output.primaryKey.filter { key in !values.contains { $0.0 == key } }
        guard missing.isEmpty else { throw ValueParseError("missing primary key column\(missing.count > 1 ? "s" : "") \(missing.joined(separator: ", "))") }
        switch members[0].0 {
        case "upsert": return .upsert(values)
        case "delete":
            guard values.count == spec.output.primaryKey.count else { throw ValueParseError("a delete names only the primary key columns") }
            return .delete(values)
        default: throw ValueParseError("unknown operation \"\(members[0].0)\" (upsert or delete)")
        }
    }

    static func sqlValue(_ v: JSONValue) -> SQLValue {
        switch v {
        case .null: return .null
        case .bool(let b): return .integer(b ? 1 : 0)
        case .number(let n): return Int64(n).map(SQLValue.integer) ?? Double(n).map(SQLValue.real) ?? .text(n)
        case .string(let s): return .text(s)
        case .array, .object: return .text(v.text)
        }
    }

    static func isBatchEnd(_ line: [UInt8]) -> Bool {
        guard line.count < 200, let members = try? JSONScanner.members(of: line) else { return false }
        return members.count == 1 && members[0].name == "batchEnd"
    }
}
