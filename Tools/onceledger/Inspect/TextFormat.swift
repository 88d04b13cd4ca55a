import Glibc
import OnceLedgerFormat

/// How the inspection commands print times, texts and byte strings. Everything is a
/// pure function of its input (no locale, no time zone, no "N minutes ago"), so the
/// output of a fixture ledger is the same on every machine.
enum TextFormat {
    /// Milliseconds since the Unix epoch as ISO 8601 UTC with milliseconds:
    /// `2023-11-14T22:13:20.000Z`. The corresponding C function is `gmtime_r`.
    static func time(_ milliseconds: UInt64) -> String {
        var seconds = time_t(clamping: milliseconds / 1000)
        var parts = tm()
        guard gmtime_r(&seconds, &parts) != nil else { return "\(milliseconds) ms" }
        func pad(_ value: Int32, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))"
            + "T\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2))"
            + ".\(pad(Int32(milliseconds % 1000), 3))Z"
    }

    /// How `quoted` writes a control character other than `\n`, `\r` and `\t`.
    enum ControlEscape {
        /// `\u{1b}`, as Swift writes it (the text output).
        case swift
        /// `\u001b`, as RFC 8259 requires (`--json`).
        case json
    }

    /// A text in double quotes with `\`, `"`, control and format characters escaped
    /// (`hidden`); other non-ASCII characters are written as they are (UTF-8). The one string escaper of the tool:
    /// the text output and `JSONValue` both use it.
    static func quoted(_ text: String, controls: ControlEscape = .swift) -> String {
        var out = ""
        writeQuoted(text, controls: controls, into: &out)
        return out
    }

    static func writeQuoted(_ text: String, controls: ControlEscape, into out: inout String) {
        out += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where hidden(scalar):
                let digits = String(scalar.value, radix: 16)
                switch controls {
                case .swift: out += "\\u{\(digits)}"
                case .json:
                    // RFC 8259: four hex digits per UTF-16 code unit (a surrogate pair above U+FFFF).
                    for unit in String(scalar).utf16 {
                        let hex = String(unit, radix: 16)
                        out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                    }
                }
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }

    /// Scalars never printed as they are: C0 and C1 controls and DEL (a C1 control such as
    /// U+009B is a terminal's CSI), format characters (a right-to-left override U+202E
    /// reorders what follows it on screen; zero-width characters hide a difference between
    /// two keys), and the line and paragraph separators.
    static func hidden(_ scalar: Unicode.Scalar) -> Bool {
        if scalar.value < 0x20 || scalar.value == 0x7f { return true }
        guard scalar.value >= 0x80 else { return false }
        switch scalar.properties.generalCategory {
        case .control, .format, .lineSeparator, .paragraphSeparator: return true
        default: return false
        }
    }

    /// A key or name as is when it is plain (no spaces, quotes, backslashes or control
    /// characters), otherwise quoted, so every printed key can be pasted back.
    static func plain(_ text: String) -> String {
        let needsQuotes = text.isEmpty || text.unicodeScalars.contains {
            $0.value <= 0x20 || hidden($0) || $0 == "\"" || $0 == "\\" || $0 == "'"
        }
        return needsQuotes ? quoted(text) : text
    }

    /// Bytes as a quoted UTF-8 text when they are valid UTF-8, else `hex:…`.
    /// Longer than `limit` bytes: the first `limit` bytes, then `… (N bytes)`.
    static func bytes(_ bytes: [UInt8], limit: Int = 200) -> String {
        let shown = bytes.count > limit ? Array(bytes.prefix(limit)) : bytes
        let suffix = bytes.count > limit ? "… (\(bytes.count) bytes)" : ""
        if let text = String(validating: bytes, as: UTF8.self) {
            if bytes.count <= limit { return quoted(text) }
            // Cut on a character boundary.
            var cut = shown
            while !cut.isEmpty, String(validating: cut, as: UTF8.self) == nil { cut.removeLast() }
            return quoted(String(decoding: cut, as: UTF8.self)) + suffix
        }
        return "hex:" + Hex.string(shown) + suffix
    }

    /// Bytes for JSON: the UTF-8 text when valid, else lowercase hex; with the encoding.
    static func jsonBytes(_ bytes: [UInt8], name: String) -> [(String, JSONValue)] {
        if let text = String(validating: bytes, as: UTF8.self) {
            return [(name, .string(text)), (name + "Encoding", .string("utf8"))]
        }
        return [(name, .string(Hex.string(bytes))), (name + "Encoding", .string("hex"))]
    }

    /// 1234567 -> "1,234,567".
    static func count(_ value: Int) -> String { Format.grouped(value) }
    static func count(_ value: UInt64) -> String { Format.grouped(Int(clamping: value)) }

    /// "1 record", "2 records".
    static func plural(_ value: Int, _ singular: String, _ plural: String? = nil) -> String {
        "\(count(value)) \(value == 1 ? singular : (plural ?? singular + "s"))"
    }

    /// "seq 4" or "seq 4…6".
    static func sequences(_ first: UInt64, _ last: UInt64) -> String {
        first == last ? "seq \(first)" : "seq \(first)…\(last)"
    }

    /// A 32-byte fingerprint: `none` when all zero, else 64 hex digits.
    static func fingerprint(_ bytes: [UInt8]) -> String {
        bytes.allSatisfy { $0 == 0 } ? "none" : Hex.string(bytes)
    }
}
