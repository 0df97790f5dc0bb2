/// Failures building a model from a checkpoint.
public enum ModelError: Error, Equatable, Sendable, CustomStringConvertible {
    case missingConfig(path: String)
    case unsupportedArchitecture(file: String, found: String, supported: [String])
    case badConfig(file: String, key: String, reason: String)
    case missingWeight(file: String, tensor: String)
    case weightShape(file: String, tensor: String, expected: [Int], actual: [Int])

    /// The one-line message: the file (and key or tensor) at fault and what was expected.
    public var description: String {
        switch self {
        case let .missingConfig(path):
            return "\(path): no config.json (expected a model folder with its config)"
        case let .unsupportedArchitecture(file, found, supported):
            return "\(file): unsupported architecture (expected one of \(supported.joined(separator: ", ")), got \(found))"
        case let .badConfig(file, key, reason):
            return "\(file): \(key): \(reason)"
        case let .missingWeight(file, tensor):
            return "\(faultLocation(file, tensor: tensor)): missing (expected it for this architecture)"
        case let .weightShape(file, tensor, expected, actual):
            return "\(faultLocation(file, tensor: tensor)): wrong shape (expected \(expected), got \(actual))"
        }
    }
}

/// The architecture-defining fields of config.json, for the families ckpt evaluates; each
/// family's tensor names and conventions are its description in Model/Architectures.swift.
public struct TransformerConfig: Sendable, Equatable {
    /// The architectures ckpt evaluates, as config.json's `architectures` class names.
    public enum Family: String, Sendable, CaseIterable {
        case llama = "LlamaForCausalLM"
        case mistral = "MistralForCausalLM"
        case mixtral = "MixtralForCausalLM"
        case qwen2 = "Qwen2ForCausalLM"
        case qwen3 = "Qwen3ForCausalLM"
        case qwen3Moe = "Qwen3MoeForCausalLM"
        case gemma2 = "Gemma2ForCausalLM"
        case gemma3 = "Gemma3ForCausalLM"
        case phi3 = "Phi3ForCausalLM"
        case olmo2 = "Olmo2ForCausalLM"
        case gpt2 = "GPT2LMHeadModel"

        /// config.json's `model_type` for the family.
        public var modelType: String {
            switch self {
            case .llama: return "llama"
            case .mistral: return "mistral"
            case .mixtral: return "mixtral"
            case .qwen2: return "qwen2"
            case .qwen3: return "qwen3"
            case .qwen3Moe: return "qwen3_moe"
            case .gemma2: return "gemma2"
            case .gemma3: return "gemma3_text"
            case .phi3: return "phi3"
            case .olmo2: return "olmo2"
            case .gpt2: return "gpt2"
            }
        }
    }

    /// The MLP's activation (`hidden_act` / `hidden_activation`).
    public enum Activation: String, Sendable {
        /// silu(gate) · up.
        case silu
        /// GELU, tanh approximation (`gelu_pytorch_tanh`, GPT-2's `gelu_new`).
        case geluTanh
    }

    /// Mixture-of-experts routing (Mixtral, Qwen3-MoE).
    public struct Experts: Sendable, Equatable {
        /// Experts per MoE layer (`num_local_experts` / `num_experts`).
        public var count: Int
        /// Experts each token is routed to (`num_experts_per_tok`).
        public var perToken: Int
        /// Whether the chosen experts' weights are renormalized to sum to one (`norm_topk_prob`; always for Mixtral).
        public var normalizeTopK: Bool
        /// Width of each expert's hidden layer (`moe_intermediate_size`, Mixtral `intermediate_size`).
        public var intermediateSize: Int
        /// Per layer: whether it is a MoE layer (Qwen3-MoE's `decoder_sparse_step` and `mlp_only_layers`).
        public var sparseLayers: [Bool]
    }

    /// The architecture, from `architectures[0]`, else from `model_type`.
    public var family: Family
    /// Width of the residual stream (`hidden_size`; GPT-2 `n_embd`).
    public var hiddenSize: Int
    /// Decoder blocks (`num_hidden_layers`; GPT-2 `n_layer`).
    public var layers: Int
    /// Query heads (`num_attention_heads`; GPT-2 `n_head`).
    public var heads: Int
    /// Key/value heads (`num_key_value_heads`, else `heads`); always divides `heads`.
    public var kvHeads: Int
    /// Width of one head (`head_dim`, else `hiddenSize / heads`).
    public var headDim: Int
    /// Width of the MLP's hidden layer (`intermediate_size`; GPT-2 `n_inner`, else 4 × `hiddenSize`).
    public var intermediateSize: Int
    /// Tokens in the vocabulary (`vocab_size`).
    public var vocabularySize: Int
    /// The norms' epsilon (`rms_norm_eps`, default 1e-6; GPT-2 `layer_norm_epsilon`, default 1e-5).
    public var normEpsilon: Float
    /// RoPE base frequency of the global layers (`rope_theta`, default 10000); 0 for GPT-2, which has no RoPE.
    public var ropeTheta: Double
    /// Whether the LM head reuses the token embedding (`tie_word_embeddings`).
    public var tiedEmbeddings: Bool
    /// Longest context (`max_position_embeddings`, default 4096; GPT-2 `n_positions`).
    public var maxPositions: Int
    /// The MLP's activation.
    public var activation: Activation
    /// RoPE of the global (full-attention) layers; nil for GPT-2.
    public var rope: RotaryEmbedding?
    /// RoPE of the sliding-window layers when it differs (Gemma 3's `rope_local_base_freq`).
    public var localRope: RotaryEmbedding?
    /// Per layer: the sliding window (a query sees the keys less than this many positions back), nil for full attention.
    public var slidingWindows: [Int?]
    /// The factor query·key products are multiplied by (1/√head_dim; Gemma 1/√query_pre_attn_scalar).
    public var attentionScale: Float
    /// Attention logits soft-capped as cap·tanh(s/cap) (`attn_logit_softcapping`).
    public var attentionSoftcap: Float?
    /// Final logits soft-capped as cap·tanh(s/cap) (`final_logit_softcapping`).
    public var finalSoftcap: Float?
    /// MoE routing, nil for dense models.
    public var experts: Experts?

    /// Reads the fields from config.json; throws `ModelError` naming `file` and the key for an
    /// unknown architecture, a missing or out-of-range size, or a RoPE type or feature ckpt does not implement.
    public init(parsing config: JSONValue, file: String) throws {
        func bad(_ key: String, _ reason: String) -> ModelError { .badConfig(file: file, key: key, reason: reason) }
        let architecture = config["architectures"]?.arrayValue?.first?.stringValue
        let modelType = config["model_type"]?.stringValue
        guard let family = architecture.flatMap(Family.init(rawValue:)) ?? modelType.flatMap({ type in Family.allCases.first { $0.modelType == type } })
        else {
            throw ModelError.unsupportedArchitecture(file: file, found: architecture ?? modelType ?? "nothing",
                                                     supported: Family.allCases.map(\.rawValue))
        }
        self.family = family
        // Every size is bounded before anything multiplies or allocates with it: no real model has a
        // dimension beyond 2^24 (16M) or a context beyond 2^30. The tensors present decide the rest.
        let limit = 1 << 24
        func checked(_ key: String, _ v: Int, limit: Int = limit) throws -> Int {
            guard v > 0, v <= limit else { throw bad(key, "\(v) is out of range (expected an integer from 1 to \(limit))") }
            return v
        }
        func int(_ keys: String...) throws -> Int {
            for key in keys { if let v = config[key]?.intValue { return try checked(key, v) } }
            for key in keys where config[key] != nil && config[key] != .null {
                throw bad(key, "\(config[key]!.serialized()) is not an integer (expected an integer from 1 to \(limit))")
            }
            throw bad(keys[0], "missing (expected a positive integer)")
        }
        func optionalInt(_ key: String, limit: Int = limit) throws -> Int? {
            guard let value = config[key], value != .null else { return nil }
            guard let v = value.intValue else { throw bad(key, "\(value.serialized()) is not an integer") }
            return try checked(key, v, limit: limit)
        }
        func optionalNumber(_ key: String) throws -> Double? {
            guard let value = config[key], value != .null else { return nil }
            guard let v = value.doubleValue, v.isFinite, v > 0 else { throw bad(key, "\(value.serialized()) is not a positive number") }
            return v
        }
        let gemma = family == .gemma2 || family == .gemma3
        if family == .gpt2 {
            hiddenSize = try int("n_embd", "hidden_size")
            layers = try int("n_layer", "num_hidden_layers")
            heads = try int("n_head", "num_attention_heads")
            kvHeads = heads
            intermediateSize = try optionalInt("n_inner") ?? 4 * hiddenSize
            normEpsilon = Float(config["layer_norm_epsilon"]?.doubleValue ?? 1e-5)
            maxPositions = try int("n_positions", "max_position_embeddings")
            tiedEmbeddings = config["tie_word_embeddings"]?.boolValue ?? true
            ropeTheta = 0
        } else {
            hiddenSize = try int("hidden_size")
            layers = try int("num_hidden_layers")
            heads = try int("num_attention_heads")
            kvHeads = try optionalInt("num_key_value_heads") ?? heads
            intermediateSize = try int("intermediate_size")
            normEpsilon = Float(config["rms_norm_eps"]?.doubleValue ?? ([.mixtral, .phi3, .olmo2].contains(family) ? 1e-5 : 1e-6))
            maxPositions = try optionalInt("max_position_embeddings", limit: 1 << 30) ?? 4096
            tiedEmbeddings = config["tie_word_embeddings"]?.boolValue ?? gemma
            ropeTheta = 0
        }
        // Per-layer settings are kept in arrays: bound the count by what any model has (the tensors decide the rest).
        guard layers <= 1 << 16 else { throw bad(family == .gpt2 ? "n_layer" : "num_hidden_layers", "\(layers) is out of range (expected at most 65536 layers)") }
        vocabularySize = try int("vocab_size")
        headDim = try optionalInt("head_dim", limit: 1 << 16) ?? (gemma ? 256 : family == .qwen3 && config["head_dim"] == nil ? 128 : hiddenSize / heads)
        guard headDim > 0 else { throw bad("num_attention_heads", "\(heads) heads leave no dimensions of \(hiddenSize) per head") }
        guard heads * headDim <= limit else { throw bad("head_dim", "\(heads) heads × \(headDim) is out of range (expected at most \(limit))") }
        guard heads % kvHeads == 0 else { throw bad("num_key_value_heads", "\(kvHeads) does not divide \(heads) heads") }

        // Features of neighbouring families that change the arithmetic: present and not off, they are refused by name.
        let unimplemented = ["attention_chunk_size", "clip_qkv", "logits_scaling", "residual_multiplier", "embedding_multiplier",
                             "attention_multiplier", "logit_scale", "use_qk_norm", "no_rope_layers", "use_bidirectional_attention"]
        for key in unimplemented {
            guard let value = config[key], value != .null, value != .bool(false) else { continue }
            throw bad(key, "\(value.serialized()) is not supported by ckpt's \(family.rawValue) (expected it absent, null or false)")
        }
        if config["rope_parameters"]?["mrope_section"] != nil || config["rope_scaling"]?["mrope_section"] != nil {
            throw bad("rope_parameters.mrope_section", "multimodal RoPE is not supported (expected a text model's RoPE)")
        }

        // The activation, refused by name when ckpt does not implement it.
        let act = config["hidden_activation"]?.stringValue ?? config["hidden_act"]?.stringValue
            ?? config["activation_function"]?.stringValue ?? (family == .gpt2 ? "gelu_new" : gemma ? "gelu_pytorch_tanh" : "silu")
        switch act {
        case "silu", "swish": activation = .silu
        case "gelu_pytorch_tanh", "gelu_new", "gelu_fast": activation = .geluTanh
        default:
            throw bad(config["hidden_activation"] != nil ? "hidden_activation" : "hidden_act",
                      "\(act) is not supported (expected silu, gelu_pytorch_tanh or gelu_new)")
        }

        // RoPE: rope_parameters (transformers 5; Gemma 3 keeps one per attention kind) or rope_scaling + rope_theta.
        if family != .gpt2 {
            let partial = try optionalNumber("partial_rotary_factor") ?? 1
            guard partial <= 1 else { throw bad("partial_rotary_factor", "\(partial) is above 1") }
            let parameters = config["rope_parameters"], legacy = config["rope_scaling"]
            let global = parameters?["full_attention"] ?? parameters ?? (legacy == .null ? nil : legacy)
            let defaultTheta = config["rope_theta"]?.doubleValue ?? (family == .mixtral || family == .gemma3 ? 1_000_000 : 10_000)
            let rope = try RotaryEmbedding.parse(global, top: config, theta: defaultTheta, headDim: headDim, partialFactor: partial,
                                                 maxPositions: maxPositions, file: file)
            self.rope = rope
            ropeTheta = rope.theta
            if family == .gemma3 {
                let local = parameters?["sliding_attention"]
                let localTheta = config["rope_local_base_freq"]?.doubleValue ?? 10_000
                localRope = try RotaryEmbedding.parse(local, top: .object([]), theta: localTheta, headDim: headDim, partialFactor: partial,
                                                      maxPositions: maxPositions, file: file)
            } else {
                localRope = nil
            }
        } else {
            rope = nil
            localRope = nil
        }

        // Attention: which layers slide, their window, the scale and the soft-caps.
        // Mistral and the Gemmas default to 4096 when the key is absent (null means none).
        let window = config["sliding_window"] == nil && [.mistral, .gemma2, .gemma3].contains(family) ? 4096
            : try optionalInt("sliding_window", limit: 1 << 30)
        var windows = [Int?](repeating: nil, count: layers)
        let layerTypesHonoured: Set<Family> = [.qwen2, .qwen3, .gemma2, .gemma3]
        if layerTypesHonoured.contains(family), let types = config["layer_types"]?.arrayValue {
            guard types.count == layers else { throw bad("layer_types", "\(types.count) entries (expected one per layer, \(layers))") }
            for (i, type) in types.enumerated() {
                switch type.stringValue {
                case "full_attention": windows[i] = nil
                case "sliding_attention":
                    guard let window else { throw bad("sliding_window", "missing (expected it for the sliding_attention layers)") }
                    windows[i] = window
                default:
                    throw bad("layer_types", "\(type.serialized()) is not supported (expected full_attention or sliding_attention)")
                }
            }
        } else if let window {
            switch family {
            case .mistral, .mixtral, .phi3:
                windows = Array(repeating: window, count: layers)
            case .qwen3Moe:
                if config["use_sliding_window"]?.boolValue == true { windows = Array(repeating: window, count: layers) }
            case .qwen2, .qwen3:
                if config["use_sliding_window"]?.boolValue == true {
                    let first = try optionalInt("max_window_layers", limit: 1 << 20) ?? 28
                    for i in 0..<layers where i >= first { windows[i] = window }
                }
            case .gemma2:
                for i in 0..<layers where i % 2 == 0 { windows[i] = window }
            case .gemma3:
                let pattern = try optionalInt("sliding_window_pattern", limit: 1 << 20) ?? 6
                for i in 0..<layers where (i + 1) % pattern != 0 { windows[i] = window }
            case .llama, .olmo2, .gpt2:
                break
            }
        }
        slidingWindows = windows
        if gemma {
            attentionScale = 1 / Float(try optionalNumber("query_pre_attn_scalar") ?? 256).squareRoot()
        } else {
            attentionScale = 1 / Float(headDim).squareRoot()
        }
        // Gemma 2 defaults the caps to 50 and 30 when the keys are absent; Gemma 3 never caps attention, whatever its config says.
        let gemma2Default = family == .gemma2
        attentionSoftcap = family == .gemma3 ? nil
            : config["attn_logit_softcapping"] == nil && gemma2Default ? 50 : try optionalNumber("attn_logit_softcapping").map { Float($0) }
        finalSoftcap = config["final_logit_softcapping"] == nil && gemma2Default ? 30 : try optionalNumber("final_logit_softcapping").map { Float($0) }
        if !gemma, attentionSoftcap != nil { throw bad("attn_logit_softcapping", "is not supported for \(family.rawValue)") }
        if !gemma, finalSoftcap != nil { throw bad("final_logit_softcapping", "is not supported for \(family.rawValue)") }

        // Experts.
        switch family {
        case .mixtral:
            let count = try optionalInt("num_local_experts", limit: 1 << 16) ?? optionalInt("num_experts", limit: 1 << 16) ?? 8
            let perToken = try optionalInt("num_experts_per_tok", limit: 1 << 16) ?? 2
            guard perToken <= count else { throw bad("num_experts_per_tok", "\(perToken) is more than the \(count) experts") }
            experts = Experts(count: count, perToken: perToken, normalizeTopK: true, intermediateSize: intermediateSize,
                              sparseLayers: Array(repeating: true, count: layers))
        case .qwen3Moe:
            let count = try optionalInt("num_experts", limit: 1 << 16) ?? optionalInt("num_local_experts", limit: 1 << 16) ?? 128
            let perToken = try optionalInt("num_experts_per_tok", limit: 1 << 16) ?? 8
            guard perToken <= count else { throw bad("num_experts_per_tok", "\(perToken) is more than the \(count) experts") }
            let step = try optionalInt("decoder_sparse_step", limit: 1 << 20) ?? 1
            let dense = Set(config["mlp_only_layers"]?.arrayValue?.compactMap(\.intValue) ?? [])
            experts = Experts(count: count, perToken: perToken, normalizeTopK: config["norm_topk_prob"]?.boolValue ?? false,
                              intermediateSize: try optionalInt("moe_intermediate_size") ?? intermediateSize,
                              sparseLayers: (0..<layers).map { !dense.contains($0) && ($0 + 1) % step == 0 })
        default:
            experts = nil
        }
    }
}
