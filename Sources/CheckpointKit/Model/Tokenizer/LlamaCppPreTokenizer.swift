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
