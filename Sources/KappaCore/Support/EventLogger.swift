import Foundation

/// One line per event on stderr, as text (`time level event key=value …`) or JSON.
public struct EventLogger: Sendable {
    public enum Format: String, Sendable { case text, json }
    public enum Level: String, Sendable { case info, warning, error }

    public var format: Format
    private let sink: @Sendable (String) -> Void

    /// A logger writing to stderr.
    public init(format: Format) {
        self.format = format
        self.sink = { Console.error($0) }
    }

    /// A logger writing lines to `sink` (for tests).
    public init(format: Format, sink: @escaping @Sendable (String) -> Void) {
        self.format = format
        self.sink = sink
    }

    public func log(_ level: Level, _ event: String, _ fields: KeyValuePairs<String, String> = [:]) {
        let time = Date().formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true))
        switch format {
        case .text:
            var line = "\(time) \(level.rawValue) \(event)"
            for (k, v) in fields { line += " \(k)=\(v.contains(" ") || v.isEmpty ? JSONScanner.quote(v) : TerminalText.escaped(v))" }
            sink(line)
        case .json:
            var line = "{\"time\":\(JSONScanner.quote(time)),\"level\":\"\(level.rawValue)\",\"event\":\(JSONScanner.quote(event))"
            for (k, v) in fields { line += ",\(JSONScanner.quote(k)):\(JSONScanner.quote(v))" }
            sink(line + "}")
        }
    }
}
