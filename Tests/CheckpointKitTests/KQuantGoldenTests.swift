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
