import Foundation
import Testing
@testable import KappaCore

/// Writers and readers in different processes on one log directory.
@Suite struct CrossProcessTests {
    @Test func aReaderInThisProcessSeesWholeRecordsWhileAnotherProcessAppends() async throws {
        let box = try Sandbox()
        try await box.kappactl(["topic", "create", "t", "-p", "1", "--segment-bytes", "65536"])
        let producer = try box.start(Executables.kappactl, ["--state", box.state, "produce", "t", "--raw"])
        let total = 20_000
        let writer = Task.detached {
            for chunk in 0..<100 {
                let lines = (0..<200).map { "line-\(chunk * 200 + $0)-" + String(repeating: "x", count: ($0 * 7) % 90) }
                try producer.write(lines.joined(separator: "\n") + "\n")
                try await Task.sleep(for: .microseconds(2_000))
            }
            try producer.closeInput()
        }
        let log = try SegmentLog(state: StateDirectory(path: box.state))
        var offset: Int64 = 0
        var sawWriterMidway = false
        let deadline = Date().addingTimeInterval(60)
        while offset < Int64(total) && Date() < deadline {
            let records = try await log.read(topic: "t", partition: 0, from: offset, maxRecords: 777, maxBytes: 64 << 10)
            if !records.isEmpty && producer.process.isRunning && records.nextOffset < Int64(total) { sawWriterMidway = true }
            for record in records {
                let text = String(decoding: record.value ?? [], as: UTF8.self)
                let n = Int(record.offset)
                #expect(text == "line-\(n)-" + String(repeating: "x", count: ((n % 200) * 7) % 90), "offset \(record.offset)")
            }
            offset = records.nextOffset
            if records.isEmpty { try await Task.sleep(for: .microseconds(1_000)) }
        }
        try await writer.value
        let result = await producer.finish()
        #expect(result.status == 0, "producer said: \(result.stderr)")
        #expect(offset == Int64(total))
        #expect(sawWriterMidway)  // the reader really overlapped the writer
        #expect(try await log.describe(topic: "t")[0].segments > 10)
    }

    @Test func twoProducerProcessesShareAPartitionWithoutLosingOrder() async throws {
        let box = try Sandbox()
        try await box.kappactl(["topic", "create", "t", "-p", "1", "--segment-bytes", "32768"])
        let children = try ["a", "b"].map { name in
            (name, try box.start(Executables.kappactl, ["--state", box.state, "produce", "t", "--raw"]))
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (name, child) in children {
                group.addTask {
                    for chunk in 0..<50 {
                        try child.write((0..<100).map { "\(name)-\(chunk * 100 + $0)" }.joined(separator: "\n") + "\n")
                        try await Task.sleep(for: .microseconds(1_000))
                    }
                    try child.closeInput()
                }
            }
            try await group.waitForAll()
        }
        for (_, child) in children { #expect(await child.finish().status == 0) }
        let log = try SegmentLog(state: StateDirectory(path: box.state))
        var offset: Int64 = 0
        var values: [String] = []
        while true {
            let records = try await log.read(topic: "t", partition: 0, from: offset, maxRecords: 1000, maxBytes: 1 << 20)
            if records.isEmpty { break }
            #expect(records.first?.offset == offset)
            values += records.map { String(decoding: $0.value ?? [], as: UTF8.self) }
            offset = records.nextOffset
        }
        #expect(values.count == 10_000)
        for name in ["a", "b"] {
            #expect(values.filter { $0.hasPrefix("\(name)-") } == (0..<5000).map { "\(name)-\($0)" })
        }
    }

    @Test func consumeFollowSeesRecordsAppendedByAnotherProcess() async throws {
        let box = try Sandbox()
        try await box.kappactl(["topic", "create", "t", "-p", "2"])
        let follower = try box.start(Executables.kappactl, ["--state", box.state, "consume", "t", "--follow", "--from-beginning", "--limit", "50"])
        let log = try SegmentLog(state: StateDirectory(path: box.state))
        for i in 0..<5 {
            _ = try await log.append(topic: "t", records: (0..<10).map { ProducerRecord(value: Array("{\"n\":\(i * 10 + $0)}".utf8)) })
            try await Task.sleep(for: .milliseconds(50))
        }
        let result = await follower.finish(timeout: 30)
        #expect(result.status == 0)
        #expect(result.lines.count == 50)
        let numbers = result.lines.compactMap { line -> Int? in
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return nil }
            return (object["value"] as? [String: Any])?["n"] as? Int
        }
        #expect(Set(numbers) == Set(0..<50))
    }
}

@Suite struct JobHostTests {
    @Test func jobHostAppliesRetentionAndStopsOnSIGTERM() async throws {
        let box = try Sandbox()
        try await box.kappactl(["topic", "create", "t", "-p", "1", "--retention", "4s", "--segment-bytes", "1024"])
        for batch in 0..<5 {
            try await box.kappactl(["produce", "t", "--raw"], stdin: (0..<20).map { "record-\(batch)-\($0)" }.joined(separator: "\n"))
        }
        // (On a loaded machine produce itself may already have deleted the oldest segments: it
        // applies retention when a segment fills.)
        let produced = try await SegmentLog(state: StateDirectory(path: box.state)).offsets(topic: "t")[0]
        #expect(produced.end == 100 && produced.earliest < 80)
        try await Task.sleep(for: .milliseconds(4100))
        let host = try box.start(Executables.jobHost, ["--state", box.state, "--retention-interval", "100ms"])
        let deadline = Date().addingTimeInterval(20)
        var earliest: Int64 = 0
        while earliest < 80 && Date() < deadline {
            try await Task.sleep(for: .milliseconds(50))
            earliest = try await SegmentLog(state: StateDirectory(path: box.state)).offsets(topic: "t")[0].earliest
        }
        #expect(earliest == 80)  // every closed segment expired; the active one (the last batch) stays
        kill(host.process.processIdentifier, SIGTERM)
        let result = await host.finish(timeout: 20)
        #expect(result.status == 0)
        #expect(result.stderr.contains("info retention segmentsDeleted="))
        #expect(result.stderr.contains("info shutting down signal=SIGTERM"))
    }
}

/// The reader view switching while `kappactl query` reads it from other processes.
@Suite struct ViewSwitchAcrossProcessesTests {
    @Test func readersInOtherProcessesSeeOneWholeVersion() async throws {
        let box = try Sandbox()
        try await box.kappactl(["topic", "create", "bpi", "-p", "2"])
        try await box.kappactl(["produce", "bpi"], stdin: WorkflowTests.feedLines(seed: 8, startMinute: 28_000_000, seconds: 600))
        let state = try StateDirectory(path: box.state)
        let log = try SegmentLog(state: state)
        let store = try Store.sqlite(state: state)
        for (version, text) in [(1, StoreFixtureText.exact(batch: 500)),
                                (2, StoreFixtureText.exact(batch: 500).replacingOccurrences(of: "\"version\": 1", with: "\"version\": 2")
                                    .replacingOccurrences(of: "count(*), sum", with: "3 * count(*), sum"))] {
            let spec = try ManifestParser.parse(text)
            _ = try await store.registerVersion(spec, manifest: text, startOffsets: [0, 0], actor: "test", reason: "test")
            try await store.transition(job: "t", version: version, from: .pending, to: .replaying, reason: "test", actor: "test", error: nil)
            try await VersionRunner(log: log, store: store, job: StreamJobs.make(spec)).run(.untilEnd)
        }
        try await store.switchView(job: "t", to: 1)
        let totals = { (table: String) in try await store.query("SELECT count(*) || '/' || sum(samples) || '/' || sum(cents) FROM \(table)").rows[0][0].display }
        let one = try await totals("ticks__v1"), two = try await totals("ticks__v2")
        #expect(one != two)
        let script = "for i in $(seq 40); do \(Executables.kappactl) --state \(box.state) query t \"SELECT count(*) || '/' || sum(samples) || '/' || sum(cents) FROM ticks\" || echo FAILED; done"
        let readers = try (0..<2).map { _ in try box.start("/bin/sh", ["-c", script]) }
        var switches = 0
        while readers.contains(where: { $0.process.isRunning }) {
            try await store.switchView(job: "t", to: switches % 2 == 0 ? 2 : 1)
            switches += 1
        }
        for reader in readers {
            let result = await reader.finish()
            let values = result.lines.map { $0.trimmingCharacters(in: .whitespaces) }.filter { $0.first?.isNumber == true }
            #expect(!result.stdout.contains("FAILED"), "\(result.stderr)")
            #expect(values.count == 40)
            #expect(values.allSatisfy { $0 == one || $0 == two }, "\(Set(values))")
        }
        #expect(switches > 10)
    }
}
