/// The catalog's tables and their migrations. Each release appends migrations and never edits
/// one that shipped; the database records how many it has applied (`PRAGMA user_version` on
/// SQLite), so an older Kappa refuses a catalog written by a newer one instead of misreading it.
enum CatalogSchema {
    /// Migration N (1-based) brings the schema from version N-1 to N.
    static let migrations: [String] = [
        """
        CREATE TABLE kappa_jobs (
            name TEXT PRIMARY KEY,
            view TEXT NOT NULL UNIQUE,
            topic TEXT NOT NULL,
            created_at INTEGER NOT NULL
        );
        CREATE TABLE kappa_versions (
            job TEXT NOT NULL REFERENCES kappa_jobs(name),
            version INTEGER NOT NULL,
            state TEXT NOT NULL,
            manifest TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            error TEXT,
            PRIMARY KEY (job, version)
        );
        CREATE TABLE kappa_offsets (
            job TEXT NOT NULL,
            version INTEGER NOT NULL,
            partition INTEGER NOT NULL,
            next_offset INTEGER NOT NULL,
            PRIMARY KEY (job, version, partition),
            FOREIGN KEY (job, version) REFERENCES kappa_versions(job, version)
        );
        CREATE TABLE kappa_leases (
            job TEXT NOT NULL,
            version INTEGER NOT NULL,
            partition INTEGER NOT NULL,
            owner TEXT,
            epoch INTEGER NOT NULL DEFAULT 0,
            expires_at INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (job, version, partition)
        );
        CREATE TABLE kappa_history (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            job TEXT NOT NULL,
            version INTEGER NOT NULL,
            at INTEGER NOT NULL,
            from_state TEXT,
            to_state TEXT NOT NULL,
            reason TEXT NOT NULL,
            actor TEXT NOT NULL
        );
        CREATE INDEX kappa_history_job ON kappa_history(job, id);
        """,
        // 2: lag samples written by the controller (for status, rates and ETAs in any process)
        // and the heartbeat of JobHosts.
        """
        CREATE TABLE kappa_lag_samples (
            job TEXT NOT NULL,
            version INTEGER NOT NULL,
            at INTEGER NOT NULL,
            ends TEXT NOT NULL,
            nexts TEXT NOT NULL,
            PRIMARY KEY (job, version, at)
        );
        CREATE TABLE kappa_hosts (
            owner TEXT PRIMARY KEY,
            pid INTEGER NOT NULL,
            started_at INTEGER NOT NULL,
            heartbeat_at INTEGER NOT NULL
        );
        """,
    ]

    static var currentVersion: Int { migrations.count }

    /// Applies the migrations this database lacks, each in its own transaction. The version is
    /// read again under the write lock, so processes opening a new catalog at once (kappactl
    /// and JobHost) never apply a migration twice.
    /// - Throws: `CatalogError.newerSchema` for a catalog from a newer Kappa.
    static func migrate(_ db: SQLiteConnection) throws {
        func applied() throws -> Int {
            Int(try db.query("PRAGMA user_version", name: "catalog: schema version").first.flatMap { row -> Int64? in
                if case .integer(let v) = row[0] { return v } else { return nil }
            } ?? 0)
        }
        func refuseNewer(_ version: Int) throws {
            if version > currentVersion {
                throw CatalogError(.newerSchema, "\(db.path) holds a catalog of schema \(version), written by a newer Kappa (this release knows up to \(currentVersion)); upgrade kappactl and JobHost")
            }
        }
        let seen = try applied()
        try refuseNewer(seen)
        guard seen < currentVersion else { return }
        while true {
            let done = try db.transaction("catalog: migration") { () -> Bool in
                let version = try applied()
                try refuseNewer(version)
                guard version < currentVersion else { return true }
                try db.execute(migrations[version], name: "catalog: migration \(version + 1)")
                try db.execute("PRAGMA user_version = \(version + 1)", name: "catalog: migration \(version + 1)")
                return false
            }
            if done { return }
        }
    }
}
