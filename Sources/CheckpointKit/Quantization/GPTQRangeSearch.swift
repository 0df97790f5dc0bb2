#if canImport(Glibc)
import Glibc
#endif

/// GPTQModel's `mse` search of a group's range (`Quantizer.find_params`, quantizer.py:141-182 of
/// ModelCloud/GPTQModel @ f4c327a, version 7.3.4): after the min/max range is found (:114-139),
/// the range is shrunk by p = 1 − i/grid for i < ⌊maxshrink·grid⌋ (`configure(grid=100,
/// maxshrink=0.8)`, :69-93): 80 trials, p from 1 down to 0.21. Each trial's scale and zero come
/// from [p·xmin, p·xmax] exactly as the unshrunk ones do (the symmetric zero stays the middle
/// code), the group is quantized and dequantized with them, and the trial whose Σ |q − x|^norm
/// is strictly smallest wins, the first on ties. `norm` is the config's `mse` value itself
/// (`QuantizeConfig.mse`, config.py:3207, default 0.0 = no search); 2-bit asymmetric groups also
/// try the other integer beside each trial's zero point (:44-66, :144-164).
///
/// ckpt's additions: trial scales are rounded to the stored scale dtype before they quantize, as
/// the unshrunk ones are (so the codes are the best for the scale written), and the NF4/FP4
/// codebooks get the same search over their absmax: trial absmax p·max|x|, each value the
/// nearest code times it.
///
/// Each weight is quantized 80 times, so the search is a SIMD kernel (`integer`, `fourBit`) on
/// `Power`, a vectorised |e|^norm through log2 and exp2; `integerReference` and
/// `fourBitReference` are its plain twins (Glibc `pow` in f64, sums in f64), and a test holds
/// their choices together up to near-ties of the error sums.
public enum GPTQRangeSearch {
    /// Trials per unit of shrink (GPTQModel's `grid`).
    public static let grid = 100
    /// The largest fraction of the range a trial removes (GPTQModel's `maxshrink`).
    public static let maxShrink = 0.8
    /// The largest norm the kernel takes: |e|^64 of any weight error is already below f32's range.
    public static let largestNorm = 64.0
    /// The norm of the original GPTQ code's search (IST-DASLab/gptq quant.py, `configure(…, mse=False,
    /// norm=2.4, grid=100, maxshrink=.8)`), which GPTQModel's `mse` option takes as its value.
    public static let standardNorm = 2.4

    /// The shrink factors in trial order as torch multiplies by them: the Python double
    /// 1 − i/grid rounded to f32 (a tensor times a Python float computes in the tensor's dtype).
    static let shrinks: [Float] = (0..<Int(maxShrink * Double(grid))).map { Float(1 - Double($0) / Double(grid)) }

    /// The winning trial: its index into `shrinks`, and the parameters it gives (zero 0 for 4-bit codebooks).
    struct Choice: Equatable {
        var shrink: Int
        var scale: Float
        var zero: UInt8
    }

    // MARK: - Reference: one value at a time, Glibc pow in f64.
    // The norm is first rounded to f32: torch's `pow_` raises an f32 tensor to a Python float as an f32 exponent.

    /// The search for integer codes, one value and one trial at a time: each trial quantized by
    /// GPTQ's own rule (`GPTQ.quantizedValue`), its error Σ |q − x|^norm summed in f64.
    static func integerReference(_ x: UnsafeBufferPointer<Float>, bits: Int, symmetric: Bool, scaleType: DType, norm: Double) -> Choice {
        let (low, high) = IntegerQuantizer.gptqRange(x, symmetric: symmetric)
        let options = GPTQOptions(codes: .integer(bits: bits, symmetric: symmetric), groupSize: nil)
        let base = IntegerQuantizer.gptqParameters(low: low, high: high, bits: bits, symmetric: symmetric, scaleType: scaleType)
        var choice = Choice(shrink: 0, scale: base.scale, zero: base.zero), best = Double.infinity
        for (i, p) in shrinks.enumerated() {
            guard let trial = integerTrial(low: p * low, high: p * high, bits: bits, symmetric: symmetric, scaleType: scaleType) else { continue }
            for zero in trial.zeros {
                var error = 0.0
                for v in x { error += pow(Double(abs(GPTQ.quantizedValue(v, (trial.scale, Float(zero)), options: options) - v)), Double(Float(norm))) }
                if error < best { (best, choice) = (error, Choice(shrink: i, scale: trial.scale, zero: zero)) }
            }
        }
        return choice
    }

    /// The search for a 4-bit codebook, one value and one trial at a time: trial absmax p·max|x|,
    /// each value GPTQ's nearest code (`GPTQ.quantizedValue`), the error summed in f64.
    static func fourBitReference(_ x: UnsafeBufferPointer<Float>, type: FourBitType, norm: Double) -> Choice {
        let absmax = x.reduce(Float(0)) { Swift.max($0, abs($1)) }
        let options = GPTQOptions(codes: .fourBit(type), groupSize: nil)
        var choice = Choice(shrink: 0, scale: absmax, zero: 0), best = Double.infinity
        for (i, p) in shrinks.enumerated() where p * absmax > 0 {
            var error = 0.0
            for v in x { error += pow(Double(abs(GPTQ.quantizedValue(v, (p * absmax, 0), options: options) - v)), Double(Float(norm))) }
            if error < best { (best, choice) = (error, Choice(shrink: i, scale: p * absmax, zero: 0)) }
        }
        return choice
    }

    /// The error Σ |q − x|^norm (f64) of `x` under one integer scale and zero: the reference's measure, for tests.
    static func integerErrorReference(_ x: UnsafeBufferPointer<Float>, scale: Float, zero: UInt8, bits: Int, norm: Double) -> Double {
        let options = GPTQOptions(codes: .integer(bits: bits, symmetric: false), groupSize: nil)
        return x.reduce(0.0) { $0 + pow(Double(abs(GPTQ.quantizedValue($1, (scale, Float(zero)), options: options) - $1)), Double(Float(norm))) }
    }

    /// The error Σ |q − x|^norm (f64) of `x` under one 4-bit absmax, for tests.
    static func fourBitErrorReference(_ x: UnsafeBufferPointer<Float>, absmax: Float, type: FourBitType, norm: Double) -> Double {
        let options = GPTQOptions(codes: .fourBit(type), groupSize: nil)
        return x.reduce(0.0) { $0 + pow(Double(abs(GPTQ.quantizedValue($1, (absmax, 0), options: options) - $1)), Double(Float(norm))) }
    }

    /// One trial's scale and zero points from the shrunk range: nil when the scale is not a
    /// positive number (a range so small it underflows), where GPTQModel's error would be NaN and
    /// never win. Two zeros for 2-bit asymmetric codes: round(−low / s), then its other integer
    /// neighbour (`_adjacent_zero_point`, quantizer.py:53-66), tried in that order.
    @inline(__always)
    static func integerTrial(low: Float, high: Float, bits: Int, symmetric: Bool, scaleType: DType) -> (scale: Float, zeros: [UInt8])? {
        let scale = IntegerQuantizer.gptqScale(low: low, high: high, bits: bits, scaleType: scaleType)
        guard scale > 0, scale.isFinite else { return nil }
        let zero = IntegerQuantizer.gptqZero(low: low, scale: scale, bits: bits, symmetric: symmetric)
        return (scale, bits == 2 && !symmetric ? [zero, adjacentZero(low: low, scale: scale, zero: zero)] : [zero])
    }

    /// The other integer beside −low / scale than `zero` (GPTQModel's `_adjacent_zero_point`:
    /// floor and ceil clamped to the 2-bit codes; `zero` itself when −low / scale is an integer).
    @inline(__always)
    static func adjacentZero(low: Float, scale: Float, zero: UInt8) -> UInt8 {
        let ideal = -low / scale, maxq: Float = 3
        let lower = UInt8(Swift.min(Swift.max(ideal.rounded(.down), 0), maxq)), upper = UInt8(Swift.min(Swift.max(ideal.rounded(.up), 0), maxq))
        return zero == lower ? upper : lower
    }

    // MARK: - Fast: SIMD over the group, f32 sums; the same choice but on near-ties of the sums.

    /// The search for integer codes: the reference's trials, each error summed in f32 lanes with `Power`.
    static func integer(_ x: UnsafeBufferPointer<Float>, bits: Int, symmetric: Bool, scaleType: DType, power: Power) -> Choice {
        let (low, high) = IntegerQuantizer.gptqRange(x, symmetric: symmetric)
        let base = IntegerQuantizer.gptqParameters(low: low, high: high, bits: bits, symmetric: symmetric, scaleType: scaleType)
        var choice = Choice(shrink: 0, scale: base.scale, zero: base.zero), best = Float.infinity
        guard let start = x.baseAddress else { return choice }
        let maxq = Float((1 << bits) - 1)
        for i in 0..<shrinks.count {
            let p = shrinks[i]
            let scale = IntegerQuantizer.gptqScale(low: p * low, high: p * high, bits: bits, scaleType: scaleType)
            guard scale > 0, scale.isFinite else { continue }
            let zero = IntegerQuantizer.gptqZero(low: p * low, scale: scale, bits: bits, symmetric: symmetric)
            var error = integerError(start, count: x.count, scale: scale, zero: Float(zero), maxq: maxq, power: power, stop: best)
            if error < best { (best, choice) = (error, Choice(shrink: i, scale: scale, zero: zero)) }
            if bits == 2 && !symmetric {
                // The adjacent zero point second (quantizer.py:157-166).
                let other = adjacentZero(low: p * low, scale: scale, zero: zero)
                error = integerError(start, count: x.count, scale: scale, zero: Float(other), maxq: maxq, power: power, stop: best)
                if error < best { (best, choice) = (error, Choice(shrink: i, scale: scale, zero: other)) }
            }
        }
        return choice
    }

    /// Σ |s·(clamp(round(x / s) + z, 0, maxq) − z) − x|^norm over `count` values, 16 lanes at a
    /// time (the tail zero-padded: a zero quantizes to itself and adds nothing); or, once the sum
    /// so far reaches `stop`, that partial sum (see `laneSum`).
    @inline(__always)
    static func integerError(_ x: UnsafePointer<Float>, count: Int, scale: Float, zero: Float, maxq: Float, power: Power, stop: Float) -> Float {
        let s = SIMD16<Float>(repeating: scale), z = SIMD16<Float>(repeating: zero), top = SIMD16<Float>(repeating: maxq)
        // |x / s| beyond 256 clamps to an end code whatever the zero (≤ 255): bounding it first keeps the rounding trick exact.
        let bound = SIMD16<Float>(repeating: 256), magic = SIMD16<Float>(repeating: 12_582_912), none = SIMD16<Float>()
        @inline(__always)
        func term(_ v: SIMD16<Float>) -> SIMD16<Float> {
            // Adding and removing 1.5·2²³ rounds half to even, as torch.round does.
            let rounded = ((v / s).clamped(-bound, bound) + magic) - magic
            return power(s * ((rounded + z).clamped(none, top) - z) - v)
        }
        // One call site, so that `term` and `Power` inline (with two, they stay calls passing lanes through memory);
        // each step is long enough that one accumulator does not stall.
        var sum = SIMD16<Float>()
        var i = 0
        while i < count {
            var v = SIMD16<Float>()
            if i + 16 <= count {
                v = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self)
            } else {
                for k in 0..<(count - i) { v[k] = x[i + k] }
            }
            sum += term(v)
            i += 16
            if i < count, laneSum(sum) >= stop { break }
        }
        return laneSum(sum)
    }

    /// The lanes' sum in a fixed tree. Every term is ≥ 0, so the lanes only grow and, additions
    /// being monotonic under rounding, so does this sum: once a partial sum reaches the best error
    /// so far, the whole one cannot beat it, and the rest of the trial is skipped (about half the
    /// work of a search on groups of 64) without changing any choice.
    @inline(__always)
    static func laneSum(_ v: SIMD16<Float>) -> Float {
        let eight = v.lowHalf + v.highHalf, four = eight.lowHalf + eight.highHalf
        return (four[0] + four[2]) + (four[1] + four[3])
    }

    /// The search for a 4-bit codebook: the reference's trials, each error summed in f32 lanes
    /// with `Power`, the nearest code found by counting the midpoints below x / absmax.
    static func fourBit(_ x: UnsafeBufferPointer<Float>, type: FourBitType, power: Power) -> Choice {
        guard let start = x.baseAddress else { return Choice(shrink: 0, scale: 0, zero: 0) }
        let absmax = FourBitQuantizer.absoluteMaximum(start, x.count)
        var choice = Choice(shrink: 0, scale: absmax, zero: 0), best = Float.infinity
        let table = type == .nf4 ? nf4Ladder : fp4Ladder
        for i in 0..<shrinks.count {
            let scale = shrinks[i] * absmax
            guard scale > 0 else { continue }
            let error = fourBitError(start, count: x.count, absmax: scale, ladder: table, power: power, stop: best)
            if error < best { (best, choice) = (error, Choice(shrink: i, scale: scale, zero: 0)) }
        }
        return choice
    }

    /// A codebook in value order and the 15 midpoints between neighbours, as lanes.
    struct Ladder {
        let values: SIMD16<Float>
        let midpoints: SIMD16<Float>

        init(_ type: FourBitType) {
            let code = type.code
            values = SIMD16(type.order.map { code[Int($0)] })
            midpoints = SIMD16(type.midpoints + [.infinity])
        }
    }

    static let nf4Ladder = Ladder(.nf4), fp4Ladder = Ladder(.fp4)

    /// Σ |t·a − x|^norm over `count` values, t the code nearest x / a: above each midpoint below
    /// x / a (on a midpoint it stays lower, as ties go to the lower index); or, once the sum so far
    /// reaches `stop`, that partial sum (see `laneSum`).
    @inline(__always)
    static func fourBitError(_ x: UnsafePointer<Float>, count: Int, absmax: Float, ladder: Ladder, power: Power, stop: Float) -> Float {
        let a = SIMD16<Float>(repeating: absmax), t = ladder.values * absmax, m = ladder.midpoints
        // Every lane index a constant: a loop over them would read lanes through the stack.
        let t0 = SIMD16<Float>(repeating: t[0]), t1 = SIMD16<Float>(repeating: t[1]), t2 = SIMD16<Float>(repeating: t[2])
        let t3 = SIMD16<Float>(repeating: t[3]), t4 = SIMD16<Float>(repeating: t[4]), t5 = SIMD16<Float>(repeating: t[5])
        let t6 = SIMD16<Float>(repeating: t[6]), t7 = SIMD16<Float>(repeating: t[7]), t8 = SIMD16<Float>(repeating: t[8])
        let t9 = SIMD16<Float>(repeating: t[9]), t10 = SIMD16<Float>(repeating: t[10]), t11 = SIMD16<Float>(repeating: t[11])
        let t12 = SIMD16<Float>(repeating: t[12]), t13 = SIMD16<Float>(repeating: t[13]), t14 = SIMD16<Float>(repeating: t[14])
        let t15 = SIMD16<Float>(repeating: t[15])
        let m0 = SIMD16<Float>(repeating: m[0]), m1 = SIMD16<Float>(repeating: m[1]), m2 = SIMD16<Float>(repeating: m[2])
        let m3 = SIMD16<Float>(repeating: m[3]), m4 = SIMD16<Float>(repeating: m[4]), m5 = SIMD16<Float>(repeating: m[5])
        let m6 = SIMD16<Float>(repeating: m[6]), m7 = SIMD16<Float>(repeating: m[7]), m8 = SIMD16<Float>(repeating: m[8])
        let m9 = SIMD16<Float>(repeating: m[9]), m10 = SIMD16<Float>(repeating: m[10]), m11 = SIMD16<Float>(repeating: m[11])
        let m12 = SIMD16<Float>(repeating: m[12]), m13 = SIMD16<Float>(repeating: m[13]), m14 = SIMD16<Float>(repeating: m[14])
        @inline(__always)
        func term(_ v: SIMD16<Float>) -> SIMD16<Float> {
            let scaled = v / a
            // A tree of selections instead of a chain of 15: pairs split at midpoints 0, 2, …, 14,
            // pairs of pairs at 1, 5, 9, 13, halves at 3 and 11, the whole at 7. The midpoints are
            // sorted, so each picks what the chain picks, with four steps of latency instead of 15.
            let p0 = t0.replacing(with: t1, where: m0 .< scaled), p1 = t2.replacing(with: t3, where: m2 .< scaled)
            let p2 = t4.replacing(with: t5, where: m4 .< scaled), p3 = t6.replacing(with: t7, where: m6 .< scaled)
            let p4 = t8.replacing(with: t9, where: m8 .< scaled), p5 = t10.replacing(with: t11, where: m10 .< scaled)
            let p6 = t12.replacing(with: t13, where: m12 .< scaled), p7 = t14.replacing(with: t15, where: m14 .< scaled)
            let q0 = p0.replacing(with: p1, where: m1 .< scaled), q1 = p2.replacing(with: p3, where: m5 .< scaled)
            let q2 = p4.replacing(with: p5, where: m9 .< scaled), q3 = p6.replacing(with: p7, where: m13 .< scaled)
            let o0 = q0.replacing(with: q1, where: m3 .< scaled), o1 = q2.replacing(with: q3, where: m11 .< scaled)
            return power(o0.replacing(with: o1, where: m7 .< scaled) - v)
        }
        var sum = SIMD16<Float>()
        var i = 0
        while i < count {
            var v = SIMD16<Float>()
            if i + 16 <= count {
                v = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self)
            } else {
                for k in 0..<(count - i) { v[k] = x[i + k] }
            }
            sum += term(v)
            i += 16
            if i < count, laneSum(sum) >= stop { break }
        }
        return laneSum(sum)
    }

    /// |e|^norm in 16 lanes, to about 3e-7 relative (Glibc's `powf` is within 1e-7): e = 2^k·m
    /// with m in [√½, √2), log2 m from the atanh series in t = (m − 1)/(m + 1) (|t| ≤ 0.172, five
    /// terms, truncation below 1e-9), then 2^(norm·(k + log2 m)) as 2^integer times a degree-7
    /// polynomial on [−½, ½]. norm·k is split so that its integer part stays exact: `high` keeps
    /// 12 significant bits of the norm, so high·k (|k| ≤ 128) is exact in f32. A zero or
    /// subnormal |e|, or a result below 2⁻¹²⁶, gives 0 (f32's powf underflows there too); a NaN
    /// or infinite e, or a result beyond f32, gives +∞, which never wins a strict comparison.
    struct Power {
        let norm: Float, high: Float, low: Float

        /// |e|^`norm`, for 0 < norm ≤ `largestNorm`.
        init(norm: Double) {
            precondition(norm > 0 && norm <= GPTQRangeSearch.largestNorm, "the range search's norm must lie in (0, \(GPTQRangeSearch.largestNorm)]")
            self.norm = Float(norm)
            high = Float(bitPattern: self.norm.bitPattern & 0xFFFF_F800)
            low = self.norm - high
        }

        // 2/ln 2 / (2j + 1): log2 m = (2/ln 2)·atanh t.
        static let c1: Float = 2.885_390_081_777_926_8, c3: Float = 0.961_796_693_925_975_6, c5: Float = 0.577_078_016_355_585_4
        static let c7: Float = 0.412_198_583_111_132_4, c9: Float = 0.320_598_897_975_325_2
        // (ln 2)^j / j!: 2^r = e^(r·ln 2).
        static let e1: Float = 0.693_147_180_559_945_3, e2: Float = 0.240_226_506_959_100_7, e3: Float = 0.055_504_108_664_821_58
        static let e4: Float = 0.009_618_129_107_628_477, e5: Float = 0.001_333_355_814_642_844_3
        static let e6: Float = 0.000_154_035_303_933_816_1, e7: Float = 0.000_015_252_733_804_059_84

        @inline(__always)
        func callAsFunction(_ e: SIMD16<Float>) -> SIMD16<Float> {
            let bits = unsafeBitCast(e, to: SIMD16<UInt32>.self) & 0x7FFF_FFFF
            let field = unsafeBitCast(bits &>> 23, to: SIMD16<Int32>.self)
            var m = unsafeBitCast((bits & 0x007F_FFFF) | 0x3F80_0000, to: SIMD16<Float>.self)
            // Comparisons take typed vectors on both sides: against a scalar, or an untyped
            // `SIMD16(repeating:)`, Swift picks the generic lane-by-lane operator.
            let big = SIMD16<Float>(repeating: 1.414_213_5) .< m
            m = m.replacing(with: m * 0.5, where: big)
            // A true mask lane is −1: subtracting it adds the 1 that halving m took out.
            let k = (field &- 127 &- unsafeBitCast(big, to: SIMD16<Int32>.self)).smallIntegersAsFloat()
            let t = (m - 1) / (m + 1), t2 = t * t
            var series = SIMD16<Float>(repeating: Power.c9)
            series = series * t2 + Power.c7
            series = series * t2 + Power.c5
            series = series * t2 + Power.c3
            series = series * t2 + Power.c1
            let log2m = t * series
            let magic = SIMD16<Float>(repeating: 12_582_912)
            let whole = k * high
            let wholeRounded = (whole + magic) - magic
            let f = (whole - wholeRounded) + (k * low + log2m * norm)
            let fRounded = (f + magic) - magic
            let r = f - fRounded
            var p = SIMD16<Float>(repeating: Power.e7)
            p = p * r + Power.e6
            p = p * r + Power.e5
            p = p * r + Power.e4
            p = p * r + Power.e3
            p = p * r + Power.e2
            p = p * r + Power.e1
            p = p * r + 1
            let exponent = unsafeBitCast((wholeRounded + fRounded) + magic, to: SIMD16<Int32>.self) &- 0x4B40_0000
            let lowest = SIMD16<Int32>(repeating: -126), highest = SIMD16<Int32>(repeating: 127)
            // Clamped though such lanes are replaced below: their garbage bits would be subnormals
            // and NaNs, which x86 multiplies through a slow assist (twice the time on zero errors).
            let result = p * unsafeBitCast((exponent.clampedLanes(lowest, highest) &+ 127) &<< 23, to: SIMD16<Float>.self)
            // Vector operands here too: `replacing(with:)` a scalar stores lane by lane through the stack.
            let zero = (field .== SIMD16<Int32>()) .| (exponent .< lowest)
            let infinite = (field .== SIMD16<Int32>(repeating: 255)) .| (highest .< exponent)
            return result.replacing(with: SIMD16<Float>(), where: zero).replacing(with: SIMD16<Float>(repeating: .infinity), where: infinite)
        }
    }
}

extension GPTQ {
    /// Per row, the searched (scale, zero) of the columns `range` of `w` `[rows, columns]`
    /// (GPTQModel's `find_params` with `mse` = `options.mse`), rows spread over `threads`: each
    /// row is searched alone, so the result is the same for any thread count.
    static func searchedParameters(_ w: UnsafeBufferPointer<Float>, rows: Int, columns: Int, range: Range<Int>, options: GPTQOptions,
                                   threads: ThreadBudget) -> [(Float, Float)] {
        let power = GPTQRangeSearch.Power(norm: options.mse)
        // Rows an interruption leaves unsearched keep the min/max parameters: never a zero scale.
        var out = plainParameters(w, rows: rows, columns: columns, range: range, options: options)
        out.withUnsafeMutableBufferPointer { out in
            threads.forEachPiece(of: rows, size: 8) { piece in
                for n in piece {
                    let slice = UnsafeBufferPointer(rebasing: w[(n * columns + range.lowerBound)..<(n * columns + range.upperBound)])
                    switch options.codes {
                    case let .integer(bits, symmetric):
                        let choice = GPTQRangeSearch.integer(slice, bits: bits, symmetric: symmetric, scaleType: options.scaleType, power: power)
                        out[n] = (choice.scale, Float(choice.zero))
                    case let .fourBit(type):
                        out[n] = (GPTQRangeSearch.fourBit(slice, type: type, power: power).scale, 0)
                    }
                }
            }
        }
        return out
    }
}
