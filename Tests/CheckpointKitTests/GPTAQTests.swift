@testable import CheckpointKit
import Foundation
import TestSupport
import Testing

@Test("GPTAQ: given the float model's inputs, GPTQ's outputs land closer to the float outputs W·x_float than plain GPTQ's, and a zero shift changes nothing")
func gptaqApproachesFloatOutputs() throws {
    let (rows, columns, tokens) = (24, 128, 400)
    var rng = SeededGenerator(seed: 29)
    func normal() -> Float {
        let u = Float.random(in: Float.ulpOfOne...1, using: &rng), v = Float.random(in: 0...1, using: &rng)
        return (-2 * Foundation.log(u)).squareRoot() * Foundation.cos(2 * .pi * v)
    }
    let w = (0..<(rows * columns)).map { _ in normal() * 0.05 }
    // Float inputs with loud channels; the quantized model's inputs drift from them (upstream rounding).
    let xFloat = (0..<(tokens * columns)).map { i in normal() * (i % columns % 7 == 0 ? 4 : 1) }
    let x = xFloat.map { $0 + 0.3 * normal() }
    var h = [Float](repeating: 0, count: columns * columns), shift = h
    for t in 0..<tokens {
        for i in 0..<columns {
            for j in 0..<columns {
                h[i * columns + j] += x[t * columns + i] * x[t * columns + j]
                shift[i * columns + j] += (xFloat[t * columns + i] - x[t * columns + i]) * x[t * columns + j]
            }
        }
    }
    /// Σ over tokens and rows of (q·x − w·x_float)².
    func distance(_ q: [Float]) -> Double {
        var total = 0.0
        for t in 0..<tokens {
            for n in 0..<rows {
                var a = 0.0, b = 0.0
                for c in 0..<columns { a += Double(q[n * columns + c] * x[t * columns + c]); b += Double(w[n * columns + c] * xFloat[t * columns + c]) }
                total += (a - b) * (a - b)
            }
        }
        return total
    }
    for codes in [GPTQOptions.Codes.integer(bits: 4, symmetric: true), .fourBit(.nf4)] {
        var options = GPTQOptions(codes: codes, groupSize: 64)
        options.actOrder = true
        options.groupAwareOrder = true
        options.blockSize = 32  // several lazy blocks
        let plain = try GPTQ.quantize(w, hessian: h, rows: rows, columns: columns, options: options)
        let asymmetric = try GPTQ.quantize(w, hessian: h, rows: rows, columns: columns, options: options, shift: shift)
        #expect(distance(asymmetric.quantized) < distance(plain.quantized), "\(codes): GPTAQ \(distance(asymmetric.quantized)) vs GPTQ \(distance(plain.quantized))")
        let none = try GPTQ.quantize(w, hessian: h, rows: rows, columns: columns, options: options, shift: [Float](repeating: 0, count: columns * columns))
        #expect(none.quantized == plain.quantized)
    }
}

@Test("GPTAQ's collector gathers Σ (x_float − x)ᵀ·x from the float model's recorded inputs, and nothing for rows that do not match")
func gptaqCollectsShift() throws {
    let (rows, columns) = (3, 2)
    let x: [Float] = [1, 2, 3, 4, 5, 6], xFloat: [Float] = [2, 2, 3, 5, 4, 6]
    let recorder = InputRecorder()
    xFloat.withUnsafeBufferPointer {
        recorder.observe("p", $0.baseAddress!, rows: rows, columns: columns)
        recorder.observe("q", $0.baseAddress!, rows: rows, columns: columns)
    }
    let collector = HessianCollector(threads: .single)
    collector.floatInputs = recorder
    x.withUnsafeBufferPointer { collector.observe("p", $0.baseAddress!, rows: rows, columns: columns) }
    // x_float − x rows: (1, 0), (0, 1), (−1, 0); Dᵢⱼ = Σ_t dᵢ·xⱼ.
    #expect(collector.shift("p.weight") == [1 - 5, 2 - 6, 3, 4])
    // An expert the float model routed a different number of tokens to gets no term from that chunk.
    Array(x.prefix(4)).withUnsafeBufferPointer { collector.observe("q", $0.baseAddress!, rows: 2, columns: columns) }
    #expect(collector.shift("q.weight") == nil)
    #expect(collector.hessian("q.weight") != nil)
}

@Test("GPTAQ on tiny-llama: the first layer's q, k and v (whose float and quantized inputs are the same) come out as plain GPTQ's; o does not")
func gptaqLeavesIdenticalInputsAlone() throws {
    let scratch = ScratchDirectory()
    let outputs = try tinyLlamaCalibratedTwice("gptaq", in: scratch) { calibration, second in
        calibration.trueSequential = true
        calibration.asymmetric = second
        // GPTAQ runs no refinement rounds (they descend through H's product, not toward the float model's outputs).
        calibration.refineRounds = 0
    }
    for (index, output) in outputs.enumerated() { #expect(output.notes.contains { $0.hasPrefix("GPTAQ") } == (index == 1)) }
    try expectFirstLayerQKVAlikeAndODifferent(outputs[0].checkpoint, outputs[1].checkpoint)
}
