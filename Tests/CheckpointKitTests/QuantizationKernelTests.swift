@testable import CheckpointKit
import Testing

/// Values with every kind of trouble: ties, zeros, a zero block, huge and tiny magnitudes.
private func awkwardValues(_ count: Int, seed: UInt64) -> [Float] {
    var rng = SeededGenerator(seed: seed)
    var v = (0..<count).map { _ in Float.random(in: -1...1, using: &rng) * Float(sign: .plus, exponent: Int.random(in: -3...3, using: &rng), significand: 1) }
    if count > 200 { for i in 64..<128 { v[i] = 0 } }  // an all-zero block
    if count > 300 { for i in 128..<192 { v[i] *= 1e30 } }
    if count > 400 { for i in 192..<256 { v[i] *= 1e-38 } }  // subnormals
    // NF4 midpoints themselves, scaled by a block absmax of 1.
    let mids = FourBitType.nf4.midpoints
    if count > 340 { for (k, m) in mids.enumerated() { v[320 + k] = m }; v[319] = 1 }
    return v
}

private func quantize4(_ x: [Float], blockSize: Int, type: FourBitType, fast: Bool, threads: Int = 2, wide: Bool = avx512Available) -> ([UInt8], [Float]) {
    var packed = [UInt8](repeating: 0xAA, count: FourBitQuantizer.packedByteCount(x.count))
    var absmax = [Float](repeating: -1, count: FourBitQuantizer.blockCount(x.count, blockSize: blockSize))
    x.withUnsafeBufferPointer { xs in
        packed.withUnsafeMutableBufferPointer { p in
            absmax.withUnsafeMutableBufferPointer { a in
                if fast {
                    FourBitQuantizer.quantize(xs, blockSize: blockSize, type: type, packed: p, absmax: a, threads: ThreadBudget(threads), wide: wide)
                } else {
                    FourBitQuantizer.quantizeReference(xs, blockSize: blockSize, type: type, packed: p, absmax: a)
                }
            }
        }
    }
    return (packed, absmax)
}

@Test("NF4 and FP4 kernels (Swift SIMD and the AVX-512 block twin) equal their reference on awkward sizes and block sizes",
      arguments: [1, 2, 63, 64, 65, 127, 500, 4097, 70_001], [32, 64, 256, 4096])
func fourBitMatchesReference(count: Int, blockSize: Int) {
    let x = awkwardValues(count, seed: UInt64(count * 31 + blockSize))
    for type in FourBitType.allCases {
        let reference = quantize4(x, blockSize: blockSize, type: type, fast: false)
        for wide in avx512Available ? [false, true] : [false] {
            let fast = quantize4(x, blockSize: blockSize, type: type, fast: true, wide: wide)
            #expect(fast.0 == reference.0, "\(type) codes, n=\(count) block=\(blockSize), AVX-512 \(wide)")
            #expect(fast.1.map(\.bitPattern) == reference.1.map(\.bitPattern), "\(type) absmax, AVX-512 \(wide)")
        }
    }
}

@Test("The AVX-512 4-bit block twin hands blocks with NaN or infinity back to the Swift kernel: both kernels give the same bytes and absmax")
func fourBitTwinLeavesNonFiniteBlocks() {
    var x = awkwardValues(4096, seed: 9)
    x[70] = .nan; x[200] = .infinity; x[520] = -.infinity; x[4095] = .nan  // blocks 1, 3, 8 and the last
    for type in FourBitType.allCases {
        let swift = quantize4(x, blockSize: 64, type: type, fast: true, wide: false)
        let wide = quantize4(x, blockSize: 64, type: type, fast: true, wide: avx512Available)
        #expect(wide.0 == swift.0, "\(type) codes")
        #expect(wide.1.map(\.bitPattern) == swift.1.map(\.bitPattern), "\(type) absmax")
    }
}

@Test("4-bit output is identical with 1 and 2 threads")
func fourBitThreadInvariance() {
    let x = awkwardValues(300_001, seed: 5)
    #expect(quantize4(x, blockSize: 64, type: .nf4, fast: true, threads: 1) == quantize4(x, blockSize: 64, type: .nf4, fast: true, threads: 2))
}

@Test("An all-zero block stores absmax 0 and NF4 code 7 (0.0); a lone zero pads as 0.0")
func zeroBlock() {
    let (packed, absmax) = quantize4([Float](repeating: 0, count: 64) + [0.5], blockSize: 64, type: .nf4, fast: true)
    #expect(absmax[0] == 0)
    #expect(packed[0..<32].allSatisfy { $0 == 0x77 })
    #expect(absmax[1] == 0.5)
    #expect(packed[32] == 0xF7)  // 0.5/0.5 = 1.0 → code 15, then the padding's 0.0 → code 7
}

@Test("A value exactly on a midpoint takes the lower code, as torch.bucketize does")
func midpointTies() {
    let mids = FourBitType.nf4.midpoints
    let (packed, _) = quantize4([1, mids[3]], blockSize: 64, type: .nf4, fast: true)
    #expect(packed[0] == 0xF3)
}

@Test("4-bit dequantization equals its reference and reproduces code × absmax")
func fourBitDequantize() {
    let x = awkwardValues(4097, seed: 9)
    for type in FourBitType.allCases {
        let (packed, absmax) = quantize4(x, blockSize: 64, type: type, fast: true)
        var fast = [Float](repeating: 0, count: x.count), reference = fast
        packed.withUnsafeBufferPointer { p in
            absmax.withUnsafeBufferPointer { a in
                fast.withUnsafeMutableBufferPointer { FourBitQuantizer.dequantize(packed: p, absmax: a, blockSize: 64, type: type, into: $0) }
                reference.withUnsafeMutableBufferPointer {
                    FourBitQuantizer.dequantizeReference(packed: p, absmax: a, blockSize: 64, type: type, into: $0)
                }
            }
        }
        #expect(fast.map(\.bitPattern) == reference.map(\.bitPattern))
        #expect(fast[64..<128].allSatisfy { $0 == 0 })
    }
}

private func quantize8(_ x: [Float], rows: Int, columns: Int, group: Int, scaleType: DType, fast: Bool) -> ([Int8], [Float]) {
    var q = [Int8](repeating: 99, count: x.count)
    var scales = [Float](repeating: -1, count: rows * BlockInt8Quantizer.groupsPerRow(columns: columns, groupSize: group))
    x.withUnsafeBufferPointer { xs in
        q.withUnsafeMutableBufferPointer { qs in
            scales.withUnsafeMutableBufferPointer { s in
                if fast {
                    BlockInt8Quantizer.quantize(xs, rows: rows, columns: columns, groupSize: group, scaleType: scaleType, q: qs, scales: s)
                } else {
                    BlockInt8Quantizer.quantizeReference(xs, rows: rows, columns: columns, groupSize: group, scaleType: scaleType, q: qs, scales: s)
                }
            }
        }
    }
    return (q, scales)
}

@Test("Block int8 kernel equals its reference for every scale dtype and awkward group sizes",
      arguments: [(7, 130, 64), (33, 70, 32), (5, 64, 64), (3, 100, 7), (1, 1, 64), (64, 576, 128)])
func int8MatchesReference(rows: Int, columns: Int, group: Int) {
    let x = awkwardValues(rows * columns, seed: UInt64(rows * 1000 + columns))
    for scaleType in [DType.f32, .f16, .bf16] {
        let fast = quantize8(x, rows: rows, columns: columns, group: group, scaleType: scaleType, fast: true)
        let reference = quantize8(x, rows: rows, columns: columns, group: group, scaleType: scaleType, fast: false)
        #expect(fast.0 == reference.0, "\(scaleType) q")
        #expect(fast.1.map(\.bitPattern) == reference.1.map(\.bitPattern), "\(scaleType) scales")
    }
}

@Test("int8 rounds half away from zero against the stored scale and clamps to ±127")
func int8Rounding() {
    // absmax 127 → scale 1: 2.5 → 3, -2.5 → -3, 0.5 → 1, -0.49 → 0.
    let x: [Float] = [127, 2.5, -2.5, 0.5, -0.49, -127]
    let (q, scales) = quantize8(x, rows: 1, columns: 6, group: 64, scaleType: .f32, fast: true)
    #expect(scales == [1])
    #expect(q == [127, 3, -3, 1, 0, -127])
    // A bf16 scale rounds below absmax/127: q clamps at 127 rather than wrapping.
    let y: [Float] = [1.0, 0.1]
    let (qb, sb) = quantize8(y, rows: 1, columns: 2, group: 2, scaleType: .bf16, fast: true)
    #expect(sb[0] == FloatConversion.bf16ToF32Reference(FloatConversion.f32ToBF16Reference(1.0 / 127)))
    #expect(qb[0] == 127)
}

@Test("Double quantization reproduces absmax within the 8-bit code's resolution")
func doubleQuant() {
    var rng = SeededGenerator(seed: 11)
    let absmax = (0..<1000).map { _ in Float.random(in: 0.01...0.3, using: &rng) }
    let dq = DoubleQuantizedAbsmax(compressing: absmax)
    #expect(dq.codes.count == 1000 && dq.nestedAbsmax.count == 4)
    let back = dq.expanded
    let worst = zip(absmax, back).map { abs($0 - $1) }.max()!
    #expect(worst < 0.15 * 0.05)  // dynamic code steps near 1 are ~1/40 of the block absmax
}

@Test("With NaN allowed, int8 and NF4 kernels still equal their references instead of trapping")
func nonFiniteKernels() {
    var x = awkwardValues(256, seed: 21)
    x[5] = .nan
    x[70] = .infinity
    let fast = quantize8(x, rows: 2, columns: 128, group: 64, scaleType: .f32, fast: true)
    #expect(fast.0.count == 256)  // no trap; NaN's group scale is NaN and its codes are defined
    let four = quantize4(x, blockSize: 64, type: .nf4, fast: true)
    #expect(four.0.count == 128)
}

@Test("int8 dequantization equals its reference: exactly q × scale")
func int8Dequantize() {
    let x = awkwardValues(33 * 70, seed: 8)
    let (q, scales) = quantize8(x, rows: 33, columns: 70, group: 32, scaleType: .f32, fast: true)
    var fast = [Float](repeating: 0, count: x.count), reference = fast
    q.withUnsafeBufferPointer { qs in
        scales.withUnsafeBufferPointer { s in
            fast.withUnsafeMutableBufferPointer { BlockInt8Quantizer.dequantize(qs, scales: s, rows: 33, columns: 70, groupSize: 32, into: $0) }
            reference.withUnsafeMutableBufferPointer {
                BlockInt8Quantizer.dequantizeReference(qs, scales: s, rows: 33, columns: 70, groupSize: 32, into: $0)
            }
        }
    }
    #expect(fast.map(\.bitPattern) == reference.map(\.bitPattern))
    #expect(fast[5] == Float(q[5]) * scales[0])
}

@Test("The AVX-512 int8 and 4-bit encoders equal the Swift SIMD ones byte for byte: ties, midpoints, clamped values, NaN, ±0, divided and multiplied scales",
      .enabled(if: avx512Available, "this CPU has no AVX-512, so only the Swift encoders run"), arguments: [16, 64, 77, 4096])
func wideEncodersMatchSwift(count: Int) throws {
    var values = awkwardValues(count, seed: UInt64(count))
    values[0] = .nan
    if count > 20 { (values[1], values[2], values[3], values[4]) = (-0.0, 0.0, 1e30, -1e30) }
    // Values exactly on the NF4 and FP4 midpoints of the block scale the 4-bit encoders are given below.
    if count > 64 {
        for (k, m) in (FourBitType.nf4.midpoints + FourBitType.fp4.midpoints).enumerated() where 34 + k < count { values[34 + k] = m }
    }
    for scale: Float in [0.01, 1.0 / 127, 0.5, 3e-7] {  // 0.01 · 100: the 4-bit scale 1, where the midpoints sit exactly
        // Exact ties of x / scale: k + 0.5 steps of the scale.
        var tied = values
        for k in stride(from: 70, to: count, by: 7) { tied[k] = (Float(k % 200) - 100.5) * scale }
        tied.withUnsafeBufferPointer { x in
            var swift = [Int8](repeating: 0, count: count), wide = swift
            swift.withUnsafeMutableBufferPointer { BlockInt8Quantizer.encodeGroup(x.baseAddress!, count: count, scale: scale, into: $0.baseAddress!, wide: false) }
            wide.withUnsafeMutableBufferPointer { BlockInt8Quantizer.encodeGroup(x.baseAddress!, count: count, scale: scale, into: $0.baseAddress!, wide: true) }
            #expect(wide == swift, "int8, scale \(scale)")
            for type in [FourBitType.nf4, .fp4] {
                let tables = FourBitQuantizer.BucketTables(type)
                for divide in [false, true] {
                    var swiftBytes = [UInt8](repeating: 0, count: (count + 1) / 2), wideBytes = swiftBytes
                    swiftBytes.withUnsafeMutableBufferPointer {
                        FourBitQuantizer.encodeBlock(x.baseAddress!, count: count, scale: scale * 100, divide: divide, tables: tables, into: $0.baseAddress!, wide: false)
                    }
                    wideBytes.withUnsafeMutableBufferPointer {
                        FourBitQuantizer.encodeBlock(x.baseAddress!, count: count, scale: scale * 100, divide: divide, tables: tables, into: $0.baseAddress!, wide: true)
                    }
                    #expect(wideBytes == swiftBytes, "\(type), scale \(scale * 100), divide \(divide)")
                }
            }
        }
    }
}

@Test("The largest magnitude of a run is the same from the AVX-512 twin and the Swift scan, with zeros, subnormals, infinities and NaN")
func absoluteMaximumTwinMatchesScan() {
    var rng = SeededGenerator(seed: 77)
    for count in [0, 1, 5, 15, 16, 17, 31, 32, 33, 64, 100, 129] {
        for kind in 0..<5 {
            var x = (0..<count).map { _ in Float.random(in: -2...2, using: &rng) }
            switch kind {
            case 1: x = x.map { $0 * 1e-40 }  // subnormals
            case 2: x = x.map { _ in -0.0 }
            case 3: if count > 0 { x[count / 2] = -.infinity }
            case 4: if count > 0 { x[count - 1] = .nan }
            default: break
            }
            let swift = x.withUnsafeBufferPointer { FourBitQuantizer.absoluteMaximum($0.baseAddress ?? UnsafePointer(bitPattern: 4)!, count, wide: false) }
            for wide in avx512Available ? [true] : [] {
                let twin = x.withUnsafeBufferPointer { FourBitQuantizer.absoluteMaximum($0.baseAddress ?? UnsafePointer(bitPattern: 4)!, count, wide: wide) }
                #expect(twin.bitPattern == swift.bitPattern, "count \(count), kind \(kind): \(twin) vs \(swift)")
            }
        }
    }
}

@Test("int8 range decoding (Swift and AVX-512) equals q · scale at group edges, odd starts and partial groups")
func int8RangeDecodeMatchesProducts() {
    var rng = SeededGenerator(seed: 78)
    let (rows, columns, groupSize) = (3, 100, 32)
    let groups = BlockInt8Quantizer.groupsPerRow(columns: columns, groupSize: groupSize)
    let q = (0..<(rows * columns)).map { _ in Int8.random(in: -127...127, using: &rng) }
    let scales = (0..<(rows * groups)).map { _ in Float.random(in: 1e-3...2, using: &rng) }
    var expected = [Float](repeating: 0, count: rows * columns)
    for i in 0..<(rows * columns) { expected[i] = Float(q[i]) * scales[(i / columns) * groups + (i % columns) / groupSize] }
    for wide in avx512Available ? [false, true] : [false] {
        for range in [0..<(rows * columns), 1..<299, 31..<33, 96..<100, 100..<200, 5..<6, 17..<90] {
            var out = [Float](repeating: .nan, count: range.count)
            q.withUnsafeBufferPointer { qs in
                scales.withUnsafeBufferPointer { s in
                    out.withUnsafeMutableBufferPointer {
                        BlockInt8Quantizer.dequantize(qs, scales: s, columns: columns, groupSize: groupSize, range: range, into: $0.baseAddress!, wide: wide)
                    }
                }
            }
            #expect(out == Array(expected[range]), "\(range), AVX-512 \(wide)")
        }
    }
}
