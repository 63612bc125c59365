#if S3
import CLibCurl
import Foundation

/// One HTTP request to the object store, as libcurl performs it.
struct S3HTTPRequest: Sendable {
    enum Method: String, Sendable { case get = "GET", put = "PUT", head = "HEAD", delete = "DELETE" }

    var method: Method
    /// The whole URL, path and query already percent-encoded (and the query sorted, as SigV4's
    /// canonical request wants and libcurl 7.88 does not do itself).
    var url: String
    /// Extra headers, `Name: value`.
    var headers: [String] = []
    /// The body of a PUT.
    var body: [UInt8] = []
    /// The most response body bytes accepted: a server sending more is answered with an error,
    /// not with memory exhausted.
    var maxResponseBytes: Int
}

/// What the server answered.
struct S3HTTPResponse: Sendable {
    var status: Int
    /// Header names lowercased, of the final response (not of a `100 Continue`).
    var headers: [String: String]
    var body: [UInt8]
    /// The CRC-32C of `body`, computed piece by piece as it arrived (while each piece was in
    /// the cache, not in a second pass over the whole object).
    var bodyCRC32C: UInt32
}

/// The request failed below HTTP: no answer, or an answer cut short.
struct CurlFailure: Error, Sendable {
    enum Kind: Sendable { case unavailable, timedOut, tooLarge, other }
    var kind: Kind
    /// libcurl's words for it (its error buffer, else `curl_easy_strerror`).
    var message: String
}

/// How long the client waits (see `S3Client.Configuration`), in libcurl's units.
struct CurlLimits: Sendable {
    var connectTimeoutMs: Int
    var lowSpeedBytesPerSecond: Int
    var lowSpeedSeconds: Int
    var totalTimeoutMs: Int?
}

/// libcurl's process-wide initialisation, run once (Swift runs a global's initialiser once, under
/// a lock), before the first handle: `curl_global_init` itself is not safe to race.
private let curlGlobalInit: CURLcode = curl_global_init(Int(CURL_GLOBAL_ALL))

/// A libcurl easy handle, reused request after request (so that its connection to the server is
/// kept). The C pointers never leave this file.
final class CurlEasy: @unchecked Sendable {
    // Safe to share: a handle is used by one thread at a time: `S3Client`'s pool hands it out
    // to one request and takes it back after.
    private let handle: UnsafeMutableRawPointer

    init() throws(CurlFailure) {
        guard curlGlobalInit == CURLE_OK else {
            throw CurlFailure(kind: .other, message: "curl_global_init failed: \(Self.text(curlGlobalInit))")
        }
        guard let handle = curl_easy_init() else { throw CurlFailure(kind: .other, message: "curl_easy_init failed") }
        self.handle = handle
    }

    deinit { curl_easy_cleanup(handle) }

    /// Performs `request`, signed with SigV4 for `region` with `credentials`.
    func perform(_ request: S3HTTPRequest, credentials: S3Credentials, region: String, limits: CurlLimits) throws(CurlFailure) -> S3HTTPResponse {
        curl_easy_reset(handle)
        let state = Transfer(upload: request.body, maxResponseBytes: request.maxResponseBytes)
        var headers: UnsafeMutablePointer<curl_slist>? = nil
        defer { curl_slist_free_all(headers) }
        // libcurl 7.88 signs the payload of a read callback as if empty unless told otherwise;
        // S3 accepts an unsigned payload (the archive checks its own CRC-32C of every object).
        // Every header given here is signed. (So no "Expect:" line to drop 100-continue:
        // libcurl signs that empty header, then leaves it out of the request.)
        var lines = ["x-amz-content-sha256: UNSIGNED-PAYLOAD"] + request.headers
        if let token = credentials.sessionToken { lines.append("x-amz-security-token: \(token)") }
        for line in lines { headers = curl_slist_append(headers, line) }
        let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE) + 1)
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        defer { errorBuffer.deallocate() }

        let opaque = Unmanaged.passUnretained(state).toOpaque()
        var rc = CURLE_OK
        func set(_ result: CURLcode) { if rc == CURLE_OK { rc = result } }
        set(kappa_curl_setopt_string(handle, CURLOPT_URL, request.url))
        set(kappa_curl_setopt_string(handle, CURLOPT_PROTOCOLS_STR, "http,https"))
        set(kappa_curl_setopt_long(handle, CURLOPT_NOSIGNAL, 1))
        // Fewer, larger pieces to the write callback (16 KB by default).
        set(kappa_curl_setopt_long(handle, CURLOPT_BUFFERSIZE, 512 << 10))
        set(kappa_curl_setopt_long(handle, CURLOPT_PATH_AS_IS, 1))
        set(kappa_curl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, limits.connectTimeoutMs))
        set(kappa_curl_setopt_long(handle, CURLOPT_LOW_SPEED_LIMIT, limits.lowSpeedBytesPerSecond))
        set(kappa_curl_setopt_long(handle, CURLOPT_LOW_SPEED_TIME, limits.lowSpeedSeconds))
        if let total = limits.totalTimeoutMs { set(kappa_curl_setopt_long(handle, CURLOPT_TIMEOUT_MS, total)) }
        set(kappa_curl_setopt_string(handle, CURLOPT_AWS_SIGV4, "aws:amz:\(region):s3"))
        set(kappa_curl_setopt_string(handle, CURLOPT_USERNAME, credentials.accessKeyID))
        set(kappa_curl_setopt_string(handle, CURLOPT_PASSWORD, credentials.secretAccessKey))
        set(kappa_curl_setopt_slist(handle, CURLOPT_HTTPHEADER, headers))
        set(kappa_curl_setopt_pointer(handle, CURLOPT_ERRORBUFFER, errorBuffer))
        set(kappa_curl_setopt_write(handle, CURLOPT_WRITEFUNCTION, curlWriteBody))
        set(kappa_curl_setopt_pointer(handle, CURLOPT_WRITEDATA, opaque))
        set(kappa_curl_setopt_write(handle, CURLOPT_HEADERFUNCTION, curlWriteHeader))
        set(kappa_curl_setopt_pointer(handle, CURLOPT_HEADERDATA, opaque))
        switch request.method {
        case .get: break
        case .head: set(kappa_curl_setopt_long(handle, CURLOPT_NOBODY, 1))
        case .delete: set(kappa_curl_setopt_string(handle, CURLOPT_CUSTOMREQUEST, "DELETE"))
        case .put:
            set(kappa_curl_setopt_long(handle, CURLOPT_UPLOAD, 1))
            set(kappa_curl_setopt_off(handle, CURLOPT_INFILESIZE_LARGE, curl_off_t(request.body.count)))
            set(kappa_curl_setopt_read(handle, CURLOPT_READFUNCTION, curlReadBody))
            set(kappa_curl_setopt_pointer(handle, CURLOPT_READDATA, opaque))
            // A kept connection the server has closed meanwhile: libcurl resends on a new one,
            // from the body's start.
            set(kappa_curl_setopt_seek(handle, CURLOPT_SEEKFUNCTION, curlSeekBody))
            set(kappa_curl_setopt_pointer(handle, CURLOPT_SEEKDATA, opaque))
        }
        guard rc == CURLE_OK else { throw CurlFailure(kind: .other, message: "setting up the request: \(Self.text(rc))") }

        rc = withExtendedLifetime(state) { curl_easy_perform(handle) }
        guard rc == CURLE_OK else {
            let detail = String(cString: errorBuffer)
            let message = detail.isEmpty ? Self.text(rc) : detail
            if state.tooLarge {
                throw CurlFailure(kind: .tooLarge, message: "the answer is longer than the \(request.maxResponseBytes) bytes expected")
            }
            throw CurlFailure(kind: Self.kind(rc), message: message)
        }
        var status = 0
        _ = kappa_curl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        return S3HTTPResponse(status: status, headers: state.finalHeaders(), body: state.body(), bodyCRC32C: state.crc32c)
    }

    private static func text(_ rc: CURLcode) -> String {
        curl_easy_strerror(rc).map { String(cString: $0) } ?? "libcurl error \(rc.rawValue)"
    }

    /// Failures that retrying may cure (the server is down, restarting, or cut the connection).
    private static func kind(_ rc: CURLcode) -> CurlFailure.Kind {
        switch rc {
        case CURLE_OPERATION_TIMEDOUT: .timedOut
        case CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY, CURLE_SEND_ERROR,
             CURLE_RECV_ERROR, CURLE_GOT_NOTHING, CURLE_PARTIAL_FILE, CURLE_HTTP2, CURLE_HTTP2_STREAM:
            .unavailable
        default: .other
        }
    }
}

/// What one transfer reads from and writes to, reached from libcurl's callbacks.
private final class Transfer {
    let upload: [UInt8]
    var uploaded = 0
    /// The response body so far, with room reserved for the whole of it when the server says
    /// how long it is: the array handed back as it is, never copied (an 8 MiB object copied
    /// once more cost a third of an archive read: the copy, and the kernel zeroing its pages).
    private var bytes: [UInt8] = []
    var length: Int { bytes.count }
    private(set) var crc32c: UInt32 = 0
    var headerLines: [String] = []
    let maxResponseBytes: Int
    var tooLarge = false

    init(upload: [UInt8], maxResponseBytes: Int) {
        self.upload = upload
        self.maxResponseBytes = maxResponseBytes
    }

    /// Makes room for `total` bytes in all.
    func reserve(_ total: Int) -> Bool {
        if total > bytes.capacity { bytes.reserveCapacity(total) }
        return true
    }

    /// Appends `count` bytes.
    func append(_ pointer: UnsafeRawPointer, count: Int) -> Bool {
        if bytes.count + count > bytes.capacity { bytes.reserveCapacity(max(bytes.count + count, min(maxResponseBytes, max(64 << 10, bytes.capacity * 2)))) }
        let piece = UnsafeRawBufferPointer(start: pointer, count: count)
        crc32c = CRC32C.checksum(piece, continuing: crc32c)
        bytes.append(contentsOf: piece)
        return true
    }

    func body() -> [UInt8] { bytes }

    /// The headers after the last status line (a `100 Continue` comes with its own), names
    /// lowercased; a repeated header keeps its last value.
    func finalHeaders() -> [String: String] {
        var headers: [String: String] = [:]
        for line in headerLines {
            if line.hasPrefix("HTTP/") {
                headers = [:]
                continue
            }
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].trimmingCharacters(in: .whitespaces).lowercased()
            headers[name] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return headers
    }
}

private func transfer(_ userdata: UnsafeMutableRawPointer?) -> Transfer? {
    userdata.map { Unmanaged<Transfer>.fromOpaque($0).takeUnretainedValue() }
}

/// Appends a piece of the response body; returning less than given makes libcurl stop.
private let curlWriteBody: curl_write_callback = { data, size, count, userdata in
    guard let state = transfer(userdata), let data else { return 0 }
    let (n, overflow) = size.multipliedReportingOverflow(by: count)
    guard !overflow else { return 0 }
    guard state.length <= state.maxResponseBytes - n else {
        state.tooLarge = true
        return 0
    }
    return state.append(data, count: n) ? n : 0
}

/// Keeps one header line (libcurl calls this once per line, the status line included).
private let curlWriteHeader: curl_write_callback = { data, size, count, userdata in
    guard let state = transfer(userdata), let data else { return 0 }
    let (n, overflow) = size.multipliedReportingOverflow(by: count)
    guard !overflow else { return 0 }
    let line = data.withMemoryRebound(to: UInt8.self, capacity: n) { String(decoding: UnsafeBufferPointer(start: $0, count: n), as: UTF8.self) }
    let trimmed = line.trimmingCharacters(in: .newlines)
    state.headerLines.append(trimmed)
    // Room for the whole body at once, when the server says how long it is (and it is allowed).
    if trimmed.count > 15, trimmed.prefix(15).lowercased() == "content-length:",
       let length = Int(trimmed.dropFirst(15).trimmingCharacters(in: .whitespaces)), length > 0, length <= state.maxResponseBytes {
        _ = state.reserve(length)
    }
    return n
}

/// Hands libcurl the next piece of a PUT's body.
private let curlReadBody: curl_read_callback = { buffer, size, count, userdata in
    guard let state = transfer(userdata), let buffer else { return Int(CURL_READFUNC_ABORT) }
    let (room, overflow) = size.multipliedReportingOverflow(by: count)
    guard !overflow else { return Int(CURL_READFUNC_ABORT) }
    let n = min(room, state.upload.count - state.uploaded)
    if n > 0 {
        state.upload.withUnsafeBytes { bytes in
            guard let base = bytes.baseAddress else { return }
            UnsafeMutableRawPointer(buffer).copyMemory(from: base + state.uploaded, byteCount: n)
        }
        state.uploaded += n
    }
    return n
}
#endif

#if S3
import Synchronization

/// Idle easy handles, each keeping its connection to the server, for the next request to take.
final class CurlPool: Sendable {
    private let idle = Mutex<[CurlEasy]>([])
    /// The most idle handles kept.
    let capacity: Int

    init(capacity: Int) { self.capacity = max(1, capacity) }

    /// An idle handle, else a new one.
    func take() throws(CurlFailure) -> CurlEasy {
        if let easy = idle.withLock({ $0.popLast() }) { return easy }
        return try CurlEasy()
    }

    /// Keeps `easy` for a later request (or lets it close when enough are kept).
    func give(_ easy: CurlEasy) {
        idle.withLock { if $0.count < capacity { $0.append(easy) } }
    }
}
#endif

#if S3
/// Moves the PUT body's read position (libcurl rewinds to resend a request).
private let curlSeekBody: curl_seek_callback = { userdata, offset, origin in
    guard let state = transfer(userdata), origin == SEEK_SET, offset >= 0, offset <= state.upload.count else {
        return CURL_SEEKFUNC_CANTSEEK
    }
    state.uploaded = Int(offset)
    return CURL_SEEKFUNC_OK
}
#endif
