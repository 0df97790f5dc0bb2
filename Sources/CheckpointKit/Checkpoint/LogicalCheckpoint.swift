/// A quantization scheme with its parameters (NF4 in blocks of 64, int8 in groups of 128, …).
/// Each quantized layout in Quantization/ defines one: how to encode a weight, decode what it
/// encoded, and describe itself in config.json.
public protocol QuantizationScheme: Sendable, CustomStringConvertible {
    /// Short name: nf4, fp4, int8.
    var schemeName: String { get }
    /// Throws when the parameters are invalid (a block size the loader refuses, …).
    func validate() throws
    /// Encodes one weight of `shape` from its f32 `values`; with `optimizeScales` the block
    /// scales are searched, and the plain-scale encoding comes back too for comparison.
    /// With `importance` (one weight per input column, an imatrix's), the scale search weights each error by its column's.
    func encode(name: String, shape: [Int], originalType: DType, values: UnsafeBufferPointer<Float>, optimizeScales: Bool,
                importance: [Float]?, threads: ThreadBudget) -> (encoded: EncodedTensor, plain: EncodedTensor?)
    /// The stored tensors `encode` makes of a weight `name` of `shape` whose dtype was
    /// `originalType`, in `encode`'s order, known from those alone so that a file's header can
    /// be written before any weight is encoded; nil when a part depends on the values (a JSON
    /// blob holding a computed number, a permutation stored only when not the identity).
    func partSpecs(name: String, shape: [Int], originalType: DType) -> [TensorSpec]?
    /// `partSpecs` for a scheme whose parts depend on the values only through a cheap statistic
    /// (double quantization's absmax mean, in its quant_state JSON): `values` reads the weight's
    /// f32 values; nil when even they cannot plan the parts. Valid for plain encoding (no scale search).
    func partSpecs(name: String, shape: [Int], originalType: DType, reading values: () -> [Float]) -> [TensorSpec]?
    /// The f32 values a loader reconstructs from `tensor`.
    func decode(_ tensor: EncodedTensor, into out: UnsafeMutableBufferPointer<Float>, threads: ThreadBudget)
    /// A decoder of any flat element range of `tensor` into the pointer given (`decode`'s values at
    /// those positions, one thread), or nil when the scheme decodes whole tensors only.
    func rangeDecoder(for tensor: EncodedTensor) -> ((Range<Int>, UnsafeMutablePointer<Float>) -> Void)?
    /// config.json's `quantization_config`, given the float dtype computation runs in and the
    /// linear modules left in float.
    func quantizationConfig(computeType: DType, skippedModules: [String]) -> JSONValue
    /// What a user should know about quantizing these tensors in this scheme (empty when nothing).
    func notes(selected: [(name: String, shape: [Int])]) -> [String]
    /// An error refusing these weights (read from `file`) before anything is written, nil when all can be encoded.
    func refusal(selected: [(name: String, shape: [Int])], file: String) -> Error?
}

extension QuantizationScheme {
    /// None known in advance: a scheme that does not say is written after all its weights are encoded.
    public func partSpecs(name: String, shape: [Int], originalType: DType) -> [TensorSpec]? { nil }

    /// The shapes-only plan: a scheme that does not say reads no values for it.
    public func partSpecs(name: String, shape: [Int], originalType: DType, reading values: () -> [Float]) -> [TensorSpec]? {
        partSpecs(name: name, shape: shape, originalType: originalType)
    }

    /// None: a scheme that does not say is decoded whole.
    public func rangeDecoder(for tensor: EncodedTensor) -> ((Range<Int>, UnsafeMutablePointer<Float>) -> Void)? { nil }

    /// `encode` without importance weights.
    public func encode(name: String, shape: [Int], originalType: DType, values: UnsafeBufferPointer<Float>, optimizeScales: Bool,
                       threads: ThreadBudget) -> (encoded: EncodedTensor, plain: EncodedTensor?) {
        encode(name: name, shape: shape, originalType: originalType, values: values, optimizeScales: optimizeScales, importance: nil, threads: threads)
    }
}

/// One quantized weight as a checkpoint stores it: its parts and how to decode them.
public protocol QuantizedWeight: Sendable {
    /// The scheme the stored parts are in.
    var scheme: any QuantizationScheme { get }
    /// Every stored tensor of the weight.
    var parts: [Checkpoint.Entry] { get }
    /// Decodes the weight of `shape` into `out`, exactly as its loader does.
    func decode(from checkpoint: Checkpoint, shape: [Int], into out: UnsafeMutableBufferPointer<Float>, threads: ThreadBudget)
    /// The weight's rows widened a tile at a time, or nil when the layout decodes only whole.
    func storedRows(from checkpoint: Checkpoint, shape: [Int]) -> StoredRows?
}

/// A quantized layout's reader: finds its weights among a checkpoint's stored tensors. Each
/// layout is one file in Quantization/, listed in `QuantizedLayouts.all`.
public protocol QuantizedLayout: Sendable {
    /// The layout's weights in `checkpoint`, each with every part it claims.
    static func detect(in checkpoint: Checkpoint, fallbackDType: DType) throws -> [LogicalTensor]
}

/// Failures reading a quantized layout.
public enum QuantizedLayoutError: Error, Equatable, Sendable, CustomStringConvertible {
    case missingPart(file: String, tensor: String, part: String)
    case badQuantState(file: String, tensor: String, reason: String)
    case partShapeMismatch(file: String, tensor: String, expected: String, actual: String)
    case unsupportedVariant(file: String, tensor: String, found: String, expected: String)

    /// The one-line message: the quantized weight at fault and what is wrong with its parts.
    public var description: String {
        switch self {
        case let .missingPart(file, tensor, part):
            return "\(faultLocation(file, tensor: tensor)): quantized weight without its '\(part)' (expected it beside the weight)"
        case let .badQuantState(file, tensor, reason):
            return "\(faultLocation(file, tensor: tensor)): unreadable bitsandbytes quant_state: \(reason)"
        case let .partShapeMismatch(file, tensor, expected, actual):
            return "\(faultLocation(file, tensor: tensor)): quantized parts disagree with its shape (expected \(expected), got \(actual))"
        case let .unsupportedVariant(file, tensor, found, expected):
            return "\(faultLocation(file, tensor: tensor)): \(found) (expected \(expected))"
        }
    }
}

/// The tensors of one quantized weight, encoded and ready to write, in the layout its loader
/// expects.
public struct EncodedTensor: Sendable {
    /// The weight's name (`P.weight`) and logical shape.
    public var name: String
    /// The weight's logical shape, row-major, as before quantization.
    public var shape: [Int]
    /// The dtype the weight had.
    public var originalType: DType
    /// The scheme that encoded the parts and decodes them.
    public var scheme: any QuantizationScheme
    /// (spec, bytes) for every stored tensor, the weight first.
    public var parts: [(spec: TensorSpec, bytes: [UInt8])]

    /// Bytes of all parts.
    public var storedBytes: Int { parts.reduce(0) { $0 + $1.bytes.count } }

    /// Error of the values a loader reconstructs from this tensor against the originals.
    public func error(against reference: UnsafeBufferPointer<Float>, threads: ThreadBudget) -> ErrorMetrics {
        if let decodeRange = scheme.rangeDecoder(for: self) {
            // Each piece measured as soon as it is decoded, while it is in cache.
            return ErrorMetrics.compare(reference: reference, decodingWith: decodeRange, threads: threads)
        }
        var decoded = [Float](repeating: 0, count: reference.count)
        decoded.withUnsafeMutableBufferPointer { scheme.decode(self, into: $0, threads: threads) }
        return decoded.withUnsafeBufferPointer { ErrorMetrics.compare(reference: reference, candidate: $0, threads: threads) }
    }

    /// The bytes of the part named `name + suffix`.
    public func part(_ suffix: String) -> [UInt8]? { parts.first { $0.spec.name == name + suffix }?.bytes }
}

/// One logical tensor of a checkpoint: a plain tensor, or a quantized weight assembled from
/// its parts. What dequantize, diff, merge and evaluation consume.
public struct LogicalTensor: Sendable {
    /// How the tensor is stored.
    public enum Storage: Sendable {
        case plain(Checkpoint.Entry)
        case quantized(any QuantizedWeight)
    }

    /// The tensor's name; for a quantized weight, its main part's (`P.weight`).
    public var name: String
    /// The logical shape, row-major (a quantized weight's original shape, not its parts').
    public var shape: [Int]
    /// The float dtype the values had before quantization (the dtype itself when plain).
    public var dtype: DType
    /// Where the values come from: one stored entry, or a quantized weight's parts.
    public var storage: Storage
    /// The file the tensor lives in.
    public var fileIndex: Int

    /// Wraps the given fields as they are; nothing checks that they agree.
    public init(name: String, shape: [Int], dtype: DType, storage: Storage, fileIndex: Int) {
        self.name = name
        self.shape = shape
        self.dtype = dtype
        self.storage = storage
        self.fileIndex = fileIndex
    }

    /// Elements of the logical shape.
    public var elementCount: Int { shape.reduce(1, *) }

    /// The scheme of a quantized tensor, nil for a plain one.
    public var scheme: (any QuantizationScheme)? {
        if case .quantized(let weight) = storage { return weight.scheme }
        return nil
    }
}

/// A checkpoint seen as logical tensors: each quantized weight's parts folded into one tensor
/// by the layouts that recognise them; every other stored tensor as it is.
public final class LogicalCheckpoint: Sendable {
    /// The stored checkpoint the tensors are read from.
    public let checkpoint: Checkpoint
    /// Every logical tensor in stored order, quantized weights folded into one; weights named after none of their parts last, by name.
    public let tensors: [LogicalTensor]

    /// Folds the parts of every weight one of `layouts` recognises.
    public init(_ checkpoint: Checkpoint, layouts: [any QuantizedLayout.Type]) throws {
        self.checkpoint = checkpoint
        let fallbackDType = checkpoint.config.flatMap { Self.configDType($0) } ?? .f32
        var byName: [String: LogicalTensor] = [:]
        var consumed = Set<String>()
        for layout in layouts {
            for tensor in try layout.detect(in: checkpoint, fallbackDType: fallbackDType) where byName[tensor.name] == nil {
                if case .quantized(let weight) = tensor.storage { weight.parts.forEach { consumed.insert($0.info.name) } }
                byName[tensor.name] = tensor
            }
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
        // A layout may name a weight after none of its parts (bitsandbytes names it after the packed part, kept in order above).
        tensors += byName.values.sorted { $0.name < $1.name }
        self.tensors = tensors
    }

    /// Every stored tensor of `tensor` (one for a plain tensor).
    public func parts(of tensor: LogicalTensor) -> [Checkpoint.Entry] {
        switch tensor.storage {
        case .plain(let entry): return [entry]
        case .quantized(let weight): return weight.parts
        }
    }

    /// Lets the mapped pages of every stored part of `tensor` go (after it has been read).
    public func releasePages(_ tensor: LogicalTensor) {
        for part in parts(of: tensor) { checkpoint.releasePages(part) }
    }

    /// The scheme of the first quantized tensor, if any.
    public var scheme: (any QuantizationScheme)? { tensors.lazy.compactMap(\.scheme).first }

    /// What quantization the checkpoint carries: its config's `quantization_config`, else the
    /// first quantized tensor's scheme; nil for plain floats.
    public var quantizationDescription: String? {
        if let q = checkpoint.config?["quantization_config"] {
            let method = q["quant_method"]?.stringValue ?? "unknown"
            if method == "bitsandbytes" {
                if q["load_in_4bit"]?.boolValue == true {
                    return "bitsandbytes \(q["bnb_4bit_quant_type"]?.stringValue ?? "fp4")"
                        + (q["bnb_4bit_use_double_quant"]?.boolValue == true ? " (double quant)" : "")
                }
                return "bitsandbytes int8"
            }
            if method == "gptq" {
                let version = (q["checkpoint_format"]?.stringValue ?? q["format"]?.stringValue) == "gptq_v2" ? "v2" : "v1"
                return "gptq \(version) \(q["bits"]?.intValue ?? 4)-bit"
            }
            if method == "awq" { return "awq \((q["version"]?.stringValue ?? "gemm").lowercased()) \(q["bits"]?.intValue ?? q["w_bit"]?.intValue ?? 4)-bit" }
            if let format = q["format"]?.stringValue { return "\(method) \(format)" }
            return method
        }
        return scheme.map { "\($0)" }
    }

    /// Values of a logical tensor as f32 (dequantized when quantized).
    public func float32(_ tensor: LogicalTensor, threads: ThreadBudget = .allCores) -> [Float] {
        if case let .plain(entry) = tensor.storage {
            // Widened straight into new storage: no zero fill first (a pass over memory the widening repeats).
            return FloatValues.array(checkpoint.view(entry), threads: threads)
        }
        var out = [Float](repeating: 0, count: tensor.elementCount)
        out.withUnsafeMutableBufferPointer { read(tensor, into: $0, threads: threads) }
        return out
    }

    /// Writes a logical tensor's f32 values into `out` (its element count long).
    public func read(_ tensor: LogicalTensor, into out: UnsafeMutableBufferPointer<Float>, threads: ThreadBudget = .allCores) {
        switch tensor.storage {
        case let .plain(entry): FloatValues.read(checkpoint.view(entry), into: out, threads: threads)
        case let .quantized(weight): weight.decode(from: checkpoint, shape: tensor.shape, into: out, threads: threads)
        }
    }

    /// The float dtype config.json names (`torch_dtype` or `dtype`), if any.
    public static func configDType(_ config: JSONValue) -> DType? {
        switch config["torch_dtype"]?.stringValue ?? config["dtype"]?.stringValue {
        case "bfloat16": return .bf16
        case "float16": return .f16
        case "float32": return .f32
        default: return nil
        }
    }
}
