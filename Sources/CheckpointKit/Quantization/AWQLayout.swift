/// Reads AutoAWQ's GEMM checkpoints (`quant_method: awq`, `version: gemm`); the other AWQ
/// layouts (GEMV, GEMV-fast, Marlin, exllama) are refused by name.
public enum AWQLayout: QuantizedLayout {
    /// Every `P.qweight` of a checkpoint whose config says `awq` (or, without a config, whose shapes are AWQ GEMM's).
    public static func detect(in checkpoint: Checkpoint, fallbackDType: DType) throws -> [LogicalTensor] {
        let q = checkpoint.config?["quantization_config"]
        let method = q?["quant_method"]?.stringValue
        guard method == nil || method == "awq" else { return [] }
        var found: [LogicalTensor] = []
        for entry in checkpoint.entries where entry.info.name.hasSuffix(".qweight") {
            let file = checkpoint.files[entry.fileIndex].path
            let base = String(entry.info.name.dropLast("qweight".count))
            guard let scales = checkpoint.entry(named: base + "scales") else {
                throw QuantizedLayoutError.missingPart(file: file, tensor: entry.info.name, part: base + "scales")
            }
            guard entry.info.shape.count == 2, scales.info.shape.count == 2, entry.info.shape.allSatisfy({ $0 > 0 }),
                  scales.info.shape.allSatisfy({ $0 > 0 }) else {
                throw QuantizedLayoutError.partShapeMismatch(file: file, tensor: entry.info.name, expected: "2-D qweight and scales",
                                                             actual: "\(entry.info.shape) and \(scales.info.shape)")
            }
            let (columns, rows, groups) = (entry.info.shape[0], scales.info.shape[1], scales.info.shape[0])
            // Without a config, GPTQ's qweight [K/8, N] is told apart by its shape.
            if method == nil && entry.info.shape[1] == rows { continue }
            let version = (q?["version"]?.stringValue ?? "gemm").lowercased()
            guard version == "gemm" else {
                throw QuantizedLayoutError.unsupportedVariant(file: file, tensor: entry.info.name, found: "AWQ version '\(version)'",
                                                              expected: "the GEMM layout (version gemm)")
            }
            let bits = q?["bits"]?.intValue ?? q?["w_bit"]?.intValue ?? 4
            guard bits == 4 else {
                throw QuantizedLayoutError.unsupportedVariant(file: file, tensor: entry.info.name, found: "\(bits)-bit AWQ", expected: "4 bits")
            }
            guard entry.info.dtype == .i32, rows % 8 == 0, entry.info.shape[1] * 8 == rows else {
                let hint = entry.info.shape == [rows, columns / 8] || entry.info.shape[0] == rows ? " (the GEMV layout)" : ""
                throw QuantizedLayoutError.unsupportedVariant(file: file, tensor: entry.info.name,
                                                              found: "qweight \(entry.info.dtype.rawValue) \(entry.info.shape)\(hint)",
                                                              expected: "AWQ GEMM's I32 [K, N/8] = [\(columns), \(rows / 8)] with nibble order 0,2,4,6,1,3,5,7")
            }
            guard let zerosEntry = checkpoint.entry(named: base + "qzeros") else {
                throw QuantizedLayoutError.missingPart(file: file, tensor: entry.info.name, part: base + "qzeros")
            }
            guard zerosEntry.info.dtype == .i32, zerosEntry.info.shape == [groups, rows / 8] else {
                throw QuantizedLayoutError.partShapeMismatch(file: file, tensor: zerosEntry.info.name, expected: "I32 [\(groups), \(rows / 8)]",
                                                             actual: "\(zerosEntry.info.dtype.rawValue) \(zerosEntry.info.shape)")
            }
            let groupSize = (q?["group_size"]?.intValue ?? q?["q_group_size"]?.intValue).map { $0 <= 0 ? columns : $0 } ?? columns / groups
            guard [.f16, .bf16, .f32].contains(scales.info.dtype), groupSize > 0, columns % groupSize == 0, columns / groupSize == groups else {
                throw QuantizedLayoutError.partShapeMismatch(file: file, tensor: scales.info.name,
                                                             expected: "F16 [K/\(groupSize), N] = [\(columns / max(groupSize, 1)), \(rows)] (K a multiple of the group size)",
                                                             actual: "\(scales.info.dtype.rawValue) \(scales.info.shape)")
            }
            // Zeros [groups, N/8] in AWQ order → [N, groups].
            let zeros = unpackZeros(PackedIntegerRows.words(checkpoint.view(zerosEntry)), groups: groups, rows: rows)
            let stored = FloatValues.array(checkpoint.view(scales))
            let decoder = PackedIntegerRows(order: .awq, bits: 4, rows: rows, columns: columns, groups: groups,
                                            scales: PackedIntegerRows.transposed(stored, rows: groups, columns: rows), zeros: zeros,
                                            groupOfColumn: PackedIntegerRows.contiguousGroups(columns: columns, groupSize: groupSize),
                                            scaleType: scales.info.dtype)
            let scheme = IntegerScheme(bits: 4, groupSize: groups == 1 ? nil : groupSize, symmetric: false, format: .awq)
            found.append(LogicalTensor(name: base + "weight", shape: [rows, columns], dtype: fallbackDType,
                                       storage: .quantized(PackedIntegerWeight(parts: [entry, zerosEntry, scales], decoder: decoder, scheme: scheme)),
                                       fileIndex: entry.fileIndex))
        }
        return found
    }

    /// AutoAWQ GEMM's parts for `codes` (`WQLinear_GEMM.from_linear`): codes and zeros packed along N in its nibble order, F16 scales.
    static func encode(_ codes: IntegerCodes, name: String, shape: [Int], originalType: DType, scheme: IntegerScheme) -> EncodedTensor {
        let (rows, columns, groups) = (codes.rows, codes.columns, codes.groups)
        let base = name.hasSuffix(".weight") ? String(name.dropLast("weight".count)) : name + "."
        let qweight = IntegerPacking.packAWQ(PackedIntegerRows.transposed(codes.codes, rows: rows, columns: columns), rows: columns, columns: rows)
        let qzeros = IntegerPacking.packAWQ(PackedIntegerRows.transposed(codes.zeros, rows: rows, columns: groups), rows: groups, columns: rows)
        let scales = PackedIntegerRows.transposed(codes.scales, rows: rows, columns: groups)
        return EncodedTensor(name: name, shape: shape, originalType: originalType, scheme: scheme, parts: [
            (TensorSpec(name: base + "qweight", dtype: .i32, shape: [columns, rows / 8]), IntegerPacking.bytes(of: qweight)),
            (TensorSpec(name: base + "qzeros", dtype: .i32, shape: [groups, rows / 8]), IntegerPacking.bytes(of: qzeros)),
            (TensorSpec(name: base + "scales", dtype: .f16, shape: [groups, rows]), FloatValues.bytes(scales, as: .f16)),
        ])
    }

    /// The decoder for parts made by `encode`, and the packed words' bytes.
    static func rows(of tensor: EncodedTensor) -> (PackedIntegerRows, [UInt8]) {
        let (rows, columns) = (tensor.shape[0], tensor.shape[1])
        let groups = tensor.parts[2].spec.shape[0]
        let zeros = unpackZeros(IntegerPacking.words(tensor.parts[1].bytes), groups: groups, rows: rows)
        let scales = FloatValues.array(tensor.parts[2].bytes, dtype: .f16)
        return (PackedIntegerRows(order: .awq, bits: 4, rows: rows, columns: columns, groups: groups,
                                  scales: PackedIntegerRows.transposed(scales, rows: groups, columns: rows), zeros: zeros,
                                  groupOfColumn: PackedIntegerRows.contiguousGroups(columns: columns, groupSize: columns / groups), scaleType: .f16),
                tensor.parts[0].bytes)
    }

    /// AutoAWQ's `quantization_config` as transformers saves it.
    static func config(_ scheme: IntegerScheme, skipped: [String]) -> JSONValue {
        ["quant_method": "awq", "zero_point": true, "group_size": JSONValue(scheme.groupSize ?? -1), "bits": 4, "version": "gemm",
         "modules_to_not_convert": skipped.filter { $0 != "lm_head" }.isEmpty ? .null : .array(skipped.map { .string($0) })]
    }

    /// `[N, groups]` zero points from `qzeros` words `[groups, N/8]` in AWQ's nibble order.
    static func unpackZeros(_ words: [UInt32], groups: Int, rows: Int) -> [UInt8] {
        PackedIntegerRows.transposed(IntegerPacking.unpackAWQ(words, rows: groups, columns: rows), rows: groups, columns: rows)
    }
}
