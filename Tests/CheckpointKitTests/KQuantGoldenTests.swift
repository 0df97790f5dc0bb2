@testable import CheckpointKit
import Foundation
import TestSupport
import Testing

/// Goldens from llama.cpp's own `ggml_quantize_chunk` (the pinned build, through
/// tools/kquant_golden_harness.c) and the vendored gguf-py: fixtures/kquants/, made by
/// tools/make_kquant_goldens.py. 32 rows of 512 chosen to reach every branch of the searches.
private let goldens = try! SafetensorsFile(path: Paths.fixture("kquants/goldens.safetensors"))
private let input = FloatValues.array(goldens.view(named: "input")!)
private let importance = FloatValues.array(goldens.view(named: "importance")!)
private let rowLength = 512

private let written: [GGMLType] = [.q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .iq4_NL, .iq4_XS]

private func golden(_ name: String) -> [UInt8] {
    goldens.view(named: name)!.withBytes { Array($0) }
}

/// The first row and block where two encodings differ, for a readable failure.
private func firstDifference(_ ours: [UInt8], _ theirs: [UInt8], type: GGMLType) -> String {
    guard let i = zip(ours, theirs).enumerated().first(where: { $0.element.0 != $0.element.1 })?.offset else {
        return ours.count == theirs.count ? "equal" : "sizes \(ours.count) and \(theirs.count)"
    }
    let rowBytes = type.byteCount(elements: rowLength)
    return "row \(i / rowBytes), block \((i % rowBytes) / type.typeSize), byte \((i % rowBytes) % type.typeSize): \(ours[i]) vs \(theirs[i])"
}

@Test("Every type quantizes as llama-quantize does without an imatrix, byte for byte", arguments: written)
func quantizesLikeLlamaCpp(type: GGMLType) throws {
    let ours = try #require(input.withUnsafeBufferPointer { type.encode($0, rowLength: rowLength, importance: nil, threads: ThreadBudget(2)) })
    let theirs = golden(type.name)
    #expect(ours == theirs, "\(type): \(firstDifference(ours, theirs, type: type))")
}

@Test("Every type quantizes as llama-quantize does with an imatrix, byte for byte", arguments: written)
func quantizesLikeLlamaCppWithImportance(type: GGMLType) throws {
    let ours = try #require(input.withUnsafeBufferPointer { type.encode($0, rowLength: rowLength, importance: importance, threads: ThreadBudget(2)) })
    let theirs = golden(type.name + ".imatrix")
    #expect(ours == theirs, "\(type): \(firstDifference(ours, theirs, type: type))")
}

@Test("Encoding rows into memory on one thread, as GGUF export does chunk by chunk, gives llama-quantize's bytes with and without an imatrix",
      arguments: written)
func rowsIntoMemoryEqualLlamaCpp(type: GGMLType) throws {
    for weights in [nil, importance] {
        let rowBytes = type.byteCount(elements: rowLength), rows = input.count / rowLength
        var ours = [UInt8](repeating: 0xAA, count: rows * rowBytes)
        // Odd chunks of rows, at their offsets, as the export's workers take them.
        var row = 0
        for chunk in [1, 3, 5, 7, 16] where row < rows {
            let count = min(chunk, rows - row)
            let done = input.withUnsafeBufferPointer { x in
                ours.withUnsafeMutableBytes { o in
                    weights.withUnsafeBufferPointerOrNil { w in
                        type.encodeRows(x.baseAddress! + row * rowLength, rows: count, rowLength: rowLength, importance: w,
                                        into: o.baseAddress! + row * rowBytes)
                    }
                }
            }
            #expect(done)
            row += count
        }
        let theirs = golden(type.name + (weights == nil ? "" : ".imatrix"))
        #expect(ours == theirs, "\(type) \(weights == nil ? "" : "imatrix"): \(firstDifference(ours, theirs, type: type))")
    }
}

@Test("Encoding float rows into memory gives the bytes of encoding them whole", arguments: [GGMLType.f32, .f16, .bf16])
func floatRowsIntoMemoryEqualWhole(type: GGMLType) throws {
    let whole = try #require(input.withUnsafeBufferPointer { type.encode($0, threads: ThreadBudget(2)) })
    var ours = [UInt8](repeating: 0xAA, count: whole.count)
    let done = input.withUnsafeBufferPointer { x in
        ours.withUnsafeMutableBytes { type.encodeRows(x.baseAddress!, rows: x.count / rowLength, rowLength: rowLength, importance: nil, into: $0.baseAddress!) }
    }
    #expect(done && ours == whole)
}

@Test("Every type decodes llama.cpp's blocks as gguf-py does, bit for bit", arguments: written)
func decodesLikeGGUFPy(type: GGMLType) throws {
    let bytes = golden(type.name + ".imatrix")
    let ours = bytes.withUnsafeBytes { type.decode($0, count: input.count) }
    let expected = FloatValues.array(goldens.view(named: type.name + ".imatrix.decoded")!)
    #expect(ours.map(\.bitPattern) == expected.map(\.bitPattern))
}

@Test("Without an imatrix the bytes do not depend on the row length or the thread count", arguments: [GGMLType.q4_K, .q6_K, .iq4_XS, .q5_1])
func quantizationIgnoresRowsWithoutImportance(type: GGMLType) throws {
    let whole = try #require(input.withUnsafeBufferPointer { type.encode($0, threads: .single) })
    let rows = try #require(input.withUnsafeBufferPointer { type.encode($0, rowLength: rowLength, importance: nil, threads: ThreadBudget(3)) })
    #expect(whole == rows)
}

@Test("The SIMD affine search (a group per lane, 1 to 16 groups) and its AVX-512 twin equal the scalar reference to the bit, on random and tied blocks, for every caller's settings")
func affineSearchMatchesReference() {
    for wide in avx512Available ? [false, true] : [false] { checkAffineSearch(wide: wide) }
}

/// One kernel (Swift SIMD or AVX-512) against the reference.
private func checkAffineSearch(wide: Bool) {
    var state: UInt64 = 0x5EED
    func uniform() -> Float {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return Float(state >> 40) / Float(1 << 24)
    }
    let settings: [(n: Int, nmax: Int, rmin: Float, rdelta: Float, steps: Int, mad: Bool)] = [
        (16, 3, -0.5, 0.1, 15, true), (32, 15, -1, 0.1, 20, false), (32, 31, -0.5, 0.1, 15, false),
        (16, 3, -0.9, 0.05, 36, false), (32, 15, -0.9, 0.05, 36, false), (32, 31, -0.9, 0.05, 36, false),
    ]
    var x = [Float](repeating: 0, count: 16 * 32), w = x
    var codes = [UInt8](repeating: 0, count: 16 * 32), b = [UInt8](repeating: 0, count: 32), aux = b
    var scales = [Float](repeating: 0, count: 16), minimums = scales
    for trial in 0..<600 {
        let s = settings[trial % settings.count]
        let groups = 1 + trial % 16
        // Each group drawn its own way: plain, exact ties, wide, mostly zero, and (every fifth) constant.
        for g in 0..<groups {
            let kind = (trial + g) % 5
            for i in 0..<s.n {
                let v: Float
                switch kind {
                case 0: v = uniform() - 0.5
                case 1: v = Float(Int(uniform() * 9) - 4) * 0.25  // exact ties
                case 2: v = (uniform() - 0.2) * Float(1 << (g % 7))
                case 3: v = uniform() < 0.3 ? 0 : uniform() * 0.01
                default: v = 0.125
                }
                x[g * s.n + i] = v
                w[g * s.n + i] = (trial + g) % 3 == 0 ? abs(v) : uniform() * 2
            }
        }
        KQuantSearch.affine(groups: groups, s.n, s.nmax, x, w, &codes, scales: &scales, minimums: &minimums, rmin: s.rmin, rdelta: s.rdelta,
                            steps: s.steps, absoluteError: s.mad, wide: wide)
        for g in 0..<groups {
            var minimum: Float = 0
            let scale = x.withUnsafeBufferPointer { xs in
                w.withUnsafeBufferPointer { ws in
                    KQuantSearch.affineReference(s.n, s.nmax, xs.baseAddress! + g * s.n, ws.baseAddress! + g * s.n, &b, minimum: &minimum, &aux,
                                                 rmin: s.rmin, rdelta: s.rdelta, steps: s.steps, absoluteError: s.mad)
                }
            }
            if scales[g].bitPattern != scale.bitPattern || minimums[g].bitPattern != minimum.bitPattern
                || codes[(g * s.n)..<((g + 1) * s.n)] != b[0..<s.n] {
                Issue.record("AVX-512 \(wide), trial \(trial), group \(g) of \(groups): scale \(scales[g]) vs \(scale), min \(minimums[g]) vs \(minimum)")
                return
            }
        }
    }
}

@Test("The SIMD symmetric search (a group per lane, 1 to 16 groups) and its AVX-512 twin equal the scalar reference to the bit, with and without weights")
func symmetricSearchMatchesReference() {
    for wide in avx512Available ? [false, true] : [false] { checkSymmetricSearch(wide: wide) }
}

/// One kernel (Swift SIMD or AVX-512) against the reference.
private func checkSymmetricSearch(wide: Bool) {
    var state: UInt64 = 0xFACE
    func uniform() -> Float {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return Float(state >> 40) / Float(1 << 24)
    }
    var x = [Float](repeating: 0, count: 16 * 32), w = x
    var codes = [Int8](repeating: 0, count: 16 * 32), b = [Int8](repeating: 0, count: 32)
    var scales = [Float](repeating: 0, count: 16)
    for trial in 0..<600 {
        let (n, nmax) = [(16, 32), (16, 4), (32, 8), (32, 16), (16, 32)][trial % 5]
        let groups = 1 + (trial * 7) % 16
        for g in 0..<groups {
            let kind = (trial + g) % 4
            for i in 0..<n {
                x[g * n + i] = kind == 0 ? Float(Int(uniform() * 17) - 8) * 0.125 : kind == 3 ? 0 : (uniform() - 0.5) * Float(1 << (g % 5))
                w[g * n + i] = uniform() * 3
            }
        }
        let weighted = trial % 2 == 0
        w.withUnsafeBufferPointer { KQuantSearch.symmetric(groups: groups, n, nmax, x, &codes, scales: &scales, weights: weighted ? $0.baseAddress : nil, wide: wide) }
        for g in 0..<groups {
            let scale = x.withUnsafeBufferPointer { xs in
                w.withUnsafeBufferPointer { ws in
                    KQuantSearch.symmetricReference(n, nmax, xs.baseAddress! + g * n, &b, weights: weighted ? ws.baseAddress! + g * n : nil)
                }
            }
            if scales[g].bitPattern != scale.bitPattern || codes[(g * n)..<((g + 1) * n)] != b[0..<n] {
                Issue.record("AVX-512 \(wide), trial \(trial), group \(g) of \(groups): scale \(scales[g]) vs \(scale)")
                return
            }
        }
    }
}

@Test("Q5_0's 16-lane codes equal C's MIN(31, (int8)(x·id + 16.5)) lane by lane, on random, tied and exactly-integer values")
func fiveBitCodesMatchScalarReference() {
    var state: UInt64 = 0x5_0
    func uniform() -> Float {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return Float(state >> 40) / Float(1 << 24)
    }
    var x = [Float](repeating: 0, count: 32)
    for trial in 0..<5000 {
        // Every third block is on a grid of sixteenths, so x·id + 16.5 often lands exactly on integers and halves.
        for i in 0..<32 { x[i] = trial % 3 == 0 ? Float(Int(uniform() * 33) - 16) / 16 : (uniform() - 0.5) * Float(1 << (trial % 7)) }
        let (max, _) = KQuantSearch.signedMaximum(x, 32)
        let id: Float = max != 0 ? 1 / (max / -16) : 0
        guard let (low, high) = KQuantizers.fiveBitCodes(x, id) else { Issue.record("trial \(trial): finite block took the scalar path"); return }
        for j in 0..<32 {
            let expected = Swift.min(31, Int(Int8(truncatingIfNeeded: KQuantizers.truncatingInt(x[j] * id + 16.5))))
            if Int(j < 16 ? low[j] : high[j - 16]) != expected {
                Issue.record("trial \(trial) lane \(j): \(j < 16 ? low[j] : high[j - 16]) vs \(expected) for \(x[j] * id + 16.5)")
                return
            }
        }
    }
    // NaN or an infinity anywhere sends the block to the scalar path.
    x[7] = .nan
    #expect(KQuantizers.fiveBitCodes(x, 1) == nil)
    x[7] = .infinity
    #expect(KQuantizers.fiveBitCodes(x, 1) == nil)
}

@Test("NaN, infinities and huge values quantize in every type without trapping (found by the fuzzer in Q4_0)", arguments: written)
func hostileValuesDoNotTrap(type: GGMLType) throws {
    var x = (0..<512).map { Float($0 % 7) - 3 }
    for (i, v) in [Float.nan, .infinity, -.infinity, 3e38, -3e38, .leastNonzeroMagnitude].enumerated() { x[i * 37] = v }
    for importance in [nil, [Float](repeating: 1, count: 256)] {
        let bytes = try #require(x.withUnsafeBufferPointer { type.encode($0, rowLength: 256, importance: importance, threads: .single) })
        #expect(bytes.count == type.byteCount(elements: 512))
    }
}
