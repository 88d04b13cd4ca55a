/// A JSON value with ordered object members, rendered deterministically (members in
/// the order given, no floating point), so `--json` output can be compared byte for
/// byte in tests and diffed by operators.
enum JSONValue: Sendable, Equatable {
    case object([(String, JSONValue)])
    case array([JSONValue])
    case string(String)
    case unsigned(UInt64)
    case bool(Bool)
    case null

    static func == (lhs: JSONValue, rhs: JSONValue) -> Bool { lhs.rendered() == rhs.rendered() }

    static func int(_ value: Int) -> JSONValue { .unsigned(UInt64(max(0, value))) }
    static func optional(_ value: UInt64?) -> JSONValue { value.map(JSONValue.unsigned) ?? .null }

    /// One line (for JSON Lines output) or, with `pretty`, two-space indentation.
    func rendered(pretty: Bool = false) -> String {
        var out = ""
        write(into: &out, pretty: pretty, indent: 0)
        return out
    }

    private func write(into out: inout String, pretty: Bool, indent: Int) {
        switch self {
        case .object(let members):
            guard !members.isEmpty else { out += "{}"; return }
            out += "{"
            for (index, (name, value)) in members.enumerated() {
                if index > 0 { out += "," }
                if pretty { out += "\n" + String(repeating: "  ", count: indent + 1) }
                JSONValue.writeString(name, into: &out)
                out += pretty ? ": " : ":"
                value.write(into: &out, pretty: pretty, indent: indent + 1)
            }
            if pretty { out += "\n" + String(repeating: "  ", count: indent) }
            out += "}"
        case .array(let elements):
            guard !elements.isEmpty else { out += "[]"; return }
            out += "["
            for (index, value) in elements.enumerated() {
                if index > 0 { out += "," }
                if pretty { out += "\n" + String(repeating: "  ", count: indent + 1) }
                value.write(into: &out, pretty: pretty, indent: indent + 1)
            }
            if pretty { out += "\n" + String(repeating: "  ", count: indent) }
            out += "]"
        case .string(let text):
            JSONValue.writeString(text, into: &out)
        case .unsigned(let value):
            out += String(value)
        case .bool(let value):
            out += value ? "true" : "false"
        case .null:
            out += "null"
        }
    }

    /// RFC 8259 string escaping (`TextFormat`'s one escaper); non-ASCII characters are written as UTF-8.
    private static func writeString(_ text: String, into out: inout String) {
        TextFormat.writeQuoted(text, controls: .json, into: &out)
    }
}
