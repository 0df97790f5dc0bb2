/// The scale searches llama.cpp's quantizers share (`ggml-quants.c`), step for step.
///
/// llama.cpp compiles these without FMA and without reassociation, so every expression here is
/// evaluated in f32 in C's order: `w*x*l` is `(w * x) * Float(l)`, sums run left to right from 0,
/// and an `int` meets a float as `Float(int)`. Rounding is `nearest_int`'s bit trick (ties to even).
enum KQuantSearch {
    /// Values below this are all-zero groups (`GROUP_MAX_EPS`).
    static let groupEpsilon: Float = 1e-15

    /// `nearest_int`: x + 1.5·2²³ in f32, the low mantissa bits read back (ties to even); for
    /// |x| > 2²² the same wrapped value llama.cpp gets.
    @inline(__always)
    static func nearestInt(_ x: Float) -> Int {
        let shifted = x + 12_582_912
        return Int(Int32(bitPattern: shifted.bitPattern & 0x007F_FFFF)) - 0x0040_0000
    }

    /// `best_index_int8`: the index of the code nearest `x` in the sorted `values` (16 entries),
    /// the upper one on an exact tie.
    @inline(__always)
    static func bestIndex(_ values: UnsafePointer<Int8>, _ x: Float) -> Int {
        if x <= Float(values[0]) { return 0 }
        if x >= Float(values[15]) { return 15 }
        var low = 0, high = 15
        while high - low > 1 {
            let middle = (low + high) / 2
            if x < Float(values[middle]) { high = middle } else { low = middle }
        }
        return x - Float(values[high - 1]) < Float(values[high]) - x ? high - 1 : high
    }

    /// The element of largest magnitude (the first on ties), signed, and that magnitude.
    @inline(__always)
    static func signedMaximum(_ x: UnsafePointer<Float>, _ n: Int) -> (max: Float, amax: Float) {
        var amax: Float = 0, max: Float = 0
        for i in 0..<n {
            let ax = abs(x[i])
            if ax > amax { amax = ax; max = x[i] }
        }
        return (max, amax)
    }

    /// `make_qx_quants` up to its trials: the codes of the plain inverse scale −nmax/max into `L`
    /// (offset nmax), and (max, scale, best) as the trials start from; nil for an all-zero group
    /// (`L` zeroed, scale 0).
    static func symmetricStart(_ n: Int, _ nmax: Int, _ x: UnsafePointer<Float>, _ L: UnsafeMutablePointer<Int8>,
                               weights: UnsafePointer<Float>?) -> (max: Float, scale: Float, best: Float)? {
        let (max, amax) = signedMaximum(x, n)
        if amax < groupEpsilon {
            L.update(repeating: 0, count: n)
            return nil
        }
        let iscale = Float(-nmax) / max
        var sumlx: Float = 0, suml2: Float = 0
        for i in 0..<n {
            let l = Swift.max(-nmax, Swift.min(nmax - 1, nearestInt(iscale * x[i])))
            L[i] = Int8(truncatingIfNeeded: l + nmax)
            let w = weights.map { $0[i] } ?? x[i] * x[i]
            sumlx += w * x[i] * Float(l)
            suml2 += w * Float(l) * Float(l)
        }
        let scale = suml2 != 0 ? sumlx / suml2 : 0
        return (max, scale, scale * sumlx)
    }

    /// `make_qx_quants` with `rmse_type` 1: symmetric codes L in 0..<2·nmax (offset nmax), the
    /// scale chosen among 19 trial inverse scales by weighted least squares; weights x² when
    /// `weights` is nil. Returns the scale.
    static func symmetricReference(_ n: Int, _ nmax: Int, _ x: UnsafePointer<Float>, _ L: UnsafeMutablePointer<Int8>,
                                   weights: UnsafePointer<Float>?) -> Float {
        guard let start = symmetricStart(n, nmax, x, L, weights: weights) else { return 0 }
        let max = start.max
        var scale = start.scale, best = start.best
        @inline(__always) func code(_ iscale: Float, _ i: Int) -> Int { Swift.max(-nmax, Swift.min(nmax - 1, nearestInt(iscale * x[i]))) }
        @inline(__always) func weight(_ i: Int) -> Float { weights.map { $0[i] } ?? x[i] * x[i] }
        var iscale: Float, sumlx: Float, suml2: Float
        for step in -9...9 where step != 0 {
            iscale = -(Float(nmax) + 0.1 * Float(step)) / max
            sumlx = 0; suml2 = 0
            for i in 0..<n {
                let l = code(iscale, i)
                let w = weight(i)
                sumlx += w * x[i] * Float(l)
                suml2 += w * Float(l) * Float(l)
            }
            if suml2 > 0 && sumlx * sumlx > best * suml2 {
                for i in 0..<n { L[i] = Int8(truncatingIfNeeded: nmax + code(iscale, i)) }
                scale = sumlx / suml2
                best = scale * sumlx
            }
        }
        return scale
    }

    /// `symmetricReference`, fast: the 18 trial scales (independent here: only the choice is
    /// sequential) run sixteen at a time in SIMD lanes with the reference's f32 operations in its
    /// order, then are taken in order as the reference takes them; the winner's codes recomputed.
    static func symmetric(_ n: Int, _ nmax: Int, _ x: UnsafePointer<Float>, _ L: UnsafeMutablePointer<Int8>,
                          weights: UnsafePointer<Float>?) -> Float {
        guard let start = symmetricStart(n, nmax, x, L, weights: weights) else { return 0 }
        let max = start.max
        var scale = start.scale, best = start.best
        @inline(__always) func code(_ iscale: Float, _ i: Int) -> Int { Swift.max(-nmax, Swift.min(nmax - 1, nearestInt(iscale * x[i]))) }
        @inline(__always) func weight(_ i: Int) -> Float { weights.map { $0[i] } ?? x[i] * x[i] }
        let low = SIMD16<Int32>(repeating: Int32(-nmax)), high = SIMD16<Int32>(repeating: Int32(nmax - 1))
        // Trials is = -9…-1, 1…9 in lanes: the first sixteen, then the last two.
        let first = SIMD16<Float>(-9, -8, -7, -6, -5, -4, -3, -2, -1, 1, 2, 3, 4, 5, 6, 7)
        let second = SIMD16<Float>(8, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var chosen: Float? = nil
        @inline(__always) func pass(_ steps: SIMD16<Float>, lanes: Int) {
            let iscale = -(Float(nmax) + 0.1 * steps) / max
            var sx = SIMD16<Float>(), s2 = SIMD16<Float>()
            for i in 0..<n {
                let shifted = iscale * x[i] + 12_582_912
                let bits = (unsafeBitCast(shifted, to: SIMD16<Int32>.self) & 0x007F_FFFF) &- 0x0040_0000
                let l = bits.clampedLanes(low, high).smallIntegersAsFloat()
                let w = weight(i)
                sx += w * x[i] * l
                s2 += w * l * l
            }
            for k in 0..<lanes where s2[k] > 0 && sx[k] * sx[k] > best * s2[k] {
                scale = sx[k] / s2[k]
                best = scale * sx[k]
                chosen = iscale[k]
            }
        }
        pass(first, lanes: 16)
        pass(second, lanes: 2)
        if let chosen { for i in 0..<n { L[i] = Int8(truncatingIfNeeded: nmax + code(chosen, i)) } }
        return scale
    }

    /// `make_q3_quants` with `do_rmse`: symmetric codes refined one element at a time (at most
    /// five passes), weights x²; L in 0..<2·nmax, or all 0 for an all-zero group.
    static func symmetricRefined(_ n: Int, _ nmax: Int, _ x: UnsafePointer<Float>, _ L: UnsafeMutablePointer<Int8>) -> Float {
        let (max, amax) = signedMaximum(x, n)
        if amax < groupEpsilon {
            L.update(repeating: 0, count: n)
            return 0
        }
        let iscale = Float(-nmax) / max
        var sumlx: Float = 0, suml2: Float = 0
        for i in 0..<n {
            let l = Swift.max(-nmax, Swift.min(nmax - 1, nearestInt(iscale * x[i])))
            L[i] = Int8(truncatingIfNeeded: l)
            let w = x[i] * x[i]
            sumlx += w * x[i] * Float(l)
            suml2 += w * Float(l) * Float(l)
        }
        for _ in 0..<5 {
            var changed = 0
            for i in 0..<n {
                let w = x[i] * x[i]
                var slx = sumlx - w * x[i] * Float(L[i])
                if slx > 0 {
                    var sl2 = suml2 - w * Float(L[i]) * Float(L[i])
                    let newL = Swift.max(-nmax, Swift.min(nmax - 1, nearestInt(x[i] * sl2 / slx)))
                    if newL != Int(L[i]) {
                        slx += w * x[i] * Float(newL)
                        sl2 += w * Float(newL) * Float(newL)
                        if sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                            L[i] = Int8(truncatingIfNeeded: newL); sumlx = slx; suml2 = sl2
                            changed += 1
                        }
                    }
                }
            }
            if changed == 0 { break }
        }
        for i in 0..<n { L[i] = Int8(truncatingIfNeeded: Int(L[i]) + nmax) }
        return suml2 > 0 ? sumlx / suml2 : 0
    }

    /// `make_qkx2/3_quants` up to their trials: the extremes (min raised to 0), the weight sums,
    /// the codes of the plain scale into `L` and their weighted error. A constant group
    /// (`max <= min`: qkx2 tests `==`, the same as min ≤ max, and both false on NaN) zeroes `L`
    /// and leaves scale and error 0.
    static func affineStart(_ n: Int, _ nmax: Int, _ x: UnsafePointer<Float>, _ weights: UnsafePointer<Float>,
                            _ L: UnsafeMutablePointer<UInt8>, absoluteError: Bool)
        -> (min: Float, max: Float, sumW: Float, sumX: Float, scale: Float, error: Float) {
        var min = x[0], max = x[0]
        var sumW = weights[0]
        var sumX = sumW * x[0]
        for i in 1..<n {
            if x[i] < min { min = x[i] }
            if x[i] > max { max = x[i] }
            let w = weights[i]
            sumW += w
            sumX += w * x[i]
        }
        if min > 0 { min = 0 }
        if max <= min {
            L.update(repeating: 0, count: n)
            return (min, max, sumW, sumX, 0, 0)
        }
        let iscale = Float(nmax) / (max - min)
        let scale = 1 / iscale
        var error: Float = 0
        for i in 0..<n {
            let l = Swift.max(0, Swift.min(nmax, nearestInt(iscale * (x[i] - min))))
            L[i] = UInt8(truncatingIfNeeded: l)
            let diff = scale * Float(l) + min - x[i]
            error += weights[i] * (absoluteError ? abs(diff) : diff * diff)
        }
        return (min, max, sumW, sumX, scale, error)
    }

    /// `make_qkx2_quants` / `make_qkx3_quants` (the same arithmetic): codes 0…nmax with a scale
    /// and a minimum fitted by weighted least squares over `steps + 1` trial inverse scales.
    /// Returns the scale; `minimum` gets −min (≥ 0).
    static func affineReference(_ n: Int, _ nmax: Int, _ x: UnsafePointer<Float>, _ weights: UnsafePointer<Float>, _ L: UnsafeMutablePointer<UInt8>,
                                minimum: inout Float, _ aux: UnsafeMutablePointer<UInt8>, rmin: Float, rdelta: Float, steps: Int,
                                absoluteError: Bool) -> Float {
        let start = affineStart(n, nmax, x, weights, L, absoluteError: absoluteError)
        guard start.max > start.min else {
            minimum = -start.min
            return 0
        }
        var min = start.min, scale = start.scale, bestError = start.error
        let max = start.max, sumW = start.sumW, sumX = start.sumX
        @inline(__always) func error(_ d: Float) -> Float { absoluteError ? abs(d) : d * d }
        var iscale: Float
        for step in 0...steps {
            iscale = (rmin + rdelta * Float(step) + Float(nmax)) / (max - min)
            var sumL: Float = 0, sumL2: Float = 0, sumXL: Float = 0
            for i in 0..<n {
                let l = Swift.max(0, Swift.min(nmax, nearestInt(iscale * (x[i] - min))))
                aux[i] = UInt8(truncatingIfNeeded: l)
                let w = weights[i]
                sumL += w * Float(l)
                sumL2 += w * Float(l) * Float(l)
                sumXL += w * Float(l) * x[i]
            }
            let D = sumW * sumL2 - sumL * sumL
            if D > 0 {
                var thisScale = (sumW * sumXL - sumX * sumL) / D
                var thisMin = (sumL2 * sumX - sumL * sumXL) / D
                if thisMin > 0 {
                    thisMin = 0
                    thisScale = sumXL / sumL2
                }
                var current: Float = 0
                for i in 0..<n {
                    let diff = thisScale * Float(aux[i]) + thisMin - x[i]
                    current += weights[i] * error(diff)
                }
                if current < bestError {
                    L.update(from: aux, count: n)
                    bestError = current
                    scale = thisScale
                    min = thisMin
                }
            }
        }
        minimum = -min
        return scale
    }

    /// `affineReference`, fast: trial scales run sixteen at a time in SIMD lanes, each lane summing
    /// its elements in the reference's order with the same f32 operations, so each trial's sums
    /// and error are the reference's to the bit. The reference's trials are not independent: an
    /// accepted trial moves `min`, which the later trials use. So the lanes are taken in order
    /// (strictly smaller error wins, as there), and after an acceptance the trials after it are
    /// run again with the new `min`; the winner's codes are recomputed at the end.
    static func affine(_ n: Int, _ nmax: Int, _ x: UnsafePointer<Float>, _ weights: UnsafePointer<Float>, _ L: UnsafeMutablePointer<UInt8>,
                       minimum: inout Float, _ aux: UnsafeMutablePointer<UInt8>, rmin: Float, rdelta: Float, steps: Int,
                       absoluteError: Bool) -> Float {
        let start = affineStart(n, nmax, x, weights, L, absoluteError: absoluteError)
        guard start.max > start.min else {
            minimum = -start.min
            return 0
        }
        var min = start.min, scale = start.scale, bestError = start.error
        let max = start.max, sumW = start.sumW, sumX = start.sumX
        let top = SIMD16<Int32>(repeating: Int32(nmax)), zero = SIMD16<Int32>(repeating: 0)
        let signless = SIMD16<UInt32>(repeating: 0x7FFF_FFFF)
        var winner: (step: Int, min: Float)? = nil
        var next = 0
        while next <= steps {
            let lowest = min
            @inline(__always) func codes(_ iscale: SIMD16<Float>, _ i: Int) -> SIMD16<Float> {
                let shifted = iscale * (x[i] - lowest) + 12_582_912
                let bits = (unsafeBitCast(shifted, to: SIMD16<Int32>.self) & 0x007F_FFFF) &- 0x0040_0000
                return bits.clampedLanes(zero, top).smallIntegersAsFloat()
            }
            let step = SIMD16<Float>(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15) + Float(next)
            let iscale = (rmin + rdelta * step + Float(nmax)) / (max - lowest)
            var sumL = SIMD16<Float>(), sumL2 = SIMD16<Float>(), sumXL = SIMD16<Float>()
            for i in 0..<n {
                let l = codes(iscale, i), w = weights[i]
                sumL += w * l
                sumL2 += w * l * l
                sumXL += w * l * x[i]
            }
            let D = sumW * sumL2 - sumL * sumL
            var thisScale = (sumW * sumXL - sumX * sumL) / D
            var thisMin = (sumL2 * sumX - sumL * sumXL) / D
            let positive = thisMin .> 0
            thisMin.replace(with: 0, where: positive)
            thisScale.replace(with: sumXL / sumL2, where: positive)
            var current = SIMD16<Float>()
            for i in 0..<n {
                let diff = thisScale * codes(iscale, i) + thisMin - x[i]
                let e = absoluteError ? unsafeBitCast(unsafeBitCast(diff, to: SIMD16<UInt32>.self) & signless, to: SIMD16<Float>.self) : diff * diff
                current += weights[i] * e
            }
            let lanes = Swift.min(16, steps + 1 - next)
            guard let k = (0..<lanes).first(where: { D[$0] > 0 && current[$0] < bestError }) else {
                next += 16
                continue
            }
            bestError = current[k]
            scale = thisScale[k]
            winner = (next + k, lowest)
            min = thisMin[k]
            next += k + 1  // the later trials see the new min
        }
        if let winner {
            let iscale = (rmin + rdelta * Float(winner.step) + Float(nmax)) / (max - winner.min)
            for i in 0..<n { L[i] = UInt8(truncatingIfNeeded: Swift.max(0, Swift.min(nmax, nearestInt(iscale * (x[i] - winner.min))))) }
        }
        minimum = -min
        return scale
    }

    /// `make_qp_quants`: non-negative values (sub-block scales or minimums) to codes 0…nmax,
    /// weighted by `weights`, with a scale search and up to five refinement passes.
    static func positive(_ n: Int, _ nmax: Int, _ x: UnsafePointer<Float>, _ L: UnsafeMutablePointer<UInt8>,
                         weights: UnsafePointer<Float>) -> Float {
        var max: Float = 0
        for i in 0..<n { max = max > x[i] ? max : x[i] }  // C's MAX(a, b) = a > b ? a : b
        if max < groupEpsilon {
            L.update(repeating: 0, count: n)
            return 0
        }
        var iscale = Float(nmax) / max
        for i in 0..<n { L[i] = UInt8(truncatingIfNeeded: nearestInt(iscale * x[i])) }
        let scale = 1 / iscale
        var bestError: Float = 0
        for i in 0..<n {
            let diff = x[i] - scale * Float(L[i])
            bestError += weights[i] * diff * diff
        }
        for step in -4...4 where step != 0 {
            let trial = (0.1 * Float(step) + Float(nmax)) / max
            let trialScale = 1 / trial
            var error: Float = 0
            for i in 0..<n {
                let l = Swift.min(nmax, nearestInt(trial * x[i]))
                let diff = x[i] - trialScale * Float(l)
                error += weights[i] * diff * diff
            }
            if error < bestError {
                bestError = error
                iscale = trial
            }
        }
        var sumlx: Float = 0, suml2: Float = 0
        for i in 0..<n {
            let l = Swift.min(nmax, nearestInt(iscale * x[i]))
            L[i] = UInt8(truncatingIfNeeded: l)
            let w = weights[i]
            sumlx += w * x[i] * Float(l)
            suml2 += w * Float(l) * Float(l)
        }
        for _ in 0..<5 {
            var changed = 0
            for i in 0..<n {
                let w = weights[i]
                var slx = sumlx - w * x[i] * Float(L[i])
                var sl2 = suml2 - w * Float(L[i]) * Float(L[i])
                if slx > 0 && sl2 > 0 {
                    let newL = Swift.min(nmax, nearestInt(x[i] * sl2 / slx))
                    if newL != Int(L[i]) {
                        slx += w * x[i] * Float(newL)
                        sl2 += w * Float(newL) * Float(newL)
                        if slx * slx * suml2 > sumlx * sumlx * sl2 {
                            L[i] = UInt8(truncatingIfNeeded: newL); sumlx = slx; suml2 = sl2
                            changed += 1
                        }
                    }
                }
            }
            if changed == 0 { break }
        }
        return suml2 > 0 ? sumlx / suml2 : 0
    }

    /// llama.cpp's importance weights for `n` values: qw·√(σ² + x²) into `weights`; returns
    /// their sum, left to right.
    @discardableResult
    @inline(__always)
    static func importanceWeights(_ qw: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int, sigma2: Float,
                                  into weights: UnsafeMutablePointer<Float>) -> Float {
        var sum: Float = 0
        for l in 0..<n { weights[l] = qw[l] * (sigma2 + x[l] * x[l]).squareRoot() }
        for l in 0..<n { sum += weights[l] }
        return sum
    }

    /// Sum of squares of `n` values, left to right.
    @inline(__always)
    static func sumOfSquares(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        var s: Float = 0
        for i in 0..<n { s += x[i] * x[i] }
        return s
    }

    /// Packs 2-bit codes of a 256-block as Q2_K and Q3_K store them: four 32-element groups per byte run.
    static func packTwoBits(_ L: UnsafePointer<UInt8>, into qs: UnsafeMutablePointer<UInt8>) {
        for j in stride(from: 0, to: 256, by: 128) {
            for l in 0..<32 {
                qs[j / 4 + l] = L[j + l] | L[j + l + 32] << 2 | L[j + l + 64] << 4 | L[j + l + 96] << 6
            }
        }
    }

    /// Stores f32 `value` as little-endian f16 at `p`.
    @inline(__always)
    static func storeHalf(_ value: Float, _ p: UnsafeMutableRawPointer) {
        p.storeBytes(of: FloatConversion.f32ToF16Reference(value).littleEndian, as: UInt16.self)
    }

    /// The f16 at `p`, widened.
    @inline(__always)
    static func loadHalf(_ p: UnsafeRawPointer) -> Float {
        FloatConversion.f16ToF32Reference(UInt16(littleEndian: p.loadUnaligned(as: UInt16.self)))
    }
}
