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

@Test("q8_K activation rounding keeps each block's largest value and puts every value on its 127-step grid")
func q8_KRounding() {
    var rng = SeededGenerator(seed: 9)
    let x = (0..<(2 * 256)).map { _ in Float.random(in: -2...3, using: &rng) }
    var rounded = x
    rounded.withUnsafeMutableBufferPointer { ActivationRounding.q8_K.apply($0, rowLength: 256) }
    for b in 0..<2 {
        let block = Array(x[(b * 256)..<(b * 256 + 256)])
        let peak = block.max { abs($0) < abs($1) }!
        let d = 1 / (-127 / peak)
        for j in 0..<256 {
            let q = rounded[b * 256 + j] / d
            #expect(abs(q - q.rounded()) < 1e-3 && abs(q) <= 127.001, "block \(b)[\(j)]: \(q) steps")
            #expect(abs(rounded[b * 256 + j] - block[j]) <= abs(d) / 2 * 1.0001, "block \(b)[\(j)]")
        }
        #expect(abs(rounded[b * 256 + block.firstIndex(of: peak)!] - peak) <= abs(peak) * 1e-6)
    }
    var zeros = [Float](repeating: 0, count: 256)
    zeros.withUnsafeMutableBufferPointer { ActivationRounding.q8_K.apply($0, rowLength: 256) }
    #expect(zeros.allSatisfy { $0 == 0 })
}

@Test("Each GGML type names llama.cpp's vec_dot_type for its activations")
func activationTypes() {
    #expect([GGMLType.q4_0, .q4_1, .q5_0, .q5_1, .q8_0].allSatisfy { $0.activations == .q8_0 })
    #expect([GGMLType.q2_K, .q3_K, .q4_K, .q5_K, .q6_K].allSatisfy { $0.activations == .q8_K })
    #expect(GGMLType.f16.activations == .f16 && GGMLType.bf16.activations == .bf16 && GGMLType.f32.activations == .none)
}
