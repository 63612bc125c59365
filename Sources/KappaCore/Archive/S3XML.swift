#if S3
/// The little of S3's XML the client reads: a ListObjectsV2 result and an error's code and
/// message. A scanner, not a parser: S3's answers are flat elements with text content, and
/// Foundation's XMLParser would bring libxml2 along on Linux.
enum S3XML {
    /// One page of a ListObjectsV2 answer.
    struct ListPage: Equatable {
        var objects: [(key: String, size: Int64, etag: String?)]
        var isTruncated: Bool
        var nextContinuationToken: String?

        static func == (a: ListPage, b: ListPage) -> Bool {
            a.isTruncated == b.isTruncated && a.nextContinuationToken == b.nextContinuationToken
                && a.objects.map(\.key) == b.objects.map(\.key) && a.objects.map(\.size) == b.objects.map(\.size)
                && a.objects.map(\.etag) == b.objects.map(\.etag)
        }
    }

    /// Parses a `ListBucketResult`; nil when it is not one (or a `Contents` lacks its key or has
    /// no whole-number size).
    static func listPage(_ bytes: [UInt8]) -> ListPage? {
        let text = String(decoding: bytes, as: UTF8.self)
        guard text.contains("<ListBucketResult") else { return nil }
        var objects: [(key: String, size: Int64, etag: String?)] = []
        for contents in elements("Contents", in: text) {
            guard let key = element("Key", in: contents).flatMap(unescape),
                  let sizeText = element("Size", in: contents), let size = Int64(sizeText), size >= 0 else { return nil }
            objects.append((key, size, element("ETag", in: contents).flatMap(unescape)))
        }
        guard let truncated = element("IsTruncated", in: text) else { return nil }
        let token = element("NextContinuationToken", in: text).flatMap(unescape)
        return ListPage(objects: objects, isTruncated: truncated == "true", nextContinuationToken: token)
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
