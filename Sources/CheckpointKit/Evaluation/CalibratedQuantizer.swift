import Synchronization
/// Sums XᵀX of every product's input over the calibration tokens (GPTQ's Hessian, up to the
/// factor 2/n that GPTQ does not depend on). Products that read the same input one after
/// another (q, k and v; gate and up: the same address, with no refill between) share one sum.
/// Each call observes one chunk (as `LayerByLayerForward` runs them), whose first row may count
/// more (`firstTokenWeight`).
public final class HessianCollector: ActivationObserver {
    private final class Sum {
        var values: [Float]
        var absolute: [Double]
        /// Σ (x_float − x)ᵀ·x `[columns, columns]`, when the float model's inputs are known (GPTAQ).
        var shift: [Float]?
        /// The chunks' first input rows, one after another, kept when each product weighs them its own way:
        /// their Σ x₀ᵀx₀ is made when a Hessian is asked for, not held beside every sum (9.4 MB for a 1536-wide input).
        var firstRows: [Float] = []
        var tokens = 0
        init(columns: Int) {
            values = [Float](repeating: 0, count: columns * columns)
            absolute = [Double](repeating: 0, count: columns)
        }
    }

    private var sums: [String: Sum] = [:]
    private var last: (pointer: UnsafePointer<Float>, rows: Int, name: String)?

    let threads: ThreadBudget
    /// How much each chunk's first token counts in XᵀX (1: as any other token).
    let firstTokenWeight: Float
    /// Whether Σ|x| per input channel is summed too (AWQ's statistic, `meanAbsolute`); GPTQ alone needs none.
    let sumsAbsolute: Bool
    /// The float model's inputs of the chunk being observed (GPTAQ): with them, each sum also
    /// gathers Σ (x_float − x)ᵀ·x over the tokens whose rows match (`shift(_:)`).
    public var floatInputs: InputRecorder?
    private var difference: [Float] = []
    /// Per product (weight name without `.weight`), how many times each chunk's first token counts in its
    /// Hessian, measured from the loss's gradients (`OutputGradients`): products sharing an input then
    /// share its sums, kept as every token once plus the first tokens' XᵀX, and `hessian` joins the two
    /// by the product's own weight. Products not named count the first token `firstTokenWeight` times.
    public var firstTokenWeights: [String: Float]?

    /// An empty collector whose sums use `threads`, each chunk's first token counted `firstTokenWeight`
    /// times; with `sumsAbsolute`, the mean |x| per channel is kept too.
    public init(threads: ThreadBudget = .allCores, firstTokenWeight: Float = 1, sumsAbsolute: Bool = true) {
        self.threads = threads
        self.firstTokenWeight = firstTokenWeight
        self.sumsAbsolute = sumsAbsolute
    }

    /// A product reading the buffer of the last one no longer reads the same input: its sum is its own.
    public func inputsRefilled() { last = nil }

    /// The sum of `weight` (`P.weight` or `P`), nil when no token reached it.
    private func sum(_ weight: String) -> Sum? {
        let key = weight.hasSuffix(".weight") ? String(weight.dropLast(".weight".count)) : weight
        guard let sum = sums[key], sum.tokens > 0 else { return nil }
        return sum
    }

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
        // OpenBLAS stays single-threaded here, as in the forward pass around it: the sum's panels go to ckpt's workers.
        sum.values.withUnsafeMutableBufferPointer { MatrixMultiply.addGram(x, rows: rows, columns: columns, into: $0.baseAddress!, threads: threads) }
        if firstTokenWeights != nil {
            sum.firstRows.append(contentsOf: UnsafeBufferPointer(start: x, count: columns))
        } else if firstTokenWeight != 1 {
            // The first row once more, (w − 1)·x₀ᵀx₀ (a rank-1 product; only the upper triangle is read).
            sum.values.withUnsafeMutableBufferPointer {
                MatrixMultiply.multiply(x, x, into: $0.baseAddress!, m: columns, n: columns, k: 1, alpha: firstTokenWeight - 1, beta: 1, transposeA: true)
            }
        }
        if let floats = floatInputs?.inputs[weight], floats.count == rows * columns {
            // D += (x_float − x)ᵀ·x. An expert routed other tokens in the float model (a count that differs) adds nothing.
            if difference.count < rows * columns { difference = [Float](repeating: 0, count: rows * columns) }
            for i in 0..<(rows * columns) { difference[i] = floats[i] - x[i] }
            if sum.shift == nil { sum.shift = [Float](repeating: 0, count: columns * columns) }
            difference.withUnsafeBufferPointer { dx in
                sum.shift!.withUnsafeMutableBufferPointer { d in
                    MatrixMultiply.addTransposedProduct(dx.baseAddress!, x, rows: rows, columns: columns, into: d.baseAddress!, threads: threads)
                }
            }
        }
        if sumsAbsolute {
            sum.absolute.withUnsafeMutableBufferPointer { total in
                for r in 0..<rows {
                    let row = x + r * columns
                    for j in 0..<columns { total[j] += Double(abs(row[j])) }
                }
            }
        }
        sum.tokens += rows
    }

    /// Σ (x_float − x)ᵀ·x of `weight`'s product (row i: input i of the float model less this one's;
    /// column j: this model's input j), nil without the float model's inputs.
    public func shift(_ weight: String) -> [Float]? { sum(weight)?.shift }

    /// The Hessian of `weight` (`P.weight` or `P`) and the tokens behind it, nil when no token reached it.
    public func hessian(_ weight: String) -> (values: [Float], tokens: Int)? {
        guard let sum = sum(weight) else { return nil }
        // Only the upper triangle is summed; mirror it.
        var h = sum.values
        let n = Int(Double(h.count).squareRoot())
        if !sum.firstRows.isEmpty {
            let key = weight.hasSuffix(".weight") ? String(weight.dropLast(".weight".count)) : weight
            let extra = (firstTokenWeights?[key] ?? firstTokenWeight) - 1
            // Σ x₀ᵀx₀ one rank-1 product at a time, chunk by chunk, as a running sum would have summed it.
            var first = [Float](repeating: 0, count: n * n)
            first.withUnsafeMutableBufferPointer { f in
                sum.firstRows.withUnsafeBufferPointer { rows in
                    for start in stride(from: 0, to: rows.count, by: n) {
                        MatrixMultiply.multiply(rows.baseAddress! + start, rows.baseAddress! + start, into: f.baseAddress!, m: n, n: n, k: 1, beta: 1,
                                                transposeA: true)
                    }
                }
            }
            for i in 0..<n { for j in i..<n { h[i * n + j] += extra * first[i * n + j] } }
        }
        for i in 0..<n { for j in 0..<i { h[i * n + j] = h[j * n + i] } }
        return (h, sum.tokens)
    }

    /// Mean |x| per input channel of `weight`'s product (AWQ's activation statistic), nil when no token
    /// reached it or the collector keeps no such sums.
    public func meanAbsolute(_ weight: String) -> [Float]? {
        guard sumsAbsolute, let sum = sum(weight) else { return nil }
        return sum.absolute.map { Float($0 / Double(sum.tokens)) }
    }
}

/// Keeps a copy of each product's input for the chunk being run (the float model's, for GPTAQ).
public final class InputRecorder: ActivationObserver {
    /// The last input seen per product (its name without `.weight`), `[rows, columns]` row-major.
    public private(set) var inputs: [String: [Float]] = [:]

    /// An empty recorder.
    public init() {}

    /// Copies `x`, reusing the product's buffer from the chunk before.
    public func observe(_ weight: String, _ x: UnsafePointer<Float>, rows: Int, columns: Int) {
        let count = rows * columns
        if inputs[weight]?.count != count { inputs[weight] = [Float](repeating: 0, count: count) }
        inputs[weight]!.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: x, count: count) }
    }
}

/// Which tokens of a calibration text a calibrated quantizer sees.
public enum CalibrationSampling: String, Sendable, CaseIterable {
    /// Chunks evenly spaced from the text's start to its end (the default).
    case spread
    /// The text's first tokens (ckpt before 2026-12-02).
    case start

    /// `budget / context` chunks of `context` tokens of `text`. Spread: the first chunk at the
    /// text's start, the last at its end, the rest evenly between, so the calibration sees all of a
    /// long text rather than its opening (GPTQ's own code draws its windows at random positions of
    /// C4 for the same reason); SmolLM2-135M int4 g64 GPTQ on Tiny Shakespeare went from +27.86% to
    /// +24.75% perplexity (16384 tokens) and from +27.14% to +24.13% (32768). A text no longer than
    /// the budget is taken whole either way.
    public func tokens(of text: [Int], budget: Int, context: Int) -> [Int] {
        let count = context > 0 ? budget / context : 0
        guard self == .spread, count > 1, text.count > count * context else { return Array(text.prefix(budget)) }
        var chunks: [Int] = []
        chunks.reserveCapacity(count * context)
        let last = text.count - context
        for i in 0..<count {
            let start = i * last / (count - 1)
            chunks += text[start..<(start + context)]
        }
        return chunks
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
    /// The tokenizer file the BOS id comes from, named in errors (the source when not given).
    public var tokenizerFile: String?
    /// The calibrated methods.
    public enum Method: String, Sendable {
        case gptq, awq
        /// AWQ's scales (and clip), then GPTQ on the scaled weights (llm-compressor's AWQModifier + GPTQModifier recipe).
        case awqGPTQ = "awq+gptq"

        /// Whether GPTQ chooses the codes (else the scheme's own rounding does).
        public var runsGPTQ: Bool { self != .awq }
        /// Whether AWQ's scales are searched and folded first.
        public var scales: Bool { self != .gptq }
    }

    /// GPTQ (error feedback through the Hessian), AWQ (activation-aware scales, then the scheme's own rounding), or both.
    public var method: Method = .gptq
    /// GPTQ's act-order and static groups.
    public var actOrder = false, staticGroups = false
    /// GPTQ's dampening, a fraction of the mean Hessian diagonal added to it; nil for the scheme's
    /// default, `dampByDefault`.
    public var damp: Double?
    /// GPTQ's range search norm (GPTQModel's `mse`, `GPTQOptions.mse`): 0 for each group's min/max range.
    public var mse: Double = 0
    /// AWQ's grid of α values in [0, 1).
    public var grid = 20
    /// AWQ's clip search after scaling (AutoAWQ's `apply_clip`, on by default there too).
    public var clip = true
    /// How many times each chunk's first token counts in the Hessians; nil for the method's default
    /// (`defaultFirstTokenWeight(for:)`: 8 for `gptq`, 1, GPTQModel's plain XᵀX, for the AWQ methods).
    /// The first position of a chunk is the attention sink every later position reads, so an error in
    /// its outputs reaches every token; GPTQ weighs output errors by the tokens behind H, and counting
    /// the first one more keeps the sink's outputs closer. Measured on SmolLM2-135M, WikiText-2 after Tiny
    /// Shakespeare, act-order, weight 1 → 8: int4 g64 (mse 2.4) +30.46% → +27.86% with 16384 tokens and
    /// +36.01% → +27.14% with 32768; NF4 (refit) +23.39% → +17.66% (on another host's OpenBLAS, int4
    /// +29.9% → +25.1%, and weight 0 +39.9%). But 8 raised int4 `awq+gptq` from +26.5% to +33.6%, whose
    /// scales already favour the loud channels, so the AWQ methods keep 1.
    public var firstTokenWeight: Double?
    /// Whether each product's first-token weight is measured instead (`--first-token-weight auto`): the
    /// mean ‖∂L/∂z‖² of the first token's output over that of the other tokens', z the product's output and
    /// L the float model's next-token loss on `gradientChunks` of the calibration chunks (GuidedQuant's
    /// saliency, Kim et al. 2025, averaged over the positions after the first). Needs a block
    /// `OutputGradients` covers; others keep `effectiveFirstTokenWeight`. Nil for the default
    /// (`effectiveMeasuresFirstTokenWeights`).
    ///
    /// On SmolLM2-135M (WikiText-2 16 × 512 after Tiny Shakespeare 32 × 512, act-order) the measured
    /// weights ran from 0 (every query's: the first query reads only its own key, so its softmax is
    /// constant) and 0.003–4 (the feed-forward and o products past the tenth layer, whose first-token
    /// outputs later layers barely use; 9–16 in the first three) to 5–840 (keys) and 10–29000 (values:
    /// every later token reads the sink's value). Against the fixed 8 they moved int4 g64's mean KL
    /// divergence from 0.2179 to 0.1988 (perplexity increase +20.23% → +19.51%) and NF4's from
    /// 0.1658 to 0.1312 (+14.15% → +10.59%), for 17–23 s more per run (2 cores).
    public var measuresFirstTokenWeights: Bool?
    /// Whether this calibration measures its first-token weights: GPTQ alone does, unless a fixed weight
    /// is given. The AWQ methods never do: their scale search reads one Hessian per scaling group (q, k
    /// and v share the query's), where the measured weights differ per product.
    public var effectiveMeasuresFirstTokenWeights: Bool {
        method == .gptq && (measuresFirstTokenWeights ?? (firstTokenWeight == nil))
    }
    /// The largest first-token weight, given or measured.
    public static let largestFirstTokenWeight = 1_000_000.0
    /// Calibration chunks (evenly spaced among all) the measured first-token weights come from.
    public static let gradientChunks = 4

    /// Whether each layer's linears are calibrated group after group (`LayerByLayerForward.sequentialGroups`:
    /// q, k, v; o; gate, up; down), each group's Hessians taken from a pass in which the groups before it
    /// are already quantized (GPTQModel's `true_sequential`, on by default there), instead of all from
    /// one float pass of the layer. Applies to the methods that run GPTQ (with `awq+gptq`, to the
    /// Hessians of the clip search and GPTQ; AWQ's scales still come from the float pass, since a
    /// producer such as v or up is quantized before its consumer's inputs are seen); `awq` alone keeps
    /// AutoAWQ's single float pass. Off unless asked: on SmolLM2-135M (WikiText-2 after Tiny
    /// Shakespeare, act-order) it moved int4 g64 from +29.9% to +30.5% and NF4 from +24.9% to +23.1%,
    /// within what one calibration text decides, for about a third more CPU time (259 s against 191 s
    /// user + system, both timed on a loaded machine): enough to take the int4 run (156 s alone) past
    /// its 3-minute budget on 2 cores.
    public var trueSequential = false
    /// GPTAQ's asymmetric calibration (`gptq` only): the float model is run beside the quantized one,
    /// and GPTQ steers each product's outputs toward the float model's outputs on the float model's
    /// inputs, W·x_float, instead of W·x on the quantized model's own (`GPTQ.quantize(shift:)`).
    /// Measured on SmolLM2-135M (WikiText-2 after Tiny Shakespeare, act-order): int4 g64 +27.81% with
    /// `trueSequential` (+30.46% without GPTAQ), +29.76% without it (+29.90%); NF4 +23.37% (+23.10%) with
    /// KL divergence 0.185 (0.200). It costs a second forward pass and the float model's hidden states:
    /// about 1.7× the CPU time and 570 MB peak RSS at 135M, above the 2× file (538 MB) of the targets. Opt-in.
    public var asymmetric = false
    /// After GPTQ, refit every row's scales to the chosen codes through the Hessian (`GPTQOptions.refitScales`);
    /// nil for the default, `refitsByDefault`. On SmolLM2-135M (WikiText-2 after Tiny Shakespeare) it lowered
    /// NF4's perplexity increase in all three recipes measured (GPTQ +24.87% → +22.93%, awq+gptq +17.53% →
    /// +16.70%, GPTQ first-token weight 8 true-sequential +21.07% → +20.17%) but raised int4's in two of three
    /// when it was the only step after GPTQ (+29.90% → +28.92%, +25.09% → +28.86%, +26.48% → +32.96%): the
    /// range search has already fitted those scales. Around the codes' coordinate descent it helps int4 (`refineRounds`).
    public var refitScales: Bool?
    /// Rounds of coordinate descent over GPTQ's codes through the Hessian, each followed by a scale
    /// refit (`GPTQOptions.refineRounds`); nil for the default, `refineRoundsByDefault`.
    public var refineRounds: Int?

    /// Whether `scheme`'s GPTQ refits its scales unless told: for the NF4/FP4 codebooks, whose block
    /// absmax is no fitted scale, yes; for integers, when their codes are refined (`refineRounds`),
    /// so that the scales follow the moved codes.
    public static func refitsByDefault(_ scheme: any QuantizationScheme, refineRounds: Int) -> Bool {
        scheme is FourBitScheme || refineRounds > 0
    }

    /// Rounds of refinement GPTQ runs with `method` unless told: 2 with `--method gptq`, none after
    /// AWQ's scales. Measured on SmolLM2-135M (WikiText-2 16 × 512 after Tiny Shakespeare, act-order,
    /// lazy blocks of one group, scales refitted around each round), mean KL divergence against GPTQ's
    /// codes as they are: int4 g64 0.2566 → 0.2079 with the calibration spread over the text
    /// (perplexity increase +24.75% → +17.79%), 0.2544 → 0.2310 from the text's start (+27.86% →
    /// +24.17%), four rounds 0.2211; NF4 0.1796 → 0.1743 (+19.32% → +17.93%). After AWQ's scales one
    /// round raised NF4's KLD from 0.158 to 0.163–0.168, so `awq+gptq` keeps GPTQ's codes.
    public static func refineRoundsByDefault(method: Method) -> Int { method == .gptq ? 2 : 0 }

    /// GPTQ's dampening for `scheme` unless told: GPTQModel's 0.01 for integers, 0.1 for the NF4/FP4
    /// codebooks. Measured on SmolLM2-135M NF4 (`--method gptq --act-order`, WikiText-2 16 × 512 after
    /// Tiny Shakespeare): dampening 0.01 → 0.05 → 0.1 moved the perplexity increase +19.62% → +15.54% →
    /// +14.15% and the mean KL divergence 0.1703 → 0.1672 → 0.1658; the codebook's steps, coarse at
    /// its ends, fit the Shakespeare Hessian less tightly and WikiText better. For int4 g64 (an earlier
    /// recipe, calibration from the text's start) 0.05 and 0.1 raised the mean KL divergence from 0.254
    /// to 0.274 and 0.272, so integers keep 0.01.
    public static func dampByDefault(_ scheme: any QuantizationScheme) -> Double { scheme is FourBitScheme ? 0.1 : 0.01 }

    /// The dampening this calibration runs `scheme`'s GPTQ with.
    public func effectiveDamp(_ scheme: any QuantizationScheme) -> Double { damp ?? CalibrationOptions.dampByDefault(scheme) }

    /// The rounds this calibration refines GPTQ's codes with.
    public var effectiveRefineRounds: Int {
        asymmetric ? 0 : refineRounds ?? CalibrationOptions.refineRoundsByDefault(method: method)
    }

    /// The first token's weight a calibration with `method` runs with unless told (see `firstTokenWeight`):
    /// 8 for GPTQ alone, 1 (every token alike) where AWQ's scales come first.
    public static func defaultFirstTokenWeight(for method: Method) -> Double { method == .gptq ? 8 : 1 }

    /// The first token's weight this calibration runs with.
    public var effectiveFirstTokenWeight: Double { firstTokenWeight ?? CalibrationOptions.defaultFirstTokenWeight(for: method) }

    /// Calibration on `tokens` in chunks of `context`.
    public init(tokens: [Int], context: Int, bos: Int?, source: String) {
        self.tokens = tokens
        self.context = context
        self.bos = bos
        self.source = source
    }

    /// Calibration on `budget` tokens of `text` drawn by `sampling`, in chunks of `context`; the text's
    /// file is the source, its tokenizer file the one errors name.
    public init(text: TextTokens, budget: Int, context: Int, sampling: CalibrationSampling) {
        self.init(tokens: sampling.tokens(of: text.tokens, budget: budget, context: context), context: context, bos: text.bos, source: text.file)
        tokenizerFile = text.tokenizerFile
    }
}

/// Failures of calibrated quantization.
public enum CalibrationError: Error, Equatable, Sendable, CustomStringConvertible {
    case textTooShort(file: String, tokens: Int, needed: Int)
    case unsupportedArchitecture(file: String, family: String, reason: String)
    case unsupportedScheme(method: String, scheme: String, reason: String)

    /// The one-line message.
    public var description: String {
        switch self {
        case let .textTooShort(file, tokens, needed):
            return "\(escapedName(file)): \(tokens) calibration tokens, need at least \(needed) (one chunk); give a longer --calibration-text or a smaller --ctx"
        case let .unsupportedArchitecture(file, family, reason):
            return "\(escapedName(file)): cannot calibrate \(family) (\(reason))"
        case let .unsupportedScheme(method, scheme, reason):
            return "--method \(method) with \(scheme): \(reason)"
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
        let (selected, _) = try CheckpointQuantizer.preflight(checkpoint, to: output, options: options)
        let gptq = calibration.method.runsGPTQ ? try gptqOptions(options.scheme, calibration: calibration) : nil
        if calibration.method.scales, let fourBit = options.scheme as? FourBitScheme, fourBit.doubleQuant {
            throw CalibrationError.unsupportedScheme(method: calibration.method.rawValue, scheme: "\(fourBit)", reason: "AWQ measures each α with the stored scales; drop --double-quant")
        }

        let model = try TransformerModel(checkpoint: checkpoint, threads: options.threads)
        // An id past the embedding's rows would stop the forward pass: refused by file and position.
        try TextTokens.check(calibration.tokens, bos: calibration.bos, vocabulary: model.config.vocabularySize, file: calibration.source,
                             tokenizerFile: calibration.tokenizerFile ?? calibration.source)
        let context = min(calibration.context, model.maximumContext ?? Int.max)
        let count = calibration.tokens.count / max(context, 1)
        guard count >= 1 else { throw CalibrationError.textTooShort(file: calibration.source, tokens: calibration.tokens.count, needed: context) }
        let chunks = (0..<count).map { i -> [Int] in
            var chunk = Array(calibration.tokens[(i * context)..<((i + 1) * context)])
            if let bos = calibration.bos { chunk[0] = bos }
            return chunk
        }
        let forward = LayerByLayerForward(model: model, chunks: chunks)
        // GPTAQ: the float model run beside, layer by layer, so each product's float inputs are known chunk by chunk.
        let native = calibration.asymmetric && calibration.method == .gptq ? LayerByLayerForward(model: model, chunks: chunks) : nil
        guard forward.replacesEveryLinear else {
            throw CalibrationError.unsupportedArchitecture(file: checkpoint.path, family: "\(model.config.family)",
                                                           reason: "its fused or transposed projections are not yet calibrated one by one")
        }
        let logical = try LogicalCheckpoint(checkpoint)
        let byName = Dictionary(logical.tensors.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var encoded: [String: (encoded: EncodedTensor, metrics: ErrorMetrics)] = [:]
        var replacedKept: [String: [UInt8]] = [:]
        var chosenAlphas: [Float?] = []
        var notes: [String] = ["\(calibration.method.rawValue.uppercased()) calibrated on \(count) chunks of \(context) tokens of \(calibration.source)"]
        if let gptq, gptq.mse > 0 { notes.append("GPTQ searched each group's range (GPTQModel's mse, norm \(formatDecimal(gptq.mse, places: 1)))") }
        if let gptq, gptq.refitScales { notes.append("GPTQ refitted each row's scales to its codes (least squares through the Hessian)") }
        if let gptq, gptq.refineRounds > 0 {
            notes.append("GPTQ's codes were refined by up to \(gptq.refineRounds) rounds of coordinate descent through the Hessian"
                + (gptq.refitScales ? ", each followed by a scale refit" : ""))
        }
        // The groups' passes serve GPTQ's Hessians; AWQ alone keeps AutoAWQ's one float pass.
        let sequential = calibration.trueSequential && calibration.method.runsGPTQ
        if sequential { notes.append("each layer's Hessians taken group after group, the groups before quantized (true sequential)") }
        let firstTokenWeight = Float(calibration.effectiveFirstTokenWeight)
        var measuredWeights: [String: Float]?
        if calibration.effectiveMeasuresFirstTokenWeights {
            if let reason = OutputGradients.unsupportedReason(model) {
                notes.append("first-token weights not measured: the backward pass does not cover \(reason)")
            } else {
                let sample = Swift.min(count, CalibrationOptions.gradientChunks)
                let picked = (0..<sample).map { chunks[$0 * count / sample] }
                let started = clock.seconds
                let norms = OutputGradients.squaredNorms(model, chunks: picked, threads: options.threads)
                // Its buffers are freed and nothing later reuses them whole: give their pages back (about 30 MB of peak at 135M).
                ProcessMemory.releaseFreeMemory()
                if Interruption.isRequested { throw FileAccessError.interrupted(file: output) }
                let values = firstTokenWeights(norms)
                let sorted = values.values.sorted()
                if let low = sorted.first, let high = sorted.last {
                    measuredWeights = values
                    notes.append("first-token weights measured per product from the loss's gradients on \(sample) chunks: "
                        + "\(formatDecimal(Double(low), places: 1))–\(formatDecimal(Double(high), places: 1)), median \(formatDecimal(Double(sorted[sorted.count / 2]), places: 1)), in \(formatDecimal(clock.seconds - started, places: 1)) s")
                } else {
                    // Chunks of one or two tokens leave no later position to measure the first against.
                    notes.append("first-token weights not measured: no product's gradients reached a token after the first in chunks of \(context)")
                }
            }
        }
        if native != nil { notes.append("GPTAQ: each product steered toward the float model's outputs (asymmetric calibration, α 0.25)") }
        if measuredWeights == nil && calibration.effectiveFirstTokenWeight != 1 {
            notes.append("each chunk's first token counted \(formatDecimal(calibration.effectiveFirstTokenWeight, places: 1)) times in the Hessians")
        }
        /// Runs `layer` for `group`'s inputs (nil: every product's) into `collector`, with `replacing` in
        /// place; with GPTAQ, chunk by chunk beside the float model, whose inputs the collector then sees too.
        func collect(into collector: HessianCollector, layer: Int, group: [String]?, replacing: [String: [Float]]) {
            guard let native else {
                forward.run(layer: layer, observer: collector, replacing: replacing, advance: false, observingOnly: group)
                return
            }
            let recorder = InputRecorder()
            collector.floatInputs = recorder
            for chunk in 0..<count {
                native.run(layer: layer, chunks: chunk..<(chunk + 1), observer: recorder, advance: false, observingOnly: group)
                forward.run(layer: layer, chunks: chunk..<(chunk + 1), observer: collector, replacing: replacing, advance: false, observingOnly: group)
            }
            collector.floatInputs = nil
        }
        for layer in 0..<forward.layerCount {
            if Interruption.isRequested { throw FileAccessError.interrupted(file: output) }
            // AWQ's scales read the float pass's mean |x|; the sequential passes serve the clip and GPTQ alone.
            var collector = HessianCollector(threads: options.threads, firstTokenWeight: firstTokenWeight, sumsAbsolute: calibration.method.scales)
            collector.firstTokenWeights = measuredWeights
            // True-sequential GPTQ takes every Hessian from its group's own pass; AWQ's scales need the float pass.
            if !(sequential && calibration.method == .gptq) { collect(into: collector, layer: layer, group: nil, replacing: [:]) }
            var replacements: [String: [Float]] = [:]
            // The methods' products and factorizations may use every core; the forward pass wants OpenBLAS single-threaded.
            MatrixMultiply.setThreads(options.threads)
            func weight(_ name: String, threads: ThreadBudget) throws -> (tensor: LogicalTensor, values: [Float], originalType: DType) {
                let tensor = byName[name]!
                let values = logical.float32(tensor, threads: threads)
                if !options.allowNonFinite, let refusal = QuantizationError.firstNonFinite(values, file: checkpoint.files[tensor.fileIndex].path, tensor: name) {
                    throw refusal
                }
                return (tensor, values, tensor.dtype == .f64 ? .f32 : tensor.dtype)
            }
            let names = forward.weightNames(layer: layer).filter { selected.contains($0) && byName[$0]?.shape.count == 2 }
            /// `names` in the groups whose Hessians are collected together, and a pass collecting one group's
            /// inputs with the weights quantized so far in place (nil: the float pass's collector serves all).
            let groups = sequential ? forward.sequentialGroups(layer: layer).map { $0.filter(names.contains) }.filter { !$0.isEmpty } : [names]
            func sequentialHessians(_ group: [String], _ replacing: [String: [Float]]) -> HessianCollector? {
                guard sequential else { return nil }
                let pass = HessianCollector(threads: options.threads, firstTokenWeight: firstTokenWeight, sumsAbsolute: false)
                pass.firstTokenWeights = measuredWeights
                MatrixMultiply.setThreads(.single)
                collect(into: pass, layer: layer, group: group, replacing: replacing)
                MatrixMultiply.setThreads(options.threads)
                return pass
            }
            if calibration.method.scales {
                let (layerEncoded, layerReplacements, folded, alphas, layerNotes) = try awqLayer(forward, layer: layer, names: names, collector: collector,
                                                                                   weight: { try weight($0, threads: options.threads) }, logical: logical,
                                                                                   byName: byName, options: options,
                                                                                   grid: calibration.grid, clip: calibration.clip, gptq: gptq,
                                                                                   groups: groups, sequentialHessians: sequentialHessians)
                encoded.merge(layerEncoded) { $1 }
                replacements = layerReplacements
                replacedKept.merge(folded) { $1 }
                chosenAlphas += alphas
                notes += layerNotes
            }
            for group in calibration.method == .gptq ? groups : [] {
                if let pass = sequentialHessians(group, replacements) { collector = pass }
                let hessians = collector
                // The group's matrices are independent once their Hessians are summed: two at a time run whole,
                // side by side, the largest first, each on half the threads (OpenBLAS single-threaded), so that
                // every core stays busy through GPTQ's serial steps (the permutations, the Cholesky factorizations,
                // the column loop's group parameters) and its pieces of rows that do not split evenly. Two, not
                // more: each holds its own copies of H and of the weight, so memory stays within two matrices'
                // work whatever --threads is. GPTQ's result is the same on any thread count, and which worker
                // runs a matrix changes nothing, so the output is the same for any --threads.
                let work = group.indices.sorted { a, b in
                    let (x, y) = (byName[group[a]]!.shape, byName[group[b]]!.shape)
                    let (costX, costY) = (x[0] * x[1] + x[1] * x[1], y[0] * y[1] + y[1] * y[1])
                    return costX != costY ? costX > costY : a < b
                }
                let side = Swift.min(options.threads.count, work.count, 2)
                // A group of one (true sequential's o or down) keeps every thread inside.
                let inner = ThreadBudget(options.threads.count / side)
                let outcomes = Mutex<[Int: Result<CalibratedMatrix, any Error>]>([:])
                MatrixMultiply.setThreads(.single)
                ThreadBudget(side).forEachChunk(work.count) { item in
                    let index = work[item], name = group[index]
                    WorkProgress.report("GPTQ", done: layer + 1, total: forward.layerCount, item: name)
                    let outcome = Result { () throws -> CalibratedMatrix in
                        try gptqMatrix(name, weight: try weight(name, threads: inner), hessians: hessians, gptq: gptq!, scheme: options.scheme,
                                       output: output, threads: inner)
                    }
                    outcomes.withLock { $0[index] = outcome }
                }
                if Interruption.isRequested { throw FileAccessError.interrupted(file: output) }
                let results = outcomes.withLock { $0 }
                for (index, name) in group.enumerated() {
                    // A matrix an interruption skipped has no outcome.
                    guard let outcome = results[index] else { throw FileAccessError.interrupted(file: output) }
                    let matrix = try outcome.get()
                    notes += matrix.notes
                    replacements[name] = matrix.decoded
                    encoded[name] = (matrix.encoded, matrix.metrics)
                }
            }
            MatrixMultiply.setThreads(.single)
            // The last layer's outputs feed no later layer.
            guard layer + 1 < forward.layerCount else { break }
            forward.run(layer: layer, observer: nil, replacing: replacements, advance: true)
            native?.run(layer: layer, observer: nil, advance: true)
        }
        var writing = options
        writing.precomputed = encoded
        writing.replacedKept = replacedKept
        let scaled = chosenAlphas.compactMap { $0 }
        if !chosenAlphas.isEmpty {
            notes.append("AWQ scaled \(scaled.count) of \(chosenAlphas.count) groups"
                + (scaled.isEmpty ? "" : ", α mean \(formatDecimal(Double(scaled.reduce(0, +)) / Double(scaled.count), places: 2))")
                + " (the others kept unscaled: no α beat them)")
        }
        var report = try CheckpointQuantizer.quantize(checkpoint, to: output, options: writing)
        report.notes += notes
        report.seconds = clock.seconds
        return report
    }

    /// Each product's first-token weight from its per-position Σ‖∂L/∂z‖² (`OutputGradients.squaredNorms`):
    /// the first position's over the mean of the others' that have a next token (the last has none), at most
    /// `largestFirstTokenWeight`; none for a product no gradient reached or whose sums are not finite.
    static func firstTokenWeights(_ norms: [String: [Double]]) -> [String: Float] {
        var weights: [String: Float] = [:]
        for (name, positions) in norms where positions.count > 2 {
            let rest = positions[1..<(positions.count - 1)].reduce(0, +) / Double(positions.count - 2)
            guard rest > 0, rest.isFinite, positions[0].isFinite else { continue }
            // Within what --first-token-weight accepts: a first token a million times louder already owns its Hessian.
            weights[name] = Float(Swift.min(positions[0] / rest, CalibrationOptions.largestFirstTokenWeight))
        }
        return weights
    }

    /// One matrix quantized by GPTQ: what the writer and the next layer's pass need, and its notes.
    struct CalibratedMatrix {
        var encoded: EncodedTensor
        var metrics: ErrorMetrics
        /// The values the quantized model computes with, `[rows, columns]`.
        var decoded: [Float]
        var notes: [String]
    }

    /// GPTQ of the weight `name` (its tensor and values as read) against its Hessian in `hessians`, on
    /// `threads` (the same result on any count, OpenBLAS single-threaded as the caller leaves it), then
    /// encoded by `scheme` and decoded again. A weight no calibration token reached (an expert never
    /// routed to) gets an identity Hessian: round to nearest.
    static func gptqMatrix(_ name: String, weight: (tensor: LogicalTensor, values: [Float], originalType: DType), hessians: HessianCollector,
                           gptq: GPTQOptions, scheme: any QuantizationScheme, output: String, threads: ThreadBudget) throws -> CalibratedMatrix {
        let (tensor, values, originalType) = weight
        let (rows, columns) = (tensor.shape[0], tensor.shape[1])
        var options = gptq
        if let integer = scheme as? IntegerScheme { options.scaleType = integer.scaleType(originalType: originalType) }
        var notes: [String] = []
        let result: GPTQResult
        if let (hessian, _) = hessians.hessian(name) {
            result = try GPTQ.quantize(values, hessian: hessian, rows: rows, columns: columns, options: options, name: name, threads: threads,
                                       shift: hessians.shift(name))
            if result.damp > options.damp {
                notes.append("\(name): Hessian not positive definite with dampening \(options.damp); used \(formatDecimal(result.damp, places: 4))")
            }
        } else {
            var identity = [Float](repeating: 0, count: columns * columns)
            for c in 0..<columns { identity[c * columns + c] = 1 }
            result = try GPTQ.quantize(values, hessian: identity, rows: rows, columns: columns, options: options, name: name, threads: threads)
            notes.append("\(name): no calibration token reached it; quantized round-to-nearest")
        }
        if Interruption.isRequested { throw FileAccessError.interrupted(file: output) }
        let encoded = encode(result, scheme: scheme, name: name, shape: tensor.shape, originalType: originalType, threads: threads)
        var decoded = [Float](repeating: 0, count: rows * columns)
        decoded.withUnsafeMutableBufferPointer { scheme.decode(encoded, into: $0, threads: threads) }
        let metrics = values.withUnsafeBufferPointer { v in decoded.withUnsafeBufferPointer { ErrorMetrics.compare(reference: v, candidate: $0, threads: threads) } }
        return CalibratedMatrix(encoded: encoded, metrics: metrics, decoded: decoded, notes: notes)
    }

    /// One layer by AWQ: each scaling group's α searched on its input's Gram matrix and mean |x|, the
    /// scales folded (norms divided, producers' rows divided, the group's columns multiplied), each
    /// weight but the query and key clipped per group (`clip`), then encoded by the scheme, or, with
    /// `gptq`, quantized by GPTQ on the scaled weights against the scaled inputs' Hessian. Returns
    /// the encodings, the weights the float forward pass sees (the encoded values unfolded), the
    /// folded norms' bytes, and the α chosen per group. The weights are quantized in `groups`; when
    /// `sequentialHessians` gives a pass for a group (true sequential), the clip and GPTQ use its
    /// Hessians, taken with the weights quantized before it in place, instead of the float pass's.
    static func awqLayer(_ forward: LayerByLayerForward, layer: Int, names: [String], collector: HessianCollector,
                         weight: (String) throws -> (tensor: LogicalTensor, values: [Float], originalType: DType), logical: LogicalCheckpoint,
                         byName: [String: LogicalTensor], options: QuantizationOptions, grid: Int, clip: Bool, gptq: GPTQOptions? = nil,
                         groups: [[String]], sequentialHessians: ([String], [String: [Float]]) -> HessianCollector?) throws
        -> (encoded: [String: (encoded: EncodedTensor, metrics: ErrorMetrics)], replacements: [String: [Float]], folded: [String: [UInt8]], alphas: [Float?],
            notes: [String])
    {
        let scheme = options.scheme
        var cache: [String: (tensor: LogicalTensor, values: [Float], originalType: DType)] = [:]
        func load(_ name: String) throws -> (tensor: LogicalTensor, values: [Float], originalType: DType) {
            if let hit = cache[name] { return hit }
            let loaded = try weight(name)
            cache[name] = loaded
            return loaded
        }
        /// The scheme's encoding of `values` and what its loader reads back.
        func roundTrip(_ values: [Float], shape: [Int], name: String, originalType: DType) -> (encoded: EncodedTensor, decoded: [Float]) {
            let encoded = values.withUnsafeBufferPointer {
                scheme.encode(name: name, shape: shape, originalType: originalType, values: $0, optimizeScales: false, threads: options.threads).encoded
            }
            var decoded = [Float](repeating: 0, count: values.count)
            decoded.withUnsafeMutableBufferPointer { scheme.decode(encoded, into: $0, threads: options.threads) }
            return (encoded, decoded)
        }
        var columnScales: [String: [Float]] = [:], rowScales: [String: [Float]] = [:]
        var folded: [String: [UInt8]] = [:]
        var alphas: [Float?] = []
        var notes: [String] = []
        let selected = Set(names)
        for group in forward.scalingGroups(layer: layer) {
            // Every member quantized, and whatever produces the input foldable (a norm, or a producer quantized here too).
            guard group.linears.allSatisfy(selected.contains), group.producer.map(selected.contains) ?? true,
                  let (gram, _) = collector.hessian(group.linears[0]), let meanAbs = collector.meanAbsolute(group.linears[0]) else { continue }
            WorkProgress.report("AWQ", done: layer + 1, total: forward.layerCount, item: group.linears[0])
            let members = try group.linears.map { try load($0) }
            let columns = members[0].tensor.shape[1]
            let originalType = members[0].originalType
            let search = AWQ.search(weights: members.map { ($0.values, $0.tensor.shape[0]) }, columns: columns, gram: gram, meanAbs: meanAbs,
                                    groupSize: groupColumns(scheme, columns: columns), grid: grid) { values, rows, columns in
                roundTrip(values, shape: [rows, columns], name: group.linears[0], originalType: originalType).decoded
            }
            alphas.append(search.scaled ? search.alpha : nil)
            guard search.scaled else { continue }
            for name in group.linears { columnScales[name] = search.scales }
            if let producer = group.producer { rowScales[producer] = search.scales }
            if let norm = group.norm, let tensor = byName[norm] {
                // The norm's output is divided by s: w / s, or for a (1 + w) norm, (1 + w) / s − 1.
                let w = logical.float32(tensor, threads: .single)
                let scaled = zip(w, search.scales).map { group.normPlusOne ? (1 + $0) / $1 - 1 : $0 / $1 }
                folded[norm] = FloatValues.bytes(scaled, as: tensor.dtype)
            }
        }
        var encoded: [String: (encoded: EncodedTensor, metrics: ErrorMetrics)] = [:]
        var replacements: [String: [Float]] = [:]
        var hessians = collector
        for group in groups {
            if let pass = sequentialHessians(group, replacements) { hessians = pass }
            for name in group {
                let (tensor, values, originalType) = try load(name)
                let (rows, columns) = (tensor.shape[0], tensor.shape[1])
                let rowScale = rowScales[name], columnScale = columnScales[name]
                var stored = AWQ.folded(values, rows: rows, columns: columns, rowScales: rowScale, columnScales: columnScale)
                // The folded weight's inputs are the scaled ones: G' = diag(1/s)·G·diag(1/s), for the clip and for GPTQ.
                var gram = hessians.hessian(name)?.values
                if let cs = columnScale, gram != nil { for i in 0..<columns { for j in 0..<columns { gram![i * columns + j] /= cs[i] * cs[j] } } }
                if clip, !isQueryOrKey(name), let gram {
                    stored = AWQ.clipped(stored, rows: rows, columns: columns, gram: gram, groupSize: groupColumns(scheme, columns: columns)) { v, r, c in
                        roundTrip(v, shape: [r, c], name: name, originalType: originalType).decoded
                    }
                }
                var tensorEncoded: EncodedTensor, decoded: [Float]
                if let gptq, let gram {
                    var layerOptions = gptq
                    if let integer = scheme as? IntegerScheme { layerOptions.scaleType = integer.scaleType(originalType: originalType) }
                    let result = try GPTQ.quantize(stored, hessian: gram, rows: rows, columns: columns, options: layerOptions, name: name, threads: options.threads)
                    if result.damp > layerOptions.damp {
                        notes.append("\(name): Hessian not positive definite with dampening \(layerOptions.damp); used \(formatDecimal(result.damp, places: 4))")
                    }
                    tensorEncoded = encode(result, scheme: scheme, name: name, shape: tensor.shape, originalType: originalType, threads: options.threads)
                    decoded = [Float](repeating: 0, count: rows * columns)
                    decoded.withUnsafeMutableBufferPointer { scheme.decode(tensorEncoded, into: $0, threads: options.threads) }
                } else {
                    (tensorEncoded, decoded) = roundTrip(stored, shape: tensor.shape, name: name, originalType: originalType)
                }
                let effective = AWQ.unfolded(decoded, rows: rows, columns: columns, rowScales: rowScale, columnScales: columnScale)
                let metrics = values.withUnsafeBufferPointer { v in effective.withUnsafeBufferPointer { ErrorMetrics.compare(reference: v, candidate: $0, threads: options.threads) } }
                encoded[name] = (tensorEncoded, metrics)
                replacements[name] = effective
            }
        }
        return (encoded, replacements, folded, alphas, notes)
    }

    /// Whether `name` is a query or key projection, whose clipping AutoAWQ skips (attention scores are too sensitive).
    /// AutoAWQ matches "q_"/"k_" anywhere in the name, which also skips e.g. Mixtral's `block_sparse_moe` experts;
    /// here only the projection's own name counts.
    static func isQueryOrKey(_ name: String) -> Bool {
        let parts = name.split(separator: ".")
        guard let module = parts.last == "weight" ? parts.dropLast().last : parts.last else { return false }
        return module.hasPrefix("q_") || module.hasPrefix("k_") || ["query", "key", "Wqkv", "qkv_proj", "query_key_value"].contains(module)
    }

    /// Columns per scale of `scheme` for rows of `columns` (AWQ's weight statistic is relative to them).
    static func groupColumns(_ scheme: any QuantizationScheme, columns: Int) -> Int {
        if let integer = scheme as? IntegerScheme { return integer.groupColumns(columns) }
        if let fourBit = scheme as? FourBitScheme { return fourBit.blockSize }
        if let int8 = scheme as? Int8Scheme { return int8.groupSize }
        return columns
    }

    /// GPTQ's options for `scheme`: integer codes of its bits, or its 4-bit codebook in its blocks.
    static func gptqOptions(_ scheme: any QuantizationScheme, calibration: CalibrationOptions) throws -> GPTQOptions {
        var options: GPTQOptions
        if let integer = scheme as? IntegerScheme {
            options = GPTQOptions(codes: .integer(bits: integer.bits, symmetric: integer.storesSymmetric), groupSize: integer.groupSize)
        } else if let fourBit = scheme as? FourBitScheme {
            guard !fourBit.doubleQuant else {
                throw CalibrationError.unsupportedScheme(method: "gptq", scheme: "\(fourBit)", reason: "double quantization would change the scales GPTQ fed its errors through")
            }
            options = GPTQOptions(codes: .fourBit(fourBit.type), groupSize: fourBit.blockSize)
        } else {
            throw CalibrationError.unsupportedScheme(method: "gptq", scheme: "\(scheme)", reason: "expected int4, int8 (with --format), nf4 or fp4")
        }
        options.actOrder = calibration.actOrder
        options.staticGroups = calibration.staticGroups
        // Formats whose loaders take no permuted g_idx (pack-quantized in compressed-tensors 0.20, bitsandbytes
        // blocks, AWQ) order columns within groups instead.
        let integerFormat = (scheme as? IntegerScheme)?.format
        options.groupAwareOrder = integerFormat != .gptq
        options.damp = calibration.effectiveDamp(scheme)
        options.mse = calibration.mse
        // GPTAQ steers toward another product than H's, which the refit would undo.
        options.refineRounds = calibration.effectiveRefineRounds
        options.refitScales = !calibration.asymmetric
            && (calibration.refitScales ?? CalibrationOptions.refitsByDefault(scheme, refineRounds: options.refineRounds))
        // Lazy blocks of one group for `--method gptq`: every group's parameters are then measured on the
        // weight as all the earlier columns' errors left it, not as the previous block did (GPTQModel's blocks
        // of 128 measure a group starting mid-block before that block's updates; spec §4.3). SmolLM2-135M
        // alone: int4 g64 KLD 0.2566 → 0.2411, NF4 0.1827 → 0.1796. After AWQ's scales they raised NF4's
        // KLD (0.158 → 0.174; with a descent round 0.163 → 0.168), so `awq+gptq` keeps blocks of 128.
        if calibration.method == .gptq, let group = options.groupSize { options.blockSize = group }
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
}
