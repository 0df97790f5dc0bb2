/// GGUF (llama family) → a Hugging Face model folder: config.json from the `llama.*` metadata,
/// tensors renamed and the Q/K row permutation of llama.cpp's converter undone, tokenizer.json and
/// tokenizer_config.json rebuilt from `tokenizer.ggml.*` as transformers' GGUF loader builds them.
public enum GGUFToHuggingFace {
    public enum Failure: Error, Equatable, Sendable, CustomStringConvertible {
        case unsupportedArchitecture(file: String, found: String)
        case missingKey(file: String, key: String)
        case unsupportedTokenizer(file: String, model: String)
        case unmappedTensor(file: String, tensor: String)

        public var description: String {
            switch self {
            case let .unsupportedArchitecture(file, found):
                return "\(file): GGUF architecture '\(found)' is not supported (expected llama — the llama family: Llama, Mistral, SmolLM…)"
            case let .missingKey(file, key):
                return "\(file): metadata '\(key)' is missing (expected it in a llama GGUF)"
            case let .unsupportedTokenizer(file, model):
                return "\(file): tokenizer.ggml.model '\(model)' is not rebuilt by ckpt (expected gpt2)"
            case let .unmappedTensor(file, tensor):
                return "\(file): tensor '\(tensor)' has no Hugging Face name in the llama layout"
            }
        }
    }

    /// The llama tensor names of both worlds, one table for both directions.
    static let fixedNames: [(gguf: String, hf: String)] = [
        ("token_embd.weight", "model.embed_tokens.weight"), ("output_norm.weight", "model.norm.weight"), ("output.weight", "lm_head.weight"),
    ]
    static let layerModules: [(gguf: String, hf: String)] = [
        ("attn_norm", "input_layernorm"), ("ffn_norm", "post_attention_layernorm"), ("attn_q", "self_attn.q_proj"),
        ("attn_k", "self_attn.k_proj"), ("attn_v", "self_attn.v_proj"), ("attn_output", "self_attn.o_proj"),
        ("ffn_gate", "mlp.gate_proj"), ("ffn_up", "mlp.up_proj"), ("ffn_down", "mlp.down_proj"),
    ]

    /// The Hugging Face name of a GGUF llama tensor.
    static func hfName(_ name: String) -> String? {
        if let n = fixedNames.first(where: { $0.gguf == name }) { return n.hf }
        let parts = name.split(separator: ".")
        guard parts.count == 4, parts[0] == "blk", let layer = Int(parts[1]),
            let module = layerModules.first(where: { $0.gguf == parts[2] })
        else { return nil }
        return "model.layers.\(layer).\(module.hf).\(parts[3])"
    }

    /// The GGUF name of a Hugging Face llama tensor.
    static func ggufName(_ name: String) -> String? {
        if let n = fixedNames.first(where: { $0.hf == name }) { return n.gguf }
        let parts = name.split(separator: ".").map(String.init)
        guard parts.count >= 5, parts[0] == "model", parts[1] == "layers", let layer = Int(parts[2]),
            let module = layerModules.first(where: { $0.hf == parts[3..<(parts.count - 1)].joined(separator: ".") })
        else { return nil }
        return "blk.\(layer).\(module.gguf).\(parts.last!)"
    }

    /// llama.cpp's Q/K row permutation (`permute` in convert_hf_to_gguf.py): HF row
    /// h·d + j·d/2 + i is GGUF row h·d + 2i + j. `toGGUF: false` undoes it.
    static func permuteRows(_ values: [Float], rows: Int, columns: Int, heads: Int, toGGUF: Bool) -> [Float] {
        let headDim = rows / heads
        let half = headDim / 2
        var out = [Float](repeating: 0, count: values.count)
        for h in 0..<heads {
            for i in 0..<half {
                for j in 0..<2 {
                    let hf = (h * headDim + j * half + i) * columns, gguf = (h * headDim + 2 * i + j) * columns
                    let (source, target) = toGGUF ? (hf, gguf) : (gguf, hf)
                    for c in 0..<columns { out[target + c] = values[source + c] }
                }
            }
        }
        return out
    }

    public struct Report: Sendable {
        public var output: String
        public var tensors: Int
        public var files: [String]
        public var seconds: Double
    }

    public static func convert(_ gguf: GGUFFile, to output: String, dtype: DType, shardSize: Int?, overwrite: Bool,
                               threads: ThreadBudget = .allCores) throws -> Report {
        let clock = Stopwatch()
        let file = gguf.path
        let architecture = gguf.value("general.architecture")?.stringValue ?? "none"
        guard architecture == "llama" else { throw Failure.unsupportedArchitecture(file: file, found: architecture) }
        func int(_ key: String) throws -> Int {
            guard let v = gguf.value(key)?.intValue else { throw Failure.missingKey(file: file, key: key) }
            return v
        }
        let heads = try int("llama.attention.head_count")
        let kvHeads = gguf.value("llama.attention.head_count_kv")?.intValue ?? heads
        let tokens = gguf.value("tokenizer.ggml.tokens")?.arrayValue?.compactMap(\.stringValue) ?? []
        let hasHead = gguf.info(named: "output.weight") != nil
        let embedding = try gguf.info(named: "token_embd.weight") ?? { throw Failure.missingKey(file: file, key: "token_embd.weight") }()
        let hidden = try int("llama.embedding_length")
        var config: [(String, JSONValue)] = [
            ("architectures", ["LlamaForCausalLM"]), ("model_type", "llama"),
            ("hidden_size", JSONValue(hidden)), ("intermediate_size", JSONValue(try int("llama.feed_forward_length"))),
            ("num_hidden_layers", JSONValue(try int("llama.block_count"))), ("num_attention_heads", JSONValue(heads)),
            ("num_key_value_heads", JSONValue(kvHeads)),
            ("rms_norm_eps", .double(gguf.value("llama.attention.layer_norm_rms_epsilon")?.doubleValue ?? 1e-5)),
            ("rope_theta", .double(gguf.value("llama.rope.freq_base")?.doubleValue ?? 10_000)),
            ("max_position_embeddings", JSONValue(gguf.value("llama.context_length")?.intValue ?? 2048)),
            ("vocab_size", JSONValue(gguf.value("llama.vocab_size")?.intValue ?? embedding.shape[0])),
            ("tie_word_embeddings", .bool(!hasHead)), ("hidden_act", "silu"), ("torch_dtype", .string(dtype.torchName)),
            ("attention_bias", false), ("mlp_bias", false),
        ]
        if let keyLength = gguf.value("llama.attention.key_length")?.intValue, keyLength != hidden / heads {
            config.append(("head_dim", JSONValue(keyLength)))
        }
        for (name, key) in [("bos_token_id", "tokenizer.ggml.bos_token_id"), ("eos_token_id", "tokenizer.ggml.eos_token_id"),
                            ("pad_token_id", "tokenizer.ggml.padding_token_id")]
        {
            if let id = gguf.value(key)?.intValue { config.append((name, JSONValue(id))) }
        }

        // Tensors, in the GGUF's order, under their Hugging Face names.
        var specs: [TensorSpec] = []
        var sources: [String: GGUFTensorInfo] = [:]
        for info in gguf.tensors {
            if info.name == "rope_freqs.weight" { continue }  // computed from rope_theta, not a weight
            guard let name = hfName(info.name) else { throw Failure.unmappedTensor(file: file, tensor: info.name) }
            specs.append(TensorSpec(name: name, dtype: dtype, shape: info.shape))
            sources[name] = info
        }
        let shards = shardSize.map { ShardPlan.split(specs, maxBytes: $0) } ?? [ShardPlan(fileName: "model.safetensors", tensors: specs)]
        let writer = try CheckpointWriter(folder: output, overwrite: overwrite)
        try writer.output.translatingErrors {
            try writer.writeShards(shards) { info, out in
                let source = sources[info.name]!
                var values = try gguf.float32(source)
                if source.name.hasSuffix("attn_q.weight") {
                    values = permuteRows(values, rows: info.shape[0], columns: info.shape[1], heads: heads, toGGUF: false)
                } else if source.name.hasSuffix("attn_k.weight") {
                    values = permuteRows(values, rows: info.shape[0], columns: info.shape[1], heads: kvHeads, toGGUF: false)
                }
                try out.write(count: info.byteCount) { destination in
                    values.withUnsafeBytes { FloatConversion.convert($0, from: .f32, to: info.dtype, into: destination, threads: threads) }
                }
            }
            try writer.writeJSON(.object(config), named: "config.json", sortKeys: true)
            if !tokens.isEmpty {
                let (tokenizer, tokenizerConfig) = try tokenizerFiles(gguf, tokens: tokens)
                try writer.writeJSON(tokenizer, named: "tokenizer.json")
                try writer.writeJSON(tokenizerConfig, named: "tokenizer_config.json", sortKeys: true)
            }
            try writer.commit()
        }
        return Report(output: output, tensors: specs.count,
                      files: shards.map(\.fileName) + (shards.count > 1 ? ["model.safetensors.index.json"] : []) + ["config.json"]
                        + (tokens.isEmpty ? [] : ["tokenizer.json", "tokenizer_config.json"]),
                      seconds: clock.seconds)
    }

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

    /// tokenizer.json and tokenizer_config.json for a `gpt2` (byte-level BPE) vocabulary, built as
    /// transformers' `byte_level_tokenizer` + `add_gguf_special_tokens` + `set_split_regex` build it.
    static func tokenizerFiles(_ gguf: GGUFFile, tokens: [String]) throws -> (JSONValue, JSONValue) {
        let model = gguf.value("tokenizer.ggml.model")?.stringValue ?? "none"
        guard model == "gpt2" else { throw Failure.unsupportedTokenizer(file: gguf.path, model: model) }
        let alphabet = Set(byteAlphabet)
        let types = gguf.value("tokenizer.ggml.token_type")?.arrayValue?.compactMap(\.intValue) ?? []
        // Tokens outside the byte alphabet are respelled byte by byte.
        let spelled = tokens.map { token in
            token.allSatisfy(alphabet.contains) ? token : String(token.utf8.map { byteAlphabet[Int($0)] })
        }
        var vocab: [(String, JSONValue)] = []
        var seen = Set<String>()
        for (id, token) in spelled.enumerated() where seen.insert(token).inserted { vocab.append((token, JSONValue(id))) }
        let merges = (gguf.value("tokenizer.ggml.merges")?.arrayValue ?? []).compactMap(\.stringValue).map { merge -> JSONValue in
            let parts = merge.split(separator: " ", maxSplits: 1).map(String.init)
            return .array(parts.map { .string($0) })
        }
        var added: [JSONValue] = []
        for (id, token) in tokens.enumerated() where id < types.count && (types[id] == 3 || types[id] == 4) {
            if types[id] == 3 && !token.allSatisfy(alphabet.contains) { continue }  // a mislabelled control token
            added.append(["id": JSONValue(id), "content": .string(token), "single_word": false, "lstrip": false, "rstrip": false,
                          "normalized": false, "special": .bool(types[id] == 3)])
        }
        let pre = gguf.value("tokenizer.ggml.pre")?.stringValue ?? "default"
        let byteLevel: JSONValue = ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true]
        let preTokenizer: JSONValue = llama3Family.contains(pre)
            ? ["type": "Sequence", "pretokenizers": [
                ["type": "Split", "pattern": ["Regex": .string(llama3Split)], "behavior": "Isolated", "invert": false],
                ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false],
            ]]
            : byteLevel
        let bos = gguf.value("tokenizer.ggml.bos_token_id")?.intValue
        let addBOS = gguf.value("tokenizer.ggml.add_bos_token")?.boolValue ?? false
        var single: [JSONValue] = [["Sequence": ["id": "A", "type_id": 0]]]
        var special: [(String, JSONValue)] = []
        if addBOS, let bos, bos < tokens.count {
            single.insert(["SpecialToken": ["id": .string(tokens[bos]), "type_id": 0]], at: 0)
            special.append((tokens[bos], ["id": .string(tokens[bos]), "ids": [JSONValue(bos)], "tokens": [.string(tokens[bos])]]))
        }
        let tokenizer: JSONValue = [
            "version": "1.0", "truncation": nil, "padding": nil, "added_tokens": .array(added), "normalizer": nil,
            "pre_tokenizer": preTokenizer,
            "post_processor": ["type": "TemplateProcessing", "single": .array(single),
                               "pair": .array(single + [["Sequence": ["id": "B", "type_id": 1]]]), "special_tokens": .object(special)],
            "decoder": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true],
            "model": ["type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": "", "end_of_word_suffix": "",
                      "fuse_unk": false, "byte_fallback": false, "ignore_merges": false, "vocab": .object(vocab), "merges": .array(merges)],
        ]
        var config: [(String, JSONValue)] = [("tokenizer_class", "PreTrainedTokenizerFast"), ("add_bos_token", .bool(addBOS))]
        for (name, key) in [("bos_token", "bos_token_id"), ("eos_token", "eos_token_id"), ("unk_token", "unknown_token_id"),
                            ("pad_token", "padding_token_id")]
        {
            if let id = gguf.value("tokenizer.ggml." + key)?.intValue, id >= 0, id < tokens.count { config.append((name, .string(tokens[id]))) }
        }
        if let template = gguf.value("tokenizer.chat_template")?.stringValue { config.append(("chat_template", .string(template))) }
        return (tokenizer, .object(config))
    }
}
