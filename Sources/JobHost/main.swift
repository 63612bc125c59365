import Foundation
import KappaCore

#if canImport(Glibc)
import Glibc
#endif

/// JobHost: the long-running daemon. Parses its options, runs `JobHostService` until SIGTERM
/// or SIGINT, exits 0.
let root = Command(
    "JobHost",
    abstract: "Run Kappa's daemon: workers for the partitions it leases (and, on one JobHost at a time, the controller), until SIGTERM/SIGINT.",
    options: [
        .flag("version", help: "Print Kappa's version and the catalog schema it uses.", inherited: false),
        .value("state", "DIR", help: "State directory (default: $KAPPA_STATE, else ./.kappa)."),
        .value("catalog", "URL", help: "Catalog and output tables in PostgreSQL (default: $KAPPA_CATALOG, else SQLite in the state directory); prefer --catalog-file, which keeps the password out of argv."),
        SecretOptions.catalogFile,
        .value("log", "URL", help: "The unified log in Kafka (kafka://host:port[,host:port…]; default: $KAPPA_LOG, else the segment log in the state directory)."),
        .value("kafka-setting", short: "X", "KEY=VALUE", help: "A librdkafka setting for --log kafka:// (TLS, SASL…); values are never printed.", repeated: true),
        SecretOptions.kafkaConfig,
        .value("archive", "DIR|s3://BUCKET/PREFIX", help: "With --log kafka://: where Kafka topics are archived beyond retention, a directory or an S3 location (trait S3; endpoint, region and credentials from AWS_* or ?endpoint=URL&region=R) (default: $KAPPA_ARCHIVE)."),
        .value("mirror", "TOPIC", help: "Mirror this Kafka topic into --archive while this JobHost holds the topic's mirror lease: one mirror per topic across every JobHost of the catalog, another taking over when this one dies.", repeated: true),
        .value("mirror-interval", "DURATION", help: "With --mirror: the pause between mirror passes (default 1s)."),
        .value("lease-ttl", "DURATION", help: "How long a JobHost's leases last unrenewed: another JobHost takes over a dead one's partitions after this (default 10s)."),
        .value("http", "HOST:PORT", help: "Serve /metrics (Prometheus), /api/status and a live page there (e.g. 127.0.0.1:8080; PORT alone means 127.0.0.1)."),
        .value("http-token", "TOKEN", help: "Require this token on every HTTP request (Authorization: Bearer, or ?token=; default: $KAPPA_HTTP_TOKEN); prefer --http-token-file, which keeps it out of argv."),
        SecretOptions.httpTokenFile,
        .flag("http-allow-remote", help: "Allow --http on an address other than loopback (needs a token)."),
        .value("retention-interval", "DURATION", help: "How often to apply retention (default 1m)."),
        .value("log-format", "FORMAT", help: "Log lines as text or json (default: text)."),
        .value("blocking-threads", "N", help: "Threads for blocking work: file and database I/O, librdkafka calls (2…256; default: $KAPPA_BLOCKING_THREADS, else 16)."),
    ],
    run: { args in
        // First: the shared executor is sized before anything uses it.
        do {
            let allowed = Int64(BlockingExecutor.allowedThreads.lowerBound)...Int64(BlockingExecutor.allowedThreads.upperBound)
            let threads = try args.int("blocking-threads", in: allowed).map { Int($0) }
                ?? BlockingExecutor.threads(environment: ProcessInfo.processInfo.environment)
            if let threads { try BlockingExecutor.configureShared(threads: threads) }
        } catch let error as BlockingExecutorError {
            throw args.usageError(error.message)
        }
        let signals = TerminationSignal()
        var configuration = JobHostConfiguration(state: try StateDirectory(path: StateDirectory.resolve(flag: args.string("state"))))
        configuration.catalog = try SecretOptions.catalog(args, environment: ProcessInfo.processInfo.environment)
        configuration.log = Backends.logURL(flag: args.string("log"), environment: ProcessInfo.processInfo.environment)
        configuration.kafkaSettings = try SecretOptions.kafkaSettings(args, environment: ProcessInfo.processInfo.environment)
        configuration.archive = Backends.archiveRoot(flag: args.string("archive"), environment: ProcessInfo.processInfo.environment)
        configuration.mirrors = args.strings("mirror")
        if !configuration.mirrors.isEmpty && configuration.archive == nil {
            throw args.usageError("--mirror needs --archive DIR or --archive s3://BUCKET/PREFIX (or KAPPA_ARCHIVE)")
        }
        if let interval = try args.duration("mirror-interval") { configuration.mirrorIntervalMs = max(10, interval) }
        if let http = args.string("http") {
            let parts = http.split(separator: ":", omittingEmptySubsequences: false)
            let host = parts.count == 2 ? String(parts[0]) : "127.0.0.1"
            guard parts.count <= 2, let port = Int(parts.last!), (0...65535).contains(port), !host.isEmpty else {
                throw args.usageError("--http \(http): use HOST:PORT, e.g. 127.0.0.1:8080")
            }
            configuration.http = (host, port)
        }
        configuration.httpToken = try SecretOptions.httpToken(args, environment: ProcessInfo.processInfo.environment)
        configuration.httpAllowRemote = args.flag("http-allow-remote")
        if let ttl = try args.duration("lease-ttl") { configuration.controller.leaseTtlMs = max(200, ttl) }
        if let interval = try args.duration("retention-interval") { configuration.retentionIntervalMs = max(10, interval) }
        let format = EventLogger.Format(rawValue: try args.choice("log-format", ["text", "json"], default: "text"))!
        let service = JobHostService(configuration: configuration, logger: EventLogger(format: format))
        let running = Task { try await service.run() }
        let watcher = Task {
            let signal = await signals.wait()
            EventLogger(format: format).log(.info, "shutting down", ["signal": signal])
            running.cancel()
        }
        defer { watcher.cancel() }
        // Ends when the service does: after a signal, or at once if it cannot start.
        try await running.value
    })

exit(await CommandLineTool.run(root, arguments: Array(CommandLine.arguments.dropFirst())))
