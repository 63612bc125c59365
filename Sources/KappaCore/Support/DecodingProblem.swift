import Foundation

/// What `JSONDecoder` found wrong with a file, in words an operator can act on: the key path and
/// the problem ("config.partitions: expected an integer"), not the `DecodingError` dump (Swift
/// type names, coding-key structs, underlying NSError).
enum DecodingProblem {
    /// - Parameters:
    ///   - error: what `JSONDecoder` threw.
    ///   - bytes: the file's bytes, to say where its syntax breaks (Foundation does not).
    static func describe(_ error: any Error, bytes: [UInt8]) -> String {
        guard let error = error as? DecodingError else { return "\(error)" }
        switch error {
        case .dataCorrupted(let context):
            if context.codingPath.isEmpty {
                do {
                    _ = try JSONScanner.members(of: bytes)
                } catch let syntax as JSONScanner.SyntaxError {
                    // The scanner counts bytes from the start: as line and column for a file.
                    let at = min(max(syntax.column - 1, 0), bytes.count)
                    let before = bytes[..<at]
                    let line = before.reduce(1) { $1 == 0x0A ? $0 + 1 : $0 }
                    let column = at - (before.lastIndex(of: 0x0A).map { $0 + 1 } ?? 0) + 1
                    return "not valid JSON: \(syntax.message) at line \(line), column \(column)"
                } catch {}
                // Valid JSON that Foundation refused: a number that is not an integer or out of range.
                return "a number is not an integer or is out of range"
            }
            return "\(path(context.codingPath)): \(trimmed(context.debugDescription))"
        case .keyNotFound(let key, let context):
            return "missing key \(path(context.codingPath + [key]))"
        case .typeMismatch(let type, let context):
            return "\(path(context.codingPath)): expected \(name(of: type))"
        case .valueNotFound(let type, let context):
            return "\(path(context.codingPath)): expected \(name(of: type)), found null"
        @unknown default:
            return "\(error)"
        }
    }

    /// `config.files[2].base`; "the top level" for the document itself.
    static func path(_ keys: [any CodingKey]) -> String {
        var out = ""
        for key in keys {
            if let index = key.intValue, key.stringValue.hasPrefix("Index") || key.stringValue == "\(index)" {
                out += "[\(index)]"
            } else {
                out += out.isEmpty ? key.stringValue : ".\(key.stringValue)"
            }
        }
        return out.isEmpty ? "the top level" : out
    }

    private static func name(of type: Any.Type) -> String {
        switch type {
        case is String.Type: return "a string"
        case is Bool.Type: return "true or false"
        case is Int.Type, is Int64.Type, is Int32.Type, is UInt32.Type, is UInt64.Type: return "an integer"
        case is Double.Type, is Float.Type: return "a number"
        default:
            let text = "\(type)"
            if text.hasPrefix("Array") || text.hasPrefix("[") { return "an array" }
            if text.hasPrefix("Dictionary") { return "an object" }
            return "an object"
        }
    }

    /// Foundation's text without its trailing period, at most one line of 200 characters.
    private static func trimmed(_ text: String) -> String {
        var line = String(text.prefix { $0 != "\n" }.prefix(200))
        if line.hasSuffix(".") { line.removeLast() }
        return line
    }
}
