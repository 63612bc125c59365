import Foundation

/// Offsets of a `SegmentLog` partition that `kappactl topic repair --accept-loss` gave up as
/// lost: acknowledged once, missing or damaged since, and never handed out again. A reader at one
/// gets `LogError.gap` naming the range and where the log reads on; a version fails there unless
/// its manifest says `source.allowGaps: true`.
public struct PartitionGap: Sendable, Codable, Equatable {
    /// The first offset lost.
    public var from: Int64
    /// The end (exclusive): the next offset that reads.
    public var to: Int64
    /// When the repair recorded it (ms since the epoch).
    public var repairedAt: Int64
    /// Who ran the repair (`--actor`, else the user).
    public var actor: String
    /// The damage the repair found (`PartitionDamage.description`).
    public var reason: String

    public var range: String { to - from > 1 ? "\(from)…\(to - 1)" : "\(from)" }
    public var count: Int64 { to - from }

    func covers(_ offset: Int64) -> Bool { offset >= from && offset < to }
}

/// A partition's `gaps.json`: its recorded gaps, ascending and apart. Written atomically (a new
/// file under the name, so its identity tells a process holding the partition open that a
/// repair happened) and before the repair cuts anything, so that a repair interrupted by a crash
/// is finished by running it again.
struct PartitionGaps: Sendable, Equatable {
    static let fileName = "gaps.json"

    var gaps: [PartitionGap] = []
    /// The file read (nil: none).
    var identity: FileIdentity?

    static func path(_ directory: String) -> String { "\(directory)/\(fileName)" }

    /// The gap holding `offset`, if any.
    func gap(covering offset: Int64) -> PartitionGap? {
        gaps.first { $0.covers(offset) }
    }

    /// True when gaps cover every offset of `from..<to` (nothing to cover when `to <= from`).
    func cover(from: Int64, to: Int64) -> Bool {
        var at = from
        for gap in gaps where gap.to > at {
            guard gap.from <= at else { return false }
            at = gap.to
            if at >= to { return true }
        }
        return at >= to
    }

    /// With `gap` added, merged with any gap it touches.
    func adding(_ gap: PartitionGap) -> PartitionGaps {
        var merged = gap
        var kept: [PartitionGap] = []
        for g in gaps {
            if g.to < merged.from || g.from > merged.to {
                kept.append(g)
            } else {
                merged.from = min(merged.from, g.from)
                merged.to = max(merged.to, g.to)
                if g.from < gap.from { merged.reason = g.reason + "; " + merged.reason }
            }
        }
        kept.append(merged)
        return PartitionGaps(gaps: kept.sorted { $0.from < $1.from }, identity: identity)
    }

    /// Reads `gaps.json` in `directory`; none when the file does not exist. Blocking.
    /// - Throws: `LogError.corrupt` naming the file and what is wrong with it.
    static func load(_ directory: String, topic: String, partition: Int) throws -> PartitionGaps {
        let path = path(directory)
        guard let identity = FileSystem.identity(path) else { return PartitionGaps() }
        let bytes: [UInt8]
        do {
            bytes = try FileSystem.readAll(path)
        } catch let error as IOError {
            throw LogError.io(error, topic: topic, partition: partition)
        }
        return PartitionGaps(gaps: try decode(bytes, path: path, topic: topic, partition: partition), identity: identity)
    }

    struct File: Codable {
        var gaps: [PartitionGap]
    }

    /// Decodes and checks a `gaps.json` (bytes from disk: anything).
    static func decode(_ bytes: [UInt8], path: String, topic: String, partition: Int) throws -> [PartitionGap] {
        func corrupt(_ problem: String) -> LogError {
            LogError(.corrupt, "topic \"\(topic)\" partition \(partition): \(path), the record of offsets given up as lost, is damaged: \(problem); "
                     + "`kappactl topic repair \(topic) --partition \(partition) --accept-loss` writes it again from the segments",
                     topic: topic, partition: partition, file: path)
        }
        let file: File
        do {
            file = try JSONDecoder().decode(File.self, from: Data(bytes))
        } catch {
            throw corrupt(DecodingProblem.describe(error, bytes: bytes))
        }
        var end: Int64 = -1
        for (i, gap) in file.gaps.enumerated() {
            guard gap.from >= 0, gap.from < gap.to, gap.to < BatchHeader.offsetLimit else {
                throw corrupt("gaps[\(i)] is not a range of offsets (from \(gap.from), to \(gap.to))")
            }
            guard gap.from > end else { throw corrupt("gaps[\(i)] (from \(gap.from)) overlaps or precedes the gap before it") }
            end = gap.to
        }
        return file.gaps
    }

    /// Writes the gaps as `directory`'s `gaps.json`, durably. Blocking.
    func save(_ directory: String) throws {
        let bytes = try JSONEncoder.sorted.encode(File(gaps: gaps))
        try FileSystem.writeAtomically(Array(bytes), to: Self.path(directory))
    }
}
