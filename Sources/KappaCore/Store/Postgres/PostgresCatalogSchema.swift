#if Postgres
/// The catalog's tables on PostgreSQL, in Kappa's schema. Same tables and meaning as
/// `CatalogSchema` (SQLite); the version applied is kept in `kappa_schema`, and migrations take
/// an advisory lock so that hosts starting together never apply one twice.
enum PostgresCatalogSchema {
    static func migrations(_ s: String) -> [String] {
        [
            """
            CREATE TABLE \(s).kappa_jobs (
                name TEXT PRIMARY KEY, view TEXT NOT NULL UNIQUE, topic TEXT NOT NULL, created_at BIGINT NOT NULL);
            CREATE TABLE \(s).kappa_versions (
                job TEXT NOT NULL REFERENCES \(s).kappa_jobs(name), version INTEGER NOT NULL, state TEXT NOT NULL,
                manifest TEXT NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, error TEXT,
                PRIMARY KEY (job, version));
            CREATE TABLE \(s).kappa_offsets (
                job TEXT NOT NULL, version INTEGER NOT NULL, partition INTEGER NOT NULL, next_offset BIGINT NOT NULL,
                PRIMARY KEY (job, version, partition), FOREIGN KEY (job, version) REFERENCES \(s).kappa_versions(job, version));
            CREATE TABLE \(s).kappa_leases (
                job TEXT NOT NULL, version INTEGER NOT NULL, partition INTEGER NOT NULL, owner TEXT,
                epoch BIGINT NOT NULL DEFAULT 0, expires_at BIGINT NOT NULL DEFAULT 0, PRIMARY KEY (job, version, partition));
            CREATE TABLE \(s).kappa_history (
                id BIGSERIAL PRIMARY KEY, job TEXT NOT NULL, version INTEGER NOT NULL, at BIGINT NOT NULL,
                from_state TEXT, to_state TEXT NOT NULL, reason TEXT NOT NULL, actor TEXT NOT NULL);
            CREATE INDEX kappa_history_job ON \(s).kappa_history(job, id);
            """,
            """
            CREATE TABLE \(s).kappa_lag_samples (
                job TEXT NOT NULL, version INTEGER NOT NULL, at BIGINT NOT NULL, ends TEXT NOT NULL, nexts TEXT NOT NULL,
                PRIMARY KEY (job, version, at));
            CREATE TABLE \(s).kappa_hosts (
                owner TEXT PRIMARY KEY, pid INTEGER NOT NULL, started_at BIGINT NOT NULL, heartbeat_at BIGINT NOT NULL);
            """,
        ]
    }

    static var currentVersion: Int { migrations("s").count }

    /// Creates the schema when needed and applies the migrations it lacks, under an advisory lock.
    /// - Throws: `CatalogError.newerSchema` for a catalog written by a newer Kappa.
    static func migrate(_ db: PGConnection, schema: String) throws {
        try db.transaction("catalog: migration") {
            try db.query("SELECT pg_advisory_xact_lock(hashtext($1))", [.text("kappa catalog \(schema)")], name: "catalog: lock")
            try db.execute("CREATE SCHEMA IF NOT EXISTS \(schema); CREATE TABLE IF NOT EXISTS \(schema).kappa_schema (version INTEGER NOT NULL)",
                           name: "catalog: schema")
            let rows = try db.query("SELECT version FROM \(schema).kappa_schema", name: "catalog: schema version").rows
            let applied = rows.first.map { Int($0[0].int) } ?? 0
            if applied > currentVersion {
                throw CatalogError(.newerSchema, "schema \(schema) on \(db.displayURL) holds a catalog of schema \(applied), written by a newer Kappa (this release knows up to \(currentVersion)); upgrade kappactl and JobHost")
            }
            let all = migrations(schema)
            for n in applied..<currentVersion { try db.execute(all[n], name: "catalog: migration \(n + 1)") }
            if rows.isEmpty {
                try db.query("INSERT INTO \(schema).kappa_schema VALUES ($1)", [.integer(Int64(currentVersion))], name: "catalog: schema version")
            } else if applied < currentVersion {
                try db.query("UPDATE \(schema).kappa_schema SET version = $1", [.integer(Int64(currentVersion))], name: "catalog: schema version")
            }
        }
    }
}
#endif
