/// One observation of a version's position against the log: per partition, the log's end offset
/// and the version's next offset, at a time.
public struct LagSample: Sendable, Equatable, Codable {
    /// Milliseconds since the epoch.
    public var at: Int64
    public var ends: [Int64]
    public var nexts: [Int64]

    public init(at: Int64, ends: [Int64], nexts: [Int64]) {
        self.at = at
        self.ends = ends
        self.nexts = nexts
    }

    /// Records not yet processed, over all partitions (end − next, never negative).
    public var totalLag: Int64 { zip(ends, nexts).reduce(0) { $0 + max(0, $1.0 - $1.1) } }
    public var totalEnd: Int64 { ends.reduce(0, +) }
    public var totalNext: Int64 { nexts.reduce(0, +) }
}

/// Per-partition lag: computed from offsets alone, without reading records.
public struct PartitionLag: Sendable, Equatable, Codable {
    public var partition: Int
    public var end: Int64
    public var next: Int64
    public var lag: Int64 { max(0, end - next) }
    /// Age of the oldest unprocessed record (milliseconds), when it was looked up.
    public var timeLagMs: Int64?
}

/// What the lag of a version says, in Burrow's spirit: a window of samples is judged, not one.
public enum LagVerdict: String, Sendable, Codable {
    /// Total lag within `maxLag` and not growing for the whole `holdFor` window.
    case caughtUp
    /// Consuming, lag shrinking or steady.
    case catchingUp
    /// Lag grew across the whole window: the version is slower than the producer.
    case falling
    /// Lag above zero and no progress at all across the window.
    case stalled
    /// Not enough samples yet.
    case unknown
}

/// Rates and ETA derived from samples.
public struct LagEstimate: Sendable, Equatable, Codable {
    public var totalLag: Int64
    /// Records per second the version consumes (smoothed).
    public var rate: Double?
    /// Records per second the producers append (smoothed).
    public var producerRate: Double?
    /// Seconds until the lag reaches `maxLag` at the current rates; nil when it will not.
    public var etaSeconds: Double?
    public var verdict: LagVerdict
}

/// Pure functions over lag samples.
public enum LagMath {
    /// Smoothing of rates: exponential moving average over sample intervals.
    static let alpha = 0.5

    /// Rates, ETA and the caught-up verdict from samples in time order.
    /// - Parameters:
    ///   - maxLag: caught up when the total lag is at most this…
    ///   - holdForMs: …throughout a window at least this long, without growing.
    public static func estimate(_ samples: [LagSample], maxLag: Int64, holdForMs: Int64) -> LagEstimate {
        guard let last = samples.last else {
            return LagEstimate(totalLag: 0, rate: nil, producerRate: nil, etaSeconds: nil, verdict: .unknown)
        }
        var rate: Double?
        var producerRate: Double?
        for (a, b) in zip(samples, samples.dropFirst()) where b.at > a.at {
            let seconds = Double(b.at - a.at) / 1000
            let consumed = Double(b.totalNext - a.totalNext) / seconds
            let produced = Double(b.totalEnd - a.totalEnd) / seconds
            rate = rate.map { alpha * consumed + (1 - alpha) * $0 } ?? consumed
            producerRate = producerRate.map { alpha * produced + (1 - alpha) * $0 } ?? produced
        }
        var eta: Double?
        let lag = last.totalLag
        if lag <= maxLag {
            eta = 0
        } else if let rate, let producerRate, rate - producerRate > 0 {
            eta = Double(lag - maxLag) / (rate - producerRate)
        }
        return LagEstimate(totalLag: lag, rate: rate, producerRate: producerRate, etaSeconds: eta,
                           verdict: verdict(samples, maxLag: maxLag, holdForMs: holdForMs))
    }

    /// The verdict over the samples of the last `holdForMs` (and the one just before, so that
    /// the window really spans `holdForMs`).
    public static func verdict(_ samples: [LagSample], maxLag: Int64, holdForMs: Int64) -> LagVerdict {
        guard let last = samples.last, samples.count >= 2 else { return .unknown }
        let start = last.at - holdForMs
        guard let firstInside = samples.firstIndex(where: { $0.at >= start }) else { return .unknown }
        let from = max(0, firstInside - 1)
        let window = Array(samples[from...])
        guard window.count >= 2, window.first!.at <= start else { return .unknown }  // not a full window yet
        let lags = window.map(\.totalLag)
        let growing = zip(lags, lags.dropFirst()).allSatisfy { $0 <= $1 } && lags.last! > lags.first!
        if lags.allSatisfy({ $0 <= maxLag }) && !growing { return .caughtUp }
        if growing { return .falling }
        if lags.last! > 0 && window.first!.totalNext == window.last!.totalNext { return .stalled }
        return .catchingUp
    }

    /// Per-partition lag from two offset lists.
    public static func partitions(ends: [Int64], nexts: [Int64]) -> [PartitionLag] {
        zip(ends, nexts).enumerated().map { PartitionLag(partition: $0, end: $1.0, next: $1.1) }
    }
}

extension LagSample {
    /// The catalog's text form of a sample's offsets: `12,0,7`.
    static func text(_ offsets: [Int64]) -> String { offsets.map(String.init).joined(separator: ",") }

    /// Parses `text(_:)`'s form byte by byte (`kappactl status` reads tens of thousands of these
    /// numbers with many partitions); nil when any element is not an integer (a damaged sample
    /// must not shift the partitions after it).
    static func offsets(fromText text: String) -> [Int64]? {
        var out: [Int64] = []
        guard !text.isEmpty else { return out }
        var value: Int64 = 0, digits = 0, negative = false
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: ","):
                guard digits > 0 else { return nil }
                out.append(negative ? -value : value)
                value = 0; digits = 0; negative = false
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                let (times, o1) = value.multipliedReportingOverflow(by: 10)
                let (sum, o2) = times.addingReportingOverflow(Int64(byte - UInt8(ascii: "0")))
                guard !o1, !o2 else { return nil }
                value = sum
                digits += 1
            case UInt8(ascii: "-") where digits == 0 && !negative: negative = true
            default: return nil
            }
        }
        guard digits > 0 else { return nil }
        out.append(negative ? -value : value)
        return out
    }
}
