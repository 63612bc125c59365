/// A value on the command line or in a manifest that could not be read.
public struct ValueParseError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Durations as operators write them: `500ms`, `30s`, `5m`, `2h`, `7d`, or combined (`1h30m`).
public enum DurationText {
    private static let units: [(suffix: String, ms: Int64)] = [
        ("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000),
    ]

    /// The longest duration accepted (100 years): a time plus any duration stays far from overflow.
    public static let maxMilliseconds: Int64 = 36_500 * 86_400_000

    /// Parses `text` into milliseconds.
    /// - Throws: `ValueParseError` saying what is accepted.
    public static func milliseconds(_ text: String) throws -> Int64 {
        let bad = ValueParseError("invalid duration \"\(text)\": use a number and a unit, e.g. 500ms, 30s, 5m, 2h, 7d")
        var rest = Substring(text)
        var total: Int64 = 0
        guard !rest.isEmpty else { throw bad }
        while !rest.isEmpty {
            let digits = rest.prefix(while: { $0.isASCII && $0.isNumber })
            guard !digits.isEmpty, let n = Int64(digits) else { throw bad }
            rest = rest.dropFirst(digits.count)
            let unitText = rest.prefix(while: { $0.isASCII && $0.isLetter })
            guard let unit = units.first(where: { $0.suffix == unitText }) else { throw bad }
            rest = rest.dropFirst(unitText.count)
            let (product, overflow1) = n.multipliedReportingOverflow(by: unit.ms)
            let (sum, overflow2) = total.addingReportingOverflow(product)
            guard !overflow1, !overflow2, sum <= maxMilliseconds else {
                throw ValueParseError("duration \"\(text)\" is too long (at most 36500d)")
            }
            total = sum
        }
        return total
    }

    /// Formats milliseconds the way `milliseconds(_:)` reads them (`90000` → `1m30s`).
    public static func format(milliseconds: Int64) -> String {
        if milliseconds == 0 { return "0s" }
        var rest = milliseconds
        var out = milliseconds < 0 ? "-" : ""
        rest = rest.magnitude > Int64.max.magnitude ? Int64.max : abs(rest)
        for unit in units.reversed() where rest >= unit.ms {
            out += "\(rest / unit.ms)\(unit.suffix)"
            rest %= unit.ms
        }
        return out
    }
}
