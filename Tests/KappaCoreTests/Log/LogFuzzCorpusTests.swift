import Foundation
import Testing
@testable import KappaCore

/// The fuzzer's corpus (`Tests/Fuzz/corpus/<parser>/`: seeds, and every input that once broke
/// a parser, kept after the fix) replayed through the fuzzer's own entry points
/// (`LogFuzzTarget`), so that `swift test` holds every parser of on-disk data to its promises
/// without the fuzzer: no trap, errors that are `LogError`s naming their file, reads in order.
@Suite struct LogFuzzCorpusTests {
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../Fuzz/corpus").standardizedFileURL.path

    static func inputs(_ target: LogFuzzTarget) -> [String] {
        ((try? FileSystem.list("\(corpus)/\(target.rawValue)")) ?? []).filter { !$0.hasPrefix(".") }.sorted()
    }

    @Test(arguments: LogFuzzTarget.allCases.map(\.rawValue))
    func everyCorpusInputKeepsThePromises(_ name: String) async throws {
        let target = try #require(LogFuzzTarget(rawValue: name))
        let inputs = Self.inputs(target)
        #expect(!inputs.isEmpty, "no inputs in \(Self.corpus)/\(name)")
        let scratch = try TempDirectory("kappa-fuzz-replay")
        for input in inputs {
            let bytes = try FileSystem.readAll("\(Self.corpus)/\(name)/\(input)")
            let problems = await target.run(bytes, scratch: scratch.path + "/run")
            #expect(problems.isEmpty, "\(name)/\(input): \(problems)")
        }
    }

    /// The entry points do reach the parsers: a seed of a whole partition reads back its records,
    /// so that a replay passing does not mean a replay that stopped at the first check.
    @Test func partitionSeedReadsItsRecords() async throws {
        let scratch = try TempDirectory("kappa-fuzz-replay")
        let bytes = try FileSystem.readAll("\(Self.corpus)/partition/two-segments")
        #expect(await LogFuzzTarget.partition.run(bytes, scratch: scratch.path + "/run").isEmpty)
        let log = try PartitionLog(topic: "fuzz", partition: 0, directory: scratch.path + "/run/0", config: TopicConfig(partitions: 1))
        #expect(log.currentDamage() == nil)
        var offsets: [Int64] = []
        for _ in 0..<10 {
            let next = offsets.last.map { $0 + 1 } ?? 0
            let records = try await log.read(from: next, maxRecords: 100, maxBytes: 1 << 20)
            if records.isEmpty { break }
            offsets += records.map(\.offset)
        }
        #expect(offsets == Array(0..<16))  // 15 seeded and the one the run appended
    }
}
