#if Postgres
extension PostgresCatalog: CatalogActionTarget {
    /// Applies one lifecycle decision's actions in one transaction (transactional DDL: the view
    /// switch and the states commit together; readers see the old view or the new one).
    func apply(job: String, actions: [CatalogAction], actor: String) throws {
        try db.transaction("\(job): apply") {
            try db.query("SELECT pg_advisory_xact_lock(hashtext($1))", [.text("kappa job \(job)")], name: "lock job")
            try apply(actions, job: job, actor: actor)
        }
    }

    func servingVersions(job: String) throws -> [Int] {
        try db.query("SELECT version FROM \(schema).kappa_versions WHERE job = $1 AND state = 'serving' ORDER BY version", [.text(job)],
                     name: "serving versions").rows.map { Int($0[0].int) }
    }

    func view(of job: String) throws -> String {
        guard let row = try db.query("SELECT view FROM \(schema).kappa_jobs WHERE name = $1", [.text(job)], name: "read job").rows.first else {
            throw CatalogError(.jobNotFound, "job \"\(job)\" does not exist")
        }
        return row[0].string
    }

    /// `DROP VIEW` + `CREATE VIEW`; the caller holds a transaction.
    func pointView(job: String, to version: Int) throws {
        let view = try view(of: job)
        let versionTable = "\(view)__v\(version)"
        guard try relationExists(versionTable) else { throw CatalogError(.versionNotFound, "job \"\(job)\" has no table for version \(version)") }
        try db.execute("DROP VIEW IF EXISTS \(table(view)); CREATE VIEW \(table(view)) AS SELECT * FROM \(table(versionTable))",
                       name: "point view \(view) at v\(version)")
    }

    /// Drops a version's tables and offsets; the caller holds a transaction.
    func dropVersion(job: String, version: Int) throws {
        let view = try view(of: job)
        let versionTable = "\(view)__v\(version)"
        let backing = try db.query("""
            SELECT 1 FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class
            JOIN pg_class t ON t.oid = d.refobjid JOIN pg_namespace n ON n.oid = t.relnamespace
            WHERE n.nspname = $1 AND v.relname = $2 AND t.relname = $3
            """, [.text(schema), .text(view), .text(versionTable)], name: "find view dependency").rows
        if !backing.isEmpty {
            throw CatalogError(.stateConflict, "version \(version) of job \"\(job)\" backs the view \"\(view)\"; switch the view first")
        }
        try db.execute("DROP TABLE IF EXISTS \(table(versionTable)); DROP TABLE IF EXISTS \(table(versionTable + "__dead"))", name: "drop version tables")
        let key: [SQLValue] = [.text(job), .integer(Int64(version))]
        try db.query("DELETE FROM \(schema).kappa_offsets WHERE job = $1 AND version = $2", key, name: "drop offsets")
        try db.query("DELETE FROM \(schema).kappa_leases WHERE job = $1 AND version = $2", key, name: "drop leases")
        // The version's role goes too, unless another session still holds a grant to it (its
        // temporary batch table): then it stays, without rights on anything of Kappa's.
        let role = SQLText.quote(self.role(job: job, version: version))
        try db.execute("SAVEPOINT kappa_role", name: "drop role")
        do {
            try db.execute("REVOKE ALL ON SCHEMA \(schema) FROM \(role); DROP ROLE IF EXISTS \(role)", name: "drop role")
            try db.execute("RELEASE SAVEPOINT kappa_role", name: "drop role")
        } catch {
            try db.execute("ROLLBACK TO SAVEPOINT kappa_role; RELEASE SAVEPOINT kappa_role", name: "drop role")
        }
    }

    /// Evaluates `promote.checks` over `old` and `new` inside the caller's transaction, in a
    /// read-only subtransaction so that a check cannot change anything.
    func checkPromotion(job: String, old: Int, new: Int) throws {
        guard let version = try versions(job: job).first(where: { $0.version == new }) else { throw CatalogError.noVersion(job, new) }
        let view = version.spec.output.table
        for check in version.spec.promote.checks {
            var sql = SQLText.replacingTable("old", with: table("\(view)__v\(old)"), in: check)
            sql = SQLText.replacingTable("new", with: table("\(view)__v\(new)"), in: sql)
            let holds: Bool
            do {
                try db.execute("SAVEPOINT kappa_check", name: "promote check")
                defer { try? db.execute("ROLLBACK TO SAVEPOINT kappa_check", name: "promote check") }
                holds = try db.query("SELECT CASE WHEN (\(sql)) THEN 1 ELSE 0 END", name: "promote check").rows.first?.first == .integer(1)
            } catch let error as PostgresError {
                throw CatalogError(.checkFailed, "promotion refused: the check \(check) cannot run: \(error.message)")
            }
            guard holds else {
                throw CatalogError(.checkFailed, "promotion refused: the check \(check) does not hold (old = version \(old), new = version \(new)); --force overrides")
            }
        }
    }

    func recordLag(job: String, version: Int, sample: LagSample, keep: Int) throws {
        let key: [SQLValue] = [.text(job), .integer(Int64(version))]
        try db.query("""
            INSERT INTO \(schema).kappa_lag_samples (job, version, at, ends, nexts) VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (job, version, at) DO UPDATE SET ends = excluded.ends, nexts = excluded.nexts
            """, key + [.integer(sample.at), .text(LagSample.text(sample.ends)), .text(LagSample.text(sample.nexts))], name: "record lag")
        try db.query("""
            DELETE FROM \(schema).kappa_lag_samples WHERE job = $1 AND version = $2 AND at < (
                SELECT at FROM \(schema).kappa_lag_samples WHERE job = $1 AND version = $2 ORDER BY at DESC LIMIT 1 OFFSET $3)
            """, key + [.integer(Int64(keep - 1))], name: "trim lag")
    }

    func lagSamples(job: String, version: Int, limit: Int) throws -> [LagSample] {
        try db.query("SELECT at, ends, nexts FROM \(schema).kappa_lag_samples WHERE job = $1 AND version = $2 ORDER BY at DESC LIMIT $3",
                     [.text(job), .integer(Int64(version)), .integer(Int64(limit))], name: "read lag").rows.reversed().map { row in
            LagSample(at: row[0].int, ends: LagSample.offsets(fromText: row[1].string), nexts: LagSample.offsets(fromText: row[2].string))
        }
    }

    func heartbeat(owner: String, pid: Int32, startedAt: Int64) throws {
        try db.query("""
            INSERT INTO \(schema).kappa_hosts (owner, pid, started_at, heartbeat_at) VALUES ($1, $2, $3, $4)
            ON CONFLICT (owner) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, pid = excluded.pid
            """, [.text(owner), .integer(Int64(pid)), .integer(startedAt), .integer(currentTimeMillis())], name: "heartbeat")
    }

    func liveHosts(withinMs: Int64) throws -> [String] {
        try db.query("SELECT owner FROM \(schema).kappa_hosts WHERE heartbeat_at >= $1 ORDER BY owner",
                     [.integer(currentTimeMillis() - withinMs)], name: "live hosts").rows.map { $0[0].string }
    }

    func removeHost(owner: String) throws {
        try db.query("DELETE FROM \(schema).kappa_hosts WHERE owner = $1", [.text(owner)], name: "remove host")
    }

    func acquireLeases(_ keys: [LeaseKey], owner: String, ttlMs: Int64, limit: Int) throws -> [Lease] {
        var held: [Lease] = []
        for key in keys where held.count < limit {
            let now = currentTimeMillis()
            let k: [SQLValue] = [.text(key.job), .integer(Int64(key.version)), .integer(Int64(key.partition))]
            try db.transaction("acquire lease") {
                try db.query("INSERT INTO \(schema).kappa_leases (job, version, partition) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING", k, name: "acquire lease")
                try db.query(LeaseSQL.acquire(table: "\(schema).kappa_leases", placeholder: { "$\($0)" }),
                             [.text(owner), .integer(now + ttlMs)] + k + [.integer(now)], name: "acquire lease")
            }
            if let lease = try leases(where: "job = $1 AND version = $2 AND partition = $3", k).first, lease.owner == owner, lease.expiresAt > now {
                held.append(lease)
            }
        }
        return held
    }

    func renewLeases(owner: String, ttlMs: Int64) throws -> [Lease] {
        try db.query("UPDATE \(schema).kappa_leases SET expires_at = $1 WHERE owner = $2 AND expires_at > 0",
                     [.integer(currentTimeMillis() + ttlMs), .text(owner)], name: "renew leases")
        return try leases(where: "owner = $1 AND expires_at > 0", [.text(owner)])
    }

    func releaseLeases(_ keys: [LeaseKey], owner: String) throws {
        try db.transaction("release leases") {
            for key in keys {
                try db.query("UPDATE \(schema).kappa_leases SET expires_at = 0 WHERE job = $1 AND version = $2 AND partition = $3 AND owner = $4",
                             [.text(key.job), .integer(Int64(key.version)), .integer(Int64(key.partition)), .text(owner)], name: "release lease")
            }
        }
    }

    func leases(where condition: String, _ values: [SQLValue]) throws -> [Lease] {
        try db.query("SELECT job, version, partition, owner, epoch, expires_at FROM \(schema).kappa_leases WHERE \(condition) ORDER BY job, version, partition",
                     values, name: "read leases").rows.map(LeaseSQL.lease)
    }
}
#endif
