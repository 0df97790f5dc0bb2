/// bitsandbytes 4-bit (NF4 / FP4, optionally double-quantized), as transformers saves and loads
/// it: `P.weight` U8 packed codes, `P.weight.absmax`, `P.weight.quant_map`,
/// (`P.weight.nested_absmax`, `P.weight.nested_quant_map`) and the JSON blob
/// `P.weight.quant_state.bitsandbytes__<type>` naming the type, block size, dtype and shape.
public struct FourBitScheme: QuantizationScheme, Equatable {
    /// NF4 or FP4: the 16-value code the nibbles index.
    public var type: FourBitType
    /// Flattened values per absmax scale (a power of two from 32 to 4096).
    public var blockSize: Int
    /// Whether the absmax is itself 8-bit quantized (bitsandbytes `compress_statistics`).
    public var doubleQuant: Bool

    /// An NF4/FP4 scheme; by default blocks of 64 without double quantization.
    public init(type: FourBitType, blockSize: Int = 64, doubleQuant: Bool = false) {
        self.type = type
        self.blockSize = blockSize
        self.doubleQuant = doubleQuant
    }

    /// "nf4" or "fp4".
    public var schemeName: String { type.name }
    /// E.g. "nf4 (blocks of 64, double quant)".
    public var description: String { "\(type.name) (blocks of \(blockSize)\(doubleQuant ? ", double quant" : ""))" }

    /// Throws `QuantizationError.invalidBlockSize` unless the block size is a power of two from 32 to 4096.
    public func validate() throws {
        guard (5...12).contains(blockSize.trailingZeroBitCount), blockSize.nonzeroBitCount == 1 else {
            throw QuantizationError.invalidBlockSize(scheme: type.name, blockSize: blockSize,
                                                     reason: "expected a power of two from 32 to 4096, as bitsandbytes allows")
        }
    }

    /// Encodes to the bitsandbytes parts; with `optimizeScales` the searched-scale encoding comes first and the plain absmax one second.
    public func encode(name: String, shape: [Int], originalType: DType, values x: UnsafeBufferPointer<Float>, optimizeScales: Bool,
                       importance: [Float]?, threads: ThreadBudget) -> (encoded: EncodedTensor, plain: EncodedTensor?) {
        let info = TensorInfo(name: name, dtype: originalType, shape: shape, dataOffsets: 0..<0)
        guard optimizeScales else {
            return (BitsandbytesFourBitLayout.encode(x, info: info, type: type, blockSize: blockSize, doubleQuant: doubleQuant,
                                                     fixedScales: nil, threads: threads), nil)
        }
        let plain = BitsandbytesFourBitLayout.encode(x, info: info, type: type, blockSize: blockSize, doubleQuant: doubleQuant,
                                                     fixedScales: nil, threads: threads)
        let fixed = ScaleSearch.fourBitScales(x, blockSize: blockSize, type: type, importance: importance, columns: shape.last ?? 1, threads: threads)
        return (BitsandbytesFourBitLayout.encode(x, info: info, type: type, blockSize: blockSize, doubleQuant: doubleQuant,
                                                 fixedScales: fixed, threads: threads), plain)
    }

    /// Packed codes, absmax, quant_map and the quant_state blob, whose JSON depends on the shape
    /// alone; nil with double quantization, whose blob holds the absmax mean (`nested_offset`).
    public func partSpecs(name: String, shape: [Int], originalType: DType) -> [TensorSpec]? {
        guard !doubleQuant else { return nil }
        let count = shape.reduce(1, *)
        let state = BitsandbytesFourBitLayout.quantState(shape: shape, originalType: originalType, type: type, blockSize: blockSize, doubleQuant: nil)
        return [
            TensorSpec(name: name, dtype: .u8, shape: [FourBitQuantizer.packedByteCount(count), 1]),
            TensorSpec(name: name + ".absmax", dtype: .f32, shape: [FourBitQuantizer.blockCount(count, blockSize: blockSize)]),
            TensorSpec(name: name + ".quant_map", dtype: .f32, shape: [16]),
            TensorSpec(name: name + "." + BitsandbytesFourBitLayout.statePrefix + type.name, dtype: .u8, shape: [state.count]),
        ]
    }

    /// With double quantization, the parts planned from the blocks' absmax alone (their mean is the
    /// quant_state's `nested_offset`, whose printed length sizes the blob); otherwise `partSpecs`.
    public func partSpecs(name: String, shape: [Int], originalType: DType, reading values: () -> [Float]) -> [TensorSpec]? {
        guard doubleQuant else { return partSpecs(name: name, shape: shape, originalType: originalType) }
        let absmax = values().withUnsafeBufferPointer { FourBitQuantizer.blockAbsmax($0, blockSize: blockSize) }
        let nested = DoubleQuantizedAbsmax(compressing: absmax)
        let count = shape.reduce(1, *)
        let state = BitsandbytesFourBitLayout.quantState(shape: shape, originalType: originalType, type: type, blockSize: blockSize, doubleQuant: nested)
        // In `BitsandbytesFourBitLayout.parts`' order.
        return [
            TensorSpec(name: name, dtype: .u8, shape: [FourBitQuantizer.packedByteCount(count), 1]),
            TensorSpec(name: name + ".absmax", dtype: .u8, shape: [nested.codes.count]),
            TensorSpec(name: name + ".nested_absmax", dtype: .f32, shape: [nested.nestedAbsmax.count]),
            TensorSpec(name: name + ".nested_quant_map", dtype: .f32, shape: [256]),
            TensorSpec(name: name + ".quant_map", dtype: .f32, shape: [16]),
            TensorSpec(name: name + "." + BitsandbytesFourBitLayout.statePrefix + type.name, dtype: .u8, shape: [state.count]),
        ]
    }

    /// Decodes parts made by `encode` as bitsandbytes does, expanding a double-quantized absmax first.
    public func decode(_ tensor: EncodedTensor, into out: UnsafeMutableBufferPointer<Float>, threads: ThreadBudget) {
        let absmax = expandedAbsmax(tensor)
        let packed = tensor.part("")!
        packed.withUnsafeBufferPointer { p in
            absmax.withUnsafeBufferPointer { a in
                FourBitQuantizer.dequantize(packed: p, absmax: a, blockSize: blockSize, type: type, into: out, threads: threads)
            }
        }
    }

    /// Ranges decoded from the packed codes against the absmax expanded once.
    public func rangeDecoder(for tensor: EncodedTensor) -> ((Range<Int>, UnsafeMutablePointer<Float>) -> Void)? {
        let absmax = expandedAbsmax(tensor), packed = tensor.part("")!, pairs = FourBitQuantizer.pairTable(type.code)
        let blockSize = blockSize
        return { range, out in
            packed.withUnsafeBufferPointer { p in
                absmax.withUnsafeBufferPointer { a in
                    pairs.withUnsafeBufferPointer { t in
                        FourBitQuantizer.dequantizeRange(packed: p.baseAddress!, absmax: a.baseAddress!, blockSize: blockSize, pairs: t.baseAddress!,
                                                         range: range, into: out)
                    }
                }
            }
        }
    }

    /// One absmax per block as the loader computes it: stored, or expanded from its nested 8-bit codes.
    func expandedAbsmax(_ tensor: EncodedTensor) -> [Float] {
        func floats(_ bytes: [UInt8]) -> [Float] { bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) } }
        guard doubleQuant else { return floats(tensor.part(".absmax")!) }
        let stateBytes = tensor.part("." + BitsandbytesFourBitLayout.statePrefix + type.name) ?? []
        let offset = Float((try? JSONParser.parse(stateBytes))?["nested_offset"]?.doubleValue ?? 0)
        return DoubleQuantizedAbsmax(codes: tensor.part(".absmax")!, nestedAbsmax: floats(tensor.part(".nested_absmax")!), offset: offset).expanded
    }

    /// transformers' 4-bit `BitsAndBytesConfig`, every field; the skip list is null when only lm_head (or nothing) is skipped.
    public func quantizationConfig(computeType: DType, skippedModules skipped: [String]) -> JSONValue {
        // As transformers writes it (every field, sorted); null skip list = its default (lm_head).
        let defaultSkip = skipped.isEmpty || skipped == ["lm_head"]
        return [
            "_load_in_4bit": true, "_load_in_8bit": false,
            "bnb_4bit_compute_dtype": .string(computeType.torchName), "bnb_4bit_quant_storage": "uint8",
            "bnb_4bit_quant_type": .string(type.name), "bnb_4bit_use_double_quant": .bool(doubleQuant),
            "llm_int8_enable_fp32_cpu_offload": false, "llm_int8_has_fp16_weight": false,
            "llm_int8_skip_modules": defaultSkip ? .null : .array(skipped.map { .string($0) }),
            "llm_int8_threshold": 6.0, "load_in_4bit": true, "load_in_8bit": false, "quant_method": "bitsandbytes",
        ]
    }

    /// None: any shape flattens into blocks, so no selection needs a warning.
    public func notes(selected: [(name: String, shape: [Int])]) -> [String] { [] }
}

/// One stored bitsandbytes 4-bit weight.
public struct FourBitWeight: QuantizedWeight {
    /// NF4 or FP4, as the quant_state names it.
    public var type: FourBitType
    /// Flattened values per absmax entry, from the quant_state.
    public var blockSize: Int
    /// `P.weight`: U8, two codes per byte, the first element in the high nibble.
    public var packed: Checkpoint.Entry
    /// `P.weight.absmax`: one scale per block, or one U8 code per block when double-quantized.
    public var absmax: Checkpoint.Entry
    /// `P.weight.quant_map`: the 16-value code, honoured when it differs from the type's.
    public var quantMap: Checkpoint.Entry?
    /// `P.weight.nested_absmax`: one float scale per 256 absmax codes; nil unless double-quantized.
    public var nestedAbsmax: Checkpoint.Entry?
    /// `P.weight.nested_quant_map`: the code of the absmax codes (the dynamic code when absent).
    public var nestedQuantMap: Checkpoint.Entry?
    /// The mean subtracted from the absmax before double quantization (quant_state `nested_offset`).
    public var nestedOffset: Float?
    /// The `P.weight.quant_state.bitsandbytes__<type>` JSON blob describing the weight.
    public var state: Checkpoint.Entry

    /// The scheme of the parts; double quant when `nestedAbsmax` is present.
    public var scheme: any QuantizationScheme { FourBitScheme(type: type, blockSize: blockSize, doubleQuant: nestedAbsmax != nil) }
    /// Packed codes, absmax, whichever maps and nested absmax exist, then the quant_state blob.
    public var parts: [Checkpoint.Entry] { [packed, absmax] + [quantMap, nestedAbsmax, nestedQuantMap].compactMap { $0 } + [state] }

    /// One f32 scale per block: the stored absmax, or its nested 8-bit codes expanded.
    func expandedAbsmax(from checkpoint: Checkpoint) -> [Float] {
        guard let nested = nestedAbsmax, let offset = nestedOffset else { return FloatValues.array(checkpoint.view(absmax)) }
        let codes = checkpoint.view(absmax).byteArray
        let nestedValues = FloatValues.array(checkpoint.view(nested))
        let code = nestedQuantMap.map { FloatValues.array(checkpoint.view($0)) } ?? DynamicCode.values
        return codes.enumerated().map { code[Int($0.element)] * nestedValues[$0.offset / DoubleQuantizedAbsmax.nestedBlockSize] + offset }
    }

    /// Dequantizes as bitsandbytes does, expanding a double-quantized absmax and honouring the file's own quant_map.
    public func decode(from checkpoint: Checkpoint, shape: [Int], into out: UnsafeMutableBufferPointer<Float>, threads: ThreadBudget) {
        let absmax = expandedAbsmax(from: checkpoint)
        let codeTable = quantMap.map { FloatValues.array(checkpoint.view($0)) }
        checkpoint.view(packed).withBytes { packedRaw in
            let packedBytes = packedRaw.bindMemory(to: UInt8.self)
            absmax.withUnsafeBufferPointer { a in
                if let codeTable, codeTable.count == 16, codeTable != type.code {
                    // A file with its own quant_map: honour it, as bitsandbytes does.
                    for i in 0..<out.count {
                        let byte = packedBytes[i / 2]
                        out[i] = codeTable[Int(i % 2 == 0 ? byte >> 4 : byte & 0xF)] * a[i / blockSize]
                    }
                } else {
                    FourBitQuantizer.dequantize(packed: packedBytes, absmax: a, blockSize: blockSize, type: type, into: out, threads: threads)
                }
            }
        }
    }
}

extension FourBitWeight {
    /// Rows decoded a tile at a time from the packed codes; the absmax (expanded from its
    /// nested codes when double-quantized) is decoded once, 1/blockSize of the weight.
    public func storedRows(from checkpoint: Checkpoint, shape: [Int]) -> StoredRows? {
        let rows = shape.first ?? 1, columns = shape.dropFirst().reduce(1, *)
        let absmax = expandedAbsmax(from: checkpoint)
        let codeTable = quantMap.map { FloatValues.array(checkpoint.view($0)) }
        let pairs = FourBitQuantizer.pairTable(codeTable.flatMap { $0.count == 16 ? $0 : nil } ?? type.code)
        let packed = checkpoint.view(self.packed)
        let blockSize = self.blockSize
        return StoredRows(rows: rows, columns: columns, storedBytes: packed.byteCount + absmax.count * 4) { first, count, out in
            packed.withBytes { raw in
                absmax.withUnsafeBufferPointer { a in
                    pairs.withUnsafeBufferPointer { p in
                        FourBitQuantizer.dequantizeRange(packed: raw.bindMemory(to: UInt8.self).baseAddress!, absmax: a.baseAddress!,
                                                         blockSize: blockSize, pairs: p.baseAddress!,
                                                         range: (first * columns)..<((first + count) * columns), into: out)
                    }
                }
            }
        }
    }
}

/// Finds, encodes and describes bitsandbytes 4-bit weights.
public enum BitsandbytesFourBitLayout: QuantizedLayout {
    static let statePrefix = "quant_state.bitsandbytes__"

    /// One weight per `quant_state.bitsandbytes__*` blob, its parts checked against the shape it records; a missing part throws.
    public static func detect(in checkpoint: Checkpoint, fallbackDType: DType) throws -> [LogicalTensor] {
        var found: [LogicalTensor] = []
        // One quant_state blob names each weight.
        for entry in checkpoint.entries {
            let name = entry.info.name
            guard let marker = name.firstRange(of: "." + statePrefix) else { continue }
            let base = String(name[..<marker.lowerBound])
            let file = checkpoint.files[entry.fileIndex].path
            let state = try parseQuantState(checkpoint.view(entry), file: file, tensor: base)
            func part(_ suffix: String, required: Bool) throws -> Checkpoint.Entry? {
                let partName = base + suffix
                guard let found = checkpoint.entry(named: partName) else {
                    if required { throw QuantizedLayoutError.missingPart(file: file, tensor: base, part: partName) }
                    return nil
                }
                return found
            }
            let packed = try part("", required: true)!
            let absmax = try part(".absmax", required: true)!
            let nested = state.nestedOffset != nil
            let weight = FourBitWeight(
                type: state.type, blockSize: state.blockSize, packed: packed, absmax: absmax,
                quantMap: try part(".quant_map", required: false),
                nestedAbsmax: nested ? try part(".nested_absmax", required: true) : nil,
                nestedQuantMap: nested ? try part(".nested_quant_map", required: false) : nil,
                nestedOffset: state.nestedOffset, state: entry)
            let n = state.shape.reduce(1, *)
            guard packed.info.elementCount == (n + 1) / 2, packed.info.dtype == .u8 else {
                throw QuantizedLayoutError.partShapeMismatch(file: file, tensor: base, expected: "\((n + 1) / 2) packed bytes (U8)",
                                                             actual: "\(packed.info.elementCount) \(packed.info.dtype.rawValue)")
            }
            let blocks = (n + state.blockSize - 1) / state.blockSize
            // Every companion part checked, dtype and length, before any kernel indexes into it.
            func require(_ part: Checkpoint.Entry?, _ dtypes: [DType], count: Int) throws {
                guard let part else { return }
                guard dtypes.contains(part.info.dtype), part.info.elementCount == count else {
                    throw QuantizedLayoutError.partShapeMismatch(
                        file: file, tensor: part.info.name,
                        expected: "\(count) × \(dtypes.map(\.rawValue).joined(separator: "/"))",
                        actual: "\(part.info.elementCount) × \(part.info.dtype.rawValue)")
                }
            }
            let floats: [DType] = [.f32, .f16, .bf16]
            try require(absmax, nested ? [.u8] : floats, count: blocks)
            try require(weight.quantMap, floats, count: 16)
            try require(weight.nestedAbsmax, floats, count: (blocks + DoubleQuantizedAbsmax.nestedBlockSize - 1) / DoubleQuantizedAbsmax.nestedBlockSize)
            try require(weight.nestedQuantMap, floats, count: 256)
            found.append(LogicalTensor(name: base, shape: state.shape, dtype: state.dtype, storage: .quantized(weight), fileIndex: packed.fileIndex))
        }
        return found
    }

    /// Builds the bitsandbytes tensors of a 4-bit weight from its f32 values.
    public static func encode(_ x: UnsafeBufferPointer<Float>, info: TensorInfo, type: FourBitType, blockSize: Int, doubleQuant: Bool,
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
        return parts(name: info.name, shape: info.shape, originalType: info.dtype == .f64 ? .f32 : info.dtype, type: type,
                     blockSize: blockSize, packed: packed, absmax: absmax,
                     doubleQuant: doubleQuant ? DoubleQuantizedAbsmax(compressing: absmax) : nil)
    }

    /// The stored tensors: `P`, `P.absmax`, (`P.nested_absmax`, `P.nested_quant_map`),
    /// `P.quant_map`, `P.quant_state.bitsandbytes__<type>`.
    static func parts(name: String, shape: [Int], originalType: DType, type: FourBitType, blockSize: Int,
                      packed: [UInt8], absmax: [Float], doubleQuant: DoubleQuantizedAbsmax?) -> EncodedTensor {
        var parts: [(TensorSpec, [UInt8])] = [(TensorSpec(name: name, dtype: .u8, shape: [packed.count, 1]), packed)]
        if let dq = doubleQuant {
            parts.append((TensorSpec(name: name + ".absmax", dtype: .u8, shape: [dq.codes.count]), dq.codes))
            parts.append((TensorSpec(name: name + ".nested_absmax", dtype: .f32, shape: [dq.nestedAbsmax.count]), bytesOf(dq.nestedAbsmax)))
            parts.append((TensorSpec(name: name + ".nested_quant_map", dtype: .f32, shape: [256]), bytesOf(DynamicCode.values)))
        } else {
            parts.append((TensorSpec(name: name + ".absmax", dtype: .f32, shape: [absmax.count]), bytesOf(absmax)))
        }
        parts.append((TensorSpec(name: name + ".quant_map", dtype: .f32, shape: [16]), bytesOf(type.code)))
        let blob = quantState(shape: shape, originalType: originalType, type: type, blockSize: blockSize, doubleQuant: doubleQuant)
        parts.append((TensorSpec(name: name + "." + statePrefix + type.name, dtype: .u8, shape: [blob.count]), blob))
        return EncodedTensor(name: name, shape: shape, originalType: originalType,
                             scheme: FourBitScheme(type: type, blockSize: blockSize, doubleQuant: doubleQuant != nil), parts: parts)
    }

    /// The quant_state blob: Python `json.dumps` of the type, block size, dtype and shape, plus
    /// the nested block size, dtype and offset when double-quantized.
    static func quantState(shape: [Int], originalType: DType, type: FourBitType, blockSize: Int, doubleQuant: DoubleQuantizedAbsmax?) -> [UInt8] {
        var state: [(String, JSONValue)] = [
            ("quant_type", .string(type.name)), ("blocksize", JSONValue(blockSize)),
            ("dtype", .string(originalType.torchName)), ("shape", .array(shape.map { JSONValue($0) })),
        ]
        if let dq = doubleQuant {
            state += [("nested_blocksize", JSONValue(DoubleQuantizedAbsmax.nestedBlockSize)), ("nested_dtype", "float32"),
                      ("nested_offset", .double(Double(dq.offset)))]
        }
        return Array(JSONValue.object(state).serialized(style: .python).utf8)
    }

    struct QuantState {
        var type: FourBitType
        var blockSize: Int
        var dtype: DType
        var shape: [Int]
        var nestedOffset: Float?
    }

    static func parseQuantState(_ view: TensorView, file: String, tensor: String) throws -> QuantState {
        func bad(_ reason: String) -> QuantizedLayoutError { .badQuantState(file: file, tensor: tensor, reason: reason) }
        guard view.dtype == .u8, view.byteCount < 1 << 16 else { throw bad("expected a small U8 tensor of JSON bytes") }
        let json: JSONValue
        do { json = try JSONParser.parse(view.byteArray) } catch { throw bad(error.description) }
        guard let typeName = json["quant_type"]?.stringValue, let type = FourBitType(rawValue: typeName) else {
            throw bad("quant_type is \(json["quant_type"]?.serialized() ?? "missing") (expected \"nf4\" or \"fp4\")")
        }
        guard let blockSize = json["blocksize"]?.intValue, blockSize > 0, blockSize <= 1 << 20 else { throw bad("invalid blocksize") }
        guard let dims = json["shape"]?.arrayValue?.compactMap(\.intValue), dims.allSatisfy({ $0 >= 0 && $0 < 1 << 31 }),
            !dims.isEmpty, dims.count == json["shape"]?.arrayValue?.count, ShapeLimits.isAcceptable(dims)
        else { throw bad("invalid shape") }
        let dtype: DType
        switch json["dtype"]?.stringValue {
        case "bfloat16": dtype = .bf16
        case "float16": dtype = .f16
        default: dtype = .f32
        }
        var offset: Float? = nil
        if let nested = json["nested_offset"] {
            guard let value = nested.doubleValue else { throw bad("nested_offset is not a number") }
            offset = Float(value)
        }
        return QuantState(type: type, blockSize: blockSize, dtype: dtype, shape: dims, nestedOffset: offset)
    }
}

/// The raw bytes of f32 values.
func bytesOf(_ values: [Float]) -> [UInt8] { values.withUnsafeBytes { Array($0) } }
