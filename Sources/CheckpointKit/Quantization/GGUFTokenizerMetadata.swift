/// `tokenizer.ggml.*` for a GGUF written by ckpt, from a folder's tokenizer.json, as llama.cpp's
/// converter writes them: a byte-level BPE vocabulary as `gpt2` (tokens, types, merges, and the
/// pre-tokenizer named as llama.cpp names it), a SentencePiece-style one (BPE with byte fallback,
/// Llama-2, Mistral) as `llama` (tokens, scores, types).
extension GGUFExport {
    /// `tokenizer.ggml.pre` is `preTokenizer` when the source names it (a GGUF input), else the
    /// name llama.cpp's converter would give (`LlamaCppPreTokenizer`); a byte-level tokenizer it
    /// cannot name is refused, since llama.cpp would split its text by other rules.
    static func tokenizerMetadata(_ json: JSONValue, special: JSONValue?, chatTemplate: String?, file path: String,
                                  vocabulary: Int, preTokenizer: String? = nil) throws -> [(String, Value)] {
        guard let model = json["model"], model["type"]?.stringValue == "BPE", let vocab = model["vocab"]?.objectMembers else {
            throw Failure.tokenizer(file: path, reason: "not a BPE tokenizer")
        }
        let sentencePiece = model["byte_fallback"]?.boolValue == true
        var tokens = [String](repeating: "", count: vocabulary)
        var types = [Int32](repeating: 1, count: vocabulary)
        // Token → id only where the scores need it (SentencePiece): 49k dictionary inserts otherwise wasted.
        var ids: [String: Int] = [:]
        for (token, id) in vocab {
            guard let i = id.intValue, i >= 0, i < vocabulary else { continue }
            tokens[i] = token
            if sentencePiece { ids[token] = i }
        }
        for added in json["added_tokens"]?.arrayValue ?? [] {
            guard let i = added["id"]?.intValue, i >= 0, i < vocabulary, let content = added["content"]?.stringValue else { continue }
            tokens[i] = content
            types[i] = added["special"]?.boolValue == true ? 3 : 4
        }
        for (i, token) in tokens.enumerated() where token.isEmpty {
            tokens[i] = "[PAD\(i)]"
            types[i] = 5  // UNUSED, as llama.cpp pads a vocabulary larger than the tokenizer's
        }
        let merges: [String] = (model["merges"]?.arrayValue ?? []).compactMap { m in
            if let s = m.stringValue { return s }
            if let pair = m.arrayValue?.compactMap(\.stringValue), pair.count == 2 { return pair[0] + " " + pair[1] }
            return nil
        }
        func id(_ key: String) -> Int? {
            guard let name = special?[key]?.stringValue ?? special?[key]?["content"]?.stringValue else { return nil }
            return tokens.firstIndex(of: name)
        }
        var kv: [(String, Value)]
        if sentencePiece {
            let addSpacePrefix = try spacePrefix(json, file: path)
            // Byte pieces are BYTE (6), as gguf-py's LlamaHfVocab types them.
            for (i, token) in tokens.enumerated() where types[i] == 1 && isBytePiece(token) { types[i] = 6 }
            kv = [
                ("tokenizer.ggml.model", .string("llama")), ("tokenizer.ggml.pre", .string("default")),
                ("tokenizer.ggml.tokens", .strings(tokens)),
                ("tokenizer.ggml.scores", .f32s(sentencePieceScores(merges: merges, ids: ids, count: vocabulary))),
                ("tokenizer.ggml.token_type", .i32s(types)),
                ("tokenizer.ggml.add_space_prefix", .bool(addSpacePrefix)),
            ]
        } else {
            let pre: String
            if let preTokenizer {
                pre = preTokenizer
            } else {
                let tokenizer: Tokenizer
                do { tokenizer = try LlamaCppPreTokenizer.probeTokenizer(json: json, file: path, config: special) } catch { throw Failure.tokenizer(file: path, reason: "\(error)") }
                let (identification, hash) = LlamaCppPreTokenizer.identify(tokenizer, json: json)
                guard let identification else { throw Failure.unnamedPreTokenizer(file: path, probeHash: hash) }
                pre = identification.name
            }
            kv = [
                ("tokenizer.ggml.model", .string("gpt2")), ("tokenizer.ggml.pre", .string(pre)),
                ("tokenizer.ggml.tokens", .strings(tokens)), ("tokenizer.ggml.token_type", .i32s(types)),
                ("tokenizer.ggml.merges", .strings(merges)),
            ]
        }
        if let bos = id("bos_token") { kv.append(("tokenizer.ggml.bos_token_id", .u32(UInt32(bos)))) }
        if let eos = id("eos_token") { kv.append(("tokenizer.ggml.eos_token_id", .u32(UInt32(eos)))) }
        if let unk = id("unk_token") { kv.append(("tokenizer.ggml.unknown_token_id", .u32(UInt32(unk)))) }
        if let pad = id("pad_token") { kv.append(("tokenizer.ggml.padding_token_id", .u32(UInt32(pad)))) }
        // llama.cpp's converter turns BOS off for every llama-family vocabulary of 49,152 tokens
        // (meant for Granite's small models, it catches SmolLM's too): do as it does.
        let template = json["post_processor"]?["single"]?.arrayValue?.first?["SpecialToken"] != nil
        kv.append(("tokenizer.ggml.add_bos_token", .bool(template && vocabulary != 49152)))
        let chat = special?["chat_template"]?.stringValue ?? chatTemplate
        if let chat { kv.append(("tokenizer.chat_template", .string(chat))) }
        return kv
    }

    /// `<0x0A>`: one of SentencePiece's 256 byte-fallback pieces.
    static func isBytePiece(_ token: String) -> Bool {
        let bytes = Array(token.utf8)
        func hex(_ c: UInt8) -> Bool { (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66) }
        return bytes.count == 6 && bytes[0] == UInt8(ascii: "<") && bytes[1] == UInt8(ascii: "0") && bytes[2] == UInt8(ascii: "x")
            && hex(bytes[3]) && hex(bytes[4]) && bytes[5] == UInt8(ascii: ">")
    }

    /// Scores for llama.cpp's SentencePiece tokenizer, which merges the adjacent pair whose joined
    /// piece scores highest: the piece made by merge k scores −k, so pieces merge in the order of
    /// the tokenizer.json merges (what a real tokenizer.model's scores say too); pieces no merge
    /// makes (characters, bytes, specials) score 0.
    static func sentencePieceScores(merges: [String], ids: [String: Int], count: Int) -> [Float] {
        var scores = [Float](repeating: 0, count: count)
        var scored = [Bool](repeating: false, count: count)
        for (rank, merge) in merges.enumerated() {
            let parts = merge.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, let id = ids[String(parts[0]) + String(parts[1])], !scored[id] else { continue }
            scores[id] = -Float(rank)
            scored[id] = true
        }
        return scores
    }

    /// Whether llama.cpp should put "▁" before the text (`tokenizer.ggml.add_space_prefix`): the
    /// Llama-2 normalizer (Prepend "▁", Replace " " → "▁") or a Metaspace pre-tokenizer that
    /// prepends. Any other SentencePiece layout is refused by name rather than guessed.
    static func spacePrefix(_ json: JSONValue, file: String) throws -> Bool {
        let normalizers = json["normalizer"]?["type"]?.stringValue == "Sequence"
            ? json["normalizer"]?["normalizers"]?.arrayValue ?? [] : (json["normalizer"].map { [$0] } ?? [])
        let kinds = normalizers.compactMap { $0["type"]?.stringValue }
        if kinds == ["Prepend", "Replace"] || kinds == ["Replace"] {
            let replacesSpaces = normalizers.last?["pattern"]?["String"]?.stringValue == " " && normalizers.last?["content"]?.stringValue == "▁"
            // Gemma's tokenizer.json (transformers' GemmaConverter) also splits on " ", which the
            // normalizer has already replaced: a no-op, as if there were no pre-tokenizer.
            let pre = json["pre_tokenizer"]
            let splitsSpaces = pre?["type"]?.stringValue == "Split" && pre?["pattern"]?["String"]?.stringValue == " "
            if replacesSpaces && (pre == nil || pre == .null || splitsSpaces) {
                return kinds.first == "Prepend" && normalizers.first?["prepend"]?.stringValue == "▁"
            }
        }
        if kinds.isEmpty, let pre = json["pre_tokenizer"], pre["type"]?.stringValue == "Metaspace", pre["replacement"]?.stringValue == "▁" {
            return (pre["prepend_scheme"]?.stringValue ?? "always") != "never"
        }
        throw Failure.tokenizer(file: file, reason: "a SentencePiece-style tokenizer whose normalizer and pre-tokenizer "
            + "(\(kinds.isEmpty ? "none" : kinds.joined(separator: ", ")); \(json["pre_tokenizer"]?["type"]?.stringValue ?? "none")) "
            + "ckpt cannot map to llama.cpp's add_space_prefix")
    }
}
