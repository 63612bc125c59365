#if Postgres
extension PostgresCatalog {
    /// The role a version's job SQL runs under: it may read `batch` and write only its own table.
    func role(_ spec: JobSpec) -> String { role(job: spec.job, version: spec.version) }

    /// `kappa_<database>_<schema>_<job>_v<N>`: roles are per server, so two databases (or schemas)
    /// with the same job never share one. Names over PostgreSQL's 63 bytes end in a hash instead.
    func role(job: String, version: Int) -> String {
        let name = "\(rolePrefix)\(job)_v\(version)".lowercased()
        guard name.utf8.count > 63 else { return name }
        let hash = String(CRC32C.checksum(Array(name.utf8)), radix: 16)
        return String(decoding: name.utf8.prefix(50), as: UTF8.self) + "_" + hash
    }

    /// Creates the version's role with rights on its own table only; the caller holds a transaction.
    func createRole(_ spec: JobSpec) throws {
        let role = SQLText.quote(role(spec))
        try db.execute("""
            DROP ROLE IF EXISTS \(role); CREATE ROLE \(role) NOLOGIN; GRANT \(role) TO CURRENT_USER;
            GRANT USAGE ON SCHEMA \(schema) TO \(role);
            GRANT SELECT, INSERT, UPDATE, DELETE ON \(table(spec.versionTable)) TO \(role)
            """, name: "create job role")
    }

    /// The session's temporary `batch` table, readable by `role`.
    func prepareBatchTable(for role: String) throws {
        if !batchReady {
            try db.execute("CREATE TEMP TABLE IF NOT EXISTS batch (partition INTEGER, \"offset\" BIGINT, timestamp BIGINT, key TEXT, value JSONB)",
                           name: "create batch table")
            batchReady = true
        }
        if !grantedRoles.contains(role) {
            try db.execute("GRANT SELECT ON pg_temp.batch TO \(SQLText.quote(role))", name: "grant batch")
            grantedRoles.insert(role)
        }
    }

    /// Applies one batch of one partition and stores the next offset, in one transaction, with
    /// bad records found by splitting the batch into savepoints (as on SQLite).
    func applyBatch(_ job: any StreamJob, partition: Int, records: LogRecords, fence: Lease? = nil) throws -> BatchResult {
        let spec = job.spec
        guard let first = records.first else {
            return BatchResult(partition: partition, records: 0, deadLettered: 0, nextOffset: records.nextOffset)
        }
        return try sessionTransaction("batch \(spec.job) v\(spec.version) partition \(partition)") {
            let rows = try db.query("""
                SELECT o.next_offset, v.state FROM \(schema).kappa_offsets o JOIN \(schema).kappa_versions v ON v.job = o.job AND v.version = o.version
                WHERE o.job = $1 AND o.version = $2 AND o.partition = $3 FOR UPDATE OF o
                """, [.text(spec.job), .integer(Int64(spec.version)), .integer(Int64(partition))], name: "read offset").rows
            guard let row = rows.first else { throw CatalogError.noVersion(spec.job, spec.version) }
            guard row[0].int == first.offset else { throw StaleOffsetError(partition: partition, stored: row[0].int, batchStart: first.offset) }
            guard let state = VersionState(rawValue: row[1].string), state.isRunning || state == .pending else {
                throw VersionStoppedError(job: spec.job, version: spec.version, state: row[1].string)
            }
            if let fence {
                // FOR SHARE: a takeover (an UPDATE of this row) waits for this batch, or this batch sees it.
                let lease = try db.query("SELECT owner, epoch FROM \(schema).kappa_leases WHERE job = $1 AND version = $2 AND partition = $3 FOR SHARE",
                                         [.text(spec.job), .integer(Int64(spec.version)), .integer(Int64(partition))], name: "check lease").rows.first
                guard let lease, lease[0].string == fence.owner, lease[1].int == fence.epoch else {
                    throw LeaseLostError(key: fence.key, owner: fence.owner, epoch: fence.epoch)
                }
            }
            try prepareBatchTable(for: role(spec))
            let sink = PostgresBatchSink(catalog: self)
            let dead = try BadRecords.apply(records, spec: spec, partition: partition,
                attempt: { range in
                    try db.execute("SAVEPOINT kappa_batch", name: "savepoint")
                    do {
                        try job.apply(records, range: range, to: sink)
                        try db.execute("RELEASE SAVEPOINT kappa_batch", name: "savepoint")
                    } catch {
                        try db.execute("ROLLBACK TO SAVEPOINT kappa_batch; RELEASE SAVEPOINT kappa_batch", name: "savepoint")
                        throw error
                    }
                },
                dataError: { ($0 as? PostgresError).flatMap { $0.isDataError ? $0.message : nil } },
                deadLetter: { record, message in
                    try db.query("INSERT INTO \(table(spec.deadLetterTable)) (partition, \"offset\", timestamp, key, value, error) VALUES ($1, $2, $3, $4, $5, $6)",
                                 BadRecords.row(record, partition: partition, error: message), name: "dead letter")
                })
            try db.query("UPDATE \(schema).kappa_offsets SET next_offset = $1 WHERE job = $2 AND version = $3 AND partition = $4",
                         [.integer(records.nextOffset), .text(spec.job), .integer(Int64(spec.version)), .integer(Int64(partition))], name: "store offset")
            return BatchResult(partition: partition, records: records.count, deadLettered: dead, nextOffset: records.nextOffset)
        }
    }
}

/// The sink a job writes through on PostgreSQL, inside the batch transaction.
struct PostgresBatchSink: BatchSink {
    let catalog: PostgresCatalog

    func loadBatch(_ records: LogRecords, range: Range<Int>) throws {
        let db = catalog.db
        try db.execute("DELETE FROM pg_temp.batch", name: "clear batch")
        for chunk in stride(from: range.lowerBound, to: range.upperBound, by: 500) {
            let slice = chunk..<min(chunk + 500, range.upperBound)
            var values: [SQLValue] = []
            var rows: [String] = []
            for (n, i) in slice.enumerated() {
                let r = records[i]
                let p = n * 5
                rows.append("($\(p + 1), $\(p + 2), $\(p + 3), $\(p + 4), $\(p + 5)::jsonb)")
                values += [.integer(Int64(r.partition)), .integer(r.offset), .integer(r.timestamp),
                           r.key.map { .text(String(decoding: $0, as: UTF8.self)) } ?? .null, .text(String(decoding: r.value, as: UTF8.self))]
            }
            try db.query("INSERT INTO pg_temp.batch VALUES " + rows.joined(separator: ", "), values, name: "load batch")
        }
    }

    func runJobSQL(_ job: SQLJob) throws {
        let db = catalog.db
        let role = SQLText.quote(catalog.role(job.spec))
        try db.execute("SET LOCAL ROLE \(role); SET LOCAL search_path = \(catalog.schema)", name: "job role")
        defer { try? db.execute("RESET ROLE; SET LOCAL search_path = DEFAULT", name: "job role") }
        do {
            try db.execute(job.statements, name: "job \(job.spec.job) v\(job.spec.version) SQL")
        } catch let error as PostgresError where !error.isDataError {
            throw JobFailure(job: job.spec.job, version: job.spec.version, message: "transform.sql: \(error.message)")
        }
    }

    func write(_ operations: [RowOperation], spec: JobSpec) throws {
        for operation in operations {
            let (sql, values) = operation.statement(table: catalog.table(spec.versionTable), key: spec.output.primaryKey) { "$\($0 + 1)" }
            try catalog.db.query(sql, values, name: "exec operation")
        }
    }
}

extension PostgresError {
    /// Errors a record's content can cause (SQLSTATE classes 22 data exception and 23 integrity
    /// constraint violation): candidates for `onBadRecord`. Others are never blamed on a record.
    var isDataError: Bool {
        guard let state = sqlState else { return false }
        return state.hasPrefix("22") || state.hasPrefix("23")
    }
}
#endif
