import Foundation
@testable import KappaCore

/// A temp directory removed when the test ends.
final class TempDirectory: Sendable {
    let path: String

    init(_ name: String = "kappa-test") throws {
        path = try FileSystem.makeTemporaryDirectory(prefix: name)
    }

    deinit { try? FileSystem.removeTree(path) }
}

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

func text(_ b: ArraySlice<UInt8>?) -> String? { b.map { String(decoding: $0, as: UTF8.self) } }

/// Reads a whole partition from `from` to its end.
func readAll(_ log: some UnifiedLog, _ topic: String, _ partition: Int, from: Int64 = 0, batch: Int = 1000) async throws -> [LogRecord] {
    var out: [LogRecord] = []
    var offset = from
    while true {
        let records = try await log.read(topic: topic, partition: partition, from: offset, maxRecords: batch, maxBytes: 1 << 20)
        if records.isEmpty { return out }
        out.append(contentsOf: records)
        offset = records.nextOffset
    }
}

/// Blocking test loops (readers, process waits) on a thread of their own: tests may block many
/// at once, which the product's bounded executor would queue.
func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result { try body() }) }
        thread.stackSize = 1 << 20
        thread.start()
    }
}
