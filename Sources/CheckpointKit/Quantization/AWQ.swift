#if canImport(Glibc)
import Glibc
#endif

/// Activation-aware weight quantization (Lin et al.; AutoAWQ's `_search_best_scale`): per input
/// channel scales s = mean|x|^α, α searched on a grid, the weights quantized as W·diag(s) and the
/// inverse folded into what produces their input, so the float model is unchanged. The error of
/// each α is measured as AutoAWQ measures it, on the products' outputs over the calibration
/// inputs, here exactly through their Gram matrix: ‖X·ΔWᵀ‖² = tr(ΔW·XᵀX·ΔWᵀ).
public enum AWQ {
    /// One searched group: the scales chosen (all 1 when no α beat leaving the weights unscaled), their α,
    /// and the output error with them and unscaled.
    public struct Search: Sendable {
        public var scales: [Float]
        public var alpha: Float
        /// Whether the scales are worth folding: some α beat the unscaled weights.
        public var scaled: Bool
        public var error: Double
        public var plainError: Double
    }

    /// The scales for `weights` (each `[rows, columns]`, all reading one input whose Gram matrix is
    /// `gram` `[columns, columns]` and mean |x| per channel `meanAbs`), α on `grid` steps in [0, 1)
    /// against the unscaled weights (with the weight term, α = 0 is not unscaled);
    /// `fakeQuantize(values, rows, columns)` is the scheme's round trip.
    public static func search(weights: [(values: [Float], rows: Int)], columns: Int, gram: [Float], meanAbs: [Float], groupSize: Int,
                              grid: Int = 20, fakeQuantize: ([Float], Int, Int) -> [Float]) -> Search {
        func error(_ scales: [Float]) -> Double {
            var total = 0.0
            for (w, rows) in weights {
                var delta = unfolded(fakeQuantize(folded(w, rows: rows, columns: columns, columnScales: scales), rows, columns),
                                     rows: rows, columns: columns, columnScales: scales)
                for i in delta.indices { delta[i] -= w[i] }
                total += outputError(delta, rows: rows, columns: columns, gram: gram)
            }
            return total
        }
        let unit = [Float](repeating: 1, count: columns)
        let plain = error(unit)
        var best = Search(scales: unit, alpha: 0, scaled: false, error: plain, plainError: plain)
        let weightMean = relativeWeightMean(weights, columns: columns, groupSize: groupSize)
        for step in 0..<max(grid, 1) {
            let alpha = Float(step) / Float(max(grid, 1))
            let scales = normalizedScales(meanAbs, weightMean: weightMean, alpha: alpha)
            let candidate = error(scales)
            if candidate < best.error { best = Search(scales: scales, alpha: alpha, scaled: true, error: candidate, plainError: plain) }
        }
        return best
    }

    /// AutoAWQ's `auto_clip` (`_compute_best_clip`): per row and group of `groupSize` columns, the
    /// largest |w| the group keeps, searched over (1 − i/`grid`)·max|w| for i below `maxShrink`·`grid`,
    /// each candidate clamped to ±max, put through the scheme's round trip, and scored by its part of
    /// the output error on the calibration inputs, exactly through the group's block of the Gram
    /// matrix (δᵀ·G·δ; AutoAWQ samples 512 tokens). Returns `w` clamped to the chosen maxima; rows
    /// whose columns do not split into whole groups are returned as they are.
    public static func clipped(_ w: [Float], rows: Int, columns: Int, gram: [Float], groupSize: Int, grid: Int = 20, maxShrink: Float = 0.5,
                               fakeQuantize: ([Float], Int, Int) -> [Float]) -> [Float] {
        let group = Swift.min(groupSize, columns)
        guard group > 0, columns % group == 0, rows > 0, gram.count == columns * columns else { return w }
        let groups = columns / group
        var peak = [Float](repeating: 0, count: rows * groups)
        for r in 0..<rows { for g in 0..<groups { for c in (g * group)..<((g + 1) * group) { peak[r * groups + g] = Swift.max(peak[r * groups + g], abs(w[r * columns + c])) } } }
        var bestError = [Double](repeating: .infinity, count: rows * groups)
        var bestMax = peak
        /// `w` with every row-group clamped to ±its limit (`limits` `[rows, groups]`).
        func clamped(to limits: [Float]) -> [Float] {
            var out = w
            for r in 0..<rows {
                for g in 0..<groups {
                    let limit = limits[r * groups + g]
                    for c in (g * group)..<((g + 1) * group) { out[r * columns + c] = Swift.min(Swift.max(w[r * columns + c], -limit), limit) }
                }
            }
            return out
        }
        var delta = [Float](repeating: 0, count: rows * columns), product = [Float](repeating: 0, count: rows * group)
        for step in 0..<Int(maxShrink * Float(grid)) {
            let factor = 1 - Float(step) / Float(grid)
            let quantized = fakeQuantize(clamped(to: peak.map { $0 * factor }), rows, columns)
            for i in delta.indices { delta[i] = quantized[i] - w[i] }
            for g in 0..<groups {
                // The group's error rows times its diagonal block of the Gram matrix: P = Δ_g · G_gg.
                delta.withUnsafeBufferPointer { d in
                    gram.withUnsafeBufferPointer { gm in
                        product.withUnsafeMutableBufferPointer { p in
                            MatrixMultiply.multiply(d.baseAddress! + g * group, gm.baseAddress! + g * group * columns + g * group, into: p.baseAddress!,
                                                    m: rows, n: group, k: group, lda: columns, ldb: columns, ldc: group)
                        }
                    }
                }
                for r in 0..<rows {
                    var error = 0.0
                    for j in 0..<group { error += Double(product[r * group + j] * delta[r * columns + g * group + j]) }
                    if error < bestError[r * groups + g] {
                        bestError[r * groups + g] = error
                        bestMax[r * groups + g] = peak[r * groups + g] * factor
                    }
                }
            }
        }
        return clamped(to: bestMax)
    }

    /// `w` `[rows, columns]` as stored once scales are folded in: rows divided by `rowScales` (the
    /// next group's, when this weight produces its input), columns multiplied by `columnScales` (its own).
    public static func folded(_ w: [Float], rows: Int, columns: Int, rowScales: [Float]? = nil, columnScales: [Float]?) -> [Float] {
        var out = w
        for r in 0..<rows {
            for c in 0..<columns {
                var v = out[r * columns + c]
                if let rowScales { v /= rowScales[r] }
                if let columnScales { v *= columnScales[c] }
                out[r * columns + c] = v
            }
        }
        return out
    }

    /// The inverse of `folded`: what stored values compute in the unscaled float model.
    public static func unfolded(_ w: [Float], rows: Int, columns: Int, rowScales: [Float]? = nil, columnScales: [Float]?) -> [Float] {
        var out = w
        for r in 0..<rows {
            for c in 0..<columns {
                var v = out[r * columns + c]
                if let rowScales { v *= rowScales[r] }
                if let columnScales { v /= columnScales[c] }
                out[r * columns + c] = v
            }
        }
        return out
    }

    /// Per column, the mean over every row of |w| relative to its group's absmax (AutoAWQ's `w_mean`).
    static func relativeWeightMean(_ weights: [(values: [Float], rows: Int)], columns: Int, groupSize: Int) -> [Float] {
        let group = Swift.max(1, Swift.min(groupSize, columns))
        var sums = [Double](repeating: 0, count: columns)
        var rows = 0
        for (w, count) in weights {
            for r in 0..<count {
                var start = 0
                while start < columns {
                    let end = Swift.min(columns, start + group)
                    var peak: Float = 0
                    for c in start..<end { peak = Swift.max(peak, abs(w[r * columns + c])) }
                    for c in start..<end { sums[c] += Double(abs(w[r * columns + c]) / (peak + 1e-6)) }
                    start = end
                }
            }
            rows += count
        }
        return sums.map { Float($0 / Double(Swift.max(rows, 1))) }
    }

    /// AutoAWQ's duo scaling: mean|x|^α / (w_mean^(1−α) + 1e-4), floored at 1e-4, divided by √(max · min) so the scales straddle 1.
    static func normalizedScales(_ meanAbs: [Float], weightMean: [Float], alpha: Float) -> [Float] {
        var s = zip(meanAbs, weightMean).map { x, w in
            Swift.max(Float.pow(Swift.max(x, 0), alpha) / (Float.pow(Swift.max(w, 0), 1 - alpha) + 1e-4), 1e-4)
        }
        let norm = (s.max()! * s.min()!).squareRoot()
        if norm > 0 && norm.isFinite { s = s.map { $0 / norm } }
        return s
    }

    /// tr(Δ·G·Δᵀ) for Δ `[rows, columns]`.
    static func outputError(_ delta: [Float], rows: Int, columns: Int, gram: [Float]) -> Double {
        var product = [Float](repeating: 0, count: rows * columns)
        delta.withUnsafeBufferPointer { d in
            gram.withUnsafeBufferPointer { g in
                product.withUnsafeMutableBufferPointer { p in
                    MatrixMultiply.multiply(d.baseAddress!, g.baseAddress!, into: p.baseAddress!, m: rows, n: columns, k: columns)
                }
            }
        }
        var total = 0.0
        for i in 0..<delta.count { total += Double(product[i] * delta[i]) }
        return total
    }
}

extension Float {
    /// `base` raised to `exponent` (Glibc's powf).
    static func pow(_ base: Float, _ exponent: Float) -> Float { Glibc.powf(base, exponent) }
}
