import Foundation

/// Chooses the store: the state directory's SQLite database, or the catalog a URL names
/// (`SecretOptions.catalog`: `--catalog-file`, `--catalog`, `KAPPA_CATALOG`…, with the `Postgres` trait); and the log: the
/// state directory's segment log, or Kafka (`--log kafka://…` or `KAPPA_LOG`, with the `Kafka`
/// trait, `-X key=value` passing librdkafka settings).
public enum Backends {
    /// - Throws: `LogError.invalidArgument` for a URL this build cannot use (saying which trait
    ///   is missing) or settings without a Kafka log.
    /// - Parameter archive: for Kafka, its topics' archive (`LogMirror`): a directory or an
    ///   `s3://` location (`archive(_:environment:)`); the embedded log's topics name their
    ///   archive themselves.
    /// - Parameter readOnly: for commands that only read (`SegmentLog(state:readOnly:)`).
    public static func log(state: StateDirectory, url: String?, settings: [String], logger: EventLogger, archive: String? = nil,
                           readOnly: Bool = false) throws -> any UnifiedLog {
        guard let url, !url.isEmpty else {
            if let first = settings.first {
                throw LogError(.invalidArgument, "-X \(first.prefix(while: { $0 != "=" })) is a librdkafka setting: it needs --log kafka://…")
            }
            return try SegmentLog(state: state, readOnly: readOnly)
        }
        guard url.hasPrefix("kafka://") else {
            throw LogError(.invalidArgument, "unsupported log \(Redaction.url(url)): use kafka://host:port[,host:port…] (or no --log for the embedded log)")
        }
        #if Kafka
        return try KafkaLog(settings: KafkaSettings(url: url, passthrough: settings), logger: logger,
                            archive: try archive.map { try Self.archive($0, environment: ProcessInfo.processInfo.environment) })
        #else
        throw LogError(.invalidArgument, "this build has no Kafka support: build with `swift build --traits Kafka` to use \(Redaction.url(url))")
        #endif
    }

    /// The archive `location` names: `s3://BUCKET/PREFIX[?endpoint=URL&region=R]` (trait `S3`;
    /// endpoint, region and credentials as `S3Location` and `S3Credentials` take them from
    /// `environment`), else a directory.
    /// - Throws: `LogError.invalidArgument` naming the location (never a credential) and what is
    ///   wrong with it, or the missing trait.
    public static func archive(_ location: String, environment: [String: String]) throws -> SegmentArchive {
        if location.hasPrefix("s3://") {
            #if S3
            do {
                return SegmentArchive(storage: S3ArchiveStorage(client: try S3Client(url: location, environment: environment)))
            } catch let error as S3Error {
                throw LogError(.invalidArgument, "archive \(Redaction.url(location)): \(error)")
            }
            #else
            throw LogError(.invalidArgument, "this build has no S3 support: build with `swift build --traits S3` to use the archive \(Redaction.url(location))")
            #endif
        }
        guard !location.contains("://") else {
            throw LogError(.invalidArgument, "unsupported archive \(Redaction.url(location)): use a directory, or s3://BUCKET/PREFIX")
        }
        guard !location.isEmpty, !location.utf8.contains(0) else { throw LogError(.invalidArgument, "the archive's directory is empty or holds a NUL byte") }
        return SegmentArchive(root: location)
    }

    /// The Kafka topics' archive from `--archive`, else `KAPPA_ARCHIVE`.
    public static func archiveRoot(flag: String?, environment: [String: String]) -> String? {
        flag ?? environment["KAPPA_ARCHIVE"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The log URL from `--log`, else `KAPPA_LOG`.
    public static func logURL(flag: String?, environment: [String: String]) -> String? {
        flag ?? environment["KAPPA_LOG"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// - Throws: `CatalogError` for a URL this build cannot use (saying which trait is missing).
    /// `readOnly`: for commands that only read (`Store.sqlite(state:readOnly:)`).
    public static func store(state: StateDirectory, catalog: String?, readOnly: Bool = false) throws -> Store {
        guard let catalog, !catalog.isEmpty else { return try Store.sqlite(state: state, readOnly: readOnly) }
        guard catalog.hasPrefix("postgres://") || catalog.hasPrefix("postgresql://") else {
            throw CatalogError(.notACatalog, "unsupported catalog \(Redaction.url(catalog)): use postgres://user@host:port/database")
        }
        #if Postgres
        let (url, schema) = splitSchema(catalog)
        return try Store.postgres(url: url, schema: schema ?? "kappa")
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
}
