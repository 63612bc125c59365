#if S3
import Foundation

/// Where objects live in an S3-compatible store: `s3://BUCKET/PREFIX[?endpoint=URL&region=R]`.
///
/// The endpoint and region come from the URL's query when given, else from the environment the
/// AWS SDKs read (`AWS_ENDPOINT_URL_S3`, then `AWS_ENDPOINT_URL`; `AWS_REGION`, then
/// `AWS_DEFAULT_REGION`), else AWS itself (`https://s3.REGION.amazonaws.com`, `us-east-1`).
/// Requests use path-style addressing (`ENDPOINT/BUCKET/KEY`), which local servers need.
public struct S3Location: Sendable, Equatable, CustomStringConvertible {
    /// The bucket's name.
    public var bucket: String
    /// The key prefix every object of this location has, without a trailing `/` (empty: the
    /// whole bucket).
    public var prefix: String
    /// The server's base URL (`http://127.0.0.1:8333`), without a trailing `/`.
    public var endpoint: String
    /// The region requests are signed for.
    public var region: String

    public init(bucket: String, prefix: String, endpoint: String, region: String) {
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint = endpoint
        self.region = region
    }

    /// `s3://bucket/prefix (endpoint URL, region R)`.
    public var description: String {
        "s3://\(bucket)\(prefix.isEmpty ? "" : "/" + prefix) (endpoint \(endpoint), region \(region))"
    }

    /// `s3://bucket/prefix/key`, for messages.
    public func display(key: String) -> String {
        "s3://\(bucket)/\(fullKey(key))"
    }

    /// The object key in the bucket for `key` under the prefix.
    public func fullKey(_ key: String) -> String {
        prefix.isEmpty ? key : key.isEmpty ? prefix + "/" : prefix + "/" + key
    }

    /// Parses an `s3://` URL; the endpoint and region not in it come from `environment`.
    /// - Throws: `S3Error` (`.invalidLocation`) naming what is wrong.
    public static func parse(_ text: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> S3Location {
        func invalid(_ why: String) -> S3Error {
            // `why` quotes a part of the location (a bucket "KEY:SECRET@b", an endpoint with a
            // query): whatever secret the whole held is hidden there too.
            var why = Redaction.url(why)
            for secret in Redaction.secrets(in: text).sorted(by: { $0.count > $1.count }) { why = why.replacingOccurrences(of: secret, with: "***") }
            return S3Error(.invalidLocation, "archive location \(Redaction.url(text)): \(why)")
        }
        guard text.hasPrefix("s3://") else { throw invalid("expected s3://BUCKET/PREFIX[?endpoint=URL&region=R]") }
        var rest = Substring(text.dropFirst(5))
        var query: Substring = ""
        if let q = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: q)...]
            rest = rest[..<q]
        }
        guard !rest.contains("#") else { throw invalid("a fragment (#) is not allowed") }
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let bucket = String(rest[..<slash])
        guard !bucket.isEmpty else { throw invalid("no bucket name") }
        guard bucket.count <= 255, bucket.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-._".contains($0)) }) else {
            throw invalid("bucket name \"\(bucket)\" may hold only letters, digits, '-', '.' and '_'")
        }
        var prefix = slash < rest.endIndex ? String(rest[rest.index(after: slash)...]) : ""
        while prefix.hasSuffix("/") { prefix.removeLast() }
        guard let decodedPrefix = prefix.removingPercentEncoding else { throw invalid("the prefix is not valid percent-encoding") }
        prefix = decodedPrefix
        guard prefix.isEmpty || !prefix.split(separator: "/", omittingEmptySubsequences: false).contains(where: \.isEmpty) else {
            throw invalid("the prefix \"\(prefix)\" has an empty path segment (//)")
        }
        guard !prefix.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw invalid("the prefix holds a control character")
        }

        var endpoint: String?
        var region: String?
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = String(parts[0]).removingPercentEncoding ?? String(parts[0])
            let value = parts.count > 1 ? (String(parts[1]).removingPercentEncoding ?? String(parts[1])) : ""
            switch name {
            case "endpoint": endpoint = value
            case "region": region = value
            default: throw invalid("unknown parameter \"\(name)\" (known: endpoint, region)")
            }
        }
        let env = { (name: String) -> String? in environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        let chosenRegion = region ?? env("AWS_REGION") ?? env("AWS_DEFAULT_REGION") ?? "us-east-1"
        guard !chosenRegion.isEmpty, chosenRegion.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }) else {
            throw invalid("region \"\(chosenRegion)\" may hold only letters, digits and '-'")
        }
        let chosenEndpoint = endpoint ?? env("AWS_ENDPOINT_URL_S3") ?? env("AWS_ENDPOINT_URL") ?? "https://s3.\(chosenRegion).amazonaws.com"
        return S3Location(bucket: bucket, prefix: prefix, endpoint: try checkedEndpoint(chosenEndpoint, invalid), region: chosenRegion)
    }

    /// `http(s)://host[:port]`, with no user info (credentials come from elsewhere), path,
    /// query or fragment.
    private static func checkedEndpoint(_ text: String, _ invalid: (String) -> S3Error) throws -> String {
        var trimmed = text
        while trimmed.hasSuffix("/") { trimmed.removeLast() }
        guard let url = URLComponents(string: trimmed), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
              let host = url.host, !host.isEmpty else {
            throw invalid("endpoint \(Redaction.url(text)) is not an http:// or https:// URL with a host")
        }
        guard url.user == nil, url.password == nil else {
            throw invalid("endpoint \(Redaction.url(text)) holds user info; give credentials in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        }
        guard url.path.isEmpty, url.query == nil, url.fragment == nil else {
            throw invalid("endpoint \(Redaction.url(text)) may have no path, query or fragment")
        }
        if let port = url.port, !(1...65_535).contains(port) {
            throw invalid("endpoint \(Redaction.url(text)): port \(port) is not one from 1 to 65535")
        }
        return trimmed
    }
}

/// The key and secret requests are signed with. Never printed: `description` shows the last
/// four characters of the access key ID only.
public struct S3Credentials: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    public var accessKeyID: String
    public var secretAccessKey: String
    /// A temporary credential's token (`AWS_SESSION_TOKEN`), sent as `x-amz-security-token`.
    public var sessionToken: String?

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
    }

    public var description: String {
        "S3Credentials(access key …\(accessKeyID.suffix(4)), secret ***\(sessionToken == nil ? "" : ", session token ***"))"
    }

    public var debugDescription: String { description }

    /// The values that must never appear in output (for `Redaction.values`).
    var secrets: [String] { [secretAccessKey] + (sessionToken.map { [$0] } ?? []) }

    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and, if set, `AWS_SESSION_TOKEN`.
    /// - Throws: `S3Error` (`.missingCredentials`) naming the variable that is missing.
    public static func environment(_ environment: [String: String] = ProcessInfo.processInfo.environment) throws -> S3Credentials {
        guard let key = environment["AWS_ACCESS_KEY_ID"], !key.isEmpty else {
            throw S3Error(.missingCredentials, "AWS_ACCESS_KEY_ID is not set (the object store's access key)")
        }
        guard let secret = environment["AWS_SECRET_ACCESS_KEY"], !secret.isEmpty else {
            throw S3Error(.missingCredentials, "AWS_SECRET_ACCESS_KEY is not set (the object store's secret key)")
        }
        for (name, value) in [("AWS_ACCESS_KEY_ID", key), ("AWS_SECRET_ACCESS_KEY", secret), ("AWS_SESSION_TOKEN", environment["AWS_SESSION_TOKEN"] ?? "")]
        where value.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
            throw S3Error(.missingCredentials, "\(name) holds a control character (a line break pasted with it?)")
        }
        let token = environment["AWS_SESSION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        return S3Credentials(accessKeyID: key, secretAccessKey: secret, sessionToken: token)
    }

    /// The credentials as the AWS SDKs find them: `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`
    /// (with `AWS_SESSION_TOKEN`) when either is set; else the profile `AWS_PROFILE` (default
    /// `default`) of the shared credentials file, `AWS_SHARED_CREDENTIALS_FILE` (default
    /// `~/.aws/credentials`): `[profile]` sections of `aws_access_key_id`,
    /// `aws_secret_access_key` and `aws_session_token` lines, `#` and `;` comments.
    /// - Throws: `S3Error` (`.missingCredentials`) naming the variable, or the file, line and
    ///   profile; never a value.
    public static func resolve(_ environment: [String: String] = ProcessInfo.processInfo.environment) throws -> S3Credentials {
        func set(_ name: String) -> Bool { !(environment[name] ?? "").isEmpty }
        if set("AWS_ACCESS_KEY_ID") || set("AWS_SECRET_ACCESS_KEY") { return try Self.environment(environment) }
        let named = environment["AWS_SHARED_CREDENTIALS_FILE"].flatMap { $0.isEmpty ? nil : $0 }
        guard let path = named ?? environment["HOME"].flatMap({ $0.isEmpty ? nil : $0 + "/.aws/credentials" }) else {
            throw S3Error(.missingCredentials, "AWS_ACCESS_KEY_ID is not set (the object store's access key), nor AWS_SHARED_CREDENTIALS_FILE or HOME (a credentials file)")
        }
        let profile = environment["AWS_PROFILE"].flatMap { $0.isEmpty ? nil : $0 } ?? "default"
        guard let data = FileManager.default.contents(atPath: path) else {
            if named == nil && !FileManager.default.fileExists(atPath: path) {
                throw S3Error(.missingCredentials, "AWS_ACCESS_KEY_ID is not set (the object store's access key), and there is no credentials file \(path) (AWS_SHARED_CREDENTIALS_FILE names another)")
            }
            throw S3Error(.missingCredentials, "the credentials file \(path) (\(named == nil ? "~/.aws/credentials" : "AWS_SHARED_CREDENTIALS_FILE")) cannot be read")
        }
        return try file(String(decoding: data, as: UTF8.self), path: path, profile: profile)
    }

    /// The credentials of `profile` in the text of a shared credentials file at `path`.
    static func file(_ text: String, path: String, profile: String) throws -> S3Credentials {
        var values: [String: String] = [:]
        var section: String?
        var found = false
        // Lines as the AWS SDKs split them: \n or \r\n (one Character in Swift), a BOM at the start.
        let body = text.hasPrefix("\u{FEFF}") ? String(text.dropFirst()) : text
        for (number, raw) in body.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") {
                // `[name]`, then nothing but a comment.
                guard let close = line.firstIndex(of: "]"), line.index(after: line.startIndex) < close,
                      line[line.index(after: close)...].trimmingCharacters(in: .whitespaces).first.map({ $0 == "#" || $0 == ";" }) ?? true else {
                    throw S3Error(.missingCredentials, "the credentials file \(path), line \(number + 1): a section is [name]")
                }
                section = line[line.index(after: line.startIndex)..<close].trimmingCharacters(in: .whitespaces)
                if section == profile { found = true }
                continue
            }
            guard section == profile else { continue }
            if raw.first?.isWhitespace == true {
                throw S3Error(.missingCredentials, "the credentials file \(path), line \(number + 1) (profile \(profile)) is indented: the AWS SDKs read it as going on from the line before; start it at the start of the line")
            }
            // The line may hold a secret: only its number is said.
            guard let eq = line.firstIndex(of: "="), eq != line.startIndex else {
                throw S3Error(.missingCredentials, "the credentials file \(path), line \(number + 1) (profile \(profile)): use name = value")
            }
            let name = line[..<eq].trimmingCharacters(in: .whitespaces).lowercased()
            var value = Substring(line[line.index(after: eq)...])
            // An inline comment: ` #` or ` ;` (whitespace first, as the SDKs have it).
            if let comment = value.indices.first(where: { i in (value[i] == "#" || value[i] == ";") && i > value.startIndex && value[value.index(before: i)].isWhitespace }) {
                value = value[..<comment]
            }
            values[name] = value.trimmingCharacters(in: .whitespaces)
        }
        guard found else { throw S3Error(.missingCredentials, "the credentials file \(path) has no profile [\(profile)] (AWS_PROFILE picks another)") }
        do {
            return try Self.environment(["AWS_ACCESS_KEY_ID": values["aws_access_key_id"] ?? "", "AWS_SECRET_ACCESS_KEY": values["aws_secret_access_key"] ?? "",
                                         "AWS_SESSION_TOKEN": values["aws_session_token"] ?? ""])
        } catch let error as S3Error {
            // Named as the file names them.
            let message = error.message.replacingOccurrences(of: "AWS_ACCESS_KEY_ID is not set", with: "aws_access_key_id is missing")
                .replacingOccurrences(of: "AWS_SECRET_ACCESS_KEY is not set", with: "aws_secret_access_key is missing")
                .replacingOccurrences(of: "AWS_ACCESS_KEY_ID", with: "aws_access_key_id").replacingOccurrences(of: "AWS_SECRET_ACCESS_KEY", with: "aws_secret_access_key")
                .replacingOccurrences(of: "AWS_SESSION_TOKEN", with: "aws_session_token")
            throw S3Error(.missingCredentials, "the credentials file \(path), profile [\(profile)]: \(message)")
        }
    }
}
#endif
