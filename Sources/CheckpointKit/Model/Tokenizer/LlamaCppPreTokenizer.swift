/// The name llama.cpp gives a byte-level BPE tokenizer's pre-tokenizer (`tokenizer.ggml.pre`).
///
/// llama.cpp does not read a tokenizer's regexes: it picks its own splitting rules by this name,
/// and an unknown name means its `default` rules, which cut text differently from every real
/// tokenizer (SmolLM2 measured 32.8 perplexity instead of 22.3 with it). Its converter names the
/// pre-tokenizer by behaviour: it encodes a probe text and looks the hash of the ids up in a
/// table (`get_vocab_base_pre`); ckpt does the same with its own tokenizer, from the same table.
public enum LlamaCppPreTokenizer {
    /// How a name was found.
    public enum Evidence: String, Sendable {
        /// The probe text's ids hash to an entry of llama.cpp's table, as in its converter.
        case probeHash = "probe hash"
        /// The tokenizer.json pre-tokenizer is GPT-2's byte-level regex alone, with no normalizer:
        /// exactly what llama.cpp's `gpt-2` rules do, whatever the vocabulary (llama.cpp's table
        /// only knows published vocabularies, so a newly trained one is named this way).
        case gpt2Structure = "GPT-2 byte-level pre-tokenizer"
    }

    /// A name and the evidence for it.
    public struct Identification: Equatable, Sendable {
        /// The `tokenizer.ggml.pre` value.
        public let name: String
        /// How it was found.
        public let evidence: Evidence
        /// sha256 of the probe ids, as llama.cpp's converter prints it (`chkhsh`).
        public let probeHash: String
    }

    /// sha256 of `str(tokenizer.encode(probeText))`: Python's list spelling, `[1, 2, 3]`.
    public static func probeHash(_ tokenizer: Tokenizer) -> String {
        let ids = tokenizer.encode(probeText, addSpecialTokens: true)
        let spelled = "[" + ids.map(String.init).joined(separator: ", ") + "]"
        return sha256Hex(Array(spelled.utf8))
    }

    /// A tokenizer that encodes `probeText` as `Tokenizer(json:file:config:)` would, built from
    /// only the merges that can fire on it (`withProbeMergesOnly`); the whole file's when it cannot
    /// be cut, or the cut one fails to build (so its errors are the whole file's). Building a
    /// 49k-merge vocabulary's merge table is most of a tokenizer's build (SmolLM2: 28 of 34 ms),
    /// and GGUF export waits for the name.
    public static func probeTokenizer(json: JSONValue, file: String, config: JSONValue?) throws(TokenizerError) -> Tokenizer {
        if let reduced = withProbeMergesOnly(json), let tokenizer = try? Tokenizer(json: reduced, file: file, config: config) {
            return tokenizer
        }
        return try Tokenizer(json: json, file: file, config: config)
    }

    /// `json` with only the merges whose joined token's bytes occur in the probe text (or after an
    /// added space), the rest unchanged; nil unless its words are byte-level pieces of the text's
    /// bytes (no normalizer, a ByteLevel pre-tokenizer and no Metaspace, no byte fallback).
    /// A merge joins two adjacent symbols of one word, and a word's bytes are a piece of the text's
    /// (pre-tokenizers here only cut, ByteLevel at most adds a space before a piece): a merge whose
    /// joined bytes occur nowhere never fires. Merges keep their order, and BPE only compares
    /// ranks, so the probe's ids are the same. Merges longer than the hashed pieces, or spelled
    /// outside the byte-level alphabet, are kept.
    static func withProbeMergesOnly(_ json: JSONValue) -> JSONValue? {
        guard json["normalizer"] == nil || json["normalizer"] == .null, let pre = json["pre_tokenizer"], case .object(let root) = json,
              let model = json["model"], case .object(let modelMembers) = model, model["byte_fallback"]?.boolValue != true,
              let merges = model["merges"]?.arrayValue,
              let stages = try? PreTokenizerStage.stages(json: pre, field: "pre_tokenizer", reader: TokenizerJSONReader(file: "")),
              stages.contains(where: { if case .byteLevel = $0 { return true } else { return false } }),
              !stages.contains(where: { if case .metaspace = $0 { return true } else { return false } }) else { return nil }
        let occurring = probePieceHashes
        let kept = merges.filter { entry in
            var joined: JoinedSpelling
            switch entry {
            case .string(let line):
                joined = JoinedSpelling(separated: true)
                guard joined.add(line) else { return true }
            case .array(let pair):
                guard pair.count == 2, let a = pair[0].stringValue, let b = pair[1].stringValue else { return true }
                joined = JoinedSpelling(separated: false)
                guard joined.add(a), joined.add(b) else { return true }
            default:
                return true
            }
            return joined.count > longestHashedPiece || occurring.contains(joined.hash)
        }
        let reducedModel = JSONValue.object(modelMembers.map { $0.0 == "merges" ? ($0.0, .array(kept)) : $0 })
        return .object(root.map { $0.0 == "model" ? ($0.0, reducedModel) : $0 })
    }

    /// FNV-1a of the bytes a merge's byte-level spellings stand for, joined (the separating space of
    /// an "a b" line skipped once), and their count, built part by part with no array per merge.
    struct JoinedSpelling {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325, count = 0
        /// Whether the space that separates the two halves of an "a b" line is still to be skipped.
        var separatorPending: Bool

        init(separated: Bool) { separatorPending = separated }

        /// Adds `part`'s bytes; false for a character outside the alphabet. Reads UTF-8 directly:
        /// the alphabet's characters all lie below U+0144, one or two bytes.
        mutating func add(_ part: String) -> Bool {
            var part = part
            return part.withUTF8 { u in
                var i = 0
                while i < u.count {
                    var scalar = UInt32(u[i])
                    if scalar >= 0x80 {
                        guard scalar & 0xE0 == 0xC0, i + 1 < u.count else { return false }
                        scalar = (scalar & 0x1F) << 6 | UInt32(u[i + 1] & 0x3F)
                        i += 1
                    }
                    i += 1
                    if separatorPending && scalar == 0x20 { separatorPending = false; continue }
                    guard let byte = ByteLevelAlphabet.byte(for: scalar) else { return false }
                    hash = (hash ^ UInt64(byte)) &* 0x100_0000_01B3
                    count += 1
                }
                return true
            }
        }
    }

    /// The longest piece of the probe text `probePieceHashes` holds, in bytes.
    static let longestHashedPiece = 48

    /// FNV-1a of every piece of the probe text's bytes up to `longestHashedPiece` long, and of a
    /// space followed by every piece one shorter (ByteLevel's `add_prefix_space`).
    static let probePieceHashes: Set<UInt64> = {
        let text = Array(probeText.utf8)
        var hashes = Set<UInt64>()
        let start: UInt64 = 0xCBF2_9CE4_8422_2325, prime: UInt64 = 0x100_0000_01B3
        for i in text.indices {
            var plain = start, spaced = (start ^ 0x20) &* prime
            hashes.insert(spaced)
            for j in i..<Swift.min(text.count, i + longestHashedPiece) {
                plain = (plain ^ UInt64(text[j])) &* prime
                spaced = (spaced ^ UInt64(text[j])) &* prime
                hashes.insert(plain)
                if j - i + 2 <= longestHashedPiece { hashes.insert(spaced) }
            }
        }
        return hashes
    }()

    /// The name llama.cpp would give `tokenizer` (built from the tokenizer.json `json`), or nil
    /// when neither its table nor the GPT-2 structure names it.
    public static func identify(_ tokenizer: Tokenizer, json: JSONValue) -> (Identification?, probeHash: String) {
        let hash = probeHash(tokenizer)
        if let name = namesByProbeHash[hash] { return (Identification(name: name, evidence: .probeHash, probeHash: hash), hash) }
        if isPlainGPT2(json) { return (Identification(name: "gpt-2", evidence: .gpt2Structure, probeHash: hash), hash) }
        return (nil, hash)
    }

    /// No normalizer, and a lone ByteLevel pre-tokenizer with its regex on and no prefix space.
    static func isPlainGPT2(_ json: JSONValue) -> Bool {
        guard json["normalizer"] == nil || json["normalizer"] == .null, let pre = json["pre_tokenizer"],
              pre["type"]?.stringValue == "ByteLevel" else { return false }
        return pre["use_regex"]?.boolValue ?? true && !(pre["add_prefix_space"]?.boolValue ?? false)
    }
}
