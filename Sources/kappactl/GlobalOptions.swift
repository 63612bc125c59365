import Foundation
import KappaCore

enum GlobalOptions {
    static let state = Option.value("state", "DIR", help: "State directory (default: $KAPPA_STATE, else ./.kappa).")
    static let catalog = Option.value("catalog", "URL", help: "Catalog and output tables in PostgreSQL (postgres://…; default: $KAPPA_CATALOG, else SQLite in the state directory); prefer --catalog-file, which keeps the password out of argv.")
    static let log = Option.value("log", "URL", help: "The unified log in Kafka (kafka://host:port[,host:port…]; default: $KAPPA_LOG, else the segment log in the state directory).")
    static let kafkaSetting = Option.value("kafka-setting", short: "X", "KEY=VALUE", help: "A librdkafka setting for --log kafka:// (TLS, SASL…); values are never printed.", repeated: true)
    static let archive = Option.value("archive", "DIR|s3://BUCKET/PREFIX", help: "Where topics are archived beyond retention: a directory for `topic create` on the embedded log; a directory or an S3 location (trait S3) for Kafka topics (`archive run`); default: $KAPPA_ARCHIVE.")
    static let output = Option.value("output", short: "o", "FORMAT", help: "Output format: text or json (default: text).")

    /// Opens the state directory the arguments name.
    static func stateDirectory(_ args: ParsedArguments) throws -> StateDirectory {
        try StateDirectory(path: StateDirectory.resolve(flag: args.string("state")),
                           create: !isReadOnly(args))
    }

    static func isReadOnly(_ args: ParsedArguments) -> Bool {
        readOnlyCommands.contains(args.path.dropFirst().joined(separator: " "))
    }

    /// Commands that only read: they never create a state directory (nor, in one, anything).
    static let readOnlyCommands: Set<String> = ["status", "wait", "lag", "history", "query", "diff", "consume",
                                                "topic list", "topic describe", "topic check", "archive status"]

    /// The store: SQLite in the state directory, or the --catalog / KAPPA_CATALOG database.
    static func store(_ args: ParsedArguments, state: StateDirectory) throws -> Store {
        try Backends.store(state: state, catalog: SecretOptions.catalog(args, environment: ProcessInfo.processInfo.environment),
                           readOnly: isReadOnly(args))
    }

    /// The log: Kafka for --log kafka:// (or KAPPA_LOG), else the segment log in the state directory.
    static func log(_ args: ParsedArguments, state: StateDirectory? = nil, withArchive: Bool = true) throws -> any UnifiedLog {
        let environment = ProcessInfo.processInfo.environment
        return try Backends.log(state: state ?? stateDirectory(args),
                                url: Backends.logURL(flag: args.string("log"), environment: environment),
                                settings: SecretOptions.kafkaSettings(args, environment: environment), logger: EventLogger(format: .text),
                                archive: withArchive ? archiveRoot(args) : nil, readOnly: isReadOnly(args))
    }

    /// `--archive` (or KAPPA_ARCHIVE): a directory made absolute (a topic's configuration keeps
    /// it), or an `s3://` location as given.
    static func archiveRoot(_ args: ParsedArguments) -> String? {
        Backends.archiveRoot(flag: args.string("archive"), environment: ProcessInfo.processInfo.environment)
            .map { $0.contains("://") ? $0 : URL(fileURLWithPath: $0).standardizedFileURL.path }
    }

    /// True for `--output json`.
    static func json(_ args: ParsedArguments) throws -> Bool {
        try args.choice("output", ["text", "json"], default: "text") == "json"
    }
}
