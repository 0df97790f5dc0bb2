/// Failures seeing a GGUF file as a Hugging Face checkpoint.
public enum GGUFSourceError: Error, Equatable, Sendable, CustomStringConvertible {
    case unsupportedArchitecture(file: String, found: String)
    case missingKey(file: String, key: String)
    case badKey(file: String, key: String, expected: String, found: String)
    case unmappedTensor(file: String, tensor: String)
    case badTensorShape(file: String, tensor: String, expected: String, found: [Int])

    /// The one-line message: the file or tensor at fault, what was found and what was expected.
    public var description: String {
        switch self {
        case let .unsupportedArchitecture(file, found):
            return "\(file): GGUF architecture '\(found)' is not supported (expected \(GGUFSource.architectures.joined(separator: ", ")))"
        case let .missingKey(file, key):
            return "\(file): metadata '\(key)' is missing (expected it in a llama GGUF)"
        case let .badKey(file, key, expected, found):
            return "\(file): metadata '\(key)' is \(found) (expected \(expected))"
        case let .unmappedTensor(file, tensor):
            return "\(faultLocation(file, tensor: tensor)): no Hugging Face name in the llama layout"
        case let .badTensorShape(file, tensor, expected, found):
            return "\(faultLocation(file, tensor: tensor)): shape \(found) (expected \(expected))"
        }
    }
}

/// A GGUF file (llama family) seen as a Hugging Face checkpoint: tensors under their Hugging
/// Face names and row-major shapes, Q/K rows un-permuted, GGML blocks decoded to f32 when read
/// (F32/F16/BF16 tensors are used in place); config.json from the `llama.*` metadata and
/// tokenizer files from `tokenizer.ggml.*`, as transformers' GGUF loader builds them.
public final class GGUFSource: Sendable {
    /// GGUF architectures whose tensors ckpt maps to Hugging Face names.
    public static let architectures = ["llama"]

    /// One tensor: where it is in the GGUF, and the heads its rows are permuted over (Q and K).
    struct Plan: Sendable {
        let info: GGUFTensorInfo
        let permutedHeads: Int?
    }

    /// The parsed GGUF file the tensors are read from.
    public let file: GGUFFile
    let plans: [Plan]

    init(file: GGUFFile, plans: [Plan]) {
        self.file = file
        self.plans = plans
    }

    /// The one GGUF among a folder's names, if there is exactly one.
    static func soleFile(in names: [String]) -> String? {
        let found = names.filter { $0.hasSuffix(".gguf") }
        return found.count == 1 ? found[0] : nil
    }

    /// Reads the GGUF at `path` (found in `folder`, when given as a folder).
    static func open(_ path: String, folder: String?) throws -> Checkpoint.Parts {
        let gguf = try GGUFFile(path: path)
        let file = gguf.path
        let architecture = gguf.value("general.architecture")?.stringValue ?? "none"
        guard architectures.contains(architecture) else {
            throw GGUFSourceError.unsupportedArchitecture(file: file, found: architecture)
        }
        func count(_ key: String, default fallback: Int? = nil, limit: Int = 1 << 24) throws -> Int {
            guard let value = gguf.value(key) else {
                if let fallback { return fallback }
                throw GGUFSourceError.missingKey(file: file, key: key)
            }
            guard let n = value.intValue, n > 0, n <= limit else {
                throw GGUFSourceError.badKey(file: file, key: key, expected: "an integer from 1 to \(limit)",
                                             found: value.intValue.map(String.init) ?? "not an integer")
            }
            return n
        }
        let heads = try count("llama.attention.head_count", limit: 1 << 16)
        let kvHeads = try count("llama.attention.head_count_kv", default: heads, limit: 1 << 16)
        let hidden = try count("llama.embedding_length")
        guard let embedding = gguf.info(named: "token_embd.weight") else {
            throw GGUFSourceError.missingKey(file: file, key: "token_embd.weight")
        }
        let hasHead = gguf.info(named: "output.weight") != nil
        var config: [(String, JSONValue)] = [
            ("architectures", ["LlamaForCausalLM"]), ("model_type", "llama"),
            ("hidden_size", JSONValue(hidden)), ("intermediate_size", JSONValue(try count("llama.feed_forward_length"))),
            ("num_hidden_layers", JSONValue(try count("llama.block_count"))), ("num_attention_heads", JSONValue(heads)),
            ("num_key_value_heads", JSONValue(kvHeads)),
            ("rms_norm_eps", .double(gguf.value("llama.attention.layer_norm_rms_epsilon")?.doubleValue ?? 1e-5)),
            ("rope_theta", .double(gguf.value("llama.rope.freq_base")?.doubleValue ?? 10_000)),
            ("max_position_embeddings", JSONValue(try count("llama.context_length", default: 2048, limit: 1 << 30))),
            ("vocab_size", JSONValue(try count("llama.vocab_size", default: embedding.shape.first ?? 0))),
            ("tie_word_embeddings", .bool(!hasHead)), ("hidden_act", "silu"), ("torch_dtype", "float32"),
            ("attention_bias", false), ("mlp_bias", false),
        ]
        if let keyLength = gguf.value("llama.attention.key_length")?.intValue, keyLength != hidden / heads {
            config.append(("head_dim", JSONValue(try count("llama.attention.key_length"))))
        }
        let tokens = gguf.value("tokenizer.ggml.tokens")?.arrayValue
        for (name, key) in [("bos_token_id", "tokenizer.ggml.bos_token_id"), ("eos_token_id", "tokenizer.ggml.eos_token_id"),
                            ("pad_token_id", "tokenizer.ggml.padding_token_id")]
        {
            if let id = gguf.value(key)?.intValue, id >= 0, id < (tokens?.count ?? Int.max) { config.append((name, JSONValue(id))) }
        }

        // Tensors, in the GGUF's order, under their Hugging Face names.
        var parts = Checkpoint.Parts(format: .gguf, layout: .file, directory: folder)
        parts.weightFileNames = [FileSystem.split(path).name]
        var plans: [Plan] = []
        for info in gguf.tensors {
            if info.name == "rope_freqs.weight" { continue }  // computed from rope_theta, not a weight
            guard let name = GGUFLlamaNames.hfName(info.name) else { throw GGUFSourceError.unmappedTensor(file: file, tensor: info.name) }
            var permutedHeads: Int? = nil
            if info.name.hasSuffix("attn_q.weight") || info.name.hasSuffix("attn_k.weight") {
                let n = info.name.hasSuffix("attn_q.weight") ? heads : kvHeads
                guard info.shape.count == 2, GGUFLlamaNames.canPermute(rows: info.shape[0], heads: n) else {
                    throw GGUFSourceError.badTensorShape(file: file, tensor: info.name,
                                                         expected: "2 dimensions, rows a multiple of 2 × \(n) heads", found: info.shape)
                }
                permutedHeads = n
            }
            let dtype = info.type.floatDType ?? .f32
            let decodedBytes = info.elementCount * dtype.size
            parts.entries.append(Checkpoint.Entry(info: TensorInfo(name: name, dtype: dtype, shape: info.shape, dataOffsets: 0..<decodedBytes),
                                                  fileIndex: 0, storedBytes: info.byteCount,
                                                  storedType: info.type.floatDType == nil ? info.type.name : nil, locator: plans.count))
            plans.append(Plan(info: info, permutedHeads: permutedHeads))
        }
        parts.containers = [.gguf(GGUFSource(file: gguf, plans: plans))]
        parts.files = [Checkpoint.File(path: file, byteCount: gguf.mapped.count, tensorCount: plans.count, metadata: [])]
        parts.formatMetadata = gguf.metadata.map { key, value in (key, summary(value)) }
        parts.config = .object(config)
        parts.configSource = file
        // A vocabulary ckpt cannot rebuild costs only the tokenizer: weights still read, evaluation says why it cannot run.
        do {
            if let (tokenizer, tokenizerConfig) = try GGUFVocabulary.tokenizerFiles(gguf) {
                parts.generatedFiles = [Checkpoint.GeneratedFile(name: "tokenizer.json", contents: tokenizer, sortKeys: false),
                                        Checkpoint.GeneratedFile(name: "tokenizer_config.json", contents: tokenizerConfig, sortKeys: true)]
            }
        } catch {
            parts.tokenizerFailure = "\(error)"
        }
        return parts
    }

    /// A metadata value for display: scalars as they are, arrays as their length.
    static func summary(_ value: GGUFValue) -> String {
        if let array = value.arrayValue { return "[\(array.count) items]" }
        if let s = value.stringValue { return s.count > 200 ? String(s.prefix(200)) + "…" : s }
        if let b = value.boolValue { return b ? "true" : "false" }
        if let i = value.intValue { return String(i) }
        if let d = value.doubleValue { return String(d) }
        return "?"
    }

    /// The tensor of `entry` in its Hugging Face form.
    func view(_ entry: Checkpoint.Entry) -> TensorView {
        let plan = plans[entry.locator]
        let stored = file.bytes(plan.info)
        let info = entry.info
        if plan.info.type.floatDType != nil && plan.permutedHeads == nil {
            return TensorView(info: info, owner: file.mapped, bytes: stored)
        }
        let decoded = OwnedBytes(count: info.byteCount)
        let target = UnsafeMutableRawBufferPointer(start: decoded.pointer, count: info.byteCount)
        withExtendedLifetime(file.mapped) {
            if let heads = plan.permutedHeads {
                let rowBytes = info.shape[1] * info.dtype.size
                if plan.info.type.floatDType != nil {
                    GGUFLlamaNames.permuteRows(stored, into: target, rows: info.shape[0], rowBytes: rowBytes, heads: heads, toGGUF: false)
                } else {
                    let values = plan.info.type.decode(stored, count: info.elementCount)
                    values.withUnsafeBytes {
                        GGUFLlamaNames.permuteRows($0, into: target, rows: info.shape[0], rowBytes: rowBytes, heads: heads, toGGUF: false)
                    }
                }
            } else {
                plan.info.type.decode(stored, into: target.bindMemory(to: Float.self))
            }
        }
        return TensorView(info: info, owner: decoded, bytes: UnsafeRawBufferPointer(target))
    }

    /// The rows of `entry` as stored, for the tensors `view` would copy: GGML blocks decoded a
    /// row at a time, Q/K rows read through the un-permutation; nil when the view is in place.
    func storedRows(_ entry: Checkpoint.Entry, rows: Int, columns: Int) -> StoredRows? {
        let plan = plans[entry.locator]
        let type = plan.info.type
        var storedRow: (@Sendable (Int) -> Int)? = nil
        if let heads = plan.permutedHeads {
            let headDim = rows / heads, half = headDim / 2
            storedRow = { r in
                let within = r % headDim
                return r - within + 2 * (within % half) + within / half
            }
        }
        if let dtype = type.floatDType {
            guard let storedRow else { return nil }
            let stored = file.bytes(plan.info)
            let shared = UncheckedSendable((file.mapped, stored))
            return StoredRows(rows: rows, columns: columns, storedBytes: stored.count) { first, count, out in
                let (owner, bytes) = shared.value
                withExtendedLifetime(owner) {
                    for r in first..<(first + count) {
                        let s = storedRow(r)
                        FloatValues.read(dtype: dtype, bytes.baseAddress!, range: (s * columns)..<((s + 1) * columns), into: out + (r - first) * columns)
                    }
                }
            }
        }
        guard columns % type.blockSize == 0 else { return nil }
        return .ggml(type, bytes: file.bytes(plan.info), owner: file.mapped, rows: rows, columns: columns, storedRow: storedRow)
    }

    /// Lets the mapped pages of `entry`'s blocks go.
    func releasePages(_ entry: Checkpoint.Entry) {
        file.releasePages(plans[entry.locator].info)
    }
}
