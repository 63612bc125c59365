/// Job-controlled text (errors, exec programs' stderr, values in tables) as it may be shown to
/// an operator: every control character is escaped, so that no escape sequence reaches the
/// terminal (`ESC [2J` clears it) and no line break forges a line of output.
public enum TerminalText {
    /// `text` with C0 controls, DEL and C1 controls escaped: `\n`, `\r`, `\t`, `\e` (ESC), else
    /// `\xHH` (`\u{HHHH}` for C1 and the bidirectional overrides, which reorder what follows).
    /// Other text, backslashes included, is unchanged.
    public static func escaped(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: needsEscape) else { return text }
        var out = ""
        for scalar in text.unicodeScalars {
            guard needsEscape(scalar) else { out.unicodeScalars.append(scalar); continue }
            switch scalar {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{1b}": out += "\\e"
            default:
                let hex = String(scalar.value, radix: 16)
                out += scalar.value < 0x80 ? "\\x" + (hex.count < 2 ? "0" + hex : hex) : "\\u{" + hex + "}"
            }
        }
        return out
    }

    /// `text` escaped line by line: its own line breaks kept, every other control escaped (for
    /// messages of several lines that quote job-controlled text only within lines).
    public static func escapedKeepingLines(_ text: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).map { escaped(String($0)) }.joined(separator: "\n")
    }

    static func needsEscape(_ s: Unicode.Scalar) -> Bool {
        s.value < 0x20 || (0x7f...0x9f).contains(s.value) || (0x202a...0x202e).contains(s.value) || (0x2066...0x2069).contains(s.value)
    }
}
