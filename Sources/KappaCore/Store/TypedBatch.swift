import Foundation

/// `source.fields`: each record's value decoded once, in Swift, into the typed columns that
/// `batch` has after `partition`, `offset`, `timestamp`, `key`, `value` and `key_bytes`, so that
/// the job's SQL reads `rate` instead of parsing `value->>'rate'` again in every expression.
///
/// A record whose value does not fit the fields is a bad record naming the field (schema
/// validation at the edge), on every store alike:
/// - the value must be a JSON object, and each field a member of it (no field twice);
/// - JSON `null` is SQL NULL, as is every field of a tombstone (a record without a value);
/// - the value escapes no NUL character (`\u0000`), as for every SQL job;
/// - `TEXT` takes a string;
///   `INTEGER` and `BIGINT` an integer within 64 bits (no fraction or exponent); `REAL` and
///   `DOUBLE` a finite number; `NUMERIC` a number, kept as its text; `BOOLEAN` true or false.
struct TypedBatch {
    let fields: [JobSpec.Column]
    /// Row-major: the fields of record `i` are `values[i * fields.count ..< (i + 1) * fields.count]`.
    private(set) var values: [SQLValue]
    /// The records that do not fit, by index, ascending, with the reason.
    private(set) var bad: [(index: Int, message: String)] = []

    init(_ records: LogRecords, fields: [JobSpec.Column]) {
        self.fields = fields
        let names = fields.map { Array($0.name.utf8) }
        var values: [SQLValue] = []
        values.reserveCapacity(records.count * fields.count)
        var found = [Range<Int>?](repeating: nil, count: fields.count)
        var bad: [(index: Int, message: String)] = []
        records.storage.withUnsafeBufferPointer { storage in
            for i in records.indices {
                let e = records.entries[i]
                let start = values.count
                guard e.valueLength >= 0 else {
                    values.append(contentsOf: repeatElement(.null, count: fields.count))  // a tombstone
                    continue
                }
                let value = UnsafeBufferPointer(rebasing: storage[Int(e.valueStart)..<Int(e.valueStart) + Int(e.valueLength)])
                if let problem = Self.decode(value, fields: fields, names: names, found: &found, into: &values) {
                    values.removeSubrange(start...)
                    values.append(contentsOf: repeatElement(.null, count: fields.count))
                    bad.append((i, problem))
                }
            }
        }
        self.bad = bad
        self.values = values
    }

    /// The fields of record `i`.
    func row(_ i: Int) -> ArraySlice<SQLValue> { values[i * fields.count ..< (i + 1) * fields.count] }

    /// Why the first record in `range` that does not fit does not; nil when all fit.
    func firstProblem(in range: Range<Int>) -> String? {
        bad.first { range.contains($0.index) }?.message
    }

    /// Appends a record's fields to `out`; the reason when they do not fit.
    private static func decode(_ buffer: UnsafeBufferPointer<UInt8>, fields: [JobSpec.Column], names: [[UInt8]],
                               found: inout [Range<Int>?], into out: inout [SQLValue]) -> String? {
        for k in found.indices { found[k] = nil }
        var duplicate: Int?
        switch JSONScanner.scanFields(buffer, names: names, found: &found, duplicate: &duplicate) {
        case .notJSON: return "the value is not JSON text (\(buffer.count) bytes)"
        case .nulEscape: return BatchBytes.nulEscapeMessage
        case .notObject(let kind): return "the value is \(kind), not a JSON object, so it has no field \"\(fields[0].name)\" (source.fields)"
        case .object: break
        }
        if let duplicate { return "field \"\(fields[duplicate].name)\" appears twice in the value" }
        for (k, field) in fields.enumerated() {
            guard let range = found[k] else { return "field \"\(field.name)\" is missing (source.fields; a JSON null is NULL)" }
            switch convert(UnsafeBufferPointer(rebasing: buffer[range]), to: field.type) {
            case .success(let value): out.append(value)
            case .failure(let problem): return "field \"\(field.name)\" (\(field.type.rawValue)) \(problem.text)"
            }
        }
        return nil
    }

    struct Mismatch: Error { var text: String }

    private static let powersOfTen: [Double] = (0...22).map { pow(10, Double($0)) }

    /// A plain decimal (`-123.45`: at most 15 digits, no exponent) as the nearest double, by
    /// Clinger's fast path: digits and power of ten are both exact doubles, so one division
    /// rounds correctly. Nil for the rest (then `Double(String)` reads it).
    static func exactDecimal(_ text: UnsafeBufferPointer<UInt8>) -> Double? {
        var i = 0, mantissa: Int64 = 0, digits = 0, scale = -1
        let negative = text[0] == UInt8(ascii: "-")
        if negative { i = 1 }
        while i < text.count {
            let c = text[i]
            if c == UInt8(ascii: ".") {
                guard scale < 0 else { return nil }
                scale = 0
            } else if c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") {
                mantissa = mantissa * 10 + Int64(c - UInt8(ascii: "0"))
                digits += 1
                if scale >= 0 { scale += 1 }
                guard digits <= 15 else { return nil }
            } else {
                return nil  // an exponent
            }
            i += 1
        }
        let d = Double(mantissa) / powersOfTen[max(0, scale)]
        return negative ? -d : d
    }

    /// One member's JSON text as a value of `type`.
    static func convert(_ text: UnsafeBufferPointer<UInt8>, to type: JobSpec.ColumnType) -> Result<SQLValue, Mismatch> {
        let first = text[0]
        if first == UInt8(ascii: "n") { return .success(.null) }
        let kind: String
        switch first {
        case UInt8(ascii: "\""): kind = "a string"
        case UInt8(ascii: "t"), UInt8(ascii: "f"): kind = "a boolean"
        case UInt8(ascii: "{"): kind = "an object"
        case UInt8(ascii: "["): kind = "an array"
        default: kind = "a number"
        }
        func shown() -> String {
            text.count <= 40 ? String(decoding: text, as: UTF8.self) : String(decoding: text.prefix(37), as: UTF8.self) + "..."
        }
        switch type {
        case .text:
            guard kind == "a string" else { return .failure(Mismatch(text: "must be a string, got \(kind)")) }
            let inner = UnsafeBufferPointer(rebasing: text[1..<text.count - 1])
            if !inner.contains(UInt8(ascii: "\\")) { return .success(.text(String(decoding: inner, as: UTF8.self))) }
            guard let decoded = try? JSONScanner.decodeString(Array(text), 0..<text.count) else {
                return .failure(Mismatch(text: "holds a string that cannot be decoded"))
            }
            return .success(.text(decoded))  // no NUL: the value escapes none (`JSONScanner.FieldScan.nulEscape`)
        case .integer, .bigint:
            guard kind == "a number" else { return .failure(Mismatch(text: "must be an integer, got \(kind)")) }
            var n: Int64 = 0
            var i = 0
            let negative = text[0] == UInt8(ascii: "-")
            if negative { i = 1 }
            while i < text.count {
                let d = text[i]
                guard d >= UInt8(ascii: "0"), d <= UInt8(ascii: "9") else {
                    return .failure(Mismatch(text: "must be an integer, got \(shown())"))
                }
                let digit = Int64(d - UInt8(ascii: "0"))
                let (m, o1) = n.multipliedReportingOverflow(by: 10)
                let (r, o2) = negative ? m.subtractingReportingOverflow(digit) : m.addingReportingOverflow(digit)
                guard !o1, !o2 else { return .failure(Mismatch(text: "is out of the 64-bit range: \(shown())")) }
                n = r
                i += 1
            }
            return .success(.integer(n))
        case .real, .double:
            guard kind == "a number" else { return .failure(Mismatch(text: "must be a number, got \(kind)")) }
            if let d = exactDecimal(text) { return .success(.real(d)) }
            guard let d = Double(String(decoding: text, as: UTF8.self)), d.isFinite else {
                return .failure(Mismatch(text: "is out of the range of a double: \(shown())"))
            }
            return .success(.real(d))
        case .numeric:
            guard kind == "a number" else { return .failure(Mismatch(text: "must be a number, got \(kind)")) }
            return .success(.text(String(decoding: text, as: UTF8.self)))
        case .boolean:
            guard kind == "a boolean" else { return .failure(Mismatch(text: "must be true or false, got \(kind)")) }
            return .success(.integer(first == UInt8(ascii: "t") ? 1 : 0))
        case .blob:
            return .failure(Mismatch(text: "cannot be read from JSON (source.fields takes no BLOB)"))
        }
    }
}
