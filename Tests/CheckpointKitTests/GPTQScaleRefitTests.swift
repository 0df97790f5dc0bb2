@testable import CheckpointKit
import Foundation
import TestSupport
import Testing

/// GPTQ's scale refit (`GPTQScaleRefit`): the batched normal equations against a plain per-row
/// solve, and the refit inside GPTQ (same codes, no larger output error); and GPTQ's row pieces,
/// the same result on any thread count.

/// A Gram matrix of `tokens` correlated random inputs: the Hessian GPTQ sees, positive definite
/// (shared with the coordinate-descent tests).
func correlatedGram(columns: Int, tokens: Int, seed: UInt64) -> [Float] {
    var rng = SeededGenerator(seed: seed)
    let mix = (0..<columns).map { _ in Float.random(in: 0.2...3, using: &rng) }
    var x = [Float](repeating: 0, count: tokens * columns)
    for t in 0..<tokens {
        let common = Float.random(in: -1...1, using: &rng)
        for c in 0..<columns { x[t * columns + c] = mix[c] * (Float.random(in: -1...1, using: &rng) + 0.5 * common) }
    }
    var h = [Float](repeating: 0, count: columns * columns)
    for i in 0..<columns { for j in 0..<columns { for t in 0..<tokens { h[i * columns + j] += x[t * columns + i] * x[t * columns + j] } } }
    return h
}

/// (w − ŵ)·H·(w − ŵ)ᵀ summed over rows, in f64.
private func outputError(_ w: [Float], _ q: [Float], _ h: [Float], rows: Int, columns: Int) -> Double {
    var total = 0.0
    for n in 0..<rows {
        for i in 0..<columns {
            let ei = Double(w[n * columns + i] - q[n * columns + i])
            for j in 0..<columns { total += ei * Double(h[i * columns + j]) * Double(w[n * columns + j] - q[n * columns + j]) }
        }
    }
    return total
}

/// The plain twin: one row's A and b by the definition, solved by Gaussian elimination with pivoting.
private func referenceScales(units: [Float], weight: [Float], hessian: [Float], damping: Float, row n: Int, columns: Int, groupOf: [Int32],
                             groups: Int) -> [Double] {
    var a = [[Double]](repeating: [Double](repeating: 0, count: groups + 1), count: groups)
    for i in 0..<columns {
        for j in 0..<columns {
            let hij = Double(hessian[i * columns + j]) + (i == j ? Double(damping) : 0)
            a[Int(groupOf[i])][Int(groupOf[j])] += Double(units[n * columns + i]) * hij * Double(units[n * columns + j])
            a[Int(groupOf[i])][groups] += Double(units[n * columns + i]) * hij * Double(weight[n * columns + j])
        }
    }
    for p in 0..<groups {
        let pivot = (p..<groups).max { abs(a[$0][p]) < abs(a[$1][p]) }!
        a.swapAt(p, pivot)
        for r in 0..<groups where r != p {
            let f = a[r][p] / a[p][p]
            for c in p...groups { a[r][c] -= f * a[p][c] }
        }
    }
    return (0..<groups).map { a[$0][groups] / a[$0][$0] }
}

@Test("The refit's batched normal equations solve to the scales a plain per-row least-squares solve finds (within 1e-4), on 1, 2 and 3 threads alike",
      arguments: [1, 2, 3])
func refitMatchesPlainLeastSquares(threads: Int) {
    let rows = 70, columns = 48, groups = 4
    var rng = SeededGenerator(seed: 11)
    let h = correlatedGram(columns: columns, tokens: 200, seed: 3)
    let weight = (0..<(rows * columns)).map { _ in Float.random(in: -0.1...0.1, using: &rng) }
    // Act-order style groups: columns scattered over the groups, not contiguous.
    let groupOf = (0..<columns).map { Int32(($0 * 7) % groups) }
    let scales = [Float](repeating: 0.02, count: rows * groups)
    let units = weight.enumerated().map { k, w in min(max((w / 0.02).rounded(), -8), 7) + (k % 5 == 0 ? 1 : 0) }
    let refit = GPTQScaleRefit.refit(units: units, weight: weight, hessian: h, damping: 0.5, rows: rows, columns: columns, groupOf: groupOf,
                                     groups: groups, scales: scales, scaleType: .f32, threads: ThreadBudget(threads))
    let single = GPTQScaleRefit.refit(units: units, weight: weight, hessian: h, damping: 0.5, rows: rows, columns: columns, groupOf: groupOf,
                                      groups: groups, scales: scales, scaleType: .f32, threads: .single)
    #expect(refit == single)
    for n in 0..<rows {
        let expected = referenceScales(units: units, weight: weight, hessian: h, damping: 0.5, row: n, columns: columns, groupOf: groupOf, groups: groups)
        for g in 0..<groups {
            #expect(abs(Double(refit[n * groups + g]) - expected[g]) <= 1e-4 * abs(expected[g]), "row \(n) group \(g): \(refit[n * groups + g]) against \(expected[g])")
        }
    }
}

@Test("A group whose codes all sit at the zero point keeps its scale (0 included) while the row's others are refitted, and a fit that would need a negative scale keeps the old ones")
func refitKeepsScalesItCannotImprove() {
    let columns = 8, groups = 2
    let h = correlatedGram(columns: columns, tokens: 50, seed: 5)
    let weight: [Float] = [0.1, -0.2, 0.3, 0.05, 0.01, -0.01, 0.02, 0]
    let zeroGroup: [Float] = [1, -2, 3, 1, 0, 0, 0, 0]
    for keptScale: Float in [0.5, 0] {
        let kept = GPTQScaleRefit.refit(units: zeroGroup, weight: weight, hessian: h, damping: 0.01, rows: 1, columns: columns,
                                        groupOf: [0, 0, 0, 0, 1, 1, 1, 1], groups: groups, scales: [0.09, keptScale], scaleType: .f32, threads: .single)
        #expect(kept[1] == keptScale)
        #expect(kept[0] != 0.09 && kept[0] > 0, "kept scale \(keptScale): \(kept)")
    }
    // Units of the opposite sign to the weight: the least-squares scale is negative, so nothing changes.
    let flipped = GPTQScaleRefit.refit(units: weight.map { $0 < 0 ? 1 : -1 }, weight: weight, hessian: h, damping: 0.01, rows: 1, columns: columns,
                                       groupOf: [0, 0, 0, 0, 0, 0, 0, 0], groups: 1, scales: [0.1], scaleType: .f32, threads: .single)
    #expect(flipped == [0.1])
}

@Test("GPTQ with the refit keeps every code and scale layout, and its output error through H is no larger, for int4 (bf16 scales), asymmetric int4 and NF4",
      arguments: [GPTQOptions.Codes.integer(bits: 4, symmetric: true), .integer(bits: 4, symmetric: false), .fourBit(.nf4)])
func gptqRefitLowersTheOutputError(codes: GPTQOptions.Codes) throws {
    let rows = 24, columns = 128
    var rng = SeededGenerator(seed: 21)
    let h = correlatedGram(columns: columns, tokens: 400, seed: 8)
    let weight = (0..<(rows * columns)).map { _ in Float.random(in: -1...1, using: &rng) * Float.random(in: 0...0.05, using: &rng) }
    var options = GPTQOptions(codes: codes, groupSize: 32)
    options.actOrder = true
    options.groupAwareOrder = true
    if case .integer = codes { options.scaleType = .bf16 }
    let plain = try GPTQ.quantize(weight, hessian: h, rows: rows, columns: columns, options: options, threads: .single)
    options.refitScales = true
    let refit = try GPTQ.quantize(weight, hessian: h, rows: rows, columns: columns, options: options, threads: .single)
    if let before = plain.integer, let after = refit.integer {
        #expect(after.codes == before.codes && after.zeros == before.zeros)
        #expect(after.scales != before.scales)
        #expect(after.scales.allSatisfy { IntegerCodes.round($0, to: .bf16) == $0 && $0 > 0 })
        #expect(after.dequantized.enumerated().allSatisfy { k, v in abs(v - refit.quantized[k]) <= abs(v) * 0.008 })
    } else {
        let before = try #require(plain.absmax), after = try #require(refit.absmax)
        #expect(after != before && after.allSatisfy { $0 > 0 })
        for k in 0..<(rows * columns) {
            let scaleBefore = before[k / 32], scaleAfter = after[k / 32]
            #expect(abs(plain.quantized[k] / scaleBefore - refit.quantized[k] / scaleAfter) < 1e-5)
        }
    }
    // The refit minimises the error through the dampened H GPTQ's updates followed.
    var dampened = h
    let damping = GPTQ.damping(h, size: columns, damp: refit.damp)
    for c in 0..<columns { dampened[c * columns + c] += damping }
    let errorBefore = outputError(weight, plain.quantized, dampened, rows: rows, columns: columns)
    let errorAfter = outputError(weight, refit.quantized, dampened, rows: rows, columns: columns)
    #expect(errorAfter < errorBefore, "output error \(errorAfter) against \(errorBefore) without the refit")
}

@Test("GPTQ's column loop in row pieces gives the same codes, scales and values on 1, 2 and 3 threads, with a correlated Hessian, a row count no piece size divides, act-order, the refit and GPTAQ's shift",
      arguments: [false, true])
func gptqIsTheSameOnAnyThreadCount(withShift: Bool) throws {
    let rows = 40, columns = 96
    var rng = SeededGenerator(seed: 31)
    let h = correlatedGram(columns: columns, tokens: 300, seed: 9)
    let weight = (0..<(rows * columns)).map { _ in Float.random(in: -0.05...0.05, using: &rng) }
    let shift = withShift ? (0..<(columns * columns)).map { _ in Float.random(in: -0.5...0.5, using: &rng) } : nil
    var options = GPTQOptions(codes: .integer(bits: 4, symmetric: true), groupSize: 32)
    options.actOrder = true
    options.blockSize = 32
    options.mse = 2.4
    options.refitScales = !withShift
    let results = try [1, 2, 3].map { try GPTQ.quantize(weight, hessian: h, rows: rows, columns: columns, options: options, threads: ThreadBudget($0), shift: shift) }
    for result in results.dropFirst() {
        #expect(result.quantized.map(\.bitPattern) == results[0].quantized.map(\.bitPattern))
        #expect(result.integer == results[0].integer)
        #expect(result.loss == results[0].loss)
    }
    // The errors reached later blocks: the codes are not round-to-nearest's.
    var rounding = options
    rounding.refitScales = false
    let identity = (0..<(columns * columns)).map { $0 % (columns + 1) == 0 ? Float(1) : 0 }
    let nearest = try GPTQ.quantize(weight, hessian: identity, rows: rows, columns: columns, options: rounding, threads: .single)
    #expect(nearest.integer?.codes != results[0].integer?.codes)
}
