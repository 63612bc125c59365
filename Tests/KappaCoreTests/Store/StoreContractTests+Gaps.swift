import Foundation
import Testing
@testable import KappaCore

/// A recorded gap of the embedded log (`kappactl topic repair --accept-loss`) met by a replay on
/// every store: the version fails naming the range, unless its manifest says `source.allowGaps`;
/// then it skips the gap, recorded in its history, and its table holds every other record.
extension StoreContractTests {
    static func gapManifest(version: Int, allowGaps: Bool?) -> String {
        let allow = allowGaps.map { ", \"allowGaps\": \($0)" } ?? ""
        return """
        {"job": "g", "version": \(version), "source": {"topic": "g"\(allow)},
         "output": {"table": "counted", "columns": {"k": "TEXT", "n": "INTEGER", "last": "INTEGER"}, "primaryKey": ["k"]},
         "transform": {"sql": "INSERT INTO output(k, n, last) SELECT 'all', count(*), max(\\"offset\\") FROM batch WHERE true ON CONFLICT(k) DO UPDATE SET n = output.n + excluded.n, last = excluded.last"},
         "batch": 7}
        """
    }

    @Test(arguments: StoreKind.available)
    func aVersionReachingARecordedGapFailsNamingItUnlessItAllowsGaps(kind: StoreKind) async throws {
        let f = try await StoreFixture.make(kind, partitions: 1, minutes: 1)
        _ = try await f.log.createTopic("g", config: TopicConfig(partitions: 1))
        for start in stride(from: 0, to: 100, by: 10) {
            _ = try await f.log.append(topic: "g", records: (start..<start + 10).map { ProducerRecord(value: bytes("{\"i\": \($0)}")) })
        }
        // Records 50…99 lost (the active segment cut after the fifth append), repaired by another
        // process while this one (JobHost's log) holds the partition open; then ten more.
        let path = SegmentFiles.logPath("\(f.log.directory)/g/0", 0)
        let file = try FileDescriptor(path: path, flags: O_RDONLY)
        var frames: [Int64] = []
        _ = try FrameWalker.walk(file, from: 0, limit: try file.size(), verify: false) { at, _ in frames.append(at); return true }
        #expect(truncate(path, off_t(frames[5])) == 0)
        let repair = try await SegmentLog(directory: f.log.directory).repair(topic: "g", partition: 0, actor: "ops")
        #expect(repair.gaps.map(\.range) == ["50…99"])
        #expect(try await f.log.append(topic: "g", records: (100..<110).map { ProducerRecord(value: bytes("{\"i\": \($0)}")) })[0].baseOffset == 100)

        for allow in [nil, false] as [Bool?] {
            let version = allow == nil ? 1 : 2
            let job = try await f.register(Self.gapManifest(version: version, allowGaps: allow))
            let failure = await #expect(throws: JobFailure.self) { try await f.replay(job) }
            #expect(failure?.offset == 50 && failure?.partition == 0)
            #expect(failure?.message.contains("offsets 50…99 (50 records) were lost") == true, "\(String(describing: failure))")
            #expect(failure?.message.contains("allowGaps") == true)
            #expect(try await f.store.nextOffsets(job: "g", version: version) == [50])  // everything before the gap committed
        }
        let job = try await f.register(Self.gapManifest(version: 3, allowGaps: true))
        try await f.replay(job)
        #expect(try await f.rows("counted__v3", orderBy: "k") == [[.text("all"), .integer(60), .integer(109)]])
        #expect(try await f.store.nextOffsets(job: "g", version: 3) == [110])
        let history = try await f.store.history(job: "g").filter { $0.version == 3 }.map(\.reason)
        #expect(history.contains("partition 0: skipped offsets 50…99 of topic \"g\", a recorded gap (source.allowGaps)"), "\(history)")
    }
}
