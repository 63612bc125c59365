import Foundation

/// How `kappactl produce` reads and `kappactl consume` prints a record's bytes.
public enum RecordFormat: String, Sendable, CaseIterable {
    /// Keys and header values as JSON strings when they are UTF-8, values as their JSON text
    /// when they are JSON; other bytes under `keyBase64`, `valueText` or `valueBase64`.
    case json
    /// Key, value and header values as base64 strings.
    case base64
    /// Key, value and header values as lowercase hex strings.
    case hex
}

/// The JSON-lines forms of records used by `kappactl produce` and `kappactl consume`.
///
/// A line is `{"partition","offset","timestamp","key","value","headers"}` (consume) or
/// `{"key","value","headers","timestamp","partition"}` (produce, which ignores an `"offset"`, so
/// that consume's lines go straight back in). Nulls are kept apart from empty bytes:
/// `"value": null` is a tombstone, `"key": null` (or no key) no key, a header's `"value": null`
/// a null header value. In `json` form, whatever consume prints produces the same bytes again:
/// - key: a JSON string of its UTF-8 text; `"keyBase64"` instead when it is not UTF-8;
/// - value: its JSON text when it is JSON (other than the text `null`); `"valueText"` (a
///   string) when it is other UTF-8 text, the empty value included; `"valueBase64"` otherwise;
/// - headers: a list of `{"key": name, "value": text|null}` (`"valueBase64"` for bytes that are
///   not UTF-8), left out when the record has none; produce also takes an object
///   `{"name": "text"|null, …}`.
/// In `base64` and `hex` forms key, value and header values are strings in that encoding.
public enum RecordJSON {
    /// Parses one input line of `kappactl produce` (see the type's notes). A string key is stored
    /// as its UTF-8 bytes, any other key as its JSON text; a value as its exact JSON text.
    /// With `raw`, the line itself is the value.
    /// - Throws: `ValueParseError` naming the member that is wrong (the caller adds the line number).
    public static func producerRecord(line: ArraySlice<UInt8>, raw: Bool, format: RecordFormat = .json) throws -> ProducerRecord {
        if raw { return ProducerRecord(value: Array(line)) }
        let bytes = Array(line)
        let members: [JSONScanner.Member]
        do {
            members = try JSONScanner.members(of: bytes)
        } catch let error as JSONScanner.SyntaxError {
            throw ValueParseError("not a JSON object: \(error)")
        }
        var record = ProducerRecord(value: [])
        var sawValue = false
        var sawKey = false
        let expected = format == .json
            ? "\"key\", \"keyBase64\", \"value\", \"valueText\", \"valueBase64\", \"headers\", \"timestamp\", \"partition\""
            : "\"key\", \"value\", \"headers\", \"timestamp\", \"partition\""
        for member in members {
            let text = bytes[member.range]
            let isNull = text.elementsEqual("null".utf8)
            switch (member.name, format) {
            case ("value", .json):
                record.value = isNull ? nil : Array(text)
            case ("valueText", .json):
                record.value = Array(try string(bytes, member, "valueText").utf8)
            case ("valueBase64", .json):
                record.value = try decode(try string(bytes, member, "valueBase64"), .base64, "valueBase64")
            case ("value", _):
                record.value = isNull ? nil : try decode(try string(bytes, member, "value"), format, "value")
            case ("key", .json):
                if text.first == UInt8(ascii: "\"") {
                    record.key = Array(try JSONScanner.decodeString(bytes, member.range).utf8)
                } else if !isNull {
                    record.key = Array(text)
                }
            case ("keyBase64", .json):
                record.key = isNull ? nil : try decode(try string(bytes, member, "keyBase64"), .base64, "keyBase64")
            case ("key", _):
                record.key = isNull ? nil : try decode(try string(bytes, member, "key"), format, "key")
            case ("headers", _):
                record.headers = try headers(Array(text), format)
            case ("partition", _):
                guard let n = Int(String(decoding: text, as: UTF8.self)), n >= 0 else {
                    throw ValueParseError("\"partition\" must be a partition number, got \(String(decoding: text.prefix(40), as: UTF8.self))")
                }
                record.partition = n
            case ("offset", _):
                break  // where consume read the record; the log gives the new one its own
            case ("timestamp", _):
                guard let ms = Int64(String(decoding: text, as: UTF8.self)), ms >= 0 else {
                    throw ValueParseError("\"timestamp\" must be a whole number of milliseconds since the epoch, got \(String(decoding: text.prefix(40), as: UTF8.self))")
                }
                record.timestamp = ms
            default:
                throw ValueParseError("unknown member \"\(member.name)\" (expected \(expected))")
            }
            if member.name.hasPrefix("value") {
                guard !sawValue else { throw ValueParseError("\"\(member.name)\": the value is given twice") }
                sawValue = true
            }
            if member.name.hasPrefix("key") {
                guard !sawKey else { throw ValueParseError("\"\(member.name)\": the key is given twice") }
                sawKey = true
            }
        }
        guard sawValue else { throw ValueParseError("missing \"value\"") }
        return record
    }

    /// One output line of `kappactl consume` (and of an exec job's input), in `format`.
    public static func consumerLine(_ record: LogRecord) -> String { consumerLine(record, format: .json) }

    /// One output line of `kappactl consume` in `format` (see the type's notes).
    public static func consumerLine(_ record: LogRecord, format: RecordFormat) -> String {
        var line = "{\"partition\":\(record.partition),\"offset\":\(record.offset),\"timestamp\":\(record.timestamp),"
        switch format {
        case .json:
            if let key = record.key {
                line += isUTF8(key) ? "\"key\":" + JSONScanner.quote(String(decoding: key, as: UTF8.self))
                                    : "\"keyBase64\":\"" + encode(key, .base64) + "\""
            } else {
                line += "\"key\":null"
            }
            if let value = record.value {
                if JSONScanner.isValid(value) && !isNullText(value) {
                    line += ",\"value\":" + String(decoding: value, as: UTF8.self)
                } else if isUTF8(value) {
                    line += ",\"valueText\":" + JSONScanner.quote(String(decoding: value, as: UTF8.self))
                } else {
                    line += ",\"valueBase64\":\"" + encode(value, .base64) + "\""
                }
            } else {
                line += ",\"value\":null"
            }
        case .base64, .hex:
            line += "\"key\":" + (record.key.map { "\"" + encode($0, format) + "\"" } ?? "null")
            line += ",\"value\":" + (record.value.map { "\"" + encode($0, format) + "\"" } ?? "null")
        }
        if !record.headers.isEmpty {
            line += ",\"headers\":["
            for (i, h) in record.headers.enumerated() {
                if i > 0 { line += "," }
                line += "{\"key\":" + JSONScanner.quote(h.name) + ","
                if let v = h.value {
                    if format != .json {
                        line += "\"value\":\"" + encode(v[...], format) + "\""
                    } else if isUTF8(v[...]) {
                        line += "\"value\":" + JSONScanner.quote(String(decoding: v, as: UTF8.self))
                    } else {
                        line += "\"valueBase64\":\"" + encode(v[...], .base64) + "\""
                    }
                } else {
                    line += "\"value\":null"
                }
                line += "}"
            }
            line += "]"
        }
        return line + "}"
    }

    /// True for the JSON text `null` (with any white space round it), which consume does not
    /// print as a bare `null`: that is a tombstone.
    private static func isNullText(_ value: ArraySlice<UInt8>) -> Bool {
        value.count >= 4 && value.count < 64 && value.filter { $0 != 0x20 && $0 != 0x09 && $0 != 0x0A && $0 != 0x0D }.elementsEqual("null".utf8)
    }

    private static func string(_ bytes: [UInt8], _ member: JSONScanner.Member, _ name: String) throws -> String {
        guard bytes[member.range].first == UInt8(ascii: "\"") else { throw ValueParseError("\"\(name)\" must be a string") }
        return try JSONScanner.decodeString(bytes, member.range)
    }

    /// The headers of a produce line: a list of `{"key", "value"|"valueBase64"}` or an object.
    private static func headers(_ text: [UInt8], _ format: RecordFormat) throws -> [RecordHeader] {
        let parsed: JSONValue
        do { parsed = try JSONScanner.parse(text) } catch { throw ValueParseError("\"headers\": \(error)") }
        func value(_ v: JSONValue, _ at: String) throws -> [UInt8]? {
            switch v {
            case .null: return nil
            case .string(let s): return format == .json ? Array(s.utf8) : try decode(s, format, at)
            default: throw ValueParseError("\(at) must be a string or null, not \(v.kind)")
            }
        }
        switch parsed {
        case .object(let members):
            return try members.map { RecordHeader($0.0, try value($0.1, "\"headers\".\"\($0.0)\"")) }
        case .array(let items):
            return try items.enumerated().map { i, item in
                let at = "\"headers\"[\(i)]"
                guard case .object(let members) = item else { throw ValueParseError("\(at) must be an object {\"key\", \"value\"}") }
                var name: String?
                var bytes: [UInt8]?
                var sawValue = false
                for (k, v) in members {
                    switch (k, format) {
                    case ("key", _):
                        guard case .string(let s) = v else { throw ValueParseError("\(at).\"key\" must be a string") }
                        name = s
                    case ("value", _):
                        bytes = try value(v, "\(at).\"value\"")
                        sawValue = true
                    case ("valueBase64", .json):
                        guard case .string(let s) = v else { throw ValueParseError("\(at).\"valueBase64\" must be a string") }
                        bytes = try decode(s, .base64, "\(at).\"valueBase64\"")
                        sawValue = true
                    default:
                        throw ValueParseError("\(at): unknown member \"\(k)\" (expected \"key\", \"value\"\(format == .json ? ", \"valueBase64\"" : ""))")
                    }
                }
                guard let name else { throw ValueParseError("\(at): missing \"key\"") }
                guard sawValue else { throw ValueParseError("\(at): missing \"value\"") }
                return RecordHeader(name, bytes)
            }
        default:
            throw ValueParseError("\"headers\" must be a list of {\"key\", \"value\"} or an object, not \(parsed.kind)")
        }
    }

    static func encode(_ bytes: ArraySlice<UInt8>, _ format: RecordFormat) -> String {
        switch format {
        case .hex:
            let digits = Array("0123456789abcdef".utf8)
            var out = [UInt8]()
            out.reserveCapacity(bytes.count * 2)
            for b in bytes { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
            return String(decoding: out, as: UTF8.self)
        default:
            return Data(bytes).base64EncodedString()
        }
    }

    /// - Throws: `ValueParseError` naming `member` when `text` is not in `format`.
    static func decode(_ text: String, _ format: RecordFormat, _ member: String) throws -> [UInt8] {
        switch format {
        case .hex:
            let chars = Array(text.utf8)
            guard chars.count % 2 == 0 else { throw ValueParseError("\(quoted(member)) is not hex (an odd number of digits)") }
            var out = [UInt8]()
            out.reserveCapacity(chars.count / 2)
            var i = 0
            while i < chars.count {
                guard let hi = hexDigit(chars[i]), let lo = hexDigit(chars[i + 1]) else {
                    throw ValueParseError("\(quoted(member)) is not hex (at character \(i + 1))")
                }
                out.append(hi << 4 | lo)
                i += 2
            }
            return out
        default:
            guard let data = Data(base64Encoded: text) else { throw ValueParseError("\(quoted(member)) is not base64") }
            return Array(data)
        }
    }

    private static func quoted(_ member: String) -> String { member.hasPrefix("\"") ? member : "\"\(member)\"" }

    private static func hexDigit(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
