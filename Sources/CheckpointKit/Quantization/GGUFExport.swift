/// Hugging Face llama-family folder → GGUF v3, as llama.cpp's `convert_hf_to_gguf.py` lays it
/// out: `llama.*` hyperparameters, the vocabulary as `tokenizer.ggml.*` (GGUFTokenizerMetadata), tensors
/// renamed with Q/K rows permuted for llama.cpp's RoPE, norms in F32 and 2-D weights in the
/// requested type: F32/F16/BF16 as the converter writes them, and every quantized preset with
/// `llama-quantize`'s per-tensor choice (`GGUFTypePlan`) and bytes (`GGMLType.encode`), with an
/// importance matrix when given.
public enum GGUFExport {
    /// Failures exporting to GGUF: an architecture, output type or tokenizer ckpt cannot write.
    public enum Failure: Error, Equatable, Sendable, CustomStringConvertible {
        case unsupportedArchitecture(file: String, found: String)
        case unsupportedType(String)
        case tokenizer(file: String, reason: String)
        case unnamedPreTokenizer(file: String, probeHash: String)

        /// The one-line message: the file or option at fault and what was expected.
        public var description: String {
            switch self {
            case let .unsupportedArchitecture(file, found):
                return "\(file): architecture \(found) cannot be written as GGUF by ckpt (expected LlamaForCausalLM or MistralForCausalLM)"
            case let .unsupportedType(name): return "--type \(name): not a GGUF output type (expected one of \(GGUFPreset.names))"
            case let .tokenizer(file, reason): return "\(file): \(reason) (expected a byte-level or SentencePiece-style BPE tokenizer.json)"
            case let .unnamedPreTokenizer(file, hash):
                return "\(file): llama.cpp has no name for this pre-tokenizer (probe hash \(hash)), and under its default rules it would "
                    + "split text differently; no GGUF written (expected a tokenizer llama.cpp's convert_hf_to_gguf.py recognizes)"
            }
        }
    }

    struct Buffer {
        var bytes: [UInt8] = []
        mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
        mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
        mutating func f32(_ v: Float) { u32(v.bitPattern) }
        mutating func string(_ s: String) {
            u64(UInt64(s.utf8.count))
            bytes.append(contentsOf: s.utf8)
        }
    }

    enum Value {
        case u32(UInt32), i32(Int32), f32(Float), bool(Bool), string(String), strings([String]), i32s([Int32]), f32s([Float])
    }

    static func write(_ value: Value, into b: inout Buffer) {
        switch value {
        case .u32(let v): b.u32(4); b.u32(v)
        case .i32(let v): b.u32(5); b.u32(UInt32(bitPattern: v))
        case .f32(let v): b.u32(6); b.f32(v)
        case .bool(let v): b.u32(7); b.bytes.append(v ? 1 : 0)
        case .string(let v): b.u32(8); b.string(v)
        case .strings(let values):
            b.u32(9); b.u32(8); b.u64(UInt64(values.count))
            for v in values { b.string(v) }
        case .i32s(let values):
            b.u32(9); b.u32(5); b.u64(UInt64(values.count))
            for v in values { b.u32(UInt32(bitPattern: v)) }
        case .f32s(let values):
            b.u32(9); b.u32(6); b.u64(UInt64(values.count))
            for v in values { b.f32(v) }
        }
    }

    /// A GGUF v3 header: magic, version, counts, the metadata, the tensor infos (name, `ne`,
    /// type, data offset), padded to the 32-byte alignment where the data begins.
    static func headerBytes(_ kv: [(String, Value)], tensors: [(name: String, dims: [Int], type: GGMLType, offset: Int)]) -> [UInt8] {
        var header = Buffer()
        header.u32(GGUFFile.magic)
        header.u32(3)
        header.u64(UInt64(tensors.count))
        header.u64(UInt64(kv.count))
        for (key, value) in kv {
            header.string(key)
            write(value, into: &header)
        }
        for t in tensors {
            header.string(t.name)
            header.u32(UInt32(t.dims.count))
            for d in t.dims { header.u64(UInt64(d)) }
            header.u32(t.type.rawValue)
            header.u64(UInt64(t.offset))
        }
        while header.bytes.count % 32 != 0 { header.bytes.append(0) }
        return header.bytes
    }

    /// The preset a `--type` name means (llama-quantize's names, any case); nil for anything else.
    public static func outputType(_ name: String) -> GGUFPreset? { GGUFPreset(name: name) }

    /// What a GGUF export may be asked besides its preset.
    public struct Options: Sendable {
        /// llama-quantize's options that change the per-tensor choice.
        public var plan = GGUFTypePlan.Options()
        /// Importance weights (an imatrix), by GGUF tensor name.
        public var importance: ImportanceMatrix? = nil
        /// Threads for quantization.
        public var threads: ThreadBudget = .allCores
        /// Replace an existing output.
        public var overwrite = false

        /// The defaults: no overrides, no imatrix, all cores, no overwrite.
        public init() {}
    }

    /// Writes a llama or mistral `checkpoint` to the single GGUF file `output`, atomically, every
    /// 2-D weight in `type` (F32, F16, BF16, Q8_0, Q4_0) without llama-quantize's rules.
    public static func convert(_ checkpoint: Checkpoint, to output: String, type: GGMLType, overwrite: Bool,
                               threads: ThreadBudget = .allCores) throws -> ConversionReport {
        guard let preset = GGUFPreset.allCases.first(where: { $0.defaultType == type }) else { throw Failure.unsupportedType(type.name) }
        var options = Options()
        options.plan.pure = true
        options.threads = threads
        options.overwrite = overwrite
        return try convert(checkpoint, to: output, preset: preset, options: options)
    }

    /// Writes a llama or mistral `checkpoint` to the single GGUF file `output`, atomically, each
    /// tensor in the type `llama-quantize` gives it under `preset`.
    public static func convert(_ checkpoint: Checkpoint, to output: String, preset: GGUFPreset, options: Options) throws -> ConversionReport {
        let threads = options.threads, overwrite = options.overwrite
        try FileSystem.refuseOverlap(output: output, inputs: [checkpoint.path])
        let clock = Stopwatch()
        guard let json = checkpoint.config else { throw ModelError.missingConfig(path: checkpoint.path) }
        let configPath = checkpoint.configSource
        let config = try TransformerConfig(parsing: json, file: configPath)
        guard config.family == .llama || config.family == .mistral else {
            throw Failure.unsupportedArchitecture(file: configPath, found: config.family.rawValue)
        }
        // Scaled or partial RoPE needs llama.cpp's rope_freqs / scaling keys, which this writer does not emit yet.
        if let rope = config.rope, rope.scaling != .none || rope.rotaryDimensions != config.headDim {
            throw ModelError.badConfig(file: configPath, key: "rope_parameters",
                                       reason: "scaled or partial RoPE cannot be written as GGUF by ckpt yet (expected rope_type default)")
        }
        let logical = try LogicalCheckpoint(checkpoint)
        // The vocabulary sizes the token list written below: it must be the embedding's rows, which exist.
        if let embedding = logical.tensors.first(where: { $0.name == "model.embed_tokens.weight" }), embedding.shape.first != config.vocabularySize {
            throw ModelError.badConfig(file: configPath, key: "vocab_size",
                                       reason: "\(config.vocabularySize) differs from the embedding's \(embedding.shape.first ?? 0) rows")
        }

        // Metadata, in the order llama.cpp's converter writes it.
        var kv: [(String, Value)] = [
            ("general.architecture", .string("llama")), ("general.type", .string("model")),
            ("general.name", .string(FileSystem.split(checkpoint.path).name)),
            ("llama.context_length", .u32(UInt32(config.maxPositions))), ("llama.embedding_length", .u32(UInt32(config.hiddenSize))),
            ("llama.block_count", .u32(UInt32(config.layers))), ("llama.feed_forward_length", .u32(UInt32(config.intermediateSize))),
            ("llama.attention.head_count", .u32(UInt32(config.heads))), ("llama.attention.head_count_kv", .u32(UInt32(config.kvHeads))),
            ("llama.rope.freq_base", .f32(Float(config.ropeTheta))),
            ("llama.attention.layer_norm_rms_epsilon", .f32(config.normEpsilon)),
            ("llama.attention.key_length", .u32(UInt32(config.headDim))), ("llama.attention.value_length", .u32(UInt32(config.headDim))),
            ("general.file_type", .u32(preset.fileType)),
            ("llama.vocab_size", .u32(UInt32(config.vocabularySize))),
            ("llama.rope.dimension_count", .u32(UInt32(config.headDim))),
            ("general.quantization_version", .u32(2)),
        ]
        if let (tokenizer, special, file) = try checkpoint.tokenizerDocuments() {
            // A GGUF input already carries llama.cpp's name for its pre-tokenizer: keep it.
            var sourcePre: String? = nil
            for case .gguf(let source) in checkpoint.containers {
                if case .string(let pre)? = source.file.value("tokenizer.ggml.pre") { sourcePre = pre }
            }
            kv += try tokenizerMetadata(tokenizer, special: special, chatTemplate: nil, file: file, vocabulary: config.vocabularySize,
                                        preTokenizer: sourcePre)
        } else if let directory = checkpoint.directory, FileSystem.isRegularFile(FileSystem.join(directory, "tokenizer.json")) {
            let path = FileSystem.join(directory, "tokenizer.json")
            let json = try Checkpoint.readJSONObject(path, maximumBytes: 512 << 20)  // the tokenizer loader's bound
            let special = try? Checkpoint.readJSONObject(FileSystem.join(directory, "tokenizer_config.json"))
            // transformers ≥ 4.47 keeps the chat template in chat_template.jinja beside the tokenizer.
            let jinja = FileSystem.join(directory, "chat_template.jinja")
            let template = FileSystem.isRegularFile(jinja) ? (try? FileSystem.readFile(jinja)).map { String(decoding: $0, as: UTF8.self) } : nil
            kv += try tokenizerMetadata(json, special: special, chatTemplate: template, file: path, vocabulary: config.vocabularySize)
        }

        // Tensors: norms (1-D) stay F32; 2-D weights take the plan's type, in llama.cpp's order.
        struct Planned { var name: String; var source: LogicalTensor; var type: GGMLType; var dims: [Int]; var offset: Int; var bytes: Int }
        var named: [(gguf: String, tensor: LogicalTensor)] = []
        for tensor in logical.tensors {
            guard let name = GGUFLlamaNames.ggufName(tensor.name) else { continue }
            named.append((name, tensor))
        }
        named.sort { GGUFTypePlan.llamaOrder($0.gguf, $1.gguf) }
        // What the converter would have written, as llama-quantize's input: 1-D in F32, the rest in the preset's float type.
        func inputType(_ tensor: LogicalTensor) -> GGMLType {
            tensor.shape.count == 1 ? .f32 : (preset.isQuantized ? (tensor.dtype == .f16 ? .f16 : tensor.dtype == .f32 ? .f32 : .bf16) : preset.defaultType)
        }
        let planTensors = named.map { GGUFTypePlan.Tensor(name: $0.gguf, dims: Array($0.tensor.shape.reversed()), inputType: inputType($0.tensor)) }
        let model = GGUFTypePlan.Model(architecture: "llama", layers: config.layers, heads: config.heads, kvHeads: config.kvHeads, experts: 0)
        var planOptions = options.plan
        planOptions.hasImportance = options.importance != nil
        let choices = try GGUFTypePlan.plan(planTensors, model: model, preset: preset, options: planOptions)
        if let importance = options.importance {
            try importance.check(against: planTensors.map { ($0.name, $0.dims) })
        }
        var planned: [Planned] = []
        var offset = 0
        for (name, tensor) in named {
            var t = choices[name]!.type
            // F16/BF16/F32 outputs: a row its blocks cannot hold stays F16, as the converter does.
            if !preset.isQuantized && tensor.shape.count == 2 && tensor.shape[1] % t.blockSize != 0 { t = .f16 }
            let dims = Array(tensor.shape.reversed())
            let bytes = t.byteCount(elements: tensor.elementCount)
            planned.append(Planned(name: name, source: tensor, type: t, dims: dims, offset: offset, bytes: bytes))
            offset = (offset + bytes + 31) / 32 * 32
        }
        let fallbacks = named.compactMap { entry in choices[entry.gguf]!.fallback.map { (entry.gguf, $0) } }
        let header = headerBytes(kv, tensors: planned.map { ($0.name, $0.dims, $0.type, $0.offset) })

        let atomic = try AtomicOutput(target: output, isDirectory: false, overwrite: overwrite)
        try atomic.translatingErrors {
            let out = try OutputFile(creating: atomic.temporary)
            try out.write(header)
            for (k, p) in planned.enumerated() {
                var values = logical.float32(p.source, threads: threads)
                if p.name.hasSuffix("attn_q.weight") {
                    values = GGUFLlamaNames.permuteRows(values, rows: p.source.shape[0], columns: p.source.shape[1], heads: config.heads, toGGUF: true)
                } else if p.name.hasSuffix("attn_k.weight") {
                    values = GGUFLlamaNames.permuteRows(values, rows: p.source.shape[0], columns: p.source.shape[1], heads: config.kvHeads, toGGUF: true)
                }
                // A block type cannot hold NaN or Inf (llama-quantize fails its row validation there): refuse, naming the value.
                if p.type.floatDType == nil, let bad = values.firstIndex(where: { !$0.isFinite }) {
                    throw QuantizationError.nonFinite(file: checkpoint.path, tensor: p.source.name, index: bad, value: "\(values[bad])")
                }
                let rowLength = p.dims[0]
                let weights = options.importance?.weights(for: p.name)
                let encoded = try values.withUnsafeBufferPointer { x in
                    guard let bytes = p.type.encode(x, rowLength: rowLength, importance: weights, threads: threads) else {
                        throw Failure.unsupportedType(p.type.name)
                    }
                    return bytes
                }
                try out.write(encoded)
                // Reported once written, as the safetensors writer reports each tensor.
                WorkProgress.report("writing", done: k + 1, total: planned.count, item: p.name)
                let padding = (p.bytes + 31) / 32 * 32 - p.bytes
                if padding > 0 && p.name != planned.last!.name { try out.write([UInt8](repeating: 0, count: padding)) }
            }
            try out.finish()
            try atomic.commit()
        }
        let rows = planned.map {
            ConversionReport.Tensor(name: $0.name, shape: $0.source.shape, fromType: $0.source.dtype, toType: $0.type.floatDType ?? .f32,
                                    bytesIn: $0.source.elementCount * $0.source.dtype.size, bytesOut: $0.bytes, storedType: $0.type.name)
        }
        var report = ConversionReport(output: output, files: [output], tensors: rows, copiedFiles: [], seconds: clock.seconds)
        report.notes = fallbacks.map { "\($0.0): \($0.1)" }
        return report
    }
}
