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
