/// The catch-up gate: a version has caught up when its total lag is within `catchUp.maxLag`,
/// not growing and making progress throughout `catchUp.holdFor` (the Burrow-style verdict over
/// a window: falling or stalled refuses), and, with `catchUp.maxTimeLag`, when the oldest record
/// it has not processed is at most that old (Materialize's wallclock-lag readiness, so a version
/// a few records behind on a slow topic is not called fresh).
public enum CatchUpGate {
    /// The conditions still unmet, in words; empty when the version has caught up.
    /// - Parameter timeLagMs: the age of the oldest unprocessed record over all partitions (0
    ///   when nothing is unprocessed); nil when it could not be read.
    public static func unmet(verdict: LagVerdict, totalLag: Int64, timeLagMs: Int64?, catchUp: JobSpec.CatchUp) -> [String] {
        var out: [String] = []
        if totalLag > catchUp.maxLag { out.append("lag \(Render.grouped(totalLag)) > catchUp.maxLag \(Render.grouped(catchUp.maxLag))") }
        let hold = DurationText.format(milliseconds: catchUp.holdForMs)
        switch verdict {
        case .caughtUp: break
        case .falling: out.append("falling behind: the lag grew throughout catchUp.holdFor \(hold)")
        case .stalled: out.append("stalled: no progress throughout catchUp.holdFor \(hold)")
        case .unknown: out.append("not yet observed for catchUp.holdFor \(hold)")
        case .catchingUp:
            if totalLag <= catchUp.maxLag { out.append("lag within catchUp.maxLag for less than catchUp.holdFor \(hold)") }
        }
        if let max = catchUp.maxTimeLagMs {
            if let age = timeLagMs {
                if age > max { out.append("time lag \(DurationText.format(milliseconds: age)) > catchUp.maxTimeLag \(DurationText.format(milliseconds: max))") }
            } else {
                out.append("time lag unknown (the oldest unprocessed record could not be read); catchUp.maxTimeLag \(DurationText.format(milliseconds: max))")
            }
        }
        return out
    }
}

extension UnifiedLog {
    /// Per partition, the age of the oldest unprocessed record (milliseconds): 0 when the
    /// partition has nothing unprocessed, nil when that record could not be read. One read of
    /// one record per lagging partition.
    public func timeLags(topic: String, ends: [Int64], nexts: [Int64], now: Int64) async -> [Int64?] {
        var ages: [Int64?] = []
        for (p, (end, next)) in zip(ends, nexts).enumerated() {
            guard end > next else { ages.append(0); continue }
            let first = try? await read(topic: topic, partition: p, from: next, maxRecords: 1, maxBytes: 64 << 10)
            ages.append(first?.first.map { max(0, now - $0.timestamp) })
        }
        return ages
    }

    /// The oldest unprocessed record's age over all partitions; nil when one could not be read.
    public func timeLag(topic: String, ends: [Int64], nexts: [Int64], now: Int64) async -> Int64? {
        LagMath.oldest(await timeLags(topic: topic, ends: ends, nexts: nexts, now: now))
    }

    /// Lag per partition, with the age of the oldest unprocessed record of each lagging one.
    public func partitionLags(topic: String, ends: [Int64], nexts: [Int64], now: Int64) async -> [PartitionLag] {
        var partitions = LagMath.partitions(ends: ends, nexts: nexts)
        for (i, age) in await timeLags(topic: topic, ends: ends, nexts: nexts, now: now).enumerated() where partitions[i].lag > 0 {
            partitions[i].timeLagMs = age
        }
        return partitions
    }
}

extension LagMath {
    /// The largest of the partitions' ages (0 for none); nil when one of them is unknown.
    public static func oldest(_ ages: [Int64?]) -> Int64? {
        ages.contains { $0 == nil } ? nil : ages.compactMap { $0 }.max() ?? 0
    }
}

extension [PartitionLag] {
    /// The age of the oldest unprocessed record over the partitions (0 when none lags); nil when
    /// a lagging partition's could not be read.
    public var oldestTimeLagMs: Int64? { LagMath.oldest(map { $0.lag == 0 ? 0 : $0.timeLagMs }) }
}
