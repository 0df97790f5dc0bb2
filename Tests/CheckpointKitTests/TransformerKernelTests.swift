@testable import CheckpointKit
import Testing

// The transformer kernels accumulate in Float over 16 SIMD lanes (and softmax uses a polynomial
// e^x); their references accumulate one value at a time in Double with libm's exp. Results
// therefore differ by Float rounding, not bit for bit, and each test states the bound it allows.

/// Widths around the 16-lane SIMD step and the 64-row attention block, plus a large odd one.
private let awkwardSizes = [1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 577]

/// u: half an ulp of 1.0, the largest relative rounding error of one Float operation.
private let unitRoundoff: Float = 0x1p-24

/// Seeded values of both signs spread over several binary orders of magnitude.
private func seededValues(_ count: Int, seed: UInt64, magnitude: Float = 1) -> [Float] {
    var rng = SeededGenerator(seed: seed)
    return (0..<count).map { _ in
        magnitude * Float.random(in: -1...1, using: &rng) * Float(sign: .plus, exponent: Int.random(in: -3...3, using: &rng), significand: 1)
    }
}

/// The largest |fast − reference| / |reference|; a zero reference must be matched by an exact zero.
private func maxRelativeError(_ fast: [Float], _ reference: [Float]) -> Float {
    var worst: Float = 0
    for (f, r) in zip(fast, reference) {
        if r == 0 {
            if f != 0 { return .infinity }
        } else {
            worst = max(worst, abs(f - r) / abs(r))
        }
    }
    return worst
}

private func rmsNorm(_ x: [Float], weight: [Float], dim: Int, epsilon: Float, threads: Int) -> [Float] {
    var out = [Float](repeating: .nan, count: x.count)
    x.withUnsafeBufferPointer { xs in
        weight.withUnsafeBufferPointer { w in
            out.withUnsafeMutableBufferPointer { o in
                TransformerKernels.rmsNorm(xs.baseAddress!, weight: w.baseAddress!, into: o.baseAddress!, rows: x.count / dim, dim: dim,
                                           epsilon: epsilon, threads: ThreadBudget(threads))
            }
        }
    }
    return out
}

private func causalSoftmax(_ scores: [Float], rows: Int, stride: Int, threads: Int) -> [Float] {
    var out = scores
    out.withUnsafeMutableBufferPointer { TransformerKernels.causalSoftmax($0.baseAddress!, rows: rows, stride: stride, threads: ThreadBudget(threads)) }
    return out
}

@Test("RMSNorm kernel stays within Float rounding of its Double reference on awkward widths", arguments: awkwardSizes)
func rmsNormMatchesReference(dim: Int) {
    // Three rows: ordinary values, an all-zero row (scale comes from epsilon alone), larger values.
    let x = seededValues(dim, seed: UInt64(dim)) + [Float](repeating: 0, count: dim) + seededValues(dim, seed: UInt64(dim) + 1, magnitude: 30)
    let weight = seededValues(dim, seed: UInt64(dim) + 2)
    let reference = TransformerKernels.rmsNormReference(x, weight: weight, dim: dim, epsilon: 1e-5)
    let fast = rmsNorm(x, weight: weight, dim: dim, epsilon: 1e-5, threads: 3)
    // The kernel sums squares in Float, about dim/16 per lane plus a 16-lane reduction and up to
    // 15 tail terms: relative error ≤ (dim/16 + 32)·u, halved by the square root; the mean,
    // epsilon, root, reciprocal and two products add ~6u. (dim/16 + 32)·u covers both with room.
    let bound = (Float(dim / 16) + 32) * unitRoundoff
    #expect(maxRelativeError(fast, reference) <= bound, "dim \(dim)")
    #expect(fast[dim..<(2 * dim)].allSatisfy { $0 == 0 })
    // Rows are independent, so the thread count must not change a bit.
    #expect(rmsNorm(x, weight: weight, dim: dim, epsilon: 1e-5, threads: 1).map(\.bitPattern) == fast.map(\.bitPattern))
}

@Test("Causal softmax kernel stays within Float rounding of its Double reference on awkward sizes", arguments: awkwardSizes)
func causalSoftmaxMatchesReference(size: Int) {
    // Scores up to ±8, wider than scaled attention logits usually are; e^x never underflows here.
    let scores = seededValues(size * size, seed: UInt64(size) + 100)
    let reference = TransformerKernels.causalSoftmaxReference(scores, rows: size, stride: size)
    let fast = causalSoftmax(scores, rows: size, stride: size, threads: 3)
    // Per element: the polynomial e^x (≤ 2e-7 ≈ 4u), x − max rounded in Float (≤ |x − max|·u ≤ 16u
    // in the exponent), the row total summed in Float ((n/16 + 32)·u), reciprocal and product (2u).
    let bound = (Float(size / 16) + 64) * unitRoundoff
    #expect(maxRelativeError(fast, reference) <= bound, "size \(size)")
    // Above the diagonal is exactly zero, in both.
    for i in 0..<size { #expect(fast[(i * size + i + 1)..<((i + 1) * size)].allSatisfy { $0 == 0 }) }
    #expect(causalSoftmax(scores, rows: size, stride: size, threads: 1).map(\.bitPattern) == fast.map(\.bitPattern))
}

@Test("The forward pass's block-wise causal softmax equals the whole-matrix kernel bit for bit", arguments: [1, 9, 64, 65, 577])
func blockCausalSoftmaxMatchesWholeMatrix(size: Int) {
    // TransformerModel softmaxes `attentionBlock` query rows at a time, each only as wide as the
    // keys it may see; that path must give what the kernel tested against the reference gives.
    let scores = seededValues(size * size, seed: UInt64(size) + 200)
    let whole = causalSoftmax(scores, rows: size, stride: size, threads: 1)
    var blocks = scores
    blocks.withUnsafeMutableBufferPointer { s in
        var first = 0
        while first < size {
            let rows = min(TransformerModel.attentionBlock, size - first)
            TransformerKernels.causalSoftmax(s.baseAddress! + first * size, rows: rows, stride: size, firstRow: first, columns: first + rows)
            first += rows
        }
    }
    for i in 0..<size {
        let keys = min((i / TransformerModel.attentionBlock + 1) * TransformerModel.attentionBlock, size)
        let row = (i * size)..<(i * size + keys)
        #expect(blocks[row].map(\.bitPattern) == whole[row].map(\.bitPattern), "row \(i)")
    }
}

@Test("The log-softmax normalizer stays within 1e-6 of its f64 reference on vocabulary-sized and awkward rows",
      arguments: awkwardSizes + [255, 256, 257, 4096, 49_152, 151_936])
func logSoftmaxNormalizerMatchesReference(count: Int) {
    // Logits up to ±24 (wider than a model's usual spread), so terms range from 1 down to e^-48.
    let logits = seededValues(count, seed: UInt64(count) + 300, magnitude: 3)
    let (fastMax, fastLogSum) = logits.withUnsafeBufferPointer { logSoftmaxNormalizer($0) }
    let (referenceMax, referenceLogSum) = logits.withUnsafeBufferPointer { logSoftmaxNormalizerReference($0) }
    #expect(fastMax == referenceMax)
    // Each term is within 2e-7 relative of the f64 exp (the polynomial and v − m rounded in f32),
    // runs of 256 add in f32 (~8 ulps): log Σ moves by at most that relative error of Σ.
    #expect(abs(fastLogSum - referenceLogSum) <= 1e-6, "count \(count): \(fastLogSum) against \(referenceLogSum)")
    // The AVX-512 path and the Swift SIMD16 one differ only in the order each run's 16 lanes are added (a few f32 roundings of Σ).
    let (portableMax, portableLogSum) = logits.withUnsafeBufferPointer { logSoftmaxNormalizer($0, portable: true) }
    #expect(portableMax == fastMax)
    #expect(abs(portableLogSum - fastLogSum) <= 8 * Double(unitRoundoff), "count \(count): \(fastLogSum) against Swift's \(portableLogSum)")
}

@Test("The finiteness check finds a NaN or an infinity wherever it lies, as a scalar check does", arguments: [0, 1, 63, 64, 65, 200])
func allFiniteFindsEveryNonFiniteValue(count: Int) {
    let clean = seededValues(count, seed: UInt64(count) + 400)
    #expect(clean.withUnsafeBufferPointer(allFinite))
    for bad: Float in [.nan, .infinity, -.infinity, .signalingNaN] {
        for position in 0..<count {
            var values = clean
            values[position] = bad
            #expect(!values.withUnsafeBufferPointer(allFinite), "\(bad) at \(position) of \(count)")
        }
    }
    // The largest finite values and subnormals are finite.
    let edges: [Float] = [.greatestFiniteMagnitude, -.greatestFiniteMagnitude, .leastNonzeroMagnitude, 0, -0.0]
    #expect((edges + clean).withUnsafeBufferPointer(allFinite))
}

@Test("A product's cut covers every weight row and token row once, in a multiple of four items, and packs the fewest values",
      arguments: [(192, 512), (576, 512), (1536, 512), (576, 255), (49_152, 255), (2048, 512), (512, 512), (8192, 512), (20, 7), (1, 1)])
func productTilingCoversTheProduct(outputs: Int, rows: Int) {
    let tiling = TransformerModel.tiling(outputs: outputs, rows: rows)
    var covered = [Int](repeating: 0, count: outputs * rows)
    for item in 0..<tiling.items {
        let tile = tiling.tile(item / tiling.tokenBlocks, of: outputs), block = tiling.block(item % tiling.tokenBlocks, of: rows)
        #expect(!tile.isEmpty && !block.isEmpty)
        for r in block { for o in tile { covered[r * outputs + o] += 1 } }
    }
    #expect(covered.allSatisfy { $0 == 1 }, "\(outputs)×\(rows): \(tiling)")
    #expect(tiling.tileRows % 16 == 0)
    if outputs >= 64 && rows >= 4 { #expect(tiling.items % 4 == 0, "\(outputs)×\(rows): \(tiling)") }
    // The weights SmolLM2 multiplies by at ctx 512: k and v split the tokens four ways, q/o/down
    // two by two, gate/up four tiles of 384 rows, the head tiles of 512 rows widened by their worker.
    switch (outputs, rows) {
    case (192, 512): #expect(tiling == .init(tileRows: 192, tiles: 1, blockRows: 128, tokenBlocks: 4, shared: true))
    case (576, 512): #expect(tiling == .init(tileRows: 288, tiles: 2, blockRows: 256, tokenBlocks: 2, shared: true))
    case (1536, 512): #expect(tiling == .init(tileRows: 384, tiles: 4, blockRows: 512, tokenBlocks: 1, shared: false))
    case (49_152, 255): #expect(tiling == .init(tileRows: 512, tiles: 96, blockRows: 255, tokenBlocks: 1, shared: false))
    default: break
    }
}

@Test("The AVX-512 softmax row equals its Swift SIMD twin but for the sum's order (within 4 roundings)", arguments: awkwardSizes + [512])
func wideSoftmaxMatchesPortable(size: Int) throws {
    guard TransformerKernels.usesAVX512 else {
        print("skipped: this CPU has no AVX-512; the Swift kernel runs alone")
        return
    }
    let values = seededValues(size + 3, seed: UInt64(size), magnitude: 8)
    var wide = values, portable = values
    wide.withUnsafeMutableBufferPointer { TransformerKernels.softmaxRow($0.baseAddress!, valid: size, columns: size + 3) }
    portable.withUnsafeMutableBufferPointer { TransformerKernels.softmaxRowPortable($0.baseAddress!, valid: size, columns: size + 3) }
    #expect(Array(wide[size...]) == [0, 0, 0])
    #expect(maxRelativeError(wide, portable) <= 4 * unitRoundoff)
}

@Test("The AVX-512 SwiGLU equals its Swift SIMD twin bit for bit", arguments: awkwardSizes + [40_000])
func wideSiluMatchesPortable(size: Int) throws {
    guard TransformerKernels.usesAVX512 else {
        print("skipped: this CPU has no AVX-512; the Swift kernel runs alone")
        return
    }
    var gate = seededValues(size, seed: 7 + UInt64(size), magnitude: 16) + [0, -0.0, 90, -90].prefix(max(0, min(4, size)))
    let up = seededValues(gate.count, seed: 99)
    var portable = gate
    gate.withUnsafeMutableBufferPointer { g in
        up.withUnsafeBufferPointer { TransformerKernels.siluMultiply(g.baseAddress!, $0.baseAddress!, count: g.count, threads: ThreadBudget(2)) }
    }
    portable.withUnsafeMutableBufferPointer { g in
        up.withUnsafeBufferPointer {
            TransformerKernels.siluMultiply(g.baseAddress!, $0.baseAddress!, count: g.count, threads: ThreadBudget(2), portable: true)
        }
    }
    #expect(gate.map(\.bitPattern) == portable.map(\.bitPattern))
}

@Test("The Gram sum in column panels fills the upper triangle with aᵀ·a (within f32 rounding of the plain product), leaves the lower one, and is the same bits on 1 and 2 threads",
      arguments: [1, 63, 64, 150, 576])
func gramPanelsMatchThePlainProduct(columns: Int) {
    let rows = 37
    var rng = SeededGenerator(seed: UInt64(columns))
    let a = (0..<(rows * columns)).map { _ in Float.random(in: -1...1, using: &rng) }
    var transposed = [Float](repeating: 0, count: rows * columns)
    for r in 0..<rows { for c in 0..<columns { transposed[c * rows + r] = a[r * columns + c] } }
    let expected = MatrixMultiply.multiplyReference(transposed, a, m: columns, n: columns, k: rows)
    let start = (0..<(columns * columns)).map { Float($0 % 7) }
    var one = start, two = start
    a.withUnsafeBufferPointer { ap in
        one.withUnsafeMutableBufferPointer { MatrixMultiply.addGram(ap.baseAddress!, rows: rows, columns: columns, into: $0.baseAddress!, threads: .single) }
        two.withUnsafeMutableBufferPointer { MatrixMultiply.addGram(ap.baseAddress!, rows: rows, columns: columns, into: $0.baseAddress!, threads: ThreadBudget(2)) }
    }
    #expect(one == two)
    for i in 0..<columns {
        for j in 0..<columns {
            let k = i * columns + j
            if j >= i {
                #expect(abs(one[k] - (start[k] + expected[k])) <= 1e-4 * Float(rows), "(\(i), \(j))")
            } else {
                #expect(one[k] == start[k], "(\(i), \(j)) below the diagonal")
            }
        }
    }
}
