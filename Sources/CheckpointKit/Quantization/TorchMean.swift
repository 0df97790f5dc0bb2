/// torch's float32 `mean()` on CPU, reproduced to the last bit: `cascade_sum` over 8-lane vectors
/// (aten/src/ATen/native/cpu/SumKernel.cpp with AVX2's `Vectorized<float>`), then one float32
/// division. bitsandbytes takes the double-quantization offset from it, and the offset is written
/// into the file, so matching it makes our files byte-identical to theirs.
///
/// Exact for arrays up to 32,768 values (torch's grain size) and for any size when torch runs on
/// one thread; past that, torch splits the sum per thread and its own result depends on its
/// thread count.
enum TorchMean {
    static let lanes = 8

    static func mean(_ x: [Float]) -> Float {
        guard !x.isEmpty else { return .nan }
        return sum(x) / Float(x.count)
    }

    static func sum(_ x: [Float]) -> Float {
        let n = x.count
        var final: Float = 0
        if n >= lanes {
            let vectors = n / lanes
            let rows = (0..<vectors).map { v in SIMD8<Float>((0..<lanes).map { x[v * lanes + $0] }) }
            let accumulated = rowSum(rows)
            for k in (vectors * lanes)..<n { final += x[k] }
            for k in 0..<lanes { final += accumulated[k] }
        } else {
            // The scalar path: the same cascade over single values (lane 0 of otherwise-zero vectors).
            final = rowSum(x.map { SIMD8<Float>($0, 0, 0, 0, 0, 0, 0, 0) })[0]
        }
        return 0 + final
    }

    /// `row_sum`: four interleaved accumulators, each a multi-level cascade, then added in order.
    static func rowSum(_ items: [SIMD8<Float>]) -> SIMD8<Float> {
        let size = items.count
        let groups = size / 4
        var partial = multiRowSum(groups: groups) { i, k in items[i * 4 + k] }
        for i in (groups * 4)..<size { partial[0] += items[i] }
        for k in 1..<4 { partial[0] += partial[k] }
        return partial[0]
    }

    /// `multi_row_sum` over `groups` rows of 4 vectors: 4 cascade levels, level step 2^max(4, ⌈log2 n⌉/4).
    static func multiRowSum(groups size: Int, _ row: (Int, Int) -> SIMD8<Float>) -> [SIMD8<Float>] {
        let levels = 4
        let ceilLog2 = size <= 2 ? 1 : Int.bitWidth - (size - 1).leadingZeroBitCount
        let levelPower = max(4, ceilLog2 / levels)
        let levelStep = 1 << levelPower
        let levelMask = levelStep - 1
        var acc = [[SIMD8<Float>]](repeating: [SIMD8<Float>](repeating: .zero, count: 4), count: levels)
        var i = 0
        while i + levelStep <= size {
            for _ in 0..<levelStep {
                for k in 0..<4 { acc[0][k] += row(i, k) }
                i += 1
            }
            for j in 1..<levels {
                for k in 0..<4 {
                    acc[j][k] += acc[j - 1][k]
                    acc[j - 1][k] = .zero
                }
                if i & (levelMask << (j * levelPower)) != 0 { break }
            }
        }
        while i < size {
            for k in 0..<4 { acc[0][k] += row(i, k) }
            i += 1
        }
        for j in 1..<levels {
            for k in 0..<4 { acc[0][k] += acc[j][k] }
        }
        return acc[0]
    }
}
