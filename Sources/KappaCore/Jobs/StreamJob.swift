/// What a version computes: for each batch of records, a plan of changes to its own table that
/// the store executes inside the batch's transaction. Implementations: `SQLJob` (SQL over
/// `batch`) and `ExecJob` (row operations from a program, run before the transaction).
public protocol StreamJob: Sendable {
    var spec: JobSpec { get }

    /// The plan for `records` (work that is not the database's, such as running a program, is
    /// done here, outside the transaction).
    /// - Throws: `JobFailure` when the job cannot produce one.
    func plan(_ records: LogRecords) async throws -> BatchPlan
}

/// A change to a version's table, as an exec program reports it.
public enum RowOperation: Sendable, Equatable {
    /// The statement that performs it on `table` (already quoted), with its values; `placeholder`
    /// spells the n-th parameter (`?` for SQLite, `$1`… for PostgreSQL).
    func statement(table: String, key: [String], placeholder: (Int) -> String) -> (sql: String, values: [SQLValue]) {
        switch self {
        case .upsert(let row):
            let names = row.map(\.0)
            let updates = names.filter { !key.contains($0) }.map { "\(SQLText.quote($0)) = excluded.\(SQLText.quote($0))" }
            let conflict = updates.isEmpty ? "DO NOTHING" : "DO UPDATE SET " + updates.joined(separator: ", ")
            return ("INSERT INTO \(table) (\(names.map(SQLText.quote).joined(separator: ", "))) VALUES ("
                    + names.indices.map(placeholder).joined(separator: ", ") + ") ON CONFLICT ("
                    + key.map(SQLText.quote).joined(separator: ", ") + ") \(conflict)", row.map(\.1))
        case .delete(let row):
            return ("DELETE FROM \(table) WHERE " + row.indices.map { "\(SQLText.quote(row[$0].0)) = \(placeholder($0))" }.joined(separator: " AND "),
                    row.map(\.1))
        }
    }

    /// Insert the row, or update the row with the same primary key (columns not given keep their values).
    case upsert([(String, SQLValue)])
    /// Delete the row with this primary key.
    case delete([(String, SQLValue)])

    public static func == (a: RowOperation, b: RowOperation) -> Bool {
        switch (a, b) {
        case let (.upsert(x), .upsert(y)), let (.delete(x), .delete(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default:
            return false
        }
    }
}

/// An exec program's output line left out under `onBadRecord: "deadLetter"`: a value its
/// column's type refuses. The store keeps it in the dead-letter table.
public struct RejectedOutput: Sendable, Equatable {
    public var line: [UInt8]
    /// Which column, and why (`column "ts" (INTEGER): expected …, got …`).
    public var error: String
}

/// A version's job failed: a SQL error, or a bad record under `onBadRecord: "fail"`.
/// The version is marked failed with this message; the serving version is not touched.
public struct JobFailure: Error, Sendable, CustomStringConvertible {
    public var job: String
    public var version: Int
    public var partition: Int?
    public var offset: Int64?
    public var message: String

    public var description: String {
        var where_ = "job \(job) v\(version)"
        if let partition { where_ += " partition \(partition)" }
        if let offset { where_ += " offset \(offset)" }
        return "\(where_): \(message)"
    }
}

/// Builds the job a manifest describes.
public enum StreamJobs {
    public static func make(_ spec: JobSpec) throws -> any StreamJob {
        switch spec.transform {
        case .sql: return SQLJob(spec: spec)
        case .exec: return ExecJob(spec: spec)
        }
    }
}
