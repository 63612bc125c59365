#if S3
/// An error from the object store, with the bucket and key it concerns, the HTTP status and the
/// S3 error code (`NoSuchKey`, `SignatureDoesNotMatch`, …) when the server answered. Messages
/// never hold the secret key or session token.
public struct S3Error: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// The `s3://` location does not parse.
        case invalidLocation
        /// An access key or secret is not set.
        case missingCredentials
        /// The object (or bucket) does not exist (HTTP 404).
        case notFound
        /// A conditional write's condition did not hold (HTTP 412): the object exists
        /// (`If-None-Match: *`), or its ETag is not the one given (`If-Match`).
        case preconditionFailed
        /// The server refused the identity or its signature (HTTP 401 or 403).
        case accessDenied
        /// A range starts beyond the object's end (HTTP 416).
        case invalidRange
        /// The server could not be reached or broke off (connection refused or reset, name not
        /// resolved, HTTP 500/502/503/504): worth retrying later.
        case unavailable
        /// The server did not answer within the client's bounds: worth retrying later.
        case timedOut
        /// Any other HTTP error.
        case http
        /// The server's answer is not what S3 sends (unparsable listing, wrong length).
        case invalidResponse
        /// libcurl failed in a way that retrying will not fix.
        case transport
    }

    public var code: Code
    public var message: String
    public var bucket: String?
    /// The full object key (the location's prefix included), or nil for a bucket-wide request.
    public var key: String?
    /// The HTTP status, when the server answered.
    public var status: Int?
    /// The S3 error code from the server's XML answer (`NoSuchKey`, `PreconditionFailed`, …).
    public var s3Code: String?

    public init(_ code: Code, _ message: String, bucket: String? = nil, key: String? = nil,
                status: Int? = nil, s3Code: String? = nil) {
        self.code = code
        self.message = message
        self.bucket = bucket
        self.key = key
        self.status = status
        self.s3Code = s3Code
    }

    public var description: String { message }

    /// Whether the same request may succeed later (the server is down, overloaded or slow).
    public var isRetryable: Bool { code == .unavailable || code == .timedOut }

    /// The code for an HTTP error status.
    static func code(status: Int) -> Code {
        switch status {
        case 404: .notFound
        case 412: .preconditionFailed
        case 401, 403: .accessDenied
        case 416: .invalidRange
        case 500, 502, 503, 504: .unavailable
        default: .http
        }
    }
}
#endif
