import Foundation

/// Small llama checkpoints whose every weight is a bf16 bit pattern drawn from splitmix64 seeded by
/// the tensor's name: regenerated here bit for bit as tools/make_gguf_preset_goldens.py made them,
/// so goldens of what llama.cpp writes from them need no model file in the repository.
public enum SeededModels {
    /// A model's shape, as config.json names it.
    public struct Shape: Sendable {
        public var hidden: Int, intermediate: Int, layers: Int, heads: Int, kvHeads: Int, tied: Bool
        /// Vocabulary rows of the embedding and head.
        public var vocab = 512
    }

    /// The two shapes the goldens use (see the generator's docstring).
    public static let shapes: [String: Shape] = [
        "untied": Shape(hidden: 256, intermediate: 320, layers: 4, heads: 4, kvHeads: 1, tied: false),
        "tied": Shape(hidden: 320, intermediate: 512, layers: 3, heads: 5, kvHeads: 5, tied: true),
        // A head wider than one product tile (4099 rows: twelve tiles, the last one partial), for the evaluation's head tiles.
        "wide-vocab": Shape(hidden: 64, intermediate: 96, layers: 2, heads: 2, kvHeads: 1, tied: false, vocab: 4099),
    ]

    static func splitmix64(_ state: inout UInt64) -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    static func fnv1a64(_ text: String) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in text.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        return h
    }

    /// The tensor's bf16 bit patterns: norms near 1, weights of magnitude 2⁻¹⁰…2⁻⁵ with rare 2⁻⁴ outliers.
    public static func bf16Bits(_ name: String, count: Int, norm: Bool) -> [UInt16] {
        var state = fnv1a64(name)
        return (0..<count).map { _ in
            let u = splitmix64(&state)
            if norm { return UInt16(127 << 7) | UInt16((u >> 8) & 0x1F) }
            let exponent: UInt64 = (u >> 32) % 211 == 0 ? 123 : 117 + (u >> 1) % 6
            return UInt16(truncatingIfNeeded: (u & 1) << 15 | exponent << 7 | (u >> 8) & 0x7F)
        }
    }

    /// Writes the model `name` as a Hugging Face folder at `folder`, with the tokenizer files of `tokenizerFolder`.
    public static func write(_ name: String, to folder: String, tokenizerFolder: String) throws {
        let s = shapes[name]!
        let hd = s.hidden / s.heads
        var tensors: [(String, [Int])] = [("model.embed_tokens.weight", [s.vocab, s.hidden]), ("model.norm.weight", [s.hidden])]
        if !s.tied { tensors.append(("lm_head.weight", [s.vocab, s.hidden])) }
        for i in 0..<s.layers {
            let p = "model.layers.\(i)."
            tensors += [(p + "input_layernorm.weight", [s.hidden]), (p + "post_attention_layernorm.weight", [s.hidden]),
                        (p + "self_attn.q_proj.weight", [s.heads * hd, s.hidden]), (p + "self_attn.k_proj.weight", [s.kvHeads * hd, s.hidden]),
                        (p + "self_attn.v_proj.weight", [s.kvHeads * hd, s.hidden]), (p + "self_attn.o_proj.weight", [s.hidden, s.heads * hd]),
                        (p + "mlp.gate_proj.weight", [s.intermediate, s.hidden]), (p + "mlp.up_proj.weight", [s.intermediate, s.hidden]),
                        (p + "mlp.down_proj.weight", [s.hidden, s.intermediate])]
        }
        tensors.sort { $0.0 < $1.0 }
        var header: [String] = []
        var data: [UInt8] = []
        for (tensor, shape) in tensors {
            let bits = bf16Bits(tensor, count: shape.reduce(1, *), norm: shape.count == 1)
            let start = data.count
            for b in bits { data.append(UInt8(b & 0xFF)); data.append(UInt8(b >> 8)) }
            header.append("\"\(tensor)\":{\"dtype\":\"BF16\",\"shape\":[\(shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(start),\(data.count)]}")
        }
        var json = Array(("{" + header.joined(separator: ",") + "}").utf8)
        while json.count % 8 != 0 { json.append(0x20) }
        var file = withUnsafeBytes(of: UInt64(json.count).littleEndian) { Array($0) }
        file += json + data
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try Data(file).write(to: URL(fileURLWithPath: folder + "/model.safetensors"))
        let config = """
            {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu", "vocab_size": \(s.vocab),
             "max_position_embeddings": 256, "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "bos_token_id": 0, "eos_token_id": 0,
             "torch_dtype": "bfloat16", "hidden_size": \(s.hidden), "intermediate_size": \(s.intermediate),
             "num_hidden_layers": \(s.layers), "num_attention_heads": \(s.heads), "num_key_value_heads": \(s.kvHeads),
             "tie_word_embeddings": \(s.tied)}
            """
        try Data(config.utf8).write(to: URL(fileURLWithPath: folder + "/config.json"))
        for f in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"] {
            try FileManager.default.copyItem(atPath: tokenizerFolder + "/" + f, toPath: folder + "/" + f)
        }
    }
}
