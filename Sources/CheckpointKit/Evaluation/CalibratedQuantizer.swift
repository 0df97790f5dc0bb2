/// Sums XᵀX of every product's input over the calibration tokens (GPTQ's Hessian, up to the
/// factor 2/n that GPTQ does not depend on). Products that read the same input one after
/// another (q, k and v; gate and up) share one sum.
public final class HessianCollector: ActivationObserver {
    private final class Sum {
        var values: [Float]
        var tokens = 0
        init(columns: Int) { values = [Float](repeating: 0, count: columns * columns) }
    }

    private var sums: [String: Sum] = [:]
    private var last: (pointer: UnsafePointer<Float>, rows: Int, name: String)?

    /// An empty collector.
    public init() {}

    /// Adds `x`ᵀ`x` of one product's input rows (weight name without `.weight`).
    public func observe(_ weight: String, _ x: UnsafePointer<Float>, rows: Int, columns: Int) {
        defer { last = (x, rows, weight) }
        if let last, last.pointer == x, last.rows == rows, let shared = sums[last.name], shared.values.count == columns * columns {
            // The same input as the product just before: one sum serves both.
            if sums[weight] == nil { sums[weight] = shared }
            if sums[weight] === shared { return }
        }
        let sum = sums[weight] ?? Sum(columns: columns)
        sums[weight] = sum
        guard rows > 0 else { return }
        sum.values.withUnsafeMutableBufferPointer { h in
            MatrixMultiply.multiply(x, x, into: h.baseAddress!, m: columns, n: columns, k: rows, beta: 1, transposeA: true,
                                    lda: columns, ldb: columns, ldc: columns)
        }
        sum.tokens += rows
    }

    /// The Hessian of `weight` (`P.weight` or `P`) and the tokens behind it, nil when no token reached it.
    public func hessian(_ weight: String) -> (values: [Float], tokens: Int)? {
        let key = weight.hasSuffix(".weight") ? String(weight.dropLast(".weight".count)) : weight
        guard let sum = sums[key], sum.tokens > 0 else { return nil }
        return (sum.values, sum.tokens)
    }
}

/// How calibration text drives a quantizer.
public struct CalibrationOptions: Sendable {
    /// The calibration token stream (already tokenized), cut into chunks of `context`.
    public var tokens: [Int]
    /// Tokens per chunk.
    public var context: Int
    /// The BOS id each chunk starts with, nil to keep the text's own first token.
    public var bos: Int?
    /// The file the tokens came from, named in errors.
    public var source: String
    /// GPTQ's act-order, static groups and dampening.
    public var actOrder = false, staticGroups = false
    public var damp: Double = 0.01

    /// Calibration on `tokens` in chunks of `context`.
    public init(tokens: [Int], context: Int, bos: Int?, source: String) {
        self.tokens = tokens
        self.context = context
        self.bos = bos
        self.source = source
    }
}

/// Failures of calibrated quantization.
public enum CalibrationError: Error, Equatable, Sendable, CustomStringConvertible {
    case textTooShort(file: String, tokens: Int, needed: Int)
    case unsupportedArchitecture(file: String, family: String, reason: String)
    case unsupportedScheme(scheme: String, reason: String)

    /// The one-line message.
    public var description: String {
        switch self {
        case let .textTooShort(file, tokens, needed):
            return "\(escapedName(file)): \(tokens) calibration tokens, need at least \(needed) (one chunk); give a longer --calibration-text or a smaller --ctx"
        case let .unsupportedArchitecture(file, family, reason):
            return "\(escapedName(file)): cannot calibrate \(family) (\(reason))"
        case let .unsupportedScheme(scheme, reason):
            return "--method gptq with \(scheme): \(reason)"
        }
    }
}

/// GPTQ over a whole model: the layers are run one at a time on the calibration chunks, each
/// layer's Hessians collected from the outputs of the already-quantized layers before it, its
/// weights quantized by GPTQ, and its outputs recomputed with those weights for the next layer.
/// The encoded weights are then written by `CheckpointQuantizer` as any other.
public enum CalibratedQuantizer {
    /// Quantizes `checkpoint` into `output` by GPTQ; per-layer notes (dampening raised, experts never routed to) join the report's.
    public static func quantize(_ checkpoint: Checkpoint, to output: String, options: QuantizationOptions,
                                calibration: CalibrationOptions) throws -> QuantizationReport {
        let clock = Stopwatch()
        try options.scheme.validate()
        try FileSystem.refuseOverlap(output: output, inputs: [checkpoint.path])
        if let found = try LogicalCheckpoint(checkpoint).quantizationDescription {
            throw QuantizationError.alreadyQuantized(path: checkpoint.path, found: found)
        }
        let (selected, _) = try CheckpointQuantizer.selection(checkpoint, options: options)
        let shapes = checkpoint.entries.filter { selected.contains($0.info.name) }.map { ($0.info.name, $0.info.shape) }
        if let refusal = options.scheme.refusal(selected: shapes, file: checkpoint.path) { throw refusal }
        let gptq = try gptqOptions(options.scheme, calibration: calibration)

        let model = try TransformerModel(checkpoint: checkpoint, threads: options.threads)
        let context = min(calibration.context, model.maximumContext ?? Int.max)
        let count = calibration.tokens.count / max(context, 1)
        guard count >= 1 else { throw CalibrationError.textTooShort(file: calibration.source, tokens: calibration.tokens.count, needed: context) }
        let chunks = (0..<count).map { i -> [Int] in
            var chunk = Array(calibration.tokens[(i * context)..<((i + 1) * context)])
            if let bos = calibration.bos { chunk[0] = bos }
            return chunk
        }
        let forward = LayerByLayerForward(model: model, chunks: chunks)
        guard forward.replacesEveryLinear else {
            throw CalibrationError.unsupportedArchitecture(file: checkpoint.path, family: "\(model.config.family)",
                                                           reason: "its fused or transposed projections are not yet calibrated one by one")
        }
        let logical = try LogicalCheckpoint(checkpoint)
        let byName = Dictionary(logical.tensors.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var encoded: [String: EncodedTensor] = [:]
        var notes: [String] = ["GPTQ calibrated on \(count) chunks of \(context) tokens of \(calibration.source)"]
        for layer in 0..<forward.layerCount {
            if Interruption.isRequested { throw FileAccessError.interrupted(file: output) }
            let collector = HessianCollector()
            forward.run(layer: layer, observer: collector, advance: false)
            var replacements: [String: [Float]] = [:]
            for name in forward.weightNames(layer: layer) where selected.contains(name) {
                guard let tensor = byName[name], tensor.shape.count == 2 else { continue }
                WorkProgress.report("GPTQ", done: layer + 1, total: forward.layerCount, item: name)
                let (rows, columns) = (tensor.shape[0], tensor.shape[1])
                let weight = logical.float32(tensor, threads: options.threads)
                if !options.allowNonFinite, let refusal = QuantizationError.firstNonFinite(weight, file: checkpoint.files[tensor.fileIndex].path, tensor: name) {
                    throw refusal
                }
                let originalType = tensor.dtype == .f64 ? .f32 : tensor.dtype
                var layerOptions = gptq
                if let integer = options.scheme as? IntegerScheme { layerOptions.scaleType = integer.scaleType(originalType: originalType) }
                let result: GPTQResult
                if let (hessian, _) = collector.hessian(name) {
                    result = try GPTQ.quantize(weight, hessian: hessian, rows: rows, columns: columns, options: layerOptions, name: name)
                    if result.damp > layerOptions.damp {
                        notes.append("\(name): Hessian not positive definite with dampening \(layerOptions.damp); used \(formatted(result.damp))")
                    }
                } else {
                    // No calibration token reached it (an expert never routed to): an identity Hessian is round-to-nearest.
                    var identity = [Float](repeating: 0, count: columns * columns)
                    for c in 0..<columns { identity[c * columns + c] = 1 }
                    result = try GPTQ.quantize(weight, hessian: identity, rows: rows, columns: columns, options: layerOptions, name: name)
                    notes.append("\(name): no calibration token reached it; quantized round-to-nearest")
                }
                let tensorEncoded = encode(result, scheme: options.scheme, name: name, shape: tensor.shape, originalType: originalType,
                                           threads: options.threads)
                var decoded = [Float](repeating: 0, count: rows * columns)
                decoded.withUnsafeMutableBufferPointer { options.scheme.decode(tensorEncoded, into: $0, threads: options.threads) }
                replacements[name] = decoded
                encoded[name] = tensorEncoded
            }
            forward.run(layer: layer, observer: nil, replacing: replacements, advance: true)
        }
        var writing = options
        writing.precomputed = encoded
        var report = try CheckpointQuantizer.quantize(checkpoint, to: output, options: writing)
        report.notes += notes
        report.seconds = clock.seconds
        return report
    }

    /// GPTQ's options for `scheme`: integer codes of its bits, or its 4-bit codebook in its blocks.
    static func gptqOptions(_ scheme: any QuantizationScheme, calibration: CalibrationOptions) throws -> GPTQOptions {
        var options: GPTQOptions
        if let integer = scheme as? IntegerScheme {
            options = GPTQOptions(codes: .integer(bits: integer.bits, symmetric: integer.symmetric && integer.format != .awq), groupSize: integer.groupSize)
        } else if let fourBit = scheme as? FourBitScheme {
            guard !fourBit.doubleQuant else {
                throw CalibrationError.unsupportedScheme(scheme: "\(fourBit)", reason: "double quantization would change the scales GPTQ fed its errors through")
            }
            options = GPTQOptions(codes: .fourBit(fourBit.type), groupSize: fourBit.blockSize)
            if calibration.actOrder && !calibration.staticGroups {
                throw CalibrationError.unsupportedScheme(scheme: "\(fourBit)", reason: "act-order needs --static-groups: bitsandbytes blocks follow the columns")
            }
        } else {
            throw CalibrationError.unsupportedScheme(scheme: "\(scheme)", reason: "expected int4, int8 (with --format), nf4 or fp4")
        }
        options.actOrder = calibration.actOrder
        options.staticGroups = calibration.staticGroups
        options.damp = calibration.damp
        return options
    }

    /// The scheme's parts for a GPTQ result: integer codes as they are, or the 4-bit values against their block absmax.
    static func encode(_ result: GPTQResult, scheme: any QuantizationScheme, name: String, shape: [Int], originalType: DType,
                       threads: ThreadBudget) -> EncodedTensor {
        if let integer = scheme as? IntegerScheme, let codes = result.integer {
            return integer.encode(codes: codes, name: name, shape: shape, originalType: originalType)
        }
        let fourBit = scheme as! FourBitScheme
        let info = TensorInfo(name: name, dtype: originalType, shape: shape, dataOffsets: 0..<0)
        return result.quantized.withUnsafeBufferPointer {
            BitsandbytesFourBitLayout.encode($0, info: info, type: fourBit.type, blockSize: fourBit.blockSize, doubleQuant: false,
                                             fixedScales: result.absmax, threads: threads)
        }
    }

    static func formatted(_ damp: Double) -> String { formatDecimal(damp, places: 4) }
}
