import Foundation
import Testing
@testable import KappaCore

@Suite struct DemoCommandTests {
    @Test func demoRunsInATemporaryDirectoryAndCleansUp() async throws {
        let box = try Sandbox()
        let tmp = box.root + "/tmp"
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        let process = try await box.run(Executables.kappactl, ["demo", "--minutes", "2"], environment: ["TMPDIR": tmp])
        #expect(process.status == 0)
        #expect(process.stdout.contains("2. Produced 2 minutes of Bitcoin Price Index history: 360 ticks"))
        #expect(process.stdout.contains("7. Promoted v2"))
        #expect(process.stdout.contains("10. Retired v1"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: tmp).isEmpty)
    }

    @Test func demoWithAStateDirectoryKeepsItForInspection() async throws {
        let box = try Sandbox()
        let result = try await box.kappactl(["demo", "--minutes", "1", "--seed", "9"])
        #expect(result.status == 0)
        #expect(result.stdout.contains("State kept in \(box.state)."))
        let status = try await box.kappactl(["status", "btc"])
        #expect(status.stdout.hasPrefix("job btc: view btc_prices on topic bpi, serving version 2"))
        let consumed = try await box.kappactl(["consume", "bpi", "--limit", "3"])
        #expect(consumed.lines.count == 3)
        #expect(consumed.lines[0].contains(#""currency": ""#))
    }

    @Test func demoProduceWritesHistoryThenLiveTicksUntilInterrupted() async throws {
        let box = try Sandbox()
        let history = try await box.kappactl(["demo", "produce", "--minutes", "1"])
        #expect(history.stdout == "appended 180 ticks of history (1 minutes) to \"bpi\"\n")
        let live = try box.start(Executables.kappactl, ["--state", box.state, "demo", "produce", "--rate", "50"])
        try await WorkflowTests.waitUntil("live ticks arrive") { try await box.kappactl(["consume", "bpi"]).lines.count > 180 + 9 }
        kill(live.process.processIdentifier, SIGINT)
        let result = await live.finish(timeout: 20)
        #expect(result.status == 0)
        let records = try await box.kappactl(["consume", "bpi"]).lines
        #expect(records.count > 180 + 9)
        #expect(records.count % 3 == 0)  // whole ticks: one per currency each time
    }
}
