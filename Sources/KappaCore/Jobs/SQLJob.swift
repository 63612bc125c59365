/// A SQL micro-batch job: each batch is loaded into the temporary table `batch` and the
/// version's SQL runs over it, writing `output`, which names the version's own table.
public struct SQLJob: StreamJob {
    public let spec: JobSpec
    /// The manifest's SQL with `output` bound to `<table>__v<N>`.
    public let statements: String

    public init(spec: JobSpec) {
        self.spec = spec
        guard case .sql(let sql) = spec.transform else { preconditionFailure("not a SQL transform") }
        statements = SQLText.replacingTable("output", with: SQLText.quote(spec.versionTable), in: sql)
    }

    public func apply(_ records: LogRecords, range: Range<Int>, to sink: any BatchSink) throws {
        try sink.loadBatch(records, range: range)
        try sink.runJobSQL(self)
    }
}
