import Foundation

/// A synthetic, deterministic Bitcoin Price Index feed (the lecture's live example, without the
/// network): one tick per second per currency, a random walk per currency from realistic levels.
/// The same seed gives the same rates, tick for tick.
public struct BPIFeed: Sendable {
    public static let currencies = ["EUR", "USD", "GBP"]
    public static let startLevels: [Double] = [83_000, 95_000, 71_000]
    /// Volatility per one-second step (about 1% over a day's worth of steps, scaled).
    static let sigma = 0.0003

    public var seed: UInt64
    /// Milliseconds since the epoch of the first tick.
    public var start: Int64
    /// Where the walk starts, per currency (EUR, USD, GBP).
    public var levels: [Double]

    public init(seed: UInt64, start: Int64, levels: [Double] = BPIFeed.startLevels) {
        self.seed = seed
        self.start = start
        self.levels = levels.count == 3 ? levels : Self.startLevels
    }

    /// One tick: the record's key (the currency) and its JSON value.
    public struct Tick: Sendable, Equatable {
        public var ts: Int64
        public var currency: String
        public var rate: Double

        public var json: String { "{\"ts\": \(ts), \"currency\": \"\(currency)\", \"rate\": \(String(format: "%.2f", rate))}" }

        public var record: ProducerRecord {
            ProducerRecord(key: Array(currency.utf8), value: Array(json.utf8), timestamp: ts)
        }
    }

    /// Generates ticks for seconds `0..<seconds`, in time order (all currencies per second).
    public func ticks(seconds: Int) -> [Tick] {
        var state = Generator(seed: seed)
        var levels = self.levels
        var out: [Tick] = []
        out.reserveCapacity(seconds * 3)
        for second in 0..<seconds {
            for c in 0..<3 {
                levels[c] *= exp(Self.sigma * state.gaussian())
                out.append(Tick(ts: start + Int64(second) * 1000, currency: Self.currencies[c], rate: levels[c]))
            }
        }
        return out
    }

    /// SplitMix64: small, fast, and the same on every platform.
    struct Generator {
        var state: UInt64
        init(seed: UInt64) { state = seed }

        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }

        /// Uniform in (0, 1].
        mutating func unit() -> Double { (Double(next() >> 11) + 1) / Double(1 << 53) }

        /// Standard normal (Box–Muller).
        mutating func gaussian() -> Double { sqrt(-2 * log(unit())) * cos(2 * .pi * unit()) }
    }
}
