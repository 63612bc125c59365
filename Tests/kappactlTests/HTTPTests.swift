import Foundation
import Testing
@testable import KappaCore

#if canImport(Glibc)
import Glibc
#endif

/// A raw HTTP/1.1 exchange over a socket (so that malformed requests can be sent too).
struct HTTPExchange {
    var status: Int
    var headers: [String: String]
    var body: String

    /// A connected socket to 127.0.0.1:`port`.
    static func connect(port: Int, timeout: Int = 10) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        var tv = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let connected = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard connected == 0 else {
            close(fd)
            throw IOError("connect", path: "127.0.0.1:\(port)")
        }
        return fd
    }

    static func send(port: Int, _ request: String, timeout: Int = 10) throws -> HTTPExchange {
        let fd = try connect(port: port, timeout: timeout)
        defer { close(fd) }
        let bytes = Array(request.utf8)
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var response: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            response += buffer[0..<n]
        }
        let text = String(decoding: response, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { throw IOError("read response", path: "127.0.0.1:\(port)", code: EPROTO) }
        var lines = text[..<split.lowerBound].components(separatedBy: "\r\n")
        let status = Int(lines.removeFirst().split(separator: " ")[1])!
        var headers: [String: String] = [:]
        for line in lines { if let c = line.firstIndex(of: ":") { headers[line[..<c].lowercased()] = line[line.index(after: c)...].trimmingCharacters(in: .whitespaces) } }
        return HTTPExchange(status: status, headers: headers, body: String(text[split.upperBound...]))
    }

    static func get(port: Int, _ path: String, headers: String = "") throws -> HTTPExchange {
        try send(port: port, "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n\(headers)\r\n")
    }
}

/// Prometheus' text exposition format, parsed strictly enough to catch what scrapers reject.
struct PrometheusParser {
    struct Sample: Equatable { var name: String; var labels: [String: String]; var value: Double }
    var samples: [Sample] = []
    var types: [String: String] = [:]

    init(_ text: String) throws {
        struct Bad: Error, CustomStringConvertible { var description: String }
        var current: String?
        var done: Set<String> = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) where !line.isEmpty {
            if line.hasPrefix("# HELP ") || line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ", maxSplits: 3)
                guard parts.count >= 3 else { throw Bad(description: "bad comment: \(line)") }
                let name = String(parts[2])
                if line.hasPrefix("# TYPE ") {
                    guard parts.count == 4, ["gauge", "counter", "histogram", "summary", "untyped"].contains(parts[3]) else { throw Bad(description: "bad TYPE: \(line)") }
                    guard types[name] == nil else { throw Bad(description: "TYPE twice for \(name)") }
                    types[name] = String(parts[3])
                }
                if current != name, let previous = current { done.insert(previous) }
                guard !done.contains(name) else { throw Bad(description: "\(name) is not one group") }
                current = name
                continue
            }
            guard !line.hasPrefix("#") else { continue }
            var rest = Substring(line)
            let name = String(rest.prefix { $0.isLetter || $0.isNumber || $0 == "_" || $0 == ":" })
            guard !name.isEmpty, !name.first!.isNumber else { throw Bad(description: "bad metric name: \(line)") }
            rest = rest.dropFirst(name.count)
            var labels: [String: String] = [:]
            if rest.first == "{" {
                rest = rest.dropFirst()
                while rest.first != "}" {
                    let key = String(rest.prefix { $0.isLetter || $0.isNumber || $0 == "_" })
                    rest = rest.dropFirst(key.count)
                    guard !key.isEmpty, rest.hasPrefix("=\"") else { throw Bad(description: "bad label in: \(line)") }
                    rest = rest.dropFirst(2)
                    var value = ""
                    while let c = rest.first, c != "\"" {
                        rest = rest.dropFirst()
                        if c == "\\" {
                            guard let e = rest.first else { throw Bad(description: "bad escape: \(line)") }
                            rest = rest.dropFirst()
                            switch e { case "\\": value.append("\\"); case "\"": value.append("\""); case "n": value.append("\n")
                            default: throw Bad(description: "bad escape \\\(e): \(line)") }
                        } else { value.append(c) }
                    }
                    guard rest.first == "\"" else { throw Bad(description: "unterminated label: \(line)") }
                    rest = rest.dropFirst()
                    labels[key] = value
                    if rest.first == "," { rest = rest.dropFirst() }
                }
                rest = rest.dropFirst()
            }
            guard rest.first == " " else { throw Bad(description: "no value: \(line)") }
            let valueText = rest.dropFirst().split(separator: " ")[0]
            guard let value = Double(valueText) ?? (valueText == "+Inf" ? Double.infinity : nil) else { throw Bad(description: "bad value: \(line)") }
            let family = ["_bucket", "_sum", "_count"].first { name.hasSuffix($0) && types[String(name.dropLast($0.count))] == "histogram" }
                .map { String(name.dropLast($0.count)) } ?? name
            guard family == current else { throw Bad(description: "\(name) outside its family's group (after \(current ?? "nothing"))") }
            samples.append(Sample(name: name, labels: labels, value: value))
        }
    }

    func value(_ name: String, _ labels: [String: String]) -> Double? {
        samples.first { $0.name == name && $0.labels == labels }?.value
    }
}

@Suite(.serialized) struct HTTPTests {
    /// The port a JobHost started with `--http 127.0.0.1:0` says it listens on.
    static func port(of host: Child) async throws -> Int {
        var port = 0
        try await WorkflowTests.waitUntil("JobHost listens") {
            let log = host.output().stderr
            guard let range = log.range(of: "http listening url=http://127.0.0.1:") else { return false }
            port = Int(log[range.upperBound...].prefix { $0.isNumber }) ?? 0
            return port > 0
        }
        return port
    }

    /// A JobHost with `--http` on a free port, the demo's v1 serving.
    static func host(_ box: Sandbox, _ extra: [String] = []) async throws -> (Child, Int) {
        try await box.kappactl(["demo", "produce", "--minutes", "20"])
        let host = try box.start(Executables.jobHost, ["--state", box.state, "--http", "127.0.0.1:0"] + extra)
        let port = try await port(of: host)
        #expect(try await box.kappactl(["deploy", "-f", WorkflowTests.root + "/Manifests/btc-v1.json", "--wait", "--timeout", "60s"]).status == 0)
        return (host, port)
    }

    @Test func endpointsServeStatusHistoryMetricsAndThePage() async throws {
        let box = try Sandbox()
        let (host, port) = try await Self.host(box)
        defer { kill(host.process.processIdentifier, SIGKILL) }

        let page = try HTTPExchange.get(port: port, "/")
        #expect(page.status == 200)
        #expect(page.headers["content-type"] == "text/html; charset=utf-8")
        #expect(page.body.contains("<title>Kappa</title>"))
        #expect(!page.body.contains("http://") && !page.body.contains("https://"))  // self-contained

        let status = try HTTPExchange.get(port: port, "/api/status")
        #expect(status.status == 200 && status.headers["content-type"] == "application/json")
        let report = try JSONDecoder().decode(StatusReport.self, from: Data(status.body.utf8))
        let cli = try await WorkflowTests.status(box, nil)
        #expect(report.jobs.map(\.name) == cli.jobs.map(\.name))
        #expect(report.jobs[0].versions.map(\.state) == cli.jobs[0].versions.map(\.state))
        #expect(report.jobs[0].serving == 1 && report.hosts == cli.hosts)

        let history = try HTTPExchange.get(port: port, "/api/jobs/btc/history")
        #expect(history.body + "\n" == (try await box.kappactl(["history", "btc", "--output", "json"])).stdout)

        let rows = try HTTPExchange.get(port: port, "/api/jobs/btc/rows?limit=5")
        let parsed = try JSONSerialization.jsonObject(with: Data(rows.body.utf8)) as! [String: Any]
        #expect(parsed["columns"] as? [String] == ["currency", "minute", "samples", "avg_rate"])
        #expect((parsed["rows"] as? [Any])?.count == 5)

        let metrics = try HTTPExchange.get(port: port, "/metrics")
        #expect(metrics.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8")
        let prom = try PrometheusParser(metrics.body)
        #expect(prom.value("kappa_version_state", ["kappa_job": "btc", "version": "1", "state": "serving"]) == 1)
        #expect(prom.value("kappa_version_state", ["kappa_job": "btc", "version": "1", "state": "replaying"]) == 0)
        #expect(prom.value("kappa_version_lag_records", ["kappa_job": "btc", "version": "1", "partition": "0"]) == 0)
        #expect(prom.value("kappa_records_processed_total", ["kappa_job": "btc", "version": "1"]) == 3600)
        #expect(prom.value("kappa_switches_total", ["kappa_job": "btc"]) == 1)
        #expect(prom.types["kappa_catalog_commit_seconds"] == "histogram")
        let buckets = prom.samples.filter { $0.name == "kappa_catalog_commit_seconds_bucket" }
        #expect(buckets.map(\.value) == buckets.map(\.value).sorted())  // cumulative
        #expect(buckets.last?.labels == ["le": "+Inf"] && buckets.last?.value == prom.value("kappa_catalog_commit_seconds_count", [:]))
        #expect(prom.samples.allSatisfy { $0.name.hasPrefix("kappa_") })
        // Prometheus's conventions: no label a scrape renames (its target label is `job`), every
        // counter there from the start (no failure yet: 0), and promtool finds nothing to fix.
        #expect(!prom.samples.contains { $0.labels["job"] != nil })
        #expect(prom.value("kappa_worker_failures_total", ["kappa_job": "btc"]) == 0)
        #expect(prom.value("kappa_dead_lettered_records_total", ["kappa_job": "btc", "version": "1"]) == 0)
        #expect(prom.types["kappa_version_replay_records_per_second"] == "gauge")
        try await Self.promtoolFindsNothing(metrics.body)

        // Errors: each its proper status.
        #expect(try HTTPExchange.get(port: port, "/nope").status == 404)
        #expect(try HTTPExchange.get(port: port, "/api/jobs/nojob/history").status == 404)
        #expect(try HTTPExchange.get(port: port, "/api/jobs/btc/rows?limit=lots").status == 400)
        let post = try HTTPExchange.send(port: port, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        #expect(post.status == 405 && post.headers["allow"] == "GET, HEAD")
        #expect(try HTTPExchange.send(port: port, "HELLO\r\n\r\n").status == 400)
        #expect(try HTTPExchange.send(port: port, "GET / HTTP/1.1\r\nX-Pad: \(String(repeating: "a", count: 20_000))\r\n\r\n").status == 431)

        // A client that connects and sends nothing holds up no one else.
        let idle = try HTTPExchange.connect(port: port)
        defer { close(idle) }
        #expect(try HTTPExchange.get(port: port, "/api/status").status == 200)
    }

    @Test func aTokenIsCheckedOnEveryRequestAndRemoteNeedsOne() async throws {
        let box = try Sandbox()
        let token = "a-long-enough-token-123"
        let (host, port) = try await Self.host(box, ["--http-token", token])
        defer { kill(host.process.processIdentifier, SIGKILL) }
        let refused = try HTTPExchange.get(port: port, "/metrics")
        #expect(refused.status == 401 && refused.headers["www-authenticate"] == "Bearer")
        #expect(try HTTPExchange.get(port: port, "/api/status", headers: "Authorization: Bearer wrong\r\n").status == 401)
        #expect(try HTTPExchange.get(port: port, "/api/status", headers: "Authorization: Bearer \(token)\r\n").status == 200)
        #expect(try HTTPExchange.get(port: port, "/?token=\(token)").status == 200)

        let remote = try await box.run(Executables.jobHost, ["--state", box.state, "--http", "0.0.0.0:0"])
        #expect(remote.status == 2)
        #expect(remote.stderr.contains("error: --http 0.0.0.0: not a loopback address; add --http-allow-remote (with a token) to listen there"))
        let tokenless = try await box.run(Executables.jobHost, ["--state", box.state, "--http", "0.0.0.0:0", "--http-allow-remote"], environment: ["KAPPA_HTTP_TOKEN": ""])
        #expect(tokenless.status == 2)
        #expect(tokenless.stderr.contains("needs --http-token (or KAPPA_HTTP_TOKEN) of at least 16 characters"))
    }

    /// Slowloris: 40 clients (more than the 32 requests handled at once) that send a byte a
    /// second and never finish their heads. A token holder still gets its answer, and each slow
    /// client is closed at the head deadline (5 s), long before its own 20 s read timeout. The
    /// token is given in a file, not in argv.
    @Test func slowClientsCannotKeepATokenHolderOut() async throws {
        let box = try Sandbox()
        let token = "a-long-enough-token-123"
        try (token + "\n").write(toFile: box.root + "/token", atomically: true, encoding: .utf8)
        let (host, port) = try await Self.host(box, ["--http-token-file", box.root + "/token"])
        defer { kill(host.process.processIdentifier, SIGKILL) }
        let slow = try (0..<40).map { _ in try HTTPExchange.connect(port: port, timeout: 20) }
        defer { for fd in slow { close(fd) } }
        let trickle = Task.detached {
            for second in 0..<8 {
                for fd in slow {
                    var byte = Array("GET / HTTP/1.1\r\n".utf8)[second % 16]
                    _ = Glibc.send(fd, &byte, 1, Int32(MSG_NOSIGNAL))
                }
                try? await Task.sleep(for: .seconds(1))
            }
        }
        try await Task.sleep(for: .seconds(2))
        #expect(try HTTPExchange.get(port: port, "/api/status", headers: "Authorization: Bearer \(token)\r\n").status == 200)
        #expect(try HTTPExchange.get(port: port, "/api/status").status == 401)
        await trickle.value
        for fd in slow {
            var buffer = [UInt8](repeating: 0, count: 4096)
            var received: [UInt8] = []
            var n = 0
            repeat {
                n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n > 0 { received += buffer[0..<n] }
            } while n > 0
            let timedOut = n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)
            #expect(!timedOut, "a slow client was still open after 20 s")
            if !received.isEmpty { #expect(String(decoding: received, as: UTF8.self).hasPrefix("HTTP/1.1 408 ")) }
        }
    }

    /// Every slot taken by clients that never finish their heads: a new connection takes the
    /// slot of the oldest (closed at once, long before its head deadline), and is answered.
    @Test func whenEverySlotIsTakenTheOldestUnfinishedHeadMakesRoom() async throws {
        let server = try HTTPServer(host: "127.0.0.1", port: 0, headDeadlineMs: 60_000, maxPending: 4) { _ in .text(200, "ok") }
        let running = Task { await server.run() }
        defer { running.cancel() }
        let slow = try (0..<4).map { _ in try HTTPExchange.connect(port: server.port, timeout: 20) }
        defer { for fd in slow { close(fd) } }
        for fd in slow { _ = Array("GET / HT".utf8).withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } }
        #expect(try HTTPExchange.get(port: server.port, "/").status == 200)
        var byte: UInt8 = 0
        let oldest = recv(slow[0], &byte, 1, 0)  // waits up to 20 s
        #expect(oldest == 0 || (oldest < 0 && errno == ECONNRESET), "the oldest slow client is still open")
        for fd in slow.dropFirst() {
            let n = recv(fd, &byte, 1, Int32(MSG_DONTWAIT))
            #expect(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK), "a younger slow client was closed")
        }
    }
}

extension HTTPTests {
    /// `promtool check metrics` (Debian's `prometheus` package, which scripts/test installs)
    /// over an exposition: no lint problems. Skipped, saying so, without promtool.
    static func promtoolFindsNothing(_ exposition: String) async throws {
        guard let promtool = ["/usr/bin/promtool", "/usr/local/bin/promtool"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            print("HTTPTests: promtool is not installed; the exposition was not linted (apt-get install prometheus)")
            return
        }
        let checked = try await Sandbox().run(promtool, ["check", "metrics"], stdin: exposition)
        #expect(checked.status == 0, "promtool: \(checked.stdout)\(checked.stderr)")
        #expect(checked.stdout.isEmpty && checked.stderr.isEmpty, "promtool: \(checked.stdout)\(checked.stderr)")
    }
}
