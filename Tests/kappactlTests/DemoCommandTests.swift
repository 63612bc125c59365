import Foundation
import Testing
@testable import KappaCore

@Suite struct DemoCommandTests {
    @Test func demoRunsInATemporaryDirectoryAndCleansUp() throws {
        let box = try Sandbox()
        let tmp = box.root + "/tmp"
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        let process = try box.run(Executables.kappactl, ["demo", "--minutes", "2"], environment: ["TMPDIR": tmp])
        #expect(process.status == 0)
        #expect(process.stdout.contains("2. Produced 2 minutes of Bitcoin Price Index history: 360 ticks"))
        #expect(process.stdout.contains("7. Promoted v2"))
        #expect(process.stdout.contains("10. Retired v1"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: tmp).isEmpty)
    }

    @Test func demoWithAStateDirectoryKeepsItForInspection() throws {
        let box = try Sandbox()
        let result = try box.kappactl(["demo", "--minutes", "1", "--seed", "9"])
        #expect(result.status == 0)
        #expect(result.stdout.contains("State kept in \(box.state)."))
        let status = try box.kappactl(["status", "btc"])
        #expect(status.stdout.hasPrefix("job btc: view btc_prices on topic bpi, serving version 2"))
        let consumed = try box.kappactl(["consume", "bpi", "--limit", "3"])
        #expect(consumed.lines.count == 3)
        #expect(consumed.lines[0].contains(#""currency": ""#))
    }
}
