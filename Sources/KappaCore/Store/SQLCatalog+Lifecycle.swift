extension SQLCatalog {
    /// Registers a version in one transaction: the job row, the version row, its tables and
    /// objects, its start offsets, the deploy-time check of its SQL, and a history entry.
    func register(_ spec: JobSpec, manifest: String, startOffsets: [Int64], sourceIncarnation: String?, actor: String, reason: String) throws -> VersionRecord {
        try transaction("register \(spec.job) v\(spec.version)") { c in
            try backend.lockJob(c, spec.job)
            let now = currentTimeMillis()
            let view = spec.output.table
            if let existing = try self.view(c, of: spec.job) {
                guard existing == view else { throw CatalogError.conflictingView(job: spec.job, serves: existing, asked: view) }
            } else {
                if let other = try c.query("SELECT name FROM \(t("kappa_jobs")) WHERE lower(view) = lower(\(p(1)))", [.text(view)], name: "find view owner").first {
                    throw CatalogError.viewTaken(view, by: try CatalogRow(other, table: "kappa_jobs", columns: ["name"]).text(0))
                }
                if try backend.relationExists(c, view) {
                    throw CatalogError(.conflictingOutput, "a table or view named \"\(view)\" already exists in \(backend.displayName); choose another output.table")
                }
                try c.run("INSERT INTO \(t("kappa_jobs")) (name, view, topic, created_at) VALUES (\(d.placeholders(4)))",
                          [.text(spec.job), .text(view), .text(spec.source.topic), .integer(now)], name: "insert job")
            }
            let latest = try c.query("SELECT max(version) FROM \(t("kappa_versions")) WHERE job = \(p(1))", [.text(spec.job)], name: "latest version")
            if let max = try latest.first.flatMap({ try CatalogRow($0, table: "kappa_versions", columns: ["max(version)"]).optionalInt(0) }),
               Int64(spec.version) <= max {
                throw CatalogError.notAbove(spec, latest: max)
            }
            for name in [spec.versionTable, spec.deadLetterTable] where try backend.relationExists(c, name) {
                throw CatalogError(.conflictingOutput, "a table named \"\(name)\" already exists in \(backend.displayName)")
            }
            try c.run("INSERT INTO \(t("kappa_versions")) (job, version, state, manifest, created_at, updated_at, source_incarnation) VALUES (\(p(1)), \(p(2)), 'pending', \(p(3)), \(p(4)), \(p(4)), \(p(5)))",
                      [.text(spec.job), .integer(Int64(spec.version)), .text(manifest), .integer(now), sourceIncarnation.map { .text($0) } ?? .null],
                      name: "insert version")
            let columns = spec.output.columns.map { "\(SQLText.quote($0.name)) \(d.columnType($0.type))" }
            let key = spec.output.primaryKey.map(SQLText.quote).joined(separator: ", ")
            try c.execute("CREATE TABLE \(t(spec.versionTable)) (\(columns.joined(separator: ", ")), PRIMARY KEY (\(key)))\(d.keyedTableSuffix)",
                          name: "create version table")
            try c.execute("""
                CREATE TABLE \(t(spec.deadLetterTable)) (partition INTEGER NOT NULL, "offset" \(d.bigint) NOT NULL, timestamp \(d.bigint),
                    key \(d.blob), value \(d.blob), error TEXT NOT NULL, PRIMARY KEY (partition, "offset"))\(d.keyedTableSuffix)
                """, name: "create dead-letter table")
            try backend.createVersionObjects(c, spec)
            for (partition, offset) in startOffsets.enumerated() {
                try c.run("INSERT INTO \(t("kappa_offsets")) (job, version, partition, next_offset, start_offset) VALUES (\(d.placeholders(5)))",
                          [.text(spec.job), .integer(Int64(spec.version)), .integer(Int64(partition)), .integer(offset), .integer(offset)], name: "insert offsets")
            }
            if case .sql = spec.transform {
                try backend.checkJobSQL(c, spec, statements: SQLJob(spec: spec).statements)
            }
            try checkPromotionChecks(c, spec, latest: latest.first.flatMap { try CatalogRow($0, table: "kappa_versions", columns: ["max(version)"]).optionalInt(0) })
            try appendHistory(c, job: spec.job, version: spec.version, from: nil, to: .pending, reason: reason, actor: actor, at: now)
            return VersionRecord(job: spec.job, version: spec.version, state: .pending, manifest: manifest, spec: spec,
                                 createdAt: now, updatedAt: now, error: nil, sourceIncarnation: sourceIncarnation)
        }
    }

    /// Applies one lifecycle decision's actions in one transaction (all or nothing: states,
    /// history, the view), then checks that at most one version serves.
    func apply(job: String, actions: [CatalogAction], actor: String) throws {
        try transaction("\(job): apply") { c in
            try backend.lockJob(c, job)
            try CatalogActions(catalog: self, c: c).apply(actions, job: job, actor: actor)
        }
    }

    /// Points the job's reader view at `version`'s table; the caller holds a transaction.
    func pointView(_ c: any SQLConnection, job: String, to version: Int) throws {
        guard let view = try view(c, of: job) else { throw CatalogError(.jobNotFound, "job \"\(job)\" does not exist") }
        let table = JobSpec.versionTable(view: view, version: version)
        guard try backend.relationExists(c, table) else {
            throw CatalogError(.versionNotFound, "job \"\(job)\" has no table for version \(version)")
        }
        try c.execute("DROP VIEW IF EXISTS \(t(view)); CREATE VIEW \(t(view)) AS SELECT * FROM \(t(table))", name: "point view \(view) at v\(version)")
    }

    /// Drops a version's tables, offsets, leases and objects; the caller holds a transaction.
    func dropVersion(_ c: any SQLConnection, job: String, version: Int) throws {
        guard let view = try view(c, of: job) else { throw CatalogError(.jobNotFound, "job \"\(job)\" does not exist") }
        let table = JobSpec.versionTable(view: view, version: version)
        if try backend.viewReads(c, view: view, table: table) {
            throw CatalogError(.stateConflict, "version \(version) of job \"\(job)\" backs the view \"\(view)\"; switch the view first")
        }
        try c.execute("DROP TABLE IF EXISTS \(t(table)); DROP TABLE IF EXISTS \(t(JobSpec.deadLetterTable(versionTable: table)))", name: "drop version tables")
        let key: [SQLValue] = [.text(job), .integer(Int64(version))]
        try c.run("DELETE FROM \(t("kappa_offsets")) WHERE job = \(p(1)) AND version = \(p(2))", key, name: "drop offsets")
        try c.run("DELETE FROM \(t("kappa_leases")) WHERE job = \(p(1)) AND version = \(p(2))", key, name: "drop leases")
        try backend.dropVersionObjects(c, job: job, version: version)
        backend.forget(job: job, version: version)
    }

    /// Evaluates the new version's `promote.checks`, each a SQL expression over `old` and `new`,
    /// allowed to read only those two tables.
    func checkPromotion(_ c: any SQLConnection, job: String, old: Int, new: Int) throws {
        guard let version = try versions(c, job: job).first(where: { $0.version == new }) else { throw CatalogError.noVersion(job, new) }
        let view = version.spec.output.table
        let oldTable = JobSpec.versionTable(view: view, version: old), newTable = JobSpec.versionTable(view: view, version: new)
        for check in version.spec.promote.checks {
            let holds: Bool
            do {
                holds = try backend.evaluateCheck(c, checkSQL(check, old: oldTable, new: newTable), readable: [oldTable, newTable],
                                                  limitMs: Self.promoteCheckLimitMs)
            } catch let error as CatalogError {
                throw error
            } catch let limit as CheckTimeLimit {
                throw CatalogError(.checkFailed, "promotion refused: the check \(check) \(limit)")
            } catch let error as any ClassifiedStoreError where error.storeClass != .unreachable {
                throw CatalogError(.checkFailed, "promotion refused: the check \(check) cannot run: \(error.message)")
            }
            guard holds else {
                throw CatalogError(.checkFailed, "promotion refused: the check \(check) does not hold (old = version \(old), new = version \(new)); --force overrides")
            }
        }
    }

    /// A promotion check as it runs: `SELECT CASE WHEN (<check>) THEN 1 ELSE 0 END`, with `old`
    /// and `new` bound to the two versions' tables.
    func checkSQL(_ check: String, old: String, new: String) -> String {
        let sql = SQLText.replacingTable("new", with: t(new), in: SQLText.replacingTable("old", with: t(old), in: check))
        return "SELECT CASE WHEN (\(sql)) THEN 1 ELSE 0 END"
    }

    /// Compiles each of `promote.checks` at deploy, where the store can without running it
    /// (SQLite): `new` is the version's table, `old` the latest earlier version's while it
    /// exists (the one a promotion usually replaces), else the new table again.
    private func checkPromotionChecks(_ c: any SQLConnection, _ spec: JobSpec, latest: Int64?) throws {
        guard !spec.promote.checks.isEmpty || spec.promote.analysis != nil else { return }
        var old = spec.versionTable
        if let latest, case let table = JobSpec.versionTable(view: spec.output.table, version: Int(latest)), try backend.relationExists(c, table) {
            old = table
        }
        for (i, check) in spec.promote.checks.enumerated() {
            do {
                try backend.checkPromotionCheck(c, checkSQL(check, old: old, new: spec.versionTable), readable: [old, spec.versionTable])
            } catch let error as any ClassifiedStoreError where error.storeClass != .unreachable {
                throw CatalogError(.invalidJob, "promote.checks[\(i)]: \(error.message)")
            }
        }
        try checkAnalysisChecks(c, spec, old: old)
    }

    func servingVersions(_ c: any SQLConnection, job: String) throws -> [Int] {
        try c.query("SELECT version FROM \(t("kappa_versions")) WHERE job = \(p(1)) AND state = 'serving' ORDER BY version", [.text(job)], name: "serving versions")
            .map { Int(try CatalogRow($0, table: "kappa_versions", columns: ["version"]).int(0)) }
    }
}

/// The catalog changes of one decision, inside its transaction.
struct CatalogActions: CatalogActionTarget {
    let catalog: SQLCatalog
    let c: any SQLConnection

    func transition(job: String, version: Int, from: VersionState, to: VersionState, reason: String, actor: String, error: String?) throws {
        try catalog.transition(c, job: job, version: version, from: from, to: to, reason: reason, actor: actor, error: error)
    }
    func pointView(job: String, to version: Int) throws { try catalog.pointView(c, job: job, to: version) }
    func dropVersion(job: String, version: Int) throws { try catalog.dropVersion(c, job: job, version: version) }
    func checkPromotion(job: String, old: Int, new: Int) throws { try catalog.checkPromotion(c, job: job, old: old, new: new) }
    func startBake(job: String, version: Int, previous: Int?) throws { try catalog.startBake(c, job: job, version: version, previous: previous) }
    func endBake(job: String, version: Int, outcome: String, reason: String, actor: String) throws {
        try catalog.endBake(c, job: job, version: version, outcome: outcome, reason: reason, actor: actor)
    }
    func servingVersions(job: String) throws -> [Int] { try catalog.servingVersions(c, job: job) }
}
