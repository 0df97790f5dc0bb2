/// Failures seeing a GGUF file as a Hugging Face checkpoint.
public enum GGUFSourceError: Error, Equatable, Sendable, CustomStringConvertible {
    case unsupportedArchitecture(file: String, found: String)
    case missingKey(file: String, key: String)
    case badKey(file: String, key: String, expected: String, found: String)
    case unsupportedTokenizer(file: String, model: String)
    case unmappedTensor(file: String, tensor: String)
    case badTensorShape(file: String, tensor: String, expected: String, found: [Int])

    public var description: String {
        switch self {
        case let .unsupportedArchitecture(file, found):
            return "\(file): GGUF architecture '\(found)' is not supported (expected \(GGUFSource.architectures.joined(separator: ", ")))"
        case let .missingKey(file, key):
            return "\(file): metadata '\(key)' is missing (expected it in a llama GGUF)"
        case let .badKey(file, key, expected, found):
            return "\(file): metadata '\(key)' is \(found) (expected \(expected))"
        case let .unsupportedTokenizer(file, model):
            return "\(file): tokenizer.ggml.model '\(model)' is not supported (expected gpt2 or llama)"
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
            if let tokenStrings = tokens?.compactMap(\.stringValue), !tokenStrings.isEmpty {
                let (tokenizer, tokenizerConfig) = try legacyTokenizerFiles(gguf, tokens: tokenStrings)
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

    /// Lets the mapped pages of `entry`'s blocks go.
    func releasePages(_ entry: Checkpoint.Entry) {
        let info = plans[entry.locator].info
        file.mapped.adviseDone((file.dataStart + info.offset)..<(file.dataStart + info.offset + info.byteCount))
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
    static func legacyTokenizerFiles(_ gguf: GGUFFile, tokens: [String]) throws -> (JSONValue, JSONValue) {
        let model = gguf.value("tokenizer.ggml.model")?.stringValue ?? "none"
        guard model == "gpt2" else { throw GGUFSourceError.unsupportedTokenizer(file: gguf.path, model: model) }
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
