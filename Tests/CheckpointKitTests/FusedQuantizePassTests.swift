import Foundation
import Testing
@testable import CheckpointKit

/// Owns the bytes a test's `TensorView` points into.
private final class ByteOwner {}

/// `count` seeded values spread like weights (uniform in ±0.1, a few larger).
private func weights(_ count: Int, seed: UInt64) -> [Float] {
    var rng = SeededGenerator(seed: seed)
    return (0..<count).map { i in Float.random(in: -0.1...0.1, using: &rng) * (i % 97 == 0 ? 20 : 1) }
}

/// `values` stored as `dtype` (rounded once), widened back by `arrayFindingNonFinite` and by the plain reader.
private func widenBothWays(_ values: [Float], as dtype: DType, threads: ThreadBudget) -> (fused: ([Float], Int?), plain: [Float]) {
    let bytes = FloatValues.bytes(values, as: dtype)
    return bytes.withUnsafeBytes { raw in
        let view = TensorView(info: TensorInfo(name: "w", dtype: dtype, shape: [values.count], dataOffsets: 0..<raw.count),
                              owner: ByteOwner(), bytes: raw)
        let fused = FloatValues.arrayFindingNonFinite(view, threads: threads)
        return ((fused.values, fused.firstNonFinite), FloatValues.array(view))
    }
}

@Suite("Quantize's fused passes")
struct FusedQuantizePassTests {
    @Test("Widening finds the first NaN or Inf where a scalar search does, for each float dtype, size and thread count",
          arguments: [DType.f32, .bf16, .f16], [0, 1, 15, 16, 17, 65_535, 65_536, 65_537, 200_003])
    func wideningFindsTheFirstNonFinite(dtype: DType, count: Int) {
        let values = weights(count, seed: UInt64(count))
        // Clean, then one bad value, then two (the later one in an earlier-numbered lane of another piece).
        var placements: [[(Int, Float)]] = [[]]
        if count > 0 {
            placements.append([(count - 1, .infinity)])
            placements.append([(count / 2, .nan), (count - 1, -.infinity)])
            placements.append([(0, -.infinity)])
        }
        for placement in placements {
            var bad = values
            for (index, value) in placement { bad[index] = value }
            for threads in [ThreadBudget.single, ThreadBudget(2), ThreadBudget(3)] {
                let (fused, plain) = widenBothWays(bad, as: dtype, threads: threads)
                #expect(fused.0.map(\.bitPattern) == plain.map(\.bitPattern), "values, \(dtype) \(count) \(threads.count) threads")
                let expected = plain.firstIndex { !$0.isFinite }
                #expect(fused.1 == expected, "first non-finite, \(dtype) \(count) \(placement.map(\.0)) \(threads.count) threads")
            }
        }
    }

    @Test("The SIMD search for a non-finite value agrees with the scalar one at every position of a short run",
          arguments: [Float.nan, .infinity, -.infinity])
    func simdSearchMatchesReference(bad: Float) {
        for count in 0...40 {
            for position in -1..<count {
                var values = weights(count, seed: 7)
                if position >= 0 { values[position] = bad }
                values.withUnsafeBufferPointer { p in
                    guard let base = p.baseAddress else { return }
                    #expect(FloatValues.firstNonFinite(base, count: count) == FloatValues.firstNonFiniteReference(base, count: count))
                }
            }
        }
    }

    @Test("A quantized weight's error measured piece by piece while decoding equals decoding it whole, bit for bit",
          arguments: ["nf4", "fp4", "nf4 double", "int8 64", "int8 100", "int8 f16 32"], [[3, 4096], [7, 1000], [129, 576], [1, 65]])
    func fusedErrorEqualsWholeDecode(scheme label: String, shape: [Int]) throws {
        let parts = label.split(separator: " ")
        let name = String(parts[0])
        let blockSize = parts.count > 1 ? Int(parts[parts.count - 1]) ?? 64 : 64
        let scheme = try #require(QuantizedLayouts.scheme(named: name, blockSize: blockSize, doubleQuant: label.hasSuffix("double"),
                                                          scaleType: label.contains("f16") ? .f16 : .f32))
        let count = shape.reduce(1, *)
        let values = weights(count, seed: UInt64(count + blockSize))
        try values.withUnsafeBufferPointer { x in
            let (encoded, _) = scheme.encode(name: "m.weight", shape: shape, originalType: .bf16, values: x, optimizeScales: false,
                                             threads: .single)
            let decodeRange = try #require(scheme.rangeDecoder(for: encoded), "\(label) decodes ranges")
            var whole = [Float](repeating: 0, count: count)
            whole.withUnsafeMutableBufferPointer { scheme.decode(encoded, into: $0, threads: .single) }
            // Every range decodes as the whole does, including ones starting mid-byte and mid-group.
            for range in [0..<count, 1..<count, (count / 3)..<(count / 3 + min(77, count - count / 3))] where !range.isEmpty {
                var piece = [Float](repeating: .nan, count: range.count)
                piece.withUnsafeMutableBufferPointer { decodeRange(range, $0.baseAddress!) }
                #expect(piece.map(\.bitPattern) == whole[range].map(\.bitPattern), "\(label) \(shape) range \(range)")
            }
            let expected = whole.withUnsafeBufferPointer { ErrorMetrics.compare(reference: x, candidate: $0, threads: .single) }
            for threads in [ThreadBudget.single, ThreadBudget(2)] {
                #expect(encoded.error(against: x, threads: threads) == expected, "\(label) \(shape) \(threads.count) threads")
            }
        }
    }

    @Test("The error sums of a chunk, from the Swift lanes and from the AVX-512 ones, equal their one-at-a-time reference bit for bit, NaN differences skipped",
          arguments: [0, 1, 7, 8, 9, 63, 64, 1000, 65_536])
    func chunkSumsMatchReference(count: Int) {
        let reference = weights(count, seed: 11)
        var candidate = weights(count, seed: 12)
        for placement in [[], [count / 2], [0, count - 1]] where count > 0 || placement.isEmpty {
            for index in placement { candidate[index] = .nan }
            reference.withUnsafeBufferPointer { r in
                candidate.withUnsafeBufferPointer { c in
                    let (a, b) = (r.baseAddress ?? UnsafePointer(bitPattern: 4)!, c.baseAddress ?? UnsafePointer(bitPattern: 4)!)
                    let plain = ErrorMetrics.chunkReference(a, b, count: count)
                    for wide in avx512Available ? [false, true] : [false] {
                        let fast = ErrorMetrics.chunk(a, b, count: count, wide: wide)
                        #expect(fast.count == plain.count)
                        for (x, y) in [(fast.sumSquaredError, plain.sumSquaredError), (fast.sumSquaredReference, plain.sumSquaredReference),
                                       (fast.sumSquaredCandidate, plain.sumSquaredCandidate), (fast.dot, plain.dot),
                                       (fast.maxAbsError, plain.maxAbsError)] {
                            #expect(x.bitPattern == y.bitPattern || (x.isNaN && y.isNaN), "\(count) values, NaN at \(placement), AVX-512 \(wide): \(x) vs \(y)")
                        }
                    }
                }
            }
        }
    }
}
