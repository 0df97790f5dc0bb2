/// The `decoder` of a `tokenizer.json`: turns token strings back into text. Each step maps a
/// list of strings to a list of strings (`decode_chain` in `tokenizers`); the result is their
/// concatenation.
// Not `indirect`: the recursion goes through an Array, so no case needs a box of its own (and
// LeakSanitizer, which cannot follow Swift's tag bits in box pointers, reported those as leaks).
enum TokenDecoder: Equatable, Sendable {
    case sequence([TokenDecoder])
    /// Maps the byte alphabet back to bytes and decodes them as UTF-8 (invalid sequences become
    /// U+FFFD); a token with a character outside the alphabet contributes its own UTF-8.
    case byteLevel
    /// Replacement characters become spaces, except in the first token (when a prefix was
    /// prepended), where they are dropped.
    case metaspace(replacement: Unicode.Scalar, dropsInFirstToken: Bool)
    case replace(pattern: String, content: String)
    /// Runs of `<0xAB>` tokens become the text they spell, or one U+FFFD per byte if that is not UTF-8.
    case byteFallback
    /// Joins all tokens into one.
    case fuse
    /// Removes up to `start` leading and `stop` trailing `content` characters from each token.
    case strip(content: Unicode.Scalar, start: Int, stop: Int)

    static let supportedTypes = ["ByteLevel", "Metaspace", "Sequence", "Replace", "ByteFallback", "Fuse", "Strip"]

    init(json: JSONValue, field: String, reader: TokenizerJSONReader) throws(TokenizerError) {
        let type = try reader.type(json, field)
        switch type {
        case "Sequence":
            let parts = try reader.array(json["decoders"], field + ".decoders")
            var steps: [TokenDecoder] = []
            for (k, part) in parts.enumerated() {
                steps.append(try TokenDecoder(json: part, field: "\(field).decoders[\(k)]", reader: reader))
            }
            self = .sequence(steps)
        case "ByteLevel":
            self = .byteLevel
        case "Metaspace":
            let stages = try PreTokenizerStage.stages(json: json, field: field, reader: reader)
            guard case let .metaspace(_, scheme, _) = stages.first else { throw reader.malformed(field, expected: "Metaspace", got: json) }
            let replacement = try reader.scalar(json["replacement"], field + ".replacement")
            self = .metaspace(replacement: replacement, dropsInFirstToken: scheme != .never)
        case "Replace":
            let pattern = try reader.stringPattern(json["pattern"], field + ".pattern")
            let content = try reader.string(json["content"], field + ".content")
            self = .replace(pattern: pattern, content: content)
        case "ByteFallback":
            self = .byteFallback
        case "Fuse":
            self = .fuse
        case "Strip":
            let content = try reader.scalar(json["content"], field + ".content")
            let start = try reader.integer(json["start"], field + ".start", in: 0...1 << 20)
            let stop = try reader.integer(json["stop"], field + ".stop", in: 0...1 << 20)
            self = .strip(content: content, start: start, stop: stop)
        default:
            throw TokenizerError.unsupportedComponent(file: reader.file, component: field, type: type, supported: Self.supportedTypes)
        }
    }

    func decodeChain(_ tokens: [String]) -> [String] {
        switch self {
        case .sequence(let steps):
            var tokens = tokens
            for step in steps { tokens = step.decodeChain(tokens) }
            return tokens
        case .byteLevel:
            var bytes: [UInt8] = []
            for token in tokens {
                if let raw = ByteLevelAlphabet.bytes(of: token) { bytes += raw } else { bytes += token.utf8 }
            }
            return [String(decoding: bytes, as: UTF8.self)]
        case let .metaspace(replacement, dropsInFirstToken):
            return tokens.enumerated().map { k, token in
                var scalars = String.UnicodeScalarView()
                for scalar in token.unicodeScalars {
                    if scalar == replacement {
                        if k == 0 && dropsInFirstToken { continue }
                        scalars.append(" ")
                    } else {
                        scalars.append(scalar)
                    }
                }
                return String(scalars)
            }
        case let .replace(pattern, content):
            let (p, c) = (Array(pattern.utf8), Array(content.utf8))
            return tokens.map { token in
                var token = token
                let bytes = token.withUTF8 { replacing($0, p, c) }
                return String(decoding: bytes, as: UTF8.self)
            }
        case .byteFallback:
            var out: [String] = []
            var pending: [UInt8] = []
            func flush() {
                guard !pending.isEmpty else { return }
                if pending.withUnsafeBytes({ firstInvalidUTF8Offset($0) == nil }) {
                    out.append(String(decoding: pending, as: UTF8.self))
                } else {
                    out += Array(repeating: "\u{FFFD}", count: pending.count)
                }
                pending.removeAll()
            }
            for token in tokens {
                if let byte = Self.fallbackByte(token) {
                    pending.append(byte)
                } else {
                    flush()
                    out.append(token)
                }
            }
            flush()
            return out
        case .fuse:
            return [tokens.joined()]
        case let .strip(content, start, stop):
            return tokens.map { token in
                let scalars = Array(token.unicodeScalars)
                var lower = 0
                while lower < min(start, scalars.count) && scalars[lower] == content { lower += 1 }
                var upper = scalars.count
                var removed = 0
                while removed < stop && upper > lower && scalars[upper - 1] == content {
                    upper -= 1
                    removed += 1
                }
                var view = String.UnicodeScalarView()
                view.append(contentsOf: scalars[lower..<upper])
                return String(view)
            }
        }
    }

    /// The byte of a `<0xAB>` token (six bytes, two hex digits of either case), else nil.
    static func fallbackByte(_ token: String) -> UInt8? {
        let u = Array(token.utf8)
        guard u.count == 6, u[0] == UInt8(ascii: "<"), u[1] == UInt8(ascii: "0"), u[2] == UInt8(ascii: "x"),
            u[5] == UInt8(ascii: ">")
        else { return nil }
        func digit(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
            default: return nil
            }
        }
        guard let hi = digit(u[3]), let lo = digit(u[4]) else { return nil }
        return hi << 4 | lo
    }
}
