@testable import CheckpointKit
import Testing

/// llama.cpp's activation rounding (`ActivationRounding`), held to the quantizers it mirrors.
@Test("q8_0 activation rounding equals Q8_0 quantization then decoding, value for value, on awkward values", arguments: [32, 64, 576, 1536])
func q8_0RoundingMatchesTheQuantizer(rowLength: Int) {
    var rng = SeededGenerator(seed: UInt64(rowLength))
    var x = (0..<(3 * rowLength)).map { _ in Float.random(in: -4...4, using: &rng) }
    for i in stride(from: 0, to: 32, by: 1) { x[i] = 0 }  // an all-zero block
    x[40] = 1e-30
    let blocks = x.withUnsafeBufferPointer { Q8_0Codec.quantizeReference($0) }
    let expected = blocks.withUnsafeBytes { GGMLType.q8_0.decode($0, count: x.count) }
    var rounded = x
    rounded.withUnsafeMutableBufferPointer { ActivationRounding.q8_0.apply($0, rowLength: rowLength) }
    // Equal values (a negative value rounded to zero gives −0 here, +0 from the integer code: the same in any product).
    let differing = rounded.indices.filter { rounded[$0] != expected[$0] }
    #expect(differing.isEmpty, "\(differing.prefix(3).map { (x[$0], rounded[$0], expected[$0]) })")
}

@Test("Legacy quants round activations to q8_0, half types to their half, K-quants and F32 not at all")
func activationTypes() {
    #expect([GGMLType.q4_0, .q4_1, .q5_0, .q5_1, .q8_0].allSatisfy { $0.activations == .q8_0 })
    // K-quants stay unrounded: measured against llama-perplexity (ActivationRounding's doc comment).
    #expect([GGMLType.q2_K, .q3_K, .q4_K, .q5_K, .q6_K].allSatisfy { $0.activations == .none })
    #expect(GGMLType.f16.activations == .f16 && GGMLType.bf16.activations == .bf16 && GGMLType.f32.activations == .none)
}
