/// Analysis after promotion, in the catalog: one row per version that was promoted with
/// `promote.analysis` (its latest bake), so that any host's controller, and one restarted in
/// the middle, carries the bake on from where it is.
public struct BakeRecord: Sendable, Equatable, Codable {
    public var job: String
    public var version: Int
    /// The version that served before, which a failed analysis rolls back to.
    public var previous: Int?
    /// When the switch was made (ms since the epoch): the bake lasts `bake` from then.
    public var startedAt: Int64
    public var evaluations: Int
    public var failures: Int
    public var lastAt: Int64?
    /// The last failing evaluation: the check and the values it saw.
    public var lastFailure: String?
    /// nil while baking; then `passed`, `rolledBack`, or `failed` (nothing to roll back to).
    public var outcome: String?
    public var endedAt: Int64?
}

/// A check stopped at its time limit.
public struct CheckTimeLimit: Error, Sendable, CustomStringConvertible {
    public var limitMs: Int64
    public var description: String { "did not finish within \(DurationText.format(milliseconds: limitMs)) and was stopped" }
}

extension SQLCatalog {
    /// How long one analysis check may run: it holds the catalog's connection meanwhile (batch
    /// commits, the view switch and the operator's commands wait), so it must be cheap.
    static let analysisCheckLimitMs: Int64 = 2_000
    /// How long one promote check may run, inside the switch's transaction.
    static let promoteCheckLimitMs: Int64 = 10_000

    static let bakeColumns = ["job", "version", "previous", "started_at", "evaluations", "failures", "last_at", "last_failure", "outcome", "ended_at"]

    func bakes(_ c: any SQLConnection) throws -> [BakeRecord] {
        try c.query("SELECT \(Self.bakeColumns.joined(separator: ", ")) FROM \(t("kappa_bakes")) ORDER BY job, version", [], name: "read bakes").map { values in
            var row = CatalogRow(values, table: "kappa_bakes", columns: Self.bakeColumns)
            let job = try row.text(0), version = Int(try row.int(1))
            row.context = "job \(job) v\(version)"
            return BakeRecord(job: job, version: version, previous: try row.optionalInt(2).map(Int.init), startedAt: try row.int(3),
                              evaluations: Int(try row.int(4)), failures: Int(try row.int(5)), lastAt: try row.optionalInt(6),
                              lastFailure: try row.optionalText(7), outcome: try row.optionalText(8), endedAt: try row.optionalInt(9))
        }
    }

    /// Starts (or starts again) a version's bake; the caller holds the switch's transaction.
    func startBake(_ c: any SQLConnection, job: String, version: Int, previous: Int?) throws {
        let key: [SQLValue] = [.text(job), .integer(Int64(version))]
        try c.run("DELETE FROM \(t("kappa_bakes")) WHERE job = \(p(1)) AND version = \(p(2))", key, name: "start bake")
        try c.run("INSERT INTO \(t("kappa_bakes")) (job, version, previous, started_at, evaluations, failures) VALUES (\(p(1)), \(p(2)), \(p(3)), \(p(4)), 0, 0)",
                  key + [previous.map { .integer(Int64($0)) } ?? .null, .integer(currentTimeMillis())], name: "start bake")
    }

    /// Ends a bake with its outcome and a history entry (`reason`) for the serving version.
    func endBake(_ c: any SQLConnection, job: String, version: Int, outcome: String, reason: String, actor: String) throws {
        let now = currentTimeMillis()
        let changed = try c.run("UPDATE \(t("kappa_bakes")) SET outcome = \(p(1)), ended_at = \(p(2)) WHERE job = \(p(3)) AND version = \(p(4)) AND outcome IS NULL",
                                [.text(outcome), .integer(now), .text(job), .integer(Int64(version))], name: "end bake")
        guard changed == 1 else { throw CatalogError(.stateConflict, "job \"\(job)\" version \(version) is not baking") }
        let state = try c.query("SELECT state FROM \(t("kappa_versions")) WHERE job = \(p(1)) AND version = \(p(2))", [.text(job), .integer(Int64(version))], name: "read state")
        guard let row = state.first else { throw CatalogError.noVersion(job, version) }
        let current = try CatalogRow(row, table: "kappa_versions", columns: ["state"]).state(0)
        try appendHistory(c, job: job, version: version, from: current, to: current, reason: reason, actor: actor, at: now)
    }

    /// Counts one evaluation of a bake (`failure`: what failed, with the values seen).
    func recordEvaluation(job: String, version: Int, failure: String?, at: Int64) throws {
        _ = try transaction("\(job): analysis") { c in
            try c.run("""
                UPDATE \(t("kappa_bakes")) SET evaluations = evaluations + 1, failures = failures + \(p(1)), last_at = \(p(2)),
                    last_failure = coalesce(\(p(3)), last_failure) WHERE job = \(p(4)) AND version = \(p(5)) AND outcome IS NULL
                """, [.integer(failure == nil ? 0 : 1), .integer(at), failure.map(SQLValue.text) ?? .null, .text(job), .integer(Int64(version))],
                name: "record analysis")
        }
    }

    /// Evaluates a version's `promote.analysis.checks` with `new` its table, `old` the previous
    /// version's, `lag` one row per partition (`partition`, `records`, `time_lag_ms`) and `errors`
    /// its dead letters; each check may read only those. Returns the checks that do not hold,
    /// or cannot run, with why.
    func evaluateAnalysis(job: String, version: Int, previous: Int?, lag: [PartitionLag]) throws -> [String] {
        try transaction("\(job): analysis checks") { c in
            guard let v = try versions(c, job: job).first(where: { $0.version == version }), let analysis = v.spec.promote.analysis else { return [] }
            let newTable = v.spec.versionTable
            let oldTable = previous.map { JobSpec.versionTable(view: v.spec.output.table, version: $0) } ?? newTable
            var failing: [String] = []
            for check in analysis.checks {
                do {
                    if try !backend.evaluateCheck(c, analysisSQL(check, spec: v.spec, old: oldTable, lag: lag), readable: [oldTable, newTable, v.spec.deadLetterTable],
                                                  limitMs: Self.analysisCheckLimitMs) {
                        failing.append("the check \(check) does not hold")
                    }
                } catch let limit as CheckTimeLimit {
                    failing.append("the check \(check) \(limit)")
                } catch let error as any ClassifiedStoreError where error.storeClass != .unreachable {
                    failing.append("the check \(check) cannot run: \(error.message)")
                }
            }
            return failing
        }
    }

    func deadLetterCount(job: String, version: Int) throws -> Int64 {
        let c = try connection()
        guard let v = try versions(c, job: job).first(where: { $0.version == version }) else { throw CatalogError.noVersion(job, version) }
        let row = try c.query("SELECT count(*) FROM \(t(v.spec.deadLetterTable))", [], name: "count dead letters").first ?? []
        return try CatalogRow(row, table: v.spec.deadLetterTable, columns: ["count(*)"]).int(0)
    }

    /// An analysis check as it runs: `checkSQL` with `lag` a relation of literal rows and
    /// `errors` the version's dead-letter table.
    func analysisSQL(_ check: String, spec: JobSpec, old: String, lag: [PartitionLag]) -> String {
        let rows = lag.isEmpty ? ["SELECT 0 AS partition, 0 AS records, 0 AS time_lag_ms WHERE 1 = 0"]
            : lag.map { "SELECT \($0.partition) AS partition, \($0.lag) AS records, \($0.timeLagMs ?? 0) AS time_lag_ms" }
        var sql = SQLText.replacingTable("errors", with: t(spec.deadLetterTable), in: check)
        sql = SQLText.replacingTable("lag", with: "(\(rows.joined(separator: " UNION ALL "))) AS lag", in: sql)
        return checkSQL(sql, old: old, new: spec.versionTable)
    }

    /// Compiles each of `promote.analysis.checks` at deploy, where the store can (SQLite), as
    /// `checkPromotionChecks` does for `promote.checks`.
    func checkAnalysisChecks(_ c: any SQLConnection, _ spec: JobSpec, old: String) throws {
        guard let analysis = spec.promote.analysis else { return }
        let lag = [PartitionLag(partition: 0, end: 0, next: 0)]
        for (i, check) in analysis.checks.enumerated() {
            do {
                try backend.checkPromotionCheck(c, analysisSQL(check, spec: spec, old: old, lag: lag), readable: [old, spec.versionTable, spec.deadLetterTable])
            } catch let error as any ClassifiedStoreError where error.storeClass != .unreachable {
                throw CatalogError(.invalidJob, "promote.analysis.checks[\(i)]: \(error.message)")
            }
        }
    }
}
