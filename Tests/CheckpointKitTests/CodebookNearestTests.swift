@testable import CheckpointKit
import Foundation
import TestSupport
import Testing

/// The binary search for a codebook's nearest entry (`CodebookNearest`) against the scan of all
/// sixteen entries it replaces (`GPTQ.quantizedUnitReference`).

/// Values where the search could go wrong: every entry, every midpoint and their float neighbours,
/// the ends and beyond, ±0, NaN, and random values.
private func awkwardValues(_ table: [Float]) -> [Float] {
    var values: [Float] = [0, -0.0, 1, -1, 1.5, -1.5, .nan, .infinity, -.infinity, .leastNonzeroMagnitude, -.leastNonzeroMagnitude]
    let sorted = table.sorted()
    for (a, b) in zip(sorted, sorted.dropFirst()) {
        for m in [a, (a + b) / 2, b] { values += [m, m.nextUp, m.nextDown, m.nextUp.nextUp, m.nextDown.nextDown] }
    }
    var rng = SeededGenerator(seed: 71)
    values += (0..<20_000).map { _ in Float.random(in: -1.1...1.1, using: &rng) }
    return values
}

@Test("The codebook search gives the scan's entry for every awkward value, NF4 and FP4 (ties to the lower index, FP4's two zeros)",
      arguments: FourBitType.allCases)
func codebookSearchEqualsTheScan(type: FourBitType) {
    let options = GPTQOptions(codes: .fourBit(type), groupSize: 64)
    for scale: Float in [1, 0.37, 3e-3] {
        for value in awkwardValues(type.code) {
            let v = value * scale
            let fast = GPTQ.quantizedUnit(v, (scale, 0), options: options), reference = GPTQ.quantizedUnitReference(v, (scale, 0), options: options)
            #expect(fast.bitPattern == reference.bitPattern, "\(type) value \(v) scale \(scale): \(fast) against the scan's \(reference)")
        }
    }
    #expect(GPTQ.quantizedUnit(0.5, (0, 0), options: options) == 0, "a zero absmax gives 0")
}

@Test("The codebook search keeps each value once, with the lowest code holding it")
func codebookSearchKeepsTheLowestCode() {
    let fp4 = CodebookNearest(.fp4)
    let values = (0..<fp4.count).map { fp4.values[$0] }
    #expect(fp4.count == 15)
    #expect(values == values.sorted())
    #expect(fp4.indices[values.firstIndex(of: 0)!] == 0)
    let nf4 = CodebookNearest(.nf4)
    #expect(nf4.count == 16)
    #expect((0..<16).map { nf4.values[$0] } == FourBitType.nf4.code && (0..<16).map { Int(nf4.indices[$0]) } == Array(0..<16))
}
