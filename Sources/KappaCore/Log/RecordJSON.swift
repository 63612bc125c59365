/// The JSON-lines forms of records used by `kappactl produce` and `kappactl consume`.
public enum RecordJSON {
    /// Parses one input line of `kappactl produce`: an object `{"key": …, "value": …,
    /// "timestamp": …}` (key and timestamp optional; a string key is stored as its UTF-8 bytes,
    /// any other key as its JSON text; the value, any JSON, is stored as its exact JSON text).
    /// With `raw`, the line itself is the value.
    /// - Throws: `ValueParseError` saying what is wrong (the caller adds the line number).
    public static func producerRecord(line: ArraySlice<UInt8>, raw: Bool) throws -> ProducerRecord {
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
        for member in members {
            let text = bytes[member.range]
            switch member.name {
            case "value":
                record.value = Array(text)
                sawValue = true
            case "key":
                if text.first == UInt8(ascii: "\"") {
                    record.key = Array(try JSONScanner.decodeString(bytes, member.range).utf8)
                } else if !text.elementsEqual("null".utf8) {
                    record.key = Array(text)
                }
            case "timestamp":
                guard let ms = Int64(String(decoding: text, as: UTF8.self)), ms >= 0 else {
                    throw ValueParseError("\"timestamp\" must be a whole number of milliseconds since the epoch, got \(String(decoding: text.prefix(40), as: UTF8.self))")
                }
                record.timestamp = ms
            default:
                throw ValueParseError("unknown member \"\(member.name)\" (expected \"key\", \"value\", \"timestamp\")")
            }
        }
        guard sawValue else { throw ValueParseError("missing \"value\"") }
        return record
    }

    /// One output line of `kappactl consume`:
    /// `{"partition":P,"offset":N,"timestamp":T,"key":"…"|null,"value":…}`; the value is written
    /// as JSON when it is valid JSON, else as a string.
    public static func consumerLine(_ record: LogRecord) -> String {
        var line = "{\"partition\":\(record.partition),\"offset\":\(record.offset),\"timestamp\":\(record.timestamp),\"key\":"
        if let key = record.key {
            line += JSONScanner.quote(String(decoding: key, as: UTF8.self))
        } else {
            line += "null"
        }
        line += ",\"value\":"
        if JSONScanner.isValid(record.value) {
            line += String(decoding: record.value, as: UTF8.self)
        } else {
            line += JSONScanner.quote(String(decoding: record.value, as: UTF8.self))
        }
        return line + "}"
    }
}
