@testable import CheckpointKit
import Foundation
import TestSupport
import Testing

/// Goldens of tools/make_w4a16_goldens.py (compressed-tensors 0.20 itself; GPTQModel's and AutoAWQ's packers and dequantizers transcribed).
private let goldens = "w4a16/packing.safetensors"

private func tensor<T>(_ checkpoint: Checkpoint, _ name: String, as: T.Type) -> [T] {
    checkpoint.view(named: name)!.withBytes { raw in (0..<(raw.count / MemoryLayout<T>.size)).map { raw.loadUnaligned(fromByteOffset: $0 * MemoryLayout<T>.size, as: T.self) } }
}

private func present(_ relative: String) -> Bool {
    if FileManager.default.fileExists(atPath: Paths.fixture(relative)) { return true }
    Issue.record("missing fixtures/\(relative): run tools/make_w4a16_goldens.py")
    return false
}

@Test("int4 and int8 codes, and int4 zero points, pack into the words compressed-tensors' pack_to_int32 writes")
func packingMatchesCompressedTensors() throws {
    guard present(goldens) else { return }
    let file = try Checkpoint(path: Paths.fixture(goldens))
    for bits in [4, 8] {
        let codes = tensor(file, "int\(bits).codes", as: Int8.self).map { UInt8(Int($0) + (1 << (bits - 1))) }
        #expect(IntegerPacking.packRows(codes, rows: 24, columns: 44, bits: bits) == tensor(file, "int\(bits).ct_packed", as: UInt32.self))
    }
    let zeros = tensor(file, "int4.zero_points", as: Int8.self).map { UInt8(Int($0) + 8) }
    let packed = tensor(file, "int4.ct_zero_packed", as: UInt32.self)
    #expect(IntegerPacking.packColumns(zeros, rows: 24, columns: 3, bits: 4) == packed)
    #expect(IntegerPacking.unpackColumns(packed, rows: 24, columns: 3, bits: 4) == zeros)
}

@Test("GPTQ words (qweight, v1 and v2 qzeros) equal GPTQModel's pack_original, and decoding them with an act-order g_idx gives its dequantized F16 weight")
func gptqMatchesGPTQModel() throws {
    guard present(goldens) else { return }
    let file = try Checkpoint(path: Paths.fixture(goldens))
    let (k, n, groups) = (48, 32, 3)
    let codesKN = tensor(file, "gptq.codes", as: UInt8.self), zerosGN = tensor(file, "gptq.zeros", as: UInt8.self)
    let scalesGN = FloatValues.array(file.view(named: "gptq.scales")!)
    let codes = IntegerCodes(rows: n, columns: k, bits: 4, groupSize: 16, codes: PackedIntegerRows.transposed(codesKN, rows: k, columns: n),
                             scales: PackedIntegerRows.transposed(scalesGN, rows: groups, columns: n),
                             zeros: PackedIntegerRows.transposed(zerosGN, rows: groups, columns: n), symmetric: false,
                             groupIndex: tensor(file, "gptq.g_idx", as: Int32.self), scaleType: .f16)
    let v2 = IntegerScheme(bits: 4, groupSize: 16, symmetric: false, format: .gptq)
    let encoded = v2.encode(codes: codes, name: "p.weight", shape: [n, k], originalType: .f16)
    #expect(encoded.parts[0].bytes == file.view(named: "gptq.qweight")!.withBytes { Array($0) })
    #expect(encoded.parts[1].bytes == file.view(named: "gptq.qzeros_v2")!.withBytes { Array($0) })
    #expect(encoded.parts[3].bytes == file.view(named: "gptq.g_idx")!.withBytes { Array($0) })
    // v1 is what a symmetric scheme writes: the same words less 0x11111111.
    var v1 = v2
    v1.symmetric = true
    #expect(v1.encode(codes: codes, name: "p.weight", shape: [n, k], originalType: .f16).parts[1].bytes
        == file.view(named: "gptq.qzeros_v1")!.withBytes { Array($0) })
    let expected = FloatValues.array(file.view(named: "gptq.dequantized")!)
    var decoded = [Float](repeating: 0, count: n * k)
    decoded.withUnsafeMutableBufferPointer { v2.decode(encoded, into: $0, threads: .single) }
    #expect(decoded == expected)
    #expect(codes.dequantized == expected)
}

@Test("AWQ GEMM words equal AutoAWQ's from_linear, and decoding them gives its dequantize_gemm F16 weight")
func awqMatchesAutoAWQ() throws {
    guard present(goldens) else { return }
    let file = try Checkpoint(path: Paths.fixture(goldens))
    let (k, n, groups) = (48, 32, 3)
    let codesKN = tensor(file, "awq.codes", as: UInt8.self), zerosGN = tensor(file, "awq.zeros", as: UInt8.self)
    #expect(IntegerPacking.packAWQ(codesKN, rows: k, columns: n) == tensor(file, "awq.qweight", as: UInt32.self))
    #expect(IntegerPacking.packAWQ(zerosGN, rows: groups, columns: n) == tensor(file, "awq.qzeros", as: UInt32.self))
    let codes = IntegerCodes(rows: n, columns: k, bits: 4, groupSize: 16, codes: PackedIntegerRows.transposed(codesKN, rows: k, columns: n),
                             scales: PackedIntegerRows.transposed(FloatValues.array(file.view(named: "awq.scales")!), rows: groups, columns: n),
                             zeros: PackedIntegerRows.transposed(zerosGN, rows: groups, columns: n), symmetric: false, groupIndex: nil, scaleType: .f16)
    let scheme = IntegerScheme(bits: 4, groupSize: 16, symmetric: false, format: .awq)
    let encoded = scheme.encode(codes: codes, name: "p.weight", shape: [n, k], originalType: .f16)
    var decoded = [Float](repeating: 0, count: n * k)
    decoded.withUnsafeMutableBufferPointer { scheme.decode(encoded, into: $0, threads: .single) }
    #expect(decoded == FloatValues.array(file.view(named: "awq.dequantized")!))
}

@Test("ckpt-quantize --scheme int4/int8 --format pack-quantized writes tiny-llama byte for byte as compressed-tensors 0.20 compresses it",
      arguments: [("tiny-llama-ct-w4a16", "int4", 32, true), ("tiny-llama-ct-w4a16-asym", "int4", 64, false),
                  ("tiny-llama-ct-w8a16-channel", "int8", -1, true)])
func packQuantizedWriterMatchesCompressedTensors(folder: String, scheme name: String, groupSize: Int, symmetric: Bool) throws {
    guard present("models/" + folder) else { return }
    let scratch = ScratchDirectory()
    let scheme = QuantizedLayouts.scheme(named: name, blockSize: groupSize, doubleQuant: false, scaleType: .f32, format: .packQuantized,
                                         symmetric: symmetric)!
    _ = try CheckpointQuantizer.quantize(Checkpoint(path: Paths.fixture("models/tiny-llama")), to: scratch.file("out"),
                                         options: QuantizationOptions(scheme: scheme))
    let ours = try Checkpoint(path: scratch.file("out")), theirs = try Checkpoint(path: Paths.fixture("models/" + folder))
    #expect(Set(ours.entries.map(\.info.name)) == Set(theirs.entries.map(\.info.name)))
    for entry in theirs.entries {
        guard let mine = ours.entry(named: entry.info.name) else { continue }
        #expect(mine.info.dtype == entry.info.dtype && mine.info.shape == entry.info.shape, "\(entry.info.name)")
        #expect(ours.view(mine).withBytes { Array($0) } == theirs.view(entry).withBytes { Array($0) }, "\(entry.info.name)")
    }
    #expect(ours.config?["quantization_config"] == theirs.config?["quantization_config"])
}

@Test("pack-quantized, GPTQ (v1, and v2 with act-order) and AWQ folders read as transformers + compressed-tensors or the reference dequantizer loads them",
      arguments: ["tiny-llama-ct-w4a16", "tiny-llama-ct-w4a16-asym", "tiny-llama-ct-w8a16-channel", "tiny-llama-gptq",
                  "tiny-llama-gptq-v2-actorder", "tiny-llama-awq"])
func quantizedFoldersReadAsTheirLoaders(folder: String) throws {
    guard present("models/" + folder), present("w4a16/\(folder).expected.safetensors") else { return }
    let logical = try LogicalCheckpoint(Checkpoint(path: Paths.fixture("models/" + folder)))
    let expected = try Checkpoint(path: Paths.fixture("w4a16/\(folder).expected.safetensors"))
    var checked = 0
    for entry in expected.entries where entry.info.name.hasSuffix("_proj.weight") {
        let tensor = try #require(logical.tensors.first { $0.name == entry.info.name }, "\(entry.info.name)")
        #expect(tensor.scheme != nil && tensor.shape == entry.info.shape)
        #expect(logical.float32(tensor, threads: .single) == FloatValues.array(expected.view(entry)), "\(entry.info.name)")
        checked += 1
    }
    #expect(checked == 28)
    // The logits transformers computes from the loaded weights, within f32 summation order.
    guard let logits = expected.view(named: "logits"), let ids = expected.view(named: "token_ids") else { return }
    let tokens = ids.withBytes { raw in (0..<(raw.count / 4)).map { Int(raw.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self)) } }
    let model = try TransformerModel(checkpoint: Checkpoint(path: Paths.fixture("models/" + folder)), threads: .single)
    let ours = model.logits(tokens), theirs = FloatValues.array(logits)
    let worst = zip(ours, theirs).map { abs($0 - $1) }.max() ?? .infinity
    #expect(worst < 2e-4, "max |Δlogit| \(worst)")
}

@Test("GPTQ reproduces the reference (GPTQModel 7.3.4's algorithm, checked against its own code) on real layers with fixed Hessians, with and without the mse range search: codes, scales, zeros, g_idx and dampening")
func gptqMatchesReference() throws {
    guard present("gptq/gptq_cases.safetensors") else { return }
    let file = try Checkpoint(path: Paths.fixture("gptq/gptq_cases.safetensors"))
    let cases = try readJSON(Paths.fixture("gptq/gptq_cases.json"))["cases"]!.arrayValue!
    #expect(cases.count == 17)
    #expect(cases.filter { ($0["mse"]?.doubleValue ?? 0) > 0 }.count == 4)
    var differing = 0, total = 0
    for c in cases {
        let name = c["name"]!.stringValue!
        let shape = c["shape"]!.arrayValue!.map { $0.intValue! }
        let (rows, columns) = (shape[0], shape[1])
        let group = c["group_size"]!.intValue!
        var options = GPTQOptions(codes: c["mode"]?.stringValue == "nf4" ? .fourBit(.nf4) : .integer(bits: c["bits"]!.intValue!, symmetric: c["sym"]!.boolValue!),
                                  groupSize: group > 0 ? group : nil)
        options.actOrder = c["act_order"]!.boolValue!
        options.staticGroups = c["static_groups"]!.boolValue!
        options.damp = c["damp_percent"]!.doubleValue!
        options.dampIncrement = c["damp_auto_increment"]!.doubleValue!
        options.mse = c["mse"]!.doubleValue!
        let result = try GPTQ.quantize(FloatValues.array(file.view(named: name + ".W")!), hessian: FloatValues.array(file.view(named: name + ".H")!),
                                       rows: rows, columns: columns, options: options, name: name)
        #expect(abs(result.damp - c["damp_used"]!.doubleValue!) < 1e-6, "\(name) damp")
        let codes = tensor(file, name + ".codes", as: UInt8.self)
        let ours: [UInt8]
        if let integer = result.integer {
            ours = integer.codes
            #expect((integer.groupIndex ?? PackedIntegerRows.contiguousGroups(columns: columns, groupSize: integer.groupSize)) == tensor(file, name + ".g_idx", as: Int32.self), "\(name) g_idx")
        } else {
            // NF4: the code of each chosen value.
            let nf4 = FourBitType.nf4.code
            ours = result.quantized.enumerated().map { i, q in
                let absmax = result.absmax![(i / columns) * (columns / group) + (i % columns) / group]
                return absmax == 0 ? 7 : UInt8(nf4.firstIndex { $0 * absmax == q } ?? 99)
            }
        }
        let mismatches = zip(ours, codes).filter { $0 != $1 }.count
        differing += mismatches
        total += codes.count
        // A code may differ only downstream of a recorded near-tie in its own row.
        // A range search within 1e-5 of another trial may choose the other in f32 lanes: its row counts as tied too.
        let tieRows = Set(["near_ties", "zero_point_near_ties", "mse_near_ties"].flatMap { key in
            (c[key]?["positions"]?.arrayValue ?? []).map { $0.arrayValue![0].intValue! }
        })
        let stray = codes.indices.filter { ours[$0] != codes[$0] && !tieRows.contains($0 / columns) }
        #expect(stray.isEmpty, "\(name): \(stray.count) codes differ outside the rows of recorded ties, first [\(stray.first.map { $0 / columns } ?? 0), \(stray.first.map { $0 % columns } ?? 0)]")
        // Scales and zeros per row and group in append order outside the tied rows: the same zeros, the same scales but
        // for the last bits of groups measured after a lazy block's update (OpenBLAS's sgemm rounds apart from torch's).
        let scales = FloatValues.array(file.view(named: name + ".scales")!), zeros = FloatValues.array(file.view(named: name + ".zeros")!)
        let ourScales = result.integer?.scales ?? result.absmax!, ourZeros = result.integer?.zeros.map(Float.init) ?? [Float](repeating: 0, count: ourScales.count)
        let perRow = scales.count / rows
        let strayGroups = scales.indices.filter { (abs(ourScales[$0] - scales[$0]) > 1e-5 * abs(scales[$0]) || ourZeros[$0] != zeros[$0]) && !tieRows.contains($0 / perRow) }
        #expect(ourScales.count == scales.count && strayGroups.isEmpty, "\(name): \(strayGroups.count) scales or zeros differ outside the rows of recorded ties")
    }
    #expect(Double(differing) < 0.001 * Double(total), "\(differing) of \(total) codes differ")
}
