/// Reads GPTQ checkpoints (v1 and v2, any act-order) and writes them (v1 when symmetric).
public enum GPTQLayout: QuantizedLayout {
    /// `P.weight` → `P.<suffix>` (GPTQ drops the `weight`).
    static func part(_ name: String, _ suffix: String) -> String {
        (name.hasSuffix(".weight") ? String(name.dropLast("weight".count)) : name + ".") + suffix
    }

    /// The checkpoint_format written: v1 ("gptq") for symmetric codes, v2 otherwise (v1 cannot hold a zero of 0).
    static func checkpointFormat(_ scheme: IntegerScheme) -> String { scheme.symmetric ? "gptq" : "gptq_v2" }

    /// GPTQModel's parts for `codes`: words along K per output column, zeros along N (v1: each
    /// word less 0x11…1, as GPTQModel converts v2 to v1), F16 scales, `g_idx` always.
    static func encode(_ codes: IntegerCodes, name: String, shape: [Int], originalType: DType, scheme: IntegerScheme) -> EncodedTensor {
        let (rows, columns, groups, bits) = (codes.rows, codes.columns, codes.groups, codes.bits)
        let packed = IntegerPacking.packRows(codes.codes, rows: rows, columns: columns, bits: bits)
        let qweight = PackedIntegerRows.transposed(packed, rows: rows, columns: packed.count / rows)
        var qzeros = IntegerPacking.packRows(PackedIntegerRows.transposed(codes.zeros, rows: rows, columns: groups), rows: groups, columns: rows, bits: bits)
        if checkpointFormat(scheme) == "gptq" {
            let one = (0..<(32 / bits)).reduce(UInt32(0)) { $0 | (1 << UInt32($1 * bits)) }
            qzeros = qzeros.map { $0 &- one }
        }
        let index = codes.groupIndex ?? PackedIntegerRows.contiguousGroups(columns: columns, groupSize: codes.groupSize)
        let scales = PackedIntegerRows.transposed(codes.scales, rows: rows, columns: groups)
        let parts: [(spec: TensorSpec, bytes: [UInt8])] = [
            (TensorSpec(name: part(name, "qweight"), dtype: .i32, shape: [packed.count / rows, rows]), IntegerPacking.bytes(of: qweight)),
            (TensorSpec(name: part(name, "qzeros"), dtype: .i32, shape: [groups, qzeros.count / groups]), IntegerPacking.bytes(of: qzeros)),
            (TensorSpec(name: part(name, "scales"), dtype: .f16, shape: [groups, rows]), FloatValues.bytes(scales, as: .f16)),
            (TensorSpec(name: part(name, "g_idx"), dtype: .i32, shape: [columns]), IntegerPacking.bytes(of: index)),
        ]
        return EncodedTensor(name: name, shape: shape, originalType: originalType, scheme: scheme, parts: parts)
    }

    /// The decoder for parts made by `encode`, and the packed words' bytes.
    static func rows(of tensor: EncodedTensor, scheme: IntegerScheme) -> (PackedIntegerRows, [UInt8]) {
        let (rows, columns) = (tensor.shape[0], tensor.shape[1])
        let groups = tensor.parts[2].spec.shape[0]
        let scales = FloatValues.array(tensor.parts[2].bytes, dtype: .f16)
        let zeros = unpackZeros(IntegerPacking.words(tensor.parts[1].bytes), groups: groups, rows: rows, bits: scheme.bits,
                                v1: checkpointFormat(scheme) == "gptq")
        let index = IntegerPacking.words(tensor.parts[3].bytes).map(Int32.init(bitPattern:))
        return (PackedIntegerRows(order: .alongColumns, bits: scheme.bits, rows: rows, columns: columns, groups: groups,
                                  scales: PackedIntegerRows.transposed(scales, rows: groups, columns: rows), zeros: zeros,
                                  groupOfColumn: index, scaleType: .f16), tensor.parts[0].bytes)
    }

    /// `[N, groups]` true zero points from `qzeros` words `[groups, N·b/32]`; v1 stores z − 1, read per field as AutoGPTQ does.
    static func unpackZeros(_ words: [UInt32], groups: Int, rows: Int, bits: Int, v1: Bool) -> [UInt8] {
        let stored = PackedIntegerRows.transposed(IntegerPacking.unpackRows(words, rows: groups, columns: rows, bits: bits), rows: groups, columns: rows)
        let mask = UInt8((1 << bits) - 1)
        return v1 ? stored.map { ($0 &+ 1) & mask } : stored
    }

    /// GPTQModel's `quantization_config` (also its quantize_config.json; spec §2.6).
    static func config(_ scheme: IntegerScheme, skipped: [String]) -> JSONValue {
        let format = checkpointFormat(scheme)
        return [
            "bits": JSONValue(scheme.bits), "group_size": JSONValue(scheme.groupSize ?? -1),
            "desc_act": .bool(scheme.actOrder && !scheme.staticGroups), "sym": .bool(scheme.symmetric), "lm_head": false,
            "static_groups": .bool(scheme.staticGroups), "true_sequential": .bool(scheme.trueSequential), "damp_percent": .double(scheme.damp),
            "quant_method": "gptq", "checkpoint_format": .string(format), "format": .string(format), "pack_dtype": "int32",
            "meta": ["quantizer": ["ckpt"], "act_group_aware": false, "method": .string(scheme.method), "mse": .double(scheme.mse)],
        ]
    }

    /// Validated `g_idx` values: `columns` of them, each in `0 ..< groups`.
    static func groupIndex(_ checkpoint: Checkpoint, _ entry: Checkpoint.Entry, columns: Int, groups: Int, file: String) throws -> [Int32] {
        guard entry.info.dtype == .i32, entry.info.elementCount == columns else {
            throw QuantizedLayoutError.partShapeMismatch(file: file, tensor: entry.info.name, expected: "I32 [\(columns)]",
                                                         actual: "\(entry.info.dtype.rawValue) \(entry.info.shape)")
        }
        let values = PackedIntegerRows.words(checkpoint.view(entry)).map(Int32.init(bitPattern:))
        if let bad = values.firstIndex(where: { $0 < 0 || Int($0) >= groups }) {
            throw QuantizedLayoutError.partShapeMismatch(file: file, tensor: entry.info.name, expected: "group indices in 0..<\(groups)",
                                                         actual: "\(values[bad]) at \(bad)")
        }
        return values
    }

    /// Every `P.qweight` of a checkpoint whose config says `gptq` (or, without a config, whose shapes are GPTQ's).
    public static func detect(in checkpoint: Checkpoint, fallbackDType: DType) throws -> [LogicalTensor] {
        let q = checkpoint.config?["quantization_config"]
        let method = q?["quant_method"]?.stringValue ?? q?["method"]?.stringValue
        guard method == nil || method == "gptq" else { return [] }
        var found: [LogicalTensor] = []
        for entry in checkpoint.entries where entry.info.name.hasSuffix(".qweight") {
            let file = checkpoint.files[entry.fileIndex].path
            let base = String(entry.info.name.dropLast("qweight".count))
            guard let scales = checkpoint.entry(named: base + "scales") else {
                throw QuantizedLayoutError.missingPart(file: file, tensor: entry.info.name, part: base + "scales")
            }
            // Without a config, AWQ's qweight [K, N/8] is told apart by its shape.
            if method == nil, scales.info.shape.count == 2, entry.info.shape.count == 2, entry.info.shape[1] != scales.info.shape[1] { continue }
            if q?["is_marlin_format"]?.boolValue == true {
                throw QuantizedLayoutError.unsupportedVariant(file: file, tensor: entry.info.name, found: "GPTQ in the Marlin layout (is_marlin_format)",
                                                              expected: "checkpoint_format gptq or gptq_v2")
            }
            let format = q?["checkpoint_format"]?.stringValue ?? q?["format"]?.stringValue ?? "gptq"
            guard format == "gptq" || format == "gptq_v2" else {
                throw QuantizedLayoutError.unsupportedVariant(file: file, tensor: entry.info.name, found: "GPTQ checkpoint_format '\(format)'",
                                                              expected: "gptq (v1) or gptq_v2")
            }
            let bits = q?["bits"]?.intValue ?? 4
            guard [2, 4, 8].contains(bits) else {
                throw QuantizedLayoutError.unsupportedVariant(file: file, tensor: entry.info.name, found: "\(bits)-bit GPTQ", expected: "2, 4 or 8 bits")
            }
            guard let zerosEntry = checkpoint.entry(named: base + "qzeros") else {
                throw QuantizedLayoutError.missingPart(file: file, tensor: entry.info.name, part: base + "qzeros")
            }
            let perWord = 32 / bits
            guard entry.info.dtype == .i32, entry.info.shape.count == 2, entry.info.shape.allSatisfy({ $0 > 0 }) else {
                throw QuantizedLayoutError.partShapeMismatch(file: file, tensor: entry.info.name, expected: "I32 [K·bits/32, N]",
                                                             actual: "\(entry.info.dtype.rawValue) \(entry.info.shape)")
            }
            let (wordRows, rows) = (entry.info.shape[0], entry.info.shape[1])
            let indexEntry = checkpoint.entry(named: base + "g_idx")
            let columns = indexEntry?.info.elementCount ?? wordRows * perWord
            guard (columns + perWord - 1) / perWord == wordRows else {
                throw QuantizedLayoutError.partShapeMismatch(file: file, tensor: entry.info.name, expected: "[\((columns + perWord - 1) / perWord), N] for \(columns) inputs",
                                                             actual: "\(entry.info.shape)")
            }
            guard [.f16, .bf16, .f32].contains(scales.info.dtype), scales.info.shape.count == 2, scales.info.shape[1] == rows,
                  (1...columns).contains(scales.info.shape[0]) else {
                throw QuantizedLayoutError.partShapeMismatch(file: file, tensor: scales.info.name, expected: "F16 [groups ≤ \(columns), \(rows)]",
                                                             actual: "\(scales.info.dtype.rawValue) \(scales.info.shape)")
            }
            let groups = scales.info.shape[0]
            let zeroWords = (rows + perWord - 1) / perWord
            guard zerosEntry.info.dtype == .i32, zerosEntry.info.shape == [groups, zeroWords] else {
                throw QuantizedLayoutError.partShapeMismatch(file: file, tensor: zerosEntry.info.name, expected: "I32 [\(groups), \(zeroWords)]",
                                                             actual: "\(zerosEntry.info.dtype.rawValue) \(zerosEntry.info.shape)")
            }
            let descAct = q?["desc_act"]?.boolValue ?? false
            if descAct && indexEntry == nil {
                throw QuantizedLayoutError.missingPart(file: file, tensor: entry.info.name, part: base + "g_idx (desc_act is true)")
            }
            var parts = [entry, zerosEntry, scales]
            let groupOf: [Int32]
            let configured = q?["group_size"]?.intValue.map { $0 <= 0 ? columns : $0 }
            let groupSize = configured ?? (columns + groups - 1) / groups
            if let indexEntry {
                groupOf = try groupIndex(checkpoint, indexEntry, columns: columns, groups: groups, file: file)
                parts.append(indexEntry)
            } else {
                guard (columns + groupSize - 1) / groupSize == groups else {
                    throw QuantizedLayoutError.partShapeMismatch(file: file, tensor: scales.info.name,
                                                                 expected: "\((columns + groupSize - 1) / groupSize) groups of \(groupSize)", actual: "\(groups)")
                }
                groupOf = PackedIntegerRows.contiguousGroups(columns: columns, groupSize: groupSize)
            }
            let zeros = unpackZeros(PackedIntegerRows.words(checkpoint.view(zerosEntry)), groups: groups, rows: rows, bits: bits, v1: format == "gptq")
            let stored = FloatValues.array(checkpoint.view(scales))
            let decoder = PackedIntegerRows(order: .alongColumns, bits: bits, rows: rows, columns: columns, groups: groups,
                                            scales: PackedIntegerRows.transposed(stored, rows: groups, columns: rows), zeros: zeros,
                                            groupOfColumn: groupOf, scaleType: scales.info.dtype)
            var scheme = IntegerScheme(bits: bits, groupSize: groups == 1 ? nil : groupSize, symmetric: q?["sym"]?.boolValue ?? true, format: .gptq)
            scheme.actOrder = descAct
            found.append(LogicalTensor(name: base + "weight", shape: [rows, columns], dtype: fallbackDType,
                                       storage: .quantized(PackedIntegerWeight(parts: parts, decoder: decoder, scheme: scheme)), fileIndex: entry.fileIndex))
        }
        return found
    }
}
