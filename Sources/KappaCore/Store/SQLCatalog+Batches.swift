extension SQLCatalog {
    /// Commits one batch of one partition: checks the version is running, the batch starts at the
    /// stored next offset and (with a fence) the lease is still the worker's, executes the job's
    /// plan, and stores the next offset, all in one transaction. Bad records follow the job's
    /// `onBadRecord`.
    /// - Throws: `StaleOffsetError`, `VersionStoppedError`, `LeaseLostError` (nothing written);
    ///   `JobFailure` for the job's SQL or output, or a bad record under `fail`; store errors
    ///   of other classes as they come (the worker retries).
    /// - Parameter limit: bounds the job's SQL (`JobTimeLimit`); `JobSQLYield` when it gave way.
    func commit(_ plan: BatchPlan, spec: JobSpec, partition: Int, records: LogRecords, fence: Lease?, limit: JobTimeLimit? = nil) throws -> BatchResult {
        guard let first = records.first else {
            return BatchResult(partition: partition, records: 0, deadLettered: 0, nextOffset: records.nextOffset)
        }
        let key: [SQLValue] = [.text(spec.job), .integer(Int64(spec.version)), .integer(Int64(partition))]
        return try transaction("batch job \(spec.job) v\(spec.version) partition \(partition)") { c in
            try checkBatchStart(c, spec: spec, partition: partition, start: first.offset, fence: fence)
            let dead = try execute(plan, c, spec: spec, partition: partition, records: records, limit: limit)
            if dead.count > 0 { try checkDeadLetterLimit(c, spec: spec, partition: partition, records: records, batch: dead) }
            try faultHook?("after job")
            try c.run("UPDATE \(t("kappa_offsets")) SET next_offset = \(p(1)) WHERE job = \(p(2)) AND version = \(p(3)) AND partition = \(p(4))",
                      [.integer(records.nextOffset)] + key, name: "store offset")
            try faultHook?("before commit")
            return BatchResult(partition: partition, records: records.count, deadLettered: dead.count, nextOffset: records.nextOffset)
        }
    }

    /// Inside a batch's transaction: the version still takes batches, the batch starts at the
    /// stored next offset and (with a fence) the lease is still the worker's.
    /// - Throws: `StaleOffsetError`, `VersionStoppedError`, `LeaseLostError`; `CatalogError`.
    private func checkBatchStart(_ c: any SQLConnection, spec: JobSpec, partition: Int, start: Int64, fence: Lease?) throws {
        let key: [SQLValue] = [.text(spec.job), .integer(Int64(spec.version)), .integer(Int64(partition))]
        let place = "job \(spec.job) v\(spec.version) partition \(partition)"
        let stored = try c.query("""
            SELECT o.next_offset, v.state FROM \(t("kappa_offsets")) o JOIN \(t("kappa_versions")) v ON v.job = o.job AND v.version = o.version
            WHERE o.job = \(p(1)) AND o.version = \(p(2)) AND o.partition = \(p(3))\(d.forUpdate.isEmpty ? "" : " \(d.forUpdate) OF o")
            """, key, name: "read offset")
        guard let values = stored.first else {
            throw CatalogError(.versionNotFound, "job \(spec.job) has no version \(spec.version) with partition \(partition)")
        }
        let row = CatalogRow(values, table: "kappa_offsets", columns: ["next_offset", "state"], context: place)
        // A version that was retired or failed meanwhile takes no more batches (its workers stop).
        let state = try row.state(1)
        guard state.isRunning || state == .pending else {
            throw VersionStoppedError(job: spec.job, version: spec.version, state: state.rawValue)
        }
        let offset = try row.int(0)
        guard offset == start else { throw StaleOffsetError(partition: partition, stored: offset, batchStart: start) }
        if let fence {
            // On PostgreSQL FOR SHARE: a takeover (an UPDATE of this row) waits for this batch, or this batch sees it.
            let lease = try c.query("SELECT owner, epoch FROM \(t("kappa_leases")) WHERE job = \(p(1)) AND version = \(p(2)) AND partition = \(p(3)) \(d.forShare)",
                                    key, name: "check lease").first
            let held = try lease.map { values -> (String?, Int64) in
                let row = CatalogRow(values, table: "kappa_leases", columns: ["owner", "epoch"], context: place)
                return (try row.optionalText(0), try row.int(1))
            }
            guard let held, held.0 == fence.owner, held.1 == fence.epoch else {
                throw LeaseLostError(key: fence.key, owner: fence.owner, epoch: fence.epoch)
            }
        }
    }

    /// Moves a version's partition past a recorded gap of its source (`source.allowGaps`): the
    /// stored next offset goes from `from` to `to`, checked like a batch's start, and the skip
    /// is recorded in the version's history. - Throws: as `commit`.
    func skipGap(spec: JobSpec, partition: Int, from: Int64, to: Int64, reason: String, actor: String, fence: Lease?) throws {
        try transaction("skip a gap, job \(spec.job) v\(spec.version) partition \(partition)") { c in
            try checkBatchStart(c, spec: spec, partition: partition, start: from, fence: fence)
            try c.run("UPDATE \(t("kappa_offsets")) SET next_offset = \(p(1)) WHERE job = \(p(2)) AND version = \(p(3)) AND partition = \(p(4))",
                      [.integer(to), .text(spec.job), .integer(Int64(spec.version)), .integer(Int64(partition))], name: "store offset")
            let state = try c.query("SELECT state FROM \(t("kappa_versions")) WHERE job = \(p(1)) AND version = \(p(2))",
                                    [.text(spec.job), .integer(Int64(spec.version))], name: "read state").first
            let current = try CatalogRow(state ?? [], table: "kappa_versions", columns: ["state"], context: "job \(spec.job) v\(spec.version)").state(0)
            try appendHistory(c, job: spec.job, version: spec.version, from: current, to: current, reason: reason, actor: actor, at: currentTimeMillis())
        }
    }

    /// Fails the version (the batch undone) when its dead-letter table, this batch included,
    /// would hold more than `deadLetter.maxFraction` of the records it has read (and more than
    /// `JobSpec.deadLetterAllowance`): a table built from what was left would pass for the result.
    private func checkDeadLetterLimit(_ c: any SQLConnection, spec: JobSpec, partition: Int, records: LogRecords, batch: BadRecords.Outcome) throws {
        let key: [SQLValue] = [.text(spec.job), .integer(Int64(spec.version))]
        let row = try c.query("""
            SELECT (SELECT count(*) FROM \(t(spec.deadLetterTable))),
                   (SELECT coalesce(sum(next_offset - start_offset), 0) FROM \(t("kappa_offsets")) WHERE job = \(p(1)) AND version = \(p(2)))
            """, key, name: "count dead letters").first ?? []
        let counts = CatalogRow(row, table: spec.deadLetterTable, columns: ["count(*)", "records read"], context: "job \(spec.job) v\(spec.version)")
        let dead = try counts.int(0), read = try counts.int(1) + Int64(records.count)
        let limit = max(Int64(JobSpec.deadLetterAllowance), Int64((spec.deadLetterMaxFraction * Double(read)).rounded(.down)))
        guard dead > limit else { return }
        throw JobFailure(job: spec.job, version: spec.version, partition: partition, offset: records.first?.offset, message: """
            deadLetter.maxFraction: \(dead) of the \(read) records read would be dead letters, more than \(spec.deadLetterMaxFraction) of them \
            (and more than \(JobSpec.deadLetterAllowance)), so the table would be built from what was left; the first error in this batch: \(batch.firstError ?? "")
            """)
    }

    /// Executes a job's plan inside the batch transaction; returns what went to the dead-letter
    /// table.
    private func execute(_ plan: BatchPlan, _ c: any SQLConnection, spec: JobSpec, partition: Int, records: LogRecords, limit: JobTimeLimit?) throws -> BadRecords.Outcome {
        switch plan {
        case .sql(let statements):
            try backend.prepareBatch(c, spec)
            let typed = spec.source.fields.isEmpty ? nil : TypedBatch(records, fields: spec.source.fields)
            return try BadRecords.apply(records, spec: spec, partition: partition,
                attempt: { range in
                    try c.savepoint {
                        if let typed {
                            if let problem = typed.firstProblem(in: range) { throw BadValueError(message: problem) }
                        } else {
                            for i in range { try BatchBytes.checkValue(records[i]) }
                        }
                        try backend.loadBatch(c, records, range: range, typed: typed)
                        try runJobSQL(c, spec: spec, statements: statements, limit: limit, partition: partition, offset: records.first?.offset)
                    }
                },
                dataError: { $0.storeErrorClass == .data ? ($0 as? any ClassifiedStoreError)?.message : nil },
                deadLetter: { record, message in
                    try c.run("INSERT INTO \(t(spec.deadLetterTable)) (partition, \"offset\", timestamp, key, value, error) VALUES (\(d.placeholders(6)))",
                              BadRecords.row(record, partition: partition, error: message), name: "dead letter")
                })
        case .rows(let operations, let rejected):
            do {
                try c.savepoint {
                    for operation in operations {
                        let (sql, values) = operation.statement(table: t(spec.versionTable), key: spec.output.primaryKey, placeholder: { self.p($0 + 1) })
                        try c.run(sql, values, name: "exec operation")
                    }
                }
            } catch let error as any ClassifiedStoreError where [.data, .jobSQL, .other].contains(error.storeClass) {
                // The program's rows broke the table's rules: a job failure, never a bad record.
                throw JobFailure(job: spec.job, version: spec.version, partition: partition, offset: records.first?.offset,
                                 message: "program output could not be stored: \(error.message)")
            }
            guard let first = records.first, !rejected.isEmpty else { return BadRecords.Outcome() }
            // The lines cannot be told apart by record: one row for the batch, at its first offset.
            let errors = rejected.prefix(10).map(\.error).joined(separator: "; ") + (rejected.count > 10 ? "; and \(rejected.count - 10) more" : "")
            let lines = Array(rejected.map(\.line).joined(separator: [0x0A]))
            let message = "\(rejected.count) program output line\(rejected.count == 1 ? "" : "s") for offsets \(first.offset)…\(records.last!.offset) left out: \(errors)"
            try c.run("INSERT INTO \(t(spec.deadLetterTable)) (partition, \"offset\", timestamp, key, value, error) VALUES (\(d.placeholders(6)))",
                      [.integer(Int64(partition)), .integer(first.offset), .integer(first.timestamp), .null, .blob(lines), .text(message)],
                      name: "dead letter")
            return BadRecords.Outcome(count: rejected.count, firstError: rejected.first?.error)
        }
    }

    /// The job's SQL under its sandbox: errors of the SQL itself fail the version; errors the
    /// data caused go back to the bad-record policy; the others (server, disk, locks) propagate.
    /// Under `limit`: a statement stopped for waiting work is `JobSQLYield`, past the budget a
    /// `JobFailure` naming `transform.timeout`, on cancellation `CancellationError`.
    private func runJobSQL(_ c: any SQLConnection, spec: JobSpec, statements: String, limit: JobTimeLimit?, partition: Int, offset: Int64?) throws {
        if let limit {
            try backend.limitJobTime(c, limit)
            limit.start()
        }
        defer {
            if let limit {
                limit.finish()
                try? backend.limitJobTime(c, nil)
            }
        }
        do {
            try backend.runJobSQL(c, spec, statements: statements)
            if limit?.stop != nil { throw JobSQLYield.gaveWay }  // stopped just as it ended: undone all the same
        } catch let error where limit != nil && (limit?.stop != nil || error.storeErrorClass == .interrupted) {
            switch limit?.stop ?? .timeout {
            case .yield: throw JobSQLYield.gaveWay
            case .cancelled: throw CancellationError()
            case .timeout:
                throw JobFailure(job: spec.job, version: spec.version, partition: partition, offset: offset,
                                 message: "transform.sql did not finish the batch within \(DurationText.format(milliseconds: limit?.timeoutMs ?? 0)) (transform.timeout); it was stopped")
            }
        } catch let error as any ClassifiedStoreError where error.storeClass == .jobSQL {
            throw JobFailure(job: spec.job, version: spec.version, message: "transform.sql: \(error.message)")
        }
    }
}

/// What a job's batch does to its table, as the store executes it inside the batch transaction.
public enum BatchPlan: Sendable, Equatable {
    /// Statements run over `batch` (its `output` already bound to the version's table).
    case sql(String)
    /// Row operations reported by an exec program, and the output lines left out as bad
    /// records (under `onBadRecord: "deadLetter"`).
    case rows([RowOperation], rejected: [RejectedOutput])
}
