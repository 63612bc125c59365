#if S3
/// The little of S3's XML the client reads: a ListObjectsV2 result and an error's code and
/// message. A scanner, not a parser: S3's answers are flat elements with text content, and
/// Foundation's XMLParser would bring libxml2 along on Linux.
enum S3XML {
    /// One page of a ListObjectsV2 answer.
    struct ListPage: Equatable {
        var objects: [(key: String, size: Int64, etag: String?, lastModifiedMs: Int64?)]
        var isTruncated: Bool
        var nextContinuationToken: String?

        static func == (a: ListPage, b: ListPage) -> Bool {
            a.isTruncated == b.isTruncated && a.nextContinuationToken == b.nextContinuationToken
                && a.objects.map(\.key) == b.objects.map(\.key) && a.objects.map(\.size) == b.objects.map(\.size)
                && a.objects.map(\.etag) == b.objects.map(\.etag) && a.objects.map(\.lastModifiedMs) == b.objects.map(\.lastModifiedMs)
        }
    }

    /// Parses a `ListBucketResult`; nil when it is not one (or a `Contents` lacks its key or has
    /// no whole-number size).
    static func listPage(_ bytes: [UInt8]) -> ListPage? {
        let text = String(decoding: bytes, as: UTF8.self)
        guard text.contains("<ListBucketResult") else { return nil }
        var objects: [(key: String, size: Int64, etag: String?, lastModifiedMs: Int64?)] = []
        for contents in elements("Contents", in: text) {
            guard let key = element("Key", in: contents).flatMap(unescape),
                  let sizeText = element("Size", in: contents), let size = Int64(sizeText), size >= 0 else { return nil }
            objects.append((key, size, element("ETag", in: contents).flatMap(unescape), element("LastModified", in: contents).flatMap(time)))
        }
        guard let truncated = element("IsTruncated", in: text) else { return nil }
        let token = element("NextContinuationToken", in: text).flatMap(unescape)
        return ListPage(objects: objects, isTruncated: truncated == "true", nextContinuationToken: token)
    }

    /// `2026-12-04T19:20:05.123Z` (ISO 8601 in UTC, as S3 lists it; the fraction optional) in
    /// milliseconds since 1970; nil for anything else.
    static func time(_ text: String) -> Int64? {
        let b = Array(text.utf8)
        func number(_ range: Range<Int>) -> Int64? {
            guard !range.isEmpty, range.upperBound <= b.count else { return nil }
            var n: Int64 = 0
            for c in b[range] {
                guard c >= 48 && c <= 57 else { return nil }
                n = n * 10 + Int64(c - 48)
            }
            return n
        }
        guard b.count >= 20, b.count <= 30, b[4] == UInt8(ascii: "-"), b[7] == UInt8(ascii: "-"), b[10] == UInt8(ascii: "T"),
              b[13] == UInt8(ascii: ":"), b[16] == UInt8(ascii: ":"), b.last == UInt8(ascii: "Z"),
              let year = number(0..<4), let month = number(5..<7), let day = number(8..<10),
              let hour = number(11..<13), let minute = number(14..<16), let second = number(17..<19),
              year >= 1, (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61 else { return nil }
        var ms: Int64 = 0
        if b.count > 20 {
            // `.f` to `.fffffffff`: milliseconds, the rest cut.
            guard b[19] == UInt8(ascii: "."), let fraction = number(20..<(b.count - 1)) else { return nil }
            let digits = b.count - 21
            var scaled = fraction
            if digits > 3 { for _ in 3..<digits { scaled /= 10 } } else { for _ in digits..<3 { scaled *= 10 } }
            ms = scaled
        }
        // Days from 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
        let y = month <= 2 ? year - 1 : year
        let era = y / 400
        let yoe = y - era * 400
        let doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146_097 + doe - 719_468
        return ((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + ms
    }

    /// The `Code` and `Message` of an `Error` answer, when the body is one.
    static func error(_ bytes: [UInt8]) -> (code: String?, message: String?) {
        let text = String(decoding: bytes.prefix(64 * 1024), as: UTF8.self)
        guard text.contains("<Error") else { return (nil, nil) }
        return (element("Code", in: text).flatMap(unescape), element("Message", in: text).flatMap(unescape))
    }

    /// The text of the first `<name>…</name>` in `text` (not unescaped).
    static func element(_ name: String, in text: Substring) -> String? {
        elements(name, in: text).first.map(String.init)
    }

    static func element(_ name: String, in text: String) -> String? { element(name, in: Substring(text)) }

    /// The content of every `<name>…</name>` (and `<name/>`, empty) in `text`, in order.
    static func elements(_ name: String, in text: String) -> [Substring] { elements(name, in: Substring(text)) }

    static func elements(_ name: String, in text: Substring) -> [Substring] {
        var found: [Substring] = []
        var rest = text
        let open = "<\(name)>", empty = "<\(name)/>", close = "</\(name)>"
        while let start = rest.range(of: "<\(name)") {
            let after = rest[start.upperBound...]
            if after.hasPrefix(">") {
                let contentStart = rest.index(start.lowerBound, offsetBy: open.count)
                guard let end = rest[contentStart...].range(of: close) else { break }
                found.append(rest[contentStart..<end.lowerBound])
                rest = rest[end.upperBound...]
            } else if rest[start.lowerBound...].hasPrefix(empty) {
                found.append("")
                rest = rest[rest.index(start.lowerBound, offsetBy: empty.count)...]
            } else {
                rest = after  // another element whose name starts the same (`<KeyCount>` for `Key`)
            }
        }
        return found
    }

    /// Resolves XML's five named entities and numeric character references; nil for a reference
    /// that is none of those (so that a damaged key is an error, not a wrong key).
    static func unescape(_ text: some StringProtocol) -> String? {
        guard text.contains("&") else { return String(text) }
        var out = ""
        var rest = Substring(text)
        while let amp = rest.firstIndex(of: "&") {
            out += rest[..<amp]
            guard let semi = rest[amp...].firstIndex(of: ";") else { return nil }
            let name = rest[rest.index(after: amp)..<semi]
            switch name {
            case "amp": out += "&"
            case "lt": out += "<"
            case "gt": out += ">"
            case "quot": out += "\""
            case "apos": out += "'"
            default:
                guard name.hasPrefix("#") else { return nil }
                let digits = name.dropFirst()
                let value = digits.hasPrefix("x") || digits.hasPrefix("X") ? UInt32(digits.dropFirst(), radix: 16) : UInt32(digits, radix: 10)
                guard let value, let scalar = Unicode.Scalar(value) else { return nil }
                out.unicodeScalars.append(scalar)
            }
            rest = rest[rest.index(after: semi)...]
        }
        return out + rest
    }
}
#endif
