/// How one family names its tensors and arranges a decoder block, as data: the one forward
/// pass (`TransformerModel`) reads it and has no per-family branches. A new family is one
/// description here plus its config keys in `TransformerConfig`.
public struct ArchitectureDescription: Sendable {
    /// How a norm computes (all in f32).
    public enum NormKind: Sendable {
        /// x / √(mean x² + ε) · w.
        case rms
        /// x / √(mean x² + ε) · (1 + w) (Gemma).
        case rmsPlusOne
        /// (x − mean) / √(var + ε) · w + b (GPT-2).
        case layer
    }

    /// Where the query/key norms apply.
    public enum QueryKeyNorm: Sendable {
        /// No query/key norms.
        case none
        /// An RMSNorm over each head's `head_dim` values, before RoPE (Qwen3, Gemma 3).
        case perHead
        /// An RMSNorm over the whole projection (all heads at once), before RoPE (OLMo 2).
        case wholeProjection
    }

    /// The attention projections, relative to a layer's prefix (without `.weight`).
    public enum AttentionProjections: Sendable {
        /// Separate q, k, v projections.
        case separate(q: String, k: String, v: String)
        /// One projection whose rows are q, then k, then v (Phi-3 `qkv_proj`).
        case fused(String)
    }

    /// The feed-forward block, relative to a layer's prefix (without `.weight`).
    public enum FeedForward: Sendable {
        /// act(gate) · up, then down.
        case gated(gate: String, up: String, down: String)
        /// One projection whose rows are gate, then up (Phi-3 `gate_up_proj`), then down.
        case fusedGated(gateUp: String, down: String)
        /// act(up), then down (GPT-2).
        case plain(up: String, down: String)
    }

    /// The MoE block of a sparse layer: the router and each expert's gated projections.
    public struct ExpertNames: Sendable {
        /// The router (`[experts, hidden]`).
        public var router: String
        /// Expert e's gate, up and down projections.
        public var expert: @Sendable (Int) -> (gate: String, up: String, down: String)
    }

    /// Prefix of every decoder tensor before the layer number (`model.layers.`).
    public var layerPrefix: String
    /// The token embedding.
    public var embedding: String
    /// Learned absolute positions (GPT-2), nil with RoPE.
    public var positions: String?
    /// Norm before attention (`input_layernorm`), nil when the block has none (OLMo 2).
    public var preAttentionNorm: String?
    /// Norm of the attention output before the residual add (Gemma, OLMo 2).
    public var postAttentionNorm: String?
    /// Norm before the MLP (Llama's `post_attention_layernorm`, Gemma's `pre_feedforward_layernorm`).
    public var preFeedForwardNorm: String?
    /// Norm of the MLP output before the residual add (Gemma, OLMo 2).
    public var postFeedForwardNorm: String?
    /// The q/k/v projections.
    public var attention: AttentionProjections
    /// The output projection.
    public var output: String
    /// The q/k norms' names and where they apply.
    public var queryKeyNorm: QueryKeyNorm
    /// q norm and k norm tensor names (with `.weight`), when `queryKeyNorm` is not `.none`.
    public var queryKeyNormNames: (q: String, k: String)
    /// The dense feed-forward block.
    public var feedForward: FeedForward
    /// The MoE block of sparse layers, for MoE families.
    public var experts: ExpertNames?
    /// The final norm.
    public var finalNorm: String
    /// The LM head (absent when tied).
    public var head: String
    /// How every norm computes.
    public var norm: NormKind
    /// Whether the embedding is multiplied by √hidden (Gemma).
    public var scalesEmbedding: Bool
    /// Whether linear weights are stored [in, out] (GPT-2's Conv1D) rather than [out, in].
    public var transposedLinear: Bool

    /// The description of `family`; `prefix` is the checkpoint's name prefix for GPT-2 ("" or "transformer.").
    public static func of(_ family: TransformerConfig.Family, gpt2Prefix prefix: String = "transformer.") -> ArchitectureDescription {
        switch family {
        case .llama, .mistral, .qwen2: return llama
        case .qwen3: return qwen3
        case .mixtral: return mixtral
        case .qwen3Moe: return qwen3Moe
        case .gemma2: return gemma2
        case .gemma3: return gemma3
        case .phi3: return phi3
        case .olmo2: return olmo2
        case .gpt2: return gpt2(prefix: prefix)
        }
    }

    /// Llama, Mistral, Qwen2: pre-norm RMSNorm blocks, SwiGLU, optional q/k/v biases.
    public static let llama = ArchitectureDescription(
        layerPrefix: "model.layers.", embedding: "model.embed_tokens.weight", positions: nil,
        preAttentionNorm: "input_layernorm.weight", postAttentionNorm: nil,
        preFeedForwardNorm: "post_attention_layernorm.weight", postFeedForwardNorm: nil,
        attention: .separate(q: "self_attn.q_proj", k: "self_attn.k_proj", v: "self_attn.v_proj"), output: "self_attn.o_proj",
        queryKeyNorm: .none, queryKeyNormNames: ("", ""),
        feedForward: .gated(gate: "mlp.gate_proj", up: "mlp.up_proj", down: "mlp.down_proj"), experts: nil,
        finalNorm: "model.norm.weight", head: "lm_head.weight", norm: .rms, scalesEmbedding: false, transposedLinear: false)

    /// Qwen3: Llama with a per-head RMSNorm on queries and keys before RoPE.
    public static let qwen3: ArchitectureDescription = {
        var d = llama
        d.queryKeyNorm = .perHead
        d.queryKeyNormNames = ("self_attn.q_norm.weight", "self_attn.k_norm.weight")
        return d
    }()

    /// Mixtral: Llama whose MLP is `block_sparse_moe` (router `gate`, experts w1 = gate, w3 = up, w2 = down).
    public static let mixtral: ArchitectureDescription = {
        var d = llama
        d.experts = ExpertNames(router: "block_sparse_moe.gate") { e in
            ("block_sparse_moe.experts.\(e).w1", "block_sparse_moe.experts.\(e).w3", "block_sparse_moe.experts.\(e).w2")
        }
        return d
    }()

    /// Qwen3-MoE: Qwen3 whose sparse layers route to `mlp.experts.N` through `mlp.gate`.
    public static let qwen3Moe: ArchitectureDescription = {
        var d = qwen3
        d.experts = ExpertNames(router: "mlp.gate") { e in
            ("mlp.experts.\(e).gate_proj", "mlp.experts.\(e).up_proj", "mlp.experts.\(e).down_proj")
        }
        return d
    }()

    /// Gemma 2: four (1 + w) RMSNorms per block, GeGLU, embedding × √hidden.
    public static let gemma2: ArchitectureDescription = {
        var d = llama
        d.postAttentionNorm = "post_attention_layernorm.weight"
        d.preFeedForwardNorm = "pre_feedforward_layernorm.weight"
        d.postFeedForwardNorm = "post_feedforward_layernorm.weight"
        d.norm = .rmsPlusOne
        d.scalesEmbedding = true
        return d
    }()

    /// Gemma 3 (text): Gemma 2 with per-head (1 + w) q/k norms.
    public static let gemma3: ArchitectureDescription = {
        var d = gemma2
        d.queryKeyNorm = .perHead
        d.queryKeyNormNames = ("self_attn.q_norm.weight", "self_attn.k_norm.weight")
        return d
    }()

    /// Phi-3 / Phi-4-mini: fused `qkv_proj` and `gate_up_proj`.
    public static let phi3: ArchitectureDescription = {
        var d = llama
        d.attention = .fused("self_attn.qkv_proj")
        d.feedForward = .fusedGated(gateUp: "mlp.gate_up_proj", down: "mlp.down_proj")
        return d
    }()

    /// OLMo 2: no pre-norms; the attention and MLP outputs are normed before the residual add;
    /// q/k RMSNorms over the whole projection.
    public static let olmo2: ArchitectureDescription = {
        var d = llama
        d.preAttentionNorm = nil
        d.postAttentionNorm = "post_attention_layernorm.weight"
        d.preFeedForwardNorm = nil
        d.postFeedForwardNorm = "post_feedforward_layernorm.weight"
        d.queryKeyNorm = .wholeProjection
        d.queryKeyNormNames = ("self_attn.q_norm.weight", "self_attn.k_norm.weight")
        return d
    }()

    /// GPT-2: LayerNorm, learned positions, fused Conv1D `c_attn`, biases everywhere, GELU (tanh).
    public static func gpt2(prefix: String) -> ArchitectureDescription {
        ArchitectureDescription(
            layerPrefix: prefix + "h.", embedding: prefix + "wte.weight", positions: prefix + "wpe.weight",
            preAttentionNorm: "ln_1.weight", postAttentionNorm: nil, preFeedForwardNorm: "ln_2.weight", postFeedForwardNorm: nil,
            attention: .fused("attn.c_attn"), output: "attn.c_proj", queryKeyNorm: .none, queryKeyNormNames: ("", ""),
            feedForward: .plain(up: "mlp.c_fc", down: "mlp.c_proj"), experts: nil,
            finalNorm: prefix + "ln_f.weight", head: "lm_head.weight", norm: .layer, scalesEmbedding: false, transposedLinear: true)
    }
}
