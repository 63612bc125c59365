#if S3
import Foundation
import Glibc
import Synchronization
import Testing
@testable import KappaCore

/// A socket on 127.0.0.1 that plays a broken object store: it listens and never answers, or
/// answers every request with what `reply` makes of its request line.
final class FakeObjectStore: @unchecked Sendable {
    // Safe to share: `fd` and `port` are set once in init; the request lines are behind a Mutex.
    let port: Int
    private let fd: Int32
    /// Whether a thread accepts (and closes `fd` when shut down).
    private let serving: Bool
    private let log = RequestLines()

    final class RequestLines: Sendable {
        let lines = Mutex<[String]>([])
        let heads = Mutex<[String]>([])
    }

    /// The request heads received so far (request line and headers).
    var requestHeads: [String] { log.heads.withLock { $0 } }

    /// Requests received so far.
    var requestCount: Int { log.lines.withLock { $0.count } }

    /// `reply` nil: accept nothing (the kernel still completes connections into the backlog);
    /// `listening` false: refuse every connection (the port stays taken, so no other test gets it).
    init(listening: Bool = true, reply: (@Sendable (String) -> [UInt8])?) throws {
        let (fd, port) = try Self.socket(listening: listening)
        self.fd = fd
        self.port = port
        serving = reply != nil
        guard let reply else { return }
        let listener = fd
        let thread = Thread { [log] in
            while true {
                let client = accept(listener, nil, nil)
                guard client >= 0 else {
                    // Shut down by deinit: only now may the number go (closed while this thread
                    // still used it, a new socket of another test could get it and be served here).
                    close(listener)
                    return
                }
                var request: [UInt8] = []
                var buffer = [UInt8](repeating: 0, count: 65536)
                while find(Array("\r\n\r\n".utf8), in: request) == nil {
                    let n = buffer.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, 0) }
                    if n <= 0 { break }
                    request += buffer[0..<n]
                }
                let head = String(decoding: request, as: UTF8.self)
                let line = String(head.prefix { $0 != "\r" })
                log.lines.withLock { $0.append(line) }
                log.heads.withLock { $0.append(head) }
                let answer = reply(line)
                _ = answer.withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                close(client)
            }
        }
        thread.start()
    }

    deinit {
        shutdown(fd, Int32(SHUT_RDWR))
        if !serving { close(fd) }
    }

    var endpoint: String { "http://127.0.0.1:\(port)" }

    /// A TCP socket bound to 127.0.0.1 on a free port (listening, unless told not to).
    static func socket(listening: Bool = true) throws -> (fd: Int32, port: Int) {
        let fd = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0, !listening || listen(fd, 16) == 0 else {
            close(fd)
            throw IOError("bind/listen", path: "127.0.0.1:0")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return (fd, Int(UInt16(bigEndian: address.sin_port)))
    }

    static func http(_ status: String, headers: [String] = [], body: [UInt8]) -> [UInt8] {
        let head = (["HTTP/1.1 \(status)", "Content-Length: \(body.count)", "Connection: close"] + headers).joined(separator: "\r\n") + "\r\n\r\n"
        return Array(head.utf8) + body
    }
}

/// Where `needle` first occurs in `haystack`.
private func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
    guard !needle.isEmpty, haystack.count >= needle.count else { return nil }
    for i in 0...(haystack.count - needle.count) where haystack[i] == needle[0] && Array(haystack[i..<(i + needle.count)]) == needle { return i }
    return nil
}

let faultSecret = "FaultSecret/abc+def/ghi"

func faultClient(endpoint: String, _ tune: (inout S3Client.Configuration) -> Void = { _ in }) throws -> S3Client {
    var configuration = S3Client.Configuration()
    configuration.connectTimeout = .seconds(2)
    configuration.lowSpeedTime = .seconds(1)
    tune(&configuration)
    return S3Client(location: try S3Location.parse("s3://bucket/prefix?endpoint=\(endpoint)&region=us-east-1", environment: [:]),
                    credentials: S3Credentials(accessKeyID: "FAULTKEY", secretAccessKey: faultSecret), configuration: configuration)
}

/// The client against servers that are down, silent or lying: every failure is an error naming the
/// object, retryable where a retry can help, and never a hang, a trap or a wrong answer.
@Suite struct S3FaultTests {
    @Test func aServerThatIsDownIsARetryableErrorNamingTheObject() async throws {
        let down = try FakeObjectStore(listening: false, reply: nil)
        let client = try faultClient(endpoint: down.endpoint)
        let error = await #expect(throws: S3Error.self) { try await client.get("bpi/0/00000000000000000000.segment") }
        #expect(error?.code == .unavailable)
        #expect(error?.isRetryable == true)
        #expect(error?.key == "prefix/bpi/0/00000000000000000000.segment")
        #expect(error?.message.contains("s3://bucket/prefix/bpi/0/00000000000000000000.segment") == true, "\(error?.message ?? "")")
        #expect(error?.message.contains(faultSecret) == false)
    }

    @Test func aServerThatAcceptsButNeverAnswersTimesOut() async throws {
        let silent = try FakeObjectStore(reply: nil)
        let client = try faultClient(endpoint: silent.endpoint)
        for operation in ["get", "put", "list"] {
            let error = await #expect(throws: S3Error.self, "\(operation)") {
                switch operation {
                case "get": _ = try await client.get("k")
                case "put": try await client.put("k", Array(repeating: 7, count: 100))
                default: _ = try await client.list()
                }
            }
            #expect(error?.code == .timedOut, "\(error?.message ?? "")")
            #expect(error?.isRetryable == true)
            #expect(error?.message.contains("no answer within the client's bounds") == true, "\(error?.message ?? "")")
        }
    }

    @Test func overloadIsRetryableAndAccessDeniedIsNot() async throws {
        let store = try FakeObjectStore { line in
            line.hasPrefix("GET /bucket/prefix/busy")
                ? FakeObjectStore.http("503 Slow Down", body: Array("<Error><Code>SlowDown</Code><Message>Reduce your request rate.</Message></Error>".utf8))
                : FakeObjectStore.http("403 Forbidden", body: Array("<Error><Code>AccessDenied</Code><Message>Access Denied.</Message></Error>".utf8))
        }
        let client = try faultClient(endpoint: store.endpoint)
        let busy = await #expect(throws: S3Error.self) { try await client.get("busy") }
        #expect(busy?.code == .unavailable && busy?.isRetryable == true && busy?.status == 503 && busy?.s3Code == "SlowDown")
        #expect(busy?.message.contains("HTTP 503 SlowDown: Reduce your request rate.") == true, "\(busy?.message ?? "")")
        let denied = await #expect(throws: S3Error.self) { try await client.get("mine") }
        #expect(denied?.code == .accessDenied && denied?.isRetryable == false && denied?.s3Code == "AccessDenied")
    }

    @Test func aServerEchoingTheSecretDoesNotGetItPrinted() async throws {
        let store = try FakeObjectStore { _ in
            FakeObjectStore.http("400 Bad Request", body: Array("<Error><Code>Weird</Code><Message>your secret is \(faultSecret)</Message></Error>".utf8))
        }
        let error = await #expect(throws: S3Error.self) { try await faultClient(endpoint: store.endpoint).get("k") }
        #expect(error?.code == .http && error?.status == 400)
        #expect(error?.message.contains(faultSecret) == false, "\(error?.message ?? "")")
        #expect(error?.message.contains("your secret is ***") == true, "\(error?.message ?? "")")
    }

    @Test func aListingThatNeverEndsIsAnErrorNotALoop() async throws {
        let page = "<ListBucketResult><IsTruncated>true</IsTruncated><Contents><Key>prefix/a</Key><Size>1</Size></Contents><NextContinuationToken>again</NextContinuationToken></ListBucketResult>"
        let store = try FakeObjectStore { _ in FakeObjectStore.http("200 OK", body: Array(page.utf8)) }
        let error = await #expect(throws: S3Error.self) { try await faultClient(endpoint: store.endpoint).list() }
        #expect(error?.code == .invalidResponse)
        #expect(error?.message.contains("without a new continuation token") == true, "\(error?.message ?? "")")
        #expect(store.requestCount == 2)
    }

    @Test func aListingOfKeysOutsideThePrefixIsRefused() async throws {
        let page = "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>other/a</Key><Size>1</Size></Contents></ListBucketResult>"
        let store = try FakeObjectStore { _ in FakeObjectStore.http("200 OK", body: Array(page.utf8)) }
        let error = await #expect(throws: S3Error.self) { try await faultClient(endpoint: store.endpoint).list() }
        #expect(error?.code == .invalidResponse && error?.message.contains("outside the prefix") == true)
    }

    @Test func anObjectLargerThanTheLimitIsRefusedNotBuffered() async throws {
        let store = try FakeObjectStore { _ in FakeObjectStore.http("200 OK", body: Array(repeating: 1, count: 3 << 20)) }
        let client = try faultClient(endpoint: store.endpoint) { $0.maxObjectBytes = 2 << 20 }
        let error = await #expect(throws: S3Error.self) { _ = try await client.get("huge") }
        #expect(error?.code == .invalidResponse && error?.message.contains("longer than") == true, "\(error?.message ?? "")")
    }

    @Test func aRangeAnswerWithOtherBytesThanAskedForIsRefused() async throws {
        let store = try FakeObjectStore { _ in
            FakeObjectStore.http("206 Partial Content", headers: ["Content-Range: bytes 0-9/100"], body: Array(repeating: 1, count: 10))
        }
        let error = await #expect(throws: S3Error.self) { try await faultClient(endpoint: store.endpoint).get("k", range: 50..<60) }
        #expect(error?.code == .invalidResponse && error?.message.contains("asked for bytes 50..<60") == true, "\(error?.message ?? "")")
    }

    @Test func aServerIgnoringRangeStillGivesTheBytesAskedFor() async throws {
        let store = try FakeObjectStore { _ in FakeObjectStore.http("200 OK", body: Array(0..<100)) }
        let client = try faultClient(endpoint: store.endpoint)
        #expect(try await client.get("k", range: 10..<13) == [10, 11, 12])
        #expect(try await client.get("k", range: 98..<200) == [98, 99])
        let beyond = await #expect(throws: S3Error.self) { try await client.get("k", range: 100..<101) }
        #expect(beyond?.code == .invalidRange)
    }

    @Test func requestsArePathStyleSignedForTheRegionAndCarryTheSessionToken() async throws {
        let store = try FakeObjectStore { _ in FakeObjectStore.http("200 OK", headers: ["ETag: \"abc\""], body: Array("hi".utf8)) }
        let client = S3Client(location: try S3Location.parse("s3://bucket/pre%20fix?endpoint=\(store.endpoint)&region=eu-central-1", environment: [:]),
                              credentials: S3Credentials(accessKeyID: "TOKENKEY", secretAccessKey: faultSecret, sessionToken: "Sess/Token+1"))
        #expect(try await client.get("a b/ü") == Array("hi".utf8))
        #expect(try await client.put("k", [1], condition: .ifAbsent) == "\"abc\"")
        let heads = store.requestHeads
        try #require(heads.count == 2)
        #expect(heads[0].hasPrefix("GET /bucket/pre%20fix/a%20b/%C3%BC HTTP/1.1\r\n"), "\(heads[0])")
        for head in heads {
            let lower = head.lowercased()
            #expect(lower.contains("\r\nx-amz-security-token: sess/token+1\r\n"), "\(head)")
            #expect(lower.contains("\r\nx-amz-content-sha256: unsigned-payload\r\n"))
            #expect(head.contains("Credential=TOKENKEY/"), "\(head)")
            #expect(head.contains("/eu-central-1/s3/aws4_request"))
            let signed = head.components(separatedBy: "SignedHeaders=").last?.prefix { $0 != "," } ?? ""
            #expect(signed.contains("x-amz-security-token"), "\(signed)")
            #expect(!head.contains(faultSecret))
        }
        #expect(heads[1].hasPrefix("PUT /bucket/pre%20fix/k HTTP/1.1\r\n"))
        #expect(heads[1].lowercased().contains("\r\nif-none-match: *\r\n"))
    }

    @Test func aPutOnAKeptConnectionTheServerDropsIsResentWhole() async throws {
        let store = try DroppingObjectStore()
        let client = try faultClient(endpoint: store.endpoint) { $0.lowSpeedTime = .seconds(10) }
        try await client.put("first", Array("one".utf8))
        let body = (0..<70_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try await client.put("second", body)  // sent on the kept connection, dropped, resent
        let bodies = store.bodies.withLock { $0 }
        #expect(bodies.count == 2, "\(bodies.map(\.count))")
        #expect(bodies.last == body)
        #expect(store.dropped.withLock { $0 } == 1)
    }

    @Test func aBadKeyIsRefusedBeforeAnyRequest() async throws {
        let store = try FakeObjectStore { _ in FakeObjectStore.http("200 OK", body: []) }
        let client = try faultClient(endpoint: store.endpoint)
        for key in ["", "a\nb", String(repeating: "k", count: 1025)] {
            let error = await #expect(throws: S3Error.self) { try await client.put(key, [1]) }
            #expect(error?.code == .invalidLocation)
        }
        #expect(store.requestCount == 0)
    }
}
#endif

#if S3
/// A server that keeps connections open, answers the first request of each, and drops the
/// second one unanswered after reading it (closing the connection), the way a server drops an
/// idle connection just as a client reuses it.
final class DroppingObjectStore: @unchecked Sendable {
    // Safe to share: `fd` and `port` are set once in init; the rest is behind Mutexes.
    let port: Int
    private let fd: Int32
    let bodies = Mutex<[[UInt8]]>([])
    let dropped = Mutex(0)

    init() throws {
        (fd, port) = try FakeObjectStore.socket()
        let fd = fd
        Thread { [self] in
            while true {
                let client = accept(fd, nil, nil)
                guard client >= 0 else {
                    close(fd)
                    return
                }
                Thread { self.serve(client) }.start()
            }
        }.start()
    }

    deinit { shutdown(fd, Int32(SHUT_RDWR)) }

    var endpoint: String { "http://127.0.0.1:\(port)" }

    private func serve(_ client: Int32) {
        defer { close(client) }
        var pending: [UInt8] = []
        var served = 0
        while true {
            // The head, then as many body bytes as Content-Length says.
            guard let headEnd = Self.read(client, &pending, until: { buffer in find(Array("\r\n\r\n".utf8), in: buffer) }) else { return }
            let head = String(decoding: pending[..<headEnd], as: UTF8.self).lowercased()
            let length = head.components(separatedBy: "\r\n").first { $0.hasPrefix("content-length:") }
                .flatMap { Int($0.dropFirst(15).trimmingCharacters(in: .whitespaces)) } ?? 0
            let expects = head.contains("\r\nexpect: 100-continue")
            if expects && served == 0 {
                let proceed = Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)
                _ = proceed.withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            }
            guard Self.read(client, &pending, until: { $0.count >= headEnd + 4 + length ? headEnd + 4 + length : nil }) != nil else { return }
            if served == 1 {
                // Read the whole body (libcurl sends it when no 100 Continue came within a
                // second), then go without a word: libcurl must rewind it to resend.
                dropped.withLock { $0 += 1 }
                return
            }
            if head.hasPrefix("put ") { bodies.withLock { $0.append(Array(pending[(headEnd + 4)..<(headEnd + 4 + length)])) } }
            pending.removeFirst(headEnd + 4 + length)
            let answer = Array("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nETag: \"e\"\r\n\r\n".utf8)
            _ = answer.withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            served += 1
        }
    }

    /// Reads into `buffer` until `done` finds what it wants (its answer), or the peer closes (nil).
    private static func read(_ fd: Int32, _ buffer: inout [UInt8], until done: ([UInt8]) -> Int?) -> Int? {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            if let found = done(buffer) { return found }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return nil }
            buffer += chunk[0..<n]
        }
    }
}
#endif
