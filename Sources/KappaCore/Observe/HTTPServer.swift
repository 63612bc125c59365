import Foundation
import CKappaSys
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A small HTTP/1.1 server for JobHost's metrics, status API and page: GET and HEAD only, no
/// request bodies, one request per connection (`Connection: close`).
///
/// Slow or abusive clients cannot keep anyone out. One thread runs a `poll(2)` loop over every
/// connection's non-blocking socket: it reads request heads and writes answers, each connection
/// with a deadline of its own: its whole head within `headDeadlineMs` of being accepted (else
/// 408 and closed), its whole answer within `writeDeadlineMs`. A client holds no thread while it
/// trickles bytes, only a slot among `maxPending`; when they are all taken, a new connection
/// takes the slot of the oldest one still sending its head (which has had the most time), so a
/// bounded number of slow clients delay a token holder by nothing and any number of them by at
/// most one head deadline. A complete request is handled as a task (at most `maxConnections`
/// at once; more get 503 at once); the handler reads the catalog and the controller's counters,
/// never waits on the controller, and holds no thread: it awaits the catalog, whose queries run
/// on the shared executor. Nothing of a connection runs on the shared executor, so slow clients
/// cannot hold the threads the store and the log need.
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

    /// Requests handled at once.
    public static let maxConnections = 32
    /// Connections open at once (sending their heads, handled or taking their answers).
    public let maxPending: Int
    static let maxHeadBytes = 16 << 10
    /// How long a client has for its whole request head, and for taking the whole answer.
    public let headDeadlineMs: Int64
    static let writeDeadlineMs: Int64 = 5_000

    private let socket: Int32
    /// Wakes the loop when a handler is done (or the server stops): [read end, write end].
    private let wake: [Int32]
    /// The port listened on (the one chosen by the system when asked for port 0).
    public let port: Int
    public let host: String
    private let handler: @Sendable (Request) async -> Response
    private let stopped = Atomic<Bool>(false)
    /// Answers from handlers, by connection number, for the loop to write.
    private let answered = Mutex<[(UInt64, [UInt8])]>([])
    /// The loop's thread (see above).
    private let io = BlockingExecutor(threads: 1, name: "kappa-http")

    /// Binds and listens on `host:port` (an IPv4 address).
    /// - Parameters:
    ///   - headDeadlineMs: how long a client has to send its request head (5 s).
    ///   - maxPending: connections open at once (512).
    /// - Throws: `IOError` naming the address (in use, not an address of this machine…).
    public init(host: String, port: Int, headDeadlineMs: Int64 = 5_000, maxPending: Int = 512,
                handler: @escaping @Sendable (Request) async -> Response) throws {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else {
            throw IOError("listen", path: "\(host):\(port) (not an IPv4 address)", code: EINVAL)
        }
        let fd = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw IOError("socket", path: "\(host):\(port)") }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 128) == 0 else {
            let error = IOError("listen", path: "\(host):\(port)")
            close(fd)
            throw error
        }
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &pair) == 0 else {
            let error = IOError("socketpair", path: "\(host):\(port)")
            close(fd)
            throw error
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        self.socket = fd
        self.wake = pair
        self.port = Int(UInt16(bigEndian: actual.sin_port))
        self.host = host
        self.headDeadlineMs = headDeadlineMs
        self.maxPending = maxPending
        self.handler = handler
    }

    deinit {
        close(socket)
        close(wake[0])
        close(wake[1])
    }

    /// Accepts connections until the task is cancelled.
    public func run() async {
        await withTaskCancellationHandler {
            _ = try? await io.run { [self] in loop() }
        } onCancel: {
            stopped.store(true, ordering: .relaxed)
            poke()
        }
    }

    private func poke() {
        var byte: UInt8 = 1
        _ = Glibc.send(wake[1], &byte, 1, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
    }

    /// One connection, as the loop sees it.
    struct Connection {
        enum Phase { case reading, handling, writing }
        var fd: Int32
        var phase = Phase.reading
        /// The head read so far, then the answer to write.
        var bytes: [UInt8] = []
        var sent = 0
        /// When the current phase must be over (monotonic ms); none while handled.
        var deadline: Int64
        var number: UInt64
    }

    /// The poll loop (see the type's comment). Blocking; runs on `io` until stopped.
    private func loop() {
        var connections: [UInt64: Connection] = [:]
        var next: UInt64 = 0
        var handling = 0
        var buffer = [UInt8](repeating: 0, count: 4096)
        defer { for c in connections.values { close(c.fd) } }
        while !stopped.load(ordering: .relaxed) {
            var now = Self.monotonicMs()
            // Answers from handlers become writes.
            for (number, bytes) in answered.withLock({ a in defer { a.removeAll() }; return a }) {
                handling -= 1
                guard var c = connections[number] else { continue }
                c.phase = .writing
                c.bytes = bytes
                c.deadline = now + Self.writeDeadlineMs
                connections[number] = c
            }
            // Deadlines: a head late is told so; an answer not taken is dropped.
            for (number, c) in connections where c.phase != .handling && c.deadline <= now {
                if c.phase == .reading {
                    let late = Self.serialize(.text(408, "the request head must arrive within \(headDeadlineMs / 1000) s"), head: false)
                    _ = late.withUnsafeBytes { Glibc.send(c.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
                }
                close(c.fd)
                connections[number] = nil
            }
            var fds = [pollfd(fd: socket, events: Int16(POLLIN), revents: 0), pollfd(fd: wake[0], events: Int16(POLLIN), revents: 0)]
            var numbers: [UInt64] = []
            var soonest = now + 1_000
            for (number, c) in connections where c.phase != .handling {
                fds.append(pollfd(fd: c.fd, events: Int16(c.phase == .reading ? POLLIN : POLLOUT), revents: 0))
                numbers.append(number)
                soonest = min(soonest, c.deadline)
            }
            let ready = poll(&fds, nfds_t(fds.count), Int32(max(0, min(1_000, soonest - now))))
            guard ready > 0 else { continue }
            now = Self.monotonicMs()
            if fds[1].revents != 0 {
                while buffer.withUnsafeMutableBytes({ recv(wake[0], $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }) > 0 {}
            }
            for (i, number) in numbers.enumerated() where fds[i + 2].revents != 0 {
                guard var c = connections[number] else { continue }
                let done: Bool
                switch c.phase {
                case .reading: done = read(&c, buffer: &buffer, handling: &handling)
                case .writing: done = write(&c)
                case .handling: done = false
                }
                if done {
                    close(c.fd)
                    connections[number] = nil
                } else {
                    connections[number] = c
                }
            }
            if fds[0].revents != 0 {
                while true {
                    // Close-on-exec at once: exec jobs' programs never inherit it.
                    let client = kappa_accept_cloexec(socket)
                    guard client >= 0 else { break }
                    _ = fcntl(client, F_SETFL, fcntl(client, F_GETFL) | O_NONBLOCK)
                    if connections.count >= maxPending {
                        // Full: the oldest connection still sending its head makes room.
                        if let oldest = connections.values.filter({ $0.phase == .reading }).min(by: { $0.number < $1.number }) {
                            close(oldest.fd)
                            connections[oldest.number] = nil
                        } else {
                            close(client)
                            continue
                        }
                    }
                    next += 1
                    connections[next] = Connection(fd: client, deadline: now + headDeadlineMs, number: next)
                }
            }
        }
    }

    /// Reads what a connection has sent; once its head is whole, hands it to the handler or
    /// queues the error to send. True when the connection is to be closed.
    private func read(_ c: inout Connection, buffer: inout [UInt8], handling: inout Int) -> Bool {
        let n = buffer.withUnsafeMutableBytes { recv(c.fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        if n < 0 { return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR }
        if n == 0 { return true }  // closed before a whole request
        c.bytes += buffer[0..<n]
        let now = Self.monotonicMs()
        func answer(_ response: Response) {
            c.phase = .writing
            c.bytes = Self.serialize(response, head: false)
            c.deadline = now + Self.writeDeadlineMs
        }
        if c.bytes.count > Self.maxHeadBytes {
            answer(.text(431, "request head larger than 16 KiB"))
            return false
        }
        guard Self.endOfHead(c.bytes) != nil else { return false }
        switch Self.parse(c.bytes) {
        case .failure(let failure): answer(failure.response)
        case .success(let request):
            guard handling < Self.maxConnections else {
                answer(.text(503, "too many requests at once"))
                return false
            }
            handling += 1
            c.phase = .handling
            c.bytes = []
            let number = c.number
            Task { [self] in
                let response = await handler(request)
                let bytes = Self.serialize(response, head: request.method == "HEAD")
                answered.withLock { $0.append((number, bytes)) }
                poke()
            }
        }
        return false
    }

    /// Writes what the socket takes of the answer. True when done (or the client is gone).
    private func write(_ c: inout Connection) -> Bool {
        let n = c.bytes[c.sent...].withUnsafeBytes { Glibc.send(c.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
        if n < 0 { return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR }
        c.sent += n
        return c.sent >= c.bytes.count
    }

    static func monotonicMs() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1_000 + Int64(ts.tv_nsec) / 1_000_000
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
        408: "Request Timeout", 413: "Content Too Large", 431: "Request Header Fields Too Large", 500: "Internal Server Error", 503: "Service Unavailable",
    ]

    static func serialize(_ response: Response, head: Bool) -> [UInt8] {
        var text = "HTTP/1.1 \(response.status) \(reasons[response.status] ?? "Status")\r\n"
        text += "Content-Type: \(response.contentType)\r\nContent-Length: \(response.body.count)\r\n"
        text += "Cache-Control: no-store\r\nConnection: close\r\nX-Content-Type-Options: nosniff\r\n"
        for (k, v) in response.headers { text += "\(k): \(v)\r\n" }
        var bytes = Array((text + "\r\n").utf8)
        if !head { bytes += response.body }
        return bytes
    }
}
