import Dispatch
import Synchronization

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
        case unmappedTensor(file: String, tensor: String, architecture: String)
        case duplicateTensor(file: String, tensor: String)

        /// The one-line message: the file or option at fault and what was expected.
        public var description: String {
            switch self {
            case let .unsupportedArchitecture(file, found):
                return "\(file): architecture \(found) cannot be written as GGUF by ckpt (expected one llama.cpp runs: llama, mistral, "
                    + "mixtral, qwen2, qwen3, qwen3moe, gemma2, gemma3, phi3, olmo2, gpt2)"
            case let .unmappedTensor(file, tensor, architecture):
                return "\(faultLocation(file, tensor: tensor)): no GGUF name for it in the \(architecture) layout "
                    + "(expected a tensor convert_hf_to_gguf.py maps; it refuses this file too)"
            case let .duplicateTensor(file, tensor):
                return "\(file): two tensors map to the GGUF name \(tensor) (expected one)"
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

    enum Value: Sendable {
        case u32(UInt32), i32(Int32), f32(Float), bool(Bool), string(String), strings([String]), i32s([Int32]), f32s([Float]), bools([Bool]), stored(GGUFValue)
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
        case .bools(let values):
            b.u32(9); b.u32(7); b.u64(UInt64(values.count))
            b.bytes += values.map { $0 ? 1 : 0 }
        case .stored(let value): writeStored(value, into: &b, withType: true)
        }
    }

    /// The data alignment ckpt writes (GGUF's default; no `general.alignment` key).
    static let alignment = 32

    /// `n` rounded up to the data alignment: where the next tensor's data starts.
    static func aligned(_ n: Int) -> Int { (n + alignment - 1) / alignment * alignment }

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
        header.bytes += [UInt8](repeating: 0, count: aligned(header.bytes.count) - header.bytes.count)
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
        /// A plain matrix whose f32 copy passes this many bytes is read and encoded a piece of rows
        /// of about this size at a time (the same bytes; tests make it small to cross pieces).
        public var pieceBytes = 4 << 20

        /// The defaults: no overrides, no imatrix, all cores, no overwrite.
        public init() {}
    }

    /// Writes `checkpoint` to the single GGUF file `output`, atomically, every
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

    /// Writes `checkpoint` (any family `GGUFArchitecture` describes) to the single GGUF file
    /// `output`, atomically: names, values and hyperparameters as `convert_hf_to_gguf.py` writes
    /// them, each tensor in the type `llama-quantize` gives it under `preset`.
    public static func convert(_ checkpoint: Checkpoint, to output: String, preset: GGUFPreset, options: Options) throws -> ConversionReport {
        let threads = options.threads, overwrite = options.overwrite
        try FileSystem.refuseOverlap(output: output, inputs: [checkpoint.path])
        let clock = Stopwatch()
        guard let json = checkpoint.config else { throw ModelError.missingConfig(path: checkpoint.path) }
        let configPath = checkpoint.configSource
        let config = try TransformerConfig(parsing: json, file: configPath)
        guard let architecture = GGUFArchitecture.of(config.family) else {
            throw Failure.unsupportedArchitecture(file: configPath, found: config.family.rawValue)
        }
        let logical = try LogicalCheckpoint(checkpoint)
        // The vocabulary sizes the token list written below: it must be the embedding's rows, which exist.
        let embeddingName = logical.tensors.first { architecture.mapping(of: $0.name) == .tensor("token_embd.weight") }
        if let embedding = embeddingName, embedding.shape.first != config.vocabularySize {
            throw ModelError.badConfig(file: configPath, key: "vocab_size",
                                       reason: "\(config.vocabularySize) differs from the embedding's \(embedding.shape.first ?? 0) rows")
        }

        // Metadata: general.*, the family's hyperparameters, then the tokenizer.
        var parameters = GGUFParameters(config: json, file: configPath, architecture: architecture.name, fileType: preset.fileType,
                                        family: config.family)
        try architecture.parameters(&parameters)
        var kv: [(String, Value)] = [
            ("general.architecture", .string(architecture.name)), ("general.type", .string("model")),
            ("general.name", .string(FileSystem.split(checkpoint.path).name)),
        ]
        kv += parameters.keyValues
        kv.append(("general.quantization_version", .u32(2)))
        var tokenizerJSON: JSONValue? = nil
        // The tokenizer's metadata (naming the pre-tokenizer runs the tokenizer on llama.cpp's probe
        // text) is made on a second thread while the first tensors are encoded; the header waits for it.
        var tokenizerWork: @Sendable () throws -> [(String, Value)] = { [] }
        if let (tokenizer, special, file) = try checkpoint.tokenizerDocuments() {
            // A GGUF input already carries llama.cpp's name for its pre-tokenizer: keep it.
            var sourcePre: String? = nil
            for case .gguf(let source) in checkpoint.containers {
                if case .string(let pre)? = source.file.value("tokenizer.ggml.pre") { sourcePre = pre }
            }
            let vocabulary = config.vocabularySize, pre = sourcePre
            tokenizerWork = { try tokenizerMetadata(tokenizer, special: special, chatTemplate: nil, file: file, vocabulary: vocabulary, preTokenizer: pre) }
        } else if let directory = checkpoint.directory, FileSystem.isRegularFile(FileSystem.join(directory, "tokenizer.json")) {
            let path = FileSystem.join(directory, "tokenizer.json")
            // Only Gemma 3's tensors depend on the tokenizer (its embedding is cut to it): read it here
            // for that one, else on the background thread with the rest.
            // (Not a ternary: JSONValue takes a nil literal as .null, which would make it Optional(.null).)
            var early: JSONValue? = nil
            if architecture.cutsEmbeddingToTokenizer { early = try Checkpoint.readJSONObject(path, maximumBytes: 512 << 20) }
            tokenizerJSON = early
            let vocabulary = config.vocabularySize
            tokenizerWork = { [early] in
                let json: JSONValue
                if let early { json = early } else { json = try Checkpoint.readJSONObject(path, maximumBytes: 512 << 20) }  // the loader's bound
                let special = try? Checkpoint.readJSONObject(FileSystem.join(directory, "tokenizer_config.json"))
                // transformers ≥ 4.47 keeps the chat template in chat_template.jinja beside the tokenizer.
                let jinja = FileSystem.join(directory, "chat_template.jinja")
                let template = FileSystem.isRegularFile(jinja) ? (try? FileSystem.readFile(jinja)).map { String(decoding: $0, as: UTF8.self) } : nil
                return try tokenizerMetadata(json, special: special, chatTemplate: template, file: path, vocabulary: vocabulary)
            }
        }
        let tokenizerJob = BackgroundJob(tokenizerWork)

        // Tensors, as the converter maps and changes them.
        var items = try exportItems(logical, architecture: architecture, config: config, parameters: parameters, file: checkpoint.path,
                                    tokenizer: tokenizerJSON)
        items.sort { GGUFTypePlan.llamaOrder($0.name, $1.name) }
        // What the converter would have written, as llama-quantize's input: F32 where it always
        // writes F32, the rest in the preset's float type (or the source's, under a quantized preset).
        func inputType(_ item: ExportItem) -> GGMLType {
            if item.staysFloat32 { return .f32 }
            guard preset.isQuantized else { return preset.defaultType }
            return item.dtype == .f16 ? .f16 : item.dtype == .f32 ? .f32 : .bf16
        }
        let planTensors = items.map { GGUFTypePlan.Tensor(name: $0.name, dims: Array($0.shape.reversed()), inputType: inputType($0)) }
        let model = GGUFTypePlan.Model(architecture: architecture.name, layers: config.layers, heads: config.heads, kvHeads: config.kvHeads,
                                       experts: config.experts?.count ?? 0)
        var planOptions = options.plan
        planOptions.hasImportance = options.importance != nil
        let choices = try GGUFTypePlan.plan(planTensors, model: model, preset: preset, options: planOptions)
        if let importance = options.importance {
            try importance.check(against: planTensors.map { ($0.name, $0.dims) })
        }
        struct Planned { var item: ExportItem; var type: GGMLType; var dims: [Int]; var offset: Int; var bytes: Int }
        var planned: [Planned] = []
        var offset = 0
        for item in items {
            let type = choices[item.name]!.type
            let bytes = type.byteCount(elements: item.elementCount)
            planned.append(Planned(item: item, type: type, dims: Array(item.shape.reversed()), offset: offset, bytes: bytes))
            offset = aligned(offset + bytes)
        }
        let fallbacks = items.compactMap { item in choices[item.name]!.fallback.map { (item.name, $0) } }
        let tensorInfos = planned.map { ($0.item.name, $0.dims, $0.type, $0.offset) }

        let atomic = try AtomicOutput(target: output, isDirectory: false, overwrite: overwrite)
        try atomic.translatingErrors {
            // Written by a background thread while the next tensor is encoded.
            let out = try BackgroundAppendFile(creating: atomic.temporary)
            // Tensors encoded before the tokenizer's metadata is ready wait in memory, up to 16 MB, so
            // the encoder works on while the tokenizer is parsed and probed (~70 ms for SmolLM2's).
            // Since matrices are encoded chunk by chunk with no f32 copy (49.0 MiB peak with 2 MB
            // held), 16 MB puts SmolLM2 → Q8_0 at 62.4 MiB against ⅓ of llama-quantize's 209 (69.7),
            // and took 0.86–0.99× the wall of 2 MB in paired runs (Q4_0, Q8_0).
            let writer = HeaderFirstWriter(out, limit: 16 << 20, isReady: { tokenizerJob.isDone }) {
                headerBytes(kv + (try tokenizerJob.value()), tensors: tensorInfos)
            }
            // The next tensor is read, widened and checked on a second thread while this one is
            // encoded: the encoder's threads never wait for a tensor's serial preparation.
            let path = checkpoint.path, pieceBytes = options.pieceBytes
            @Sendable func prepare(_ p: Planned) -> Result<[Float], Error> {
                // A plain matrix is read and encoded a piece of rows at a time below, not held whole.
                if p.item.rowsPerPiece(pieceBytes: pieceBytes) != nil { return .success([]) }
                let values = p.item.values(logical, threads: .single)
                if let refusal = blockRefusal(values, type: p.type, file: path, tensor: p.item.sourceName) { return .failure(refusal) }
                return .success(values)
            }
            let ahead = PreparedAhead(planned.map { p in { prepare(p) } })
            for (k, p) in planned.enumerated() {
                let values = try ahead.take(k).get()
                let importance = options.importance?.weights(for: p.item.name)
                if let rows = p.item.rowsPerPiece(pieceBytes: pieceBytes) {
                    // Each row's bytes depend on that row alone (and the imatrix's one row of weights): the same bytes as whole.
                    try p.item.encodePieces(logical, rows: rows, as: p.type, importance: importance, file: path, threads: threads) {
                        try writer.write($0)
                    }
                } else {
                    try writer.write(try encode(values, as: p.type, dims: p.dims, importance: importance, threads: threads))
                }
                // Reported once encoded, as the safetensors writer reports each tensor.
                WorkProgress.report("writing", done: k + 1, total: planned.count, item: p.item.name)
                let padding = aligned(p.bytes) - p.bytes
                if padding > 0 && k != planned.count - 1 { try writer.write([UInt8](repeating: 0, count: padding)) }
            }
            try writer.write([])
            try out.finish()
            try atomic.commit()
        }
        let rows = planned.map {
            ConversionReport.Tensor(name: $0.item.name, shape: $0.item.shape, fromType: $0.item.dtype, toType: $0.type.floatDType ?? .f32,
                                    bytesIn: $0.item.elementCount * $0.item.dtype.size, bytesOut: $0.bytes, storedType: $0.type.name)
        }
        var report = ConversionReport(output: output, files: [output], tensors: rows, copiedFiles: [], seconds: clock.seconds)
        report.notes = fallbacks.map { "\($0.0): \($0.1)" }
        if let type = (parameters.rope["full_attention"] ?? parameters.rope)["rope_type"]?.stringValue, type.lowercased() == "dynamic" {
            report.notes.append("rope_type dynamic: GGUF has no key for it, so llama.cpp runs this model without the scaling (as convert_hf_to_gguf.py writes it)")
        }
        return report
    }

    /// A file whose header is known only later than its first data: data written before the header
    /// is ready waits in memory (up to `limit` bytes, after which the writer waits for the header).
    final class HeaderFirstWriter {
        private let out: BackgroundAppendFile
        private let limit: Int
        private let isReady: () -> Bool
        private let header: () throws -> [UInt8]
        private var buffered: [[UInt8]] = []
        private var bufferedBytes = 0
        private var headerWritten = false

        init(_ out: BackgroundAppendFile, limit: Int, isReady: @escaping () -> Bool, header: @escaping () throws -> [UInt8]) {
            self.out = out; self.limit = limit; self.isReady = isReady; self.header = header
        }

        /// Appends `bytes` after everything written so far (an empty write forces the header out).
        func write(_ bytes: [UInt8]) throws {
            if !headerWritten {
                if !bytes.isEmpty && !isReady() && bufferedBytes + bytes.count <= limit {
                    buffered.append(bytes)
                    bufferedBytes += bytes.count
                    return
                }
                try out.append(try header())
                for b in buffered { try out.append(b) }
                buffered = []
                headerWritten = true
            }
            if !bytes.isEmpty { try out.append(bytes) }
        }
    }

    /// One piece of work started on a background thread at once; `value()` waits for its result.
    final class BackgroundJob<Value>: @unchecked Sendable {
        /// Where the work leaves its result. The work holds the box, not the job, so the job's
        /// owner alone keeps it alive and dropping it waits for the work (an early exit must not
        /// return while a thread still reads the input's mapped pages).
        private final class Box: @unchecked Sendable { var result: Result<Value, Error>? }
        private let group = DispatchGroup()
        private let box = Box()

        init(_ work: @escaping @Sendable () throws -> Value) {
            let box = self.box
            DispatchQueue.global().async(group: group) { box.result = Result { try work() } }
        }

        /// Whether the work has finished.
        var isDone: Bool { group.wait(timeout: .now()) == .success }

        /// The work's result, or its error, once it has finished.
        func value() throws -> Value {
            group.wait()
            return try box.result!.get()
        }

        deinit { group.wait() }
    }

    /// Work items computed one ahead on a background thread: `take(k)` returns item k (waiting for
    /// it if needed) and starts item k + 1, so at most two results are held at once.
    final class PreparedAhead<Value>: @unchecked Sendable {
        private let work: [@Sendable () -> Value]
        private var next: (index: Int, job: BackgroundJob<Value>)?

        init(_ work: [@Sendable () -> Value]) { self.work = work }

        func take(_ k: Int) -> Value {
            let value: Value
            if let next, next.index == k {
                value = try! next.job.value()  // the work does not throw
            } else {
                value = work[k]()
            }
            // A job left running by an early exit is waited for by its deinit.
            next = k + 1 < work.count ? (k + 1, BackgroundJob(work[k + 1])) : nil
            return value
        }
    }

    /// One GGUF tensor to write: where its values come from and what the converter does to them.
    struct ExportItem {
        /// The GGUF name.
        var name: String
        /// The row-major shape as written (GGUF `ne` reversed).
        var shape: [Int]
        /// The source tensors: one, or each expert's in order.
        var parts: [LogicalTensor]
        /// Values the converter computes (RoPE factors) instead of reading.
        var generated: [Float]? = nil
        /// Heads over which rows are permuted (llama's Q and K).
        var permutedHeads: Int? = nil
        /// Added to every value (Gemma norms).
        var shift: Float = 0
        /// Whether the stored `[in, out]` matrix is transposed (GPT-2).
        var transposed = false
        /// Rows kept from the top (Gemma 3's embedding cut to the tokenizer).
        var keptRows: Int? = nil

        /// The source's float dtype (F32 for generated values).
        var dtype: DType { parts.first?.dtype ?? .f32 }
        /// The name errors point at: the source tensor's.
        var sourceName: String { parts.first?.name ?? name }
        var elementCount: Int { shape.reduce(1, *) }
        /// Whether the converter writes it in F32 whatever the output type: 1-D, norms, the MoE
        /// router, position embeddings, biases, computed factors.
        var staysFloat32: Bool {
            shape.count <= 1 || name.hasSuffix("_norm.weight") || name.contains("ffn_gate_inp.") || name.hasPrefix("position_embd.")
                || name.hasPrefix("token_types.") || !name.hasSuffix(".weight") || generated != nil
        }

        /// Rows per piece when this is a plain 2-D matrix that the converter changes no more than by
        /// cutting rows, permuting them within heads or shifting values: it is then read, checked
        /// and encoded a piece of rows at a time by `encodePieces`; nil to take it whole.
        func rowsPerPiece(pieceBytes: Int) -> Int? {
            guard generated == nil, parts.count == 1, !transposed, shape.count == 2, shape[1] > 0, case .plain = parts[0].storage,
                  parts[0].shape.count == 2, parts[0].shape[1] == shape[1], parts[0].shape[0] >= shape[0] else { return nil }
            if let heads = permutedHeads {
                guard keptRows == nil, parts[0].shape[0] == shape[0], GGUFLlamaNames.canPermute(rows: shape[0], heads: heads) else { return nil }
            }
            return max(1, pieceBytes / (4 * shape[1]))
        }

        /// The source row that row `row` as written reads: llama's Q and K rows are interleaved
        /// within each head (`GGUFLlamaNames.permuteRows` to GGUF), any other row is its own.
        func sourceRow(_ row: Int) -> Int {
            guard let heads = permutedHeads else { return row }
            let headDim = shape[0] / heads, within = row % headDim
            return row - within + (within % 2) * (headDim / 2) + within / 2
        }

        /// Encodes this matrix (one `rowsPerPiece` accepts) as `type` a piece of `rows` rows at a
        /// time, handing each piece's bytes to `body`. A piece's rows are cut into chunks of about
        /// 16k values; each of `threads` reads a chunk from the mapped input into its own scratch
        /// (the converter's row order and shift), checks it and encodes it while it is in cache:
        /// no f32 copy of the tensor or piece is made, and no thread waits for a serial read. The
        /// bytes are `encode`'s for the whole matrix; `importance` is one weight per column or nil.
        /// A block type refuses NaN and Inf: the first one written is named by its flat index in
        /// the source tensor.
        func encodePieces(_ logical: LogicalCheckpoint, rows: Int, as type: GGMLType, importance: [Float]?, file: String,
                          threads: ThreadBudget, _ body: ([UInt8]) throws -> Void) throws {
            guard case let .plain(entry) = parts[0].storage else { preconditionFailure("rowsPerPiece accepts plain tensors only") }
            guard type.quantizeRow != nil else { throw Failure.unsupportedType(type.name) }
            let view = logical.checkpoint.view(entry), dtype = entry.info.dtype, columns = shape[1]
            let rowBytes = type.byteCount(elements: columns), chunkRows = max(1, 16_384 / columns)
            let blockType = type.floatDType == nil, shift = shift
            let importance = blockType ? importance : nil  // float types take no weights
            precondition(importance.map { $0.count == columns } ?? true, "one importance weight per column")
            let item = self
            var first = 0
            while first < shape[0] {
                let count = min(rows, shape[0] - first), pieceStart = first
                // The first NaN or Inf in the written order: its position there, and its flat index in the source tensor.
                let nonFinite = LockedValue<(written: Int, index: Int, value: Float)?>(nil)
                let encodedChunks = Atomic<Int>(0), chunks = (count + chunkRows - 1) / chunkRows
                let bytes = [UInt8](unsafeUninitializedCapacity: count * rowBytes) { out, initialized in
                    let target = UncheckedSendable(out.baseAddress!)
                    view.withBytes { source in
                        let source = UncheckedSendable(source.baseAddress!)
                        importance.withUnsafeBufferPointerOrNil { weights in
                            let weights = UncheckedSendable(weights)
                            threads.forEachPiece(of: count, size: chunkRows) { chunk in
                                withUnsafeTemporaryAllocation(of: Float.self, capacity: chunk.count * columns) { scratch in
                                    let x = scratch.baseAddress!
                                    for (k, row) in chunk.enumerated() {
                                        let from = item.sourceRow(pieceStart + row) * columns
                                        FloatValues.read(dtype: dtype, source.value, range: from..<(from + columns), into: x + k * columns)
                                    }
                                    if shift != 0 { for i in 0..<scratch.count { x[i] += shift } }
                                    if blockType, let i = FloatValues.firstNonFinite(x, count: scratch.count) {
                                        // The chunk is not encoded; its first bad value (its rows are in written order)
                                        // is kept if it comes before another chunk's.
                                        let row = chunk.lowerBound + i / columns
                                        let found = (written: row * columns + i % columns,
                                                     index: item.sourceRow(pieceStart + row) * columns + i % columns, value: x[i])
                                        nonFinite.withLock { if $0 == nil || found.written < $0!.written { $0 = found } }
                                        return
                                    }
                                    _ = type.encodeRows(x, rows: chunk.count, rowLength: columns, importance: weights.value,
                                                        into: target.value + chunk.lowerBound * rowBytes)
                                    encodedChunks.add(1, ordering: .relaxed)
                                }
                            }
                        }
                    }
                    initialized = count * rowBytes
                }
                // Chunks skipped after an interruption leave bytes unwritten: they never reach the file.
                let found = nonFinite.withLock { $0 }
                if Interruption.isRequested || (found == nil && encodedChunks.load(ordering: .relaxed) != chunks) {
                    throw FileAccessError.interrupted(file: logical.checkpoint.path)
                }
                if let found { throw QuantizationError.nonFinite(file: file, tensor: sourceName, index: found.index, value: "\(found.value)") }
                if permutedHeads == nil {
                    // Read once: the mapped pages can go (they stay in the page cache), so RSS holds only what is in flight.
                    let size = dtype.size
                    view.releaseMappedPages((pieceStart * columns * size)..<((pieceStart + count) * columns * size))
                }
                try body(bytes)
                first += count
            }
            logical.releasePages(parts[0])
        }

        /// The values as the converter hands them to the writer, in f32.
        func values(_ logical: LogicalCheckpoint, threads: ThreadBudget) -> [Float] {
            if let generated { return generated }
            var values: [Float]
            if parts.count == 1 {
                values = logical.float32(parts[0], threads: threads)
            } else {
                values = []
                values.reserveCapacity(elementCount)
                for part in parts { values += logical.float32(part, threads: threads) }
            }
            // Read once: the mapped pages can go (they stay in the page cache), so RSS holds only what is in flight.
            for part in parts { logical.releasePages(part) }
            if transposed {
                let rows = parts[0].shape[0], columns = parts[0].shape[1]
                var t = [Float](repeating: 0, count: values.count)
                for r in 0..<rows { for c in 0..<columns { t[c * rows + r] = values[r * columns + c] } }
                values = t
            }
            if let heads = permutedHeads {
                values = GGUFLlamaNames.permuteRows(values, rows: shape[0], columns: shape.count > 1 ? shape[1] : 1, heads: heads, toGGUF: true)
            }
            if let keptRows, shape.count == 2 { values.removeSubrange((keptRows * shape[1])...) }
            if shift != 0 { for i in values.indices { values[i] += shift } }
            return values
        }
    }

    /// The tensors the converter writes for `logical`: mapped, changed, experts stacked, extra tensors added.
    static func exportItems(_ logical: LogicalCheckpoint, architecture: GGUFArchitecture, config: TransformerConfig,
                            parameters: GGUFParameters, file: String, tokenizer: JSONValue?) throws -> [ExportItem] {
        var items: [ExportItem] = []
        var experts: [String: [Int: LogicalTensor]] = [:]
        for tensor in logical.tensors {
            guard let mapping = architecture.mapping(of: tensor.name) else {
                throw Failure.unmappedTensor(file: file, tensor: tensor.name, architecture: architecture.name)
            }
            switch mapping {
            case .skipped: continue
            case let .expert(name, expert):
                guard tensor.shape.count == 2, experts[name]?[expert] == nil else {
                    throw ModelError.weightShape(file: file, tensor: tensor.name, expected: [0, 0], actual: tensor.shape)
                }
                experts[name, default: [:]][expert] = tensor
            case let .tensor(name):
                var item = ExportItem(name: name, shape: tensor.shape, parts: [tensor])
                if architecture.isTransposed(tensor.name) {
                    guard tensor.shape.count == 2 else {
                        throw ModelError.weightShape(file: file, tensor: tensor.name, expected: [0, 0], actual: tensor.shape)
                    }
                    item.transposed = true
                    item.shape = [tensor.shape[1], tensor.shape[0]]
                }
                if let heads = architecture.permutedHeads(name, config: config) {
                    guard (1...2).contains(tensor.shape.count), GGUFLlamaNames.canPermute(rows: tensor.shape[0], heads: heads) else {
                        throw ModelError.weightShape(file: file, tensor: tensor.name, expected: [heads * 2 * max(1, tensor.shape[0] / max(1, heads * 2))],
                                                     actual: tensor.shape)
                    }
                    item.permutedHeads = heads
                }
                if architecture.normShift != 0 && tensor.name.hasSuffix("norm.weight") { item.shift = architecture.normShift }
                if architecture.cutsEmbeddingToTokenizer, name == "token_embd.weight", tensor.shape.count == 2,
                   let tokenizer, let vocab = tokenizer["model"]?["vocab"]?.objectMembers {
                    let real = vocab.count + (tokenizer["added_tokens"]?.arrayValue?.count ?? 0)
                    if real < tensor.shape[0] {
                        item.keptRows = real
                        item.shape[0] = real
                    }
                }
                items.append(item)
            }
        }
        for (name, byExpert) in experts {
            let count = byExpert.count
            guard let first = byExpert[0], (0..<count).allSatisfy({ byExpert[$0]?.shape == first.shape }) else {
                let odd = (0..<count).first { byExpert[$0] == nil || byExpert[$0]!.shape != byExpert[0]?.shape } ?? 0
                throw ModelError.missingWeight(file: file, tensor: "\(name) expert \(odd) (expected experts 0..<\(count), all of one shape)")
            }
            if let expected = config.experts?.count, expected != count {
                throw ModelError.badConfig(file: file, key: "num_experts", reason: "\(expected), but \(name) has \(count) experts")
            }
            items.append(ExportItem(name: name, shape: [count] + first.shape, parts: (0..<count).map { byExpert[$0]! }))
        }
        for (name, values) in try architecture.extraTensors(parameters) {
            items.append(ExportItem(name: name, shape: [values.count], parts: [], generated: values))
        }
        var seen = Set<String>()
        for item in items where !seen.insert(item.name).inserted {
            throw Failure.duplicateTensor(file: file, tensor: item.name)
        }
        return items
    }
}

extension GGUFExport {
    /// Requantizes a GGUF of any architecture as `llama-quantize --allow-requantize` does: the
    /// metadata copied (tokenizer included) with `general.file_type` and the quantization version
    /// set, each tensor typed by the preset's rules, decoded to f32 and encoded again; a tensor
    /// whose type does not change is copied byte for byte.
    public static func requantize(_ file: GGUFFile, to output: String, preset: GGUFPreset, options: Options) throws -> ConversionReport {
        try FileSystem.refuseOverlap(output: output, inputs: [file.path])
        let clock = Stopwatch()
        let architecture = file.value("general.architecture")?.stringValue ?? "llama"
        func count(_ key: String) -> Int {
            let value = file.value(architecture + "." + key)
            // Per-layer arrays (head counts of hybrid models): the largest decides llama-quantize's GQA rule.
            return value?.intValue ?? value?.arrayValue?.compactMap(\.intValue).max() ?? 0
        }
        let heads = count("attention.head_count")
        let model = GGUFTypePlan.Model(architecture: architecture, layers: count("block_count"), heads: heads,
                                       kvHeads: file.value(architecture + ".attention.head_count_kv") == nil ? heads : count("attention.head_count_kv"),
                                       experts: count("expert_count"))
        let infos = file.tensors.sorted { GGUFTypePlan.llamaOrder($0.name, $1.name) }
        let planTensors = infos.map { GGUFTypePlan.Tensor(name: $0.name, dims: $0.dimensions, inputType: $0.type) }
        var planOptions = options.plan
        planOptions.hasImportance = options.importance != nil
        let choices = try GGUFTypePlan.plan(planTensors, model: model, preset: preset, options: planOptions)
        if let importance = options.importance {
            try importance.check(against: planTensors.map { ($0.name, $0.dims) })
        }
        var kv = carriedMetadata(file, except: ["general.file_type", "general.quantization_version"])
        kv.append(("general.quantization_version", .u32(2)))
        kv.append(("general.file_type", .u32(preset.fileType)))
        let types = infos.map { choices[$0.name]!.type }
        var rows: [ConversionReport.Tensor] = []
        // The next tensor is decoded and checked on a second thread while this one is encoded.
        @Sendable func prepare(_ info: GGUFTensorInfo, _ type: GGMLType) -> Result<[Float]?, Error> {
            guard type != info.type else { return .success(nil) }  // copied as stored
            guard info.elementCount % info.type.blockSize == 0 else {
                return .failure(GGUFError.tensorShapeInvalid(file: file.path, tensor: info.name,
                                                             reason: "\(info.elementCount) elements (expected whole \(info.type.name) blocks)"))
            }
            let values = info.type.decode(file.bytes(info), count: info.elementCount)
            if let refusal = blockRefusal(values, type: type, file: file.path, tensor: info.name) { return .failure(refusal) }
            return .success(values)
        }
        let ahead = PreparedAhead(zip(infos, types).map { info, type in { prepare(info, type) } })
        try writeFile(output, overwrite: options.overwrite, kv: kv, tensors: zip(infos, types).map { ($0.name, $0.dimensions, $1) }) { k in
            let (info, type) = (infos[k], types[k])
            let bytes: [UInt8]
            if let values = try ahead.take(k).get() {
                bytes = try encode(values, as: type, dims: info.dimensions, importance: options.importance?.weights(for: info.name),
                                   threads: options.threads)
            } else {
                bytes = Array(file.bytes(info))
            }
            file.releasePages(info)
            WorkProgress.report("writing", done: k + 1, total: infos.count, item: info.name)
            rows.append(ConversionReport.Tensor(name: info.name, shape: info.shape, fromType: info.type.floatDType ?? .f32,
                                                toType: type.floatDType ?? .f32, bytesIn: info.byteCount, bytesOut: bytes.count,
                                                storedType: type.name))
            return bytes
        }
        var report = ConversionReport(output: output, files: [output], tensors: rows, copiedFiles: [], seconds: clock.seconds)
        report.notes = infos.compactMap { info in choices[info.name]!.fallback.map { "\(info.name): \($0)" } }
        return report
    }

    /// Why `values` cannot be stored as `type`: a block type cannot hold NaN or Inf (llama-quantize
    /// fails its row validation there), so the first such value is named; nil for float types.
    static func blockRefusal(_ values: [Float], type: GGMLType, file: String, tensor: String) -> QuantizationError? {
        guard type.floatDType == nil else { return nil }
        return QuantizationError.firstNonFinite(values, file: file, tensor: tensor)
    }

    /// `values` (a tensor of `ne` `dims`) in `type`; importance weights hold one row's worth per
    /// matrix (experts: one per expert), and each matrix is quantized with its own, as llama-quantize does.
    static func encode(_ values: [Float], as type: GGMLType, dims: [Int], importance: [Float]?, threads: ThreadBudget) throws -> [UInt8] {
        let rowLength = dims[0], matrices = dims.dropFirst(2).reduce(1, *)
        // Float types take no weights (an imatrix also covers tensors that stay F32, like the MoE router).
        let importance = type.floatDType == nil ? importance : nil
        if values.isEmpty { return [] }  // a zero-sized dimension: no rows, nothing to encode
        return try values.withUnsafeBufferPointer { x in
            guard let importance, importance.count != rowLength, matrices > 1 else {
                guard let bytes = type.encode(x, rowLength: rowLength, importance: importance, threads: threads) else {
                    throw Failure.unsupportedType(type.name)
                }
                return bytes
            }
            // ImportanceMatrix.check has tied the weights to ne[0] × ne[2] before any of this.
            precondition(importance.count == rowLength * matrices && x.count % matrices == 0, "one row of weights per matrix")
            let perMatrix = x.count / matrices
            var out: [UInt8] = []
            for m in 0..<matrices {
                let slice = UnsafeBufferPointer(rebasing: x[(m * perMatrix)..<((m + 1) * perMatrix)])
                guard let bytes = type.encode(slice, rowLength: rowLength, importance: Array(importance[(m * rowLength)..<((m + 1) * rowLength)]),
                                              threads: threads) else {
                    throw Failure.unsupportedType(type.name)
                }
                out += bytes
            }
            return out
        }
    }

    /// Writes a metadata value read from a GGUF back as it was: same type codes, arrays nested as stored.
    static func writeStored(_ value: GGUFValue, into b: inout Buffer, withType: Bool) {
        func typeCode(_ v: GGUFValue) -> UInt32 {
            switch v {
            case let .uint(_, type), let .int(_, type), let .float(_, type): return type
            case .bool: return 7
            case .string: return 8
            case .array: return 9
            }
        }
        if withType { b.u32(typeCode(value)) }
        switch value {
        case let .uint(v, type):
            switch type {
            case 0: b.bytes.append(UInt8(truncatingIfNeeded: v))
            case 2: withUnsafeBytes(of: UInt16(truncatingIfNeeded: v).littleEndian) { b.bytes.append(contentsOf: $0) }
            case 4: b.u32(UInt32(truncatingIfNeeded: v))
            default: b.u64(v)
            }
        case let .int(v, type):
            switch type {
            case 1: b.bytes.append(UInt8(bitPattern: Int8(truncatingIfNeeded: v)))
            case 3: withUnsafeBytes(of: Int16(truncatingIfNeeded: v).littleEndian) { b.bytes.append(contentsOf: $0) }
            case 5: b.u32(UInt32(bitPattern: Int32(truncatingIfNeeded: v)))
            default: b.u64(UInt64(bitPattern: v))
            }
        case let .float(v, type):
            if type == 6 { b.f32(Float(v)) } else { b.u64(v.bitPattern) }
        case let .bool(v): b.bytes.append(v ? 1 : 0)
        case let .string(s): b.string(s)
        case let .array(values, elementType):
            b.u32(elementType)
            b.u64(UInt64(values.count))
            for v in values { writeStored(v, into: &b, withType: false) }
        }
    }
}

extension GGUFExport {
    /// Writes `file` again to `output`, atomically: metadata and tensor order as they are, each
    /// tensor `replacement` gives values for (f32, `ne` order, GGUF row layout) encoded anew in its
    /// own stored type, every other tensor copied byte for byte. Returns, per replaced tensor, the
    /// error the encoding added to the values given.
    public static func rewrite(_ file: GGUFFile, to output: String, overwrite: Bool, threads: ThreadBudget,
                               replacement: (GGUFTensorInfo) throws -> [Float]?) throws -> [String: ErrorMetrics] {
        try FileSystem.refuseOverlap(output: output, inputs: [file.path])
        var errors: [String: ErrorMetrics] = [:]
        try writeFile(output, overwrite: overwrite, kv: carriedMetadata(file), tensors: file.tensors.map { ($0.name, $0.dimensions, $0.type) }) { k in
            let info = file.tensors[k]
            let bytes: [UInt8]
            if let values = try replacement(info) {
                precondition(values.count == info.elementCount, "one value per element of \(info.name)")
                if let refusal = blockRefusal(values, type: info.type, file: file.path, tensor: info.name) { throw refusal }
                (bytes, errors[info.name]) = try encodeMeasured(values, as: info.type, dims: info.dimensions, threads: threads)
            } else {
                bytes = Array(file.bytes(info))
            }
            file.releasePages(info)
            WorkProgress.report("writing", done: k + 1, total: file.tensors.count, item: info.name)
            return bytes
        }
        return errors
    }

    /// `values` encoded as `type` (a tensor of `ne` `dims`, no importance weights), and the error
    /// the encoding adds to them (decoded back and compared).
    static func encodeMeasured(_ values: [Float], as type: GGMLType, dims: [Int], threads: ThreadBudget) throws -> (bytes: [UInt8], error: ErrorMetrics) {
        let bytes = try encode(values, as: type, dims: dims, importance: nil, threads: threads)
        let decoded = bytes.withUnsafeBytes { type.decode($0, count: values.count) }
        let error = values.withUnsafeBufferPointer { v in decoded.withUnsafeBufferPointer { ErrorMetrics.compare(reference: v, candidate: $0, threads: threads) } }
        return (bytes, error)
    }

    /// `file`'s metadata as it is written back, but for `except`, `split.*` and `general.alignment`
    /// (the data is laid out again at the default 32-byte alignment).
    static func carriedMetadata(_ file: GGUFFile, except: Set<String> = []) -> [(String, Value)] {
        file.metadata.compactMap { key, value in
            key == "general.alignment" || key.hasPrefix("split.") || except.contains(key) ? nil : (key, .stored(value))
        }
    }

    /// Writes a GGUF to `output`, atomically: the header of `kv` and `tensors` (each placed at the
    /// data alignment), then tensor k's data as `bytes(k)` returns it, zero-padded to the alignment.
    static func writeFile(_ output: String, overwrite: Bool, kv: [(String, Value)], tensors: [(name: String, dims: [Int], type: GGMLType)],
                          bytes: (Int) throws -> [UInt8]) throws {
        var placed: [(name: String, dims: [Int], type: GGMLType, offset: Int)] = []
        var offset = 0
        for t in tensors {
            placed.append((t.name, t.dims, t.type, offset))
            offset = aligned(offset + t.type.byteCount(elements: t.dims.reduce(1, *)))
        }
        let header = headerBytes(kv, tensors: placed)
        let atomic = try AtomicOutput(target: output, isDirectory: false, overwrite: overwrite)
        try atomic.translatingErrors {
            // Tensor k is written by a background thread while tensor k + 1 is made.
            let out = try BackgroundAppendFile(creating: atomic.temporary)
            try out.append(header)
            for k in tensors.indices {
                var data = try bytes(k)
                if k != tensors.count - 1 { data += [UInt8](repeating: 0, count: aligned(data.count) - data.count) }
                try out.append(data)
            }
            try out.finish()
            try atomic.commit()
        }
    }
}
