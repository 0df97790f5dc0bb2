import CKernels

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

    /// `symmetricReference` for `groups` (1…16) groups of `n` (≤ 32) values at once, one group per
    /// SIMD lane: group g is `x[g·n ..< (g+1)·n]` (weights at the same offsets), its codes go to
    /// `L[g·n ...]` and its scale to `scales[g]`. Each lane runs the reference's own steps in its
    /// order with the same f32 operations, so every group's result is the reference's to the bit.
    /// With `wide`, its AVX-512 twin (`ckpt_kquant_symmetric_avx512`) does the same work.
    static func symmetric(groups: Int, _ n: Int, _ nmax: Int, _ x: UnsafePointer<Float>, _ L: UnsafeMutablePointer<Int8>,
                          scales: UnsafeMutablePointer<Float>, weights: UnsafePointer<Float>?, wide: Bool = avx512Available) {
        precondition((1...16).contains(groups) && (1...32).contains(n), "up to 16 groups of up to 32 values")
        if wide {
            ckpt_kquant_symmetric_avx512(Int32(groups), Int32(n), Int32(nmax), x, weights, L, scales, groupEpsilon)
            return
        }
        withUnsafeTemporaryAllocation(of: SIMD16<Float>.self, capacity: 2 * n) { buffer in
            let X = buffer.baseAddress!, W = X + n
            lanes(groups, n, x, into: X)
            if let weights { lanes(groups, n, weights, into: W) } else { for i in 0..<n { W[i] = X[i] * X[i] } }
            // make_qx_quants' start: the signed maximum, the plain inverse scale's fit.
            var amax = SIMD16<Float>(), max = SIMD16<Float>()
            for i in 0..<n {
                let ax = magnitude(X[i])
                let larger = ax .> amax
                amax.replace(with: ax, where: larger)
                max.replace(with: X[i], where: larger)
            }
            let live = amax .>= SIMD16(repeating: groupEpsilon)
            let low = SIMD16<Int32>(repeating: Int32(-nmax)), high = SIMD16<Int32>(repeating: Int32(nmax - 1))
            @inline(__always) func code(_ iscale: SIMD16<Float>, _ v: SIMD16<Float>) -> SIMD16<Float> {
                nearestInts(iscale * v).clampedLanes(low, high).smallIntegersAsFloat()
            }
            @inline(__always) func fit(_ iscale: SIMD16<Float>) -> (sumlx: SIMD16<Float>, suml2: SIMD16<Float>) {
                var sumlx = SIMD16<Float>(), suml2 = SIMD16<Float>()
                for i in 0..<n {
                    let l = code(iscale, X[i])
                    sumlx += W[i] * X[i] * l
                    suml2 += W[i] * l * l
                }
                return (sumlx, suml2)
            }
            var chosen = SIMD16<Float>(repeating: Float(-nmax)) / max
            let (sumlx, suml2) = fit(chosen)
            var scale = (sumlx / suml2).replacing(with: 0, where: suml2 .== 0)
            var best = scale * sumlx
            if any(live) {
                for step in -9...9 where step != 0 {
                    let iscale = SIMD16<Float>(repeating: -(Float(nmax) + 0.1 * Float(step))) / max
                    let (sumlx, suml2) = fit(iscale)
                    let better = live .& (suml2 .> 0) .& (sumlx * sumlx .> best * suml2)
                    guard any(better) else { continue }
                    scale.replace(with: sumlx / suml2, where: better)
                    best.replace(with: scale * sumlx, where: better)
                    chosen.replace(with: iscale, where: better)
                }
            }
            for g in 0..<groups { scales[g] = live[g] ? scale[g] : 0 }
            let offset = SIMD16<Float>(repeating: Float(nmax))
            for i in 0..<n {
                let l = (code(chosen, X[i]) + offset).replacing(with: 0, where: .!live)
                for g in 0..<groups { L[g * n + i] = Int8(truncatingIfNeeded: Int(l[g])) }
            }
        }
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

    /// `affineReference` for `groups` (1…16) groups of `n` (≤ 32) values at once, one group per
    /// SIMD lane: group g is `x[g·n ..< (g+1)·n]` with its weights at the same offsets; its codes go
    /// to `L[g·n ...]`, its scale to `scales[g]` and its −min to `minimums[g]`. Each lane runs the
    /// reference's trials in order (an accepted trial moves that lane's min for the later ones)
    /// with the same f32 operations, so every group's result is the reference's to the bit.
    /// With `wide`, its AVX-512 twin (`ckpt_kquant_affine_avx512`) does the same work.
    static func affine(groups: Int, _ n: Int, _ nmax: Int, _ x: UnsafePointer<Float>, _ weights: UnsafePointer<Float>,
                       _ L: UnsafeMutablePointer<UInt8>, scales: UnsafeMutablePointer<Float>, minimums: UnsafeMutablePointer<Float>,
                       rmin: Float, rdelta: Float, steps: Int, absoluteError: Bool, wide: Bool = avx512Available) {
        precondition((1...16).contains(groups) && (1...32).contains(n), "up to 16 groups of up to 32 values")
        if wide {
            ckpt_kquant_affine_avx512(Int32(groups), Int32(n), Int32(nmax), x, weights, L, scales, minimums, rmin, rdelta, Int32(steps),
                                      absoluteError ? 1 : 0)
            return
        }
        withUnsafeTemporaryAllocation(of: SIMD16<Float>.self, capacity: 2 * n) { buffer in
            let X = buffer.baseAddress!, W = X + n
            lanes(groups, n, x, into: X)
            lanes(groups, n, weights, into: W)
            // make_qkx2/3's start: extremes (min raised to 0), weight sums, the plain scale's error.
            var min = X[0], max = X[0], sumW = W[0], sumX = W[0] * X[0]
            for i in 1..<n {
                min.replace(with: X[i], where: X[i] .< min)
                max.replace(with: X[i], where: X[i] .> max)
                sumW += W[i]
                sumX += W[i] * X[i]
            }
            min.replace(with: 0, where: min .> 0)
            let constant = max .<= min, live = max .> min  // both false on NaN: codes kept, scale 0, as there
            let top = SIMD16<Int32>(repeating: Int32(nmax)), zero = SIMD16<Int32>()
            @inline(__always) func code(_ iscale: SIMD16<Float>, _ lowest: SIMD16<Float>, _ v: SIMD16<Float>) -> SIMD16<Float> {
                nearestInts(iscale * (v - lowest)).clampedLanes(zero, top).smallIntegersAsFloat()
            }
            @inline(__always) func error(_ d: SIMD16<Float>) -> SIMD16<Float> { absoluteError ? magnitude(d) : d * d }
            var chosenScale = SIMD16<Float>(repeating: Float(nmax)) / (max - min), chosenMin = min
            var scale = 1 / chosenScale
            var bestError = SIMD16<Float>()
            for i in 0..<n { bestError += W[i] * error(scale * code(chosenScale, min, X[i]) + min - X[i]) }
            if any(live) {
                for step in 0...steps {
                    let iscale = SIMD16<Float>(repeating: rmin + rdelta * Float(step) + Float(nmax)) / (max - min)
                    var sumL = SIMD16<Float>(), sumL2 = SIMD16<Float>(), sumXL = SIMD16<Float>()
                    for i in 0..<n {
                        let l = code(iscale, min, X[i])
                        sumL += W[i] * l
                        sumL2 += W[i] * l * l
                        sumXL += W[i] * l * X[i]
                    }
                    let D = sumW * sumL2 - sumL * sumL
                    var thisScale = (sumW * sumXL - sumX * sumL) / D
                    var thisMin = (sumL2 * sumX - sumL * sumXL) / D
                    let positive = thisMin .> 0
                    thisMin.replace(with: 0, where: positive)
                    thisScale.replace(with: sumXL / sumL2, where: positive)
                    var current = SIMD16<Float>()
                    for i in 0..<n { current += W[i] * error(thisScale * code(iscale, min, X[i]) + thisMin - X[i]) }
                    let better = live .& (D .> 0) .& (current .< bestError)
                    guard any(better) else { continue }
                    bestError.replace(with: current, where: better)
                    scale.replace(with: thisScale, where: better)
                    chosenScale.replace(with: iscale, where: better)
                    chosenMin.replace(with: min, where: better)
                    min.replace(with: thisMin, where: better)
                }
            }
            for g in 0..<groups {
                scales[g] = live[g] ? scale[g] : 0
                minimums[g] = -min[g]
            }
            for i in 0..<n {
                let l = code(chosenScale, chosenMin, X[i]).replacing(with: 0, where: constant)
                for g in 0..<groups { L[g * n + i] = UInt8(truncatingIfNeeded: Int(l[g])) }
            }
        }
    }

    /// Groups of `n` values (`groups` of them, back to back at `x`) as lanes: `into[i]` lane g is
    /// group g's value i; lanes past `groups` repeat group 0 (computed, never stored).
    @inline(__always)
    static func lanes(_ groups: Int, _ n: Int, _ x: UnsafePointer<Float>, into out: UnsafeMutablePointer<SIMD16<Float>>) {
        out.withMemoryRebound(to: Float.self, capacity: 16 * n) { flat in
            for g in 0..<16 {
                let source = x + (g < groups ? g : 0) * n
                for i in 0..<n { flat[16 * i + g] = source[i] }
            }
        }
    }

    /// `nearest_int` in 16 lanes: the 1.5·2²³ bias, the low mantissa bits read back.
    @inline(__always)
    static func nearestInts(_ v: SIMD16<Float>) -> SIMD16<Int32> {
        (unsafeBitCast(v + 12_582_912, to: SIMD16<Int32>.self) & 0x007F_FFFF) &- 0x0040_0000
    }

    /// |v| lane by lane (the sign bit cleared).
    @inline(__always)
    static func magnitude(_ v: SIMD16<Float>) -> SIMD16<Float> {
        unsafeBitCast(unsafeBitCast(v, to: SIMD16<UInt32>.self) & 0x7FFF_FFFF, to: SIMD16<Float>.self)
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
        p.storeBytes(of: FloatConversion.f32ToF16(value).littleEndian, as: UInt16.self)
    }

    /// The f16 at `p`, widened.
    @inline(__always)
    static func loadHalf(_ p: UnsafeRawPointer) -> Float {
        FloatConversion.f16ToF32Reference(UInt16(littleEndian: p.loadUnaligned(as: UInt16.self)))
    }
}
