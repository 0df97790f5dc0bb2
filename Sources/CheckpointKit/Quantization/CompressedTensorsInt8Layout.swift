/// compressed-tensors `int-quantized` int8, symmetric, one scale per `groupSize` values of a row:
/// `P.weight` I8 `[out, in]` beside `P.weight_scale` `[out, ceil(in/g)]`.
public struct Int8Scheme: QuantizationScheme, Equatable {
    /// Consecutive values of a row that share one scale.
    public var groupSize: Int
    /// The dtype `weight_scale` is stored in (F32, F16 or BF16).
    public var scaleType: DType

    /// An int8 scheme; by default groups of 64 with F32 scales.
    public init(groupSize: Int = 64, scaleType: DType = .f32) {
        self.groupSize = groupSize
        self.scaleType = scaleType
    }

    /// Always "int8".
    public var schemeName: String { "int8" }
    /// E.g. "int8 (groups of 64, F32 scales)".
    public var description: String { "int8 (groups of \(groupSize), \(scaleType.rawValue) scales)" }

    /// Throws unless the group size is positive and the scale dtype is F32, F16 or BF16.
    public func validate() throws {
        guard groupSize > 0 else {
            throw QuantizationError.invalidBlockSize(scheme: "int8", blockSize: groupSize, reason: "expected a positive group size")
        }
        guard [.f32, .f16, .bf16].contains(scaleType) else { throw ConversionError.unsupportedTargetType(scaleType.torchName) }
    }

    /// Encodes a 2-D weight to `P.weight` and `P.weight_scale`; with `optimizeScales` the searched-scale encoding comes first and the plain one second.
    public func encode(name: String, shape: [Int], originalType: DType, values x: UnsafeBufferPointer<Float>, optimizeScales: Bool,
                       importance: [Float]?, threads: ThreadBudget) -> (encoded: EncodedTensor, plain: EncodedTensor?) {
        let (rows, columns) = (shape[0], shape[1])
        let plain = CompressedTensorsInt8Layout.encode(x, name: name, shape: shape, originalType: originalType, groupSize: groupSize,
                                                       scaleType: scaleType, fixedScales: nil, threads: threads)
        guard optimizeScales else { return (plain, nil) }
        let fixed = ScaleSearch.int8Scales(x, rows: rows, columns: columns, groupSize: groupSize, scaleType: scaleType, importance: importance,
                                           threads: threads)
        return (CompressedTensorsInt8Layout.encode(x, name: name, shape: shape, originalType: originalType, groupSize: groupSize,
                                                   scaleType: scaleType, fixedScales: fixed, threads: threads), plain)
    }

    /// `P.weight` I8 of the weight's shape and `P.weight_scale` `[rows, ceil(columns/g)]` in the scale dtype; nil unless 2-D.
    public func partSpecs(name: String, shape: [Int], originalType: DType) -> [TensorSpec]? {
        guard shape.count == 2 else { return nil }
        return CompressedTensorsInt8Layout.partSpecs(name: name, shape: shape, groupSize: groupSize, scaleType: scaleType)
    }

    /// Decodes parts made by `encode`: `q × scale` per group, into `out` row-major.
    public func decode(_ tensor: EncodedTensor, into out: UnsafeMutableBufferPointer<Float>, threads: ThreadBudget) {
        let q = tensor.parts[0].bytes
        let scales = FloatValues.array(tensor.parts[1].bytes, dtype: scaleType)
        q.withUnsafeBytes { raw in
            scales.withUnsafeBufferPointer { s in
                BlockInt8Quantizer.dequantize(raw.bindMemory(to: Int8.self), scales: s, rows: tensor.shape[0], columns: tensor.shape[1],
                                              groupSize: groupSize, into: out, threads: threads)
            }
        }
    }

    /// Ranges decoded code by code against their group's scale (read once as f32): `q · scale`, as `decode`.
    public func rangeDecoder(for tensor: EncodedTensor) -> ((Range<Int>, UnsafeMutablePointer<Float>) -> Void)? {
        let q = tensor.parts[0].bytes, scales = FloatValues.array(tensor.parts[1].bytes, dtype: scaleType)
        let columns = tensor.shape[1], groupSize = groupSize
        return { range, out in
            q.withUnsafeBytes { raw in
                scales.withUnsafeBufferPointer { s in
                    BlockInt8Quantizer.dequantize(raw.bindMemory(to: Int8.self), scales: s, columns: columns, groupSize: groupSize,
                                                  range: range, into: out)
                }
            }
        }
    }

    /// compressed-tensors 0.20's `quantization_config` for int8 groups, the skipped modules as its `ignore` list.
    public func quantizationConfig(computeType: DType, skippedModules skipped: [String]) -> JSONValue {
        // As compressed-tensors 0.20 writes it; the per-group "format" is what makes its loader
        // read the I8 weight instead of inferring pack-quantized (fixtures/quant/README.md).
        [
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
        ]
    }

    /// A warning when `groupSize` does not divide some selected tensors' columns, which compressed-tensors cannot load.
    public func notes(selected: [(name: String, shape: [Int])]) -> [String] {
        let ragged = selected.filter { $0.shape.count == 2 && $0.shape[1] % groupSize != 0 }
        guard let first = ragged.first else { return [] }
        return ["group size \(groupSize) does not divide the input dimension of \(ragged.count) tensor(s) (e.g. '\(first.name)', "
            + "\(first.shape[1]) columns): their last group is partial, which compressed-tensors does not load"]
    }
}

/// One stored compressed-tensors int8 weight.
public struct Int8Weight: QuantizedWeight {
    /// `P.weight`: I8 `[out, in]`.
    public var weight: Checkpoint.Entry
    /// `P.weight_scale`: `[out, groups per row]` in a float dtype.
    public var scale: Checkpoint.Entry
    /// Columns per scale: the config's `group_size`, else inferred from the scale's shape.
    public var groupSize: Int
    /// `weight_zero_point` / `weight_g_idx` when the file has them (unused by symmetric int8).
    public var extras: [Checkpoint.Entry] = []

    /// Int8 with this group size and the stored scale dtype.
    public var scheme: any QuantizationScheme { Int8Scheme(groupSize: groupSize, scaleType: scale.info.dtype) }
    /// The weight, its scale, then any extras.
    public var parts: [Checkpoint.Entry] { [weight, scale] + extras }

    /// `q × scale` per group into `out`, `shape` being `[rows, columns]`, row-major.
    public func decode(from checkpoint: Checkpoint, shape: [Int], into out: UnsafeMutableBufferPointer<Float>, threads: ThreadBudget) {
        let scales = FloatValues.array(checkpoint.view(scale))
        checkpoint.view(weight).withBytes { weightBytes in
            scales.withUnsafeBufferPointer { sc in
                BlockInt8Quantizer.dequantize(weightBytes.bindMemory(to: Int8.self), scales: sc, rows: shape[0], columns: shape[1],
                                              groupSize: groupSize, into: out, threads: threads)
            }
        }
    }
}

extension Int8Weight {
    /// Rows decoded a tile at a time (`q × scale` per group); the scales are widened once.
    public func storedRows(from checkpoint: Checkpoint, shape: [Int]) -> StoredRows? {
        guard shape.count == 2 else { return nil }
        let (rows, columns) = (shape[0], shape[1])
        let scales = FloatValues.array(checkpoint.view(scale))
        let groups = BlockInt8Quantizer.groupsPerRow(columns: columns, groupSize: groupSize)
        let weight = checkpoint.view(self.weight)
        let groupSize = self.groupSize
        return StoredRows(rows: rows, columns: columns, storedBytes: weight.byteCount + scales.count * 4) { first, count, out in
            weight.withBytes { raw in
                scales.withUnsafeBufferPointer { sc in
                    let q = raw.bindMemory(to: Int8.self)
                    BlockInt8Quantizer.dequantize(UnsafeBufferPointer(rebasing: q[(first * columns)..<((first + count) * columns)]),
                                                  scales: UnsafeBufferPointer(rebasing: sc[(first * groups)..<((first + count) * groups)]),
                                                  rows: count, columns: columns, groupSize: groupSize,
                                                  into: UnsafeMutableBufferPointer(start: out, count: count * columns), threads: .single)
                }
            }
        }
    }
}

/// Finds and encodes compressed-tensors int8 weights.
public enum CompressedTensorsInt8Layout: QuantizedLayout {
    /// Every 2-D I8 `P.weight` with a `P.weight_scale` beside it; a scale whose shape disagrees throws.
    public static func detect(in checkpoint: Checkpoint, fallbackDType: DType) throws -> [LogicalTensor] {
        let configGroupSize = checkpoint.config.flatMap(groupSize(config:))
        var found: [LogicalTensor] = []
        for entry in checkpoint.entries where entry.info.dtype == .i8 && entry.info.shape.count == 2 {
            let name = entry.info.name
            guard name.hasSuffix(".weight"), let scale = checkpoint.entry(named: String(name.dropLast(".weight".count)) + ".weight_scale")
            else { continue }
            let file = checkpoint.files[entry.fileIndex].path
            let (rows, columns) = (entry.info.shape[0], entry.info.shape[1])
            let groups = scale.info.shape.count == 2 ? scale.info.shape[1] : 0
            guard scale.info.shape.first == rows, groups > 0 else {
                throw QuantizedLayoutError.partShapeMismatch(file: file, tensor: scale.info.name, expected: "[\(rows), groups]",
                                                             actual: "\(scale.info.shape)")
            }
            guard [.f32, .f16, .bf16].contains(scale.info.dtype) else {
                throw QuantizedLayoutError.partShapeMismatch(file: file, tensor: scale.info.name, expected: "F32, F16 or BF16 scales",
                                                             actual: scale.info.dtype.rawValue)
            }
            if let configGroupSize, configGroupSize <= 0 {
                throw QuantizedLayoutError.partShapeMismatch(file: file, tensor: scale.info.name,
                                                             expected: "a positive group_size in quantization_config", actual: "\(configGroupSize)")
            }
            let groupSize = configGroupSize ?? (columns + groups - 1) / groups
            guard BlockInt8Quantizer.groupsPerRow(columns: columns, groupSize: groupSize) == groups else {
                throw QuantizedLayoutError.partShapeMismatch(file: file, tensor: scale.info.name,
                                                             expected: "\(BlockInt8Quantizer.groupsPerRow(columns: columns, groupSize: groupSize)) groups per row",
                                                             actual: "\(groups)")
            }
            let extras = ["weight_zero_point", "weight_g_idx"].compactMap { checkpoint.entry(named: String(name.dropLast("weight".count)) + $0) }
            found.append(LogicalTensor(name: name, shape: entry.info.shape, dtype: fallbackDType,
                                       storage: .quantized(Int8Weight(weight: entry, scale: scale, groupSize: groupSize, extras: extras)),
                                       fileIndex: entry.fileIndex))
        }
        return found
    }

    /// Builds `P.weight` I8 and `P.weight_scale` from f32 values; with `fixedScales` the values
    /// are quantized against those scales instead of absmax/127.
    public static func encode(_ x: UnsafeBufferPointer<Float>, name: String, shape: [Int], originalType: DType, groupSize: Int,
                              scaleType: DType, fixedScales: [Float]?, threads: ThreadBudget) -> EncodedTensor {
        let (rows, columns) = (shape[0], shape[1])
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
        let specs = partSpecs(name: name, shape: shape, groupSize: groupSize, scaleType: scaleType)
        let scaleBytes = FloatValues.bytes(scales, as: scaleType)
        return EncodedTensor(name: name, shape: shape, originalType: originalType, scheme: Int8Scheme(groupSize: groupSize, scaleType: scaleType),
                             parts: [(specs[0], q.withUnsafeBytes { Array($0) }), (specs[1], scaleBytes)])
    }

    /// The two stored tensors of a `[rows, columns]` weight: `P.weight` I8 and `P.weight_scale` `[rows, groups]`.
    static func partSpecs(name: String, shape: [Int], groupSize: Int, scaleType: DType) -> [TensorSpec] {
        let scaleName = name.hasSuffix(".weight") ? String(name.dropLast(".weight".count)) + ".weight_scale" : name + "_scale"
        let groups = BlockInt8Quantizer.groupsPerRow(columns: shape[1], groupSize: groupSize)
        return [TensorSpec(name: name, dtype: .i8, shape: shape), TensorSpec(name: scaleName, dtype: scaleType, shape: [shape[0], groups])]
    }

    /// The weights' group size named by a compressed-tensors `quantization_config`.
    static func groupSize(config: JSONValue) -> Int? {
        guard let groups = config["quantization_config"]?["config_groups"]?.objectMembers else { return nil }
        return groups.lazy.compactMap { $0.1["weights"]?["group_size"]?.intValue }.first
    }
}
