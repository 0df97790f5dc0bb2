#if canImport(Glibc)
import Glibc
#endif

/// Per-token comparison of a candidate model with its base over the same scored positions
/// (llama.cpp `--kl-divergence`): KL(base‖candidate) over the full vocabulary in f64, whether
/// the top token agrees, and Δp = p_candidate(true token) − p_base(true token).
public struct DivergenceAccumulator: Sendable {
    /// Per-position KL(base‖candidate) in nats, clamped at 0, in evaluation order.
    public private(set) var divergences: [Double] = []
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
        add(divergence: kl, sameTop: topB == topC, baseLogProbability: trueB, candidateLogProbability: trueC)
    }

    /// Adds one position from precomputed values (KL and log-probabilities in nats); a negative KL counts as 0.
    public mutating func add(divergence: Double, sameTop same: Bool, baseLogProbability: Double, candidateLogProbability: Double) {
        divergences.append(max(0, divergence))
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
        for i in 0..<plan.chunks {
            let (chunk, b) = try plan.scoredLogits(base, chunk: i, from: tokens)
            let c = try plan.scoredLogits(candidate, chunk: i, from: tokens).logits
            let rows = plan.scoredRows
            b.withUnsafeBufferPointer { bp in
                c.withUnsafeBufferPointer { cp in
                    for (r, position) in rows.enumerated() {
                        let range = (r * vocabulary)..<((r + 1) * vocabulary)
                        result.add(base: UnsafeBufferPointer(rebasing: bp[range]), candidate: UnsafeBufferPointer(rebasing: cp[range]),
                                   target: chunk[position + 1])
                    }
                }
            }
            progress(i + 1, result)
        }
        return result
    }
}
