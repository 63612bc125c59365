/// Chooses the store: the state directory's SQLite database, or the catalog a URL names
/// (`--catalog postgres://…` or `KAPPA_CATALOG`, with the `Postgres` trait).
public enum Backends {
    /// - Throws: `CatalogError` for a URL this build cannot use (saying which trait is missing).
    public static func store(state: StateDirectory, catalog: String?) throws -> any TableStore {
        guard let catalog, !catalog.isEmpty else { return try SQLiteStore(state: state) }
        guard catalog.hasPrefix("postgres://") || catalog.hasPrefix("postgresql://") else {
            throw CatalogError(.notACatalog, "unsupported catalog \(Redaction.url(catalog)): use postgres://user@host:port/database")
        }
        #if Postgres
        let (url, schema) = splitSchema(catalog)
        return try PostgresStore(url: url, schema: schema ?? "kappa")
        #else
        throw CatalogError(.notACatalog, "this build has no PostgreSQL support: build with `swift build --traits Postgres` to use \(Redaction.url(catalog))")
        #endif
    }

    /// Takes Kappa's own `schema=NAME` parameter out of a PostgreSQL URL (libpq refuses unknown
    /// parameters): `postgres://h/db?schema=ops&sslmode=require` → (`postgres://h/db?sslmode=require`, `ops`).
    public static func splitSchema(_ url: String) -> (url: String, schema: String?) {
        guard let q = url.firstIndex(of: "?") else { return (url, nil) }
        var schema: String?
        let kept = url[url.index(after: q)...].split(separator: "&").filter { pair in
            if pair.hasPrefix("schema=") { schema = String(pair.dropFirst("schema=".count)); return false }
            return true
        }
        return (String(url[..<q]) + (kept.isEmpty ? "" : "?" + kept.joined(separator: "&")), schema)
    }

    /// The catalog URL from `--catalog`, else `KAPPA_CATALOG`.
    public static func catalogURL(flag: String?, environment: [String: String]) -> String? {
        flag ?? environment["KAPPA_CATALOG"].flatMap { $0.isEmpty ? nil : $0 }
    }
}
