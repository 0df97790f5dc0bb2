/// A quantization scheme and its parameters.
public enum QuantizationScheme: Sendable, Equatable, CustomStringConvertible {
    /// compressed-tensors int8, symmetric, one scale per `groupSize` values of a row.
    case int8(groupSize: Int, scaleType: DType)
    /// bitsandbytes NF4 / FP4, blocks over the flattened tensor, optionally double-quantized.
    case fourBit(FourBitType, blockSize: Int, doubleQuant: Bool)

    public var description: String {
        switch self {
        case let .int8(g, scaleType): return "int8 (groups of \(g), \(scaleType.rawValue) scales)"
        case let .fourBit(type, b, dq): return "\(type.name) (blocks of \(b)\(dq ? ", double quant" : ""))"
        }
    }

    /// Short name: int8, nf4, fp4.
    public var schemeName: String {
        switch self {
        case .int8: return "int8"
        case let .fourBit(type, _, _): return type.name
        }
    }
}

/// Failures reading a quantized layout.
public enum QuantizedLayoutError: Error, Equatable, Sendable, CustomStringConvertible {
    case missingPart(file: String, tensor: String, part: String)
    case badQuantState(file: String, tensor: String, reason: String)
    case partShapeMismatch(file: String, tensor: String, expected: String, actual: String)

    public var description: String {
        switch self {
        case let .missingPart(file, tensor, part):
            return "\(file): tensor '\(tensor)': quantized weight without its '\(part)' (expected it beside the weight)"
        case let .badQuantState(file, tensor, reason):
            return "\(file): tensor '\(tensor)': unreadable bitsandbytes quant_state: \(reason)"
        case let .partShapeMismatch(file, tensor, expected, actual):
            return "\(file): tensor '\(tensor)': quantized parts disagree with its shape (expected \(expected), got \(actual))"
        }
    }
}

/// The tensors of one quantized weight, encoded and ready to write, in the layout its loader
/// expects (bitsandbytes keys for 4-bit, compressed-tensors keys for int8).
public struct EncodedTensor: Sendable {
    /// The weight's name (`P.weight`) and logical shape.
    public var name: String
    public var shape: [Int]
    /// The dtype the weight had, recorded for 4-bit in its quant_state.
    public var originalType: DType
    public var scheme: QuantizationScheme
    /// (spec, bytes) for every stored tensor, the weight first.
    public var parts: [(spec: TensorSpec, bytes: [UInt8])]

    public var storedBytes: Int { parts.reduce(0) { $0 + $1.bytes.count } }
}

enum QuantStateKeys {
    static let prefix = "quant_state.bitsandbytes__"
}

extension EncodedTensor {
    /// Builds the bitsandbytes tensors of a 4-bit weight: `P`, `P.absmax`, `P.quant_map`,
    /// (`P.nested_absmax`, `P.nested_quant_map`), `P.quant_state.bitsandbytes__<type>`.
    static func fourBit(name: String, shape: [Int], originalType: DType, type: FourBitType, blockSize: Int,
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
        parts.append((TensorSpec(name: name + "." + QuantStateKeys.prefix + type.name, dtype: .u8, shape: [blob.count]), blob))
        return EncodedTensor(name: name, shape: shape, originalType: originalType,
                             scheme: .fourBit(type, blockSize: blockSize, doubleQuant: doubleQuant != nil), parts: parts)
    }

    /// Builds the compressed-tensors tensors of an int8 weight: `P.weight` I8 and `P.weight_scale`.
    static func int8(name: String, shape: [Int], originalType: DType, groupSize: Int, scaleType: DType,
                     q: [Int8], scales: [Float]) -> EncodedTensor {
        let scaleName = name.hasSuffix(".weight") ? String(name.dropLast(".weight".count)) + ".weight_scale" : name + "_scale"
        let groups = BlockInt8Quantizer.groupsPerRow(columns: shape[1], groupSize: groupSize)
        var scaleBytes = [UInt8](repeating: 0, count: scales.count * scaleType.size)
        scales.withUnsafeBytes { src in
            scaleBytes.withUnsafeMutableBytes { FloatConversion.convert(src, from: .f32, to: scaleType, into: $0, threads: .single) }
        }
        return EncodedTensor(name: name, shape: shape, originalType: originalType, scheme: .int8(groupSize: groupSize, scaleType: scaleType),
                             parts: [(TensorSpec(name: name, dtype: .i8, shape: shape), q.withUnsafeBytes { Array($0) }),
                                     (TensorSpec(name: scaleName, dtype: scaleType, shape: [shape[0], groups]), scaleBytes)])
    }
}

func bytesOf(_ values: [Float]) -> [UInt8] { values.withUnsafeBytes { Array($0) } }

/// One logical tensor of a checkpoint: a plain tensor, or a quantized weight assembled from
/// its parts. What dequantize, diff, merge and evaluation consume.
public struct LogicalTensor: Sendable {
    public enum Storage: Sendable {
        case plain(Checkpoint.Entry)
        case fourBit(FourBitStorage)
        case int8(Int8Storage)
    }

    public struct FourBitStorage: Sendable {
        public var type: FourBitType
        public var blockSize: Int
        public var packed: Checkpoint.Entry
        public var absmax: Checkpoint.Entry
        public var quantMap: Checkpoint.Entry?
        public var nestedAbsmax: Checkpoint.Entry?
        public var nestedQuantMap: Checkpoint.Entry?
        public var nestedOffset: Float?
        /// Every stored tensor of this weight, for bookkeeping.
        public var partNames: [String]
    }

    public struct Int8Storage: Sendable {
        public var weight: Checkpoint.Entry
        public var scale: Checkpoint.Entry
        public var groupSize: Int
        /// `weight_zero_point` / `weight_g_idx` when the file has them (unused by symmetric int8).
        public var extras: [Checkpoint.Entry] = []
    }

    public var name: String
    public var shape: [Int]
    /// The float dtype the values had before quantization (the dtype itself when plain).
    public var dtype: DType
    public var storage: Storage
    /// The shard the tensor lives in.
    public var fileIndex: Int

    public var elementCount: Int { shape.reduce(1, *) }

    public var scheme: QuantizationScheme? {
        switch storage {
        case .plain: return nil
        case let .fourBit(s): return .fourBit(s.type, blockSize: s.blockSize, doubleQuant: s.nestedAbsmax != nil)
        case let .int8(s): return .int8(groupSize: s.groupSize, scaleType: s.scale.info.dtype)
        }
    }
}

/// A checkpoint seen as logical tensors: each quantized weight's parts folded into one tensor.
public final class LogicalCheckpoint: Sendable {
    public let checkpoint: Checkpoint
    public let tensors: [LogicalTensor]

    public init(_ checkpoint: Checkpoint) throws {
        self.checkpoint = checkpoint
        var consumed = Set<String>()
        var byName: [String: LogicalTensor] = [:]
        let fallbackDType = checkpoint.config.flatMap { Self.configDType($0) } ?? .f32

        // bitsandbytes 4-bit: one quant_state blob names each weight.
        for entry in checkpoint.entries {
            let name = entry.info.name
            guard let marker = name.firstRange(of: "." + QuantStateKeys.prefix) else { continue }
            let base = String(name[..<marker.lowerBound])
            let file = checkpoint.files[entry.fileIndex].path
            let state = try Self.parseQuantState(checkpoint.view(entry), file: file, tensor: base)
            func part(_ suffix: String, required: Bool) throws -> Checkpoint.Entry? {
                let partName = suffix.isEmpty ? base : base + suffix
                guard let found = checkpoint.entry(named: partName) else {
                    if required { throw QuantizedLayoutError.missingPart(file: file, tensor: base, part: partName) }
                    return nil
                }
                return found
            }
            let packed = try part("", required: true)!
            let absmax = try part(".absmax", required: true)!
            let nested = state.nestedOffset != nil
            let storage = LogicalTensor.FourBitStorage(
                type: state.type, blockSize: state.blockSize, packed: packed, absmax: absmax,
                quantMap: try part(".quant_map", required: false),
                nestedAbsmax: nested ? try part(".nested_absmax", required: true) : nil,
                nestedQuantMap: nested ? try part(".nested_quant_map", required: false) : nil,
                nestedOffset: state.nestedOffset,
                partNames: [base, base + ".absmax", base + ".quant_map", base + ".nested_absmax", base + ".nested_quant_map", name])
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
            storage.partNames.forEach { consumed.insert($0) }
            byName[base] = LogicalTensor(name: base, shape: state.shape, dtype: state.dtype, storage: .fourBit(storage), fileIndex: packed.fileIndex)
        }

        // compressed-tensors int8: `P.weight` I8 beside `P.weight_scale`.
        let configGroupSize = checkpoint.config.flatMap(Self.compressedTensorsGroupSize)
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
            let groupSize = configGroupSize ?? (columns + groups - 1) / groups
            guard BlockInt8Quantizer.groupsPerRow(columns: columns, groupSize: groupSize) == groups else {
                throw QuantizedLayoutError.partShapeMismatch(file: file, tensor: scale.info.name,
                                                             expected: "\(BlockInt8Quantizer.groupsPerRow(columns: columns, groupSize: groupSize)) groups per row",
                                                             actual: "\(groups)")
            }
            let extras = ["weight_zero_point", "weight_g_idx"].compactMap { checkpoint.entry(named: String(name.dropLast("weight".count)) + $0) }
            consumed.insert(name)
            consumed.insert(scale.info.name)
            for extra in extras { consumed.insert(extra.info.name) }
            byName[name] = LogicalTensor(name: name, shape: entry.info.shape, dtype: fallbackDType,
                                         storage: .int8(.init(weight: entry, scale: scale, groupSize: groupSize, extras: extras)),
                                         fileIndex: entry.fileIndex)
        }

        var tensors: [LogicalTensor] = []
        for entry in checkpoint.entries {
            let name = entry.info.name
            if let logical = byName.removeValue(forKey: name) {
                tensors.append(logical)
            } else if !consumed.contains(name) {
                tensors.append(LogicalTensor(name: name, shape: entry.info.shape, dtype: entry.info.dtype, storage: .plain(entry),
                                             fileIndex: entry.fileIndex))
            }
        }
        self.tensors = tensors
    }

    /// Every stored tensor of `tensor` (one for a plain tensor).
    public func parts(of tensor: LogicalTensor) -> [Checkpoint.Entry] {
        switch tensor.storage {
        case .plain(let entry): return [entry]
        case .fourBit(let s): return s.partNames.compactMap { checkpoint.entry(named: $0) }
        case .int8(let s): return [s.weight, s.scale] + s.extras
        }
    }

    /// Lets the mapped pages of every stored part of `tensor` go (after it has been read).
    public func releasePages(_ tensor: LogicalTensor) {
        for part in parts(of: tensor) { checkpoint.releasePages(part) }
    }

    /// The scheme of the first quantized tensor, if any.
    public var scheme: QuantizationScheme? { tensors.lazy.compactMap(\.scheme).first }

    /// Values of a logical tensor as f32 (dequantized when quantized).
    public func float32(_ tensor: LogicalTensor, threads: ThreadBudget = .allCores) -> [Float] {
        let n = tensor.elementCount
        var out = [Float](repeating: 0, count: n)
        out.withUnsafeMutableBufferPointer { read(tensor, into: $0, threads: threads) }
        return out
    }

    public func read(_ tensor: LogicalTensor, into out: UnsafeMutableBufferPointer<Float>, threads: ThreadBudget = .allCores) {
        switch tensor.storage {
        case let .plain(entry):
            FloatValues.read(checkpoint.view(entry), into: out, threads: threads)
        case let .fourBit(s):
            var absmax = FloatValues.array(checkpoint.view(s.absmax))
            if let nested = s.nestedAbsmax, let offset = s.nestedOffset {
                let codes = checkpoint.view(s.absmax).bytes.map { $0 }
                let nestedValues = FloatValues.array(checkpoint.view(nested))
                let code = s.nestedQuantMap.map { FloatValues.array(checkpoint.view($0)) } ?? DynamicCode.values
                absmax = codes.enumerated().map { code[Int($0.element)] * nestedValues[$0.offset / DoubleQuantizedAbsmax.nestedBlockSize] + offset }
            }
            let codeTable = s.quantMap.map { FloatValues.array(checkpoint.view($0)) }
            let packed = checkpoint.view(s.packed).bytes.bindMemory(to: UInt8.self)
            absmax.withUnsafeBufferPointer { a in
                if let codeTable, codeTable.count == 16, codeTable != s.type.code {
                    // A file with its own quant_map: honour it, as bitsandbytes does.
                    for i in 0..<out.count {
                        let byte = packed[i / 2]
                        out[i] = codeTable[Int(i % 2 == 0 ? byte >> 4 : byte & 0xF)] * a[i / s.blockSize]
                    }
                } else {
                    FourBitQuantizer.dequantize(packed: packed, absmax: a, blockSize: s.blockSize, type: s.type, into: out, threads: threads)
                }
            }
        case let .int8(s):
            let q = checkpoint.view(s.weight).bytes.bindMemory(to: Int8.self)
            let scales = FloatValues.array(checkpoint.view(s.scale))
            scales.withUnsafeBufferPointer { sc in
                BlockInt8Quantizer.dequantize(q, scales: sc, rows: tensor.shape[0], columns: tensor.shape[1], groupSize: s.groupSize,
                                              into: out, threads: threads)
            }
        }
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

    static func configDType(_ config: JSONValue) -> DType? {
        switch config["torch_dtype"]?.stringValue ?? config["dtype"]?.stringValue {
        case "bfloat16": return .bf16
        case "float16": return .f16
        case "float32": return .f32
        default: return nil
        }
    }

    static func compressedTensorsGroupSize(_ config: JSONValue) -> Int? {
        guard let groups = config["quantization_config"]?["config_groups"]?.objectMembers else { return nil }
        return groups.lazy.compactMap { $0.1["weights"]?["group_size"]?.intValue }.first
    }
}

