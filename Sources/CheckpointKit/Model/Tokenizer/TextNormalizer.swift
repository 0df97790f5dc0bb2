/// The `normalizer` of a `tokenizer.json`: a rewrite of each piece of text (between added
/// tokens) before it is split into words. Llama-2 style tokenizers use `Prepend("▁")` then
/// `Replace(" " → "▁")`; Qwen2 uses `NFC`.
// Not `indirect`: the recursion goes through an Array, so no case needs a box of its own (and
// LeakSanitizer, which cannot follow Swift's tag bits in box pointers, reported those as leaks).
enum TextNormalizer: Equatable, Sendable {
    case sequence([TextNormalizer])
    /// Prepends the bytes to a non-empty piece.
    case prepend([UInt8])
    /// Replaces every occurrence of a literal, left to right without overlaps.
    case replace(pattern: [UInt8], content: [UInt8])
    /// Unicode canonical composition.
    case nfc
    /// Unicode lowercase mapping, scalar by scalar.
    case lowercase
    /// Removes leading and/or trailing White_Space.
    case strip(left: Bool, right: Bool)

    static let supportedTypes = ["Sequence", "Prepend", "Replace", "NFC", "Lowercase", "Strip"]
    /// The longest `Replace` pattern or content accepted (and `Prepend` text).
    static let maximumReplaceBytes = 256

    init(json: JSONValue, field: String, reader: TokenizerJSONReader) throws(TokenizerError) {
        let type = try reader.type(json, field)
        switch type {
        case "Sequence":
            let parts = try reader.array(json["normalizers"], field + ".normalizers")
            var steps: [TextNormalizer] = []
            for (k, part) in parts.enumerated() {
                steps.append(try TextNormalizer(json: part, field: "\(field).normalizers[\(k)]", reader: reader))
            }
            self = .sequence(steps)
        case "Prepend":
            let prefix = try reader.string(json["prepend"], field + ".prepend")
            guard prefix.utf8.count <= Self.maximumReplaceBytes else {
                throw reader.malformed(field + ".prepend", expected: "at most \(Self.maximumReplaceBytes) bytes", gotText: "\(prefix.utf8.count) bytes")
            }
            self = .prepend(Array(prefix.utf8))
        case "Replace":
            let pattern = try reader.stringPattern(json["pattern"], field + ".pattern")
            let content = try reader.string(json["content"], field + ".content")
            // Real normalizers replace a character or two; a long replacement multiplies the text.
            for (name, text) in [("pattern", pattern), ("content", content)] where text.utf8.count > Self.maximumReplaceBytes {
                throw reader.malformed(field + "." + name, expected: "at most \(Self.maximumReplaceBytes) bytes",
                                       gotText: "\(text.utf8.count) bytes")
            }
            self = .replace(pattern: Array(pattern.utf8), content: Array(content.utf8))
        case "NFC":
            self = .nfc
        case "Lowercase":
            self = .lowercase
        case "Strip":
            let left = try reader.bool(json["strip_left"], field + ".strip_left", default: true)
            let right = try reader.bool(json["strip_right"], field + ".strip_right", default: true)
            self = .strip(left: left, right: right)
        default:
            throw TokenizerError.unsupportedComponent(file: reader.file, component: field, type: type, supported: Self.supportedTypes)
        }
    }

    /// The normalized form of UTF-8 text (the result is UTF-8 too).
    func apply(_ input: UnsafeBufferPointer<UInt8>) -> [UInt8] {
        switch self {
        case .sequence(let steps):
            var text = Array(input)
            for step in steps {
                text = text.withUnsafeBufferPointer { step.apply($0) }
            }
            return text
        case .prepend(let prefix):
            if input.isEmpty { return [] }
            return prefix + Array(input)
        case let .replace(pattern, content):
            return replacing(input, pattern, content)
        case .nfc:
            if input.allSatisfy({ $0 < 0x80 }) { return Array(input) }
            // The standard library's own canonical composition (an underscored but public API:
            // there is no other without Foundation).
            return String(decoding: input, as: UTF8.self)._nfcCodeUnits
        case .lowercase:
            return Array(String(decoding: input, as: UTF8.self).lowercased().utf8)
        case let .strip(left, right):
            let text = String(decoding: input, as: UTF8.self).unicodeScalars
            var lower = text.startIndex, upper = text.endIndex
            if left { while lower < upper && text[lower].properties.isWhitespace { lower = text.index(after: lower) } }
            if right {
                while upper > lower && text[text.index(before: upper)].properties.isWhitespace { upper = text.index(before: upper) }
            }
            return Array(String(text[lower..<upper]).utf8)
        }
    }

    func apply(_ text: String) -> String {
        var text = text
        let bytes = text.withUTF8 { apply($0) }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// `input` with every non-overlapping occurrence of `pattern` (non-empty), found left to right,
/// replaced by `content`.
func replacing(_ input: UnsafeBufferPointer<UInt8>, _ pattern: [UInt8], _ content: [UInt8]) -> [UInt8] {
    guard let first = pattern.first, input.count >= pattern.count else { return Array(input) }
    var out: [UInt8] = []
    out.reserveCapacity(input.count)  // grows only as real replacements are made
    var i = 0
    var copied = 0
    let last = input.count - pattern.count
    pattern.withUnsafeBufferPointer { pat in
        while i <= last {
            if input[i] == first && equalBytes(input.baseAddress! + i, pat.baseAddress!, pat.count) {
                out.append(contentsOf: input[copied..<i])
                out.append(contentsOf: content)
                i += pat.count
                copied = i
            } else {
                i += 1
            }
        }
    }
    out.append(contentsOf: input[copied...])
    return out
}
