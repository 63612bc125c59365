import CSQLite

extension SQLiteStore {
    /// Applies the catalog actions of one lifecycle decision in one transaction: either all of
    /// them (states, history, the view) or none.
    /// - Throws: `CatalogError` (`.stateConflict` when a version moved meanwhile,
    ///   `.checkFailed` when a promotion check does not hold).
    public func apply(job: String, actions: [CatalogAction], actor: String) async throws {
        try await write { w in
            try w.db.transaction("\(job): apply") {
                try w.apply(actions, job: job, actor: actor)
            }
        }
    }

    /// Records a lag sample (keeping the newest `keep` per version).
    public func recordLag(job: String, version: Int, sample: LagSample, keep: Int = 300) async throws {
        try await write { w in
            let key: [SQLValue] = [.text(job), .integer(Int64(version))]
            try w.db.run("INSERT OR REPLACE INTO kappa_lag_samples (job, version, at, ends, nexts) VALUES (?, ?, ?, ?, ?)",
                         key + [.integer(sample.at), .text(LagSample.text(sample.ends)), .text(LagSample.text(sample.nexts))], name: "record lag")
            try w.db.run("DELETE FROM kappa_lag_samples WHERE job = ? AND version = ? AND at < (SELECT at FROM kappa_lag_samples WHERE job = ? AND version = ? ORDER BY at DESC LIMIT 1 OFFSET ?)",
                         key + key + [.integer(Int64(keep - 1))], name: "trim lag")
        }
    }

    /// The newest lag samples of a version, oldest first.
    public func lagSamples(job: String, version: Int, limit: Int = 60) async throws -> [LagSample] {
        try await write { w in
            try w.db.query("SELECT at, ends, nexts FROM kappa_lag_samples WHERE job = ? AND version = ? ORDER BY at DESC LIMIT ?",
                           [.text(job), .integer(Int64(version)), .integer(Int64(limit))], name: "read lag").reversed().map { row in
                LagSample(at: row[0].int, ends: LagSample.offsets(fromText: row[1].string), nexts: LagSample.offsets(fromText: row[2].string))
            }
        }
    }

    /// Records that a host is alive.
    public func heartbeat(owner: String, pid: Int32, startedAt: Int64) async throws {
        try await write { w in
            try w.db.run("INSERT INTO kappa_hosts (owner, pid, started_at, heartbeat_at) VALUES (?, ?, ?, ?) ON CONFLICT(owner) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, pid = excluded.pid",
                         [.text(owner), .integer(Int64(pid)), .integer(startedAt), .integer(currentTimeMillis())], name: "heartbeat")
        }
    }

    /// Hosts whose heartbeat is newer than `withinMs`.
    public func liveHosts(withinMs: Int64 = 5_000) async throws -> [String] {
        try await write { w in
            try w.db.query("SELECT owner FROM kappa_hosts WHERE heartbeat_at >= ? ORDER BY owner",
                           [.integer(currentTimeMillis() - withinMs)], name: "live hosts").map { $0[0].string }
        }
    }

    /// Removes a host's heartbeat (on a clean shutdown).
    public func removeHost(owner: String) async throws {
        try await write { w in _ = try w.db.run("DELETE FROM kappa_hosts WHERE owner = ?", [.text(owner)], name: "remove host") }
    }

    public func acquireLeases(_ keys: [LeaseKey], owner: String, ttlMs: Int64, limit: Int) async throws -> [Lease] {
        try await write { w in
            var held: [Lease] = []
            for key in keys where held.count < limit {
                let now = currentTimeMillis()
                let k: [SQLValue] = [.text(key.job), .integer(Int64(key.version)), .integer(Int64(key.partition))]
                try w.db.transaction("acquire lease") {
                    _ = try w.db.run("INSERT INTO kappa_leases (job, version, partition) VALUES (?, ?, ?) ON CONFLICT DO NOTHING", k, name: "acquire lease")
                    _ = try w.db.run(LeaseSQL.acquire(placeholder: { "?\($0)" }),
                                     [.text(owner), .integer(now + ttlMs)] + k + [.integer(now)], name: "acquire lease")
                }
                if let lease = try w.leases(where: "job = ? AND version = ? AND partition = ?", k).first, lease.owner == owner, lease.expiresAt > now {
                    held.append(lease)
                }
            }
            return held
        }
    }

    public func renewLeases(owner: String, ttlMs: Int64) async throws -> [Lease] {
        try await write { w in
            _ = try w.db.run("UPDATE kappa_leases SET expires_at = ? WHERE owner = ? AND expires_at > 0",
                             [.integer(currentTimeMillis() + ttlMs), .text(owner)], name: "renew leases")
            return try w.leases(where: "owner = ? AND expires_at > 0", [.text(owner)])
        }
    }

    public func releaseLeases(_ keys: [LeaseKey], owner: String) async throws {
        try await write { w in
            try w.db.transaction("release leases") {
                for key in keys {
                    _ = try w.db.run("UPDATE kappa_leases SET expires_at = 0 WHERE job = ? AND version = ? AND partition = ? AND owner = ?",
                                     [.text(key.job), .integer(Int64(key.version)), .integer(Int64(key.partition)), .text(owner)], name: "release lease")
                }
            }
        }
    }

    public func leases() async throws -> [Lease] {
        try await write { w in try w.leases(where: "owner IS NOT NULL", []) }
    }
}

/// The lease statements both stores share.
enum LeaseSQL {
    /// Takes the lease (owner, expiry, then the key, then now): kept by its owner at the same
    /// epoch, taken from another owner only after expiry, with the next epoch.
    static func acquire(table: String = "kappa_leases", placeholder: (Int) -> String) -> String {
        """
        UPDATE \(table) SET epoch = CASE WHEN owner = \(placeholder(1)) THEN epoch ELSE epoch + 1 END,
            owner = \(placeholder(1)), expires_at = \(placeholder(2))
        WHERE job = \(placeholder(3)) AND version = \(placeholder(4)) AND partition = \(placeholder(5))
            AND (owner IS NULL OR owner = \(placeholder(1)) OR expires_at <= \(placeholder(6)))
        """
    }

    static func lease(_ row: [SQLValue]) -> Lease {
        Lease(key: LeaseKey(job: row[0].string, version: Int(row[1].int), partition: Int(row[2].int)),
              owner: row[3].string, epoch: row[4].int, expiresAt: row[5].int)
    }
}

extension SQLiteWriter {
    func leases(where condition: String, _ values: [SQLValue]) throws -> [Lease] {
        try db.query("SELECT job, version, partition, owner, epoch, expires_at FROM kappa_leases WHERE \(condition) ORDER BY job, version, partition",
                     values, name: "read leases").map(LeaseSQL.lease)
    }
}

extension SQLiteWriter: CatalogActionTarget {
    func servingVersions(job: String) throws -> [Int] {
        try db.query("SELECT version FROM kappa_versions WHERE job = ? AND state = 'serving' ORDER BY version", [.text(job)], name: "serving versions")
            .map { Int($0[0].int) }
    }

    /// Evaluates the new version's `promote.checks`, each a SQL expression over `old` and `new`
    /// (the two versions' tables), under an authorizer that lets them read only those tables.
    func checkPromotion(job: String, old: Int, new: Int) throws {
        guard let version = try versions(job: job).first(where: { $0.version == new }) else {
            throw CatalogError(.versionNotFound, "job \"\(job)\" has no version \(new)")
        }
        let view = version.spec.output.table
        let oldTable = "\(view)__v\(old)", newTable = "\(view)__v\(new)"
        db.setAuthorizer { request in
            switch request.action {
            case SQLITE_SELECT, SQLITE_FUNCTION, SQLITE_RECURSIVE: return nil
            case SQLITE_READ where [oldTable.lowercased(), newTable.lowercased(), ""].contains(request.first?.lowercased() ?? ""): return nil
            default: return "a promotion check may only read old and new"
            }
        }
        defer { db.setAuthorizer(nil) }
        for check in version.spec.promote.checks {
            var sql = SQLText.replacingTable("old", with: SQLText.quote(oldTable), in: check)
            sql = SQLText.replacingTable("new", with: SQLText.quote(newTable), in: sql)
            let result: [[SQLValue]]
            do {
                result = try db.query("SELECT CASE WHEN (\(sql)) THEN 1 ELSE 0 END", name: "promote check")
            } catch let error as SQLiteError {
                throw CatalogError(.checkFailed, "promotion refused: the check \(check) cannot run: \(db.takeDenial() ?? error.message)")
            }
            guard result.first?.first == .integer(1) else {
                throw CatalogError(.checkFailed, "promotion refused: the check \(check) does not hold (old = version \(old), new = version \(new)); --force overrides")
            }
        }
    }
}
