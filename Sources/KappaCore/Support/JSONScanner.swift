#if canImport(Glibc)
import Glibc
#endif

/// A small validating JSON scanner that keeps the exact text of values.
///
/// Records in the log store a value "as its JSON text": re-encoding through a parser would change
/// number spellings and key order, so this scanner only checks the syntax and reports where each
/// member's value starts and ends.
public struct JSONScanner {
    /// A syntax error with the 1-based column where it was found.
    public struct SyntaxError: Error, Sendable, CustomStringConvertible {
        public var message: String
        public var column: Int
        public var description: String { "\(message) at column \(column)" }
    }

    /// One member of a top-level object: its decoded name and the byte range of its value's text.
    public struct Member: Sendable {
        public var name: String
        public var range: Range<Int>
    }

    private static let maxDepth = 512

    /// True when `bytes` are exactly one JSON value (surrounding white space allowed).
    public static func isValid<Bytes: Collection>(_ bytes: Bytes) -> Bool where Bytes.Element == UInt8 {
        // Contiguous bytes (arrays and their slices, as records hold them) are read in place.
        if let valid = bytes.withContiguousStorageIfAvailable({ isValid(buffer: $0) }) { return valid }
        return Array(bytes).withUnsafeBufferPointer(isValid(buffer:))
    }

    private static func isValid(buffer buf: UnsafeBufferPointer<UInt8>) -> Bool { validity(buffer: buf) != .invalid }

    public enum Validity: Sendable, Equatable {
        case valid
        case invalid
        /// Valid, with the escape `\u0000` in a string: a NUL character, which PostgreSQL's
        /// `jsonb` and `text` cannot hold.
        case nulEscape
    }

    /// Whether `bytes` are exactly one JSON value, and whether a string in it escapes NUL.
    public static func validity<Bytes: Collection>(_ bytes: Bytes) -> Validity where Bytes.Element == UInt8 {
        if let v = bytes.withContiguousStorageIfAvailable({ validity(buffer: $0) }) { return v }
        return Array(bytes).withUnsafeBufferPointer(validity(buffer:))
    }

    private static func validity(buffer buf: UnsafeBufferPointer<UInt8>) -> Validity {
        do {
            var s = Cursor(buf)
            s.skipSpace()
            try s.value(depth: 0)
            s.skipSpace()
            return !s.atEnd ? .invalid : s.nulEscape ? .nulEscape : .valid
        } catch {
            return .invalid
        }
    }

    /// Splits a top-level JSON object into its members.
    /// - Throws: `SyntaxError` when `bytes` are not one JSON object, or a member name repeats.
    public static func members(of bytes: [UInt8]) throws -> [Member] {
        try bytes.withUnsafeBufferPointer { buf in
            var s = Cursor(buf)
            var out: [Member] = []
            s.skipSpace()
            guard s.peek == UInt8(ascii: "{") else { throw s.error("expected a JSON object") }
            s.i += 1
            s.skipSpace()
            if s.peek == UInt8(ascii: "}") {
                s.i += 1
            } else {
                while true {
                    s.skipSpace()
                    guard s.peek == UInt8(ascii: "\"") else { throw s.error("expected a member name") }
                    let nameStart = s.i
                    try s.string()
                    let name = try decodeString(bytes, nameStart..<s.i)
                    if out.contains(where: { $0.name == name }) { throw s.error("duplicate member \"\(name)\"") }
                    s.skipSpace()
                    guard s.peek == UInt8(ascii: ":") else { throw s.error("expected ':'") }
                    s.i += 1
                    s.skipSpace()
                    let start = s.i
                    try s.value(depth: 1)
                    out.append(Member(name: name, range: start..<s.i))
                    s.skipSpace()
                    if s.peek == UInt8(ascii: ",") { s.i += 1; continue }
                    guard s.peek == UInt8(ascii: "}") else { throw s.error("expected ',' or '}'") }
                    s.i += 1
                    break
                }
            }
            s.skipSpace()
            guard s.atEnd else { throw s.error("unexpected text after the object") }
            return out
        }
    }

    /// What `scanFields` found a value to be.
    public enum FieldScan: Sendable, Equatable {
        /// Not exactly one JSON value.
        case notJSON
        /// One JSON value, not an object: its kind as messages say it.
        case notObject(String)
        /// An object.
        case object
        /// One JSON value with the escape `\u0000` in a string (see `Validity.nulEscape`).
        case nulEscape
    }

    /// Validates `buffer` as exactly one JSON value and, when it is an object, notes in `found`
    /// the byte range of each top-level member whose name is one of `names` (by index), in one
    /// pass. A name found twice is reported in `duplicate` (the index of the first such).
    /// Names with escapes are decoded before they are compared.
    public static func scanFields(_ buffer: UnsafeBufferPointer<UInt8>, names: [[UInt8]], found: inout [Range<Int>?], duplicate: inout Int?) -> FieldScan {
        var s = Cursor(buffer)
        s.skipSpace()
        guard s.peek == UInt8(ascii: "{") else {
            let kind: String
            switch s.peek {
            case UInt8(ascii: "["): kind = "an array"
            case UInt8(ascii: "\""): kind = "a string"
            case UInt8(ascii: "t"), UInt8(ascii: "f"): kind = "a boolean"
            case UInt8(ascii: "n"): kind = "null"
            default: kind = "a number"
            }
            do {
                try s.value(depth: 0)
                s.skipSpace()
                return !s.atEnd ? .notJSON : s.nulEscape ? .nulEscape : .notObject(kind)
            } catch {
                return .notJSON
            }
        }
        do {
            s.i += 1
            s.skipSpace()
            if s.peek == UInt8(ascii: "}") {
                s.i += 1
            } else {
                while true {
                    s.skipSpace()
                    guard s.peek == UInt8(ascii: "\"") else { return .notJSON }
                    let nameStart = s.i + 1
                    try s.string()
                    let nameEnd = s.i - 1
                    s.skipSpace()
                    guard s.peek == UInt8(ascii: ":") else { return .notJSON }
                    s.i += 1
                    s.skipSpace()
                    let valueStart = s.i
                    try s.value(depth: 1)
                    if let k = Self.fieldIndex(buffer, nameStart..<nameEnd, names) {
                        if found[k] != nil { duplicate = duplicate ?? k } else { found[k] = valueStart..<s.i }
                    }
                    s.skipSpace()
                    if s.peek == UInt8(ascii: ",") { s.i += 1; continue }
                    guard s.peek == UInt8(ascii: "}") else { return .notJSON }
                    s.i += 1
                    break
                }
            }
            s.skipSpace()
            return !s.atEnd ? .notJSON : s.nulEscape ? .nulEscape : .object
        } catch {
            return .notJSON
        }
    }

    /// Which of `names` the member name at `range` (between its quotes) is.
    private static func fieldIndex(_ b: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, _ names: [[UInt8]]) -> Int? {
        let raw = UnsafeBufferPointer(rebasing: b[range])
        if !raw.contains(UInt8(ascii: "\\")) {
            guard let base = raw.baseAddress, !raw.isEmpty else { return nil }  // (names are never empty)
            return names.firstIndex { name in name.count == raw.count && name.withUnsafeBufferPointer { memcmp($0.baseAddress!, base, raw.count) == 0 } }
        }
        let quoted = Array(b[range.lowerBound - 1..<range.upperBound + 1])
        guard let decoded = try? decodeString(quoted, 0..<quoted.count) else { return nil }
        let bytes = Array(decoded.utf8)
        return names.firstIndex(of: bytes)
    }

    /// Parses one JSON document into a `JSONValue`, keeping the order of object members.
    /// - Throws: `SyntaxError` with the column.
    public static func parse(_ bytes: [UInt8]) throws -> JSONValue {
        try bytes.withUnsafeBufferPointer { buf in
            var s = Cursor(buf)
            s.skipSpace()
            let value = try s.parsed(bytes, depth: 0)
            s.skipSpace()
            guard s.atEnd else { throw s.error("unexpected text after the value") }
            return value
        }
    }

    /// Decodes the JSON string literal at `range` (quotes included) into a Swift string.
    public static func decodeString(_ bytes: [UInt8], _ range: Range<Int>) throws -> String {
        var out: [UInt8] = []
        out.reserveCapacity(range.count)
        var i = range.lowerBound + 1
        let end = range.upperBound - 1
        func hex4(_ at: Int) throws -> UInt32 {
            guard at + 4 <= end else { throw SyntaxError(message: "short \\u escape", column: at + 1) }
            var v: UInt32 = 0
            for b in bytes[at..<at + 4] {
                guard let d = hexValue(b) else { throw SyntaxError(message: "bad \\u escape", column: at + 1) }
                v = v << 4 | d
            }
            return v
        }
        while i < end {
            let b = bytes[i]
            if b != UInt8(ascii: "\\") { out.append(b); i += 1; continue }
            let e = bytes[i + 1]
            i += 2
            switch e {
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "u"):
                var scalar = try hex4(i)
                i += 4
                if (0xD800..<0xDC00).contains(scalar), i + 6 <= end, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") {
                    let low = try hex4(i + 2)
                    if (0xDC00..<0xE000).contains(low) {
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        i += 6
                    }
                }
                let u = Unicode.Scalar(scalar) ?? "\u{FFFD}"
                out.append(contentsOf: Array(String(Character(u)).utf8))
            default: out.append(e)  // \" \\ \/
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Writes `text` as a JSON string literal.
    public static func quote(_ text: String) -> String {
        var out = "\""
        out.reserveCapacity(text.utf8.count + 2)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    fileprivate static func hexValue(_ b: UInt8) -> UInt32? {
        switch b {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return UInt32(b - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return UInt32(b - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return UInt32(b - UInt8(ascii: "A") + 10)
        default: return nil
        }
    }

    private struct Cursor {
        let b: UnsafeBufferPointer<UInt8>
        var i = 0
        /// A string had the escape `\u0000`.
        var nulEscape = false
        init(_ b: UnsafeBufferPointer<UInt8>) { self.b = b }

        var atEnd: Bool { i >= b.count }
        var peek: UInt8? { i < b.count ? b[i] : nil }

        func error(_ message: String) -> SyntaxError { SyntaxError(message: message, column: i + 1) }

        mutating func skipSpace() {
            while i < b.count, b[i] == 0x20 || b[i] == 0x0A || b[i] == 0x0D || b[i] == 0x09 { i += 1 }
        }

        mutating func value(depth: Int) throws {
            guard depth < JSONScanner.maxDepth else { throw error("nesting too deep") }
            guard let c = peek else { throw error("unexpected end of input") }
            switch c {
            case UInt8(ascii: "{"):
                i += 1
                skipSpace()
                if peek == UInt8(ascii: "}") { i += 1; return }
                while true {
                    skipSpace()
                    guard peek == UInt8(ascii: "\"") else { throw error("expected a member name") }
                    try string()
                    skipSpace()
                    guard peek == UInt8(ascii: ":") else { throw error("expected ':'") }
                    i += 1
                    skipSpace()
                    try value(depth: depth + 1)
                    skipSpace()
                    if peek == UInt8(ascii: ",") { i += 1; continue }
                    guard peek == UInt8(ascii: "}") else { throw error("expected ',' or '}'") }
                    i += 1
                    return
                }
            case UInt8(ascii: "["):
                i += 1
                skipSpace()
                if peek == UInt8(ascii: "]") { i += 1; return }
                while true {
                    skipSpace()
                    try value(depth: depth + 1)
                    skipSpace()
                    if peek == UInt8(ascii: ",") { i += 1; continue }
                    guard peek == UInt8(ascii: "]") else { throw error("expected ',' or ']'") }
                    i += 1
                    return
                }
            case UInt8(ascii: "\""): try string()
            case UInt8(ascii: "t"): try literal("true")
            case UInt8(ascii: "f"): try literal("false")
            case UInt8(ascii: "n"): try literal("null")
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): try number()
            default: throw error("unexpected character")
            }
        }

        /// Like `value`, but building the value.
        mutating func parsed(_ bytes: [UInt8], depth: Int) throws -> JSONValue {
            guard depth < JSONScanner.maxDepth else { throw error("nesting too deep") }
            guard let c = peek else { throw error("unexpected end of input") }
            switch c {
            case UInt8(ascii: "{"):
                i += 1
                var members: [(String, JSONValue)] = []
                skipSpace()
                if peek == UInt8(ascii: "}") { i += 1; return .object(members) }
                while true {
                    skipSpace()
                    guard peek == UInt8(ascii: "\"") else { throw error("expected a member name") }
                    let start = i
                    try string()
                    let name = try JSONScanner.decodeString(bytes, start..<i)
                    if members.contains(where: { $0.0 == name }) { throw error("duplicate member \"\(name)\"") }
                    skipSpace()
                    guard peek == UInt8(ascii: ":") else { throw error("expected ':'") }
                    i += 1
                    skipSpace()
                    members.append((name, try parsed(bytes, depth: depth + 1)))
                    skipSpace()
                    if peek == UInt8(ascii: ",") { i += 1; continue }
                    guard peek == UInt8(ascii: "}") else { throw error("expected ',' or '}'") }
                    i += 1
                    return .object(members)
                }
            case UInt8(ascii: "["):
                i += 1
                var elements: [JSONValue] = []
                skipSpace()
                if peek == UInt8(ascii: "]") { i += 1; return .array(elements) }
                while true {
                    skipSpace()
                    elements.append(try parsed(bytes, depth: depth + 1))
                    skipSpace()
                    if peek == UInt8(ascii: ",") { i += 1; continue }
                    guard peek == UInt8(ascii: "]") else { throw error("expected ',' or ']'") }
                    i += 1
                    return .array(elements)
                }
            case UInt8(ascii: "\""):
                let start = i
                try string()
                return .string(try JSONScanner.decodeString(bytes, start..<i))
            case UInt8(ascii: "t"): try literal("true"); return .bool(true)
            case UInt8(ascii: "f"): try literal("false"); return .bool(false)
            case UInt8(ascii: "n"): try literal("null"); return .null
            default:
                let start = i
                try value(depth: depth)
                return .number(String(decoding: bytes[start..<i], as: UTF8.self))
            }
        }

        mutating func literal(_ word: StaticString) throws {
            let n = word.utf8CodeUnitCount
            guard i + n <= b.count, memcmp(b.baseAddress! + i, word.utf8Start, n) == 0 else {
                throw error("invalid literal")
            }
            i += n
        }

        mutating func digits() -> Int {
            let start = i
            while i < b.count, b[i] >= UInt8(ascii: "0"), b[i] <= UInt8(ascii: "9") { i += 1 }
            return i - start
        }

        mutating func number() throws {
            if peek == UInt8(ascii: "-") { i += 1 }
            if peek == UInt8(ascii: "0") {
                i += 1
            } else if digits() == 0 {
                throw error("invalid number")
            }
            if peek == UInt8(ascii: ".") {
                i += 1
                guard digits() > 0 else { throw error("invalid number") }
            }
            if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
                i += 1
                if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { i += 1 }
                guard digits() > 0 else { throw error("invalid number") }
            }
        }

        /// A string literal: escapes checked, control characters refused, UTF-8 validated.
        mutating func string() throws {
            i += 1
            while i < b.count {
                let c = b[i]
                if c == UInt8(ascii: "\"") { i += 1; return }
                if c == UInt8(ascii: "\\") {
                    guard i + 1 < b.count else { break }
                    switch b[i + 1] {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
                        UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                        i += 2
                    case UInt8(ascii: "u"):
                        guard i + 6 <= b.count, (2..<6).allSatisfy({ JSONScanner.hexValue(b[i + $0]) != nil }) else {
                            throw error("invalid \\u escape")
                        }
                        if b[i + 2] == 0x30 && b[i + 3] == 0x30 && b[i + 4] == 0x30 && b[i + 5] == 0x30 { nulEscape = true }
                        i += 6
                    default: throw error("invalid escape")
                    }
                    continue
                }
                if c < 0x20 { throw error("control character in string") }
                if c < 0x80 { i += 1; continue }
                i += try utf8Sequence()
            }
            throw error("unterminated string")
        }

        /// Length of the well-formed UTF-8 sequence at `i`.
        func utf8Sequence() throws -> Int {
            let c = b[i]
            let (n, lo, hi): (Int, UInt8, UInt8)
            switch c {
            case 0xC2...0xDF: (n, lo, hi) = (2, 0x80, 0xBF)
            case 0xE0: (n, lo, hi) = (3, 0xA0, 0xBF)
            case 0xE1...0xEC, 0xEE...0xEF: (n, lo, hi) = (3, 0x80, 0xBF)
            case 0xED: (n, lo, hi) = (3, 0x80, 0x9F)
            case 0xF0: (n, lo, hi) = (4, 0x90, 0xBF)
            case 0xF1...0xF3: (n, lo, hi) = (4, 0x80, 0xBF)
            case 0xF4: (n, lo, hi) = (4, 0x80, 0x8F)
            default: throw error("invalid UTF-8")
            }
            guard i + n <= b.count, b[i + 1] >= lo, b[i + 1] <= hi else { throw error("invalid UTF-8") }
            for k in 2..<max(n, 2) where k < n {
                guard b[i + k] & 0xC0 == 0x80 else { throw error("invalid UTF-8") }
            }
            return n
        }
    }
}

/// A parsed JSON value. Objects keep their members in document order; numbers keep their text.
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([JSONValue])
    case object([(String, JSONValue)])

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case let (.bool(x), .bool(y)): return x == y
        case let (.number(x), .number(y)): return x == y
        case let (.string(x), .string(y)): return x == y
        case let (.array(x), .array(y)): return x == y
        case let (.object(x), .object(y)): return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    /// The kind's name as error messages say it.
    public var kind: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .number: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }

    /// Compact JSON text (numbers as written).
    public var text: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .number(let n): return n
        case .string(let s): return JSONScanner.quote(s)
        case .array(let a): return "[" + a.map(\.text).joined(separator: ",") + "]"
        case .object(let o): return "{" + o.map { JSONScanner.quote($0.0) + ":" + $0.1.text }.joined(separator: ",") + "}"
        }
    }
}
