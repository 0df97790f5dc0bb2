@testable import CheckpointKit
import Testing

/// Runs a fast buffer kernel over `input` and returns its output elements.
private func run<In, Out>(_ input: [In], _ outType: Out.Type, threads: Int = 2,
                          _ kernel: (UnsafeRawBufferPointer, UnsafeMutableRawBufferPointer, ThreadBudget) -> Void) -> [Out] {
    var out = [Out](unsafeUninitializedCapacity: input.count) { _, n in n = input.count }
    input.withUnsafeBytes { src in out.withUnsafeMutableBytes { dst in kernel(src, dst, ThreadBudget(threads)) } }
    return out
}

private let all16BitPatterns: [UInt16] = (0...UInt16.max).map { $0 }

/// f32 values where conversions go wrong if they go wrong anywhere.
private let f32EdgeValues: [Float] = {
    var v: [Float] = [0, -0, .infinity, -.infinity, .nan, -.nan, Float(bitPattern: 0x7F80_0001), Float(bitPattern: 0xFFC1_2345),
                      .leastNonzeroMagnitude, -.leastNonzeroMagnitude, .leastNormalMagnitude, .greatestFiniteMagnitude,
                      -.greatestFiniteMagnitude, 65504, 65519.99, 65520, 65536, -65520, 1, -1, 0.1, 1e-8, 5.96e-8, 2.98e-8,
                      2.9802322e-8, 6.1035156e-5, 6.097555e-5, 3.3895314e38, 3.3961775e38]
    // Exact ties and near-ties for bf16 (low 16 bits 0x8000 ± 1) and f16 (low 13 bits 0x1000 ± 1).
    for base: UInt32 in [0x3F80_0000, 0x3F81_0000, 0x4780_0000, 0x3880_0000, 0x0080_0000, 0x3300_0000, 0x3380_0000] {
        for low: UInt32 in [0x7FFF, 0x8000, 0x8001, 0x0FFF, 0x1000, 0x1001, 0x3000, 0x2000, 0xFFFF] {
            v.append(Float(bitPattern: base | low))
            v.append(-Float(bitPattern: base | low))
        }
    }
    var rng = SeededGenerator(seed: 42)
    for _ in 0..<20_000 { v.append(Float(bitPattern: UInt32(truncatingIfNeeded: rng.next()))) }
    return v
}()

private func sameBits(_ a: Float, _ b: Float) -> Bool { a.bitPattern == b.bitPattern }

@Test("BF16 → F32 kernel equals its reference on all 65,536 patterns, at 1 and 2 threads")
func bf16ToF32MatchesReference() {
    for threads in [1, 2] {
        let fast = run(all16BitPatterns, Float.self, threads: threads) { FloatConversion.bf16ToF32($0, $1, threads: $2) }
        for (bits, value) in zip(all16BitPatterns, fast) {
            #expect(sameBits(value, FloatConversion.bf16ToF32Reference(bits)), "bf16 \(bits)")
        }
    }
}

@Test("F16 → F32 kernel equals its reference on all 65,536 patterns and Swift's Float16 on every non-NaN")
func f16ToF32MatchesReference() {
    let fast = run(all16BitPatterns, Float.self) { FloatConversion.f16ToF32($0, $1, threads: $2) }
    for (bits, value) in zip(all16BitPatterns, fast) {
        let reference = FloatConversion.f16ToF32Reference(bits)
        #expect(sameBits(value, reference), "f16 \(bits)")
        let half = Float16(bitPattern: bits)
        if !half.isNaN { #expect(sameBits(reference, Float(half)), "f16 \(bits)") } else { #expect(reference.isNaN) }
    }
}

@Test("F32 → BF16 kernel equals its reference on edge values, ties and random bit patterns")
func f32ToBF16MatchesReference() {
    for threads in [1, 2] {
        let fast = run(f32EdgeValues, UInt16.self, threads: threads) { FloatConversion.f32ToBF16($0, $1, threads: $2) }
        for (value, bits) in zip(f32EdgeValues, fast) {
            #expect(bits == FloatConversion.f32ToBF16Reference(value), "f32 \(value.bitPattern)")
        }
    }
}

@Test("F32 → F16 kernel and one-value conversion equal the reference, and the reference equals Swift's Float16 on every non-NaN")
func f32ToF16MatchesReference() {
    let fast = run(f32EdgeValues, UInt16.self) { FloatConversion.f32ToF16($0, $1, threads: $2) }
    for (value, bits) in zip(f32EdgeValues, fast) {
        let reference = FloatConversion.f32ToF16Reference(value)
        #expect(bits == reference, "f32 \(value.bitPattern)")
        if !value.isNaN { #expect(reference == Float16(value).bitPattern, "f32 \(value.bitPattern)") }
        #expect(FloatConversion.f32ToF16(value) == reference, "one value, f32 \(value.bitPattern)")
    }
}

@Test("Rounding is to nearest, ties to even", arguments: [
    (Float(bitPattern: 0x3F80_8000), UInt16(0x3F80)),  // tie, even below: stays
    (Float(bitPattern: 0x3F81_8000), UInt16(0x3F82)),  // tie, odd below: rounds up
    (Float(bitPattern: 0x3F80_8001), UInt16(0x3F81)),  // just above the tie
])
func bf16TiesGoToEven(value: Float, expected: UInt16) {
    #expect(FloatConversion.f32ToBF16Reference(value) == expected)
}

@Test("NaN stays a quiet NaN with its sign; overflow to F16 gives infinity")
func specialValues() {
    #expect(FloatConversion.f32ToBF16Reference(.nan) == 0x7FC0)
    #expect(FloatConversion.f32ToBF16Reference(-.nan) == 0xFFC0)
    #expect(FloatConversion.f32ToF16Reference(-.nan) == 0xFE00)
    #expect(FloatConversion.f32ToF16Reference(65520) == 0x7C00)
    #expect(FloatConversion.f32ToF16Reference(65519.99) == 0x7BFF)
    #expect(FloatConversion.f32ToBF16Reference(Float(bitPattern: 0x7F7F_FFFF)) == 0x7F80)  // rounds to +Inf
}

@Test("BF16 ⇄ F16 go through f32 with one rounding, on all 65,536 patterns")
func halfToHalfConversions() {
    let toF16 = run(all16BitPatterns, UInt16.self) { FloatConversion.bf16ToF16($0, $1, threads: $2) }
    let toBF16 = run(all16BitPatterns, UInt16.self) { FloatConversion.f16ToBF16($0, $1, threads: $2) }
    for (i, bits) in all16BitPatterns.enumerated() {
        #expect(toF16[i] == FloatConversion.f32ToF16Reference(FloatConversion.bf16ToF32Reference(bits)))
        #expect(toBF16[i] == FloatConversion.f32ToBF16Reference(FloatConversion.f16ToF32Reference(bits)))
    }
}

@Test("F64 converts with a single rounding to every float type")
func f64Conversion() {
    let values: [Double] = [1.0 + 0x1p-8 + 0x1p-40, 1.0 + 0x1p-8, 1.0 + 3 * 0x1p-8, -2.5, 1e-300, 1e300, .nan]
    let bf16 = run(values, UInt16.self) { FloatConversion.convert($0, from: .f64, to: .bf16, into: $1, threads: $2) }
    #expect(bf16[0] == 0x3F81)  // just above a tie: up, although Float() alone would land on the tie
    #expect(bf16[1] == 0x3F80)  // tie: to even
    #expect(bf16[2] == 0x3F82)  // tie: to even (up)
    #expect(bf16[3] == 0xC020)
    #expect(bf16[4] == 0x0000)
    #expect(bf16[5] == 0x7F80)
    #expect(bf16[6] == 0x7FC0)
    let f32 = run(values, Float.self) { FloatConversion.convert($0, from: .f64, to: .f32, into: $1, threads: $2) }
    #expect(f32[3] == -2.5)
}
