import Foundation
import CKappaSys
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A small HTTP/1.1 server for JobHost's metrics, status API and page: GET and HEAD only, no
/// request bodies, one request per connection (`Connection: close`).
///
/// Slow or abusive clients cannot hold anything up: a connection's socket reads and writes run on
/// the server's own bounded pool of threads (`io`) with 5-second socket timeouts and a 16 KiB
/// limit on the request head; at most `maxConnections` at once (more get 503 at once). The
/// handler only reads the catalog and the controller's counters; it never waits on the
/// controller.
///
/// Why a pool of its own and not the shared `BlockingExecutor`: a connection holds a thread for
/// as long as its client takes to send a request head (5 s per read, more for a client that
/// trickles bytes) and to take the answer. On the shared executor, 32 slow clients would hold
/// every thread the store and the log need, and JobHost's workers would stop. Here they can only
/// exhaust the server's own threads (`maxConnections` + 1 for the accept loop, started as
/// needed). The handler itself runs as a task, holding no thread: it awaits the catalog, whose
/// queries run on the shared executor; a connection thread never waits for it synchronously (a
/// thread of an executor blocked on work queued on that executor can wait forever).
public final class HTTPServer: Sendable {
    public struct Request: Sendable {
        public var method: String
        /// The path without the query, percent-decoded.
        public var path: String
        public var query: [String: String]
        /// Header names in lower case.
        public var headers: [String: String]
    }

    public struct Response: Sendable {
        public var status: Int
        public var contentType: String
        public var body: [UInt8]
        public var headers: [(String, String)] = []

        public init(status: Int, contentType: String, body: [UInt8], headers: [(String, String)] = []) {
            self.status = status
            self.contentType = contentType
            self.body = body
            self.headers = headers
        }

        public static func text(_ status: Int, _ text: String) -> Response {
            Response(status: status, contentType: "text/plain; charset=utf-8", body: Array((text + "\n").utf8))
        }

        public static func json(_ text: String, status: Int = 200) -> Response {
            Response(status: status, contentType: "application/json", body: Array(text.utf8))
        }
    }

    public static let maxConnections = 32
    static let maxHeadBytes = 16 << 10

    private let socket: Int32
    /// The port listened on (the one chosen by the system when asked for port 0).
    public let port: Int
    public let host: String
    private let handler: @Sendable (Request) async -> Response
    private let open = Atomic<Int>(0)
    private let stopped = Atomic<Bool>(false)
    /// The accept loop and the connections' socket I/O (see above).
    private let io = BlockingExecutor(threads: HTTPServer.maxConnections + 1, name: "kappa-http")

    /// Binds and listens on `host:port` (an IPv4 address).
    /// - Throws: `IOError` naming the address (in use, not an address of this machine…).
    public init(host: String, port: Int, handler: @escaping @Sendable (Request) async -> Response) throws {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else {
            throw IOError("listen", path: "\(host):\(port) (not an IPv4 address)", code: EINVAL)
        }
        let fd = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw IOError("socket", path: "\(host):\(port)") }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 64) == 0 else {
            let error = IOError("listen", path: "\(host):\(port)")
            close(fd)
            throw error
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        self.socket = fd
        self.port = Int(UInt16(bigEndian: actual.sin_port))
        self.host = host
        self.handler = handler
    }

    deinit { close(socket) }

    /// Accepts connections until the task is cancelled.
    public func run() async {
        await withTaskCancellationHandler {
            _ = try? await io.run { [self] in acceptLoop() }
        } onCancel: {
            stopped.store(true, ordering: .relaxed)
        }
    }

    private func acceptLoop() {
        var waiting = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
        while !stopped.load(ordering: .relaxed) {
            guard poll(&waiting, 1, 200) > 0 else { continue }
            let client = kappa_accept_cloexec(socket)  // close-on-exec at once: exec jobs' programs never inherit it
            guard client >= 0 else { continue }
            var timeout = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            if open.wrappingAdd(1, ordering: .relaxed).newValue > Self.maxConnections {
                Self.send(client, .text(503, "too many connections"), head: false)
                close(client)
                open.wrappingSubtract(1, ordering: .relaxed)
                continue
            }
            Task { [self] in
                await serve(client)
                close(client)
                open.wrappingSubtract(1, ordering: .relaxed)
            }
        }
    }

    /// Reads one request head, answers it, returns.
    private func serve(_ client: Int32) async {
        let io = self.io
        guard let head = try? await io.run({ Self.readHead(client) }) else { return }
        let request: Request
        switch Self.parse(head) {
        case .success(let parsed): request = parsed
        case .failure(let failure):
            _ = try? await io.run { Self.send(client, failure.response, head: false) }
            return
        }
        let response = await handler(request)
        _ = try? await io.run { Self.send(client, response, head: request.method == "HEAD") }
    }

    /// Reads up to the end of a request head; nil when the client closed or timed out first, or
    /// sent a head too large (it is told so). Blocking.
    private static func readHead(_ client: Int32) -> [UInt8]? {
        var head: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while endOfHead(head) == nil {
            let n = buffer.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return nil }  // closed or timed out before a whole request
            head += buffer[0..<n]
            if head.count > maxHeadBytes {
                send(client, .text(431, "request head larger than 16 KiB"), head: false)
                return nil
            }
        }
        return head
    }

    static func endOfHead(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for i in 0...(bytes.count - 4) where bytes[i] == 13 && bytes[i + 1] == 10 && bytes[i + 2] == 13 && bytes[i + 3] == 10 {
            return i
        }
        return nil
    }

    /// Parses a request head; a malformed one becomes the 4xx response to send.
    static func parse(_ bytes: [UInt8]) -> Result<Request, ParseFailure> {
        guard let end = endOfHead(bytes) else { return .failure(ParseFailure(.text(400, "incomplete request"))) }
        let text = String(decoding: bytes[0..<end], as: UTF8.self)
        var lines = text.components(separatedBy: "\r\n")
        let parts = lines.removeFirst().split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[2].hasPrefix("HTTP/1.") else { return .failure(ParseFailure(.text(400, "malformed request line"))) }
        let method = String(parts[0])
        var headers: [String: String] = [:]
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { return .failure(ParseFailure(.text(400, "malformed header line"))) }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        guard method == "GET" || method == "HEAD" else {
            var response = Response.text(405, "method \(method) not allowed: GET or HEAD")
            response.headers = [("Allow", "GET, HEAD")]
            return .failure(ParseFailure(response))
        }
        if let length = headers["content-length"], length != "0" { return .failure(ParseFailure(.text(413, "no request bodies here"))) }
        let target = String(parts[1])
        guard target.hasPrefix("/") else { return .failure(ParseFailure(.text(400, "the request target must be a path"))) }
        let pathPart = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        guard let path = String(pathPart[0]).removingPercentEncoding else { return .failure(ParseFailure(.text(400, "bad percent-encoding in the path"))) }
        var query: [String: String] = [:]
        if pathPart.count > 1 {
            for pair in pathPart[1].split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let key = String(kv[0]).removingPercentEncoding ?? String(kv[0])
                query[key] = kv.count > 1 ? (String(kv[1]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? "") : ""
            }
        }
        return .success(Request(method: method, path: path, query: query, headers: headers))
    }

    struct ParseFailure: Error {
        var response: Response
        init(_ response: Response) { self.response = response }
    }

    static let reasons: [Int: String] = [
        200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
        413: "Content Too Large", 431: "Request Header Fields Too Large", 500: "Internal Server Error", 503: "Service Unavailable",
    ]

    static func send(_ client: Int32, _ response: Response, head: Bool) {
        var text = "HTTP/1.1 \(response.status) \(reasons[response.status] ?? "Status")\r\n"
        text += "Content-Type: \(response.contentType)\r\nContent-Length: \(response.body.count)\r\n"
        text += "Cache-Control: no-store\r\nConnection: close\r\nX-Content-Type-Options: nosniff\r\n"
        for (k, v) in response.headers { text += "\(k): \(v)\r\n" }
        var bytes = Array((text + "\r\n").utf8)
        if !head { bytes += response.body }
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            sent += n
        }
    }
}
