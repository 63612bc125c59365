/// A SQL micro-batch job: each batch is loaded into the temporary table
/// `batch(partition, offset, timestamp, key, value, key_bytes)` and the version's SQL runs over
/// it, writing `output`, which names the version's own table.
public struct SQLJob: StreamJob {
    public let spec: JobSpec
    /// The manifest's SQL with `output` bound to `<table>__v<N>`.
    public let statements: String

    public init(spec: JobSpec) {
        self.spec = spec
        guard case .sql(let sql) = spec.transform else { preconditionFailure("not a SQL transform") }
        statements = SQLText.replacingTable("output", with: SQLText.quote(spec.versionTable), in: sql)
    }

    /// The same statements for every batch: the store loads the records into `batch` and runs them.
    public func plan(_ records: LogRecords) async throws -> BatchPlan { .sql(statements) }
}
