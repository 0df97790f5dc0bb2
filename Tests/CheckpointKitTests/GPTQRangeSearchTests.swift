@testable import CheckpointKit
import Foundation
import TestSupport
import Testing

/// GPTQModel's `mse` range search (`GPTQRangeSearch`): the SIMD kernel against its plain twin,
/// and the search inside GPTQ.

/// Weights as GPTQ meets them: mostly Gaussian, some rows with outliers, some rounded to bf16
/// (exact ties), some without a negative value (the symmetric quirk), some all zero.
private func searchGroups(count: Int, size: Int, seed: UInt64) -> [[Float]] {
    var rng = SeededGenerator(seed: seed)
    func normal() -> Float {
        let u = Float.random(in: Float.ulpOfOne...1, using: &rng), v = Float.random(in: 0...1, using: &rng)
        return (-2 * Foundation.log(u)).squareRoot() * Foundation.cos(2 * .pi * v)
    }
    return (0..<count).map { g in
        let spread = Float.random(in: 0.005...0.2, using: &rng)
        var group = (0..<size).map { _ in normal() * spread }
        switch g % 8 {
        case 1: group[Int.random(in: 0..<size, using: &rng)] *= 8
        case 2: group = group.map { FloatConversion.bf16ToF32Reference(FloatConversion.f32ToBF16Reference($0)) }
        case 3: group = group.map(abs)
        case 4 where g % 64 == 4: group = [Float](repeating: 0, count: size)
        case 5: group = group.map { $0 * $0 * $0 * 40 }  // heavy tails
        default: break
        }
        return group
    }
}

@Test("The vectorised |e|^norm is within 1e-6 of pow (4e-7 × norm above 2.5) from 1e-30 to 100, gives 0 for zero and subnormal errors, and +inf for NaN",
      arguments: [2.4, 2.0, 1.0, 0.5, 3.7, 64.0])
func powerMatchesPow(norm given: Double) {
    let power = GPTQRangeSearch.Power(norm: given)
    // The kernel raises to the f32 norm, as torch's pow_ does with a Python float on an f32 tensor.
    let norm = Double(Float(given))
    var rng = SeededGenerator(seed: 5)
    var worst = 0.0
    for _ in 0..<4_000 {
        var e = SIMD16<Float>()
        for k in 0..<16 { e[k] = Float(Foundation.pow(10, Double.random(in: -30...2, using: &rng))) * (k % 2 == 0 ? 1 : -1) }
        let fast = power(e)
        for k in 0..<16 {
            let exact = Foundation.pow(Double(abs(e[k])), norm)
            // Below f32's normal range the kernel flushes to 0, as f32 pow underflows.
            if exact < 1e-37 { #expect(fast[k] == 0 || Double(fast[k]) < 2e-37); continue }
            if exact > 4e38 { #expect(fast[k] == .infinity); continue }
            if exact > 1e38 { continue }  // 2^127 and above: the kernel may call it +inf a little early
            worst = max(worst, abs(Double(fast[k]) - exact) / exact)
        }
    }
    #expect(worst < 4e-7 * max(norm, 2.5), "worst relative error \(worst)")
    let special = power(SIMD16<Float>(0, -0.0, Float.leastNonzeroMagnitude, Float.leastNormalMagnitude / 2, .nan, .infinity, 1, -1, 2, 0.5, 0, 0, 0, 0, 0, 0))
    #expect(special[0] == 0 && special[1] == 0 && special[2] == 0 && special[3] == 0)
    #expect(special[4] == .infinity && special[5] == .infinity)
    #expect(special[6] == 1 && special[7] == 1)
    #expect(abs(Double(special[8]) - Foundation.pow(2, norm)) <= 1e-6 * Foundation.pow(2, norm))
}

/// Counts of the fast search's choices against the reference's.
private struct Agreement {
    var groups = 0, same = 0, nearTies = 0, wrong: [String] = []
}

/// A near-tie: the reference's own error for the fast choice is within 1e-5 of its minimum, a
/// difference the f32 sums (order, and |e|^norm to 3e-7) cannot resolve.
private let nearTie = 1e-5

@Test("The SIMD range search for integer codes keeps the shrink its f64 reference keeps, but for counted near-ties of the error sums (< 0.1%)",
      arguments: [(4, true, DType.f32), (4, false, .bf16), (4, true, .f16), (8, false, .f32), (2, false, .f32)])
func integerSearchMatchesReference(bits: Int, symmetric: Bool, scaleType: DType) {
    let power = GPTQRangeSearch.Power(norm: 2.4)
    var tally = Agreement()
    for (size, count) in [(64, 300), (37, 60), (576, 8)] {
        for group in searchGroups(count: count, size: size, seed: UInt64(bits * 1000 + size + (symmetric ? 1 : 0))) {
            group.withUnsafeBufferPointer { x in
                let reference = GPTQRangeSearch.integerReference(x, bits: bits, symmetric: symmetric, scaleType: scaleType, norm: 2.4)
                let fast = GPTQRangeSearch.integer(x, bits: bits, symmetric: symmetric, scaleType: scaleType, power: power)
                tally.groups += 1
                if fast == reference { tally.same += 1; return }
                let best = GPTQRangeSearch.integerErrorReference(x, scale: reference.scale, zero: reference.zero, bits: bits, norm: 2.4)
                let chosen = GPTQRangeSearch.integerErrorReference(x, scale: fast.scale, zero: fast.zero, bits: bits, norm: 2.4)
                if chosen - best <= nearTie * best { tally.nearTies += 1 } else { tally.wrong.append("size \(size): \(fast) vs \(reference), \(chosen) vs \(best)") }
            }
        }
    }
    #expect(tally.wrong.isEmpty, "\(tally.wrong.count) choices differ beyond near-ties, first: \(tally.wrong.first ?? "")")
    #expect(Double(tally.nearTies) < 0.001 * Double(tally.groups), "\(tally.nearTies) near-ties in \(tally.groups) groups")
    #expect(tally.same + tally.nearTies == tally.groups)
}

@Test("The SIMD range search for NF4 and FP4 keeps the absmax its f64 reference keeps, but for counted near-ties (< 0.1%)", arguments: FourBitType.allCases)
func fourBitSearchMatchesReference(type: FourBitType) {
    let power = GPTQRangeSearch.Power(norm: 2.4)
    var tally = Agreement()
    for (size, count) in [(64, 300), (32, 100)] {
        for group in searchGroups(count: count, size: size, seed: UInt64(size) + (type == .nf4 ? 0 : 77)) {
            group.withUnsafeBufferPointer { x in
                let reference = GPTQRangeSearch.fourBitReference(x, type: type, norm: 2.4)
                let fast = GPTQRangeSearch.fourBit(x, type: type, power: power)
                tally.groups += 1
                if fast == reference { tally.same += 1; return }
                let best = GPTQRangeSearch.fourBitErrorReference(x, absmax: reference.scale, type: type, norm: 2.4)
                let chosen = GPTQRangeSearch.fourBitErrorReference(x, absmax: fast.scale, type: type, norm: 2.4)
                if chosen - best <= nearTie * best { tally.nearTies += 1 } else { tally.wrong.append("size \(size): \(fast) vs \(reference), \(chosen) vs \(best)") }
            }
        }
    }
    #expect(tally.wrong.isEmpty, "\(tally.wrong.count) choices differ beyond near-ties, first: \(tally.wrong.first ?? "")")
    #expect(Double(tally.nearTies) < 0.001 * Double(tally.groups), "\(tally.nearTies) near-ties in \(tally.groups) groups")
}

@Test("The range search tries 80 shrinks from 1 down to 0.21, as GPTQModel's grid 100 and maxshrink 0.8 give")
func shrinkGrid() {
    #expect(GPTQRangeSearch.shrinks.count == 80)
    #expect(GPTQRangeSearch.shrinks.first == 1 && GPTQRangeSearch.shrinks.last == Float(0.21))
    #expect(GPTQRangeSearch.shrinks[37] == Float(1 - 37.0 / 100))
}

@Test("An all-zero group keeps GPTQModel's [−1, 1] range under the search, and a Gaussian group's range shrinks (integer codes and NF4), as the reference's does")
func searchOnEdgeGroups() {
    let power = GPTQRangeSearch.Power(norm: 2.4)
    let zeros = [Float](repeating: 0, count: 64)
    zeros.withUnsafeBufferPointer { x in
        #expect(GPTQRangeSearch.integer(x, bits: 4, symmetric: true, scaleType: .f32, power: power) == .init(shrink: 0, scale: Float(2) / 15, zero: 8))
        let asymmetric = IntegerQuantizer.gptqParameters(x, bits: 4, symmetric: false, scaleType: .f32)
        #expect(GPTQRangeSearch.integer(x, bits: 4, symmetric: false, scaleType: .f32, power: power) == .init(shrink: 0, scale: asymmetric.scale, zero: asymmetric.zero))
        #expect(GPTQRangeSearch.fourBit(x, type: .nf4, power: power) == .init(shrink: 0, scale: 0, zero: 0))
    }
    // A Gaussian group: the extremes are rare, so a narrower range with finer steps costs less.
    let gaussian = searchGroups(count: 1, size: 64, seed: 3)[0]
    gaussian.withUnsafeBufferPointer { x in
        let choice = GPTQRangeSearch.integer(x, bits: 4, symmetric: true, scaleType: .f32, power: power)
        #expect(choice == GPTQRangeSearch.integerReference(x, bits: 4, symmetric: true, scaleType: .f32, norm: 2.4))
        #expect(choice.shrink > 0 && choice.zero == 8, "\(choice)")
        let fourBit = GPTQRangeSearch.fourBit(x, type: .nf4, power: power)
        #expect(fourBit == GPTQRangeSearch.fourBitReference(x, type: .nf4, norm: 2.4))
        #expect(fourBit.shrink > 0, "\(fourBit)")
    }
}

@Test("GPTQ with the range search gives the same codes and scales on 1 and 2 threads, lowers the weight error's 2.4-norm below min/max's, and 0 leaves GPTQ as it was",
      arguments: [GPTQOptions.Codes.integer(bits: 4, symmetric: true), .integer(bits: 4, symmetric: false), .fourBit(.nf4)])
func gptqWithRangeSearch(codes: GPTQOptions.Codes) throws {
    let (rows, columns) = (40, 192)
    var rng = SeededGenerator(seed: 91)
    let w = (0..<(rows * columns)).map { i in Float.random(in: -0.05...0.05, using: &rng) * (i % 41 == 0 ? 6 : 1) }
    var identity = [Float](repeating: 0, count: columns * columns)
    for c in 0..<columns { identity[c * columns + c] = 1 }
    var options = GPTQOptions(codes: codes, groupSize: 64)
    let plain = try GPTQ.quantize(w, hessian: identity, rows: rows, columns: columns, options: options, threads: .single)
    options.mse = 2.4
    let one = try GPTQ.quantize(w, hessian: identity, rows: rows, columns: columns, options: options, threads: .single)
    let two = try GPTQ.quantize(w, hessian: identity, rows: rows, columns: columns, options: options, threads: ThreadBudget(2))
    #expect(one.quantized.map(\.bitPattern) == two.quantized.map(\.bitPattern))
    #expect(one.integer == two.integer && one.absmax == two.absmax)
    // With an identity Hessian GPTQ is round-to-nearest per group, so the search's own measure must drop.
    func norm(_ q: [Float]) -> Double { zip(w, q).reduce(0) { $0 + Foundation.pow(Double(abs($1.0 - $1.1)), 2.4) } }
    #expect(norm(one.quantized) < 0.97 * norm(plain.quantized), "\(norm(one.quantized)) vs \(norm(plain.quantized))")
    options.mse = 0
    #expect(try GPTQ.quantize(w, hessian: identity, rows: rows, columns: columns, options: options).quantized == plain.quantized)
    options.mse = -1
    #expect(throws: GPTQError.invalidNorm(tensor: "w", norm: -1)) {
        try GPTQ.quantize(w, hessian: identity, rows: rows, columns: columns, options: options, name: "w")
    }
}
