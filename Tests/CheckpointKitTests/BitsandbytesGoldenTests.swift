@testable import CheckpointKit
import Foundation
import TestSupport
import Testing

/// Goldens from bitsandbytes 0.50.2 `quantize_4bit` on CPU, made by tools/make_quant_goldens.py:
/// fixtures/quant/bnb_4bit.safetensors (caseNN.input / packed / absmax / nested_absmax /
/// nested_quant_map / quant_map / quant_state) and bnb_4bit.json (parameters of each case).
private struct GoldenCase {
    var name: String
    var type: FourBitType
    var blockSize: Int
    var doubleQuant: Bool
    var dtype: DType
    var shape: [Int]
    var note: String
}

private func goldenCases() throws -> (SafetensorsFile, [GoldenCase])? {
    let manifest = Paths.fixture("quant/bnb_4bit.json")
    guard FileManager.default.fileExists(atPath: manifest) else {
        Issue.record("missing \(manifest): run `make fixtures`")
        return nil
    }
    let file = try SafetensorsFile(path: Paths.fixture("quant/bnb_4bit.safetensors"))
    let cases = try #require(try readJSON(manifest)["cases"]?.arrayValue).map { c in
        GoldenCase(name: c["name"]!.stringValue!, type: FourBitType(rawValue: c["quant_type"]!.stringValue!)!,
                   blockSize: c["blocksize"]!.intValue!, doubleQuant: c["double_quant"]!.boolValue!,
                   dtype: ["float32": DType.f32, "bfloat16": .bf16, "float16": .f16][c["dtype"]!.stringValue!]!,
                   shape: c["shape"]!.arrayValue!.map { $0.intValue! }, note: c["note"]?.stringValue ?? "")
    }
    return (file, cases)
}

private func encode(_ c: GoldenCase, _ file: SafetensorsFile, threads: Int) throws -> EncodedTensor {
    let input = try #require(file.view(named: c.name + ".input"))
    #expect(input.dtype == c.dtype)
    let x = FloatValues.array(input)
    let info = TensorInfo(name: c.name, dtype: c.dtype, shape: c.shape, dataOffsets: 0..<input.byteCount)
    return x.withUnsafeBufferPointer {
        BitsandbytesFourBitLayout.encode($0, info: info, type: c.type, blockSize: c.blockSize, doubleQuant: c.doubleQuant,
                                          fixedScales: nil, threads: ThreadBudget(threads))
    }
}

@Test("NF4, FP4 and double-quant output equals bitsandbytes' quantize_4bit byte for byte on all 73 golden cases")
func bitsandbytesGoldens() throws {
    guard let (file, cases) = try goldenCases() else { return }
    #expect(cases.count == 73)
    for c in cases {
        let encoded = try encode(c, file, threads: 2)
        func ours(_ suffix: String) -> [UInt8]? { encoded.parts.first { $0.spec.name == c.name + suffix }?.bytes }
        func theirs(_ suffix: String) -> [UInt8]? { file.view(named: c.name + suffix).map { $0.byteArray } }
        #expect(ours("") == theirs(".packed"), "\(c.name) packed: \(c.note)")
        #expect(ours(".absmax") == theirs(".absmax"), "\(c.name) absmax: \(c.note)")
        #expect(ours(".quant_map") == theirs(".quant_map"), "\(c.name) quant_map")
        let stateKey = ".quant_state.bitsandbytes__" + c.type.name
        #expect(ours(stateKey).map { String(decoding: $0, as: UTF8.self) } == theirs(".quant_state").map { String(decoding: $0, as: UTF8.self) },
                "\(c.name) quant_state")
        if c.doubleQuant {
            #expect(ours(".nested_absmax") == theirs(".nested_absmax"), "\(c.name) nested_absmax: \(c.note)")
            #expect(ours(".nested_quant_map") == theirs(".nested_quant_map"), "\(c.name) nested_quant_map")
        }
    }
}

@Test("bitsandbytes' own dequantization equals code × absmax as ckpt computes it")
func bitsandbytesDequantization() throws {
    guard let (file, cases) = try goldenCases() else { return }
    for c in cases where !c.doubleQuant {
        guard let expected = file.view(named: c.name + ".dequant") else { continue }
        let packed = try #require(file.view(named: c.name + ".packed"))
        let absmax = FloatValues.array(try #require(file.view(named: c.name + ".absmax")))
        var out = [Float](repeating: 0, count: c.shape.reduce(1, *))
        packed.withBytes { packedBytes in
            absmax.withUnsafeBufferPointer { a in
                out.withUnsafeMutableBufferPointer {
                    FourBitQuantizer.dequantize(packed: packedBytes.bindMemory(to: UInt8.self), absmax: a, blockSize: c.blockSize,
                                                type: c.type, into: $0)
                }
            }
        }
        // bitsandbytes returns the input's dtype: round ours the same way before comparing.
        var rounded = [UInt8](repeating: 0, count: out.count * c.dtype.size)
        out.withUnsafeBytes { src in rounded.withUnsafeMutableBytes { FloatConversion.convert(src, from: .f32, to: c.dtype, into: $0) } }
        let ours = rounded.withUnsafeBytes { raw in
            FloatValues.array(TensorView(info: TensorInfo(name: c.name, dtype: c.dtype, shape: [out.count], dataOffsets: 0..<raw.count),
                                         owner: file, bytes: raw))
        }
        // Compared as values: bitsandbytes' C++ FP4 decoder gives code 8 (its sign bit) as -0.0,
        // the table (and ckpt) as +0.0; every other value is bit-identical.
        #expect(ours == FloatValues.array(expected), "\(c.name)")
    }
}

@Test("The 8-bit lookup table equals the one bitsandbytes' CPU library builds, entry for entry")
func dynamicLookupTable() throws {
    let file = try SafetensorsFile(path: Paths.fixture("quant/dynamic_map.safetensors"))
    let lut = try #require(file.view(named: "dynamic_lut"))
    #expect(FloatValues.array(lut).map { UInt8($0) } == BlockwiseDynamic8Bit.lookup)
    #expect(FloatValues.array(try #require(file.view(named: "dynamic_map"))).map(\.bitPattern) == DynamicCode.bits)
}

@Test("torch's float32 mean is reproduced bit for bit on the golden absmax arrays")
func torchMean() throws {
    guard let (file, cases) = try goldenCases() else { return }
    let manifest = try readJSON(Paths.fixture("quant/bnb_4bit.json"))
    for c in cases where c.doubleQuant {
        let raw = FloatValues.array(try #require(file.view(named: c.name + ".absmax_raw")))
        let entry = try #require(manifest["cases"]?.arrayValue?.first { $0["name"]?.stringValue == c.name })
        let hex = try #require(entry["nested_offset_f32_hex"]?.stringValue)
        #expect(TorchMean.mean(raw).bitPattern == UInt32(hex, radix: 16), "\(c.name)")
    }
}

@Test("The tiny Llama's linear weights quantize to bitsandbytes' bytes (hashes recorded by the golden script)")
func tinyLlamaWeights() throws {
    let manifest = try readJSON(Paths.fixture("quant/bnb_4bit.json"))
    let checkpoint = try Checkpoint(path: Paths.fixture("models/tiny-llama"))
    let weights = try #require(manifest["model_weights"]?["tensors"]?.arrayValue)
    #expect(weights.count == 28)
    for w in weights {
        let name = try #require(w["tensor"]?.stringValue)
        let entry = try #require(checkpoint.entry(named: name))
        for dq in [false, true] {
            let expected = try #require(w[dq ? "double_quant" : "plain"])
            let x = FloatValues.array(checkpoint.view(entry))
            let encoded = x.withUnsafeBufferPointer {
                BitsandbytesFourBitLayout.encode($0, info: entry.info, type: .nf4, blockSize: 64, doubleQuant: dq, fixedScales: nil,
                                                  threads: ThreadBudget(2))
            }
            #expect(sha256Hex(encoded.parts[0].bytes) == expected["packed_sha256"]?.stringValue, "\(name) packed")
            #expect(sha256Hex(encoded.parts[1].bytes) == expected["absmax_sha256"]?.stringValue, "\(name) absmax dq=\(dq)")
            if dq {
                #expect(sha256Hex(encoded.parts[2].bytes) == expected["nested_absmax_sha256"]?.stringValue, "\(name) nested")
            }
        }
    }
}
