/// What `CheckpointQuantizer` is asked to do.
public struct QuantizationOptions: Sendable {
    /// The scheme and parameters the selected weights are encoded in.
    public var scheme: any QuantizationScheme
    /// Regex (searched, as Python's `re.search`): when given, any 2-D float tensor it matches is a
    /// candidate, embeddings included; otherwise the linear layers' weights are.
    public var include: String?
    /// Regex removing matches from the selection.
    public var exclude: String?
    /// Search each block's scale for the least squared error instead of using its absmax (`--optimize-scales`).
    public var optimizeScales: Bool
    /// Encode tensors holding NaN or Inf instead of failing with `QuantizationError.nonFinite`.
    public var allowNonFinite: Bool
    /// Threads for reading, encoding and measuring.
    public var threads: ThreadBudget
    /// An importance matrix weighting the scale search (by GGUF weight name; needs `optimizeScales`).
    public var importance: ImportanceMatrix? = nil
    /// Whether an existing output may be replaced; otherwise the write is refused.
    public var overwrite: Bool
    /// Weights already encoded by a calibrated method (GPTQ, AWQ), by name, with their error against the
    /// original weight as the method measured it (AWQ's parts hold scaled weights): written as they are.
    public var precomputed: [String: (encoded: EncodedTensor, metrics: ErrorMetrics)] = [:]
    /// New bytes, in their stored dtype, for tensors otherwise kept (norms AWQ folded its scales into).
    public var replacedKept: [String: [UInt8]] = [:]

    /// Options for `scheme`; by default the linear weights are selected, absmax scales used, non-finite values refused and nothing overwritten.
    public init(scheme: any QuantizationScheme, include: String? = nil, exclude: String? = nil, optimizeScales: Bool = false,
                allowNonFinite: Bool = false, threads: ThreadBudget = .allCores, overwrite: Bool = false) {
        self.scheme = scheme
        self.include = include
        self.exclude = exclude
        self.optimizeScales = optimizeScales
        self.allowNonFinite = allowNonFinite
        self.threads = threads
        self.overwrite = overwrite
    }
}

/// Failures quantizing a checkpoint: bad options, an already-quantized input, or a weight that cannot be encoded.
public enum QuantizationError: Error, Equatable, Sendable, CustomStringConvertible {
    case alreadyQuantized(path: String, found: String)
    case nonFinite(file: String, tensor: String, index: Int, value: String)
    case invalidBlockSize(scheme: String, blockSize: Int, reason: String)
    case invalidRegex(pattern: String, reason: String)
    case unsupportedDType(file: String, tensor: String, dtype: String)
    case groupSizeDoesNotDivide(file: String, tensor: String, columns: Int, groupSize: Int)
    case unsupportedShape(file: String, tensor: String, shape: [Int], expected: String)

    /// `.nonFinite` for the first NaN or infinity in `values`, nil when all are finite. Pieces of
    /// 64 Ki values are scanned on `threads` by `FloatValues.firstNonFinite` and the lowest hit kept:
    /// the same index for any thread count.
    static func firstNonFinite(_ values: [Float], file: String, tensor: String, threads: ThreadBudget = .single) -> QuantizationError? {
        let pieceSize = 1 << 16
        let pieces = (values.count + pieceSize - 1) / pieceSize
        var firstPerPiece = [Int](repeating: .max, count: pieces)
        values.withUnsafeBufferPointer { x in
            firstPerPiece.withUnsafeMutableBufferPointer { first in
                let (x, first) = (UncheckedSendable(x), UncheckedSendable(first))
                threads.forEachChunk(pieces) { piece in
                    let start = piece * pieceSize
                    if let i = FloatValues.firstNonFinite(x.value.baseAddress! + start, count: min(x.value.count, start + pieceSize) - start) {
                        first.value[piece] = start + i
                    }
                }
            }
        }
        guard let index = firstPerPiece.first(where: { $0 != .max }) else { return nil }
        return .nonFinite(file: file, tensor: tensor, index: index, value: "\(values[index])")
    }

    /// The one-line message: the option, file or tensor at fault and what was expected.
    public var description: String {
        switch self {
        case let .alreadyQuantized(path, found):
            return "\(path): already quantized (found \(found)); dequantize it first with ckpt-dequantize"
        case let .nonFinite(file, tensor, index, value):
            return "\(faultLocation(file, tensor: tensor)): \(value) at flat index \(index) (expected finite weights; pass --allow-nonfinite to quantize anyway)"
        case let .invalidBlockSize(scheme, blockSize, reason):
            return "--block-size \(blockSize): invalid for \(scheme) (\(reason))"
        case let .invalidRegex(pattern, reason):
            return "\(pattern): invalid regular expression (\(reason))"
        case let .groupSizeDoesNotDivide(file, tensor, columns, groupSize):
            return "\(faultLocation(file, tensor: tensor)): rows of \(columns) columns do not split into groups of \(groupSize) "
                + "(expected a group size dividing every row, as vLLM and the format's loaders require; try --block-size 32 or 64)"
        case let .unsupportedShape(file, tensor, shape, expected):
            return "\(faultLocation(file, tensor: tensor)): shape \(shape) cannot be written in this format (expected \(expected))"
        case let .unsupportedDType(file, tensor, dtype):
            return "\(faultLocation(file, tensor: tensor)): cannot quantize \(dtype) (expected F32, F16, BF16 or F64)"
        }
    }
}

/// What a quantization did, per tensor and in total.
public struct QuantizationReport: Sendable {
    /// One quantized weight: its error, sizes and time.
    public struct Tensor: Sendable {
        /// The weight's name (`P.weight`).
        public var name: String
        /// The weight's logical shape.
        public var shape: [Int]
        /// Error of the values a loader reconstructs against the originals, in float32.
        public var metrics: ErrorMetrics
        /// With --optimize-scales: the same tensor's error with plain absmax scales.
        public var plainMetrics: ErrorMetrics?
        /// Bytes of the weight in its original dtype.
        public var bytesIn: Int
        /// Bytes of all its encoded parts (codes, scales, state).
        public var bytesOut: Int
        /// Wall-clock time to read, encode and measure this weight, in seconds.
        public var seconds: Double

        /// Stored bits per element, scales and state included.
        public var bitsPerWeight: Double { Double(bytesOut * 8) / Double(max(1, shape.reduce(1, *))) }
    }

    /// The output path as given.
    public var output: String
    /// The scheme the weights were encoded in.
    public var scheme: any QuantizationScheme
    /// One row per quantized weight, by file, then in the file's order.
    public var tensors: [Tensor]
    /// Tensors kept in their dtype.
    public var kept: [String]
    /// Things the user should know (a regex matching nothing, embeddings quantized, …).
    public var notes: [String]
    /// Weight files written: shard names plus the index when there are several, or the output path for a lone file.
    public var files: [String]
    /// Wall-clock duration of the whole quantization, in seconds.
    public var seconds: Double

    /// Error over all quantized weights, merged.
    public var total: ErrorMetrics { tensors.reduce(into: ErrorMetrics()) { $0.merge($1.metrics) } }
    /// The same total with plain absmax scales when every row has it (`--optimize-scales`); nil otherwise or when nothing was quantized.
    public var plainTotal: ErrorMetrics? {
        tensors.allSatisfy { $0.plainMetrics != nil } && !tensors.isEmpty
            ? tensors.reduce(into: ErrorMetrics()) { $0.merge($1.plainMetrics!) } : nil
    }
    /// Bytes of the quantized weights before encoding (kept tensors excluded).
    public var bytesIn: Int { tensors.reduce(0) { $0 + $1.bytesIn } }
    /// Bytes of their encoded parts (kept tensors excluded).
    public var bytesOut: Int { tensors.reduce(0) { $0 + $1.bytesOut } }
}

/// Quantizes a checkpoint: the selected weights into the scheme's layout, everything else kept,
/// shard layout and file names kept, config.json given its `quantization_config`, the folder's
/// other files copied. Tensors are read one at a time from the mapped input. Each shard's header
/// is planned from the shapes (`QuantizationScheme.partSpecs`), so every weight is written at its
/// offset by a background thread while the next is read, encoded and measured: only the tensors
/// in flight are held. Double quantization plans from a first read of each weight (its blocks'
/// absmax mean is printed in the header); a scheme that cannot plan at all (GPTQ's layout, or
/// double quantization with searched scales) has the shard's weights encoded first.
public enum CheckpointQuantizer {
    /// Modules transformers keeps in float by default; also never quantized by default here.
    static func isEmbeddingOrHead(_ name: String) -> Bool {
        let lower = name.lowercased()
        return lower.contains("embed") || lower.contains("lm_head") || lower.hasSuffix("wte.weight") || lower.hasSuffix("wpe.weight")
    }

    static func isEmbedding(_ name: String) -> Bool {
        let lower = name.lowercased()
        return lower.contains("embed") || lower.hasSuffix("wte.weight") || lower.hasSuffix("wpe.weight")
    }

    static func isNorm(_ name: String) -> Bool {
        let lower = name.lowercased()
        return lower.contains("norm") || lower.contains(".ln_") || lower.contains("layernorm")
    }

    static func compile(_ pattern: String?) throws -> Regex<AnyRegexOutput>? {
        guard let pattern else { return nil }
        do { return try Regex(pattern) } catch { throw QuantizationError.invalidRegex(pattern: pattern, reason: "\(error)") }
    }

    /// The names that would be quantized, and notes about the selection.
    public static func selection(_ checkpoint: Checkpoint, options: QuantizationOptions) throws -> (names: Set<String>, notes: [String]) {
        let include = try compile(options.include)
        let exclude = try compile(options.exclude)
        var selected = Set<String>()
        var notes: [String] = []
        var includeMatched = false, excludeMatched = false
        for entry in checkpoint.entries {
            let info = entry.info
            guard info.shape.count == 2, info.dtype.isFloatingPoint, info.dtype != .f8e4m3, info.dtype != .f8e5m2 else { continue }
            if let include {
                guard info.name.contains(include) else { continue }
                includeMatched = true
            } else {
                guard info.name.hasSuffix(".weight"), !isEmbeddingOrHead(info.name), !isNorm(info.name) else { continue }
            }
            if let exclude, info.name.contains(exclude) {
                excludeMatched = true
                continue
            }
            selected.insert(info.name)
        }
        if let pattern = options.include, !includeMatched { notes.append("--include \(pattern) matches no 2-D float tensor") }
        if let pattern = options.exclude, !excludeMatched { notes.append("--exclude \(pattern) matches no candidate tensor") }
        let heads = selected.filter(isEmbeddingOrHead).sorted()
        if !heads.isEmpty {
            notes.append("quantizing embeddings / lm_head as asked (\(heads.joined(separator: ", "))); transformers keeps these in float by default")
        }
        if selected.isEmpty { notes.append("no tensor selected: the output is a copy of the input") }
        notes += options.scheme.notes(selected: checkpoint.entries.map(\.info).filter { selected.contains($0.name) }.map { ($0.name, $0.shape) })
        return (selected, notes)
    }

    /// Writes `checkpoint` atomically with the selected weights in `options.scheme`; throws if it is already quantized or a weight is non-finite.
    public static func quantize(_ checkpoint: Checkpoint, to output: String, options: QuantizationOptions) throws -> QuantizationReport {
        let clock = Stopwatch()
        let (selected, notes) = try preflight(checkpoint, to: output, options: options)
        // Statistics are kept under llama.cpp's names (experts stacked): the family's GGUF layout finds them.
        let layout = checkpoint.config.flatMap { try? TransformerConfig(parsing: $0, file: checkpoint.configSource) }
            .flatMap { GGUFArchitecture.of($0.family) } ?? GGUFArchitecture.llama
        if let importance = options.importance {
            // Every entry must name a 2-D weight (or an expert stack) of this model, as wide as its rows.
            var weights: [String: [Int]] = [:]
            for e in checkpoint.entries where e.info.shape.count == 2 {
                switch layout.mapping(of: e.info.name) {
                case .tensor(let name)?: weights[name] = Array(e.info.shape.reversed())
                case let .expert(name, expert)?:
                    let experts = max(expert + 1, weights[name].map { $0[2] } ?? 0)
                    weights[name] = [e.info.shape[1], e.info.shape[0], experts]
                default: continue
                }
            }
            try importance.check(against: weights.map { ($0.key, $0.value) })
        }
        var report = QuantizationReport(output: output, scheme: options.scheme, tensors: [], kept: [], notes: notes, files: [],
                                        seconds: 0)

        let config = checkpoint.config.map { quantizedConfig($0, scheme: options.scheme, checkpoint: checkpoint, selected: selected) }
        let shards = checkpoint.mirroredShards
        // Six encoded weights may wait for the writer (a quarter of their input's bytes or less
        // each): the encoder goes on while a large kept tensor (the embedding) is being written.
        let written = try CheckpointWriter.writeStreaming(from: checkpoint, to: output, shardCount: shards.count, config: config,
                                                          overwrite: options.overwrite, window: 6) { fileIndex, open in
            let entries = checkpoint.entries.filter { $0.fileIndex == fileIndex }
            // The header first: every part's spec from the shapes alone, so each weight is written
            // as soon as it is encoded while the next one is read and encoded.
            var specs: [TensorSpec] = []
            var known = true
            for entry in entries where known {
                let info = entry.info
                if !selected.contains(info.name) {
                    specs.append(TensorSpec(name: info.name, dtype: info.dtype, shape: info.shape))
                } else if let (tensor, _) = options.precomputed[info.name] {
                    specs += tensor.parts.map(\.spec)
                } else if let parts = options.scheme.partSpecs(name: info.name, shape: info.shape, originalType: encodedType(info.dtype)) {
                    specs += parts
                } else if !options.optimizeScales, let parts = options.scheme.partSpecs(
                    name: info.name, shape: info.shape, originalType: encodedType(info.dtype),
                    reading: { FloatValues.array(checkpoint.view(entry), threads: options.threads) })
                {
                    // A statistic of the values plans the parts (double quantization's offset): read now, encoded later.
                    specs += parts
                    checkpoint.releasePages(entry)
                } else {
                    known = false
                }
            }
            // Parts that depend on more than a cheap statistic (GPTQ's permutation; double
            // quantization of searched scales): this shard's weights are encoded, and held, before its header.
            var early: [String: (EncodedTensor, QuantizationReport.Tensor)] = [:]
            if !known {
                specs = []
                for entry in entries {
                    let info = entry.info
                    guard selected.contains(info.name) else {
                        specs.append(TensorSpec(name: info.name, dtype: info.dtype, shape: info.shape))
                        continue
                    }
                    let (tensor, row) = try encode(checkpoint, entry, options: options, layout: layout)
                    WorkProgress.report("quantizing", done: report.tensors.count + early.count + 1, total: selected.count, item: info.name)
                    if Interruption.isRequested { throw FileAccessError.interrupted(file: output) }
                    specs += tensor.parts.map(\.spec)
                    early[info.name] = (tensor, row)
                    checkpoint.releasePages(entry)
                }
            }
            var plan = shards[fileIndex]
            plan.tensors = specs
            let file = try open(plan)
            for entry in entries {
                let info = entry.info
                guard selected.contains(info.name) else {
                    report.kept.append(info.name)
                    if let bytes = options.replacedKept[info.name] {
                        try file.write([(TensorSpec(name: info.name, dtype: info.dtype, shape: info.shape), bytes)])
                    } else {
                        // Straight from the mapped input; its pages are dropped once written.
                        try file.write(checkpoint.view(entry), as: info.name) { checkpoint.releasePages(entry) }
                    }
                    continue
                }
                let tensor: EncodedTensor, row: QuantizationReport.Tensor
                if let held = early.removeValue(forKey: info.name) {
                    (tensor, row) = held
                } else {
                    (tensor, row) = try encode(checkpoint, entry, options: options, layout: layout)
                    WorkProgress.report("quantizing", done: report.tensors.count + 1, total: selected.count, item: info.name)
                    if Interruption.isRequested { throw FileAccessError.interrupted(file: output) }
                    checkpoint.releasePages(entry)
                }
                try file.write(tensor.parts)
                report.tensors.append(row)
            }
        }
        report.files = written.files
        report.seconds = clock.seconds
        return report
    }

    /// What every quantizer checks before any work (a valid scheme, an output that is not an input,
    /// an input not already quantized, weights the scheme can encode): the selection and its notes.
    public static func preflight(_ checkpoint: Checkpoint, to output: String, options: QuantizationOptions) throws
        -> (selected: Set<String>, notes: [String])
    {
        try options.scheme.validate()
        try FileSystem.refuseOverlap(output: output, inputs: [checkpoint.path])
        if let found = try LogicalCheckpoint(checkpoint).quantizationDescription {
            throw QuantizationError.alreadyQuantized(path: checkpoint.path, found: found)
        }
        let (selected, notes) = try selection(checkpoint, options: options)
        let shapes = checkpoint.entries.filter { selected.contains($0.info.name) }.map { ($0.info.name, $0.info.shape) }
        if let refusal = options.scheme.refusal(selected: shapes, file: checkpoint.path) { throw refusal }
        return (selected, notes)
    }

    /// Quantizes one tensor and measures what it lost (against the values a loader will see).
    static func encode(_ checkpoint: Checkpoint, _ entry: Checkpoint.Entry, options: QuantizationOptions,
                       layout: GGUFArchitecture = .llama) throws
        -> (EncodedTensor, QuantizationReport.Tensor)
    {
        let clock = Stopwatch()
        let view = checkpoint.view(entry)
        let info = entry.info
        let file = checkpoint.files[entry.fileIndex].path
        if let (tensor, metrics) = options.precomputed[info.name] {
            return (tensor, QuantizationReport.Tensor(name: info.name, shape: info.shape, metrics: metrics, plainMetrics: nil,
                                                      bytesIn: info.byteCount, bytesOut: tensor.storedBytes, seconds: clock.seconds))
        }
        // Widened and checked for NaN/Inf in one pass, each piece while in cache.
        let (values, nonFinite) = FloatValues.arrayFindingNonFinite(view, threads: options.threads)
        if !options.allowNonFinite, let index = nonFinite {
            throw QuantizationError.nonFinite(file: file, tensor: info.name, index: index, value: "\(values[index])")
        }
        var plainMetrics: ErrorMetrics? = nil
        let tensor: EncodedTensor = values.withUnsafeBufferPointer { x in
            let importance = options.importance.flatMap { matrix in matrix.weights(for: info.name, layout: layout) }
            let (encoded, plain) = options.scheme.encode(name: info.name, shape: info.shape, originalType: encodedType(info.dtype),
                                                         values: x, optimizeScales: options.optimizeScales,
                                                         importance: importance?.count == info.shape.last ? importance : nil, threads: options.threads)
            plainMetrics = plain.map { $0.error(against: x, threads: options.threads) }
            return encoded
        }
        let metrics = values.withUnsafeBufferPointer { tensor.error(against: $0, threads: options.threads) }
        let row = QuantizationReport.Tensor(name: info.name, shape: info.shape, metrics: metrics, plainMetrics: plainMetrics,
                                            bytesIn: info.byteCount, bytesOut: tensor.storedBytes, seconds: clock.seconds)
        return (tensor, row)
    }

    /// The dtype a weight is encoded as having: its own, except F64, whose values are encoded (and described) as F32.
    static func encodedType(_ dtype: DType) -> DType { dtype == .f64 ? .f32 : dtype }

    /// config.json with the loader's `quantization_config` (and nothing else changed).
    static func quantizedConfig(_ config: JSONValue, scheme: any QuantizationScheme, checkpoint: Checkpoint, selected: Set<String>) -> JSONValue {
        guard case .object(var members) = config else { return config }
        members.removeAll { $0.0 == "quantization_config" }
        // Linear modules left in float must be named, or the loader would expect them quantized.
        let skipped = checkpoint.entries.map(\.info)
            .filter { $0.shape.count == 2 && $0.name.hasSuffix(".weight") && !selected.contains($0.name) && !isEmbedding($0.name) }
            .map { String($0.name.dropLast(".weight".count)) }
        let computeType = LogicalCheckpoint.configDType(config) ?? .f32
        members.append(("quantization_config", scheme.quantizationConfig(computeType: computeType, skippedModules: skipped)))
        return .object(members)
    }
}
