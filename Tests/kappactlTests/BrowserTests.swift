import Foundation
import Testing
@testable import KappaCore

/// JobHost's page in headless Chromium (Debian's package, which scripts/test installs): the
/// DOM after the page's script has run shows the versions and charts with data. A screenshot is
/// kept as `.build/kappa-page.png` for people to look at.
/// The headless browser, if this machine has one.
let installedChromium: String? = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
    .first { FileManager.default.isExecutableFile(atPath: $0) }

@Suite(.serialized, .enabled(if: installedChromium != nil, "Chromium is not installed (scripts/test installs Debian's chromium when it can)"))
struct BrowserTests {
    static var chromium: String? { installedChromium }

    static func browse(_ box: Sandbox, _ args: [String]) async throws -> RunResult {
        try await box.run(chromium!, ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1000,800",
                                      "--virtual-time-budget=6000"] + args)
    }

    @Test func thePageShowsTheVersionsAndChartsWithData() async throws {
        let box = try Sandbox()
        let (host, port) = try await HTTPTests.host(box)
        defer { kill(host.process.processIdentifier, SIGKILL) }
        // v2 replays beside the serving v1.
        #expect(try await box.kappactl(["deploy", "-f", WorkflowTests.root + "/Manifests/btc-v2.json"]).status == 0)
        try await WorkflowTests.waitUntil("v2 has caught up") { try await WorkflowTests.status(box, "btc").jobs[0].versions[1].state == .caughtUp }

        let url = "http://127.0.0.1:\(port)/"
        let dom = try await Self.browse(box, ["--dump-dom", url])
        #expect(dom.status == 0)
        #expect(dom.stdout.contains(#"<tr class="version" data-version="1" data-state="serving">"#))
        #expect(dom.stdout.contains(#"<tr class="version" data-version="2" data-state="caughtUp">"#))
        #expect(dom.stdout.contains("★ 1"))
        // The lag chart and the EUR price chart, each drawn from several points.
        let charts = dom.stdout.components(separatedBy: #"<svg class="chart" data-points=""#).dropFirst().compactMap { Int($0.prefix { $0.isNumber }) }
        #expect(charts.count == 2)
        #expect(charts.allSatisfy { $0 > 1 })
        #expect(dom.stdout.contains("EUR price from the serving view btc_prices"))
        // A time axis on each chart, times in UTC as the CLI writes them, the hosts, the history.
        let ticks = try Regex(##"<text class="tick" x="[0-9.]+" y="[0-9]+" font-size="10" fill="#6a7180">[0-9: -]+</text>"##)
        #expect(dom.stdout.matches(of: ticks).count == 10, "\(dom.stdout.suffix(3000))")
        #expect(dom.stdout.range(of: #"updated \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"#, options: .regularExpression) != nil)
        #expect(dom.stdout.contains("JobHost: JobHost@") && dom.stdout.contains("(controller, "), "\(dom.stdout.prefix(2000))")
        #expect(dom.stdout.contains(#"<table class="history">"#))
        #expect(dom.stdout.contains("first version of the job: serves once caught up"))
        // v2 promoted: the bake's progress shows.
        #expect(try await box.kappactl(["promote", "btc"]).status == 0)
        let baking = try await Self.browse(box, ["--dump-dom", url])
        #expect(baking.stdout.range(of: #"<span class="bake muted">(baking \d+/5, 0 failures, ends|analysis passed)"#, options: .regularExpression) != nil,
                "\(baking.stdout.prefix(3000))")

        let screenshot = WorkflowTests.root + "/.build/kappa-page.png"
        let shot = try await Self.browse(box, ["--screenshot=\(screenshot)", url])
        #expect(shot.status == 0)
        #expect((FileSystem.size(screenshot) ?? 0) > 10_000)

        // Last, as the plan deals partitions to every live host: another host's problem (what
        // its heartbeat says it keeps failing at) shows on this host's page as kappactl status
        // says it, and an error text from a server is text there, not markup.
        let now = currentTimeMillis()
        let problem = HostProblem(subject: "mirror of bpi", error: "PUT s3://b/k: HTTP 503 <img src=x onerror=alert(1)>", since: now - 65_000, retryAt: now + 8_000)
        try await Store.sqlite(state: StateDirectory(path: box.state)).heartbeat(owner: "JobHost@elsewhere:9", pid: 9, startedAt: now - 100_000, problems: [problem])
        let failing = try await Self.browse(box, ["--dump-dom", url])
        let line = try Regex(#"<p class="err">JobHost@elsewhere:9: mirror of bpi failing since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, retrying at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC: PUT s3://b/k: HTTP 503 &lt;img src=x onerror=alert\(1\)&gt;</p>"#)
        #expect(failing.stdout.contains(line), "\(failing.stdout.prefix(3000))")
        #expect(!failing.stdout.contains("<img"))
    }
}
