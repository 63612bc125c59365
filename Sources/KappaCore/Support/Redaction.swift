/// Secrets never reach output, logs or errors: connection URLs are shown without their password.
public enum Redaction {
    /// `postgres://kappa:secret@db:5432/x?password=y` → `postgres://kappa:***@db:5432/x?password=***`.
    public static func url(_ text: String) -> String {
        guard let scheme = text.range(of: "://") else { return text }
        var rest = String(text[scheme.upperBound...])
        let head = String(text[..<scheme.upperBound])
        if let at = rest.firstIndex(of: "@"), let colon = rest[..<at].firstIndex(of: ":") {
            rest = String(rest[..<rest.index(after: colon)]) + "***" + String(rest[at...])
        }
        var parts = rest.components(separatedBy: "?")
        if parts.count > 1 {
            parts[1] = parts[1].split(separator: "&", omittingEmptySubsequences: false).map { pair -> String in
                let kv = pair.split(separator: "=", maxSplits: 1)
                return kv.first.map { ["password", "sslpassword"].contains($0.lowercased()) ? "\($0)=***" : String(pair) } ?? String(pair)
            }.joined(separator: "&")
        }
        return head + parts.joined(separator: "?")
    }
}

import Foundation
