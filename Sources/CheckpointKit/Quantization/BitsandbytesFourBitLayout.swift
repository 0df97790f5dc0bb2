/// bitsandbytes 4-bit (NF4 / FP4, optionally double-quantized), as transformers saves and loads
/// it: `P.weight` U8 packed codes, `P.weight.absmax`, `P.weight.quant_map`,
/// (`P.weight.nested_absmax`, `P.weight.nested_quant_map`) and the JSON blob
/// `P.weight.quant_state.bitsandbytes__<type>` naming the type, block size, dtype and shape.
public struct FourBitScheme: QuantizationScheme, Equatable {
    public var type: FourBitType
    public var blockSize: Int
    public var doubleQuant: Bool

    public init(type: FourBitType, blockSize: Int = 64, doubleQuant: Bool = false) {
        self.type = type
        self.blockSize = blockSize
        self.doubleQuant = doubleQuant
    }

    public var schemeName: String { type.name }
    public var description: String { "\(type.name) (blocks of \(blockSize)\(doubleQuant ? ", double quant" : ""))" }

    public func validate() throws {
        guard (5...12).contains(blockSize.trailingZeroBitCount), blockSize.nonzeroBitCount == 1 else {
            throw QuantizationError.invalidBlockSize(scheme: type.name, blockSize: blockSize,
                                                     reason: "expected a power of two from 32 to 4096, as bitsandbytes allows")
        }
    }

    public func encode(name: String, shape: [Int], originalType: DType, values x: UnsafeBufferPointer<Float>, optimizeScales: Bool,
                       threads: ThreadBudget) -> (encoded: EncodedTensor, plain: EncodedTensor?) {
        let info = TensorInfo(name: name, dtype: originalType, shape: shape, dataOffsets: 0..<0)
        guard optimizeScales else {
            return (BitsandbytesFourBitLayout.encode(x, info: info, type: type, blockSize: blockSize, doubleQuant: doubleQuant,
                                                     fixedScales: nil, threads: threads), nil)
        }
        let plain = BitsandbytesFourBitLayout.encode(x, info: info, type: type, blockSize: blockSize, doubleQuant: doubleQuant,
                                                     fixedScales: nil, threads: threads)
        let fixed = ScaleSearch.fourBitScales(x, blockSize: blockSize, type: type, threads: threads)
        return (BitsandbytesFourBitLayout.encode(x, info: info, type: type, blockSize: blockSize, doubleQuant: doubleQuant,
                                                 fixedScales: fixed, threads: threads), plain)
    }

    public func decode(_ tensor: EncodedTensor, into out: UnsafeMutableBufferPointer<Float>, threads: ThreadBudget) {
        func floats(_ bytes: [UInt8]) -> [Float] { bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) } }
        var absmax: [Float]
        if doubleQuant {
            let stateBytes = tensor.part("." + BitsandbytesFourBitLayout.statePrefix + type.name) ?? []
            let offset = Float((try? JSONParser.parse(stateBytes))?["nested_offset"]?.doubleValue ?? 0)
            absmax = DoubleQuantizedAbsmax(codes: tensor.part(".absmax")!, nestedAbsmax: floats(tensor.part(".nested_absmax")!),
                                           offset: offset).expanded
        } else {
            absmax = floats(tensor.part(".absmax")!)
        }
        let packed = tensor.part("")!
        packed.withUnsafeBufferPointer { p in
            absmax.withUnsafeBufferPointer { a in
                FourBitQuantizer.dequantize(packed: p, absmax: a, blockSize: blockSize, type: type, into: out, threads: threads)
            }
        }
    }

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

    public func notes(selected: [(name: String, shape: [Int])]) -> [String] { [] }
}

/// One stored bitsandbytes 4-bit weight.
public struct FourBitWeight: QuantizedWeight {
    public var type: FourBitType
    public var blockSize: Int
    public var packed: Checkpoint.Entry
    public var absmax: Checkpoint.Entry
    public var quantMap: Checkpoint.Entry?
    public var nestedAbsmax: Checkpoint.Entry?
    public var nestedQuantMap: Checkpoint.Entry?
    public var nestedOffset: Float?
    public var state: Checkpoint.Entry

    public var scheme: any QuantizationScheme { FourBitScheme(type: type, blockSize: blockSize, doubleQuant: nestedAbsmax != nil) }
    public var parts: [Checkpoint.Entry] { [packed, absmax] + [quantMap, nestedAbsmax, nestedQuantMap].compactMap { $0 } + [state] }

    public func decode(from checkpoint: Checkpoint, shape: [Int], into out: UnsafeMutableBufferPointer<Float>, threads: ThreadBudget) {
        var absmax = FloatValues.array(checkpoint.view(self.absmax))
        if let nested = nestedAbsmax, let offset = nestedOffset {
            let codes = checkpoint.view(self.absmax).bytes.map { $0 }
            let nestedValues = FloatValues.array(checkpoint.view(nested))
            let code = nestedQuantMap.map { FloatValues.array(checkpoint.view($0)) } ?? DynamicCode.values
            absmax = codes.enumerated().map { code[Int($0.element)] * nestedValues[$0.offset / DoubleQuantizedAbsmax.nestedBlockSize] + offset }
        }
        let codeTable = quantMap.map { FloatValues.array(checkpoint.view($0)) }
        let packedView = checkpoint.view(packed)
        let packedBytes = packedView.bytes.bindMemory(to: UInt8.self)
        withExtendedLifetime(packedView) {
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

/// Finds, encodes and describes bitsandbytes 4-bit weights.
public enum BitsandbytesFourBitLayout: QuantizedLayout {
    static let statePrefix = "quant_state.bitsandbytes__"

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
            guard absmax.info.elementCount == blocks else {
                throw QuantizedLayoutError.partShapeMismatch(file: file, tensor: base + ".absmax", expected: "\(blocks) blocks",
                                                             actual: "\(absmax.info.elementCount)")
            }
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
        var state: [(String, JSONValue)] = [
            ("quant_type", .string(type.name)), ("blocksize", JSONValue(blockSize)),
            ("dtype", .string(originalType.torchName)), ("shape", .array(shape.map { JSONValue($0) })),
        ]
        if let dq = doubleQuant {
            parts.append((TensorSpec(name: name + ".absmax", dtype: .u8, shape: [dq.codes.count]), dq.codes))
            parts.append((TensorSpec(name: name + ".nested_absmax", dtype: .f32, shape: [dq.nestedAbsmax.count]), bytesOf(dq.nestedAbsmax)))
            parts.append((TensorSpec(name: name + ".nested_quant_map", dtype: .f32, shape: [256]), bytesOf(DynamicCode.values)))
            state += [("nested_blocksize", JSONValue(DoubleQuantizedAbsmax.nestedBlockSize)), ("nested_dtype", "float32"),
                      ("nested_offset", .double(Double(dq.offset)))]
        } else {
            parts.append((TensorSpec(name: name + ".absmax", dtype: .f32, shape: [absmax.count]), bytesOf(absmax)))
        }
        parts.append((TensorSpec(name: name + ".quant_map", dtype: .f32, shape: [16]), bytesOf(type.code)))
        let blob = Array(JSONValue.object(state).serialized(style: .python).utf8)
        parts.append((TensorSpec(name: name + "." + statePrefix + type.name, dtype: .u8, shape: [blob.count]), blob))
        return EncodedTensor(name: name, shape: shape, originalType: originalType,
                             scheme: FourBitScheme(type: type, blockSize: blockSize, doubleQuant: doubleQuant != nil), parts: parts)
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
        guard view.dtype == .u8, view.bytes.count < 1 << 16 else { throw bad("expected a small U8 tensor of JSON bytes") }
        let json: JSONValue
        do { json = try JSONParser.parse(Array(view.bytes)) } catch { throw bad(error.description) }
        guard let typeName = json["quant_type"]?.stringValue, let type = FourBitType(rawValue: typeName) else {
            throw bad("quant_type is \(json["quant_type"]?.serialized() ?? "missing") (expected \"nf4\" or \"fp4\")")
        }
        guard let blockSize = json["blocksize"]?.intValue, blockSize > 0, blockSize <= 1 << 20 else { throw bad("invalid blocksize") }
        guard let dims = json["shape"]?.arrayValue?.compactMap(\.intValue), dims.allSatisfy({ $0 >= 0 && $0 < 1 << 31 }),
            !dims.isEmpty, dims.count == json["shape"]?.arrayValue?.count
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
