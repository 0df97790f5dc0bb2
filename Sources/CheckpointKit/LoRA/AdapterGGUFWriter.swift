/// Why an adapter cannot be written as a llama.cpp LoRA GGUF.
public enum AdapterGGUFError: Error, Equatable, Sendable, CustomStringConvertible {
    case unsupportedArchitecture(file: String, found: String)
    case unsupportedType(String)
    case notExpressible(file: String, key: String, reason: String)
    case unmappedModule(file: String, key: String, tensor: String, architecture: String)

    /// The one-line message: the file and key at fault, and what was expected.
    public var description: String {
        switch self {
        case let .unsupportedArchitecture(file, found):
            return "\(file): architecture \(found) has no LoRA mapping in GGUF (expected one ckpt writes as GGUF: llama, mistral, mixtral, "
                + "qwen2, qwen3, qwen3moe, gemma2, gemma3, phi3, olmo2, gpt2)"
        case let .unsupportedType(name): return "--type \(name): not a LoRA GGUF type (expected f32, f16, bf16 or q8_0)"
        case let .notExpressible(file, key, reason):
            return "\(faultLocation(file, tensor: key)): \(reason) (expected lora_A/lora_B pairs only: a llama.cpp LoRA GGUF holds nothing else)"
        case let .unmappedModule(file, key, tensor, architecture):
            return "\(faultLocation(file, tensor: key)): base tensor \(tensor) has no GGUF name in the \(architecture) layout (expected a tensor llama.cpp loads)"
        }
    }
}

/// A PEFT adapter as the LoRA GGUF llama.cpp applies at run time (`--lora`), laid out as
/// `convert_lora_to_gguf.py` writes it: `general.type = adapter`, `adapter.type = lora`,
/// `adapter.lora.alpha`, and per adapted weight `<gguf name>.lora_a` (A, `[r, in]`) and
/// `.lora_b` (B, `[out, r]`), B's rows permuted as the base's (llama's Q and K), the token
/// embedding's A transposed to `[vocab, r]`.
///
/// llama.cpp scales each pair by alpha / r with one alpha for the file. Where the adapter's own
/// scaling differs (rsLoRA, `alpha_pattern`, `rank_pattern`), the ratio is folded into B, so the
/// file applies exactly what PEFT merges; `convert_lora_to_gguf.py` writes such adapters with
/// the plain alpha and so scales them wrongly.
public enum AdapterGGUFWriter {
    /// What was written: per pair the GGUF names, rank and whether B carries a folded scale.
    public struct Report: Sendable {
        /// One adapted weight.
        public struct Pair: Sendable {
            /// The GGUF weight the pair applies to (`blk.0.attn_q.weight`).
            public var tensor: String
            /// The pair's rank.
            public var rank: Int
            /// PEFT's scaling for the module (alpha/r, alpha/√r with rsLoRA, after patterns).
            public var scaling: Double
            /// The factor folded into B so that alpha / r gives that scaling (1 when none is needed).
            public var foldedIntoB: Double
            /// The GGML type written for A and for B.
            public var types: (a: String, b: String)
        }
        /// The GGUF written.
        public var output: String
        /// The GGUF architecture name.
        public var architecture: String
        /// `adapter.lora.alpha` as written.
        public var alpha: Double
        /// The pairs, in the order written.
        public var pairs: [Pair]
        /// Wall-clock seconds.
        public var seconds: Double
    }

    /// The GGML type a `--type` name means for a LoRA GGUF (`convert_lora_to_gguf.py --outtype`).
    public static func outputType(_ name: String) -> GGMLType? {
        switch name.lowercased() {
        case "f32": return .f32
        case "f16": return .f16
        case "bf16": return .bf16
        case "q8_0": return .q8_0
        default: return nil
        }
    }

    /// Writes `adapter` (planned against `base`, whose config names the architecture) to the GGUF
    /// `output`, atomically, every tensor in `type` (Q8_0 falls back to F16 for a row length that
    /// is not a multiple of 32, as the converter does).
    public static func write(_ adapter: LoRAAdapter, base: Checkpoint, to output: String, type: GGMLType, overwrite: Bool,
                             threads: ThreadBudget = .allCores) throws -> Report {
        guard [.f32, .f16, .bf16, .q8_0].contains(type) else { throw AdapterGGUFError.unsupportedType(type.name) }
        try FileSystem.refuseOverlap(output: output, inputs: [base.path, adapter.folder])
        let clock = Stopwatch()
        guard let json = base.config else { throw ModelError.missingConfig(path: base.path) }
        let config = try TransformerConfig(parsing: json, file: base.configSource)
        guard let architecture = GGUFArchitecture.of(config.family) else {
            throw AdapterGGUFError.unsupportedArchitecture(file: base.configSource, found: config.family.rawValue)
        }
        // Planning checks every key against the base: shapes, ranks, finite values, nothing unused.
        let plan = try LoRAPlanner.plan(base: try LogicalCheckpoint(base), adapters: [(adapter, 1)])
        let file = adapter.weightsPath
        if let (key, _) = adapter.replacements.first.map({ ($0.key, $0.view) }) {
            throw AdapterGGUFError.notExpressible(file: file, key: key, reason: "modules_to_save stores a whole tensor")
        }
        if let rows = adapter.tokenRows.first {
            throw AdapterGGUFError.notExpressible(file: file, key: rows.key, reason: "trained token rows (trainable_token_indices)")
        }
        if let (head, _) = plan.untieHead {
            throw AdapterGGUFError.notExpressible(file: file, key: head, reason: "the base ties lm_head to the embedding, so llama.cpp has no output tensor to adapt")
        }
        let alpha = adapter.config.alpha
        var pairs: [Report.Pair] = []
        var tensors: [(name: String, dims: [Int], type: GGMLType, values: [Float])] = []
        for name in plan.order {
            let change = plan.changes[name]!
            if let addition = change.biasAdditions.first {
                throw AdapterGGUFError.notExpressible(file: file, key: addition.key, reason: "a LoRA bias (lora_B.bias)")
            }
            for c in change.contributions {
                let key = c.keys.first ?? c.module
                if c.magnitude != nil { throw AdapterGGUFError.notExpressible(file: file, key: key, reason: "DoRA's magnitude vector") }
                guard case .tensor(let ggufName)? = architecture.mapping(of: name) else {
                    throw AdapterGGUFError.unmappedModule(file: file, key: key, tensor: name, architecture: architecture.name)
                }
                let rank = c.rank
                var a = FloatValues.array(c.a), b = FloatValues.array(c.b)
                let inner = c.a.info.shape[1], outer = c.b.info.shape[0]
                // llama.cpp multiplies by alpha / r: what PEFT's scaling needs beyond that goes into B.
                let fold = alpha == 0 ? c.scaling : c.scaling * Double(rank) / alpha
                if fold != 1 { b = b.map { Float(Double($0) * fold) } }
                if let heads = architecture.permutedHeads(ggufName, config: config) {
                    b = GGUFLlamaNames.permuteRows(b, rows: outer, columns: rank, heads: heads, toGGUF: true)
                }
                var aDims = [inner, rank]
                if case .embedding = c.operation {
                    // llm_build_inp_embd gathers rows of A by token: A is stored [vocab, r].
                    a = PackedIntegerRows.transposed(a, rows: rank, columns: inner)
                    aDims = [rank, inner]
                }
                let aType = storedType(type, rowLength: aDims[0]), bType = storedType(type, rowLength: rank)
                tensors.append((ggufName + ".lora_a", aDims, aType, a))
                tensors.append((ggufName + ".lora_b", [rank, outer], bType, b))
                pairs.append(.init(tensor: ggufName, rank: rank, scaling: c.scaling, foldedIntoB: fold, types: (aType.name, bType.name)))
            }
        }
        let fileType = GGUFPreset.allCases.first { $0.defaultType == type }!.fileType
        let kv: [(String, GGUFExport.Value)] = [
            ("general.architecture", .string(architecture.name)), ("general.type", .string("adapter")),
            ("general.name", .string(FileSystem.split(adapter.folder).name)), ("adapter.type", .string("lora")),
            ("adapter.lora.alpha", .f32(Float(alpha))), ("general.file_type", .u32(fileType)), ("general.quantization_version", .u32(2)),
        ]
        try GGUFExport.writeFile(output, overwrite: overwrite, kv: kv, tensors: tensors.map { ($0.name, $0.dims, $0.type) }) { k in
            try GGUFExport.encode(tensors[k].values, as: tensors[k].type, dims: tensors[k].dims, importance: nil, threads: threads)
        }
        return Report(output: output, architecture: architecture.name, alpha: alpha, pairs: pairs, seconds: clock.seconds)
    }

    /// Q8_0 needs rows of whole 32-value blocks; gguf-py's quantizer refuses others and the converter writes F16.
    static func storedType(_ type: GGMLType, rowLength: Int) -> GGMLType {
        type == .q8_0 && rowLength % 32 != 0 ? .f16 : type
    }
}
