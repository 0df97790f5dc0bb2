/// llama-quantize's file types (its `--type` names): a default tensor type, and the rules of
/// `llama-quant.cpp` that give some tensors more bits.
public enum GGUFPreset: String, CaseIterable, Sendable {
    case f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1
    case q2_k, q3_k_s, q3_k_m, q3_k_l, q4_k_s, q4_k_m, q5_k_s, q5_k_m, q6_k, iq4_nl, iq4_xs

    /// The preset a `--type` name means (any case; `q3_k`, `q4_k`, `q5_k` are llama-quantize's
    /// aliases for the `_m` presets); nil for anything else.
    public init?(name: String) {
        let lower = name.lowercased()
        let aliases = ["q3_k": "q3_k_m", "q4_k": "q4_k_m", "q5_k": "q5_k_m"]
        guard let preset = GGUFPreset(rawValue: aliases[lower] ?? lower) else { return nil }
        self = preset
    }

    /// The tensor type every quantizable tensor starts from.
    public var defaultType: GGMLType {
        switch self {
        case .f32: return .f32
        case .f16: return .f16
        case .bf16: return .bf16
        case .q8_0: return .q8_0
        case .q4_0: return .q4_0
        case .q4_1: return .q4_1
        case .q5_0: return .q5_0
        case .q5_1: return .q5_1
        case .q2_k: return .q2_K
        case .q3_k_s, .q3_k_m, .q3_k_l: return .q3_K
        case .q4_k_s, .q4_k_m: return .q4_K
        case .q5_k_s, .q5_k_m: return .q5_K
        case .q6_k: return .q6_K
        case .iq4_nl: return .iq4_NL
        case .iq4_xs: return .iq4_XS
        }
    }

    /// `general.file_type` (`llama_ftype`).
    public var fileType: UInt32 {
        switch self {
        case .f32: return 0
        case .f16: return 1
        case .q4_0: return 2
        case .q4_1: return 3
        case .q8_0: return 7
        case .q5_0: return 8
        case .q5_1: return 9
        case .q2_k: return 10
        case .q3_k_s: return 11
        case .q3_k_m: return 12
        case .q3_k_l: return 13
        case .q4_k_s: return 14
        case .q4_k_m: return 15
        case .q5_k_s: return 16
        case .q5_k_m: return 17
        case .q6_k: return 18
        case .iq4_nl: return 25
        case .iq4_xs: return 30
        case .bf16: return 32
        }
    }

    /// Whether the preset quantizes (llama-quantize applies its rules only then).
    public var isQuantized: Bool { ![.f32, .f16, .bf16].contains(self) }

    /// Every `--type` name, for messages.
    public static var names: String { allCases.map(\.rawValue).joined(separator: ", ") }
}

/// The GGML type of every tensor of a GGUF, chosen as `llama-quantize` chooses it
/// (`llama_tensor_get_type` in llama-quant.cpp, pinned 0c1e570): which tensors may be quantized,
/// `--tensor-type` overrides, the preset's rules, then the fallback for rows its blocks do not divide.
public struct GGUFTypePlan: Sendable {
    /// What the rules need to know of the model.
    public struct Model: Sendable {
        /// llama.cpp's architecture name (`general.architecture`).
        public var architecture: String
        /// `block_count`.
        public var layers: Int
        /// Attention heads and key/value heads (for `n_gqa`).
        public var heads: Int, kvHeads: Int
        /// Experts per MoE layer (0 or 1 without).
        public var experts: Int

        /// A model description for the rules.
        public init(architecture: String, layers: Int, heads: Int, kvHeads: Int, experts: Int) {
            self.architecture = architecture; self.layers = layers; self.heads = heads; self.kvHeads = kvHeads; self.experts = experts
        }

        var groupedQueries: Int { kvHeads == 0 ? 0 : heads / kvHeads }
        /// llama.cpp's LLM_TYPE_70B, for which attn_v gets more bits.
        var is70B: Bool { layers == 80 && (["qwen2", "olmo"].contains(architecture) || (architecture == "llama" && heads != kvHeads)) }
    }

    /// One tensor as the plan sees it: its GGUF name, `ne` (columns first) and stored type.
    public struct Tensor: Sendable {
        /// GGUF name, e.g. `blk.3.ffn_down.weight`.
        public var name: String
        /// Dimensions, columns first (GGUF `ne`).
        public var dims: [Int]
        /// The type it has in the input (kept when it is not quantized).
        public var inputType: GGMLType

        /// A tensor to plan.
        public init(name: String, dims: [Int], inputType: GGMLType) { self.name = name; self.dims = dims; self.inputType = inputType }
    }

    /// The choice for one tensor, and the fallback note llama-quantize prints, if any.
    public struct Choice: Sendable, Equatable {
        /// The type written.
        public var type: GGMLType
        /// "ncols 576 not divisible by 256 (required for type Q4_K) -> falling back to Q5_0", when it fell back.
        public var fallback: String?
    }

    /// The options of llama-quantize that change the choice.
    public struct Options: Sendable {
        /// `--tensor-type REGEX=TYPE`, in command-line order (first match wins).
        public var overrides: [(pattern: String, type: GGMLType)] = []
        /// `--leave-output-tensor`: output.weight keeps its input type.
        public var leaveOutputTensor = false
        /// `--output-tensor-type` and `--token-embedding-type`.
        public var outputType: GGMLType? = nil, tokenEmbeddingType: GGMLType? = nil
        /// `--pure`: the default type everywhere (fallbacks aside).
        public var pure = false
        /// Whether an importance matrix is given (two rules depend on it).
        public var hasImportance = false

        /// llama-quantize's defaults.
        public init() {}
    }

    /// Failures building a plan.
    public enum Failure: Error, Equatable, Sendable, CustomStringConvertible {
        case badPattern(String)
        case badLayer(tensor: String, layers: Int)
        case rowsNotDivisible(tensor: String, type: String, columns: Int)

        /// The one-line message.
        public var description: String {
            switch self {
            case .badPattern(let p): return "--tensor-type \(p): not a valid regular expression"
            case let .badLayer(tensor, layers): return "\(tensor): no layer number in 0..<\(layers) in its name (expected blk.N.…)"
            case let .rowsNotDivisible(tensor, type, columns):
                return "\(tensor): rows of \(columns) cannot be stored as \(type) (expected a type whose block divides \(columns); "
                    + "llama-quantize aborts here, it does not fall back for an explicit output or embedding type)"
            }
        }
    }

    /// llama.cpp's tensor order (`weight_name_comparer`): tensors outside blocks first, then by
    /// layer number, then by name.
    public static func llamaOrder(_ a: String, _ b: String) -> Bool {
        let la = layer(of: a) ?? -1, lb = layer(of: b) ?? -1
        return la != lb ? la < lb : a.utf8.lexicographicallyPrecedes(b.utf8)
    }

    /// The N of a `blk.N.` prefix, read from the UTF-8 bytes (ASCII digits only).
    static func layer(of name: String) -> Int? {
        let bytes = name.utf8
        guard bytes.starts(with: "blk.".utf8) else { return nil }
        var n = 0, digits = 0
        for byte in bytes.dropFirst(4) {
            guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") else {
                return digits > 0 && byte == UInt8(ascii: ".") ? n : nil
            }
            guard digits < 18 else { return nil }  // no model has so many layers; stops short of Int's overflow
            n = n * 10 + Int(byte - UInt8(ascii: "0"))
            digits += 1
        }
        return nil
    }

    /// The choices for `tensors` (in any order; the rules walk them in llama.cpp's order).
    public static func plan(_ tensors: [Tensor], model: Model, preset: GGUFPreset, options: Options = Options()) throws -> [String: Choice] {
        var patterns: [(Regex<AnyRegexOutput>, GGMLType)] = []
        for (pattern, type) in options.overrides {
            guard let regex = try? Regex(pattern.lowercased()) else { throw Failure.badPattern(pattern) }
            patterns.append((regex, type))
        }
        var state = Counters(attentionV: tensors.filter { Category(name: $0.name).isAttentionV }.count, layers: model.layers,
                             tied: !tensors.contains { $0.name == "output.weight" })
        var result: [String: Choice] = [:]
        for tensor in tensors.sorted(by: { llamaOrder($0.name, $1.name) }) {
            result[tensor.name] = try choose(tensor, model: model, preset: preset, options: options, patterns: patterns, state: &state)
        }
        return result
    }

    /// The counters llama-quantize advances as it walks the tensors.
    struct Counters {
        var attentionV: Int, layers: Int, tied: Bool
        var attentionVSeen = 0, ffnDownSeen = 0, ffnGateSeen = 0, ffnUpSeen = 0
    }

    /// `tensor_get_category`: by exact name, then by the first substring that matches.
    enum Category {
        case output, tokenEmbedding, qkv, kvB, v, k, q, attentionOutput, ffnUp, ffnGate, ffnDown, other

        init(name: String) {
            if name == "output.weight" { self = .output; return }
            if name == "token_embd.weight" || name == "per_layer_token_embd.weight" { self = .tokenEmbedding; return }
            let ordered: [(String, Category)] = [("attn_qkv.weight", .qkv), ("attn_kv_b.weight", .kvB), ("attn_v.weight", .v), ("attn_k.weight", .k),
                                                 ("attn_q.weight", .q), ("attn_output.weight", .attentionOutput), ("ffn_up", .ffnUp),
                                                 ("ffn_gate", .ffnGate), ("ffn_down", .ffnDown)]
            self = ordered.first { name.containsBytes($0.0) }?.1 ?? .other
        }

        var isAttentionV: Bool { self == .v || self == .qkv || self == .kvB }
    }

    /// Names llama-quantize never quantizes (`tensor_allows_quantization`), by substring.
    static let neverQuantized = ["_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel", "per_layer_model_proj",
                                 "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight", "indexer.q_proj.weight", "attn_rel_b.weight",
                                 ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos", ".patch_embd", ".patch_merger",
                                 "a.rvq.codebook", "mm.a.code_embd"]
        + ["first", "w0", "w1", "w2", "v0", "v1", "v2", "a0", "a1", "a2", "g1", "g2", "decay_w1", "decay_w2", "lerp_fused"].map { "time_mix_\($0).weight" }

    static func allowsQuantization(_ t: Tensor, options: Options) -> Bool {
        guard t.dims.count >= 2, t.name.hasSuffix("weight") else { return false }
        if options.leaveOutputTensor && t.name == "output.weight" { return false }
        if t.name == "position_embd.weight" || t.name == "token_types.weight" { return false }
        return !neverQuantized.contains { t.name.containsBytes($0) }
    }

    /// `llama_tensor_get_type` for one tensor.
    static func choose(_ t: Tensor, model: Model, preset: GGUFPreset, options: Options, patterns: [(Regex<AnyRegexOutput>, GGMLType)],
                       state: inout Counters) throws -> Choice {
        guard allowsQuantization(t, options: options) else { return Choice(type: t.inputType) }
        let category = Category(name: t.name)
        // Explicit output and embedding types bypass the fallback in llama-quantize (which then aborts): refuse instead.
        for case let (type?, wanted) in [(options.tokenEmbeddingType, Category.tokenEmbedding), (options.outputType, .output)] where category == wanted {
            guard t.dims[0] % type.blockSize == 0 else { throw Failure.rowsNotDivisible(tensor: t.name, type: type.name, columns: t.dims[0]) }
            return Choice(type: type)
        }
        var type = preset.defaultType
        guard preset.isQuantized else { return Choice(type: type) }
        var manual = false
        for (regex, override) in patterns where t.name.contains(regex) {
            type = override
            manual = true
            break
        }
        if !manual && !options.pure {
            type = try rules(type, t, category, model: model, preset: preset, options: options, state: &state)
        }
        return fallback(type, columns: t.dims[0], name: t.name)
    }

    /// `tensor_type_fallback`: a type whose blocks do not divide the rows falls back to a 32-block
    /// one, and to F16 when even that does not fit.
    static func fallback(_ type: GGMLType, columns: Int, name: String) -> Choice {
        guard columns % type.blockSize != 0 else { return Choice(type: type) }
        var chosen: GGMLType
        switch type {
        case .iq4_XS: chosen = .iq4_NL
        case .q2_K, .q3_K: chosen = .q4_0
        case .q4_K: chosen = .q5_0
        case .q5_K: chosen = .q5_1
        case .q6_K: chosen = .q8_0
        default: chosen = type
        }
        if columns % chosen.blockSize != 0 { chosen = .f16 }
        return Choice(type: chosen, fallback: "ncols \(columns) not divisible by \(type.blockSize) (required for type \(type)) -> falling back to \(chosen)")
    }

    /// `use_more_bits`: the first and last eighth of the layers, and every third between.
    static func moreBits(_ i: Int, _ n: Int) -> Bool { i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2 }

    /// `llama_tensor_get_type_impl`, for the presets ckpt writes (no IQ1-IQ3, no Falcon special
    /// cases beyond the ones listed, no MXFP4).
    static func rules(_ start: GGMLType, _ t: Tensor, _ category: Category, model: Model, preset: GGUFPreset, options: Options,
                      state: inout Counters) throws -> GGMLType {
        var type = start
        let falcon = model.architecture == "falcon"
        let experts = max(1, model.experts)
        // The layer of an FFN tensor: the counter, or with experts the number in its name.
        func layer(_ counter: Int) throws -> Int {
            guard experts > 1 else { return counter }
            guard let i = Self.layer(of: t.name), i < state.layers else { throw Failure.badLayer(tensor: t.name, layers: state.layers) }
            return i
        }
        let n = state.layers
        switch category {
        case .output, .tokenEmbedding where state.tied:
            // The output (and an embedding tied to it) gets Q6_K, or Q8_0 when 256 does not divide its rows.
            if let output = options.outputType {
                type = output
            } else if falcon || t.dims[0] % type.blockSize != 0 {
                type = .q8_0
            } else if type != .q8_0 {
                type = .q6_K
            }
        case .tokenEmbedding:
            break
        case .v, .qkv, .kvB:
            let i = state.attentionVSeen, gqa = model.groupedQueries
            switch preset {
            case .q2_k: type = gqa >= 4 ? .q4_K : .q3_K
            case .q3_k_m: type = i < 2 ? .q5_K : .q4_K
            case .q3_k_l: type = .q5_K
            case .iq4_nl where gqa >= 4, .iq4_xs where gqa >= 4: type = .q5_K
            case .q4_k_m where moreBits(i, state.attentionV), .q5_k_m where moreBits(i, state.attentionV): type = .q6_K
            case .q4_k_s where i < 4: type = .q5_K
            default: break
            }
            if model.is70B && (type == .q3_K || type == .q4_K) { type = .q5_K }
            if model.experts == 8 { type = .q8_0 }
            state.attentionVSeen += 1
        case .k:
            if model.experts == 8 { type = .q8_0 }
        case .q:
            break
        case .ffnDown:
            let i = try layer(state.ffnDownSeen)
            switch preset {
            case .q2_k: type = .q3_K
            case .q3_k_m: type = i < n / 16 ? .q5_K : (!falcon || moreBits(i, n) ? .q4_K : .q3_K)
            case .q3_k_l: type = falcon ? .q4_K : .q5_K
            case .q4_k_m:
                if falcon { type = i < n / 16 ? .q6_K : (moreBits(i, n) ? .q5_K : .q4_K) } else if moreBits(i, n) { type = .q6_K }
            case .iq4_nl where i < n / 8 && !options.hasImportance, .iq4_xs where i < n / 8 && !options.hasImportance: type = .q5_K
            case .q5_k_m where moreBits(i, n): type = .q6_K
            case .q4_k_s where !falcon && i < n / 8: type = .q5_K
            case .q4_0 where options.hasImportance && i < n / 8: type = .q4_1
            case .q5_0 where options.hasImportance && i < n / 8: type = .q5_1
            default: break
            }
            state.ffnDownSeen += 1
        case .attentionOutput:
            if !falcon {
                if model.experts == 8 {
                    if [.q2_k, .q3_k_s, .q3_k_m, .iq4_nl, .q4_k_s, .q4_k_m, .iq4_xs].contains(preset) { type = .q5_K }
                } else {
                    switch preset {
                    case .q2_k: type = .q3_K
                    case .q3_k_m: type = .q4_K
                    case .q3_k_l: type = .q5_K
                    default: break
                    }
                }
            } else if preset == .q3_k_l {
                type = .q4_K
            }
        case .ffnGate:
            _ = try layer(state.ffnGateSeen)
            state.ffnGateSeen += 1
        case .ffnUp:
            _ = try layer(state.ffnUpSeen)
            state.ffnUpSeen += 1
        case .other:
            break
        }
        return type
    }
}
