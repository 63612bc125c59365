/// How every store isolates bad records: apply the whole batch; when the data makes it fail,
/// split it in halves and apply each (each attempt undone on failure by the caller's savepoint),
/// down to the single record, which follows the job's `onBadRecord`.
///
/// An error is a record's only if the records cause it. So before the first split the job's SQL
/// runs once over an empty batch (undone like every attempt): an error there too (a missing
/// table or function, a refused action, a constant the SQL cannot read) fails the version with
/// that error, and no record is dead-lettered for it. That is the rule PostgreSQL's deploy check
/// already applies (it runs the SQL over an empty batch), and it needs no list of messages.
/// Errors of the SQL that show only with rows (every record fails) are caught by the dead-letter
/// limit instead (`deadLetter.maxFraction`, checked by the batch commit).
enum BadRecords {
    /// What one batch sent to the dead-letter table.
    struct Outcome {
        var count = 0
        /// The first error, for messages.
        var firstError: String?
    }

    /// - Parameters:
    ///   - attempt: applies `records[range]` in a savepoint, undoing it if it throws.
    ///   - dataError: the message when an error is the data's fault (else nil: it propagates).
    ///   - deadLetter: stores a record with the error's message.
    /// - Returns: what went to the dead-letter table.
    /// - Throws: `JobFailure` for a bad record under `fail`, or for an error that an empty batch
    ///   raises too; other errors as they come.
    static func apply(_ records: LogRecords, spec: JobSpec, partition: Int,
                      attempt: (Range<Int>) throws -> Void,
                      dataError: (any Error) -> String?,
                      deadLetter: (LogRecord, String) throws -> Void) throws -> Outcome {
        var dead = Outcome()
        var probed = false
        func run(_ range: Range<Int>) throws {
            do {
                try attempt(range)
            } catch {
                guard let message = dataError(error) else { throw error }
                if !probed {
                    probed = true
                    do {
                        try attempt(range.lowerBound..<range.lowerBound)
                    } catch {
                        guard let again = dataError(error) else { throw error }
                        throw JobFailure(job: spec.job, version: spec.version, partition: partition, offset: records.first?.offset,
                                         message: "transform.sql: \(again) (it fails on an empty batch too, so no record is to blame)")
                    }
                }
                if range.count > 1 {
                    let mid = range.lowerBound + range.count / 2
                    try run(range.lowerBound..<mid)
                    try run(mid..<range.upperBound)
                    return
                }
                let record = records[range.lowerBound]
                guard spec.onBadRecord == .deadLetter else {
                    throw JobFailure(job: spec.job, version: spec.version, partition: partition, offset: record.offset,
                                     message: "bad record: \(message) (onBadRecord is \"fail\")")
                }
                try deadLetter(record, message)
                dead.count += 1
                if dead.firstError == nil { dead.firstError = message }
            }
        }
        if !records.isEmpty { try run(0..<records.count) }
        return dead
    }

    /// The values of a dead-letter row: partition, offset, timestamp, key, value, error.
    static func row(_ record: LogRecord, partition: Int, error: String) -> [SQLValue] {
        [.integer(Int64(partition)), .integer(record.offset), .integer(record.timestamp),
         record.key.map { .blob(Array($0)) } ?? .null, record.value.map { .blob(Array($0)) } ?? .null, .text(error)]
    }
}

/// The catalog changes of a lifecycle decision, as each store performs them inside its
/// transaction; `apply` dispatches an action to them.
protocol CatalogActionTarget {
    func transition(job: String, version: Int, from: VersionState, to: VersionState, reason: String, actor: String, error: String?) throws
    func pointView(job: String, to version: Int) throws
    func dropVersion(job: String, version: Int) throws
    func checkPromotion(job: String, old: Int, new: Int) throws
    func startBake(job: String, version: Int, previous: Int?) throws
    func endBake(job: String, version: Int, outcome: String, reason: String, actor: String) throws
    /// The job's versions in state `serving`, as the caller's transaction sees them.
    func servingVersions(job: String) throws -> [Int]
}

extension CatalogActionTarget {
    /// Applies one decision's actions inside the caller's transaction, then checks the invariant
    /// the decision relied on: at most one version serves. A decision made from a stale reading
    /// of the catalog (two controllers for a moment, a controller beside `kappactl`, two events
    /// decided from one snapshot) fails here and the transaction is undone.
    func apply(_ actions: [CatalogAction], job: String, actor: String) throws {
        for action in actions { try apply(action, job: job, actor: actor) }
        let serving = try servingVersions(job: job)
        guard serving.count <= 1 else {
            throw CatalogError(.stateConflict, "job \"\(job)\": versions \(serving.map(String.init).joined(separator: " and ")) would both serve; the catalog changed since the decision was made, which is undone")
        }
    }

    func apply(_ action: CatalogAction, job: String, actor: String) throws {
        switch action {
        case .transition(let version, let from, let to, let reason, let error):
            try transition(job: job, version: version, from: from, to: to, reason: reason, actor: actor, error: error)
        case .pointView(let version):
            try pointView(job: job, to: version)
        case .dropTables(let version):
            try dropVersion(job: job, version: version)
        case .checkPromotion(let old, let new):
            try checkPromotion(job: job, old: old, new: new)
        case .startBake(let version, let previous):
            try startBake(job: job, version: version, previous: previous)
        case .endBake(let version, let outcome, let reason):
            try endBake(job: job, version: version, outcome: outcome, reason: reason, actor: actor)
        }
    }
}
