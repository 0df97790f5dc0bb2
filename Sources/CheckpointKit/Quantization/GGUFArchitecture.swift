import Glibc

/// How llama.cpp's `convert_hf_to_gguf.py` writes one model family: its GGUF architecture name,
/// the Hugging Face → GGUF tensor names, what it changes in the values on the way (Q/K row
/// permutation, `+1` on Gemma's norms, GPT-2's transposed Conv1D weights, experts stacked into one
/// 3-D tensor, Gemma 3's embedding cut to the tokenizer), the tensors it adds (llama3 `rope_freqs`,
/// Phi-3 rope factors) and its hyperparameter keys, in the order the converter writes them.
/// One description per family; `GGUFExport` reads them.
public struct GGUFArchitecture: Sendable {
    /// `general.architecture`, and the prefix of every hyperparameter key.
    public let name: String
    /// Hugging Face names outside the layers → GGUF names.
    let globals: [(hf: String, gguf: String)]
    /// Prefixes of a layer's tensors, before the layer number (`model.layers.`).
    let layerPrefixes: [String]
    /// Module paths inside a layer → GGUF module names (`self_attn.q_proj` → `attn_q`).
    let layerModules: [(hf: String, gguf: String)]
    /// Experts stored one matrix per expert, stacked by the converter into one 3-D tensor per part.
    let experts: Experts?
    /// llama's converter permutes Q and K rows (weights and biases) for llama.cpp's RoPE.
    let permutesQueryKey: Bool
    /// Added to every `…norm.weight` (Gemma stores `w` and computes with `1 + w`; llama.cpp wants `1 + w`).
    let normShift: Float
    /// Module paths whose weights are transposed (GPT-2's Conv1D stores `[in, out]`).
    let transposedModules: [String]
    /// Hugging Face names the converter skips (Gemma 2 drops `lm_head`).
    let dropped: [String]
    /// Gemma 3 keeps only the embedding rows its tokenizer has (`n_vocab_real`).
    let cutsEmbeddingToTokenizer: Bool
    /// The hyperparameters, as the converter's `set_gguf_parameters` writes them.
    let parameters: @Sendable (inout GGUFParameters) throws -> Void
    /// Tensors the converter computes from the config (`generate_extra_tensors`).
    let extraTensors: @Sendable (GGUFParameters) throws -> [(name: String, values: [Float])]

    /// Experts as the converter finds them: `<layer prefix>N.<path>.E.<part>.weight`.
    struct Experts: Sendable {
        let path: String
        let parts: [(hf: String, gguf: String)]
    }

    /// What a Hugging Face tensor becomes.
    enum Mapping: Equatable {
        /// One GGUF tensor of this name.
        case tensor(String)
        /// Expert `expert` of the stacked GGUF tensor of this name.
        case expert(String, expert: Int)
        /// Nothing: the converter skips it.
        case skipped
    }

    /// The GGUF name of a Hugging Face tensor, nil when the converter cannot map it.
    func mapping(of hf: String) -> Mapping? {
        if dropped.contains(hf) || hf.hasSuffix(".rotary_emb.inv_freq") || hf.hasSuffix(".attn.bias") || hf.hasSuffix(".attn.masked_bias") {
            return .skipped
        }
        if let g = globals.first(where: { $0.hf == hf }) { return .tensor(g.gguf) }
        for prefix in layerPrefixes where hf.hasPrefix(prefix) {
            let rest = hf.dropFirst(prefix.count)
            let digits = rest.prefix { $0.isASCII && $0.isNumber }
            guard !digits.isEmpty, let layer = Int(digits), rest.dropFirst(digits.count).first == "." else { return nil }
            let path = String(rest.dropFirst(digits.count + 1))
            guard let dot = path.lastIndex(of: ".") else { return nil }
            let module = String(path[..<dot]), suffix = String(path[path.index(after: dot)...])
            guard suffix == "weight" || suffix == "bias" else { return nil }
            if let m = layerModules.first(where: { $0.hf == module }) { return .tensor("blk.\(layer).\(m.gguf).\(suffix)") }
            if let experts, suffix == "weight", module.hasPrefix(experts.path + ".") {
                let inner = module.dropFirst(experts.path.count + 1).split(separator: ".", omittingEmptySubsequences: false)
                guard inner.count == 2, let expert = Int(inner[0]), expert >= 0,
                    let part = experts.parts.first(where: { $0.hf == inner[1] }) else { return nil }
                return .expert("blk.\(layer).\(part.gguf).weight", expert: expert)
            }
            return nil
        }
        return nil
    }

    /// Whether the converter permutes this GGUF tensor's rows (llama's Q and K, weights and biases).
    func permutedHeads(_ gguf: String, config: TransformerConfig) -> Int? {
        guard permutesQueryKey else { return nil }
        if gguf.hasSuffix(".attn_q.weight") || gguf.hasSuffix(".attn_q.bias") { return config.heads }
        if gguf.hasSuffix(".attn_k.weight") || gguf.hasSuffix(".attn_k.bias") { return config.kvHeads }
        return nil
    }

    /// Whether this Hugging Face tensor is transposed on the way.
    func isTransposed(_ hf: String) -> Bool {
        transposedModules.contains { hf.hasSuffix("." + $0 + ".weight") }
    }

    /// The description for a family ckpt can write as GGUF, nil for one it cannot.
    public static func of(_ family: TransformerConfig.Family) -> GGUFArchitecture? {
        switch family {
        case .llama, .mistral, .mixtral: return llama
        case .qwen2: return qwen2
        case .qwen3: return qwen3
        case .qwen3Moe: return qwen3Moe
        case .gemma2: return gemma2
        case .gemma3: return gemma3
        case .phi3: return phi3
        case .olmo2: return olmo2
        case .gpt2: return gpt2
        }
    }

    // MARK: The families

    static let standardGlobals: [(hf: String, gguf: String)] = [
        ("model.embed_tokens.weight", "token_embd.weight"), ("model.norm.weight", "output_norm.weight"), ("lm_head.weight", "output.weight"),
    ]
    static let attention: [(hf: String, gguf: String)] = [
        ("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"), ("self_attn.v_proj", "attn_v"), ("self_attn.o_proj", "attn_output"),
    ]
    static let gatedFeedForward: [(hf: String, gguf: String)] = [("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"), ("mlp.down_proj", "ffn_down")]
    static let preNorms: [(hf: String, gguf: String)] = [("input_layernorm", "attn_norm"), ("post_attention_layernorm", "ffn_norm")]
    static let queryKeyNorms: [(hf: String, gguf: String)] = [("self_attn.q_norm", "attn_q_norm"), ("self_attn.k_norm", "attn_k_norm")]

    /// Llama, Mistral and Mixtral (`LlamaModel`): Q/K permuted, `vocab_size` and `rope.dimension_count`, llama3 `rope_freqs`.
    static let llama = GGUFArchitecture(
        name: "llama", globals: standardGlobals, layerPrefixes: ["model.layers."],
        layerModules: preNorms + attention + gatedFeedForward + [("block_sparse_moe.gate", "ffn_gate_inp")],
        experts: Experts(path: "block_sparse_moe.experts", parts: [("w1", "ffn_gate_exps"), ("w2", "ffn_down_exps"), ("w3", "ffn_up_exps")]),
        permutesQueryKey: true, normShift: 0, transposedModules: [], dropped: [], cutsEmbeddingToTokenizer: false,
        parameters: { p in
            try p.textModel()
            p.set("vocab_size", .u32(try p.count("vocab_size")))
            p.set("rope.dimension_count", .u32(try p.headDimension()))
        },
        extraTensors: { p in try p.llama3RopeFactors().map { [("rope_freqs.weight", $0)] } ?? [] })

    /// Qwen2 and Qwen2.5 (`Qwen2Model`): the generic parameters, biases on Q/K/V, no permutation.
    static let qwen2 = GGUFArchitecture(
        name: "qwen2", globals: standardGlobals, layerPrefixes: ["model.layers."], layerModules: preNorms + attention + gatedFeedForward,
        experts: nil, permutesQueryKey: false, normShift: 0, transposedModules: [], dropped: [], cutsEmbeddingToTokenizer: false,
        parameters: { try $0.textModel() }, extraTensors: { _ in [] })

    /// Qwen3 (`Qwen3Model`): Qwen2 with per-head Q/K norms.
    static let qwen3 = GGUFArchitecture(
        name: "qwen3", globals: standardGlobals, layerPrefixes: ["model.layers."],
        layerModules: preNorms + attention + queryKeyNorms + gatedFeedForward,
        experts: nil, permutesQueryKey: false, normShift: 0, transposedModules: [], dropped: [], cutsEmbeddingToTokenizer: false,
        parameters: { try $0.textModel() }, extraTensors: { _ in [] })

    /// Qwen3-MoE (`Qwen3MoeModel`): experts stacked per part, the router as `ffn_gate_inp`.
    static let qwen3Moe = GGUFArchitecture(
        name: "qwen3moe", globals: standardGlobals, layerPrefixes: ["model.layers."],
        // No dense MLP: llama.cpp's qwen3moe has none, and the converter refuses mlp_only_layers.
        layerModules: preNorms + attention + queryKeyNorms + [("mlp.gate", "ffn_gate_inp")],
        experts: Experts(path: "mlp.experts", parts: [("down_proj", "ffn_down_exps"), ("gate_proj", "ffn_gate_exps"), ("up_proj", "ffn_up_exps")]),
        permutesQueryKey: false, normShift: 0, transposedModules: [], dropped: [], cutsEmbeddingToTokenizer: false,
        parameters: { p in
            try p.textModel()
            if let n = try p.optionalCount(["moe_intermediate_size"]) { p.set("expert_feed_forward_length", .u32(n)) }
            if let n = try p.optionalCount(["shared_expert_intermediate_size"]) { p.set("expert_shared_feed_forward_length", .u32(n)) }
        },
        extraTensors: { _ in [] })

    static let gemmaNorms: [(hf: String, gguf: String)] = [
        ("input_layernorm", "attn_norm"), ("post_attention_layernorm", "post_attention_norm"),
        ("pre_feedforward_layernorm", "ffn_norm"), ("post_feedforward_layernorm", "post_ffw_norm"),
    ]

    /// Gemma 2 (`Gemma2Model`): four norms per layer stored as `1 + w`, soft-capping keys, `lm_head` dropped.
    static let gemma2 = GGUFArchitecture(
        name: "gemma2", globals: standardGlobals, layerPrefixes: ["model.layers."], layerModules: gemmaNorms + attention + gatedFeedForward,
        experts: nil, permutesQueryKey: false, normShift: 1, transposedModules: [], dropped: ["lm_head.weight"], cutsEmbeddingToTokenizer: false,
        parameters: { p in
            p.set("context_length", .u32(try p.count("max_position_embeddings")))
            p.set("embedding_length", .u32(try p.count("hidden_size")))
            p.set("block_count", .u32(try p.count("num_hidden_layers")))
            p.set("feed_forward_length", .u32(try p.count("intermediate_size")))
            p.set("attention.head_count", .u32(try p.count("num_attention_heads")))
            p.set("attention.head_count_kv", .u32(try p.count(p.has("num_key_value_heads") ? "num_key_value_heads" : "num_attention_heads")))
            p.set("attention.layer_norm_rms_epsilon", .f32(try p.float("rms_norm_eps")))
            p.set("attention.key_length", .u32(try p.count("head_dim")))
            p.set("attention.value_length", .u32(try p.count("head_dim")))
            p.fileType()
            p.set("attn_logit_softcapping", .f32(try p.float("attn_logit_softcapping")))
            p.set("final_logit_softcapping", .f32(try p.float("final_logit_softcapping")))
            p.set("attention.sliding_window", .u32(try p.count("sliding_window")))
        },
        extraTensors: { _ in [] })

    /// Gemma 3 text (`Gemma3Model`): Gemma 2's norms plus Q/K norms (all `1 + w`), the local RoPE
    /// base, the embedding cut to the tokenizer's size.
    static let gemma3 = GGUFArchitecture(
        name: "gemma3", globals: standardGlobals, layerPrefixes: ["model.layers."],
        layerModules: gemmaNorms + attention + queryKeyNorms + gatedFeedForward,
        experts: nil, permutesQueryKey: false, normShift: 1, transposedModules: [], dropped: [], cutsEmbeddingToTokenizer: true,
        parameters: { p in
            try p.textModel()
            p.set("context_length", .u32(try p.count("max_position_embeddings", default: 131072)))
            p.set("attention.head_count", .u32(try p.count("num_attention_heads", default: 8)))
            p.set("attention.layer_norm_rms_epsilon", .f32(try p.float("rms_norm_eps", default: 1e-6)))
            p.set("attention.key_length", .u32(try p.count("head_dim", default: 256)))
            p.set("attention.value_length", .u32(try p.count("head_dim", default: 256)))
            p.set("rope.freq_base", .f32(Float(p.rope["full_attention"]?["rope_theta"]?.doubleValue ?? p.rope["rope_theta"]?.doubleValue ?? 1_000_000)))
            if let cap = p.value("final_logit_softcapping")?.doubleValue, cap != 0 { p.set("final_logit_softcapping", .f32(Float(cap))) }
            if p.value("sliding_window_pattern")?.intValue != 1 { p.set("attention.sliding_window", .u32(try p.count("sliding_window"))) }
            p.set("attention.head_count_kv", .u32(try p.count("num_key_value_heads", default: 4)))
        },
        extraTensors: { _ in [] })

    /// Phi-3 and Phi-4-mini (`Phi3MiniModel`): fused `qkv_proj` and `gate_up_proj` kept fused,
    /// partial rotary in `rope.dimension_count`, longrope factors as two tensors.
    static let phi3 = GGUFArchitecture(
        name: "phi3", globals: standardGlobals, layerPrefixes: ["model.layers."],
        layerModules: preNorms + [("self_attn.qkv_proj", "attn_qkv"), ("self_attn.o_proj", "attn_output"),
                                  ("mlp.gate_up_proj", "ffn_up"), ("mlp.down_proj", "ffn_down")],
        experts: nil, permutesQueryKey: false, normShift: 0, transposedModules: [], dropped: [], cutsEmbeddingToTokenizer: false,
        parameters: { p in
            let hidden = try p.count(["hidden_size", "n_embd"]), heads = try p.count(["num_attention_heads", "n_head"])
            p.set("context_length", .u32(try p.count(["n_positions", "max_position_embeddings"])))
            p.set("rope.scaling.original_context_length", .u32(try p.ropeOriginalContext()))
            p.set("embedding_length", .u32(hidden))
            p.set("feed_forward_length", .u32(try p.count(["intermediate_size"])))
            p.set("block_count", .u32(try p.count("num_hidden_layers")))
            p.set("attention.head_count", .u32(heads))
            p.set("attention.head_count_kv", .u32(try p.count(["num_key_value_heads", "n_head_kv"])))
            p.set("attention.layer_norm_rms_epsilon", .f32(try p.float("rms_norm_eps")))
            p.set("rope.dimension_count", .u32(try p.phi3RotaryDimensions(hidden: hidden, heads: heads)))
            guard let theta = (p.rope["full_attention"] ?? JSONValue.object(p.ropeMembers))["rope_theta"]?.doubleValue else {
                throw ModelError.badConfig(file: p.file, key: "rope_theta", reason: "missing (expected the RoPE base)")
            }
            p.set("rope.freq_base", .f32(Float(theta)))
            p.fileType()
            p.set("attention.sliding_window", .u32(p.value("sliding_window")?.intValue.map(UInt32.init(clamping:)) ?? 0))
            if let attention = try p.phi3AttentionFactor() { p.set("rope.scaling.attn_factor", .f32(attention)) }
        },
        extraTensors: { p in
            guard let (long, short) = try p.phi3RopeFactors() else { return [] }
            return [("rope_factors_long.weight", long), ("rope_factors_short.weight", short)]
        })

    /// OLMo 2 (`Olmo2Model`): norms after attention and MLP only, Q/K norms over the whole projection.
    static let olmo2 = GGUFArchitecture(
        name: "olmo2", globals: standardGlobals, layerPrefixes: ["model.layers."],
        layerModules: [("post_attention_layernorm", "post_attention_norm"), ("post_feedforward_layernorm", "post_ffw_norm")]
            + attention + queryKeyNorms + gatedFeedForward,
        experts: nil, permutesQueryKey: false, normShift: 0, transposedModules: [], dropped: [], cutsEmbeddingToTokenizer: false,
        parameters: { p in
            try p.textModel()
            if p.has("sliding_window") {
                p.set("attention.sliding_window", .u32(p.value("sliding_window")?.intValue.map(UInt32.init(clamping:)) ?? 0))
                let layers = try p.count("num_hidden_layers")
                let pattern: [Bool] = p.value("layer_types")?.arrayValue.map { $0.map { $0.stringValue == "sliding_attention" } }
                    ?? (0..<Int(layers)).map { ($0 + 1) % 4 != 0 }
                p.set("attention.sliding_window_pattern", .bools(pattern))
            }
        },
        extraTensors: { _ in [] })

    static let gpt2Globals: [(hf: String, gguf: String)] = {
        var names: [(hf: String, gguf: String)] = [("lm_head.weight", "output.weight")]
        for prefix in ["transformer.", ""] {
            names += [(prefix + "wte.weight", "token_embd.weight"), (prefix + "wpe.weight", "position_embd.weight"),
                      (prefix + "ln_f.weight", "output_norm.weight"), (prefix + "ln_f.bias", "output_norm.bias")]
        }
        return names
    }()

    /// GPT-2 (`GPT2Model`): Conv1D weights transposed, position embeddings, fused QKV with biases.
    static let gpt2 = GGUFArchitecture(
        name: "gpt2",
        globals: gpt2Globals,
        layerPrefixes: ["transformer.h.", "h."],
        layerModules: [("ln_1", "attn_norm"), ("attn.c_attn", "attn_qkv"), ("attn.c_proj", "attn_output"), ("ln_2", "ffn_norm"),
                       ("mlp.c_fc", "ffn_up"), ("mlp.c_proj", "ffn_down")],
        experts: nil, permutesQueryKey: false, normShift: 0, transposedModules: ["c_attn", "c_proj", "c_fc"], dropped: [],
        cutsEmbeddingToTokenizer: false,
        parameters: { p in
            p.set("block_count", .u32(try p.count("n_layer")))
            p.set("context_length", .u32(try p.count(["n_ctx", "n_positions"])))
            let hidden = try p.count("n_embd")
            guard hidden <= UInt32.max / 4 else {
                throw ModelError.badConfig(file: p.file, key: "n_embd", reason: "\(hidden) (expected at most \(UInt32.max / 4))")
            }
            p.set("embedding_length", .u32(hidden))
            p.set("feed_forward_length", .u32(4 * hidden))
            p.set("attention.head_count", .u32(try p.count("n_head")))
            p.set("attention.layer_norm_epsilon", .f32(try p.float("layer_norm_epsilon")))
            p.fileType()
        },
        extraTensors: { _ in [] })
}

/// A config.json read the way the converter's `find_hparam` and `rope_parameters` read it, and
/// the metadata written from it (a key set twice keeps its first place and its last value, as
/// gguf-py's writer does).
public struct GGUFParameters {
    let file: String
    let architecture: String
    let fileTypeValue: UInt32
    let members: [(String, JSONValue)]
    /// `rope_parameters` (or `rope_scaling`) with the global keys mirrored in, as the converter builds it.
    let ropeMembers: [(String, JSONValue)]
    private(set) var keyValues: [(String, GGUFExport.Value)] = []

    init(config json: JSONValue, file: String, architecture: String, fileType: UInt32, family: TransformerConfig.Family? = nil) {
        var members = json.objectMembers ?? []
        // A multimodal config keeps the text model's keys in text_config; they win, as in load_hparams.
        if let text = json["text_config"]?.objectMembers {
            for (key, value) in text {
                if let i = members.firstIndex(where: { $0.0 == key }) { members[i].1 = value } else { members.append((key, value)) }
            }
        }
        // The converter reads AutoConfig(...).to_dict(), which fills a missing key with the family's default.
        if let family {
            func int(_ key: String) -> Int? { members.first(where: { $0.0 == key })?.1.intValue }
            for (key, value) in Self.autoConfigDefaults(family, hidden: int("hidden_size"), heads: int("num_attention_heads")) {
                if let i = members.firstIndex(where: { $0.0 == key }) {
                    if members[i].1 == .null { members[i].1 = value }
                } else {
                    members.append((key, value))
                }
            }
        }
        self.members = members
        self.file = file
        self.architecture = architecture
        self.fileTypeValue = fileType
        func find(_ keys: [String]) -> JSONValue? {
            for key in keys { if let v = members.first(where: { $0.0 == key })?.1 { return v } }
            return nil
        }
        let ropeSource = members.first(where: { $0.0 == "rope_parameters" })?.1 ?? members.first(where: { $0.0 == "rope_scaling" })?.1
        var rope = ropeSource?.objectMembers ?? []
        func setIfAbsent(_ key: String, _ value: JSONValue?) {
            guard let value, value != .null, !rope.contains(where: { $0.0 == key }) else { return }
            rope.append((key, value))
        }
        if !rope.contains(where: { $0.0 == "full_attention" || $0.0 == "sliding_attention" }) {
            if let local = find(["local_rope_theta", "rope_local_theta", "rope_theta_local", "swa_rope_theta", "rope_local_base_freq"]), local != .null {
                rope.append(("sliding_attention", .object([("rope_theta", local)])))
            }
            setIfAbsent("rope_theta", find(["global_rope_theta", "rope_global_theta", "rope_theta_global", "rope_theta", "rotary_emb_base"]))
            setIfAbsent("rope_type", rope.first(where: { $0.0 == "type" })?.1)
            setIfAbsent("partial_rotary_factor", find(["partial_rotary_factor", "rope_pct", "rope_percent"]))
            setIfAbsent("original_max_position_embeddings", find(["original_max_position_embeddings"]))
        }
        self.ropeMembers = rope
    }

    /// The defaults transformers' config classes (pinned 5.24) give the keys the converter reads,
    /// when config.json leaves them out: head_dim, num_key_value_heads, max_position_embeddings,
    /// rms_norm_eps and rope_theta.
    static func autoConfigDefaults(_ family: TransformerConfig.Family, hidden: Int?, heads: Int?) -> [(String, JSONValue)] {
        let split: JSONValue = hidden.flatMap { h in heads.flatMap { $0 > 0 ? JSONValue.integer(Int64(h / $0)) : nil } } ?? .null
        let sameHeads: JSONValue = heads.map { .integer(Int64($0)) } ?? .null
        func d(_ headDim: JSONValue, _ kv: JSONValue, _ positions: Int64, _ eps: Double, _ theta: Double) -> [(String, JSONValue)] {
            [("head_dim", headDim), ("num_key_value_heads", kv), ("max_position_embeddings", .integer(positions)),
             ("rms_norm_eps", .double(eps)), ("rope_theta", .double(theta))].filter { $0.1 != .null }
        }
        switch family {
        case .llama: return d(split, sameHeads, 2048, 1e-6, 10000)
        case .mistral: return d(split, .integer(8), 131072, 1e-6, 10000)
        case .mixtral: return d(.null, .integer(8), 131072, 1e-5, 1_000_000)
        case .qwen2: return d(.null, .integer(32), 32768, 1e-6, 10000)
        case .qwen3: return d(.integer(128), .integer(32), 32768, 1e-6, 10000)
        case .qwen3Moe: return d(.null, .integer(4), 32768, 1e-6, 10000)
        case .gemma2: return d(.integer(256), .integer(4), 8192, 1e-6, 10000)
        case .gemma3: return d(.integer(256), .integer(4), 131072, 1e-6, 1_000_000)
        case .phi3: return d(.null, sameHeads, 4096, 1e-5, 10000)
        case .olmo2: return d(.null, sameHeads, 2048, 1e-5, 10000)
        case .gpt2: return []
        }
    }

    /// The rope parameters as a JSON object.
    var rope: JSONValue { .object(ropeMembers) }

    /// The value of `key`, nil when absent or null.
    func value(_ key: String) -> JSONValue? {
        guard let v = members.first(where: { $0.0 == key })?.1, v != .null else { return nil }
        return v
    }

    /// Whether config.json names `key` (even as null).
    func has(_ key: String) -> Bool { members.contains { $0.0 == key } }

    /// `find_hparam`: the first of `keys` present decides (a null there means absent).
    func find(_ keys: [String]) -> JSONValue? {
        for key in keys where has(key) { return value(key) }
        return nil
    }

    /// A count the converter requires: the first of `keys`, an integer in 0...UInt32.max.
    func count(_ keys: [String]) throws -> UInt32 {
        guard let n = try optionalCount(keys) else {
            throw ModelError.badConfig(file: file, key: keys[0], reason: "missing (expected an integer, as convert_hf_to_gguf.py requires)")
        }
        return n
    }

    /// `count` of one key, or `fallback` when it is absent.
    func count(_ key: String, default fallback: UInt32? = nil) throws -> UInt32 {
        if let n = try optionalCount([key]) { return n }
        if let fallback { return fallback }
        return try count([key])
    }

    /// The first of `keys` present as an integer in 0...UInt32.max, nil when absent.
    func optionalCount(_ keys: [String]) throws -> UInt32? {
        guard let v = find(keys) else { return nil }
        guard let n = v.intValue, let u = UInt32(exactly: n) else {
            throw ModelError.badConfig(file: file, key: keys[0], reason: "\(v) (expected an integer from 0 to \(UInt32.max))")
        }
        return u
    }

    /// A float the converter requires, or `fallback`.
    func float(_ key: String, default fallback: Float? = nil) throws -> Float {
        if let v = value(key)?.doubleValue { return Float(v) }
        if let fallback { return fallback }
        throw ModelError.badConfig(file: file, key: key, reason: "missing (expected a number, as convert_hf_to_gguf.py requires)")
    }

    /// Sets `<architecture>.key`, or `key` itself when it starts with `general.`.
    mutating func set(_ key: String, _ value: GGUFExport.Value) {
        let full = key.hasPrefix("general.") ? key : architecture + "." + key
        if let i = keyValues.firstIndex(where: { $0.0 == full }) { keyValues[i].1 = value } else { keyValues.append((full, value)) }
    }

    /// `general.file_type`.
    mutating func fileType() { set("general.file_type", .u32(fileTypeValue)) }

    /// `TextModel.set_gguf_parameters`: the hyperparameters every family shares.
    mutating func textModel() throws {
        set("block_count", .u32(try count("num_hidden_layers")))
        if let n = try optionalCount(["max_position_embeddings", "n_ctx", "n_positions", "max_length", "max_sequence_length", "model_max_length"]) {
            set("context_length", .u32(n))
        }
        if let n = try optionalCount(["hidden_size", "n_embd", "dim"]) { set("embedding_length", .u32(n)) }
        if let n = try optionalCount(["prefix_dense_intermediate_size", "dense_intermediate_size", "intermediate_size", "n_inner", "hidden_dim"]) {
            set("feed_forward_length", .u32(n))
        }
        if let n = try optionalCount(["num_attention_heads", "n_head", "n_heads"]) { set("attention.head_count", .u32(n)) }
        if let n = try optionalCount(["num_key_value_heads", "n_kv_heads"]) { set("attention.head_count_kv", .u32(n)) }
        if value("is_causal")?.boolValue == false { set("attention.causal", .bool(false)) }
        let global = rope["full_attention"] ?? rope
        if let type = global["rope_type"]?.stringValue {
            let factor = global["factor"]?.doubleValue
            switch type.lowercased() {
            case "linear" where factor != nil:
                set("rope.scaling.type", .string("linear"))
                set("rope.scaling.factor", .f32(Float(factor!)))
            case "yarn" where factor != nil:
                set("rope.scaling.type", .string("yarn"))
                set("rope.scaling.factor", .f32(Float(factor!)))
                guard let original = global["original_max_position_embeddings"]?.intValue, let o = UInt32(exactly: original) else {
                    throw ModelError.badConfig(file: file, key: "original_max_position_embeddings",
                                               reason: "missing (expected an integer: yarn needs the original context length)")
                }
                set("rope.scaling.original_context_length", .u32(o))
                if let v = global["extrapolation_factor"]?.doubleValue { set("rope.scaling.yarn_ext_factor", .f32(Float(v))) }
                if let v = (global["attention_factor"] ?? global["attn_factor"])?.doubleValue { set("rope.scaling.yarn_attn_factor", .f32(Float(v))) }
                if let v = global["beta_fast"]?.doubleValue { set("rope.scaling.yarn_beta_fast", .f32(Float(v))) }
                if let v = global["beta_slow"]?.doubleValue { set("rope.scaling.yarn_beta_slow", .f32(Float(v))) }
            case "su", "longrope":
                set("rope.scaling.type", .string("longrope"))
            default:
                break  // default and llama3 (rope_freqs tensor) write no scaling keys; dynamic has none in llama.cpp
            }
        }
        if let theta = global["rope_theta"]?.doubleValue { set("rope.freq_base", .f32(Float(theta))) }
        if let local = rope["sliding_attention"]?["rope_theta"]?.doubleValue { set("rope.freq_base_swa", .f32(Float(local))) }
        if let eps = find(["rms_norm_eps", "norm_eps"])?.doubleValue { set("attention.layer_norm_rms_epsilon", .f32(Float(eps))) }
        if let eps = find(["layer_norm_eps", "layer_norm_epsilon", "norm_epsilon"])?.doubleValue { set("attention.layer_norm_epsilon", .f32(Float(eps))) }
        if let n = try optionalCount(["num_local_experts", "num_experts", "n_routed_experts"]) { set("expert_count", .u32(n)) }
        if let n = try optionalCount(["num_experts_per_tok", "num_experts_per_token", "top_k_experts"]) { set("expert_used_count", .u32(n)) }
        if let n = try optionalCount(["n_group"]) { set("expert_group_count", .u32(n)) }
        if let n = try optionalCount(["topk_group"]) { set("expert_group_used_count", .u32(n)) }
        if let head = try optionalCount(["head_dim"]), value("head_dim") != nil {
            set("attention.key_length", .u32(head))
            set("attention.value_length", .u32(head))
        }
        fileType()
    }

    /// `head_dim`, else hidden / heads.
    func headDimension() throws -> UInt32 {
        if let head = value("head_dim"), let n = head.intValue, let u = UInt32(exactly: n) { return u }
        let hidden = try count(["hidden_size"]), heads = try count(["num_attention_heads"])
        guard heads > 0 else { throw ModelError.badConfig(file: file, key: "num_attention_heads", reason: "0 (expected at least 1)") }
        return hidden / heads
    }

    /// llama3 RoPE as llama.cpp applies it: a factor per rotated pair (`rope_freqs`), computed in
    /// f32 where torch computes the frequencies and in f64 where Python does the rest.
    func llama3RopeFactors() throws -> [Float]? {
        let global = rope["full_attention"] ?? rope
        guard global["rope_type"]?.stringValue?.lowercased() == "llama3" else { return nil }
        let base = global["rope_theta"]?.doubleValue ?? 10000
        let dim = Int(try headDimension())
        let factor = global["factor"]?.doubleValue ?? 8
        let low = global["low_freq_factor"]?.doubleValue ?? 1, high = global["high_freq_factor"]?.doubleValue ?? 4
        let old = global["original_max_position_embeddings"]?.doubleValue ?? 8192
        guard dim >= 2, dim <= 1 << 16 else { throw ModelError.badConfig(file: file, key: "head_dim", reason: "\(dim) (expected 2 to 65536)") }
        // torch computes all of it in f32 (a Python scalar meets an f32 tensor), `x / t` as `t.reciprocal() * x`.
        let lowWavelength = Float(old / low), highWavelength = Float(old / high)
        return stride(from: 0, to: dim, by: 2).map { i in
            let frequency = 1 / powf(Float(base), Float(i) / Float(dim))
            let wavelength = (1 / frequency) * Float(2 * Double.pi)
            if wavelength < highWavelength { return 1 }
            if wavelength > lowWavelength { return Float(factor) }
            let smooth = ((1 / wavelength) * Float(old) - Float(low)) / Float(high - low)
            return 1 / ((1 - smooth) / Float(factor) + smooth)
        }
    }

    /// `original_max_position_embeddings`, which Phi-3's converter requires.
    func ropeOriginalContext() throws -> UInt32 {
        guard let n = rope["original_max_position_embeddings"]?.intValue, let u = UInt32(exactly: n) else {
            throw ModelError.badConfig(file: file, key: "original_max_position_embeddings",
                                       reason: "missing (expected an integer: convert_hf_to_gguf.py requires it for Phi-3)")
        }
        return u
    }

    /// Phi-3's rotated dimensions per head: int(partial_rotary_factor × hidden) / heads.
    func phi3RotaryDimensions(hidden: UInt32, heads: UInt32) throws -> UInt32 {
        guard heads > 0 else { throw ModelError.badConfig(file: file, key: "num_attention_heads", reason: "0 (expected at least 1)") }
        let fraction = rope["partial_rotary_factor"]?.doubleValue ?? 1
        return UInt32(clamping: Int((fraction * Double(hidden)).rounded(.towardZero))) / heads
    }

    /// Phi-3's longrope attention factor, when the config has long factors.
    func phi3AttentionFactor() throws -> Float? {
        guard let long = rope["long_factor"]?.arrayValue, !long.isEmpty else { return nil }
        let positions = Double(try count(["n_positions", "max_position_embeddings"])), original = Double(try ropeOriginalContext())
        let scale = positions / original
        switch rope["rope_type"]?.stringValue?.lowercased() ?? "" {
        case "su", "longrope": return Float(scale > 1 ? (1 + log(scale) / log(original)).squareRoot() : 1)
        case "yarn": return Float(scale > 1 ? 0.1 * log(scale) + 1 : 1)
        case let other:
            throw ModelError.badConfig(file: file, key: "rope_type", reason: "'\(other)' with long factors (expected longrope, su or yarn)")
        }
    }

    /// Phi-3's long and short RoPE factors, each one per rotated pair.
    func phi3RopeFactors() throws -> ([Float], [Float])? {
        guard let long = rope["long_factor"]?.arrayValue, !long.isEmpty else { return nil }
        guard let short = rope["short_factor"]?.arrayValue else {
            throw ModelError.badConfig(file: file, key: "short_factor", reason: "missing (expected it beside long_factor)")
        }
        let hidden = try count(["hidden_size", "n_embd"]), heads = try count(["num_attention_heads", "n_head"])
        let pairs = Int(try phi3RotaryDimensions(hidden: hidden, heads: heads)) / 2
        let l = long.compactMap(\.doubleValue).map(Float.init), s = short.compactMap(\.doubleValue).map(Float.init)
        guard l.count == long.count, s.count == short.count, l.count == pairs, s.count == pairs else {
            throw ModelError.badConfig(file: file, key: "long_factor",
                                       reason: "\(long.count) long and \(short.count) short factors (expected \(pairs) numbers each)")
        }
        return (l, s)
    }
}
