/// A one-line chart of a series with block characters (▁▂▃▄▅▆▇█).
public enum Sparkline {
    private static let blocks: [Character] = ["▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"]

    /// Renders `values` (at most `width` of them, averaging neighbours when there are more).
    public static func render(_ values: [Double], width: Int = 60) -> String {
        guard !values.isEmpty else { return "" }
        var series = values
        if series.count > width {
            let step = Double(series.count) / Double(width)
            series = (0..<width).map { i in
                let slice = values[Int(Double(i) * step)..<max(Int(Double(i) * step) + 1, Int(Double(i + 1) * step))]
                return slice.reduce(0, +) / Double(slice.count)
            }
        }
        let lo = series.min()!, hi = series.max()!
        let span = hi - lo
        return String(series.map { v in span == 0 ? blocks[3] : blocks[min(7, Int((v - lo) / span * 8))] })
    }
}
