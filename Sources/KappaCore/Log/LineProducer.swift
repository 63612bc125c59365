#if canImport(Glibc)
import Glibc
#endif

/// What `kappactl produce` appended: per partition, the count and the offsets, in ranges (the
/// records of another producer writing at once may lie between them).
public struct ProduceSummary: Sendable, Codable, Equatable {
    public var topic: String
    public var records: Int
    public var partitions: [AppendResult]

    mutating func add(_ results: [AppendResult]) {
        for r in results {
            records += r.count
            if let i = partitions.firstIndex(where: { $0.partition == r.partition }) {
                partitions[i].add(r)
            } else {
                partitions.append(r)
            }
        }
        partitions.sort { $0.partition < $1.partition }
    }
}

/// A malformed input line: the lines before it were appended (and are in `summary`), none after.
public struct ProduceError: Error, Sendable, CustomStringConvertible {
    public var line: Int
    public var message: String
    public var summary: ProduceSummary
    public var description: String { "line \(line): \(message)" }
}

/// The log failed during a run: `summary` holds what was appended (acknowledged) before and
/// by the failing append, which may have reached some partitions and not others.
public struct ProduceInterrupted: Error, Sendable, CustomStringConvertible {
    public var summary: ProduceSummary
    public var error: any Error
    public var description: String {
        summary.records == 0 ? "\(error)" : "\(error) (the \(summary.records) records listed were acknowledged)"
    }
}

/// Appends JSON lines (or raw lines) read from a file descriptor, in batches of whatever input is
/// available, so that a piped file goes in large batches and a typed line goes in at once.
public struct LineProducer: Sendable {
    public var log: any UnifiedLog
    public var topic: String
    public var raw: Bool
    /// How keys, values and header values are written in a line (not with `raw`).
    public var format: RecordFormat

    public init(log: any UnifiedLog, topic: String, raw: Bool, format: RecordFormat = .json) {
        self.log = log
        self.topic = topic
        self.raw = raw
        self.format = format
    }

    /// Reads `input` to its end and appends every line.
    ///
    /// A batch counts (in `progress` and the summary) once the log has acknowledged all of it,
    /// never before. When the log's servers are down (Kafka's brokers), an append waits for them
    /// and the run goes on once they are back; if they stay down longer than the log waits
    /// (Kafka: `message.timeout.ms`, 60 s), the run stops with the log's error, which names topic
    /// and partition: the batches before it are in the log exactly once, that batch in part or
    /// not at all, the input after it not at all.
    /// - Parameter progress: called after each batch with the total so far.
    /// - Throws: `ProduceError` for a malformed line (after appending the lines before it),
    ///   `LogError` from the log when the topic is unknown or unreachable before any input is
    ///   read, `ProduceInterrupted` when an append failed (with what was appended until then,
    ///   the failing append's partitions that succeeded included).
    public func run(input: Int32 = 0, progress: (@Sendable (Int) -> Void)? = nil) async throws -> ProduceSummary {
        _ = try await log.metadata(topic: topic)  // fail before reading any input
        var summary = ProduceSummary(topic: topic, records: 0, partitions: [])
        var pending: [UInt8] = []
        var lineNumber = 0
        while true {
            let chunk = try await Self.readChunk(input)
            let eof = chunk.isEmpty
            pending += chunk
            var records: [ProducerRecord] = []
            var start = 0
            var failure: (Int, String)?
            while failure == nil {
                let newline = pending[start...].firstIndex(of: 0x0A)
                guard let end = newline ?? (eof && start < pending.count ? pending.count : nil) else { break }
                lineNumber += 1
                var line = pending[start..<end]
                if line.last == 0x0D { line = line.dropLast() }  // CRLF input
                start = min(end + 1, pending.count)
                if !raw && line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
                do {
                    records.append(try RecordJSON.producerRecord(line: line, raw: raw, format: format))
                } catch let error as ValueParseError {
                    failure = (lineNumber, error.message)
                }
            }
            pending.removeFirst(start)
            if !records.isEmpty {
                do {
                    summary.add(try await log.append(topic: topic, records: records))
                } catch {
                    summary.add((error as? LogError)?.appended ?? [])
                    throw ProduceInterrupted(summary: summary, error: error)
                }
                progress?(summary.records)
            }
            if let (line, message) = failure { throw ProduceError(line: line, message: message, summary: summary) }
            if eof { return summary }
        }
    }

    /// Blocking reads happen on the blocking executor, never on the cooperative pool. A read of a
    /// terminal may wait for a person to type: that holds one thread of the executor (one read at
    /// a time), and `kappactl produce` has nothing else for the others to do meanwhile.
    private static func readChunk(_ fd: Int32) async throws -> [UInt8] {
        try await BlockingExecutor.shared.run {
            var buffer = [UInt8](repeating: 0, count: 1 << 20)
            while true {
                let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n < 0 { throw IOError("read", path: "standard input") }
                buffer.removeLast(buffer.count - n)
                return buffer
            }
        }
    }
}
