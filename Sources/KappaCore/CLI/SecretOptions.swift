import Foundation

/// Secrets given without argv (where `ps` shows them): each can come from a file or the
/// environment, in this order of precedence:
///
/// | secret | file | environment | argv (last resort) |
/// |---|---|---|---|
/// | catalog URL | `--catalog-file PATH` | `KAPPA_CATALOG_FILE`, `KAPPA_CATALOG` | `--catalog URL` |
/// | HTTP token | `--http-token-file PATH` | `KAPPA_HTTP_TOKEN_FILE`, `KAPPA_HTTP_TOKEN` | `--http-token TOKEN` |
/// | librdkafka settings | `--kafka-config PATH` (`key=value` lines) | `KAPPA_KAFKA_CONFIG` (a path) | `-X key=value` |
///
/// A value option and its file option together are a usage error; a value given on the
/// command line wins over the environment. A file's value is its text without the trailing
/// line break; an empty or unreadable file is an error naming it.
public enum SecretOptions {
    public static let catalogFile = Option.value("catalog-file", "PATH", help: "Read the catalog URL from this file (default: $KAPPA_CATALOG_FILE); keeps its password out of argv.")
    public static let kafkaConfig = Option.value("kafka-config", "PATH", help: "librdkafka settings from this file, one key=value a line, # comments (default: $KAPPA_KAFKA_CONFIG); -X settings come after and win.")
    public static let httpTokenFile = Option.value("http-token-file", "PATH", help: "Read the HTTP token from this file (default: $KAPPA_HTTP_TOKEN_FILE).")

    /// The catalog URL: `--catalog-file`, `--catalog`, `$KAPPA_CATALOG_FILE`, `$KAPPA_CATALOG`; nil for SQLite.
    /// - Throws: `UsageError` naming the option and the file.
    public static func catalog(_ args: ParsedArguments, environment: [String: String]) throws -> String? {
        try secret(args, value: "catalog", file: "catalog-file", variable: "KAPPA_CATALOG", environment: environment)
    }

    /// The HTTP token: `--http-token-file`, `--http-token`, `$KAPPA_HTTP_TOKEN_FILE`, `$KAPPA_HTTP_TOKEN`.
    /// - Throws: `UsageError` naming the option and the file.
    public static func httpToken(_ args: ParsedArguments, environment: [String: String]) throws -> String? {
        try secret(args, value: "http-token", file: "http-token-file", variable: "KAPPA_HTTP_TOKEN", environment: environment)
    }

    /// librdkafka settings as `key=value`: those of `--kafka-config` (else `$KAPPA_KAFKA_CONFIG`),
    /// then every `-X`.
    /// - Throws: `UsageError` naming the file and line of a line that is not `key=value`.
    public static func kafkaSettings(_ args: ParsedArguments, environment: [String: String]) throws -> [String] {
        let path = args.string("kafka-config") ?? environment["KAPPA_KAFKA_CONFIG"].flatMap { $0.isEmpty ? nil : $0 }
        let origin = args.string("kafka-config") != nil ? "--kafka-config" : "KAPPA_KAFKA_CONFIG"
        var settings: [String] = []
        if let path {
            let text = try read(path, origin: origin, args: args)
            for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
                if line.isEmpty || line.hasPrefix("#") { continue }
                guard let eq = line.firstIndex(of: "="), eq != line.startIndex else {
                    // The line may hold a secret: it is not quoted.
                    throw args.usageError("\(origin) \(path) line \(number + 1): use key=value")
                }
                let key = line[..<eq].trimmingCharacters(in: .whitespaces)
                settings.append(key + "=" + line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces))
            }
        }
        return settings + args.strings("kafka-setting")
    }

    private static func secret(_ args: ParsedArguments, value: String, file: String, variable: String, environment: [String: String]) throws -> String? {
        if args.string(value) != nil && args.string(file) != nil {
            throw args.usageError("give --\(value) or --\(file), not both")
        }
        if let path = args.string(file) { return try read(path, origin: "--\(file)", args: args) }
        if let given = args.string(value) { return given }
        if let path = environment[variable + "_FILE"], !path.isEmpty { return try read(path, origin: variable + "_FILE", args: args) }
        return environment[variable].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// A file's text without its trailing line breaks.
    private static func read(_ path: String, origin: String, args: ParsedArguments) throws -> String {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            let files = FileManager.default
            var directory: ObjCBool = false
            let reason = !files.fileExists(atPath: path, isDirectory: &directory) ? "no such file"
                : directory.boolValue ? "is a directory" : !files.isReadableFile(atPath: path) ? "permission denied" : "cannot be read"
            throw args.usageError("\(origin) \(path): \(reason)")
        }
        var text = String(decoding: data, as: UTF8.self)
        while let last = text.unicodeScalars.last, last == "\n" || last == "\r" { text.unicodeScalars.removeLast() }
        guard !text.isEmpty else { throw args.usageError("\(origin) \(path): the file is empty") }
        return text
    }
}
