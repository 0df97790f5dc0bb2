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

/// The architecture-defining fields of config.json, for the families ckpt evaluates.
public struct TransformerConfig: Sendable, Equatable {
    /// The architectures ckpt evaluates, as config.json's `architectures` class names.
    public enum Family: String, Sendable, CaseIterable {
        case llama = "LlamaForCausalLM"
        case mistral = "MistralForCausalLM"
        case qwen2 = "Qwen2ForCausalLM"
        case gpt2 = "GPT2LMHeadModel"
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
    /// Width of one head (`head_dim`, else `hiddenSize / heads`); even unless GPT-2.
    public var headDim: Int
    /// Width of the MLP's hidden layer (`intermediate_size`; GPT-2 `n_inner`, else 4 × `hiddenSize`).
    public var intermediateSize: Int
    /// Tokens in the vocabulary (`vocab_size`).
    public var vocabularySize: Int
    /// The norms' epsilon (`rms_norm_eps`, default 1e-6; GPT-2 `layer_norm_epsilon`, default 1e-5).
    public var normEpsilon: Float
    /// RoPE base frequency (`rope_theta`, default 10000); 0 for GPT-2, which has no RoPE.
    public var ropeTheta: Double
    /// Whether the LM head reuses the token embedding (`tie_word_embeddings`; default true for GPT-2, else false).
    public var tiedEmbeddings: Bool
    /// Longest context (`max_position_embeddings`, default 4096; GPT-2 `n_positions`).
    public var maxPositions: Int

    /// Reads the fields from config.json; throws `ModelError` naming `file` for an unknown architecture, a missing or non-positive size, or RoPE scaling.
    public init(parsing config: JSONValue, file: String) throws {
        func bad(_ key: String, _ reason: String) -> ModelError { .badConfig(file: file, key: key, reason: reason) }
        let architecture = config["architectures"]?.arrayValue?.first?.stringValue
        let modelType = config["model_type"]?.stringValue
        let byType: [String: Family] = ["llama": .llama, "mistral": .mistral, "qwen2": .qwen2, "gpt2": .gpt2]
        guard let family = architecture.flatMap(Family.init(rawValue:)) ?? modelType.flatMap({ byType[$0] }) else {
            throw ModelError.unsupportedArchitecture(file: file, found: architecture ?? modelType ?? "nothing",
                                                     supported: Family.allCases.map(\.rawValue))
        }
        self.family = family
        // Every size is bounded before anything multiplies or allocates with it: no real model has a
        // dimension beyond 2^24 (16M) or a context beyond 2^30.
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
            normEpsilon = Float(config["rms_norm_eps"]?.doubleValue ?? 1e-6)
            maxPositions = try optionalInt("max_position_embeddings", limit: 1 << 30) ?? 4096
            tiedEmbeddings = config["tie_word_embeddings"]?.boolValue ?? false
            let theta = config["rope_theta"]?.doubleValue ?? config["rope_parameters"]?["rope_theta"]?.doubleValue ?? 10_000
            ropeTheta = theta
            if let type = config["rope_parameters"]?["rope_type"]?.stringValue ?? config["rope_scaling"]?["rope_type"]?.stringValue,
                type != "default"
            {
                throw bad("rope_parameters.rope_type", "\(type) scaling is not supported (expected default)")
            }
        }
        vocabularySize = try int("vocab_size")
        headDim = try optionalInt("head_dim", limit: 1 << 16) ?? hiddenSize / heads
        guard headDim > 0 else { throw bad("num_attention_heads", "\(heads) heads leave no dimensions of \(hiddenSize) per head") }
        guard heads * headDim <= limit else { throw bad("head_dim", "\(heads) heads × \(headDim) is out of range (expected at most \(limit))") }
        guard heads % kvHeads == 0 else { throw bad("num_key_value_heads", "\(kvHeads) does not divide \(heads) heads") }
        guard headDim % 2 == 0 || family == .gpt2 else { throw bad("head_dim", "must be even for RoPE") }
    }
}
