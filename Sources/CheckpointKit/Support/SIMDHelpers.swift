import CKernels

/// Whether this CPU runs the AVX-512 twins in CKernels (checked once). Swift builds for baseline
/// x86-64, where a SIMD16<Float> is four SSE registers; the twins do the same operations in the same
/// order, compiled for AVX-512 alone, and each kernel's tests hold the two together.
let avx512Available = ckpt_has_avx512() != 0

/// Lane-wise minimum, maximum and clamp written as compare-and-select, which compiles to
/// `cmpps` + blend; the standard library's `pointwiseMin`/`pointwiseMax` keep IEEE NaN rules and
/// compile to a lane-by-lane loop through the stack on x86-64 (10× slower in our kernels).
/// A NaN lane passes through `clamped` unchanged.
extension SIMD16 where Scalar == Float {
    @inline(__always)
    func maximum(_ other: SIMD16<Float>) -> SIMD16<Float> { replacing(with: other, where: self .< other) }

    @inline(__always)
    func minimum(_ other: SIMD16<Float>) -> SIMD16<Float> { replacing(with: other, where: self .> other) }

    @inline(__always)
    func clamped(_ low: SIMD16<Float>, _ high: SIMD16<Float>) -> SIMD16<Float> { maximum(low).minimum(high) }
}

extension SIMD16 where Scalar == Int32 {
    /// Each lane clamped to `low…high` by compare-and-select (`pcmpgtd` + blend): the standard
    /// library's `clamped(lowerBound:upperBound:)` calls `pointwiseMin`/`pointwiseMax`, which
    /// stay out-of-line calls in our K-quant searches (11% of a Q4_K_M conversion's time).
    @inline(__always)
    func clampedLanes(_ low: SIMD16<Int32>, _ high: SIMD16<Int32>) -> SIMD16<Int32> {
        let raised = replacing(with: low, where: self .< low)
        return raised.replacing(with: high, where: raised .> high)
    }

    /// The lanes as floats, exact for |n| < 2²²: added to the bits of 1.5·2²³, whose last place is
    /// 1, then the bias subtracted (the generic `SIMD16<Float>(_:)` stays an out-of-line call).
    @inline(__always)
    func smallIntegersAsFloat() -> SIMD16<Float> {
        unsafeBitCast(self &+ 0x4B40_0000, to: SIMD16<Float>.self) - 12_582_912
    }
}

extension SIMD16 where Scalar == Float {
    /// Round half away from zero to integers, for |x| < 2²²: the 1.5·2²³ trick rounds to
    /// nearest even with float adds only (no per-lane conversion), then exact ±0.5 ties move one
    /// step away from zero.
    @inline(__always)
    func roundedHalfAwayToInt32() -> SIMD16<Int32> {
        let magic = SIMD16<Float>(repeating: 12_582_912)
        let half = SIMD16<Float>(repeating: 0.5), zero = SIMD16<Float>()
        let biased = self + magic
        let remainder = self - (biased - magic)
        var r = unsafeBitCast(biased, to: SIMD16<Int32>.self) &- unsafeBitCast(magic, to: SIMD16<Int32>.self)
        // A true mask lane is all ones (−1).
        r &-= unsafeBitCast((remainder .== half) .& (self .> zero), to: SIMD16<Int32>.self)
        r &+= unsafeBitCast((remainder .== -half) .& (self .< zero), to: SIMD16<Int32>.self)
        return r
    }
}

extension SIMD16 where Scalar == Float {
    /// The four lanes left after halving twice, each half taking the larger of its pair (the
    /// second where the first is smaller): `replacing(with:where:)` on the halves compiles to a
    /// branch per lane, which random weights mispredict, so these selects are done on the bits.
    @inline(__always)
    func largestFourLanes() -> SIMD4<Float> {
        let takeHigh8 = unsafeBitCast(lowHalf .< highHalf, to: SIMD8<UInt32>.self)
        let eight = unsafeBitCast((unsafeBitCast(lowHalf, to: SIMD8<UInt32>.self) & ~takeHigh8)
            | (unsafeBitCast(highHalf, to: SIMD8<UInt32>.self) & takeHigh8), to: SIMD8<Float>.self)
        let takeHigh4 = unsafeBitCast(eight.lowHalf .< eight.highHalf, to: SIMD4<UInt32>.self)
        return unsafeBitCast((unsafeBitCast(eight.lowHalf, to: SIMD4<UInt32>.self) & ~takeHigh4)
            | (unsafeBitCast(eight.highHalf, to: SIMD4<UInt32>.self) & takeHigh4), to: SIMD4<Float>.self)
    }

    /// The largest lane of lanes free of NaN, by `largestFourLanes` and three scalar compares.
    @inline(__always)
    func largestLane() -> Float {
        let four = largestFourLanes()
        return Swift.max(Swift.max(four[0], four[1]), Swift.max(four[2], four[3]))
    }
}

extension SIMD16 where Scalar == Int32 {
    /// The largest lane, halved by compare and bitwise select as `SIMD16<Float>.largestFourLanes` does.
    @inline(__always)
    func largestLane() -> Int32 {
        let takeHigh8 = unsafeBitCast(lowHalf .< highHalf, to: SIMD8<Int32>.self)
        let eight = (lowHalf & ~takeHigh8) | (highHalf & takeHigh8)
        let takeHigh4 = unsafeBitCast(eight.lowHalf .< eight.highHalf, to: SIMD4<Int32>.self)
        let four = (eight.lowHalf & ~takeHigh4) | (eight.highHalf & takeHigh4)
        return Swift.max(Swift.max(four[0], four[1]), Swift.max(four[2], four[3]))
    }
}

/// Whether any lane of `mask` is set, by one OR over its bits: the standard library's `any` reduces
/// 16-bit lanes through a generic `min()` that is not inlined (a tenth of a bf16 → f16 conversion's time).
@inline(__always)
func anyLane(_ mask: SIMDMask<SIMD16<Int16>>) -> Bool {
    let words = unsafeBitCast(mask, to: SIMD4<UInt64>.self)
    return (words[0] | words[1] | words[2] | words[3]) != 0
}

/// Whether every value is a finite number (no NaN, no ±Inf), 16 lanes at a time on the exponent
/// bits: an all-ones exponent is NaN or infinity.
public func allFinite(_ values: UnsafeBufferPointer<Float>) -> Bool {
    guard let p = values.baseAddress else { return true }
    let exponent = SIMD16<UInt32>(repeating: 0x7F80_0000)
    var i = 0
    while i + 64 <= values.count {
        // Four vectors per step: one compare per 64 values, no early exit on the hot path.
        let raw = UnsafeRawPointer(p + i)
        let a = raw.loadUnaligned(as: SIMD16<UInt32>.self) & exponent, b = raw.loadUnaligned(fromByteOffset: 64, as: SIMD16<UInt32>.self) & exponent
        let c = raw.loadUnaligned(fromByteOffset: 128, as: SIMD16<UInt32>.self) & exponent
        let d = raw.loadUnaligned(fromByteOffset: 192, as: SIMD16<UInt32>.self) & exponent
        if any((a .== exponent) .| (b .== exponent) .| (c .== exponent) .| (d .== exponent)) { return false }
        i += 64
    }
    while i < values.count {
        if !p[i].isFinite { return false }
        i += 1
    }
    return true
}
