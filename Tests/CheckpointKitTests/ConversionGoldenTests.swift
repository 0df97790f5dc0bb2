@testable import CheckpointKit
import Foundation
import Testing

/// Golden conversions computed by torch on CPU (tools/make_fixtures.py →
/// fixtures/safetensors/conversion/golden.safetensors). Non-NaN results must be bit-identical;
/// NaN must stay NaN (torch's own NaN spelling differs between its CPU kernels, see the README).
private func golden() throws -> SafetensorsFile? {
    let path = Paths.fixture("safetensors/conversion/golden.safetensors")
    guard FileManager.default.fileExists(atPath: path) else {
        Issue.record("missing \(path): run `make fixtures`")
        return nil
    }
    return try SafetensorsFile(path: path)
}

private func u16(_ file: SafetensorsFile, _ name: String) throws -> [UInt16] {
    let view = try #require(file.view(named: name))
    return view.bytes.withMemoryRebound(to: UInt16.self) { Array($0) }
}

private func u32(_ file: SafetensorsFile, _ name: String) throws -> [UInt32] {
    let view = try #require(file.view(named: name))
    return view.bytes.withMemoryRebound(to: UInt32.self) { Array($0) }
}

private func convert(_ input: [some BitwiseCopyable], from: DType, to: DType, outputCount: Int) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: outputCount * to.size)
    input.withUnsafeBytes { src in out.withUnsafeMutableBytes { FloatConversion.convert(src, from: from, to: to, into: $0) } }
    return out
}

private func asU16(_ bytes: [UInt8]) -> [UInt16] { bytes.withUnsafeBytes { Array($0.bindMemory(to: UInt16.self)) } }
private func asU32(_ bytes: [UInt8]) -> [UInt32] { bytes.withUnsafeBytes { Array($0.bindMemory(to: UInt32.self)) } }

private func isHalfNaN(_ bits: UInt16) -> Bool { bits & 0x7C00 == 0x7C00 && bits & 0x03FF != 0 }
private func isBF16NaN(_ bits: UInt16) -> Bool { bits & 0x7F80 == 0x7F80 && bits & 0x007F != 0 }

@Test("F16 and BF16 widen to F32 exactly as torch does, on all 65,536 patterns each")
func wideningMatchesTorch() throws {
    guard let file = try golden() else { return }
    let halves = try u16(file, "f16_all_bits")
    #expect(asU32(convert(halves, from: .f16, to: .f32, outputCount: halves.count)) == (try u32(file, "f16_all_as_f32")))
    let brains = try u16(file, "bf16_all_bits")
    #expect(asU32(convert(brains, from: .bf16, to: .f32, outputCount: brains.count)) == (try u32(file, "bf16_all_as_f32")))
}

@Test("F32 narrows to BF16 and F16 as torch does: identical bits except NaN spellings")
func narrowingMatchesTorch() throws {
    guard let file = try golden() else { return }
    let inputs = try u32(file, "f32_edge_bits")
    let pairs: [(DType, String, (UInt16) -> Bool)] = [(.bf16, "f32_edge_to_bf16", isBF16NaN), (.f16, "f32_edge_to_f16", isHalfNaN)]
    for (target, name, isNaN) in pairs {
        let ours = asU16(convert(inputs, from: .f32, to: target, outputCount: inputs.count))
        let torch = try u16(file, name)
        var mismatches = 0
        for i in inputs.indices where ours[i] != torch[i] {
            if !(isNaN(ours[i]) && isNaN(torch[i])) { mismatches += 1 }
        }
        #expect(mismatches == 0, "\(target): \(mismatches) of \(inputs.count) differ")
    }
}

@Test("BF16 ⇄ F16 match torch on all 65,536 patterns, NaN spellings aside")
func halfToHalfMatchesTorch() throws {
    guard let file = try golden() else { return }
    let cases: [(DType, DType, String, String, (UInt16) -> Bool)] = [
        (.bf16, .f16, "bf16_all_bits", "bf16_all_to_f16", isHalfNaN), (.f16, .bf16, "f16_all_bits", "f16_all_to_bf16", isBF16NaN),
    ]
    for (from, to, inputName, outputName, isNaN) in cases {
        let inputs = try u16(file, inputName)
        let ours = asU16(convert(inputs, from: from, to: to, outputCount: inputs.count))
        let torch = try u16(file, outputName)
        let mismatches = inputs.indices.filter { ours[$0] != torch[$0] && !(isNaN(ours[$0]) && isNaN(torch[$0])) }
        #expect(mismatches.isEmpty, "\(from)→\(to): first mismatches \(mismatches.prefix(5).map { (inputs[$0], ours[$0], torch[$0]) })")
    }
}
