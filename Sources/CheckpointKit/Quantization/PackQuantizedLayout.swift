/// The file formats integer codes are written in.
public enum IntegerFormat: String, Sendable, CaseIterable {
    /// compressed-tensors `pack-quantized` (vLLM's W4A16 / W8A16).
    case packQuantized = "pack-quantized"
    /// GPTQ `qweight` / `qzeros` / `scales` / `g_idx` (v1 zeros when symmetric).
    case gptq
    /// AutoAWQ GEMM (`qweight` `[K, N/8]` in its nibble order; always with zero points).
    case awq
}

/// int4 / int8 per group of columns (or per output channel), symmetric or with zero points,
/// written as compressed-tensors `pack-quantized` or as GPTQ. Round-to-nearest follows the
/// format's own reference (compressed-tensors' observer, GPTQModel's quantizer); calibrated
/// methods hand their codes to `encode(codes:…)`.
public struct IntegerScheme: QuantizationScheme, Equatable {
    /// Bits per code: 4 or 8.
    public var bits: Int
    /// Columns per scale; nil for one scale per output row (`strategy: channel`).
    public var groupSize: Int?
    /// Whether the zero point is the middle code (no zero-point tensor).
    public var symmetric: Bool
    /// The file format.
    public var format: IntegerFormat
    /// How the codes were chosen, for the config: "rtn", "gptq" or "awq".
    public var method: String = "rtn"
    /// GPTQ's act-order (`desc_act`), with static groups or groups following the order.
    public var actOrder = false, staticGroups = false
    /// GPTQ's dampening, as a fraction of the mean Hessian diagonal.
    public var damp: Double = 0.01
    /// GPTQ's range search norm (GPTQModel's `mse`), 0 for none.
    public var mse: Double = 0
    /// Whether GPTQ took each layer's Hessians group after group (GPTQModel's `true_sequential`, a field its config
    /// always carries); true unless a GPTQ run sets what it did, as the config said before GPTQ could run either way.
    public var trueSequential = true

    /// A scheme of `bits` in groups of `groupSize` (nil: per channel).
    public init(bits: Int, groupSize: Int?, symmetric: Bool = true, format: IntegerFormat = .packQuantized) {
        self.bits = bits
        self.groupSize = groupSize
        self.symmetric = symmetric
        self.format = format
    }

    /// "int4" or "int8".
    public var schemeName: String { "int\(bits)" }
    /// E.g. "int4 pack-quantized (groups of 64, symmetric)".
    public var description: String {
        let grouping = groupSize.map { "groups of \($0)" } ?? "per channel"
        return "int\(bits) \(format.rawValue) (\(grouping), \(symmetric ? "symmetric" : "asymmetric")\(method == "rtn" ? "" : ", \(method)")"
            + "\(actOrder ? ", act-order" : ""))"
    }

    /// Throws unless bits are 4 or 8 and the group size is positive.
    public func validate() throws {
        guard bits == 4 || bits == 8 else {
            throw QuantizationError.invalidBlockSize(scheme: schemeName, blockSize: bits, reason: "expected 4 or 8 bits")
        }
        if let groupSize, groupSize <= 0 {
            throw QuantizationError.invalidBlockSize(scheme: schemeName, blockSize: groupSize, reason: "expected a positive group size")
        }
    }

    /// The reference whose round-to-nearest the format follows.
    public var roundingRule: IntegerRoundingRule {
        switch format {
        case .packQuantized: return .compressedTensors
        case .gptq: return .gptq
        case .awq: return .awq
        }
    }

    /// Whether the codes are symmetric as stored (AWQ GEMM always has zero points).
    public var storesSymmetric: Bool { symmetric && format != .awq }

    /// The columns per group for a row of `columns`.
    public func groupColumns(_ columns: Int) -> Int { groupSize.map { Swift.min($0, columns) } ?? columns }

    /// The dtype scales are stored in: the weight's own for compressed-tensors, F16 for GPTQ and AWQ.
    public func scaleType(originalType: DType) -> DType {
        if format != .packQuantized { return .f16 }
        return [.bf16, .f16].contains(originalType) ? originalType : .f32
    }

    /// Round-to-nearest by the format's reference, then the format's parts.
    public func encode(name: String, shape: [Int], originalType: DType, values x: UnsafeBufferPointer<Float>, optimizeScales: Bool,
                       importance: [Float]?, threads: ThreadBudget) -> (encoded: EncodedTensor, plain: EncodedTensor?) {
        let codes = IntegerQuantizer.roundToNearest(x, rows: shape[0], columns: shape[1], bits: bits, groupSize: groupColumns(shape[1]),
                                                    symmetric: storesSymmetric, rule: roundingRule,
                                                    arithmetic: originalType, scaleType: scaleType(originalType: originalType))
        return (encode(codes: codes, name: name, shape: shape, originalType: originalType), nil)
    }

    /// The format's parts for codes chosen elsewhere (GPTQ, AWQ).
    public func encode(codes: IntegerCodes, name: String, shape: [Int], originalType: DType) -> EncodedTensor {
        switch format {
        case .packQuantized: return PackQuantizedLayout.encode(codes, name: name, shape: shape, originalType: originalType, scheme: self)
        case .gptq: return GPTQLayout.encode(codes, name: name, shape: shape, originalType: originalType, scheme: self)
        case .awq: return AWQLayout.encode(codes, name: name, shape: shape, originalType: originalType, scheme: self)
        }
    }

    /// pack-quantized's parts of a 2-D weight (words, scales, shape, zero points when asymmetric);
    /// nil for GPTQ and AWQ, and for shapes the format refuses.
    public func partSpecs(name: String, shape: [Int], originalType: DType) -> [TensorSpec]? {
        guard format == .packQuantized, shape.count == 2, shape[1] > 0 else { return nil }
        let columns = shape[1]
        let groups = (columns + groupColumns(columns) - 1) / groupColumns(columns)
        return PackQuantizedLayout.partSpecs(name: name, rows: shape[0], columns: columns, groups: groups, bits: bits,
                                             scaleType: scaleType(originalType: originalType), symmetric: storesSymmetric)
    }

    /// Decodes parts made by `encode`, as the format's loader does.
    public func decode(_ tensor: EncodedTensor, into out: UnsafeMutableBufferPointer<Float>, threads: ThreadBudget) {
        let (rows, words) = switch format {
        case .packQuantized: PackQuantizedLayout.rows(of: tensor, scheme: self)
        case .gptq: GPTQLayout.rows(of: tensor, scheme: self)
        case .awq: AWQLayout.rows(of: tensor)
        }
        words.withUnsafeBytes { rows.decode($0, into: out, threads: threads) }
    }

    /// The format's `quantization_config`.
    public func quantizationConfig(computeType: DType, skippedModules skipped: [String]) -> JSONValue {
        switch format {
        case .packQuantized: return PackQuantizedLayout.config(self, skipped: skipped)
        case .gptq: return GPTQLayout.config(self, skipped: skipped)
        case .awq: return AWQLayout.config(self, skipped: skipped)
        }
    }

    /// A weight whose rows the group size does not divide: refused, as vLLM and both references require.
    public func refusal(selected: [(name: String, shape: [Int])], file: String) -> Error? {
        if format == .awq && bits != 4 {
            return QuantizationError.invalidBlockSize(scheme: schemeName, blockSize: groupSize ?? -1, reason: "AWQ GEMM holds 4-bit codes only")
        }
        // GPTQ packs whole words down K and across N; AWQ across N: the loaders need whole words.
        let perWord = 32 / bits
        for (name, shape) in selected where shape.count == 2 {
            let (rows, columns) = (shape[0], shape[1])
            if let groupSize, columns % groupSize != 0 {
                return QuantizationError.groupSizeDoesNotDivide(file: file, tensor: name, columns: columns, groupSize: groupSize)
            }
            let words = format == .gptq ? (rows % perWord == 0 && columns % perWord == 0) : format == .awq ? rows % 8 == 0 : true
            if !words {
                return QuantizationError.unsupportedShape(file: file, tensor: name, shape: shape,
                                                          expected: format == .gptq ? "rows and columns that are multiples of \(perWord) for GPTQ's words"
                                                              : "a multiple of 8 rows for AWQ's words")
            }
        }
        return nil
    }

    /// What the reader should know about the written format.
    public func notes(selected: [(name: String, shape: [Int])]) -> [String] {
        var notes: [String] = []
        if format == .gptq && !symmetric {
            notes.append("asymmetric GPTQ is written with v2 zero points (checkpoint_format gptq_v2): v1 cannot store a zero point of 0")
        }
        return notes
    }
}

extension QuantizationScheme {
    /// An error refusing these weights before anything is written, nil when all can be encoded.
    public func refusal(selected: [(name: String, shape: [Int])], file: String) -> Error? { nil }
}

/// Reads and writes compressed-tensors `pack-quantized` weights.
public enum PackQuantizedLayout: QuantizedLayout {
    /// compressed-tensors' name for the part `suffix` of the weight `name` (`P.weight` → `P.weight_packed`).
    static func part(_ name: String, _ suffix: String) -> String { name + "_" + suffix }

    /// The parts of `codes`: words along each row, scales in the weight's dtype, the shape as I64,
    /// zero points packed along the output rows when asymmetric, `g_idx` when act-order permuted the groups.
    static func encode(_ codes: IntegerCodes, name: String, shape: [Int], originalType: DType, scheme: IntegerScheme) -> EncodedTensor {
        let (rows, columns, groups) = (codes.rows, codes.columns, codes.groups)
        let words = IntegerPacking.packRows(codes.codes, rows: rows, columns: columns, bits: codes.bits)
        let specs = partSpecs(name: name, rows: rows, columns: columns, groups: groups, bits: codes.bits, scaleType: codes.scaleType,
                              symmetric: codes.symmetric)
        var parts: [(spec: TensorSpec, bytes: [UInt8])] = [
            (specs[0], IntegerPacking.bytes(of: words)),
            (specs[1], FloatValues.bytes(codes.scales, as: codes.scaleType)),
            (specs[2], IntegerPacking.bytes(of: [Int64(rows), Int64(columns)])),
        ]
        if !codes.symmetric {
            let zeros = IntegerPacking.packColumns(codes.zeros, rows: rows, columns: groups, bits: codes.bits)
            parts.append((specs[3], IntegerPacking.bytes(of: zeros)))
        }
        if let index = codes.groupIndex, !isMonotonic(index) {
            parts.append((TensorSpec(name: part(name, "g_idx"), dtype: .i32, shape: [columns]), IntegerPacking.bytes(of: index)))
        }
        return EncodedTensor(name: name, shape: shape, originalType: originalType, scheme: scheme, parts: parts)
    }

    /// The parts before any `g_idx`: words `[rows, ceil(columns/per word)]` I32, scales `[rows, groups]`,
    /// the shape I64 `[2]`, and zero points `[ceil(rows/per word), groups]` I32 packed down the rows when asymmetric.
    static func partSpecs(name: String, rows: Int, columns: Int, groups: Int, bits: Int, scaleType: DType, symmetric: Bool) -> [TensorSpec] {
        let perWord = 32 / bits
        var specs = [
            TensorSpec(name: part(name, "packed"), dtype: .i32, shape: [rows, rows == 0 ? 0 : (columns + perWord - 1) / perWord]),
            TensorSpec(name: part(name, "scale"), dtype: scaleType, shape: [rows, groups]),
            TensorSpec(name: part(name, "shape"), dtype: .i64, shape: [2]),
        ]
        if !symmetric {
            specs.append(TensorSpec(name: part(name, "zero_point"), dtype: .i32, shape: [(rows + perWord - 1) / perWord, groups]))
        }
        return specs
    }

    /// The decoder for parts made by `encode`, and the packed words' bytes.
    static func rows(of tensor: EncodedTensor, scheme: IntegerScheme) -> (PackedIntegerRows, [UInt8]) {
        let (rows, columns) = (tensor.shape[0], tensor.shape[1])
        let scaleSpec = tensor.parts[1].spec
        let scales = FloatValues.array(tensor.parts[1].bytes, dtype: scaleSpec.dtype)
        let groups = scaleSpec.shape[1]
        let zeros = tensor.part("_zero_point").map { IntegerPacking.unpackColumns(IntegerPacking.words($0), rows: rows, columns: groups, bits: scheme.bits) }
            ?? [UInt8](repeating: UInt8(1 << (scheme.bits - 1)), count: rows * groups)
        let groupOf = tensor.part("_g_idx").map { IntegerPacking.words($0).map(Int32.init(bitPattern:)) }
            ?? PackedIntegerRows.contiguousGroups(columns: columns, groupSize: scheme.groupColumns(columns))
        return (PackedIntegerRows(order: .alongRows, bits: scheme.bits, rows: rows, columns: columns, groups: groups, scales: scales, zeros: zeros,
                                  groupOfColumn: groupOf, scaleType: scaleSpec.dtype), tensor.parts[0].bytes)
    }

    /// compressed-tensors' `quantization_config` as 0.20 writes it (fixtures/w4a16/README.md); `actorder` only when act-order ordered the columns.
    static func config(_ scheme: IntegerScheme, skipped: [String]) -> JSONValue {
        var weights: [(String, JSONValue)] = [
            ("dynamic", false), ("group_size", scheme.groupSize.map { JSONValue($0) } ?? .null), ("num_bits", JSONValue(scheme.bits)),
            ("strategy", scheme.groupSize == nil ? "channel" : "group"), ("symmetric", .bool(scheme.symmetric)), ("type", "int"),
        ]
        // compressed-tensors 0.20 refuses actorder "group" (a permuted g_idx); act-order with static groups leaves the file as it is: "weight".
        if scheme.actOrder { weights.insert(("actorder", "weight"), at: 0) }
        return [
            "config_groups": ["group_0": [
                "format": "pack-quantized", "input_activations": nil, "output_activations": nil, "targets": ["Linear"], "weights": .object(weights),
            ]],
            "format": "pack-quantized", "global_compression_ratio": nil, "ignore": .array(skipped.map { .string($0) }),
            "kv_cache_scheme": nil, "moe_sparsity_config": nil, "quant_method": "compressed-tensors", "quantization_status": "compressed",
            "sparsity_config": [:], "transform_config": [:], "version": "0.20.0",
        ]
    }

    /// Every `P.weight_packed` I32 with its scale and shape beside it, read by the config's
    /// `pack-quantized` group (bits, group size) or, without one, by the parts' shapes.
    public static func detect(in checkpoint: Checkpoint, fallbackDType: DType) throws -> [LogicalTensor] {
        let quantization = checkpoint.config?["quantization_config"]
        let weightsArgs = quantization?["config_groups"]?.objectMembers?.first { $0.1["format"]?.stringValue ?? quantization?["format"]?.stringValue == "pack-quantized" }?.1["weights"]
        var found: [LogicalTensor] = []
        for entry in checkpoint.entries where entry.info.name.hasSuffix(".weight_packed") {
            let file = checkpoint.files[entry.fileIndex].path
            let packedName = entry.info.name
            let name = String(packedName.dropLast("_packed".count))
            func required(_ suffix: String) throws -> Checkpoint.Entry {
                guard let e = checkpoint.entry(named: part(name, suffix)) else {
                    throw QuantizedLayoutError.missingPart(file: file, tensor: packedName, part: part(name, suffix))
                }
                return e
            }
            let scaleEntry = try required("scale"), shapeEntry = try required("shape")
            guard entry.info.dtype == .i32, entry.info.shape.count == 2 else {
                throw QuantizedLayoutError.partShapeMismatch(file: file, tensor: packedName, expected: "I32 [out, words]",
                                                             actual: "\(entry.info.dtype.rawValue) \(entry.info.shape)")
            }
            guard [.i32, .i64].contains(shapeEntry.info.dtype), shapeEntry.info.elementCount == 2 else {
                throw QuantizedLayoutError.partShapeMismatch(file: file, tensor: shapeEntry.info.name, expected: "I32 or I64 [2]",
                                                             actual: "\(shapeEntry.info.dtype.rawValue) \(shapeEntry.info.shape)")
            }
            let shape = checkpoint.view(shapeEntry).withBytes { raw in
                (0..<2).map { shapeEntry.info.dtype == .i64 ? Int(raw.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self))
                    : Int(raw.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self)) }
            }
            let (rows, columns) = (shape[0], shape[1])
            let wordsPerRow = entry.info.shape[1]
            guard rows == entry.info.shape[0], rows > 0, columns > 0, columns <= wordsPerRow * 32 else {
                throw QuantizedLayoutError.partShapeMismatch(file: file, tensor: shapeEntry.info.name,
                                                             expected: "[\(entry.info.shape[0]), at most \(wordsPerRow * 32)] as weight_packed holds",
                                                             actual: "\(shape)")
            }
            // Bits: the config's, else the only width whose words fit the row exactly.
            let bits: Int
            if let configured = weightsArgs?["num_bits"]?.intValue {
                bits = configured
            } else {
                let fits = [2, 4, 8].filter { ($0 * columns + 31) / 32 == wordsPerRow }
                guard fits.count == 1 else {
                    throw QuantizedLayoutError.unsupportedVariant(file: file, tensor: packedName, found: "no quantization_config naming num_bits",
                                                                  expected: "a config or words that fit one width")
                }
                bits = fits[0]
            }
            guard [2, 4, 8].contains(bits) else {
                throw QuantizedLayoutError.unsupportedVariant(file: file, tensor: packedName, found: "\(bits)-bit pack-quantized",
                                                              expected: "2, 4 or 8 bits")
            }
            guard (bits * columns + 31) / 32 == wordsPerRow else {
                throw QuantizedLayoutError.partShapeMismatch(file: file, tensor: packedName, expected: "[\(rows), \((bits * columns + 31) / 32)] for \(columns) \(bits)-bit columns",
                                                             actual: "\(entry.info.shape)")
            }
            guard [.f32, .f16, .bf16].contains(scaleEntry.info.dtype), scaleEntry.info.shape.count == 2, scaleEntry.info.shape[0] == rows,
                  (1...columns).contains(scaleEntry.info.shape[1]) else {
                throw QuantizedLayoutError.partShapeMismatch(file: file, tensor: scaleEntry.info.name, expected: "F32, F16 or BF16 [\(rows), groups ≤ \(columns)]",
                                                             actual: "\(scaleEntry.info.dtype.rawValue) \(scaleEntry.info.shape)")
            }
            let groups = scaleEntry.info.shape[1]
            var parts = [entry, scaleEntry, shapeEntry]
            // Zero points: [ceil(rows·b/32), groups] packed along the rows.
            var zeros = [UInt8](repeating: UInt8(1 << (bits - 1)), count: rows * groups)
            let zeroEntry = checkpoint.entry(named: part(name, "zero_point"))
            if weightsArgs?["symmetric"]?.boolValue == false && zeroEntry == nil {
                throw QuantizedLayoutError.missingPart(file: file, tensor: packedName, part: part(name, "zero_point"))
            }
            if let zeroEntry {
                let wordRows = (rows * bits + 31) / 32
                guard zeroEntry.info.dtype == .i32, zeroEntry.info.shape == [wordRows, groups] else {
                    throw QuantizedLayoutError.partShapeMismatch(file: file, tensor: zeroEntry.info.name, expected: "I32 [\(wordRows), \(groups)]",
                                                                 actual: "\(zeroEntry.info.dtype.rawValue) \(zeroEntry.info.shape)")
                }
                zeros = IntegerPacking.unpackColumns(PackedIntegerRows.words(checkpoint.view(zeroEntry)), rows: rows, columns: groups, bits: bits)
                parts.append(zeroEntry)
            }
            // Groups: g_idx when act-order wrote one, else the configured size (or what the scales imply).
            var groupOf: [Int32]
            let groupSize: Int
            if let indexEntry = checkpoint.entry(named: part(name, "g_idx")) {
                groupOf = try GPTQLayout.groupIndex(checkpoint, indexEntry, columns: columns, groups: groups, file: file)
                groupSize = (columns + groups - 1) / groups
                parts.append(indexEntry)
            } else {
                let configured = weightsArgs?["strategy"]?.stringValue == "channel" ? columns : weightsArgs?["group_size"]?.intValue
                groupSize = configured.map { $0 <= 0 ? columns : $0 } ?? (columns + groups - 1) / groups
                guard (columns + groupSize - 1) / groupSize == groups else {
                    throw QuantizedLayoutError.partShapeMismatch(file: file, tensor: scaleEntry.info.name,
                                                                 expected: "\((columns + groupSize - 1) / groupSize) groups of \(groupSize) per row",
                                                                 actual: "\(groups)")
                }
                groupOf = PackedIntegerRows.contiguousGroups(columns: columns, groupSize: groupSize)
            }
            let scales = FloatValues.array(checkpoint.view(scaleEntry))
            let decoder = PackedIntegerRows(order: .alongRows, bits: bits, rows: rows, columns: columns, groups: groups, scales: scales,
                                            zeros: zeros, groupOfColumn: groupOf, scaleType: scaleEntry.info.dtype)
            var scheme = IntegerScheme(bits: bits, groupSize: groupSize == columns && groups == 1 ? nil : groupSize, symmetric: zeroEntry == nil)
            scheme.actOrder = checkpoint.entry(named: part(name, "g_idx")) != nil
            found.append(LogicalTensor(name: name, shape: [rows, columns], dtype: fallbackDType,
                                       storage: .quantized(PackedIntegerWeight(parts: parts, decoder: decoder, scheme: scheme)),
                                       fileIndex: entry.fileIndex))
        }
        return found
    }

    static func isMonotonic(_ index: [Int32]) -> Bool { zip(index, index.dropFirst()).allSatisfy { $0 <= $1 } }
}
