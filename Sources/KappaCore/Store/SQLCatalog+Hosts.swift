import Foundation

extension SQLCatalog {
    // MARK: Lag samples

    /// Records a lag sample, keeping the newest `keep` of the version.
    func recordLag(job: String, version: Int, sample: LagSample, keep: Int) throws {
        try transaction("record lag") { c in
            try c.run("""
                INSERT INTO \(t("kappa_lag_samples")) (job, version, at, ends, nexts) VALUES (\(d.placeholders(5)))
                ON CONFLICT (job, version, at) DO UPDATE SET ends = excluded.ends, nexts = excluded.nexts
                """, [.text(job), .integer(Int64(version)), .integer(sample.at), .text(LagSample.text(sample.ends)), .text(LagSample.text(sample.nexts))],
                name: "record lag")
            try c.run("""
                DELETE FROM \(t("kappa_lag_samples")) WHERE job = \(p(1)) AND version = \(p(2)) AND at < (
                    SELECT at FROM \(t("kappa_lag_samples")) WHERE job = \(p(1)) AND version = \(p(2)) ORDER BY at DESC LIMIT 1 OFFSET \(p(3)))
                """, [.text(job), .integer(Int64(version)), .integer(Int64(keep - 1))], name: "trim lag")
        }
    }

    /// The newest `limit` lag samples of a version, oldest first.
    func lagSamples(_ c: any SQLConnection, job: String, version: Int, limit: Int) throws -> [LagSample] {
        try c.query("SELECT job, version, at, ends, nexts FROM \(t("kappa_lag_samples")) WHERE job = \(p(1)) AND version = \(p(2)) ORDER BY at DESC LIMIT \(p(3))",
                               [.text(job), .integer(Int64(version)), .integer(Int64(limit))], name: "read lag").reversed().map { try lagSample($0).1 }
    }

    /// A row `job, version, at, ends, nexts`.
    private func lagSample(_ values: [SQLValue]) throws -> (VersionID, LagSample) {
        var row = CatalogRow(values, table: "kappa_lag_samples", columns: ["job", "version", "at", "ends", "nexts"])
        let id = VersionID(job: try row.text(0), version: Int(try row.int(1)))
        row.context = "job \(id.job) v\(id.version)"
        let at = try row.int(2)
        func offsets(_ i: Int, _ column: String) throws -> [Int64] {
            guard let list = LagSample.offsets(fromText: try row.text(i)) else {
                throw CatalogError(.damagedCatalog, "catalog table kappa_lag_samples, column \(column) (\(row.context), sample at \(at)) is not a list of offsets")
            }
            return list
        }
        return (id, LagSample(at: at, ends: try offsets(3, "ends"), nexts: try offsets(4, "nexts")))
    }

    // MARK: Hosts

    func heartbeat(owner: String, pid: Int32, startedAt: Int64, problems: [HostProblem]) throws {
        let text: SQLValue = problems.isEmpty ? .null : .text(String(decoding: try JSONEncoder().encode(problems), as: UTF8.self))
        try connection().run("""
            INSERT INTO \(t("kappa_hosts")) (owner, pid, started_at, heartbeat_at, problems) VALUES (\(d.placeholders(5)))
            ON CONFLICT (owner) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, pid = excluded.pid, problems = excluded.problems
            """, [.text(owner), .integer(Int64(pid)), .integer(startedAt), .integer(currentTimeMillis()), text], name: "heartbeat")
    }

    /// The problems the live hosts wrote with their last heartbeat, each with its host.
    func hostProblems(_ c: any SQLConnection, withinMs: Int64) throws -> [HostProblem] {
        var out: [HostProblem] = []
        for values in try c.query("SELECT owner, problems FROM \(t("kappa_hosts")) WHERE heartbeat_at >= \(p(1)) AND problems IS NOT NULL ORDER BY owner",
                                  [.integer(currentTimeMillis() - withinMs)], name: "host problems") {
            let row = CatalogRow(values, table: "kappa_hosts", columns: ["owner", "problems"])
            let owner = try row.text(0)
            guard let problems = try? JSONDecoder().decode([HostProblem].self, from: Data(try row.text(1).utf8)) else {
                throw CatalogError(.damagedCatalog, "catalog table kappa_hosts, column problems (host \(owner)) is not a list of problems")
            }
            out += problems.map { var p = $0; p.host = owner; return p }
        }
        return out
    }

    func liveHosts(_ c: any SQLConnection, withinMs: Int64) throws -> [String] {
        try c.query("SELECT owner FROM \(t("kappa_hosts")) WHERE heartbeat_at >= \(p(1)) ORDER BY owner",
                               [.integer(currentTimeMillis() - withinMs)], name: "live hosts").map {
            try CatalogRow($0, table: "kappa_hosts", columns: ["owner"]).text(0)
        }
    }

    func removeHost(owner: String) throws {
        try connection().run("DELETE FROM \(t("kappa_hosts")) WHERE owner = \(p(1))", [.text(owner)], name: "remove host")
    }

    // MARK: Leases

    /// Takes, in order, each lease of `keys` that is free, expired or already `owner`'s, until
    /// `owner` holds `limit`; one taken from another owner gets the next epoch. One transaction each.
    func acquireLeases(_ keys: [LeaseKey], owner: String, ttlMs: Int64, limit: Int) throws -> [Lease] {
        var held: [Lease] = []
        var rest = keys[...]
        // Up to 256 keys per transaction: one commit (an fsync) per key made taking the leases
        // of a 10,000-partition version take 20 s; each key is still taken on its own terms.
        while !rest.isEmpty && held.count < limit {
            let chunk = rest.prefix(min(256, limit - held.count))
            rest = rest.dropFirst(chunk.count)
            let now = currentTimeMillis()
            let taken = try transaction("acquire leases") { c -> [Lease] in
                var taken: [Lease] = []
                for key in chunk {
                    let k: [SQLValue] = [.text(key.job), .integer(Int64(key.version)), .integer(Int64(key.partition))]
                    try c.run("INSERT INTO \(t("kappa_leases")) (job, version, partition) VALUES (\(d.placeholders(3))) ON CONFLICT DO NOTHING", k, name: "acquire lease")
                    // Kept by its owner at the same epoch, taken from another owner only after expiry, with the next epoch.
                    try c.run("""
                        UPDATE \(t("kappa_leases")) SET epoch = CASE WHEN owner = \(p(1)) THEN epoch ELSE epoch + 1 END,
                            owner = \(p(1)), expires_at = \(p(2))
                        WHERE job = \(p(3)) AND version = \(p(4)) AND partition = \(p(5))
                            AND (owner IS NULL OR owner = \(p(1)) OR expires_at <= \(p(6)))
                        """, [.text(owner), .integer(now + ttlMs)] + k + [.integer(now)], name: "acquire lease")
                    if let lease = try leases(c, where: "job = \(p(1)) AND version = \(p(2)) AND partition = \(p(3))", k).first,
                       lease.owner == owner, lease.expiresAt > now {
                        taken.append(lease)
                    }
                }
                return taken
            }
            held += taken
        }
        return held
    }

    /// Extends every lease `owner` still holds; returns them.
    func renewLeases(owner: String, ttlMs: Int64) throws -> [Lease] {
        try transaction("renew leases") { c in
            try c.run("UPDATE \(t("kappa_leases")) SET expires_at = \(p(1)) WHERE owner = \(p(2)) AND expires_at > 0",
                      [.integer(currentTimeMillis() + ttlMs), .text(owner)], name: "renew leases")
            return try leases(c, where: "owner = \(p(1)) AND expires_at > 0", [.text(owner)])
        }
    }

    /// Lets go of leases: they expire at once, and the next owner gets the next epoch.
    func releaseLeases(_ keys: [LeaseKey], owner: String) throws {
        try transaction("release leases") { c in
            for key in keys {
                try c.run("UPDATE \(t("kappa_leases")) SET expires_at = 0 WHERE job = \(p(1)) AND version = \(p(2)) AND partition = \(p(3)) AND owner = \(p(4))",
                          [.text(key.job), .integer(Int64(key.version)), .integer(Int64(key.partition)), .text(owner)], name: "release lease")
            }
        }
    }

    /// Every lease that has had an owner.
    func allLeases() throws -> [Lease] {
        try leases(connection(), where: "owner IS NOT NULL", [])
    }

    func leases(_ c: any SQLConnection, where condition: String, _ values: [SQLValue]) throws -> [Lease] {
        try c.query("SELECT \(Self.leaseColumns.joined(separator: ", ")) FROM \(t("kappa_leases")) WHERE \(condition) ORDER BY job, version, partition",
                    values, name: "read leases").map(lease)
    }
}
