#if canImport(Glibc)
import Glibc
#endif

/// Per-token comparison of a candidate model with its base over the same scored positions
/// (llama.cpp `--kl-divergence`): KL(base‖candidate) over the full vocabulary in f64, whether
/// the top token agrees, and Δp = p_candidate(true token) − p_base(true token).
public struct DivergenceAccumulator: Sendable {
    /// Per-position KL(base‖candidate) in nats, clamped at 0, in evaluation order.
    public private(set) var divergences: [Double] = []
    /// Per position: whether the top tokens agree, and each model's log-probability of the true
    /// token (what a split run's piece file carries to replay `add` exactly).
    public private(set) var sameTopFlags: [Bool] = [], baseLogProbabilities: [Double] = [], candidateLogProbabilities: [Double] = []
    /// Positions where both models' most probable tokens agree.
    public private(set) var sameTop = 0
    /// Σ Δp over the positions.
    public private(set) var deltaSum = 0.0
    /// Σ Δp² over the positions.
    public private(set) var deltaSquares = 0.0
    /// The base model's perplexity over the same positions.
    public var base = PerplexityAccumulator()
    /// The candidate's perplexity over the same positions.
    public var candidate = PerplexityAccumulator()

    /// No positions yet.
    public init() {}

    /// Positions added.
    public var count: Int { divergences.count }

    /// Adds one position from its two logit rows and the true next token.
    public mutating func add(base b: UnsafeBufferPointer<Float>, candidate c: UnsafeBufferPointer<Float>, target: Int) {
        let position = Self.measure(base: b, candidate: c, target: target)
        add(divergence: position.divergence, sameTop: position.sameTop, baseLogProbability: position.baseLogProbability,
            candidateLogProbability: position.candidateLogProbability)
    }

    /// One position's values from its two logit rows and the true next token.
    static func measure(base b: UnsafeBufferPointer<Float>, candidate c: UnsafeBufferPointer<Float>, target: Int) -> Position {
        let (mb, lb) = logSoftmaxNormalizer(b), (mc, lc) = logSoftmaxNormalizer(c)
        var kl = 0.0
        var topB = 0, topC = 0
        for i in 0..<b.count {
            let logPB = Double(b[i] - mb) - lb
            let logPC = Double(c[i] - mc) - lc
            kl += Glibc.exp(logPB) * (logPB - logPC)
            if b[i] > b[topB] { topB = i }
            if c[i] > c[topC] { topC = i }
        }
        let trueB = Double(b[target] - mb) - lb, trueC = Double(c[target] - mc) - lc
        return Position(divergence: kl, sameTop: topB == topC, baseLogProbability: trueB, candidateLogProbability: trueC)
    }

    /// What one scored position contributes.
    struct Position {
        var divergence: Double, sameTop: Bool, baseLogProbability: Double, candidateLogProbability: Double
        static let zero = Position(divergence: 0, sameTop: false, baseLogProbability: 0, candidateLogProbability: 0)
    }

    /// Adds a position measured by `measure`.
    mutating func add(_ p: Position) {
        add(divergence: p.divergence, sameTop: p.sameTop, baseLogProbability: p.baseLogProbability, candidateLogProbability: p.candidateLogProbability)
    }

    /// Adds one position from precomputed values (KL and log-probabilities in nats); a negative KL counts as 0.
    public mutating func add(divergence: Double, sameTop same: Bool, baseLogProbability: Double, candidateLogProbability: Double) {
        divergences.append(max(0, divergence))
        sameTopFlags.append(same)
        baseLogProbabilities.append(baseLogProbability)
        candidateLogProbabilities.append(candidateLogProbability)
        if same { sameTop += 1 }
        let delta = Glibc.exp(candidateLogProbability) - Glibc.exp(baseLogProbability)
        deltaSum += delta
        deltaSquares += delta * delta
        base.add(negativeLogLikelihood: -baseLogProbability)
        candidate.add(negativeLogLikelihood: -candidateLogProbability)
    }

    /// Mean KL in nats; 0 when empty.
    public var meanDivergence: Double { divergences.reduce(0, +) / Double(max(count, 1)) }
    /// Fraction (0…1) of positions whose top tokens agree; 0 when empty.
    public var sameTopRate: Double { Double(sameTop) / Double(max(count, 1)) }
    /// Mean Δp; 0 when empty.
    public var meanDeltaP: Double { deltaSum / Double(max(count, 1)) }
    /// Root mean square of Δp; 0 when empty.
    public var rmsDeltaP: Double { (deltaSquares / Double(max(count, 1))).squareRoot() }

    /// The q-quantile (0…1) of the per-token divergences, with numpy's default linear interpolation.
    public func quantile(_ q: Double) -> Double {
        guard !divergences.isEmpty else { return .nan }
        let sorted = divergences.sorted()
        let position = q * Double(sorted.count - 1)
        let lower = Int(position.rounded(.down)), upper = min(lower + 1, sorted.count - 1)
        let fraction = position - Double(lower)
        return sorted[lower] + (sorted[upper] - sorted[lower]) * fraction
    }

    /// Largest per-position KL in nats; NaN when empty.
    public var maxDivergence: Double { divergences.max() ?? .nan }
}

/// KL divergence of a candidate model from its base, both run over the same chunks.
public enum DivergenceEvaluator {
    /// Runs both models over the same chunks and compares them position by position.
    public static func evaluate(base: TransformerModel, candidate: TransformerModel, tokens: [Int], plan: ChunkPlan,
                                progress: (Int, DivergenceAccumulator) -> Void = { _, _ in }) throws -> DivergenceAccumulator {
        guard base.config.vocabularySize == candidate.config.vocabularySize else {
            throw EvaluationError.vocabularyMismatch(base: base.path, baseSize: base.config.vocabularySize, candidate: candidate.path,
                                                     candidateSize: candidate.config.vocabularySize)
        }
        var result = DivergenceAccumulator()
        let vocabulary = base.config.vocabularySize
        let rows = Array(plan.scoredRows)
        // The base's logits of a batch wait for the candidate's: batches as large as keep them within 128 MB.
        let limit = min(candidate.sequencesPerBatch(length: plan.context), (128 << 20) / max(1, rows.count * vocabulary * 4))
        // Each batch is tokenized once and run through both models as it is (within both models' batch sizes).
        try plan.forEachBatch(base, chunks: plan.range, from: tokens, limit: limit) { first, sequences in
            if let maximum = candidate.maximumContext, plan.context > maximum {
                throw EvaluationError.contextBeyondModel(model: candidate.path, context: plan.context, maximum: maximum)
            }
            var baseLogits: [[Float]] = []
            try plan.forEachScoredLogits(base, batch: sequences, first: first) { _, _, logits in baseLogits.append(Array(logits)) }
            try plan.forEachScoredLogits(candidate, batch: sequences, first: first) { i, chunk, cp in
                let positions = baseLogits[i - first].withUnsafeBufferPointer { bp in
                    measureRows(rows.count, placeholder: DivergenceAccumulator.Position.zero, threads: base.threads) { r in
                        let range = (r * vocabulary)..<((r + 1) * vocabulary)
                        return DivergenceAccumulator.measure(base: UnsafeBufferPointer(rebasing: bp[range]),
                                                             candidate: UnsafeBufferPointer(rebasing: cp[range]), target: chunk[rows[r] + 1])
                    }
                }
                for position in positions { result.add(position) }
                progress(i + 1 - plan.range.lowerBound, result)
            }
        }
        return result
    }
}

/// A piece of a split `ckpt-compare` run: its per-position values in a safetensors side file
/// (F64 `kl`, `base_logprob`, `candidate_logprob`, U8 `same_top`), replayed in chunk order by `--combine`.
public enum DivergencePiece {
    /// The `kind` metadata of a piece file.
    public static let kind = "ckpt-compare-piece-v1"

    /// Writes `result`'s per-position values to `path` (atomically), with the run's identity and chunk range as metadata.
    public static func save(_ result: DivergenceAccumulator, identity: JSONValue, range: Range<Int>, to path: String, overwrite: Bool) throws {
        let n = result.count
        let specs = [TensorSpec(name: "kl", dtype: .f64, shape: [n]), TensorSpec(name: "base_logprob", dtype: .f64, shape: [n]),
                     TensorSpec(name: "candidate_logprob", dtype: .f64, shape: [n]), TensorSpec(name: "same_top", dtype: .u8, shape: [n])]
        let metadata: [(String, String)] = [("format", "pt"), ("kind", kind), ("identity", identity.serialized(sortKeys: true)),
                                             ("chunk_range", "\(range.lowerBound):\(range.upperBound)")]
        let atomic = try AtomicOutput(target: path, isDirectory: false, overwrite: overwrite)
        try atomic.translatingErrors {
            try SafetensorsLayout(specs, metadata: metadata).write(to: atomic.temporary) { info, out in
                switch info.name {
                case "kl": try result.divergences.withUnsafeBytes { try out.write($0) }
                case "base_logprob": try result.baseLogProbabilities.withUnsafeBytes { try out.write($0) }
                case "candidate_logprob": try result.candidateLogProbabilities.withUnsafeBytes { try out.write($0) }
                default: try result.sameTopFlags.map { $0 ? UInt8(1) : 0 }.withUnsafeBytes { try out.write($0) }
                }
            }
            try atomic.commit()
        }
    }

    /// Replays the pieces named by the `split` objects of split runs' JSON, in chunk order, into one result.
    /// Each piece's JSON file names its side file (`piece_file`), read relative to the JSON's folder when not found as given.
    public static func combine(_ pieces: [(file: String, split: JSONValue)]) throws -> DivergenceAccumulator {
        var result = DivergenceAccumulator()
        for piece in try SplitRun.ordered(pieces) {
            guard let named = piece.split["piece_file"]?.stringValue else {
                throw EvaluationError.badPiece(file: piece.file, reason: "no piece_file (expected the --json of ckpt-compare --chunk-range --piece FILE)")
            }
            let folder = FileSystem.split(piece.file).directory
            let path = FileSystem.isRegularFile(named) || named.hasPrefix("/") ? named : folder + "/" + named
            let file = try SafetensorsFile(path: path)
            func bad(_ reason: String) -> EvaluationError { .badPiece(file: path, reason: reason) }
            guard file.metadataValue("kind") == kind else { throw bad("not written by ckpt-compare --piece (kind \(file.metadataValue("kind") ?? "missing"))") }
            guard file.metadataValue("identity") == piece.split["identity"]?.serialized(sortKeys: true),
                file.metadataValue("chunk_range") == "\(piece.range.lowerBound):\(piece.range.upperBound)"
            else { throw bad("its identity or chunk range differs from \(piece.file)'s (expected the file that run wrote)") }
            guard let kl = file.view(named: "kl"), let b = file.view(named: "base_logprob"), let c = file.view(named: "candidate_logprob"),
                let same = file.view(named: "same_top"), kl.dtype == .f64, b.dtype == .f64, c.dtype == .f64, same.dtype == .u8,
                kl.shape.count == 1, b.shape == kl.shape, c.shape == kl.shape, same.shape == kl.shape
            else { throw bad("expected F64 kl, base_logprob, candidate_logprob and U8 same_top of one length") }
            let n = kl.elementCount
            func doubles(_ view: TensorView) -> [Double] {
                view.withBytes { raw in (0..<n).map { raw.loadUnaligned(fromByteOffset: $0 * 8, as: Double.self) } }
            }
            let klValues = doubles(kl), baseValues = doubles(b), candidateValues = doubles(c)
            let flags = same.byteArray
            for i in 0..<n {
                result.add(divergence: klValues[i], sameTop: flags[i] != 0, baseLogProbability: baseValues[i],
                           candidateLogProbability: candidateValues[i])
            }
        }
        return result
    }
}
