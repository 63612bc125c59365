/// Secrets never reach output, logs or errors: connection strings are shown without their
/// password, in every form libpq accepts, wherever they occur in a text (an error message that
/// quotes one, a log line).
public enum Redaction {
    /// Parameters whose values are secrets: libpq's `password` and `sslpassword`, and the
    /// environment's `PGPASSWORD` when a message quotes it.
    static let secretKeys: Set<String> = ["password", "sslpassword", "pgpassword"]

    /// Redacts every connection string in `text`:
    /// - URIs (`postgres://`, `postgresql://`, any `scheme://`): the password of the user info
    ///   (`kappa:s3cr@t@db` → `kappa:***@db`; everything up to the last `@` of the URI), and the
    ///   `password=` and `sslpassword=` query parameters, percent-encoded keys included
    ///   (`?%70assword=x` → `?%70assword=***`);
    /// - libpq's `key=value` form: `host=db password=s3cret` and `password = 'with \' quote'`
    ///   become `password=***`.
    public static func url(_ text: String) -> String {
        var found: [String] = []
        return keyValues(uris(text, &found), &found)
    }

    /// The secret values `text`'s connection strings hold, as written and percent-decoded: for
    /// hiding them in messages that quote them out of their context (libpq's error about a
    /// malformed URI may quote part of it).
    public static func secrets(in text: String) -> [String] {
        var found: [String] = []
        _ = keyValues(uris(text, &found), &found)
        return found.flatMap { [$0, $0.removingPercentEncoding ?? $0] }.filter { !$0.isEmpty && $0 != "***" }
    }

    /// Removes the user-info passwords and secret query parameters of every `scheme://` URI.
    /// A URI runs to the next white space or quote.
    private static func uris(_ text: String, _ found: inout [String]) -> String {
        var out = ""
        var rest = Substring(text)
        while let scheme = rest.range(of: "://") {
            out += rest[..<scheme.upperBound]
            rest = rest[scheme.upperBound...]
            let end = rest.firstIndex { $0.isWhitespace || $0 == "\"" || $0 == "'" } ?? rest.endIndex
            out += uri(rest[..<end], &found)
            rest = rest[end...]
        }
        return out + rest
    }

    /// One URI after its `://`: `user:password@host/db?params`.
    private static func uri(_ body: Substring, _ found: inout [String]) -> String {
        var head = body
        var tail: Substring = ""
        // The user info ends at the last `@` (libpq stops at the first, but a password may hold
        // an unencoded `@`: hiding a host is better than showing part of a password).
        if let at = body.lastIndex(of: "@") {
            let info = body[..<at]
            if let colon = info.firstIndex(of: ":") {
                head = body[...colon] + "***"
                found.append(String(info[info.index(after: colon)...]))
                tail = body[at...]
            }
        }
        if tail.isEmpty { (head, tail) = ("", body) }
        guard let q = tail.firstIndex(of: "?") else { return String(head + tail) }
        let params = tail[tail.index(after: q)...].split(separator: "&", omittingEmptySubsequences: false).map { pair -> String in
            guard let eq = pair.firstIndex(of: "=") else { return String(pair) }
            let key = String(pair[..<eq])
            let decoded = (key.removingPercentEncoding ?? key).lowercased()
            guard secretKeys.contains(decoded) else { return String(pair) }
            found.append(String(pair[pair.index(after: eq)...]))
            return key + "=***"
        }
        return String(head + tail[...q]) + params.joined(separator: "&")
    }

    /// libpq's `key=value` form: a secret key (at the start, after white space or after `?`/`&`
    /// of a query), optional spaces, `=`, optional spaces, then a value: single-quoted with
    /// backslash escapes, or up to white space (or `&` in a query).
    private static func keyValues(_ text: String, _ found: inout [String]) -> String {
        let chars = Array(text)
        var out = ""
        var i = 0
        while i < chars.count {
            let before: Character? = i > 0 ? chars[i - 1] : nil
            let boundary = before.map { !($0.isLetter || $0.isNumber || $0 == "_" || $0 == "%") } ?? true
            if boundary, let (keyEnd, valueStart) = secretKey(chars, at: i) {
                let inQuery = before == "?" || before == "&"
                out += String(chars[i..<keyEnd]) + "=***"
                var j = valueStart
                if j < chars.count, chars[j] == "'" {
                    j += 1
                    while j < chars.count, chars[j] != "'" { j += chars[j] == "\\" ? 2 : 1 }
                    j = min(j + 1, chars.count)
                } else {
                    while j < chars.count, !chars[j].isWhitespace, !(inQuery && chars[j] == "&") { j += 1 }
                }
                found.append(String(chars[valueStart..<j]))
                i = j
                continue
            }
            out.append(chars[i])
            i += 1
        }
        return out
    }

    /// If a secret key followed by `=` starts at `i`: the end of the key and the start of the value.
    private static func secretKey(_ chars: [Character], at i: Int) -> (Int, Int)? {
        var j = i
        while j < chars.count, chars[j].isLetter { j += 1 }
        guard j > i, secretKeys.contains(String(chars[i..<j]).lowercased()) else { return nil }
        let keyEnd = j
        while j < chars.count, chars[j] == " " || chars[j] == "\t" { j += 1 }
        guard j < chars.count, chars[j] == "=" else { return nil }
        j += 1
        while j < chars.count, chars[j] == " " || chars[j] == "\t" { j += 1 }
        return (keyEnd, j)
    }

    /// Replaces every occurrence of the given secret values in `text` with `***` (for messages
    /// from libraries that may quote a value they were given, like librdkafka's). Empty values
    /// are ignored; longer values are replaced first, so that one containing another goes whole.
    public static func values(_ secrets: [String], in text: String) -> String {
        var out = text
        for secret in Set(secrets).sorted(by: { $0.count > $1.count }) where !secret.isEmpty {
            out = out.replacingOccurrences(of: secret, with: "***")
        }
        return out
    }
}

import Foundation
