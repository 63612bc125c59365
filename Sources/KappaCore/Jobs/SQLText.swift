/// Lexical work on SQL text: enough of a tokenizer to find identifiers outside string literals,
/// quoted names and comments.
enum SQLText {
    /// Replaces every reference to the table name `name` (a bare word, any case, or the quoted
    /// `"name"`) with `replacement`. A word right after a `.` is a column or a qualified name
    /// and is left alone.
    static func replacingTable(_ name: String, with replacement: String, in sql: String) -> String {
        let s = Array(sql.unicodeScalars)
        var out = String.UnicodeScalarView()
        var i = 0
        var previousSignificant: Unicode.Scalar?
        func isWordStart(_ c: Unicode.Scalar) -> Bool { c == "_" || (c.isASCII && c.properties.isAlphabetic) }
        func isWord(_ c: Unicode.Scalar) -> Bool { isWordStart(c) || c == "$" || (c.isASCII && c.properties.numericType != nil) }
        while i < s.count {
            let c = s[i]
            if c == "'" {  // string literal, '' escapes
                var j = i + 1
                while j < s.count { if s[j] == "'" { if j + 1 < s.count && s[j + 1] == "'" { j += 2; continue }; break }; j += 1 }
                out.append(contentsOf: s[i..<min(j + 1, s.count)])
                i = j + 1
                previousSignificant = "'"
            } else if c == "\"" || c == "`" || c == "[" {  // quoted identifier
                let close: Unicode.Scalar = c == "[" ? "]" : c
                var j = i + 1
                while j < s.count { if s[j] == close { if close != "]" && j + 1 < s.count && s[j + 1] == close { j += 2; continue }; break }; j += 1 }
                let inner = String(String.UnicodeScalarView(s[(i + 1)..<min(j, s.count)]))
                if inner.lowercased() == name.lowercased() && previousSignificant != "." {
                    out.append(contentsOf: replacement.unicodeScalars)
                } else {
                    out.append(contentsOf: s[i..<min(j + 1, s.count)])
                }
                i = j + 1
                previousSignificant = "\""
            } else if c == "-" && i + 1 < s.count && s[i + 1] == "-" {  // line comment
                var j = i
                while j < s.count && s[j] != "\n" { j += 1 }
                out.append(contentsOf: s[i..<j])
                i = j
            } else if c == "/" && i + 1 < s.count && s[i + 1] == "*" {  // block comment
                var j = i + 2
                while j + 1 < s.count && !(s[j] == "*" && s[j + 1] == "/") { j += 1 }
                let end = min(j + 2, s.count)
                out.append(contentsOf: s[i..<end])
                i = end
            } else if isWordStart(c) {
                var j = i
                while j < s.count && isWord(s[j]) { j += 1 }
                let word = String(String.UnicodeScalarView(s[i..<j]))
                if word.lowercased() == name.lowercased() && previousSignificant != "." {
                    out.append(contentsOf: replacement.unicodeScalars)
                } else {
                    out.append(contentsOf: s[i..<j])
                }
                i = j
                previousSignificant = "a"
            } else {
                out.append(c)
                if !c.properties.isWhitespace { previousSignificant = c }
                i += 1
            }
        }
        return String(out)
    }

    /// An identifier in double quotes (identifiers are validated, so there is nothing to escape,
    /// but quotes are doubled anyway).
    static func quote(_ identifier: String) -> String {
        "\"" + identifier.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}

import Foundation
