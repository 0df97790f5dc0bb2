@testable import CheckpointKit
import Foundation
import TestSupport
import Testing

/// Coordinate descent after GPTQ (`GPTQCoordinateDescent`): it ends where no single code change
/// lowers the output error (checked by trying every code), never raises that error, keeps every
/// scale, and gives the same codes on any thread count.

/// One row's (q − w)·(H + λI)·(q − w)ᵀ by the definition, in f64.
private func rowError(_ q: [Float], _ w: [Float], _ h: [Float], damping: Float, row n: Int, columns: Int) -> Double {
    var total = 0.0
    for i in 0..<columns {
        let ei = Double(q[n * columns + i] - w[n * columns + i])
        for j in 0..<columns {
            total += ei * (Double(h[i * columns + j]) + (i == j ? Double(damping) : 0)) * Double(q[n * columns + j] - w[n * columns + j])
        }
    }
    return total
}

/// Every unit a value may take under `codes`: the integers' code − zero, or the codebook's entries.
private func candidateUnits(_ codes: GPTQOptions.Codes, zero: Float) -> [Float] {
    switch codes {
    case let .integer(bits, _): return (0..<(1 << bits)).map { Float($0) - zero }
    case let .fourBit(type): return type.code
    }
}

private let descentCodes: [GPTQOptions.Codes] = [.integer(bits: 4, symmetric: true), .integer(bits: 4, symmetric: false), .fourBit(.nf4)]

@Test("After coordinate descent no single code change lowers a row's output error (every code tried), and the error is no larger than GPTQ's",
      arguments: descentCodes)
func coordinateDescentEndsAtALocalMinimum(codes: GPTQOptions.Codes) throws {
    let rows = 6, columns = 48, group = 16
    var rng = SeededGenerator(seed: 44)
    let h = correlatedGram(columns: columns, tokens: 200, seed: 5)
    let weight = (0..<(rows * columns)).map { _ in Float.random(in: -1...1, using: &rng) * Float.random(in: 0...0.05, using: &rng) }
    var options = GPTQOptions(codes: codes, groupSize: group)
    options.actOrder = true
    options.groupAwareOrder = true
    let plain = try GPTQ.quantize(weight, hessian: h, rows: rows, columns: columns, options: options, threads: .single)
    options.refineRounds = 50
    let refined = try GPTQ.quantize(weight, hessian: h, rows: rows, columns: columns, options: options, threads: .single)
    let damping = GPTQ.damping(h, size: columns, damp: refined.damp)
    let scales = refined.integer?.scales ?? refined.absmax!
    #expect(scales == (plain.integer?.scales ?? plain.absmax!))
    #expect(refined.quantized != plain.quantized, "the descent moved no code")
    let groups = columns / group
    for n in 0..<rows {
        let before = rowError(plain.quantized, weight, h, damping: damping, row: n, columns: columns)
        let after = rowError(refined.quantized, weight, h, damping: damping, row: n, columns: columns)
        #expect(after <= before * (1 + 1e-6), "row \(n): \(after) against GPTQ's \(before)")
        for k in 0..<columns {
            let g = n * groups + k / group
            let zero = Float(refined.integer?.zeros[g] ?? 0)
            var moved = refined.quantized
            for unit in candidateUnits(codes, zero: zero) {
                moved[n * columns + k] = scales[g] * unit
                let error = rowError(moved, weight, h, damping: damping, row: n, columns: columns)
                #expect(error >= after - 1e-6 * abs(after), "row \(n), column \(k): unit \(unit) gives \(error) < \(after)")
            }
        }
    }
    if let codesAfter = refined.integer {
        // The stored codes say the same values the result holds.
        #expect(codesAfter.dequantized.enumerated().allSatisfy { k, v in abs(v - refined.quantized[k]) <= 1e-6 * Swift.max(1, abs(v)) })
    }
}

@Test("Refinement rounds (coordinate descent and scale refits) give the same codes and scales on 1, 2 and 3 threads, with a row count no piece size divides")
func coordinateDescentIsTheSameOnAnyThreadCount() throws {
    let rows = 37, columns = 64
    var rng = SeededGenerator(seed: 45)
    let h = correlatedGram(columns: columns, tokens: 150, seed: 6)
    let weight = (0..<(rows * columns)).map { _ in Float.random(in: -0.05...0.05, using: &rng) }
    var options = GPTQOptions(codes: .integer(bits: 4, symmetric: true), groupSize: 32)
    options.actOrder = true
    options.mse = 2.4
    options.refineRounds = 3
    options.refitScales = true
    let results = try [1, 2, 3].map { try GPTQ.quantize(weight, hessian: h, rows: rows, columns: columns, options: options, threads: ThreadBudget($0)) }
    for result in results.dropFirst() {
        #expect(result.quantized.map(\.bitPattern) == results[0].quantized.map(\.bitPattern))
        #expect(result.integer == results[0].integer)
    }
}
