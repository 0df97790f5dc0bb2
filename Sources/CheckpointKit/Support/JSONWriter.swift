/// Serializes `JSONValue`s in the spellings other tools expect byte for byte.
public enum JSONStyle: Sendable {
    /// serde_json's `to_string`: no spaces, non-ASCII kept as UTF-8 (safetensors headers).
    case compact
    /// Python `json.dumps` defaults: ", " and ": " separators, non-ASCII escaped as \uXXXX
    /// (bitsandbytes quant_state blobs).
    case python
    /// Two-space indentation, keys as given, non-ASCII kept (config.json, reports).
    case pretty
}

extension JSONValue {
    /// The document as text. Objects keep their member order; pass `sortKeys` to sort them.
    public func serialized(style: JSONStyle = .compact, sortKeys: Bool = false) -> String {
        var out = ""
        write(into: &out, style: style, sortKeys: sortKeys, indent: 0)
        return out
    }

    private func write(into out: inout String, style: JSONStyle, sortKeys: Bool, indent: Int) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .integer(let v): out += String(v)
        case .unsignedInteger(let v): out += String(v)
        case .double(let d): out += JSONValue.formatDouble(d, style: style)
        case .string(let s): JSONValue.writeString(s, into: &out, escapeNonASCII: style == .python)
        case .array(let elements):
            if elements.isEmpty {
                out += "[]"
                return
            }
            out += "["
            for (i, element) in elements.enumerated() {
                if i > 0 { out += style == .python ? ", " : "," }
                if style == .pretty { out += "\n" + String(repeating: "  ", count: indent + 1) }
                element.write(into: &out, style: style, sortKeys: sortKeys, indent: indent + 1)
            }
            if style == .pretty { out += "\n" + String(repeating: "  ", count: indent) }
            out += "]"
        case .object(let members):
            if members.isEmpty {
                out += "{}"
                return
            }
            let ordered = sortKeys ? members.sorted { $0.0 < $1.0 } : members
            out += "{"
            for (i, (key, value)) in ordered.enumerated() {
                if i > 0 { out += style == .python ? ", " : "," }
                if style == .pretty { out += "\n" + String(repeating: "  ", count: indent + 1) }
                JSONValue.writeString(key, into: &out, escapeNonASCII: style == .python)
                out += style == .compact ? ":" : ": "
                value.write(into: &out, style: style, sortKeys: sortKeys, indent: indent + 1)
            }
            if style == .pretty { out += "\n" + String(repeating: "  ", count: indent) }
            out += "}"
        }
    }

    /// Shortest round-trip spelling, as Python's `repr(float)` and serde_json both use
    /// (Python keeps a trailing ".0" on integral values; non-finite values become null).
    static func formatDouble(_ d: Double, style: JSONStyle) -> String {
        guard d.isFinite else { return "null" }
        return "\(d)"
    }

    static func writeString(_ s: String, into out: inout String, escapeNonASCII: Bool) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if scalar.value < 0x20 {
                    out += "\\u" + hex4(scalar.value)
                } else if escapeNonASCII && scalar.value > 0x7E {
                    if scalar.value > 0xFFFF {
                        let v = scalar.value - 0x10000
                        out += "\\u" + hex4(0xD800 + (v >> 10)) + "\\u" + hex4(0xDC00 + (v & 0x3FF))
                    } else {
                        out += "\\u" + hex4(scalar.value)
                    }
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }

    private static func hex4(_ v: UInt32) -> String {
        let digits = Array("0123456789abcdef")
        return String([digits[Int(v >> 12 & 0xF)], digits[Int(v >> 8 & 0xF)], digits[Int(v >> 4 & 0xF)], digits[Int(v & 0xF)]])
    }
}
