/// The `pre_tokenizer` of a `tokenizer.json`: how a piece of text is cut into the words that BPE
/// encodes one at a time. A `Sequence` becomes several stages, each cutting the pieces of the
/// one before.
enum PreTokenizerStage: Equatable, Sendable {
    /// `Split` with one of the known regexes, `behavior: Isolated`, `invert: false`: every match
    /// is a word (the patterns tile the text, so there is nothing between matches).
    case split(PreTokenizerPattern)
    /// `Digits`: numbers apart from the rest, one scalar per piece when `individually`.
    case digits(individually: Bool)
    /// `ByteLevel`: optionally a space before pieces that lack one, optionally the GPT-2 regex;
    /// the byte-to-character map itself is left to the model, which works on raw bytes.
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
    /// `Metaspace`: spaces become `replacement`, which is prepended per `prependScheme`; with
    /// `split`, each replacement character starts a new word.
    case metaspace(replacement: [UInt8], prependScheme: PrependScheme, split: Bool)

    enum PrependScheme: Equatable, Sendable {
        case always, first, never
    }

    static let supportedTypes = ["ByteLevel", "Split", "Digits", "Metaspace", "Sequence"]

    /// The stages of a pre-tokenizer (a `Sequence` flattened; nested sequences too).
    static func stages(json: JSONValue, field: String, reader: TokenizerJSONReader) throws(TokenizerError) -> [PreTokenizerStage] {
        let type = try reader.type(json, field)
        switch type {
        case "Sequence":
            var stages: [PreTokenizerStage] = []
            let parts = try reader.array(json["pretokenizers"], field + ".pretokenizers")
            for (k, part) in parts.enumerated() {
                stages += try Self.stages(json: part, field: "\(field).pretokenizers[\(k)]", reader: reader)
            }
            return stages
        case "ByteLevel":
            return [.byteLevel(addPrefixSpace: try reader.bool(json["add_prefix_space"], field + ".add_prefix_space", default: true),
                               useRegex: try reader.bool(json["use_regex"], field + ".use_regex", default: true))]
        case "Digits":
            return [.digits(individually: try reader.bool(json["individual_digits"], field + ".individual_digits", default: false))]
        case "Split":
            let patternJSON = try reader.members(json["pattern"], field + ".pattern")
            guard let regexValue = patternJSON.first(where: { $0.0 == "Regex" })?.1 else {
                throw TokenizerError.unsupportedOption(file: reader.file, field: field + ".pattern",
                                                       expected: "a {\"Regex\": …} pattern", got: describeJSON(json["pattern"]))
            }
            let regex = try reader.string(regexValue, field + ".pattern.Regex")
            guard let pattern = PreTokenizerPattern.named(regex: regex) else {
                throw TokenizerError.unsupportedOption(file: reader.file, field: field + ".pattern.Regex",
                                                       expected: "the GPT-2, Llama-3 or Qwen2 pattern",
                                                       got: describeJSON(regexValue))
            }
            let behavior = try reader.string(json["behavior"], field + ".behavior")
            guard behavior == "Isolated" else {
                throw TokenizerError.unsupportedOption(file: reader.file, field: field + ".behavior", expected: "Isolated", got: behavior)
            }
            guard try !reader.bool(json["invert"], field + ".invert", default: false) else {
                throw TokenizerError.unsupportedOption(file: reader.file, field: field + ".invert", expected: "false", got: "true")
            }
            return [.split(pattern)]
        case "Metaspace":
            let replacement = try reader.scalar(json["replacement"], field + ".replacement")
            var scheme = PrependScheme.always
            if let value = json["prepend_scheme"], value != .null {
                switch try reader.string(value, field + ".prepend_scheme") {
                case "always": scheme = .always
                case "first": scheme = .first
                case "never": scheme = .never
                default: throw reader.malformed(field + ".prepend_scheme", expected: "always, first or never", got: value)
                }
            }
            // Files from before prepend_scheme say add_prefix_space; false means never.
            if try !reader.bool(json["add_prefix_space"], field + ".add_prefix_space", default: true) { scheme = .never }
            var bytes: [UInt8] = []
            appendUTF8(replacement.value, to: &bytes)
            return [.metaspace(replacement: bytes, prependScheme: scheme,
                               split: try reader.bool(json["split"], field + ".split", default: true))]
        default:
            throw TokenizerError.unsupportedComponent(file: reader.file, component: field, type: type, supported: supportedTypes)
        }
    }

    /// Checks that stages combine in a way the encoder implements: a `ByteLevel` stage only last
    /// (after it the text is in the byte alphabet, which no later stage could read), and not
    /// together with `Metaspace`.
    static func validate(_ stages: [PreTokenizerStage], reader: TokenizerJSONReader) throws(TokenizerError) {
        for (k, stage) in stages.enumerated() {
            if case .byteLevel = stage, k != stages.count - 1 {
                throw TokenizerError.unsupportedOption(file: reader.file, field: "pre_tokenizer",
                                                       expected: "ByteLevel as the last pre-tokenizer", got: "ByteLevel at step \(k + 1) of \(stages.count)")
            }
        }
        let hasMetaspace = stages.contains { if case .metaspace = $0 { return true } else { return false } }
        let hasByteLevel = stages.contains { if case .byteLevel = $0 { return true } else { return false } }
        if hasMetaspace && hasByteLevel {
            throw TokenizerError.unsupportedOption(file: reader.file, field: "pre_tokenizer",
                                                   expected: "either ByteLevel or Metaspace", got: "both")
        }
    }
}
