/// What `CheckpointQuantizer` is asked to do.
public struct QuantizationOptions: Sendable {
    public var scheme: QuantizationScheme
    /// Regex (searched, as Python's `re.search`): when given, any 2-D float tensor it matches is a
    /// candidate, embeddings included; otherwise the linear layers' weights are.
    public var include: String?
    /// Regex removing matches from the selection.
    public var exclude: String?
    public var optimizeScales: Bool
    public var allowNonFinite: Bool
    public var threads: ThreadBudget
    public var overwrite: Bool

    public init(scheme: QuantizationScheme, include: String? = nil, exclude: String? = nil, optimizeScales: Bool = false,
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

public enum QuantizationError: Error, Equatable, Sendable, CustomStringConvertible {
    case alreadyQuantized(path: String, found: String)
    case nonFinite(file: String, tensor: String, index: Int, value: String)
    case invalidBlockSize(scheme: String, blockSize: Int, reason: String)
    case invalidRegex(pattern: String, reason: String)
    case unsupportedDType(file: String, tensor: String, dtype: String)

    public var description: String {
        switch self {
        case let .alreadyQuantized(path, found):
            return "\(path): already quantized (found \(found)); dequantize it first with ckpt-dequantize"
        case let .nonFinite(file, tensor, index, value):
            return "\(file): tensor '\(tensor)': \(value) at flat index \(index) (expected finite weights; pass --allow-nonfinite to quantize anyway)"
        case let .invalidBlockSize(scheme, blockSize, reason):
            return "--block-size \(blockSize): invalid for \(scheme) (\(reason))"
        case let .invalidRegex(pattern, reason):
            return "\(pattern): invalid regular expression (\(reason))"
        case let .unsupportedDType(file, tensor, dtype):
            return "\(file): tensor '\(tensor)': cannot quantize \(dtype) (expected F32, F16, BF16 or F64)"
        }
    }
}

/// What a quantization did, per tensor and in total.
public struct QuantizationReport: Sendable {
    public struct Tensor: Sendable {
        public var name: String
        public var shape: [Int]
        public var metrics: ErrorMetrics
        /// With --optimize-scales: the same tensor's error with plain absmax scales.
        public var plainMetrics: ErrorMetrics?
        public var bytesIn: Int
        public var bytesOut: Int
        public var seconds: Double

        public var bitsPerWeight: Double { Double(bytesOut * 8) / Double(max(1, shape.reduce(1, *))) }
    }

    public var output: String
    public var scheme: QuantizationScheme
    public var tensors: [Tensor]
    /// Tensors kept in their dtype.
    public var kept: [String]
    /// Things the user should know (a regex matching nothing, embeddings quantized, …).
    public var notes: [String]
    public var files: [String]
    public var seconds: Double

    public var total: ErrorMetrics { tensors.reduce(into: ErrorMetrics()) { $0.merge($1.metrics) } }
    public var plainTotal: ErrorMetrics? {
        tensors.allSatisfy { $0.plainMetrics != nil } && !tensors.isEmpty
            ? tensors.reduce(into: ErrorMetrics()) { $0.merge($1.plainMetrics!) } : nil
    }
    public var bytesIn: Int { tensors.reduce(0) { $0 + $1.bytesIn } }
    public var bytesOut: Int { tensors.reduce(0) { $0 + $1.bytesOut } }
}

/// Quantizes a checkpoint: the selected weights into the scheme's layout, everything else kept,
/// shard layout and file names kept, config.json given its `quantization_config`, the folder's
/// other files copied. Tensors are read one at a time from the mapped input; each shard's
/// encoded weights are held until the shard is written (its header needs all their sizes).
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

    public static func validate(_ scheme: QuantizationScheme) throws {
        switch scheme {
        case let .fourBit(type, blockSize, _):
            guard (5...12).contains(blockSize.trailingZeroBitCount), blockSize.nonzeroBitCount == 1 else {
                throw QuantizationError.invalidBlockSize(scheme: type.name, blockSize: blockSize,
                                                         reason: "expected a power of two from 32 to 4096, as bitsandbytes allows")
            }
        case let .int8(groupSize, scaleType):
            guard groupSize > 0 else {
                throw QuantizationError.invalidBlockSize(scheme: "int8", blockSize: groupSize, reason: "expected a positive group size")
            }
            precondition([.f32, .f16, .bf16].contains(scaleType))
        }
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
        if case let .int8(groupSize, _) = options.scheme {
            let ragged = checkpoint.entries.map(\.info).filter { selected.contains($0.name) && $0.shape[1] % groupSize != 0 }
            if let first = ragged.first {
                notes.append("group size \(groupSize) does not divide the input dimension of \(ragged.count) tensor(s) (e.g. '\(first.name)', "
                    + "\(first.shape[1]) columns): their last group is partial, which compressed-tensors does not load")
            }
        }
        return (selected, notes)
    }

    public static func quantize(_ checkpoint: Checkpoint, to output: String, options: QuantizationOptions) throws -> QuantizationReport {
        try validate(options.scheme)
        if let found = QuantizationDetection.describe(checkpoint) {
            throw QuantizationError.alreadyQuantized(path: checkpoint.path, found: found)
        }
        let clock = Stopwatch()
        let (selected, notes) = try selection(checkpoint, options: options)
        var report = QuantizationReport(output: output, scheme: options.scheme, tensors: [], kept: [], notes: notes, files: [],
                                        seconds: 0)

        // Encode every selected tensor of every shard, keeping each shard's plan.
        var encoded: [String: (bytes: [UInt8], original: Bool)] = [:]
        var shards = checkpoint.mirroredShards
        for fileIndex in checkpoint.files.indices {
            var specs: [TensorSpec] = []
            for entry in checkpoint.entries where entry.fileIndex == fileIndex {
                let info = entry.info
                guard selected.contains(info.name) else {
                    specs.append(TensorSpec(name: info.name, dtype: info.dtype, shape: info.shape))
                    report.kept.append(info.name)
                    continue
                }
                let (tensor, row) = try encode(checkpoint, entry, options: options)
                if Interruption.isRequested { throw FileAccessError.interrupted(file: output) }
                for part in tensor.parts {
                    specs.append(part.spec)
                    encoded[part.spec.name] = (part.bytes, false)
                }
                report.tensors.append(row)
                checkpoint.releasePages(entry)
            }
            shards[fileIndex].tensors = specs
        }

        let config = checkpoint.config.map { quantizedConfig($0, scheme: options.scheme, checkpoint: checkpoint, selected: selected) }
        let written = try CheckpointWriter.write(from: checkpoint, to: output, shards: shards, config: config,
                                                 overwrite: options.overwrite) { info, out in
            if let bytes = encoded.removeValue(forKey: info.name)?.bytes {
                try out.write(bytes)
            } else {
                let entry = checkpoint.entry(named: info.name)!
                try out.write(checkpoint.view(entry).bytes)
                checkpoint.releasePages(entry)
            }
        }
        report.files = written.files
        report.seconds = clock.seconds
        return report
    }

    /// Quantizes one tensor and measures what it lost (against the values a loader will see).
    static func encode(_ checkpoint: Checkpoint, _ entry: Checkpoint.Entry, options: QuantizationOptions) throws
        -> (EncodedTensor, QuantizationReport.Tensor)
    {
        let clock = Stopwatch()
        let view = checkpoint.view(entry)
        let info = entry.info
        let file = checkpoint.files[entry.fileIndex].path
        let values = FloatValues.array(view, threads: options.threads)
        if !options.allowNonFinite, let bad = values.firstIndex(where: { !$0.isFinite }) {
            throw QuantizationError.nonFinite(file: file, tensor: info.name, index: bad, value: "\(values[bad])")
        }
        let (rows, columns) = (info.shape[0], info.shape[1])
        var plainMetrics: ErrorMetrics? = nil
        let tensor: EncodedTensor = values.withUnsafeBufferPointer { x in
            switch options.scheme {
            case let .fourBit(type, blockSize, doubleQuant):
                var fixed: [Float]? = nil
                if options.optimizeScales {
                    let plain = encodeFourBit(x, info: info, type: type, blockSize: blockSize, doubleQuant: doubleQuant, fixedScales: nil,
                                              threads: options.threads)
                    plainMetrics = measure(plain, reference: x, threads: options.threads)
                    fixed = ScaleSearch.fourBitScales(x, blockSize: blockSize, type: type, threads: options.threads)
                }
                return encodeFourBit(x, info: info, type: type, blockSize: blockSize, doubleQuant: doubleQuant, fixedScales: fixed,
                                     threads: options.threads)
            case let .int8(groupSize, scaleType):
                var fixed: [Float]? = nil
                if options.optimizeScales {
                    let plain = encodeInt8(x, info: info, rows: rows, columns: columns, groupSize: groupSize, scaleType: scaleType,
                                           fixedScales: nil, threads: options.threads)
                    plainMetrics = measure(plain, reference: x, threads: options.threads)
                    fixed = ScaleSearch.int8Scales(x, rows: rows, columns: columns, groupSize: groupSize, scaleType: scaleType,
                                                   threads: options.threads)
                }
                return encodeInt8(x, info: info, rows: rows, columns: columns, groupSize: groupSize, scaleType: scaleType,
                                  fixedScales: fixed, threads: options.threads)
            }
        }
        let metrics = values.withUnsafeBufferPointer { measure(tensor, reference: $0, threads: options.threads) }
        let row = QuantizationReport.Tensor(name: info.name, shape: info.shape, metrics: metrics, plainMetrics: plainMetrics,
                                            bytesIn: info.byteCount, bytesOut: tensor.storedBytes, seconds: clock.seconds)
        return (tensor, row)
    }

    static func encodeFourBit(_ x: UnsafeBufferPointer<Float>, info: TensorInfo, type: FourBitType, blockSize: Int, doubleQuant: Bool,
                              fixedScales: [Float]?, threads: ThreadBudget) -> EncodedTensor {
        var packed = [UInt8](repeating: 0, count: FourBitQuantizer.packedByteCount(x.count))
        var absmax = [Float](repeating: 0, count: FourBitQuantizer.blockCount(x.count, blockSize: blockSize))
        packed.withUnsafeMutableBufferPointer { p in
            absmax.withUnsafeMutableBufferPointer { a in
                if let fixedScales {
                    fixedScales.withUnsafeBufferPointer {
                        FourBitQuantizer.quantize(x, blockSize: blockSize, type: type, packed: p, absmax: a, fixedScales: $0, threads: threads)
                    }
                } else {
                    FourBitQuantizer.quantize(x, blockSize: blockSize, type: type, packed: p, absmax: a, threads: threads)
                }
            }
        }
        return EncodedTensor.fourBit(name: info.name, shape: info.shape, originalType: info.dtype == .f64 ? .f32 : info.dtype, type: type,
                                     blockSize: blockSize, packed: packed, absmax: absmax,
                                     doubleQuant: doubleQuant ? DoubleQuantizedAbsmax(compressing: absmax) : nil)
    }

    static func encodeInt8(_ x: UnsafeBufferPointer<Float>, info: TensorInfo, rows: Int, columns: Int, groupSize: Int, scaleType: DType,
                           fixedScales: [Float]?, threads: ThreadBudget) -> EncodedTensor {
        var q = [Int8](repeating: 0, count: x.count)
        var scales = [Float](repeating: 0, count: rows * BlockInt8Quantizer.groupsPerRow(columns: columns, groupSize: groupSize))
        q.withUnsafeMutableBufferPointer { qs in
            scales.withUnsafeMutableBufferPointer { s in
                if let fixedScales {
                    fixedScales.withUnsafeBufferPointer {
                        BlockInt8Quantizer.quantize(x, rows: rows, columns: columns, groupSize: groupSize, scaleType: scaleType, q: qs,
                                                    scales: s, fixedScales: $0, threads: threads)
                    }
                } else {
                    BlockInt8Quantizer.quantize(x, rows: rows, columns: columns, groupSize: groupSize, scaleType: scaleType, q: qs,
                                                scales: s, threads: threads)
                }
            }
        }
        return EncodedTensor.int8(name: info.name, shape: info.shape, originalType: info.dtype, groupSize: groupSize, scaleType: scaleType,
                                  q: q, scales: scales)
    }

    /// Error of the values a loader reconstructs from `tensor` against the originals.
    static func measure(_ tensor: EncodedTensor, reference: UnsafeBufferPointer<Float>, threads: ThreadBudget) -> ErrorMetrics {
        var decoded = [Float](repeating: 0, count: reference.count)
        decoded.withUnsafeMutableBufferPointer { decode(tensor, into: $0, threads: threads) }
        return decoded.withUnsafeBufferPointer { ErrorMetrics.compare(reference: reference, candidate: $0, threads: threads) }
    }

    /// Dequantizes an encoded tensor exactly as its loader does.
    static func decode(_ tensor: EncodedTensor, into out: UnsafeMutableBufferPointer<Float>, threads: ThreadBudget) {
        func part(_ suffix: String) -> [UInt8] { tensor.parts.first { $0.spec.name == tensor.name + suffix }!.bytes }
        func floats(_ bytes: [UInt8]) -> [Float] { bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) } }
        switch tensor.scheme {
        case let .fourBit(type, blockSize, doubleQuant):
            var absmax: [Float]
            if doubleQuant {
                let stateBytes = part("." + QuantStateKeys.prefix + type.name)
                let offset = Float((try? JSONParser.parse(stateBytes))?["nested_offset"]?.doubleValue ?? 0)
                absmax = DoubleQuantizedAbsmax(codes: part(".absmax"), nestedAbsmax: floats(part(".nested_absmax")), offset: offset).expanded
            } else {
                absmax = floats(part(".absmax"))
            }
            let packed = part("")
            packed.withUnsafeBufferPointer { p in
                absmax.withUnsafeBufferPointer { a in
                    FourBitQuantizer.dequantize(packed: p, absmax: a, blockSize: blockSize, type: type, into: out, threads: threads)
                }
            }
        case let .int8(groupSize, scaleType):
            let q = tensor.parts[0].bytes
            let scaleBytes = tensor.parts[1].bytes
            var scales = [Float](repeating: 0, count: scaleBytes.count / scaleType.size)
            scaleBytes.withUnsafeBytes { src in
                scales.withUnsafeMutableBytes { FloatConversion.convert(src, from: scaleType, to: .f32, into: $0, threads: .single) }
            }
            q.withUnsafeBytes { raw in
                scales.withUnsafeBufferPointer { s in
                    BlockInt8Quantizer.dequantize(raw.bindMemory(to: Int8.self), scales: s, rows: tensor.shape[0], columns: tensor.shape[1],
                                                  groupSize: groupSize, into: out, threads: threads)
                }
            }
        }
    }

    /// config.json with the loader's `quantization_config` (and nothing else changed).
    static func quantizedConfig(_ config: JSONValue, scheme: QuantizationScheme, checkpoint: Checkpoint, selected: Set<String>) -> JSONValue {
        guard case .object(var members) = config else { return config }
        members.removeAll { $0.0 == "quantization_config" }
        // Linear modules left in float must be named, or the loader would expect them quantized.
        let skipped = checkpoint.entries.map(\.info)
            .filter { $0.shape.count == 2 && $0.name.hasSuffix(".weight") && !selected.contains($0.name) && !isEmbedding($0.name) }
            .map { String($0.name.dropLast(".weight".count)) }
        let computeType = LogicalCheckpoint.configDType(config) ?? .f32
        switch scheme {
        case let .fourBit(type, _, doubleQuant):
            // As transformers writes it (every field, sorted); null skip list = its default (lm_head).
            let defaultSkip = skipped.isEmpty || skipped == ["lm_head"]
            members.append(("quantization_config", [
                "_load_in_4bit": true, "_load_in_8bit": false,
                "bnb_4bit_compute_dtype": .string(computeType.torchName), "bnb_4bit_quant_storage": "uint8",
                "bnb_4bit_quant_type": .string(type.name), "bnb_4bit_use_double_quant": .bool(doubleQuant),
                "llm_int8_enable_fp32_cpu_offload": false, "llm_int8_has_fp16_weight": false,
                "llm_int8_skip_modules": defaultSkip ? .null : .array(skipped.map { .string($0) }),
                "llm_int8_threshold": 6.0, "load_in_4bit": true, "load_in_8bit": false, "quant_method": "bitsandbytes",
            ]))
        case let .int8(groupSize, _):
            // As compressed-tensors 0.20 writes it; the per-group "format" is what makes its loader
            // read the I8 weight instead of inferring pack-quantized (fixtures/quant/README.md).
            members.append(("quantization_config", [
                "config_groups": ["group_0": [
                    "format": "int-quantized", "input_activations": nil, "output_activations": nil, "targets": ["Linear"],
                    "weights": [
                        "dynamic": false, "group_size": JSONValue(groupSize), "num_bits": 8, "strategy": "group", "symmetric": true,
                        "type": "int",
                    ],
                ]],
                "format": "int-quantized", "global_compression_ratio": nil, "ignore": .array(skipped.map { .string($0) }),
                "kv_cache_scheme": nil, "moe_sparsity_config": nil, "quant_method": "compressed-tensors",
                "quantization_status": "compressed", "sparsity_config": [:], "transform_config": [:], "version": "0.20.0",
            ]))
        }
        return .object(members)
    }
}
