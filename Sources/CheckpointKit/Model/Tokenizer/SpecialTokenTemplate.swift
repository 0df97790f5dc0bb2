/// What the `post_processor` of a `tokenizer.json` adds around one encoded text when special
/// tokens are requested: the ids before it (BOS, CLS) and after it (EOS, SEP).
///
/// `TemplateProcessing` gives them in its `single` template; `RobertaProcessing` and
/// `BertProcessing` are CLS + text + SEP; `ByteLevel` only trims offsets, which ids do not have;
/// a `Sequence` concatenates what its steps add. Pair templates are not used (ckpt encodes one
/// text at a time).
struct SpecialTokenTemplate: Equatable, Sendable {
    var prefix: [Int] = []
    var suffix: [Int] = []

    static let supportedTypes = ["TemplateProcessing", "ByteLevel", "RobertaProcessing", "BertProcessing", "Sequence"]

    init() {}

    init(json: JSONValue, field: String, reader: TokenizerJSONReader) throws(TokenizerError) {
        let type = try reader.type(json, field)
        switch type {
        case "ByteLevel":
            break
        case "Sequence":
            let steps = try reader.array(json["processors"], field + ".processors")
            for (k, step) in steps.enumerated() {
                let inner = try SpecialTokenTemplate(json: step, field: "\(field).processors[\(k)]", reader: reader)
                // Each step wraps what the previous produced.
                prefix = inner.prefix + prefix
                suffix += inner.suffix
            }
        case "RobertaProcessing", "BertProcessing":
            func tokenID(_ name: String) throws(TokenizerError) -> Int {
                let pair = try reader.array(json[name], "\(field).\(name)")
                guard pair.count == 2, pair[0].stringValue != nil else {
                    throw reader.malformed("\(field).\(name)", expected: "[token, id]", got: json[name])
                }
                return try reader.integer(pair[1], "\(field).\(name)[1]", in: 0...(BytePairModel.maximumVocabulary - 1))
            }
            prefix = [try tokenID("cls")]
            suffix = [try tokenID("sep")]
        case "TemplateProcessing":
            let special = try reader.members(json["special_tokens"], field + ".special_tokens")
            var idsByName: [String: [Int]] = [:]
            for (name, entry) in special {
                let ids = try reader.array(entry["ids"], "\(field).special_tokens.\(name).ids")
                var list: [Int] = []
                for (k, id) in ids.enumerated() {
                    list.append(try reader.integer(id, "\(field).special_tokens.\(name).ids[\(k)]",
                                                   in: 0...(BytePairModel.maximumVocabulary - 1)))
                }
                idsByName[name] = list
            }
            let single = try reader.array(json["single"], field + ".single")
            var seenSequence = false
            for (k, piece) in single.enumerated() {
                let place = "\(field).single[\(k)]"
                if let sequence = piece["Sequence"] {
                    guard sequence["id"]?.stringValue == "A", !seenSequence else {
                        throw reader.malformed(place, expected: "the sequence $A, once", got: sequence["id"])
                    }
                    seenSequence = true
                } else if let token = piece["SpecialToken"] {
                    let name = try reader.string(token["id"], place + ".SpecialToken.id")
                    guard let ids = idsByName[name] else {
                        throw reader.malformed(place + ".SpecialToken.id", expected: "a name in special_tokens", got: token["id"])
                    }
                    if seenSequence { suffix += ids } else { prefix += ids }
                } else {
                    throw reader.malformed(place, expected: "{\"Sequence\": …} or {\"SpecialToken\": …}", got: piece)
                }
            }
            guard seenSequence else { throw reader.malformed(field + ".single", expected: "a template containing $A", got: json["single"]) }
        default:
            throw TokenizerError.unsupportedComponent(file: reader.file, component: field, type: type, supported: Self.supportedTypes)
        }
    }
}
