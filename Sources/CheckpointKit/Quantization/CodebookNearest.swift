/// The entry of a 4-bit codebook nearest to a value, ties to the lower index: what a scan of all
/// sixteen entries gives (`GPTQ.quantizedUnitReference`), found instead by a binary search over
/// the distinct entries in value order and one comparison of the two around the value. |x − t| in
/// float32 never decreases as t moves away from x (rounding is monotone), so no entry further out
/// can be nearer than those two.
struct CodebookNearest: @unchecked Sendable {
    /// The distinct entries, ascending, padded with +∞ to sixteen. Memory made once per codebook and
    /// never freed (the two live in statics), read through a pointer: a search per value on every
    /// thread then neither retains a shared array nor copies a vector to the stack.
    let values: UnsafePointer<Float>
    /// The lowest index holding each of `values` (FP4 holds +0 at codes 0 and 8: code 0).
    let indices: UnsafePointer<Int32>
    /// How many distinct entries there are.
    let count: Int
    /// The entry a NaN takes in the scan: index 0's.
    let first: Float

    /// The search over `type`'s sixteen entries.
    init(_ type: FourBitType) {
        let table = type.code
        let values = UnsafeMutablePointer<Float>.allocate(capacity: 16), indices = UnsafeMutablePointer<Int32>.allocate(capacity: 16)
        values.initialize(repeating: .infinity, count: 16)
        indices.initialize(repeating: 0, count: 16)
        var count = 0
        // In value order, each value kept at its lowest code (`order` is a stable argsort).
        for i in type.order.map(Int.init) where count == 0 || values[count - 1] != table[i] {
            values[count] = table[i]
            indices[count] = Int32(i)
            count += 1
        }
        (self.values, self.indices, self.count, first) = (UnsafePointer(values), UnsafePointer(indices), count, table[0])
    }

    /// The value of the entry nearest to `x`, for a finite `x` or NaN (`GPTQ.quantizedUnit` clamps to [−1, 1]).
    @inline(__always)
    func nearest(_ x: Float) -> Float {
        guard !x.isNaN else { return first }
        // How many entries lie below x, by four halvings without branches (the padding is never below).
        var low = 0
        low += values[low + 7] < x ? 8 : 0
        low += values[low + 3] < x ? 4 : 0
        low += values[low + 1] < x ? 2 : 0
        low += values[low] < x ? 1 : 0
        if low == 15 && values[15] < x { low = 16 }
        // values[low − 1] < x ≤ values[low]
        if low == 0 { return values[0] }
        if low == count { return values[low - 1] }
        let below = abs(x - values[low - 1]), above = abs(x - values[low])
        if below != above { return below < above ? values[low - 1] : values[low] }
        return indices[low - 1] < indices[low] ? values[low - 1] : values[low]
    }
}
