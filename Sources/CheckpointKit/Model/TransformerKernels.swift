import CKernels
#if canImport(Glibc)
import Glibc
#endif

/// The element-wise and row-wise pieces of a transformer forward pass. Matrix products go to
/// OpenBLAS; these run SIMD, rows spread over threads, each beside its scalar reference.
public enum TransformerKernels {
    /// Whether the AVX-512 twins in CKernels run (checked once).
    static let usesAVX512 = avx512Available

    // MARK: - exp

    /// e^x for 16 lanes: Cody–Waite range reduction (x = n·ln2 + r) and a degree-6 polynomial,
    /// relative error below 2e-7 over the float range; underflows to 0 below −87.3. `exp16` in
    /// Sources/CKernels/kernels.c is its AVX-512 twin, with the same constants in the same order.
    @inline(__always)
    public static func exp(_ x: SIMD16<Float>) -> SIMD16<Float> {
        let clamped = x.clamped(SIMD16(repeating: -87.3), SIMD16(repeating: 88.7))
        // n = round(x / ln 2) without a float→int conversion (a slow generic path for SIMD):
        // adding 1.5·2^23 leaves the rounded integer in the low mantissa bits.
        let magic = SIMD16<Float>(repeating: 12_582_912)
        let shifted = clamped * 1.442_695_04 + magic
        let n = shifted - magic
        var r = clamped - n * 0.693_359_375
        r = r - n * -2.121_944_4e-4
        var p = SIMD16<Float>(repeating: 1.987_569_1e-4)
        p = p * r + 1.398_199_9e-3
        p = p * r + 8.333_452e-3
        p = p * r + 4.166_579_6e-2
        p = p * r + 1.666_666_5e-1
        p = p * r + 5e-1
        p = p * (r * r) + r + 1
        let integer = unsafeBitCast(shifted, to: SIMD16<Int32>.self) &- unsafeBitCast(magic, to: SIMD16<Int32>.self)
        let exponent = (integer &+ SIMD16<Int32>(repeating: 127)) &<< SIMD16<Int32>(repeating: 23)
        return p * unsafeBitCast(exponent, to: SIMD16<Float>.self)
    }

    // MARK: - RMSNorm

    /// out = x / sqrt(mean(x²) + eps) · weight, per row of `dim`.
    public static func rmsNorm(_ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>,
                               rows: Int, dim: Int, epsilon: Float, threads: ThreadBudget) {
        threads.forEachChunk(rows) { row in
            let v = x + row * dim, o = out + row * dim
            let sum = sumOfSquares(v, count: dim)
            let scale = 1 / (sum / Float(dim) + epsilon).squareRoot()
            for j in 0..<dim { o[j] = weight[j] * (v[j] * scale) }
        }
    }

    /// Σ x² over `count` values: 16 lanes, then their sum, then the tail one by one (the order `rmsNorm`'s bits follow).
    @inline(__always)
    static func sumOfSquares(_ x: UnsafePointer<Float>, count: Int) -> Float {
        var acc = SIMD16<Float>()
        var i = 0
        while i + 16 <= count {
            let a = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self)
            acc += a * a
            i += 16
        }
        var sum = acc.sum()
        while i < count { sum += x[i] * x[i]; i += 1 }
        return sum
    }

    /// Reference for `rmsNorm`: row by row in f64, rounded once to f32; `x` is [rows, dim].
    public static func rmsNormReference(_ x: [Float], weight: [Float], dim: Int, epsilon: Float) -> [Float] {
        var out = x
        for row in 0..<(x.count / dim) {
            var sum = 0.0
            for j in 0..<dim { sum += Double(x[row * dim + j]) * Double(x[row * dim + j]) }
            let scale = 1 / (sum / Double(dim) + Double(epsilon)).squareRoot()
            for j in 0..<dim { out[row * dim + j] = Float(Double(weight[j]) * Double(x[row * dim + j]) * scale) }
        }
        return out
    }

    // MARK: - LayerNorm

    /// out = (x − mean) / sqrt(var + eps) · weight + bias, per row (biased variance, as torch).
    public static func layerNorm(_ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
                                 into out: UnsafeMutablePointer<Float>, rows: Int, dim: Int, epsilon: Float, threads: ThreadBudget) {
        threads.forEachChunk(rows) { row in
            let v = x + row * dim, o = out + row * dim
            var sum: Float = 0
            for j in 0..<dim { sum += v[j] }
            let mean = sum / Float(dim)
            var squares: Float = 0
            for j in 0..<dim { let d = v[j] - mean; squares += d * d }
            let scale = 1 / (squares / Float(dim) + epsilon).squareRoot()
            for j in 0..<dim { o[j] = (v[j] - mean) * scale * weight[j] + bias[j] }
        }
    }

    // MARK: - Rotary position embedding (the rotate-half form transformers uses)

    /// cos/sin tables [positions, headDim/2]: inv_freq = 1 / θ^(2i/d) in float32, angle = p·inv_freq.
    public static func ropeTables(theta: Double, headDim: Int, positions: Int) -> (cos: [Float], sin: [Float]) {
        let half = headDim / 2
        let inverse = (0..<half).map { i in 1 / Float(pow(theta, Double(Float(2 * i) / Float(headDim)))) }
        var c = [Float](repeating: 0, count: positions * half), s = c
        for p in 0..<positions {
            for i in 0..<half {
                let angle = Float(p) * inverse[i]
                c[p * half + i] = Float(Glibc.cos(Double(angle)))
                s[p * half + i] = Float(Glibc.sin(Double(angle)))
            }
        }
        return (c, s)
    }

    /// Rotates the first `rotary` dimensions (all when nil) of every head of `x` [rows,
    /// heads·headDim] in place, pairing i with i + rotary/2; row t has position `start + t`.
    public static func applyRoPE(_ x: UnsafeMutablePointer<Float>, rows: Int, heads: Int, headDim: Int, rotary: Int? = nil, start: Int,
                                 cos: UnsafePointer<Float>, sin: UnsafePointer<Float>, threads: ThreadBudget) {
        let half = (rotary ?? headDim) / 2
        threads.forEachChunk(rows) { t in
            let c = cos + (start + t) * half, s = sin + (start + t) * half
            for h in 0..<heads {
                let v = x + t * heads * headDim + h * headDim
                for i in 0..<half {
                    let a = v[i], b = v[i + half]
                    v[i] = a * c[i] - b * s[i]
                    v[i + half] = b * c[i] + a * s[i]
                }
            }
        }
    }

    // MARK: - Causal softmax

    /// Row i of `scores` [rows, stride] keeps columns 0…i: softmax over them, zero beyond.
    public static func causalSoftmax(_ scores: UnsafeMutablePointer<Float>, rows: Int, stride: Int, threads: ThreadBudget) {
        threads.forEachChunk(rows) { i in softmaxRow(scores + i * stride, valid: i + 1, columns: stride) }
    }

    /// A block of rows starting at query `firstRow`, `columns` keys wide: row i keeps keys 0…firstRow+i.
    public static func causalSoftmax(_ scores: UnsafeMutablePointer<Float>, rows: Int, stride: Int, firstRow: Int, columns: Int) {
        for i in 0..<rows { softmaxRow(scores + i * stride, valid: firstRow + i + 1, columns: columns) }
    }

    @inline(__always)
    static func softmaxRow(_ row: UnsafeMutablePointer<Float>, valid n: Int, columns stride: Int) {
        if usesAVX512 {
            ckpt_softmax_row_avx512(row, n)
            if n < stride { (row + n).update(repeating: 0, count: stride - n) }
            return
        }
        softmaxRowPortable(row, valid: n, columns: stride)
    }

    /// `softmaxRow` in Swift's SIMD16 (four SSE registers on baseline x86-64): the twin of `ckpt_softmax_row_avx512`.
    static func softmaxRowPortable(_ row: UnsafeMutablePointer<Float>, valid n: Int, columns stride: Int) {
        do {
            var best = SIMD16<Float>(repeating: -.infinity)
            var j = 0
            while j + 16 <= n {
                best = best.maximum(UnsafeRawPointer(row + j).loadUnaligned(as: SIMD16<Float>.self))
                j += 16
            }
            var m = best.max()
            while j < n { m = max(m, row[j]); j += 1 }
            j = 0
            var total = SIMD16<Float>()
            let shift = SIMD16<Float>(repeating: m)
            while j + 16 <= n {
                let e = exp(UnsafeRawPointer(row + j).loadUnaligned(as: SIMD16<Float>.self) - shift)
                UnsafeMutableRawPointer(row + j).storeBytes(of: e, as: SIMD16<Float>.self)
                total += e
                j += 16
            }
            if j < n {
                var v = SIMD16<Float>(repeating: -Float.infinity)
                for k in 0..<(n - j) { v[k] = row[j + k] }
                let e = exp(v - shift)
                for k in 0..<(n - j) { row[j + k] = e[k]; total[k] += e[k] }
            }
            let inverse = 1 / total.sum()
            let scale = SIMD16<Float>(repeating: inverse)
            j = 0
            while j + 16 <= n {
                let e = UnsafeRawPointer(row + j).loadUnaligned(as: SIMD16<Float>.self)
                UnsafeMutableRawPointer(row + j).storeBytes(of: e * scale, as: SIMD16<Float>.self)
                j += 16
            }
            while j < n { row[j] *= inverse; j += 1 }
            if n < stride { (row + n).update(repeating: 0, count: stride - n) }
        }
    }

    /// Reference for `causalSoftmax`: row by row in f64 with libm's exp; `scores` is [rows, stride], rows ≤ stride.
    public static func causalSoftmaxReference(_ scores: [Float], rows: Int, stride: Int) -> [Float] {
        var out = scores
        for i in 0..<rows {
            let m = (0...i).map { Double(scores[i * stride + $0]) }.max()!
            let e = (0...i).map { Glibc.exp(Double(scores[i * stride + $0]) - m) }
            let total = e.reduce(0, +)
            for j in 0..<stride { out[i * stride + j] = j <= i ? Float(e[j] / total) : 0 }
        }
        return out
    }

    /// Softmax over columns `valid` of a row `columns` wide; the columns outside `valid` become 0.
    @inline(__always)
    static func softmaxRow(_ row: UnsafeMutablePointer<Float>, valid: Range<Int>, columns: Int) {
        if valid.lowerBound > 0 { row.update(repeating: 0, count: valid.lowerBound) }
        softmaxRow(row + valid.lowerBound, valid: valid.count, columns: columns - valid.lowerBound)
    }

    // MARK: - Soft-capping

    /// x ← cap·tanh(x / cap) (Gemma 2's attention and final logit soft-capping), tanh via exp.
    public static func softcap(_ x: UnsafeMutablePointer<Float>, count: Int, cap: Float) {
        var i = 0
        let inverse = 1 / cap
        while i + 16 <= count {
            let v = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self) * inverse
            // tanh(u) = 1 − 2/(e^{2u} + 1), stable at both ends.
            let t = SIMD16<Float>(repeating: 1) - 2 / (exp(2 * v) + 1)
            UnsafeMutableRawPointer(x + i).storeBytes(of: t * cap, as: SIMD16<Float>.self)
            i += 16
        }
        while i < count {
            x[i] = cap * Float(Glibc.tanh(Double(x[i] / cap)))
            i += 1
        }
    }

    /// Reference for `softcap`: libm's tanh in f64.
    public static func softcapReference(_ x: [Float], cap: Float) -> [Float] {
        x.map { Float(Double(cap) * Glibc.tanh(Double($0) / Double(cap))) }
    }

    // MARK: - Activations

    /// gate ← silu(gate) · up (SwiGLU): with AVX-512 its runs of 16 go to `ckpt_silu_multiply_avx512`, unless `portable`.
    public static func siluMultiply(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count: Int, threads: ThreadBudget,
                                    portable: Bool = false) {
        let wide = usesAVX512 && !portable
        threads.forEachPiece(of: count, size: 1 << 14) { piece in
            var i = piece.lowerBound
            if wide { i += ckpt_silu_multiply_avx512(gate + i, up + i, piece.count) }
            let end = piece.upperBound
            while i + 16 <= end {
                let g = UnsafeRawPointer(gate + i).loadUnaligned(as: SIMD16<Float>.self)
                let u = UnsafeRawPointer(up + i).loadUnaligned(as: SIMD16<Float>.self)
                let s = g / (SIMD16<Float>(repeating: 1) + exp(-g))
                UnsafeMutableRawPointer(gate + i).storeBytes(of: s * u, as: SIMD16<Float>.self)
                i += 16
            }
            while i < end {
                gate[i] = gate[i] / (1 + Float(Glibc.exp(Double(-gate[i])))) * up[i]
                i += 1
            }
        }
    }

    /// gate ← gelu_tanh(gate) · up (GeGLU, Gemma).
    public static func geluTanhMultiply(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count: Int, threads: ThreadBudget) {
        geluTanh(gate, count: count, threads: threads)
        threads.forEachPiece(of: count, size: 1 << 14) { piece in
            for i in piece { gate[i] *= up[i] }
        }
    }

    /// x ← 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) (GPT-2's gelu_new), tanh via exp.
    public static func geluTanh(_ x: UnsafeMutablePointer<Float>, count: Int, threads: ThreadBudget) {
        let k = Float((2 / Double.pi).squareRoot())
        threads.forEachPiece(of: count, size: 1 << 14) { piece in
            var i = piece.lowerBound
            let end = piece.upperBound
            while i + 16 <= end {
                let v = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self)
                let u = k * (v + 0.044715 * v * v * v)
                // tanh(u) = 1 − 2/(e^{2u} + 1), stable at both ends.
                let t = SIMD16<Float>(repeating: 1) - 2 / (exp(2 * u) + 1)
                UnsafeMutableRawPointer(x + i).storeBytes(of: 0.5 * v * (1 + t), as: SIMD16<Float>.self)
                i += 16
            }
            while i < end {
                let v = x[i]
                x[i] = 0.5 * v * (1 + Float(Glibc.tanh(Double(k * (v + 0.044715 * v * v * v)))))
                i += 1
            }
        }
    }
}

/// The maximum m of one row of finite logits and Σ e^(v − m), the pieces of its log-softmax.
/// As llama.cpp's `log_softmax`: each term e^(v − m) in f32 (here 16 lanes at a time, within
/// 2e-7 of `expf`), the sum in f64; the lanes add in f32 over runs of 256 values only (each term
/// is at most 1), so the sum stays within 1e-7 relative of `logSoftmaxNormalizerReference`'s.
@inline(__always)
func exponentialSum(_ row: UnsafeBufferPointer<Float>, portable: Bool = false) -> (max: Float, sum: Double) {
    guard let p = row.baseAddress else { return (-.infinity, 0) }
    if TransformerKernels.usesAVX512 && !portable {
        // The same sums with AVX-512 (the Swift SIMD16 below is four SSE registers on baseline x86-64).
        let m = ckpt_row_max_avx512(p, row.count)
        var sum = 0.0
        var j = ckpt_exp_sum_avx512(p, row.count, m, &sum)
        while j < row.count { sum += Double(Glibc.expf(p[j] - m)); j += 1 }
        return (m, sum)
    }
    let n = row.count
    @inline(__always) func load(_ j: Int) -> SIMD16<Float> { UnsafeRawPointer(p + j).loadUnaligned(as: SIMD16<Float>.self) }
    var best0 = SIMD16<Float>(repeating: -.infinity), best1 = best0
    var j = 0
    while j + 32 <= n {
        best0 = best0.maximum(load(j))
        best1 = best1.maximum(load(j + 16))
        j += 32
    }
    var m = best0.maximum(best1).max()
    while j < n { m = max(m, p[j]); j += 1 }
    let shift = SIMD16<Float>(repeating: m)
    var sum = 0.0
    j = 0
    while j + 256 <= n {
        var a = SIMD16<Float>(), b = SIMD16<Float>()
        for k in stride(from: j, to: j + 256, by: 32) {
            a += TransformerKernels.exp(load(k) - shift)
            b += TransformerKernels.exp(load(k + 16) - shift)
        }
        sum += Double((a + b).sum())
        j += 256
    }
    while j + 16 <= n {
        sum += Double(TransformerKernels.exp(load(j) - shift).sum())
        j += 16
    }
    while j < n { sum += Double(Glibc.expf(p[j] - m)); j += 1 }
    return (m, sum)
}

/// The log-softmax normalizer of one row of finite logits: its maximum m and log Σ e^(v − m) (`exponentialSum`, logged).
@inline(__always)
func logSoftmaxNormalizer(_ row: UnsafeBufferPointer<Float>, portable: Bool = false) -> (max: Float, logSum: Double) {
    let (m, sum) = exponentialSum(row, portable: portable)
    return (m, Glibc.log(sum))
}

/// Reference for `logSoftmaxNormalizer`: one value at a time, each term by libm in f64.
func logSoftmaxNormalizerReference(_ row: UnsafeBufferPointer<Float>) -> (max: Float, logSum: Double) {
    var m = -Float.infinity
    for v in row { m = max(m, v) }
    var sum = 0.0
    for v in row { sum += Glibc.exp(Double(v - m)) }
    return (m, Glibc.log(sum))
}
