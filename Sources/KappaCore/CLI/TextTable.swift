/// A plain-text table with aligned columns; numbers are right-aligned. Cells are shown with
/// their control characters escaped (`TerminalText`): a value cannot add a line or move the cursor.
public struct TextTable: Sendable {
    public var headers: [String]
    public var rows: [[String]] = []

    public init(_ headers: [String]) { self.headers = headers.map(TerminalText.escaped) }

    public mutating func add(_ row: [String]) { rows.append(row.map(TerminalText.escaped)) }

    public func render() -> String {
        let all = [headers] + rows
        let widths = headers.indices.map { c in all.map { c < $0.count ? $0[c].count : 0 }.max() ?? 0 }
        let numeric = headers.indices.map { c in !rows.isEmpty && rows.allSatisfy { c < $0.count && Self.isNumeric($0[c]) } }
        return all.map { row in
            row.indices.map { c in
                let cell = row[c]
                let pad = String(repeating: " ", count: widths[c] - cell.count)
                return numeric[c] ? pad + cell : (c == row.count - 1 ? cell : cell + pad)
            }.joined(separator: "  ")
        }.joined(separator: "\n") + "\n"
    }

    private static func isNumeric(_ s: String) -> Bool {
        !s.isEmpty && (s == "-" || s.allSatisfy { $0.isNumber || $0 == "." || $0 == "," || $0 == "-" })
    }
}
