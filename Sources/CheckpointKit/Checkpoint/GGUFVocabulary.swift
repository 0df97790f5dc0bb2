#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a GGUF's vocabulary (`tokenizer.ggml.*`) cannot become a tokenizer.json: one case per
/// fault, each naming the file and the metadata key.
public enum GGUFVocabularyError: Error, Equatable, Sendable, CustomStringConvertible {
    /// `tokenizer.ggml.model` names a vocabulary ckpt does not rebuild.
    case unsupportedModel(file: String, model: String)
    /// A SentencePiece vocabulary of an architecture transformers builds its own way (Gemma).
    case unsupportedArchitecture(file: String, model: String, architecture: String)
    /// A SentencePiece vocabulary whose `tokenizer.ggml.pre` makes transformers put a byte-level
    /// split in front of it (`set_split_regex`): a tokenizer no model was trained with.
    case unsupportedPreTokenizer(file: String, model: String, pre: String)
    case missingKey(file: String, key: String, reason: String)
    /// The key holds another kind of value than llama.cpp writes there.
    case wrongType(file: String, key: String, expected: String, got: String)
    case wrongElementType(file: String, key: String, index: Int, expected: String, got: String)
    /// More tokens than any tokenizer holds (ids must fit the 32-bit tables).
    case tooManyTokens(file: String, count: Int, limit: Int)
    /// A per-token array whose length is not the number of tokens.
    case countMismatch(file: String, key: String, count: Int, tokens: Int)
    case tokenIDOutOfRange(file: String, key: String, id: Int, tokens: Int)
    /// A special token id names the empty token, which no tokenizer can add.
    case emptySpecialToken(file: String, key: String, id: Int)
    case malformedMerge(file: String, index: Int, merge: String)
    case mergeNotInVocabulary(file: String, index: Int, token: String)
    /// transformers sorts merges by score; NaN has no place in that order.
    case scoreNotANumber(file: String, index: Int)
    /// Deriving merges compared more bytes of token splits than any real vocabulary needs
    /// (long tokens made of shorter ones, over and over).
    case derivationTooLarge(file: String, limit: Int)

    /// The one-line message: the file, the offending `tokenizer.ggml.*` metadata and what was expected.
    public var description: String {
        switch self {
        case let .unsupportedModel(file, model):
            return "\(file): tokenizer.ggml.model '\(model)' is not supported (expected gpt2 or llama)"
        case let .unsupportedArchitecture(file, model, architecture):
            return "\(file): tokenizer.ggml.model '\(model)' of architecture '\(architecture)' is not supported "
                + "(transformers builds Gemma's SentencePiece vocabulary its own way; expected a llama-family or phi3 architecture)"
        case let .unsupportedPreTokenizer(file, model, pre):
            return "\(file): tokenizer.ggml.pre '\(pre)' with tokenizer.ggml.model '\(model)' is not supported "
                + "(transformers would split the text byte-level before a SentencePiece vocabulary; expected default)"
        case let .missingKey(file, key, reason):
            return "\(file): metadata '\(key)' is missing (\(reason))"
        case let .wrongType(file, key, expected, got):
            return "\(file): metadata '\(key)' is \(got) (expected \(expected))"
        case let .wrongElementType(file, key, index, expected, got):
            return "\(file): metadata '\(key)'[\(index)] is \(got) (expected \(expected))"
        case let .tooManyTokens(file, count, limit):
            return "\(file): metadata 'tokenizer.ggml.tokens' has \(count) tokens (expected at most \(limit))"
        case let .countMismatch(file, key, count, tokens):
            return "\(file): metadata '\(key)' has \(count) entries for \(tokens) tokens (expected one per token)"
        case let .tokenIDOutOfRange(file, key, id, tokens):
            return "\(file): metadata '\(key)' is \(id), not a token id (expected 0 to \(tokens - 1))"
        case let .emptySpecialToken(file, key, id):
            return "\(file): metadata '\(key)' is \(id), which names an empty token (expected a token with text)"
        case let .malformedMerge(file, index, merge):
            return "\(file): metadata 'tokenizer.ggml.merges'[\(index)] is \(merge.debugDescription) (expected two tokens separated by one space)"
        case let .mergeNotInVocabulary(file, index, token):
            return "\(file): metadata 'tokenizer.ggml.merges'[\(index)] needs \(token.debugDescription), which is not a token"
        case let .scoreNotANumber(file, index):
            return "\(file): metadata 'tokenizer.ggml.scores'[\(index)] is NaN (expected a number)"
        case let .derivationTooLarge(file, limit):
            return "\(file): deriving merges from tokenizer.ggml.tokens compared more than \(limit) bytes of token splits "
                + "(expected far fewer: its tokens are implausibly long repetitions of one another)"
        }
    }
}

/// A GGUF's vocabulary (`tokenizer.ggml.*`) as the tokenizer.json and tokenizer_config.json that
/// transformers 5.24 makes of it: `AutoTokenizer.from_pretrained(dir, gguf_file=…)` then
/// `save_pretrained` (`integrations/gguf/gguf_tokenizer_mapping.py` and the GGUF branch of
/// `TokenizersBackend.__init__`).
///
/// Two vocabularies are rebuilt. `gpt2`: byte-level BPE with the file's merges
/// (`byte_level_tokenizer`, `add_gguf_special_tokens`, `set_split_regex`). `llama`: SentencePiece
/// BPE as `LlamaTokenizer(vocab, merges)` builds it, with the prefix space in a Prepend/Replace
/// normalizer (as the original Llama-2 tokenizer.json and llama.cpp have it, honouring
/// `tokenizer.ggml.add_space_prefix`), byte fallback, no unk_token in the model, the Replace/ByteFallback/Fuse/Strip
/// decoder, merges from the file or derived from the scores as `generate_merges` derives them, and
/// a TemplateProcessing post-processor from `add_bos_token` (true when absent, as llama.cpp
/// assumes) and `add_eos_token`. Every metadata value is checked before use.
public enum GGUFVocabulary {
    /// tokenizer.json and tokenizer_config.json for the file's vocabulary, or nil when it has no
    /// `tokenizer.ggml.tokens` (or an empty list).
    public static func tokenizerFiles(_ gguf: GGUFFile) throws(GGUFVocabularyError) -> (tokenizer: JSONValue, config: JSONValue)? {
        let metadata = VocabularyMetadata(gguf: gguf)
        guard let tokens = try metadata.strings("tokenizer.ggml.tokens"), !tokens.isEmpty else { return nil }
        guard tokens.count <= maximumTokens else { throw .tooManyTokens(file: gguf.path, count: tokens.count, limit: maximumTokens) }
        guard let model = try metadata.string("tokenizer.ggml.model") else {
            throw .missingKey(file: gguf.path, key: "tokenizer.ggml.model", reason: "expected gpt2 or llama beside tokenizer.ggml.tokens")
        }
        switch model {
        case "gpt2":
            return try byteLevelFiles(metadata, tokens: tokens)
        case "llama":
            let architecture = try metadata.string("general.architecture") ?? ""
            if ["gemma", "gemma2", "gemma3"].contains(architecture) {
                throw .unsupportedArchitecture(file: gguf.path, model: model, architecture: architecture)
            }
            let pre = try metadata.string("tokenizer.ggml.pre") ?? "default"
            if splitPreTokenizers.contains(pre) { throw .unsupportedPreTokenizer(file: gguf.path, model: model, pre: pre) }
            return try sentencePieceFiles(metadata, tokens: tokens)
        default:
            throw .unsupportedModel(file: gguf.path, model: model)
        }
    }

    /// The largest vocabulary rebuilt: 64 times the largest real one (256k), and small enough
    /// for 32-bit ids.
    static let maximumTokens = 1 << 24

    // MARK: - gpt2 (byte-level BPE)

    /// GPT-2's byte ↔ printable-character table (`bytes_to_unicode`).
    static let byteAlphabet: [Character] = {
        var printable = Array(33...126) + Array(161...172) + Array(174...255)
        var codes = printable
        var extra = 0
        for b in 0..<256 where !printable.contains(b) {
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
        }
        var table = [Character](repeating: " ", count: 256)
        for (b, c) in zip(printable, codes) { table[b] = Character(Unicode.Scalar(UInt32(c))!) }
        return table
    }()

    static let llama3Split = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let llama3Family: Set<String> = ["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2",
                                             "jina-v5-nano", "dbrx", "smaug-bpe"]

    /// Every `tokenizer.ggml.pre` for which transformers' `set_split_regex` installs a Split +
    /// ByteLevel pre-tokenizer (`GGUF_PRE_TOKENIZER_SPLITS`).
    static let splitPreTokenizers: Set<String> = llama3Family.union([
        "tekken", "qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez", "qwen35", "gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2",
    ])

    /// A `gpt2` vocabulary, built as transformers' `byte_level_tokenizer` + `add_gguf_special_tokens`
    /// + `set_split_regex` build it.
    static func byteLevelFiles(_ metadata: VocabularyMetadata, tokens: [String]) throws(GGUFVocabularyError) -> (tokenizer: JSONValue, config: JSONValue) {
        let alphabet = Set(byteAlphabet)
        let types = try metadata.integers("tokenizer.ggml.token_type", count: tokens.count) ?? []
        // Tokens outside the byte alphabet are respelled byte by byte.
        let spelled = tokens.map { token in
            token.allSatisfy(alphabet.contains) ? token : String(token.utf8.map { byteAlphabet[Int($0)] })
        }
        var vocab: [(String, JSONValue)] = []
        var seen = Set<String>()
        for (id, token) in spelled.enumerated() where seen.insert(token).inserted { vocab.append((token, JSONValue(id))) }
        var merges: [JSONValue] = []
        for (k, merge) in (try metadata.strings("tokenizer.ggml.merges") ?? []).enumerated() {
            let parts = merge.split(separator: " ", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw .malformedMerge(file: metadata.file, index: k, merge: merge) }
            merges.append(.array(parts.map { .string($0) }))
        }
        var added: [JSONValue] = []
        for (id, token) in tokens.enumerated() where id < types.count && (types[id] == 3 || types[id] == 4) {
            if types[id] == 3 && !token.allSatisfy(alphabet.contains) { continue }  // a mislabelled control token
            added.append(["id": JSONValue(id), "content": .string(token), "single_word": false, "lstrip": false, "rstrip": false,
                          "normalized": false, "special": .bool(types[id] == 3)])
        }
        let pre = try metadata.string("tokenizer.ggml.pre") ?? "default"
        let byteLevel: JSONValue = ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true]
        let preTokenizer: JSONValue = llama3Family.contains(pre)
            ? ["type": "Sequence", "pretokenizers": [
                ["type": "Split", "pattern": ["Regex": .string(llama3Split)], "behavior": "Isolated", "invert": false],
                ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false],
            ]]
            : byteLevel
        let special = try metadata.specialTokens(tokens)
        let addBOS = try metadata.flag("tokenizer.ggml.add_bos_token") ?? false
        var single: [JSONValue] = [["Sequence": ["id": "A", "type_id": 0]]]
        var specialTokens: [(String, JSONValue)] = []
        if addBOS, let bos = special.bos {
            single.insert(["SpecialToken": ["id": .string(tokens[bos]), "type_id": 0]], at: 0)
            specialTokens.append((tokens[bos], ["id": .string(tokens[bos]), "ids": [JSONValue(bos)], "tokens": [.string(tokens[bos])]]))
        }
        let tokenizer: JSONValue = [
            "version": "1.0", "truncation": nil, "padding": nil, "added_tokens": .array(added), "normalizer": nil,
            "pre_tokenizer": preTokenizer,
            "post_processor": ["type": "TemplateProcessing", "single": .array(single),
                               "pair": .array(single + [["Sequence": ["id": "B", "type_id": 1]]]), "special_tokens": .object(specialTokens)],
            "decoder": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true],
            "model": ["type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": "", "end_of_word_suffix": "",
                      "fuse_unk": false, "byte_fallback": false, "ignore_merges": false, "vocab": .object(vocab), "merges": .array(merges)],
        ]
        var config: [(String, JSONValue)] = [("tokenizer_class", "PreTrainedTokenizerFast"), ("add_bos_token", .bool(addBOS))]
        for (name, id) in [("bos_token", special.bos), ("eos_token", special.eos), ("unk_token", special.unk), ("pad_token", special.pad)] {
            if let id { config.append((name, .string(tokens[id]))) }
        }
        if let template = try metadata.string("tokenizer.chat_template") { config.append(("chat_template", .string(template))) }
        return (tokenizer, .object(config))
    }

    // MARK: - llama (SentencePiece BPE)

    /// An added token as tokenizers keeps it: its id, and whether it is special (all of these
    /// are matched in the raw text: `normalized: false`).
    struct AddedToken {
        var id: Int
        var content: String
        var special: Bool
    }

    /// A `llama` (SentencePiece) vocabulary, built as transformers' `sentencepiece_tokenizer`
    /// (`LlamaTokenizer(vocab=…, merges=…)`), `add_gguf_special_tokens` and the GGUF branch of
    /// `TokenizersBackend.__init__` build it.
    static func sentencePieceFiles(_ metadata: VocabularyMetadata, tokens: [String]) throws(GGUFVocabularyError) -> (tokenizer: JSONValue, config: JSONValue) {
        let file = metadata.file
        // `{token: index for index, token in enumerate(tokens)}`: a repeated token keeps its last
        // id, and the earlier ids are absent from the vocabulary.
        let index = SpellingIndex(tokens)
        var vocab: [(String, JSONValue)] = []
        vocab.reserveCapacity(index.distinctCount)
        for (id, token) in tokens.enumerated() where index.lastID[id] == id { vocab.append((token, JSONValue(id))) }

        var merges: [JSONValue] = []
        if let lines = try metadata.strings("tokenizer.ggml.merges") {
            // `tuple(merge.split(" "))`, which tokenizers then needs to be a pair of tokens whose join is one.
            merges.reserveCapacity(lines.count)
            for (k, line) in lines.enumerated() {
                let parts = line.utf8.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
                guard parts.count == 2 else { throw .malformedMerge(file: file, index: k, merge: line) }
                let (left, right) = (Array(parts[0]), Array(parts[1]))
                for piece in [left, right, left + right] where index.id(of: piece) == nil {
                    throw .mergeNotInVocabulary(file: file, index: k, token: String(decoding: piece, as: UTF8.self))
                }
                merges.append([.string(String(decoding: left, as: UTF8.self)), .string(String(decoding: right, as: UTF8.self))])
            }
        } else {
            guard let scores = try metadata.numbers("tokenizer.ggml.scores", count: tokens.count) else {
                throw .missingKey(file: file, key: "tokenizer.ggml.scores",
                                  reason: "a llama vocabulary without tokenizer.ggml.merges needs scores to derive its merges")
            }
            if let k = scores.firstIndex(where: \.isNaN) { throw .scoreNotANumber(file: file, index: k) }
            let pairs = try derivedMerges(index, scores: scores, file: file)
            merges.reserveCapacity(pairs.count)
            for pair in pairs { merges.append([.string(tokens[pair.left]), .string(tokens[pair.right])]) }
        }

        // Added tokens, in the order transformers adds them; a later addition of the same content
        // keeps its id and takes the later flags, as tokenizers' `add_tokens` does.
        let special = try metadata.specialTokens(tokens)
        let types = try metadata.integers("tokenizer.ggml.token_type", count: tokens.count) ?? []
        var added: [AddedToken] = []
        var addedIndex: [[UInt8]: Int] = [:]
        var largestAddedID = -1
        func add(_ content: String, special: Bool, replacing: Bool) {
            guard !content.isEmpty else { return }  // tokenizers skips empty added tokens
            let key = Array(content.utf8)
            if let k = addedIndex[key] {
                if replacing { added[k].special = special }
                return
            }
            // A token the model lacks takes the next id: the vocabulary's size (its count of
            // distinct tokens), or one past the largest added id if that is already beyond it.
            let id = index.id(of: key) ?? (largestAddedID >= index.distinctCount ? largestAddedID + 1 : index.distinctCount)
            largestAddedID = max(largestAddedID, id)
            addedIndex[key] = added.count
            added.append(AddedToken(id: id, content: content, special: special))
        }
        // 1. LlamaTokenizer's defaults, added whether or not the vocabulary has them.
        for name in ["<s>", "</s>", "<unk>"] { add(name, special: true, replacing: false) }
        // 2. Control tokens as special, 3. user-defined tokens as plain added tokens.
        for (id, type) in types.enumerated() where type == 3 { add(tokens[id], special: true, replacing: true) }
        for (id, type) in types.enumerated() where type == 4 { add(tokens[id], special: false, replacing: true) }
        // 4. The GGUF's named special tokens that are not added yet.
        for id in [special.bos, special.eos, special.unk, special.pad] {
            if let id { add(tokens[id], special: true, replacing: false) }
        }
        let addedJSON: [JSONValue] = added.sorted { $0.id < $1.id }.map {
            ["id": JSONValue($0.id), "content": .string($0.content), "single_word": false, "lstrip": false, "rstrip": false,
             "normalized": false, "special": .bool($0.special)]
        }

        // The post-processor of `update_post_processor`: a flag without its token adds nothing.
        let bos = special.bos.map { tokens[$0] }, eos = special.eos.map { tokens[$0] }
        let addBOS = try (metadata.flag("tokenizer.ggml.add_bos_token") ?? true) && bos != nil
        let addEOS = try (metadata.flag("tokenizer.ggml.add_eos_token") ?? false) && eos != nil
        func token(_ name: String, _ typeID: Int) -> JSONValue { ["SpecialToken": ["id": .string(name), "type_id": JSONValue(typeID)]] }
        func sequence(_ name: String, _ typeID: Int) -> JSONValue { ["Sequence": ["id": .string(name), "type_id": JSONValue(typeID)]] }
        var single: [JSONValue] = [], pair: [JSONValue] = []
        var specialTokens: [(name: String, id: Int)] = []
        func use(_ name: String) {
            // Step 4 added every named special token, so each has an added id.
            guard let k = addedIndex[Array(name.utf8)], !specialTokens.contains(where: { $0.name.utf8.elementsEqual(name.utf8) }) else { return }
            specialTokens.append((name, added[k].id))
        }
        if addBOS, let bos { single.append(token(bos, 0)); use(bos) }
        single.append(sequence("A", 0))
        if addEOS, let eos { single.append(token(eos, 0)); use(eos) }
        pair = single
        if addBOS, let bos { pair.append(token(bos, 1)) }
        pair.append(sequence("B", 1))
        if addEOS, let eos { pair.append(token(eos, 1)) }
        let specialJSON: [(String, JSONValue)] = specialTokens.map {
            ($0.name, ["id": .string($0.name), "ids": [JSONValue($0.id)], "tokens": [.string($0.name)]])
        }

        // The prefix space goes in the normalizer, as the original Llama-2 tokenizer.json and llama.cpp
        // put it: every piece between added tokens gets one, text that starts with a space included.
        // (transformers 5.24's GGUF loader uses Metaspace with prepend_scheme "first" instead, which
        // drops it before a leading space and so disagrees with llama.cpp on such text.)
        let addSpacePrefix = try metadata.flag("tokenizer.ggml.add_space_prefix") ?? true
        let replace: JSONValue = ["type": "Replace", "pattern": ["String": " "], "content": "▁"]
        let normalizer: JSONValue = ["type": "Sequence", "normalizers": .array(
            (addSpacePrefix ? [["type": "Prepend", "prepend": "▁"] as JSONValue] : []) + [replace])]
        let tokenizer: JSONValue = [
            "version": "1.0", "truncation": nil, "padding": nil, "added_tokens": .array(addedJSON),
            "normalizer": normalizer,
            "pre_tokenizer": nil,
            "post_processor": ["type": "TemplateProcessing", "single": .array(single), "pair": .array(pair), "special_tokens": .object(specialJSON)],
            "decoder": ["type": "Sequence", "decoders": [
                ["type": "Replace", "pattern": ["String": "▁"], "content": " "], ["type": "ByteFallback"], ["type": "Fuse"],
                ["type": "Strip", "content": " ", "start": 1, "stop": 0],
            ]],
            "model": ["type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": nil, "end_of_word_suffix": nil,
                      "fuse_unk": true, "byte_fallback": true, "ignore_merges": false, "vocab": .object(vocab), "merges": .array(merges)],
        ]
        // As the saved tokenizer_config.json names them (null when the GGUF does not), with the
        // BOS/EOS flags the post-processor already carries spelled out for readers that look here.
        var config: [(String, JSONValue)] = [("tokenizer_class", "PreTrainedTokenizerFast"), ("add_bos_token", .bool(addBOS)),
                                             ("add_eos_token", .bool(addEOS))]
        for (name, id) in [("bos_token", special.bos), ("eos_token", special.eos), ("unk_token", special.unk), ("pad_token", special.pad)] {
            config.append((name, id.map { .string(tokens[$0]) } ?? .null))
        }
        if let template = try metadata.string("tokenizer.chat_template") { config.append(("chat_template", .string(template))) }
        return (tokenizer, .object(config))
    }

    /// Bound on the bytes compared to confirm splits while deriving merges: a 256k vocabulary
    /// compares a few million; a hostile one (a, aa, aaa, … each split every way) far more.
    static let derivationWorkLimit = 1 << 32

    /// The merges of a SentencePiece vocabulary that lists none, as transformers'
    /// `generate_merges(vocab, vocab_scores)` derives them: for each distinct token (in order of
    /// first appearance, with the score of its last appearance), every split into two tokens at
    /// a code-point boundary, ordered by the ids of the two halves; then all of them, stably, by
    /// score, then left length, then right length (lengths in code points), all descending.
    /// Returns token ids (a repeated token's last id).
    ///
    /// Linear in the vocabulary's bytes: each token's prefix hashes are computed once, so each
    /// split's two halves are looked up in O(1), and bytes are compared only for halves that are
    /// tokens (bounded by `derivationWorkLimit`).
    static func derivedMerges(_ index: SpellingIndex, scores: [Double], file: String,
                              workLimit: Int = derivationWorkLimit) throws(GGUFVocabularyError) -> [(left: Int, right: Int)] {
        struct Candidate {
            var score: Double
            var leftLength: Int, rightLength: Int
            var left: Int32, right: Int32
            var order: Int
        }
        let found: [Candidate]? = index.withUnsafeHandle { index in
            var candidates: [Candidate] = []
            var local: [Candidate] = []
            let prefix = UnsafeMutableBufferPointer<UInt64>.allocate(capacity: index.powers.count)
            defer { prefix.deallocate() }
            prefix[0] = 0
            var work = 0
            let bytes = index.bytes
            for token in 0..<index.count where index.isFirst[token] {
                let start = index.starts[token], length = index.starts[token + 1] - start
                guard length > 1 else { continue }
                let score = scores[Int(index.lastID[token])]
                // Valid UTF-8 (the GGUF reader checks): a code point starts at every non-continuation byte.
                var points = 0
                for k in 0..<length {
                    prefix[k + 1] = SpellingIndex.step(prefix[k], bytes[start + k], base: index.base)
                    if bytes[start + k] & 0xC0 != 0x80 { points += 1 }
                }
                local.removeAll(keepingCapacity: true)
                var leftPoints = 1
                for cut in 1..<length where bytes[start + cut] & 0xC0 != 0x80 {
                    defer { leftPoints += 1 }
                    let rightHash = SpellingIndex.suffix(prefix[length], minus: prefix[cut], shiftedBy: index.powers[length - cut])
                    guard let left = index.id(hash: prefix[cut], start: start, length: cut, work: &work),
                        let right = index.id(hash: rightHash, start: start + cut, length: length - cut, work: &work)
                    else {
                        if work > workLimit { return nil }
                        continue
                    }
                    if work > workLimit { return nil }
                    local.append(Candidate(score: score, leftLength: leftPoints, rightLength: points - leftPoints,
                                           left: left, right: right, order: 0))
                }
                local.sort { ($0.left, $0.right) < ($1.left, $1.right) }
                for var c in local {
                    c.order = candidates.count
                    candidates.append(c)
                }
            }
            return candidates
        }
        guard var candidates = found else { throw .derivationTooLarge(file: file, limit: workLimit) }
        // Python's sort with reverse=True is stable: equal keys keep their order.
        candidates.sort { a, b in
            if a.score != b.score { return a.score > b.score }
            if a.leftLength != b.leftLength { return a.leftLength > b.leftLength }
            if a.rightLength != b.rightLength { return a.rightLength > b.rightLength }
            return a.order < b.order
        }
        return candidates.map { (Int($0.left), Int($0.right)) }
    }
}

/// A vocabulary as transformers' `{token: index}` dict sees it: each distinct spelling (UTF-8
/// bytes, compared as Python compares `str`, not up to canonical equivalence as Swift's `String`)
/// belongs to the last id that has it.
///
/// Every token's bytes sit back to back in one buffer, and an open-addressing table holds one id
/// per spelling under a polynomial hash, so any substring of a token whose prefix hashes are known
/// is looked up in O(1); a hit is confirmed by comparing bytes. The hash is taken modulo the prime
/// 2⁶¹ − 1 at a base drawn per index: a hostile vocabulary cannot be built to collide (mod 2⁶⁴,
/// Thue–Morse strings collide for every base), and the result never depends on the draw.
struct SpellingIndex {
    /// Every token's UTF-8 bytes, back to back: token i is `bytes[starts[i]..<starts[i + 1]]`.
    let bytes: [UInt8]
    let starts: [Int]
    /// The id whose spelling token i has, in the vocabulary: its last occurrence.
    let lastID: [Int32]
    /// Whether token i is the first with its spelling.
    let isFirst: [Bool]
    let distinctCount: Int
    /// The longest token in bytes, and `base^k` for every k up to it.
    let longest: Int
    let powers: [UInt64]
    let base: UInt64
    /// Per slot: an id (-1 when empty) and the hash of its spelling.
    private let slotIDs: [Int32]
    private let slotHashes: [UInt64]
    private let mask: Int

    var count: Int { starts.count - 1 }

    static let modulus: UInt64 = (1 << 61) - 1

    /// a·b mod 2⁶¹ − 1, for a, b below the modulus: the 122-bit product folds, since 2⁶¹ ≡ 1.
    @inline(__always)
    static func multiply(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let (high, low) = a.multipliedFullWidth(by: b)
        var r = (low & modulus) &+ ((low >> 61) | (high << 3))
        if r >= modulus { r -= modulus }
        if r >= modulus { r -= modulus }
        return r
    }

    /// One byte more of a Horner hash (bytes count from 1, so that zero bytes still count).
    @inline(__always)
    static func step(_ hash: UInt64, _ byte: UInt8, base: UInt64) -> UInt64 {
        let r = multiply(hash, base) &+ UInt64(byte) &+ 1
        return r >= modulus ? r - modulus : r
    }

    /// The hash of `s[cut..<end]` from the hashes of the prefixes `s[..<cut]` and `s[..<end]`.
    @inline(__always)
    static func suffix(_ whole: UInt64, minus prefix: UInt64, shiftedBy power: UInt64) -> UInt64 {
        let p = multiply(prefix, power)
        return whole >= p ? whole - p : whole &+ (modulus - p)
    }

    /// The slot a hash starts probing at: mixed, since the low bits of a polynomial hash are weak.
    @inline(__always)
    static func home(_ hash: UInt64, mask: Int) -> Int {
        var x = hash ^ (hash >> 31)
        x = x &* 0xBF58_476D_1CE4_E5B9
        x ^= x >> 29
        return Int(truncatingIfNeeded: x) & mask
    }

    init(_ tokens: [String]) {
        var bytes: [UInt8] = [], starts = [0]
        bytes.reserveCapacity(tokens.reduce(0) { $0 + $1.utf8.count })
        starts.reserveCapacity(tokens.count + 1)
        for token in tokens {
            bytes += token.utf8
            starts.append(bytes.count)
        }
        var size = 16
        while size < 2 * tokens.count { size <<= 1 }
        var slotIDs = [Int32](repeating: -1, count: size), slotHashes = [UInt64](repeating: 0, count: size)
        var slotOf = [Int](repeating: 0, count: tokens.count), isFirst = [Bool](repeating: false, count: tokens.count)
        var longest = 0, distinct = 0
        let mask = size - 1
        let base = UInt64.random(in: 257..<(Self.modulus - 1))
        self.base = base
        self.mask = mask
        self.bytes = bytes
        self.starts = starts
        bytes.withUnsafeBufferPointer { raw in
            for token in tokens.indices {
                let start = starts[token], length = starts[token + 1] - start
                longest = max(longest, length)
                var hash: UInt64 = 0
                for k in start..<(start + length) { hash = Self.step(hash, raw[k], base: base) }
                var slot = Self.home(hash, mask: mask)
                while slotIDs[slot] >= 0 {
                    let other = Int(slotIDs[slot])
                    if slotHashes[slot] == hash && Self.equal(raw, starts[other], starts[other + 1] - starts[other], start, length) { break }
                    slot = (slot + 1) & mask
                }
                if slotIDs[slot] < 0 {
                    isFirst[token] = true
                    distinct += 1
                    slotHashes[slot] = hash
                }
                slotIDs[slot] = Int32(token)  // a later repeat takes the spelling over
                slotOf[token] = slot
            }
        }
        lastID = slotOf.map { slotIDs[$0] }
        self.isFirst = isFirst
        distinctCount = distinct
        self.longest = longest
        var powers = [UInt64](repeating: 1, count: longest + 1)
        for k in powers.indices.dropFirst() { powers[k] = Self.multiply(powers[k - 1], base) }
        self.powers = powers
        self.slotIDs = slotIDs
        self.slotHashes = slotHashes
    }

    @inline(__always)
    static func equal(_ bytes: UnsafeBufferPointer<UInt8>, _ a: Int, _ aLength: Int, _ b: Int, _ bLength: Int) -> Bool {
        aLength == bLength && (aLength == 0 || memcmp(bytes.baseAddress! + a, bytes.baseAddress! + b, aLength) == 0)
    }

    /// The index's arrays as unsafe buffers, entered once for a loop of lookups.
    struct UnsafeHandle {
        let bytes: UnsafeBufferPointer<UInt8>
        let starts: UnsafeBufferPointer<Int>
        let lastID: UnsafeBufferPointer<Int32>
        let isFirst: UnsafeBufferPointer<Bool>
        let powers: UnsafeBufferPointer<UInt64>
        let base: UInt64
        let slotIDs: UnsafeBufferPointer<Int32>
        let slotHashes: UnsafeBufferPointer<UInt64>
        let mask: Int

        var count: Int { starts.count - 1 }

        /// The vocabulary id of `bytes[start..<start + length]`, whose hash is `hash`; the bytes
        /// compared to confirm a hit are added to `work`.
        @inline(__always)
        func id(hash: UInt64, start: Int, length: Int, work: inout Int) -> Int32? {
            var slot = SpellingIndex.home(hash, mask: mask)
            while true {
                let id = slotIDs[slot]
                guard id >= 0 else { return nil }
                let other = starts[Int(id)]
                if slotHashes[slot] == hash && starts[Int(id) + 1] - other == length {
                    work += length
                    if SpellingIndex.equal(bytes, other, length, start, length) { return id }
                }
                slot = (slot + 1) & mask
            }
        }
    }

    func withUnsafeHandle<R>(_ body: (UnsafeHandle) -> R) -> R {
        bytes.withUnsafeBufferPointer { bytes in
            starts.withUnsafeBufferPointer { starts in
                lastID.withUnsafeBufferPointer { lastID in
                    isFirst.withUnsafeBufferPointer { isFirst in
                        powers.withUnsafeBufferPointer { powers in
                            slotIDs.withUnsafeBufferPointer { slotIDs in
                                slotHashes.withUnsafeBufferPointer { slotHashes in
                                    body(UnsafeHandle(bytes: bytes, starts: starts, lastID: lastID, isFirst: isFirst, powers: powers,
                                                      base: base, slotIDs: slotIDs, slotHashes: slotHashes, mask: mask))
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// The vocabulary id of a spelling.
    func id(of spelling: [UInt8]) -> Int? {
        var hash: UInt64 = 0
        for byte in spelling { hash = Self.step(hash, byte, base: base) }
        var slot = Self.home(hash, mask: mask)
        while true {
            let id = slotIDs[slot]
            guard id >= 0 else { return nil }
            let other = starts[Int(id)], length = starts[Int(id) + 1] - other
            if slotHashes[slot] == hash && length == spelling.count
                && bytes[other..<(other + length)].elementsEqual(spelling)
            {
                return Int(id)
            }
            slot = (slot + 1) & mask
        }
    }
}

/// Typed, checked access to a GGUF's tokenizer metadata: every value is the kind llama.cpp
/// writes, every per-token array has one entry per token, every id names a token.
struct VocabularyMetadata {
    let gguf: GGUFFile
    var file: String { gguf.path }

    /// The named special tokens (`tokenizer.ggml.*_token_id`), each checked in range and non-empty.
    struct SpecialTokens {
        var bos, eos, unk, pad: Int?
    }

    func specialTokens(_ tokens: [String]) throws(GGUFVocabularyError) -> SpecialTokens {
        SpecialTokens(bos: try tokenID("tokenizer.ggml.bos_token_id", tokens), eos: try tokenID("tokenizer.ggml.eos_token_id", tokens),
                      unk: try tokenID("tokenizer.ggml.unknown_token_id", tokens), pad: try tokenID("tokenizer.ggml.padding_token_id", tokens))
    }

    func string(_ key: String) throws(GGUFVocabularyError) -> String? {
        guard let value = gguf.value(key) else { return nil }
        guard case .string(let s) = value else { throw .wrongType(file: file, key: key, expected: "a string", got: Self.describe(value)) }
        return s
    }

    func flag(_ key: String) throws(GGUFVocabularyError) -> Bool? {
        guard let value = gguf.value(key) else { return nil }
        guard case .bool(let b) = value else { throw .wrongType(file: file, key: key, expected: "a bool", got: Self.describe(value)) }
        return b
    }

    func tokenID(_ key: String, _ tokens: [String]) throws(GGUFVocabularyError) -> Int? {
        guard let value = gguf.value(key) else { return nil }
        guard let id = Self.integer(value) else { throw .wrongType(file: file, key: key, expected: "an integer", got: Self.describe(value)) }
        guard id >= 0, id < tokens.count else { throw .tokenIDOutOfRange(file: file, key: key, id: id, tokens: tokens.count) }
        guard !tokens[id].isEmpty else { throw .emptySpecialToken(file: file, key: key, id: id) }
        return id
    }

    func array(_ key: String) throws(GGUFVocabularyError) -> [GGUFValue]? {
        guard let value = gguf.value(key) else { return nil }
        guard case .array(let items, _) = value else { throw .wrongType(file: file, key: key, expected: "an array", got: Self.describe(value)) }
        return items
    }

    func strings(_ key: String) throws(GGUFVocabularyError) -> [String]? {
        guard let items = try array(key) else { return nil }
        var out: [String] = []
        out.reserveCapacity(items.count)
        for (k, item) in items.enumerated() {
            guard case .string(let s) = item else {
                throw .wrongElementType(file: file, key: key, index: k, expected: "a string", got: Self.describe(item))
            }
            out.append(s)
        }
        return out
    }

    /// A per-token array of integers (token types).
    func integers(_ key: String, count: Int) throws(GGUFVocabularyError) -> [Int]? {
        guard let items = try array(key) else { return nil }
        guard items.count == count else { throw .countMismatch(file: file, key: key, count: items.count, tokens: count) }
        var out: [Int] = []
        out.reserveCapacity(items.count)
        for (k, item) in items.enumerated() {
            guard let v = Self.integer(item) else {
                throw .wrongElementType(file: file, key: key, index: k, expected: "an integer", got: Self.describe(item))
            }
            out.append(v)
        }
        return out
    }

    /// A per-token array of numbers (scores), as Python sees them (float32 widened exactly).
    func numbers(_ key: String, count: Int) throws(GGUFVocabularyError) -> [Double]? {
        guard let items = try array(key) else { return nil }
        guard items.count == count else { throw .countMismatch(file: file, key: key, count: items.count, tokens: count) }
        var out: [Double] = []
        out.reserveCapacity(items.count)
        for (k, item) in items.enumerated() {
            switch item {
            case .float, .int, .uint: out.append(item.doubleValue!)
            default: throw .wrongElementType(file: file, key: key, index: k, expected: "a number", got: Self.describe(item))
            }
        }
        return out
    }

    static func integer(_ value: GGUFValue) -> Int? {
        switch value {
        case .int, .uint: return value.intValue
        default: return nil
        }
    }

    static let typeNames = ["uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool", "string", "array", "uint64", "int64", "float64"]

    static func typeName(_ type: UInt32) -> String { type < typeNames.count ? typeNames[Int(type)] : "type \(type)" }

    /// "a uint32 (7)", "a string", "an array of 3 float32".
    static func describe(_ value: GGUFValue) -> String {
        switch value {
        case let .uint(v, type): return "a \(typeName(type)) (\(v))"
        case let .int(v, type): return "an \(typeName(type)) (\(v))"
        case let .float(v, type): return "a \(typeName(type)) (\(v))"
        case .bool(let b): return "a bool (\(b))"
        case .string(let s): return "a string (\(s.count > 40 ? String(s.prefix(40)).debugDescription + "…" : s.debugDescription))"
        case let .array(items, type): return "an array of \(items.count) \(typeName(type))"
        }
    }
}
