/// PEFT's task-merging rules (`peft/utils/merge_utils.py`, peft 0.21.2), over K equally shaped
/// tensors held flat in f32, as torch computes them in f32: prune each tensor (by magnitude, or
/// by a random mask rescaled by 1/density), optionally elect a sign per element, then sum the
/// weighted tensors (or average those agreeing with the elected sign).
public enum TaskMerging {
    /// How TIES elects each element's sign (`majority_sign_method`).
    public enum MajoritySign: String, Sendable, CaseIterable {
        /// The sign of the sum of the pruned values.
        case total
        /// The sign held by more of the pruned values.
        case frequency
    }

    /// The five rules of `merge_utils`.
    public enum Rule: Sendable, Equatable {
        /// `task_arithmetic`: Σ wᵢ·tᵢ.
        case taskArithmetic
        /// `magnitude_prune`: each tensor keeps its ⌊density·n⌋ largest |values|, then Σ wᵢ·tᵢ.
        case magnitudePrune
        /// `ties`: magnitude pruning, sign election, disjoint mean of the weighted values.
        case ties
        /// `dare_linear`: random pruning rescaled by 1/density, then Σ wᵢ·tᵢ.
        case dareLinear
        /// `dare_ties`: random pruning rescaled, sign election, disjoint mean.
        case dareTies

        /// Whether the rule drops values at random (and so takes masks).
        public var isRandom: Bool { self == .dareLinear || self == .dareTies }
    }

    /// Combines `tensors` (each of the same count) with `weights` (one per tensor, already rounded
    /// to f32 as `torch.tensor` does) by `rule`. `masks` gives the kept positions for the random
    /// rules, one per tensor (PEFT draws them with `torch.bernoulli`; callers draw their own).
    public static func combine(_ tensors: [[Float]], weights: [Float], rule: Rule, density: Double,
                               majoritySign: MajoritySign = .total, masks: [[Bool]] = []) -> [Float] {
        precondition(tensors.count == weights.count && !tensors.isEmpty, "one weight per tensor")
        let pruned: [[Float]]
        switch rule {
        case .taskArithmetic: pruned = tensors
        case .magnitudePrune, .ties: pruned = tensors.map { keepLargest($0, density: density) }
        case .dareLinear, .dareTies:
            precondition(masks.count == tensors.count, "one mask per tensor")
            pruned = zip(tensors, masks).map { dropRandom($0, kept: $1, density: density) }
        }
        switch rule {
        case .taskArithmetic, .magnitudePrune, .dareLinear:
            return weightedSum(pruned, weights: weights)
        case .ties, .dareTies:
            return disjointMean(pruned, weights: weights, elected: electedSigns(pruned, method: majoritySign))
        }
    }

    /// `magnitude_based_pruning`: keeps the k = ⌊density·n⌋ values of largest magnitude (`torch.topk`)
    /// and zeroes the rest; at density ≥ 1 nothing is pruned (`prune`). Among equal magnitudes at the
    /// threshold, the ones torch's CPU topk keeps (`TorchTopK`, which replays its selection).
    public static func keepLargest(_ x: [Float], density: Double) -> [Float] {
        guard density < 1 else { return x }
        let k = Int((density * Double(x.count)).rounded(.towardZero))
        guard k > 0 else { return [Float](repeating: 0, count: x.count) }
        guard k < x.count else { return x }
        // Which of several equal magnitudes at the threshold stay is torch's algorithm's choice, so its selection is replayed.
        var kept = [Float](repeating: 0, count: x.count)
        for i in TorchTopK.largest(x.map { abs($0) }, k: k) { kept[i] = x[i] }
        return kept
    }

    /// `random_pruning` with rescale: x·mask / density, in f32 (torch divides by the density as an f32 scalar).
    public static func dropRandom(_ x: [Float], kept: [Bool], density: Double) -> [Float] {
        precondition(kept.count == x.count, "one mask entry per value")
        guard density < 1 else { return x }
        let d = Float(density)
        return x.indices.map { kept[$0] ? x[$0] / d : 0 * x[$0] / d }
    }

    /// The mask `torch.bernoulli(full(density))` stands for: position i kept when a uniform draw is
    /// below `density`. ckpt's draws are SplitMix64 of `seed` (24-bit uniforms), so a seed gives the
    /// same mask on every machine and thread count; torch's generator is not reproduced.
    public static func randomMask(count: Int, density: Double, seed: UInt64) -> [Bool] {
        var state = seed
        return (0..<count).map { _ in
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            return Double(z >> 40) / 16_777_216 < density
        }
    }

    /// Σ wᵢ·tᵢ, each product rounded to f32 and summed in tensor order (torch's `(t * w).sum(0)`).
    static func weightedSum(_ tensors: [[Float]], weights: [Float]) -> [Float] {
        var sum = [Float](repeating: 0, count: tensors[0].count)
        for (t, w) in zip(tensors, weights) {
            for j in sum.indices { sum[j] += t[j] * w }
        }
        return sum
    }

    /// `calculate_majority_sign_mask`: per position +1 when the total (or the count of signs) is ≥ 0, else −1.
    static func electedSigns(_ tensors: [[Float]], method: MajoritySign) -> [Float] {
        var total = [Float](repeating: 0, count: tensors[0].count)
        for t in tensors {
            for j in total.indices {
                total[j] += method == .total ? t[j] : sign(t[j])
            }
        }
        return total.map { $0 >= 0 ? 1 : -1 }
    }

    /// `disjoint_merge` of the weighted tensors: the mean over the tensors whose value has the
    /// elected sign (a pruned zero has none), 0 where none has it.
    static func disjointMean(_ tensors: [[Float]], weights: [Float], elected: [Float]) -> [Float] {
        var sum = [Float](repeating: 0, count: tensors[0].count)
        var agreeing = [Float](repeating: 0, count: sum.count)
        for (t, w) in zip(tensors, weights) {
            for j in sum.indices where sign(t[j]) == elected[j] {
                sum[j] += t[j] * w
                agreeing[j] += 1
            }
        }
        return sum.indices.map { sum[$0] / Swift.max(agreeing[$0], 1) }
    }

    /// torch.sign: −1, 0 or +1.
    @inline(__always)
    static func sign(_ v: Float) -> Float { v > 0 ? 1 : (v < 0 ? -1 : 0) }
}
