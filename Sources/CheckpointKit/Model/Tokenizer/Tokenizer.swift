/// A Hugging Face `tokenizer.json` with a BPE model: byte-level BPE (GPT-2, SmolLM2, Qwen2,
/// Llama-3) and SentencePiece-style BPE with byte fallback (Llama-2, TinyLlama, Mistral).
///
/// `encode` gives the ids `tokenizers` gives (`Tokenizer.encode(text).ids`): added tokens are
/// found first, the rest is normalized, cut into words by the pre-tokenizer and each word is
/// merged by BPE; the post-processor's special tokens (BOS…) are added when asked. `decode`
/// runs the file's decoder. Components outside what is listed in `supported…` are refused when
/// the file is loaded, never approximated. `truncation` and `padding` are ignored: ckpt encodes
/// whole texts.
///
/// Immutable after loading; one instance serves any number of threads.
public final class Tokenizer: Sendable {
    /// The file it was read from (or the name given), for messages.
    public let file: String
    /// `added_tokens`, in file order.
    public let addedTokens: [AddedToken]
    /// One more than the largest id of the vocabulary and the added tokens: the size an
    /// embedding matrix needs.
    public let vocabularySize: Int
    /// The beginning-of-sequence token: from `tokenizer_config.json` beside the file when there is
    /// one, else the first token the post-processor puts before the text, else an added special
    /// token with a conventional name (`<s>`, `<|begin_of_text|>`, `<|startoftext|>`, `<bos>`).
    public let bosTokenID: Int?
    /// The end-of-sequence token: from `tokenizer_config.json`, else the conventional names
    /// (`</s>`, `<|end_of_text|>`, `<|endoftext|>`, `<eos>`).
    public let eosTokenID: Int?
    /// Ids `encode(_:addSpecialTokens: true)` puts before the text.
    public let prefixTokenIDs: [Int]
    /// Ids `encode(_:addSpecialTokens: true)` puts after the text.
    public let suffixTokenIDs: [Int]

    let model: BytePairModel
    let normalizer: TextNormalizer?
    let stages: [PreTokenizerStage]
    let rawMatcher: AddedTokenMatcher
    let normalizedMatcher: AddedTokenMatcher
    let decoder: TokenDecoder?
    /// Added tokens by id: the string decode shows (a normalized token's normalized form, as
    /// `tokenizers` does) and whether it is special.
    private let addedByID: [Int: (text: String, special: Bool)]
    /// Added tokens by the bytes of their content (not `String`, which equates canonically
    /// equivalent spellings).
    private let addedByContent: [[UInt8]: Int]

    /// Whether `encode` puts the BOS token first (the post-processor's template starts with it).
    public var addsBOS: Bool { bosTokenID != nil && prefixTokenIDs.first == bosTokenID }

    /// The `model.type` values implemented, listed in `unsupportedComponent` errors.
    public static let supportedModels = ["BPE"]
    /// Larger files are refused before parsing (the largest real ones are ~30 MB).
    public static let maximumFileSize = 512 << 20

    /// Reads a `tokenizer.json`, and the `tokenizer_config.json` beside it when present (for BOS/EOS).
    public convenience init(path: String) throws(TokenizerError) {
        let json = try Self.readJSON(path)
        var config: JSONValue?
        let configPath = FileSystem.join(FileSystem.split(path).directory, "tokenizer_config.json")
        if FileSystem.isRegularFile(configPath), let size = FileSystem.fileSize(configPath), size < 16 << 20 {
            // A config we cannot read only costs the BOS/EOS names; the tokenizer does not depend on it.
            config = try? Self.readJSON(configPath)
        }
        try self.init(json: json, file: path, config: config)
    }

    /// Builds a tokenizer from a parsed `tokenizer.json`; `config` is the optional
    /// `tokenizer_config.json` naming `bos_token` and `eos_token`.
    public init(json: JSONValue, file: String = "tokenizer.json", config: JSONValue? = nil) throws(TokenizerError) {
        let reader = TokenizerJSONReader(file: file)
        self.file = file
        guard case .object = json else { throw reader.malformed("(root)", expected: "a JSON object", got: json) }

        // Model type.
        let modelJSON = json["model"]
        let members = try reader.members(modelJSON, "model")
        let modelType = members.first { $0.0 == "type" }?.1.stringValue ?? (members.contains { $0.0 == "merges" } ? "BPE" : "?")
        guard modelType == "BPE", let modelJSON else {
            throw TokenizerError.unsupportedComponent(file: file, component: "model", type: modelType, supported: Self.supportedModels)
        }

        // Normalizer and pre-tokenizer decide how the model sees text.
        if let n = json["normalizer"], n != .null {
            normalizer = try TextNormalizer(json: n, field: "normalizer", reader: reader)
        } else {
            normalizer = nil
        }
        if let p = json["pre_tokenizer"], p != .null {
            stages = try PreTokenizerStage.stages(json: p, field: "pre_tokenizer", reader: reader)
            try PreTokenizerStage.validate(stages, reader: reader)
        } else {
            stages = []
        }
        let byteLevel = stages.contains { if case .byteLevel = $0 { return true } else { return false } }
        model = try BytePairModel(json: modelJSON, byteLevel: byteLevel, reader: reader)

        // Added tokens. Their ids are assigned as tokenizers assigns them when it loads a file
        // (`AddedVocabulary::add_tokens`): a content already known keeps its id (an earlier
        // added token's, else the model vocabulary's), any other takes the next id after the
        // model vocabulary's size. The "id" fields of the file are only checked in range (in real
        // files they agree; tokenizers merely warns when they do not).
        var added: [AddedToken] = []
        var indexByContent: [[UInt8]: Int] = [:]
        var nextID = model.vocabulary.count
        if let list = json["added_tokens"], list != .null {
            for (k, entry) in try reader.array(list, "added_tokens").enumerated() {
                let field = "added_tokens[\(k)]"
                let content = try reader.string(entry["content"], field + ".content")
                guard let fileID = entry["id"]?.intValue, fileID >= 0, fileID < BytePairModel.maximumVocabulary else {
                    if let id = entry["id"]?.intValue {
                        throw TokenizerError.tokenIDOutOfRange(file: file, token: content, id: id, limit: BytePairModel.maximumVocabulary)
                    }
                    throw reader.malformed(field + ".id", expected: "an integer id", got: entry["id"])
                }
                let special = try reader.bool(entry["special"], field + ".special", default: false)
                var token = AddedToken(
                    id: fileID, content: content, special: special,
                    normalized: try reader.bool(entry["normalized"], field + ".normalized", default: !special),
                    lstrip: try reader.bool(entry["lstrip"], field + ".lstrip", default: false),
                    rstrip: try reader.bool(entry["rstrip"], field + ".rstrip", default: false),
                    singleWord: try reader.bool(entry["single_word"], field + ".single_word", default: false))
                if content.isEmpty { continue }
                let key = Array(content.utf8)
                if let earlier = indexByContent[key] {
                    token.id = added[earlier].id
                    added[earlier] = token  // the later entry's flags win
                    continue
                }
                if let id = model.id(bytes: key) {
                    token.id = id
                } else {
                    guard nextID < BytePairModel.maximumVocabulary else {
                        throw TokenizerError.vocabularyTooLarge(file: file, count: nextID + 1, limit: BytePairModel.maximumVocabulary)
                    }
                    token.id = nextID
                    nextID += 1
                }
                indexByContent[key] = added.count
                added.append(token)
            }
        }
        addedTokens = added
        var byID: [Int: (text: String, special: Bool)] = [:]
        var byContent: [[UInt8]: Int] = [:]
        var rawEntries: [AddedTokenMatcher.Entry] = []
        var normalizedEntries: [AddedTokenMatcher.Entry] = []
        for token in added {
            // Normalized tokens are looked for in normalized text, in their normalized form
            // (Llama-2's "<s>" is found as "▁<s>"), and decode to that form.
            let form = token.normalized ? (normalizer?.apply(token.content) ?? token.content) : token.content
            byID[token.id] = (form, token.special)
            byContent[Array(token.content.utf8)] = token.id
            let entry = AddedTokenMatcher.Entry(bytes: Array(form.utf8), id: token.id, lstrip: token.lstrip,
                                                rstrip: token.rstrip, singleWord: token.singleWord)
            if token.normalized { normalizedEntries.append(entry) } else { rawEntries.append(entry) }
        }
        addedByID = byID
        addedByContent = byContent
        rawMatcher = AddedTokenMatcher(rawEntries)
        normalizedMatcher = AddedTokenMatcher(normalizedEntries)
        vocabularySize = max(model.tokens.count, (added.map(\.id).max() ?? -1) + 1)

        // Post-processor and decoder.
        var template = SpecialTokenTemplate()
        if let p = json["post_processor"], p != .null {
            template = try SpecialTokenTemplate(json: p, field: "post_processor", reader: reader)
        }
        for id in template.prefix + template.suffix where id >= vocabularySize {
            throw TokenizerError.tokenIDOutOfRange(file: file, token: "post_processor special token", id: id, limit: vocabularySize)
        }
        prefixTokenIDs = template.prefix
        suffixTokenIDs = template.suffix
        if let d = json["decoder"], d != .null {
            decoder = try TokenDecoder(json: d, field: "decoder", reader: reader)
        } else {
            decoder = nil
        }

        // BOS / EOS.
        let model = self.model
        // nil: the config does not say; .some(nil): it says there is none (`"bos_token": null`).
        let configToken = { (key: String) -> Int?? in
            guard let value = config?[key] else { return nil }
            guard let name = value.stringValue ?? value["content"]?.stringValue else { return .some(nil) }
            return .some(byContent[Array(name.utf8)] ?? model.id(name))
        }
        let conventional = { (names: [String]) -> Int? in
            for name in names { if let id = byContent[Array(name.utf8)] { return id } }
            return nil
        }
        bosTokenID = configToken("bos_token") ?? template.prefix.first
            ?? conventional(["<s>", "<|begin_of_text|>", "<|startoftext|>", "<bos>"])
        eosTokenID = configToken("eos_token") ?? conventional(["</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>"])
    }

    static func readJSON(_ path: String) throws(TokenizerError) -> JSONValue {
        let mapped: MappedFile
        do { mapped = try MappedFile(path: path) } catch { throw .cannotRead(file: path, reason: "\(error)") }
        guard mapped.count <= maximumFileSize else { throw .fileTooLarge(file: path, size: mapped.count, limit: maximumFileSize) }
        if GitLFSPointer(bytes: mapped.bytes) != nil { throw .gitLFSPointer(file: path) }
        if let bad = firstInvalidUTF8Offset(mapped.bytes) { throw .notUTF8(file: path, offset: bad) }
        do { return try JSONParser.parse(mapped.bytes) } catch { throw .notJSON(file: path, reason: error.description) }
    }

    /// The ids of `text`; with `addSpecialTokens`, those the post-processor adds around it.
    public func encode(_ text: String, addSpecialTokens: Bool = true) -> [Int] {
        var text = text
        let ids: [Int32] = text.withUTF8 { utf8 in
            var session = EncodingSession(tokenizer: self, expectedBytes: utf8.count)
            session.encode(utf8)
            return session.output
        }
        var result: [Int] = []
        result.reserveCapacity(ids.count + prefixTokenIDs.count + suffixTokenIDs.count)
        if addSpecialTokens { result += prefixTokenIDs }
        for id in ids { result.append(Int(id)) }
        if addSpecialTokens { result += suffixTokenIDs }
        return result
    }

    /// The text of `ids` through the file's decoder (tokens joined by spaces when it has none).
    ///
    /// Ids that name no token are skipped, as `tokenizers` does. With `skipSpecialTokens`, added
    /// tokens marked special are left out (judged by id; `tokenizers` judges by the decoded string
    /// and so keeps Llama-2's normalized "▁<s>").
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) -> String {
        var pieces: [String] = []
        pieces.reserveCapacity(ids.count)
        for id in ids {
            if let added = addedByID[id] {
                if skipSpecialTokens && added.special { continue }
                pieces.append(added.text)
            } else if id >= 0, id < model.tokens.count, let token = model.tokens[id] {
                pieces.append(token)
            }
        }
        guard let decoder else { return pieces.joined(separator: " ") }
        return decoder.decodeChain(pieces).joined()
    }

    /// The id of a token string: an added token's content, or a vocabulary entry as spelled in
    /// the file (byte-level vocabularies spell a space `Ġ`).
    public func tokenID(_ token: String) -> Int? {
        addedByContent[Array(token.utf8)] ?? model.id(token)
    }

    /// The string of an id as the file spells it (an added token's content), or nil.
    public func token(_ id: Int) -> String? {
        if let added = addedTokens.first(where: { $0.id == id }) { return added.content }
        guard id >= 0, id < model.tokens.count else { return nil }
        return model.tokens[id]
    }
}
