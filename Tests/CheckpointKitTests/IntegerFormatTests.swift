@testable import CheckpointKit
import Foundation
import TestSupport
import Testing

/// A folder holding `config.json` (with `quantization` as its quantization_config, when given)
/// and one safetensors file of the given tensors.
private func quantizedFolder(_ scratch: ScratchDirectory, quantization: JSONValue?, tensors: [(String, DType, [Int], [UInt8])]) throws -> String {
    let folder = scratch.file("model")
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    var config: [(String, JSONValue)] = [("architectures", ["LlamaForCausalLM"]), ("model_type", "llama"), ("torch_dtype", "float16")]
    if let quantization { config.append(("quantization_config", quantization)) }
    FileManager.default.createFile(atPath: folder + "/config.json", contents: Data(JSONValue.object(config).serialized(style: .compact).utf8))
    let layout = SafetensorsLayout(tensors.map { TensorSpec(name: $0.0, dtype: $0.1, shape: $0.2) })
    let bytes = Dictionary(uniqueKeysWithValues: tensors.map { ($0.0, $0.3) })
    try layout.write(to: folder + "/model.safetensors") { info, out in try out.write(bytes[info.name]!) }
    return folder
}

private func words(_ values: [UInt32]) -> [UInt8] { values.withUnsafeBytes { Array($0) } }
private func halves(_ values: [Float]) -> [UInt8] { values.map { Float16($0).bitPattern }.withUnsafeBytes { Array($0) } }

/// Codes `u` [rows, columns] with symmetric zeros and unit scales in groups of `groupSize`.
private func unitCodes(_ u: [UInt8], rows: Int, columns: Int, groupSize: Int, scaleType: DType = .f16) -> IntegerCodes {
    let groups = (columns + groupSize - 1) / groupSize
    return IntegerCodes(rows: rows, columns: columns, bits: 4, groupSize: groupSize, codes: u, scales: [Float](repeating: 1, count: rows * groups),
                        zeros: [UInt8](repeating: 8, count: rows * groups), symmetric: true, groupIndex: nil, scaleType: scaleType)
}

@Test("compressed-tensors packs int4 codes along each row, lowest column in the lowest nibble: the spec's worked word 0xDA7F9850")
func packQuantizedWorkedWord() {
    let signed: [Int] = [-8, -3, 0, 1, 7, -1, 2, 5]
    #expect(IntegerPacking.packRows(signed.map { UInt8($0 + 8) }, rows: 1, columns: 8, bits: 4) == [0xDA7F_9850])
    // A short last word is padded with zero nibbles; int8 packs four per word.
    #expect(IntegerPacking.packRows([1, 2, 3], rows: 1, columns: 3, bits: 4) == [0x321])
    #expect(IntegerPacking.packRows([0x11, 0x22, 0x33, 0x44, 0x55], rows: 1, columns: 5, bits: 8) == [0x4433_2211, 0x55])
}

@Test("GPTQ packs codes down K per output column (codes 1…8 give 0x87654321) and writes symmetric zeros as v1 0x77777777")
func gptqWorkedWords() {
    // 8 outputs × 8 inputs; output n holds codes 1…8 along its inputs.
    let u = (0..<8).flatMap { _ in (1...8).map(UInt8.init) }
    let scheme = IntegerScheme(bits: 4, groupSize: 8, symmetric: true, format: .gptq)
    let encoded = scheme.encode(codes: unitCodes(u, rows: 8, columns: 8, groupSize: 8), name: "p.weight", shape: [8, 8], originalType: .f16)
    #expect(encoded.parts.map(\.spec.name) == ["p.qweight", "p.qzeros", "p.scales", "p.g_idx"])
    #expect(encoded.parts[0].spec.shape == [1, 8])
    #expect(encoded.parts[0].bytes == words([UInt32](repeating: 0x8765_4321, count: 8)))
    #expect(encoded.parts[1].bytes == words([0x7777_7777]))
    #expect(encoded.parts[3].bytes == words([UInt32](repeating: 0, count: 8)))
    // Asymmetric codes are written as v2: the zero itself.
    var asymmetric = unitCodes(u, rows: 8, columns: 8, groupSize: 8)
    asymmetric.symmetric = false
    asymmetric.zeros = [0, 5, 3, 9, 15, 1, 0, 7]
    var v2 = scheme
    v2.symmetric = false
    #expect(v2.encode(codes: asymmetric, name: "p.weight", shape: [8, 8], originalType: .f16).parts[1].bytes == words([0x701F_9350]))
}

@Test("AutoAWQ GEMM interleaves each word's nibbles in the order 0,2,4,6,1,3,5,7: codes 1…8 along N give 0x86427531")
func awqWorkedWord() {
    #expect(IntegerPacking.packAWQ((1...8).map(UInt8.init), rows: 1, columns: 8) == [0x8642_7531])
    #expect(IntegerPacking.awqNibble == [0, 4, 1, 5, 2, 6, 3, 7])
}

@Test("Each format ckpt writes reads back through the checkpoint layer as exactly the values its codes stand for",
      arguments: [("int4", "pack-quantized", 32, true), ("int4", "pack-quantized", 64, false), ("int4", "pack-quantized", -1, true),
                  ("int8", "pack-quantized", 32, true), ("int4", "gptq", 32, true), ("int4", "gptq", 64, false),
                  ("int8", "gptq", 32, true), ("int4", "awq", 32, false)])
func integerFormatsRoundTrip(scheme name: String, format: String, groupSize: Int, symmetric: Bool) throws {
    let scratch = ScratchDirectory()
    let input = try Checkpoint(path: Paths.fixture("models/tiny-llama"))
    let scheme = QuantizedLayouts.scheme(named: name, blockSize: groupSize, doubleQuant: false, scaleType: .f32,
                                         format: IntegerFormat(rawValue: format), symmetric: symmetric) as! IntegerScheme
    _ = try CheckpointQuantizer.quantize(input, to: scratch.file("out"), options: QuantizationOptions(scheme: scheme))
    let output = try LogicalCheckpoint(Checkpoint(path: scratch.file("out")))
    let original = try LogicalCheckpoint(input)
    var checked = 0
    for tensor in output.tensors where tensor.scheme != nil {
        let reference = original.float32(original.tensors.first { $0.name == tensor.name }!)
        let codes = reference.withUnsafeBufferPointer {
            IntegerQuantizer.roundToNearest($0, rows: tensor.shape[0], columns: tensor.shape[1], bits: scheme.bits,
                                            groupSize: scheme.groupColumns(tensor.shape[1]), symmetric: symmetric && format != "awq",
                                            rule: format == "gptq" ? .gptq : format == "awq" ? .awq : .compressedTensors, arithmetic: .bf16,
                                            scaleType: scheme.scaleType(originalType: .bf16))
        }
        #expect(output.float32(tensor).map(\.bitPattern) == codes.dequantized.map(\.bitPattern), "\(tensor.name)")
        // Row tiles decode as the whole tensor does.
        let rows = output.storedRows(tensor)
        var tile = [Float](repeating: 0, count: 3 * tensor.shape[1])
        tile.withUnsafeMutableBufferPointer { rows.widen(5..<8, into: $0.baseAddress!) }
        #expect(tile.map(\.bitPattern) == Array(codes.dequantized[(5 * tensor.shape[1])..<(8 * tensor.shape[1])]).map(\.bitPattern))
        checked += 1
    }
    #expect(checked == 28)
}

@Test("pack-quantized writes compressed-tensors' parts and config: packed words, scales in the model dtype, the shape as I64, zero points only when asymmetric")
func packQuantizedParts() throws {
    let scratch = ScratchDirectory()
    let input = try Checkpoint(path: Paths.fixture("models/tiny-llama"))
    _ = try CheckpointQuantizer.quantize(input, to: scratch.file("asym"), options: QuantizationOptions(scheme: IntegerScheme(bits: 4, groupSize: 64, symmetric: false)))
    let written = try Checkpoint(path: scratch.file("asym"))
    let packed = try #require(written.entry(named: "model.layers.0.mlp.down_proj.weight_packed"))
    #expect(packed.info.dtype == .i32 && packed.info.shape == [64, 24])
    #expect(written.entry(named: "model.layers.0.mlp.down_proj.weight_scale")?.info.dtype == .bf16)
    #expect(written.entry(named: "model.layers.0.mlp.down_proj.weight_scale")?.info.shape == [64, 3])
    #expect(written.entry(named: "model.layers.0.mlp.down_proj.weight_shape")?.info.dtype == .i64)
    #expect(written.entry(named: "model.layers.0.mlp.down_proj.weight_zero_point")?.info.shape == [8, 3])
    #expect(written.entry(named: "model.layers.0.mlp.down_proj.weight") == nil)
    #expect(written.entry(named: "lm_head.weight")?.info.dtype == .bf16)
    let config = try #require(written.config?["quantization_config"])
    #expect(config["format"]?.stringValue == "pack-quantized")
    #expect(config["ignore"] == ["lm_head"])
    #expect(config["config_groups"]?["group_0"]?["weights"]?["symmetric"] == false)
    #expect(config["config_groups"]?["group_0"]?["weights"]?["group_size"] == 64)
}

@Test("A group size that does not divide a row is refused naming the tensor, and nothing is written")
func raggedGroupsRefused() throws {
    let scratch = ScratchDirectory()
    let input = try Checkpoint(path: Paths.fixture("models/tiny-llama"))
    #expect {
        try CheckpointQuantizer.quantize(input, to: scratch.file("out"), options: QuantizationOptions(scheme: IntegerScheme(bits: 4, groupSize: 48)))
    } throws: { error in
        "\(error)".contains("model.layers.0.mlp.gate_proj.weight") && "\(error)".contains("groups of 48")
    }
    #expect(scratch.contents.isEmpty)
}

@Test("GPTQ checkpoints in layouts ckpt does not read are refused by name: Marlin, other checkpoint formats, 3-bit, desc_act without g_idx")
func gptqVariantsRefused() throws {
    let qweight = words([UInt32](repeating: 0x8765_4321, count: 8)), qzeros = words([0x7777_7777]), scales = halves([Float](repeating: 1, count: 8))
    let tensors: [(String, DType, [Int], [UInt8])] = [("p.qweight", .i32, [1, 8], qweight), ("p.qzeros", .i32, [1, 1], qzeros), ("p.scales", .f16, [1, 8], scales)]
    let cases: [(JSONValue, String)] = [
        (["quant_method": "gptq", "bits": 4, "group_size": 8, "is_marlin_format": true], "Marlin"),
        (["quant_method": "gptq", "bits": 4, "group_size": 8, "checkpoint_format": "marlin"], "'marlin'"),
        (["quant_method": "gptq", "bits": 3, "group_size": 8], "3-bit GPTQ"),
        (["quant_method": "gptq", "bits": 4, "group_size": 8, "desc_act": true], "g_idx"),
    ]
    for (config, expected) in cases {
        let scratch = ScratchDirectory()
        let folder = try quantizedFolder(scratch, quantization: config, tensors: tensors)
        #expect(throws: QuantizedLayoutError.self) { try LogicalCheckpoint(Checkpoint(path: folder)) }
        do { _ = try LogicalCheckpoint(Checkpoint(path: folder)) } catch { #expect("\(error)".contains(expected), "\(error)") }
    }
    // The same parts with a plain config read: codes 1…8 less the zero 8, times 1.
    let scratch = ScratchDirectory()
    let folder = try quantizedFolder(scratch, quantization: ["quant_method": "gptq", "bits": 4, "group_size": 8, "checkpoint_format": "gptq"], tensors: tensors)
    let logical = try LogicalCheckpoint(Checkpoint(path: folder))
    let weight = try #require(logical.tensors.first { $0.name == "p.weight" })
    #expect(weight.shape == [8, 8])
    #expect(logical.float32(weight) == (0..<8).flatMap { _ in (-7...0).map(Float.init) })
}

@Test("g_idx values outside the groups, and AWQ files in the GEMV layout, are refused naming the tensor and what was expected")
func badGroupIndexAndAWQLayoutRefused() throws {
    let scratch = ScratchDirectory()
    let gptq = try quantizedFolder(scratch, quantization: ["quant_method": "gptq", "bits": 4, "group_size": 8, "desc_act": true], tensors: [
        ("p.qweight", .i32, [1, 8], words([UInt32](repeating: 0, count: 8))), ("p.qzeros", .i32, [1, 1], words([0])),
        ("p.scales", .f16, [1, 8], halves([Float](repeating: 1, count: 8))), ("p.g_idx", .i32, [8], words([0, 0, 0, 0, 0, 0, 0, 7])),
    ])
    do {
        _ = try LogicalCheckpoint(Checkpoint(path: gptq))
        Issue.record("a g_idx of 7 with one group was accepted")
    } catch { #expect("\(error)".contains("p.g_idx") && "\(error)".contains("0..<1")) }

    let other = ScratchDirectory()
    // GEMV stores qweight [N, K/8]: 16 outputs × 64 inputs as [16, 8] where GEMM expects [64, 2].
    let awq = try quantizedFolder(other, quantization: ["quant_method": "awq", "bits": 4, "group_size": 64, "version": "gemm"], tensors: [
        ("p.qweight", .i32, [16, 8], words([UInt32](repeating: 0, count: 128))), ("p.qzeros", .i32, [1, 2], words([0, 0])),
        ("p.scales", .f16, [1, 16], halves([Float](repeating: 1, count: 16))),
    ])
    do {
        _ = try LogicalCheckpoint(Checkpoint(path: awq))
        Issue.record("an AWQ GEMV qweight was accepted as GEMM")
    } catch { #expect("\(error)".contains("p.qweight") && "\(error)".contains("[K, N/8]"), "\(error)") }
}

/// `W` [rows, columns] and H = XᵀX of correlated inputs X [tokens, columns], seeded.
private func correlatedProblem(rows: Int, columns: Int, tokens: Int, seed: UInt64) -> (w: [Float], h: [Float]) {
    var rng = SeededGenerator(seed: seed)
    func normal() -> Float {
        let u = Float.random(in: Float.ulpOfOne...1, using: &rng), v = Float.random(in: 0...1, using: &rng)
        return (-2 * Foundation.log(u)).squareRoot() * Foundation.cos(2 * .pi * v)
    }
    let w = (0..<(rows * columns)).map { _ in normal() * 0.05 }
    let mix = (0..<(columns * columns)).map { _ in normal() / Float(columns).squareRoot() }
    var x = [Float](repeating: 0, count: tokens * columns)
    for t in 0..<tokens {
        let z = (0..<columns).map { _ in normal() }
        for j in 0..<columns {
            var s: Float = 0
            for i in 0..<columns { s += z[i] * mix[i * columns + j] }
            x[t * columns + j] = s * (j % 7 == 0 ? 4 : 1)  // a few loud channels, as real activations have
        }
    }
    var h = [Float](repeating: 0, count: columns * columns)
    for t in 0..<tokens { for i in 0..<columns { for j in 0..<columns { h[i * columns + j] += x[t * columns + i] * x[t * columns + j] } } }
    return (w, h)
}

/// tr((W − Q) H (W − Q)ᵀ): the output error a quantization causes on the calibration inputs.
private func outputError(_ w: [Float], _ q: [Float], _ h: [Float], rows: Int, columns: Int) -> Double {
    var total = 0.0
    for n in 0..<rows {
        let d = (0..<columns).map { Double(w[n * columns + $0] - q[n * columns + $0]) }
        for i in 0..<columns { for j in 0..<columns { total += d[i] * Double(h[i * columns + j]) * d[j] } }
    }
    return total
}

@Test("GPTQ's output error on its calibration inputs is below round-to-nearest's, and its codes reproduce its values exactly",
      arguments: [(GPTQOptions.Codes.integer(bits: 4, symmetric: true), Int?.some(32), false, false), (.integer(bits: 4, symmetric: false), 32, false, false),
                  (.integer(bits: 4, symmetric: true), 32, true, false), (.integer(bits: 4, symmetric: true), 32, true, true),
                  (.integer(bits: 4, symmetric: true), nil, true, false), (.integer(bits: 8, symmetric: true), 64, false, false),
                  (.fourBit(.nf4), 64, false, false), (.fourBit(.nf4), 64, true, true)])
func gptqBeatsRoundToNearest(codes: GPTQOptions.Codes, groupSize: Int?, actOrder: Bool, staticGroups: Bool) throws {
    let (rows, columns) = (24, 192)
    let (w, h) = correlatedProblem(rows: rows, columns: columns, tokens: 400, seed: 11)
    var options = GPTQOptions(codes: codes, groupSize: groupSize)
    options.actOrder = actOrder
    options.staticGroups = staticGroups
    options.blockSize = 64  // several lazy blocks
    let result = try GPTQ.quantize(w, hessian: h, rows: rows, columns: columns, options: options, name: "w")
    // Round-to-nearest: the same quantizer with no error feedback (an identity Hessian).
    var identity = [Float](repeating: 0, count: columns * columns)
    for c in 0..<columns { identity[c * columns + c] = 1 }
    var plain = options
    plain.actOrder = false
    plain.staticGroups = false
    let rtn = try GPTQ.quantize(w, hessian: identity, rows: rows, columns: columns, options: plain, name: "w")
    let gptqError = outputError(w, result.quantized, h, rows: rows, columns: columns)
    let rtnError = outputError(w, rtn.quantized, h, rows: rows, columns: columns)
    #expect(gptqError < 0.8 * rtnError, "GPTQ \(gptqError) vs round-to-nearest \(rtnError)")
    if let integer = result.integer {
        #expect(integer.dequantized.map(\.bitPattern) == result.quantized.map(\.bitPattern))
        if actOrder && !staticGroups, let g = groupSize {
            let index = try #require(integer.groupIndex, "act-order with dynamic groups writes a g_idx")
            #expect((0..<(columns / g)).allSatisfy { group in index.filter { $0 == group }.count == g })
        } else {
            #expect(integer.groupIndex == nil)
        }
    }
}

@Test("GPTQ zeroes a dead input column, raises the dampening of a singular Hessian, and refuses one that never becomes positive definite")
func gptqHessianEdgeCases() throws {
    let (rows, columns) = (8, 32)
    let (w, h0) = correlatedProblem(rows: rows, columns: columns, tokens: 64, seed: 3)
    var h = h0
    for i in 0..<columns { h[i * columns + 5] = 0; h[5 * columns + i] = 0 }  // input 5 never active
    let options = GPTQOptions(codes: .integer(bits: 4, symmetric: true), groupSize: 16)
    let result = try GPTQ.quantize(w, hessian: h, rows: rows, columns: columns, options: options)
    #expect((0..<rows).allSatisfy { result.quantized[$0 * columns + 5] == 0 })
    // One negative eigenvalue (−0.5): factorable once the dampening passes 0.5 / mean(diag).
    let indefinite = (0..<(columns * columns)).map { $0 == 0 ? Float(-0.5) : ($0 / columns == $0 % columns ? 1 : 0) }
    let raised = try GPTQ.quantize(w, hessian: indefinite, rows: rows, columns: columns, options: options)
    #expect(raised.damp > 0.5 && raised.damp < 0.6)
    var tiny = options
    tiny.damp = 1e-12
    // Negative definite: no dampening below 1 helps.
    let negative = (0..<(columns * columns)).map { $0 / columns == $0 % columns ? Float(-1) : 0 }
    #expect {
        try GPTQ.quantize(w, hessian: negative, rows: rows, columns: columns, options: tiny, name: "w")
    } throws: { error in
        "\(error)".contains("'w'") && "\(error)".contains("not positive definite")
    }
}

/// Mean KL(base ‖ candidate) over the next-token distributions of `chunks`.
private func meanKL(_ base: TransformerModel, _ candidate: TransformerModel, chunks: [[Int]]) -> Double {
    var total = 0.0, count = 0
    let vocabulary = base.config.vocabularySize
    for chunk in chunks {
        let p = base.logits(chunk), q = candidate.logits(chunk)
        for row in 0..<chunk.count {
            let a = p[(row * vocabulary)..<((row + 1) * vocabulary)].map(Double.init), b = q[(row * vocabulary)..<((row + 1) * vocabulary)].map(Double.init)
            let la = Foundation.log(a.map { Foundation.exp($0 - a.max()!) }.reduce(0, +)) + a.max()!
            let lb = Foundation.log(b.map { Foundation.exp($0 - b.max()!) }.reduce(0, +)) + b.max()!
            total += zip(a, b).reduce(0.0) { $0 + Foundation.exp($1.0 - la) * (($1.0 - la) - ($1.1 - lb)) }
            count += 1
        }
    }
    return total / Double(count)
}

@Test("GPTQ, calibrated on one part of a text, brings tiny-llama's predictions on another part closer to bf16's than round-to-nearest does; AWQ's stay as close")
func calibratedMethodsBeatRoundToNearest() throws {
    let tokens = readBytes(Paths.fixture("eval/eval_tokens_u32le.bin")).withUnsafeBytes { raw in
        (0..<(raw.count / 4)).map { Int(raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self)) }
    }
    try #require(tokens.count > 14_000)
    let scratch = ScratchDirectory()
    let input = try Checkpoint(path: Paths.fixture("models/tiny-llama"))
    let scheme = IntegerScheme(bits: 4, groupSize: 32)
    _ = try CheckpointQuantizer.quantize(input, to: scratch.file("rtn"), options: QuantizationOptions(scheme: scheme, threads: .single))
    for method in [CalibrationOptions.Method.gptq, .awq, .awqGPTQ] {
        var calibration = CalibrationOptions(tokens: Array(tokens[0..<2048]), context: 64, bos: nil, source: "eval tokens")
        calibration.method = method
        calibration.actOrder = method.runsGPTQ
        let report = try CalibratedQuantizer.quantize(input, to: scratch.file(method.rawValue), options: QuantizationOptions(scheme: scheme),
                                                      calibration: calibration)
        #expect(report.tensors.count == 28)
        #expect(report.notes.contains { $0.hasPrefix("\(method.rawValue.uppercased()) calibrated on 32 chunks of 64 tokens") })
    }
    let evaluation = (0..<8).map { Array(tokens[(12_000 + 64 * $0)..<(12_064 + 64 * $0)]) }
    let base = try TransformerModel(checkpoint: input)
    func kl(_ name: String) throws -> Double { meanKL(base, try TransformerModel(checkpoint: Checkpoint(path: scratch.file(name))), chunks: evaluation) }
    let (rtn, gptq, awq, both) = (try kl("rtn"), try kl("gptq"), try kl("awq"), try kl("awq+gptq"))
    #expect(gptq < 0.9 * rtn, "GPTQ \(gptq) vs round-to-nearest \(rtn)")
    #expect(awq < 1.05 * rtn, "AWQ \(awq) vs round-to-nearest \(rtn)")
    #expect(both < 0.9 * rtn, "AWQ + GPTQ \(both) vs round-to-nearest \(rtn)")
    print("tiny-llama int4 g32 mean KL on held-out tokens: round-to-nearest \(rtn), GPTQ \(gptq), AWQ \(awq), AWQ + GPTQ \(both)")
}

@Test("AWQ folds its scales into the norms it divides: the written norm weights differ from the input's, the file loads as pack-quantized")
func awqFoldsIntoNorms() throws {
    let tokens = readBytes(Paths.fixture("eval/eval_tokens_u32le.bin")).withUnsafeBytes { raw in
        (0..<2048).map { Int(raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self)) }
    }
    let scratch = ScratchDirectory()
    let input = try Checkpoint(path: Paths.fixture("models/tiny-llama"))
    var calibration = CalibrationOptions(tokens: tokens, context: 64, bos: nil, source: "eval tokens")
    calibration.method = .awq
    _ = try CalibratedQuantizer.quantize(input, to: scratch.file("awq"), options: QuantizationOptions(scheme: IntegerScheme(bits: 4, groupSize: 32)),
                                         calibration: calibration)
    let output = try Checkpoint(path: scratch.file("awq"))
    let norms = input.entries.filter { $0.info.name.hasSuffix("layernorm.weight") }
    let changed = norms.filter { FloatValues.array(input.view($0)) != FloatValues.array(output.view(named: $0.info.name)!) }
    #expect(!changed.isEmpty)
    #expect(output.entry(named: "model.norm.weight").map { FloatValues.array(output.view($0)) } == FloatValues.array(input.view(named: "model.norm.weight")!))
    #expect(try LogicalCheckpoint(output).quantizationDescription == "compressed-tensors pack-quantized")
}

@Test("AWQ's search scales loud input channels up and lowers the products' output error below plain rounding's on the calibration inputs")
func awqSearchLowersOutputError() throws {
    let (rows, columns) = (48, 128)
    let (w, h) = correlatedProblem(rows: rows, columns: columns, tokens: 300, seed: 21)
    // mean |x| per channel from the Gram matrix's diagonal (RMS, a stand-in with the same loud channels).
    let meanAbs = (0..<columns).map { h[$0 * columns + $0].squareRoot() / Float(300).squareRoot() }
    let search = AWQ.search(weights: [(w, rows)], columns: columns, gram: h, meanAbs: meanAbs, groupSize: 32) { values, rows, columns in
        let codes = values.withUnsafeBufferPointer {
            IntegerQuantizer.roundToNearest($0, rows: rows, columns: columns, bits: 4, groupSize: 32, symmetric: true, rule: .compressedTensors,
                                            arithmetic: .f32, scaleType: .f32)
        }
        return codes.dequantized
    }
    #expect(search.alpha > 0)
    #expect(search.error < 0.9 * search.plainError, "AWQ \(search.error) vs plain \(search.plainError)")
    // The loud channels (every 7th) get the larger scales.
    let loudScales: [Float] = (0..<columns).filter { $0 % 7 == 0 }.map { search.scales[$0] }
    let quietScales: [Float] = (0..<columns).filter { $0 % 7 != 0 }.map { search.scales[$0] }
    let loud: Float = loudScales.reduce(0, +) / Float(loudScales.count)
    let quiet: Float = quietScales.reduce(0, +) / Float(quietScales.count)
    #expect(loud > quiet)
}

@Test("Shapes a format's words cannot hold are refused before anything is written: AWQ needs rows in eights, GPTQ rows and columns in words, AWQ 4 bits")
func unpackableShapesRefused() {
    let awq = IntegerScheme(bits: 4, groupSize: 32, symmetric: false, format: .awq)
    #expect("\(awq.refusal(selected: [("w.weight", [12, 64])], file: "m")!)".contains("multiple of 8 rows"))
    #expect(awq.refusal(selected: [("w.weight", [16, 64])], file: "m") == nil)
    let gptq = IntegerScheme(bits: 8, groupSize: nil, format: .gptq)
    #expect("\(gptq.refusal(selected: [("w.weight", [16, 66])], file: "m")!)".contains("multiples of 4"))
    #expect("\(IntegerScheme(bits: 8, groupSize: 32, format: .awq).refusal(selected: [], file: "m")!)".contains("4-bit codes only"))
}

@Test("Act-order within groups (act_group_aware) keeps g_idx as k / G, lowers the output error below round-to-nearest's, and works for NF4 blocks")
func groupAwareActOrder() throws {
    let (rows, columns) = (24, 200)  // 200 = 3 groups of 64 and a tail of 8
    let (w, h) = correlatedProblem(rows: rows, columns: columns, tokens: 400, seed: 17)
    var identity = [Float](repeating: 0, count: columns * columns)
    for c in 0..<columns { identity[c * columns + c] = 1 }
    for codes in [GPTQOptions.Codes.integer(bits: 4, symmetric: true), .integer(bits: 4, symmetric: false)] {
        var options = GPTQOptions(codes: codes, groupSize: 64)
        options.actOrder = true
        options.groupAwareOrder = true
        let result = try GPTQ.quantize(w, hessian: h, rows: rows, columns: columns, options: options)
        let integer = try #require(result.integer)
        #expect(integer.groupIndex == nil)
        #expect(integer.dequantized.map(\.bitPattern) == result.quantized.map(\.bitPattern))
        let rtn = try GPTQ.quantize(w, hessian: identity, rows: rows, columns: columns, options: GPTQOptions(codes: codes, groupSize: 64))
        #expect(outputError(w, result.quantized, h, rows: rows, columns: columns) < 0.8 * outputError(w, rtn.quantized, h, rows: rows, columns: columns))
    }
    var nf4 = GPTQOptions(codes: .fourBit(.nf4), groupSize: 64)
    nf4.actOrder = true
    nf4.groupAwareOrder = true
    let (w2, h2) = correlatedProblem(rows: rows, columns: 192, tokens: 400, seed: 18)
    let result = try GPTQ.quantize(w2, hessian: h2, rows: rows, columns: 192, options: nf4)
    #expect(result.absmax?.count == rows * 3)
}

@Test("Calibration tokens outside the model's vocabulary are refused naming the text and the position, and nothing is written")
func calibrationTokensOutsideVocabularyRefused() throws {
    let scratch = ScratchDirectory()
    let input = try Checkpoint(path: Paths.fixture("models/tiny-llama"))
    var tokens = [Int](repeating: 5, count: 128)
    tokens[70] = 9_999  // tiny-llama has 512 embedding rows
    #expect(throws: EvaluationError.tokenOutOfRange(file: "calibration.txt", index: 70, token: 9_999, vocabulary: 512)) {
        try CalibratedQuantizer.quantize(input, to: scratch.file("out"), options: QuantizationOptions(scheme: IntegerScheme(bits: 4, groupSize: 32)),
                                         calibration: CalibrationOptions(tokens: tokens, context: 64, bos: nil, source: "calibration.txt"))
    }
    #expect(scratch.contents.isEmpty)
}

@Test("AWQ's clip search keeps, per row and group, the maximum that AutoAWQ's token-by-token search keeps, and lowers the output error")
func awqClipMatchesTokenSearch() throws {
    let (rows, columns, tokens, group) = (16, 128, 200, 32)
    var rng = SeededGenerator(seed: 33)
    func normal() -> Float {
        let u = Float.random(in: Float.ulpOfOne...1, using: &rng), v = Float.random(in: 0...1, using: &rng)
        return (-2 * Foundation.log(u)).squareRoot() * Foundation.cos(2 * .pi * v)
    }
    // Weights with a few outliers (what clipping trades off), inputs with loud channels.
    let w = (0..<(rows * columns)).map { i in normal() * (i % 37 == 0 ? 0.4 : 0.05) }
    let x = (0..<(tokens * columns)).map { i in normal() * (i % columns % 5 == 0 ? 3 : 1) }
    var gram = [Float](repeating: 0, count: columns * columns)
    for t in 0..<tokens { for i in 0..<columns { for j in 0..<columns { gram[i * columns + j] += x[t * columns + i] * x[t * columns + j] } } }
    func fakeQuantize(_ values: [Float], _ rows: Int, _ columns: Int) -> [Float] {
        values.withUnsafeBufferPointer {
            IntegerQuantizer.roundToNearest($0, rows: rows, columns: columns, bits: 4, groupSize: group, symmetric: true, rule: .compressedTensors,
                                            arithmetic: .f32, scaleType: .f32).dequantized
        }
    }
    let clipped = AWQ.clipped(w, rows: rows, columns: columns, gram: gram, groupSize: group, fakeQuantize: fakeQuantize)

    // AutoAWQ's loop, over every token: err = mean over tokens of (Σ_group x·(q − w))², the first best shrink kept.
    let groups = columns / group
    var bestError = [Double](repeating: .infinity, count: rows * groups), bestFactor = [Float](repeating: 1, count: rows * groups)
    for step in 0..<10 {
        let factor = 1 - Float(step) / 20
        var candidate = w
        for r in 0..<rows {
            for g in 0..<groups {
                let limit = (g * group..<(g + 1) * group).map { abs(w[r * columns + $0]) }.max()! * factor
                for c in g * group..<(g + 1) * group { candidate[r * columns + c] = min(max(w[r * columns + c], -limit), limit) }
            }
        }
        let q = fakeQuantize(candidate, rows, columns)
        for r in 0..<rows {
            for g in 0..<groups {
                var error = 0.0
                for t in 0..<tokens {
                    var out = 0.0
                    for c in g * group..<(g + 1) * group { out += Double(x[t * columns + c]) * Double(q[r * columns + c] - w[r * columns + c]) }
                    error += out * out
                }
                if error / Double(tokens) < bestError[r * groups + g] { bestError[r * groups + g] = error / Double(tokens); bestFactor[r * groups + g] = factor }
            }
        }
    }
    var same = 0
    for r in 0..<rows {
        for g in 0..<groups {
            let limit = (g * group..<(g + 1) * group).map { abs(w[r * columns + $0]) }.max()! * bestFactor[r * groups + g]
            let expected = (g * group..<(g + 1) * group).map { min(max(w[r * columns + $0], -limit), limit) }
            if Array(clipped[(r * columns + g * group)..<(r * columns + (g + 1) * group)]) == expected { same += 1 }
        }
    }
    // The Gram form sums in another order than the token loop: a near-tie may fall the other way, rarely.
    #expect(same >= rows * groups - 1, "\(same) of \(rows * groups) groups keep AutoAWQ's maximum")
    #expect(bestFactor.contains { $0 < 1 }, "the outliers make some group clip")
    let plain = outputError(w, fakeQuantize(w, rows, columns), gram, rows: rows, columns: columns)
    let withClip = outputError(w, fakeQuantize(clipped, rows, columns), gram, rows: rows, columns: columns)
    #expect(withClip < plain, "clipped \(withClip) vs plain \(plain)")
}

@Test("AWQ's clip search leaves query and key projections alone, as AutoAWQ does")
func awqClipSkipsQueryAndKey() {
    #expect(CalibratedQuantizer.isQueryOrKey("model.layers.0.self_attn.q_proj.weight"))
    #expect(CalibratedQuantizer.isQueryOrKey("model.layers.3.self_attn.k_proj.weight"))
    #expect(!CalibratedQuantizer.isQueryOrKey("model.layers.0.self_attn.v_proj.weight"))
    #expect(!CalibratedQuantizer.isQueryOrKey("model.layers.0.mlp.down_proj.weight"))
}

@Test("The Hessian collector counts each chunk's first token firstTokenWeight times: XᵀX + (w − 1)·x₀ᵀx₀, chunk by chunk, and weight 1 is the plain XᵀX")
func hessianWeighsFirstToken() throws {
    let (rows, columns) = (5, 4)
    // Small integers: every sum is exact in f32, so the expected values are exact too.
    let chunks: [[Float]] = [(0..<(rows * columns)).map { Float($0 % 7) - 3 }, (0..<(rows * columns)).map { Float($0 % 5) - 1 }]
    func expected(weight: Float) -> [Float] {
        var h = [Float](repeating: 0, count: columns * columns)
        for x in chunks {
            for r in 0..<rows {
                for i in 0..<columns { for j in 0..<columns { h[i * columns + j] += (r == 0 ? weight : 1) * x[r * columns + i] * x[r * columns + j] } }
            }
        }
        return h
    }
    for weight: Float in [1, 8, 0] {
        let collector = HessianCollector(threads: .single, firstTokenWeight: weight)
        for x in chunks { x.withUnsafeBufferPointer { collector.observe("p", $0.baseAddress!, rows: rows, columns: columns) } }
        let (h, tokens) = try #require(collector.hessian("p.weight"))
        #expect(tokens == 2 * rows)
        #expect(h == expected(weight: weight), "weight \(weight)")
    }
    // GPTQ alone counts the sink 8 times unless told; the AWQ methods count every token alike.
    var options = CalibrationOptions(tokens: [], context: 64, bos: nil, source: "t")
    #expect(options.method == .gptq && options.effectiveFirstTokenWeight == 8)
    for method in [CalibrationOptions.Method.awq, .awqGPTQ] {
        options.method = method
        #expect(options.effectiveFirstTokenWeight == 1, "\(method)")
    }
    options.firstTokenWeight = 3
    #expect(options.effectiveFirstTokenWeight == 3)
    // GPTQ alone measures a weight per product unless a weight is given or the AWQ methods run.
    var gptq = CalibrationOptions(tokens: [], context: 64, bos: nil, source: "t")
    #expect(gptq.effectiveMeasuresFirstTokenWeights)
    gptq.firstTokenWeight = 8
    #expect(!gptq.effectiveMeasuresFirstTokenWeights)
    gptq.measuresFirstTokenWeights = true
    #expect(gptq.effectiveMeasuresFirstTokenWeights)
    options.firstTokenWeight = nil
    #expect(!options.effectiveMeasuresFirstTokenWeights)
    options.measuresFirstTokenWeights = true
    #expect(!options.effectiveMeasuresFirstTokenWeights, "the AWQ methods never measure")
}
