#if S3
import Foundation

/// An object in the store: its key (below the client's prefix), size and ETag.
public struct S3ObjectInfo: Sendable, Equatable {
    /// The key below the location's prefix (what was given to `put`).
    public var key: String
    public var size: Int64
    /// The ETag as the server sends it, quotes included (`"5eb63bbb…"`): what `If-Match` takes.
    public var etag: String?
    /// When it was written (milliseconds since 1970), when the listing says (HEAD does not here).
    public var lastModifiedMs: Int64?

    public init(key: String, size: Int64, etag: String?, lastModifiedMs: Int64? = nil) {
        self.key = key
        self.size = size
        self.etag = etag
        self.lastModifiedMs = lastModifiedMs
    }
}

/// When a `put` may replace what is there.
public enum S3PutCondition: Sendable, Equatable {
    /// Always.
    case none
    /// Only if no object has the key (`If-None-Match: *`).
    case ifAbsent
    /// Only if the object's ETag is this one (`If-Match`), so that a writer that read an old
    /// version cannot replace a newer one.
    case ifMatch(String)
}

/// A client of an S3-compatible object store (AWS S3, SeaweedFS, MinIO, …) for the objects
/// under one `S3Location`: put, get (whole or a byte range), head, list, delete, and
/// conditional puts. Requests are signed by libcurl (SigV4) and sent with path-style URLs.
///
/// The async calls run on a lane of the shared `BlockingExecutor` (never on the cooperative pool);
/// their synchronous twins block the calling thread, for callers already on the executor. Each is
/// bounded: a connection must be made within `connectTimeout`, and a request that moves
/// fewer than `lowSpeedLimit` bytes a second for `lowSpeedTime` is given up (`.timedOut`), so a
/// server that accepts and never answers cannot hang a caller. Connections are kept and reused.
public final class S3Client: Sendable, CustomStringConvertible {
    /// How long the client waits, and how much it lists at once.
    public struct Configuration: Sendable {
        /// The longest wait for a connection to the server.
        public var connectTimeout: Duration = .seconds(10)
        /// A request moving fewer bytes a second than this …
        public var lowSpeedLimit: Int = 1
        /// … for this long is given up (at least a second).
        public var lowSpeedTime: Duration = .seconds(30)
        /// An upper bound on a whole request, or nil for none (a large object at a slow but
        /// steady rate is fine).
        public var requestTimeout: Duration? = nil
        /// Keys asked for per ListObjectsV2 request (1…1000).
        public var listPageSize: Int = 1000
        /// The largest object `get` accepts (a server sending more is an error).
        public var maxObjectBytes: Int = 4 << 30
        /// Requests of this client running at once (each holds a thread of the executor); nil:
        /// half the executor's threads.
        public var concurrency: Int? = nil

        public init() {}
    }

    public let location: S3Location
    public let configuration: Configuration
    private let credentials: S3Credentials
    private let lane: BlockingExecutor.Lane
    /// Idle handles (each with its open connection), at most `concurrency`.
    private let pool: CurlPool

    /// A client for the objects under `location`, signing with `credentials`.
    public init(location: S3Location, credentials: S3Credentials, configuration: Configuration = .init(),
                executor: BlockingExecutor = .shared) {
        self.location = location
        self.credentials = credentials
        var configuration = configuration
        configuration.listPageSize = min(1000, max(1, configuration.listPageSize))
        let concurrency = max(1, configuration.concurrency ?? executor.threads / 2)
        configuration.concurrency = concurrency
        self.configuration = configuration
        pool = CurlPool(capacity: concurrency)
        lane = executor.lane("s3 \(location.bucket)", width: concurrency)
    }

    /// A client for `url` (`s3://BUCKET/PREFIX[?endpoint=URL&region=R]`) with the credentials
    /// (`S3Credentials.resolve`: the variables, else the shared credentials file) and endpoint
    /// defaults of `environment`.
    /// - Throws: `S3Error` (`.invalidLocation`, `.missingCredentials`).
    public convenience init(url: String, environment: [String: String] = ProcessInfo.processInfo.environment,
                            configuration: Configuration = .init()) throws {
        let location = try S3Location.parse(url, environment: environment)
        self.init(location: location, credentials: try S3Credentials.resolve(environment), configuration: configuration)
    }

    /// The location and the access key's last four characters; never the secret.
    public var description: String { "S3Client(\(location), \(credentials))" }

    // MARK: Operations

    /// Stores `bytes` as `key`, if `condition` holds, and returns the new object's ETag.
    /// - Throws: `S3Error`: `.preconditionFailed` when the condition does not hold; others as
    ///   for every request.
    @discardableResult
    public func put(_ key: String, _ bytes: [UInt8], condition: S3PutCondition = .none) throws -> String? {
        var headers: [String] = []
        switch condition {
        case .none: break
        case .ifAbsent: headers.append("If-None-Match: *")
        case .ifMatch(let etag):
            guard !etag.isEmpty, !etag.contains(where: \.isNewline) else {
                throw S3Error(.invalidLocation, "put \(location.display(key: key)): the ETag to match is empty or holds a line break",
                              bucket: location.bucket, key: location.fullKey(key))
            }
            headers.append("If-Match: \(etag)")
        }
        let response = try send(.put, key: key, headers: headers, body: bytes, maxResponseBytes: 1 << 20)
        return response.headers["etag"]
    }

    /// The whole object `key`.
    /// - Throws: `S3Error` (`.notFound` when there is none).
    public func get(_ key: String) throws -> [UInt8] {
        try send(.get, key: key, maxResponseBytes: configuration.maxObjectBytes).body
    }

    /// The whole object `key` with its ETag, or nil when there is none: for an object replaced
    /// only with `.ifMatch` of the ETag read (the archive's manifests).
    /// - Throws: `S3Error` (anything but a 404).
    public func getVersioned(_ key: String) throws -> (bytes: [UInt8], etag: String)? {
        let response: S3HTTPResponse
        do {
            response = try send(.get, key: key, maxResponseBytes: configuration.maxObjectBytes)
        } catch let error as S3Error where error.code == .notFound {
            return nil
        }
        guard let etag = response.headers["etag"], !etag.isEmpty else { throw invalidResponse(key, "GET answered without an ETag") }
        return (response.body, etag)
    }

    /// The bytes of `key` in `range` (offsets in the object). A range reaching past the end
    /// gives the bytes up to the end; an empty range gives none without asking the server.
    /// - Throws: `S3Error`: `.notFound`; `.invalidRange` when the range starts at or past the
    ///   end; `.invalidResponse` when the server sends other bytes than asked for.
    public func get(_ key: String, range: Range<Int64>) throws -> [UInt8] {
        try getChecksummed(key, range: range).bytes
    }

    /// `get(_:range:)` with the CRC-32C of the bytes, computed as they arrived (the archive
    /// verifies objects by it without another pass over them).
    public func getChecksummed(_ key: String, range: Range<Int64>) throws -> (bytes: [UInt8], crc32c: UInt32) {
        guard range.lowerBound >= 0 else {
            throw S3Error(.invalidRange, "get \(location.display(key: key)) bytes \(range.lowerBound)..<\(range.upperBound): a negative offset",
                          bucket: location.bucket, key: location.fullKey(key))
        }
        guard !range.isEmpty else { return ([], 0) }
        let count = range.upperBound - range.lowerBound
        guard count <= Int64(configuration.maxObjectBytes) else {
            throw S3Error(.invalidRange, "get \(location.display(key: key)) bytes \(range.lowerBound)..<\(range.upperBound): more than \(configuration.maxObjectBytes) bytes at once",
                          bucket: location.bucket, key: location.fullKey(key))
        }
        // The limit is the whole object's: a server that ignores Range sends all of it.
        let response = try send(.get, key: key, headers: ["Range: bytes=\(range.lowerBound)-\(range.upperBound - 1)"],
                                      maxResponseBytes: configuration.maxObjectBytes)
        if response.status == 206 {
            // The server says which bytes it sent; they must start where asked and not run over.
            guard let sent = response.headers["content-range"].flatMap(Self.contentRange), sent.first == range.lowerBound,
                  sent.last < range.upperBound, sent.last - sent.first == Int64(response.body.count) - 1 else {
                throw invalidResponse(key, "asked for bytes \(range.lowerBound)..<\(range.upperBound), got \(response.body.count) bytes (Content-Range: \(response.headers["content-range"] ?? "none"))")
            }
            return (response.body, response.bodyCRC32C)
        }
        // 200: a server that ignores Range sends the whole object.
        let whole = response.body
        guard range.lowerBound < Int64(whole.count) else {
            throw S3Error(.invalidRange, "get \(location.display(key: key)) bytes \(range.lowerBound)..<\(range.upperBound): the object has \(whole.count) bytes",
                          bucket: location.bucket, key: location.fullKey(key), status: response.status)
        }
        if range.lowerBound == 0 && range.upperBound >= Int64(whole.count) { return (whole, response.bodyCRC32C) }
        let part = Array(whole[Int(range.lowerBound)..<Int(min(range.upperBound, Int64(whole.count)))])
        return (part, CRC32C.checksum(part))
    }

    /// The size and ETag of `key`, or nil when there is no such object.
    /// - Throws: `S3Error` (anything but a 404).
    public func head(_ key: String) throws -> S3ObjectInfo? {
        let response: S3HTTPResponse
        do {
            response = try send(.head, key: key, maxResponseBytes: 0)
        } catch let error as S3Error where error.code == .notFound {
            return nil
        }
        guard let lengthText = response.headers["content-length"], let size = Int64(lengthText), size >= 0 else {
            throw invalidResponse(key, "HEAD answered without a valid Content-Length")
        }
        return S3ObjectInfo(key: key, size: size, etag: response.headers["etag"])
    }

    /// Every object whose key starts with `prefix` (below the location's prefix), in key order.
    /// Follows ListObjectsV2's continuation tokens, `listPageSize` keys a request.
    /// - Throws: `S3Error` (`.invalidResponse` for a listing that does not parse or does not end).
    public func list(prefix: String = "") throws -> [S3ObjectInfo] {
        let full = location.fullKey(prefix)
        // Keys compared and cut as bytes (S3's keys are byte strings; Swift's String comparison
        // would equate canonically equivalent spellings).
        let strip = location.prefix.isEmpty ? 0 : location.prefix.utf8.count + 1
        var objects: [S3ObjectInfo] = []
        var token: String?
        var seen: Set<String> = []
        while true {
            var query = [("list-type", "2"), ("max-keys", String(configuration.listPageSize)), ("prefix", full)]
            if let token { query.append(("continuation-token", token)) }
            let response = try send(.get, key: nil, query: query, maxResponseBytes: 64 << 20)
            guard let page = S3XML.listPage(response.body) else {
                throw invalidResponse(nil, "list \(location.display(key: prefix)): the answer is not a ListBucketResult")
            }
            for object in page.objects {
                guard object.key.utf8.starts(with: full.utf8) else {
                    throw invalidResponse(nil, "list \(location.display(key: prefix)): the server listed key \"\(object.key)\", outside the prefix")
                }
                objects.append(S3ObjectInfo(key: String(decoding: object.key.utf8.dropFirst(strip), as: UTF8.self), size: object.size, etag: object.etag,
                                            lastModifiedMs: object.lastModifiedMs))
            }
            guard page.isTruncated else { return objects }
            guard let next = page.nextContinuationToken, !next.isEmpty, seen.insert(next).inserted else {
                throw invalidResponse(nil, "list \(location.display(key: prefix)): a truncated page without a new continuation token")
            }
            token = next
        }
    }

    /// Deletes `key` (no error when there is none: S3 answers 204 either way).
    /// - Throws: `S3Error`.
    public func delete(_ key: String) throws {
        _ = try send(.delete, key: key, maxResponseBytes: 1 << 20)
    }

    // MARK: The same, on the client's lane of the executor

    // The operations above block the calling thread for the request (callers already on the
    // blocking executor, such as the archive's reads, use them there); these run them on the
    // client's lane, at most `concurrency` at once.

    @discardableResult
    public func put(_ key: String, _ bytes: [UInt8], condition: S3PutCondition = .none) async throws -> String? {
        try await lane.run { try self.put(key, bytes, condition: condition) }
    }
    public func get(_ key: String) async throws -> [UInt8] { try await lane.run { try self.get(key) } }
    public func get(_ key: String, range: Range<Int64>) async throws -> [UInt8] { try await lane.run { try self.get(key, range: range) } }
    public func head(_ key: String) async throws -> S3ObjectInfo? { try await lane.run { try self.head(key) } }
    public func getVersioned(_ key: String) async throws -> (bytes: [UInt8], etag: String)? {
        try await lane.run { try self.getVersioned(key).map { Versioned(bytes: $0.bytes, etag: $0.etag) } }.map { ($0.bytes, $0.etag) }
    }
    public func list(prefix: String = "") async throws -> [S3ObjectInfo] { try await lane.run { try self.list(prefix: prefix) } }
    public func delete(_ key: String) async throws { try await lane.run { try self.delete(key) } }

    private struct Versioned: Sendable { var bytes: [UInt8]; var etag: String }

    // MARK: Requests

    /// Sends one request on the calling thread and turns a failure into an `S3Error` naming the object.
    private func send(_ method: S3HTTPRequest.Method, key: String?, query: [(String, String)] = [], headers: [String] = [],
                      body: [UInt8] = [], maxResponseBytes: Int) throws -> S3HTTPResponse {
        if let key { try check(key: key) }
        let fullKey = key.map(location.fullKey)
        var url = location.endpoint + "/" + Self.encode(location.bucket, keepSlash: false)
        if let fullKey { url += "/" + Self.encode(fullKey, keepSlash: true) }
        if !query.isEmpty {
            url += "?" + query.sorted { $0.0 < $1.0 }.map { Self.encode($0.0, keepSlash: false) + "=" + Self.encode($0.1, keepSlash: false) }.joined(separator: "&")
        }
        // A HEAD's error has no body to read its S3 code from; a GET's error body is small.
        let request = S3HTTPRequest(method: method, url: url, headers: headers, body: body,
                                    maxResponseBytes: max(maxResponseBytes, 1 << 20))
        let what = "\(method.rawValue) \(fullKey.map { "s3://\(location.bucket)/\($0)" } ?? "s3://\(location.bucket) (list)")"
        let credentials = credentials, region = location.region, limits = limits, pool = pool
        let outcome = Result { () throws(CurlFailure) -> S3HTTPResponse in
            let easy = try pool.take()
            defer { pool.give(easy) }
            return try easy.perform(request, credentials: credentials, region: region, limits: limits)
        }
        let secrets = credentials.secrets
        switch outcome {
        case .failure(let failure):
            let code: S3Error.Code = switch failure.kind {
            case .unavailable: .unavailable
            case .timedOut: .timedOut
            case .tooLarge: .invalidResponse
            case .other: .transport
            }
            let hint = code == .timedOut ? " (no answer within the client's bounds: connect \(configuration.connectTimeout), or under \(configuration.lowSpeedLimit) bytes/s for \(configuration.lowSpeedTime))" : ""
            throw S3Error(code, Redaction.values(secrets, in: "\(what) at \(location.endpoint): \(failure.message)\(hint)"),
                          bucket: location.bucket, key: fullKey)
        case .success(let response) where (200..<300).contains(response.status):
            return response
        case .success(let response):
            let (s3Code, message) = S3XML.error(response.body)
            var text = "\(what) at \(location.endpoint): HTTP \(response.status)"
            if let s3Code { text += " \(s3Code)" }
            if let message { text += ": \(message)" }
            if response.status == 403 && (s3Code == "SignatureDoesNotMatch" || s3Code == "InvalidAccessKeyId") {
                text += " (check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
            } else if response.status == 403 && method == .head {
                text += " (a HEAD answer has no body to say why: check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the identity's rights)"
            }
            throw S3Error(S3Error.code(status: response.status), Redaction.values(secrets, in: TerminalText.escaped(text)),
                          bucket: location.bucket, key: fullKey, status: response.status, s3Code: s3Code)
        }
    }

    private var limits: CurlLimits {
        CurlLimits(connectTimeoutMs: Self.milliseconds(configuration.connectTimeout),
                   lowSpeedBytesPerSecond: max(1, configuration.lowSpeedLimit),
                   lowSpeedSeconds: max(1, Int(configuration.lowSpeedTime.components.seconds)),
                   totalTimeoutMs: configuration.requestTimeout.map(Self.milliseconds))
    }

    private static func milliseconds(_ duration: Duration) -> Int {
        let (seconds, attoseconds) = duration.components
        guard seconds < Int64(Int.max / 1000) else { return Int.max / 1000 }
        return max(1, Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000))
    }

    /// Keys are what S3 accepts and what path-style URLs carry: not empty, at most 1024 bytes,
    /// no control characters.
    private func check(key: String) throws {
        let full = location.fullKey(key)
        guard !key.isEmpty, full.utf8.count <= 1024, !full.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw S3Error(.invalidLocation, "object key \(TerminalText.escaped("\"\(full)\"")): empty, longer than 1024 bytes, or holding a control character",
                          bucket: location.bucket, key: full)
        }
    }

    private func invalidResponse(_ key: String?, _ why: String) -> S3Error {
        let prefix = key.map { "\(location.display(key: $0)): " } ?? ""
        return S3Error(.invalidResponse, TerminalText.escaped(prefix + why), bucket: location.bucket, key: key.map(location.fullKey))
    }

    /// SigV4's URI encoding: every byte but A–Z a–z 0–9 - . _ ~ (and `/` in a key's path) as %XX.
    static func encode(_ text: String, keepSlash: Bool) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            case UInt8(ascii: "/") where keepSlash:
                out.append("/")
            default:
                out += "%" + String(byte >> 4, radix: 16, uppercase: true) + String(byte & 15, radix: 16, uppercase: true)
            }
        }
        return out
    }

    /// `bytes FIRST-LAST/TOTAL` → (first, last).
    static func contentRange(_ text: String) -> (first: Int64, last: Int64)? {
        guard text.hasPrefix("bytes ") else { return nil }
        let spec = text.dropFirst(6).split(separator: "/", maxSplits: 1).first ?? ""
        let parts = spec.split(separator: "-", maxSplits: 1)
        guard parts.count == 2, let first = Int64(parts[0]), let last = Int64(parts[1]), first >= 0, last >= first else { return nil }
        return (first, last)
    }
}
#endif
