/// The quality gates of `ckpt-compare`: limits on what quantization or merging may cost.
public struct QualityGates: Sendable {
    /// Largest allowed perplexity increase, in percent of the base's.
    public var maxPerplexityIncrease: Double?
    /// Largest allowed mean KL divergence.
    public var maxMeanDivergence: Double?

    /// Gates left nil are not checked.
    public init(maxPerplexityIncrease: Double? = nil, maxMeanDivergence: Double? = nil) {
        self.maxPerplexityIncrease = maxPerplexityIncrease
        self.maxMeanDivergence = maxMeanDivergence
    }

    /// The gates `result` fails, each as one readable line; empty when all hold.
    public func failures(_ result: DivergenceAccumulator) -> [String] {
        var failures: [String] = []
        let increase = (result.candidate.perplexity / result.base.perplexity - 1) * 100
        if let limit = maxPerplexityIncrease, increase > limit {
            failures.append("perplexity +\(formatDecimal(increase, places: 3))% > \(formatDecimal(limit, places: 3))%")
        }
        if let limit = maxMeanDivergence, result.meanDivergence > limit {
            failures.append("mean KLD \(formatValue(result.meanDivergence)) > \(formatValue(limit))")
        }
        return failures
    }

    /// Both tokenizations of the same text must agree id for id, or a comparison compares nothing.
    public static func requireSameTokens(_ base: [Int], _ candidate: [Int], file: String, baseModel: String, candidateModel: String) throws {
        guard base != candidate else { return }
        let index = base.indices.first { $0 >= candidate.count || base[$0] != candidate[$0] } ?? base.count
        throw EvaluationError.tokenizersDisagree(file: file, base: baseModel, candidate: candidateModel, index: index,
                                                 baseToken: index < base.count ? base[index] : nil,
                                                 candidateToken: index < candidate.count ? candidate[index] : nil)
    }
}
