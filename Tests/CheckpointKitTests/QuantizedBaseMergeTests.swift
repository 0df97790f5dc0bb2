@testable import CheckpointKit
import Foundation
import TestSupport
import Testing

/// Merging into quantized bases: the merged floats are the dequantized base plus the update (B·A
/// times the scaling, computed here in double precision from the adapter file), and a GGUF base
/// merged with --requantize keeps every tensor's type, copying unchanged ones byte for byte.

/// Checks every tensor of `merged` (an f32 merge of `adapter` into `base`) against
/// dequantize(base) + scaling·B·A; returns how many tensors the adapter changed.
private func expectDequantizedPlusUpdate(base: String, adapter: String, merged: String, scaling: Double) throws -> Int {
    let logical = try LogicalCheckpoint(try Checkpoint(path: base))
    let output = try Checkpoint(path: merged)
    let weights = try SafetensorsFile(path: adapter + "/adapter_model.safetensors")
    var changed = 0
    for tensor in logical.tensors {
        let expected = logical.float32(tensor, threads: .single)
        guard let view = output.view(named: tensor.name) else {
            Issue.record("\(tensor.name) missing from the merged checkpoint")
            continue
        }
        let got = FloatValues.array(view)
        let module = "base_model.model." + tensor.name.dropLast(".weight".count)
        guard tensor.name.hasSuffix(".weight"), let a = weights.view(named: module + ".lora_A.weight"),
              let b = weights.view(named: module + ".lora_B.weight")
        else {
            #expect(got == expected, "\(tensor.name): an unchanged tensor is the dequantized base, bit for bit")
            continue
        }
        changed += 1
        let av = FloatValues.array(a), bv = FloatValues.array(b)
        let rank = a.info.shape[0], columns = a.info.shape[1], rows = b.info.shape[0]
        var worst = 0.0, largest = 0.0
        for r in 0..<rows {
            for c in 0..<columns {
                var delta = 0.0
                for k in 0..<rank { delta += Double(bv[r * rank + k]) * Double(av[k * columns + c]) }
                delta *= scaling
                largest = max(largest, abs(delta))
                let want = Double(expected[r * columns + c]) + delta
                worst = max(worst, abs(Double(got[r * columns + c]) - want) - Double(Float(want).ulp))
            }
        }
        // sgemm sums the rank in f32: the update itself carries f32 rounding, nothing more.
        #expect(worst <= 1e-6 * largest, "\(tensor.name): merged − (dequantized base + update) = \(worst), update up to \(largest)")
    }
    return changed
}

/// The seeded 256-wide llama as a Q4_K_M GGUF, and an r4 adapter on Q, K, gate and down of two layers.
private func q4KMBaseAndAdapter(_ scratch: ScratchDirectory) throws -> (gguf: String, adapter: String) {
    try SeededModels.write("untied", to: scratch.file("untied"), tokenizerFolder: Paths.fixture("models/tiny-llama"))
    var options = GGUFExport.Options()
    options.threads = .single
    _ = try GGUFExport.convert(try Checkpoint(path: scratch.file("untied")), to: scratch.file("base.gguf"), preset: GGUFPreset(name: "q4_k_m")!,
                               options: options)
    var tensors: [(String, [Int])] = []
    for layer in [0, 2] {
        let p = "base_model.model.model.layers.\(layer)."
        tensors += [(p + "self_attn.q_proj.lora_A.weight", [4, 256]), (p + "self_attn.q_proj.lora_B.weight", [256, 4]),
                    (p + "self_attn.k_proj.lora_A.weight", [4, 256]), (p + "self_attn.k_proj.lora_B.weight", [64, 4]),
                    (p + "mlp.gate_proj.lora_A.weight", [4, 256]), (p + "mlp.gate_proj.lora_B.weight", [320, 4]),
                    (p + "mlp.down_proj.lora_A.weight", [4, 320]), (p + "mlp.down_proj.lora_B.weight", [256, 4])]
    }
    let config = #"{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "k_proj", "gate_proj", "down_proj"]}"#
    let adapter = try makeAdapter(scratch, name: "adapter", config: config, tensors: tensors, seed: 41)
    return (scratch.file("base.gguf"), adapter)
}

@Test("Merged into a Q4_K_M GGUF, the floats are the dequantized base plus the update")
func mergeIntoQ4KMGGUF() throws {
    let scratch = ScratchDirectory()
    let (gguf, adapter) = try q4KMBaseAndAdapter(scratch)
    #expect(try GGUFFile(path: gguf).info(named: "blk.0.attn_q.weight")?.type == .q4_K)
    _ = try CheckpointMerger.merge(base: try Checkpoint(path: gguf), adapters: [(try LoRAAdapter(folder: adapter), 1)], to: scratch.file("merged"),
                                   options: MergeOptions(dtype: .f32, threads: .single))
    #expect(try expectDequantizedPlusUpdate(base: gguf, adapter: adapter, merged: scratch.file("merged"), scaling: 2) == 8)
}

@Test("With --requantize a GGUF base stays a GGUF: types kept, unchanged tensors copied, changed ones re-encoded from the merged floats")
func mergeIntoGGUFKeepsTypes() throws {
    let scratch = ScratchDirectory()
    let (gguf, adapter) = try q4KMBaseAndAdapter(scratch)
    let checkpoint = try Checkpoint(path: gguf)
    let loaded = try LoRAAdapter(folder: adapter)
    let report = try CheckpointMerger.merge(base: checkpoint, adapters: [(loaded, 1)], to: scratch.file("merged.gguf"),
                                            options: MergeOptions(requantize: true, threads: .single))
    _ = try CheckpointMerger.merge(base: checkpoint, adapters: [(loaded, 1)], to: scratch.file("floats"),
                                   options: MergeOptions(dtype: .f32, threads: .single))
    #expect(report.rows.count == 8 && report.rows.allSatisfy { $0.requantization != nil && $0.baseQuantizationRMSE != nil && $0.updateRMS != nil })
    let base = try GGUFFile(path: gguf), merged = try GGUFFile(path: scratch.file("merged.gguf")), floats = try Checkpoint(path: scratch.file("floats"))
    #expect(merged.tensors.map(\.name) == base.tensors.map(\.name) && merged.tensors.map(\.type) == base.tensors.map(\.type))
    #expect(merged.metadata.map(\.0) == base.metadata.map(\.0))
    var reencoded = 0
    for info in base.tensors {
        let out = merged.info(named: info.name)!
        let hf = GGUFLlamaNames.hfName(info.name)!
        let changed = report.rows.contains { $0.tensor == hf }
        if !changed {
            #expect(Array(merged.bytes(out)) == Array(base.bytes(info)), "\(info.name) is copied as stored")
            continue
        }
        var values = FloatValues.array(floats.view(named: hf)!)
        let heads = info.name.contains("attn_q") ? 4 : info.name.contains("attn_k") ? 1 : nil
        if let heads { values = GGUFLlamaNames.permuteRows(values, rows: info.shape[0], columns: info.shape[1], heads: heads, toGGUF: true) }
        let expected = try GGUFExport.encode(values, as: info.type, dims: info.dimensions, importance: nil, threads: .single)
        #expect(Array(merged.bytes(out)) == expected, "\(info.name) is the merged floats encoded as \(info.type.name)")
        reencoded += 1
    }
    #expect(reencoded == 8)
}

@Test("Merged into a pack-quantized W4A16 folder, the floats are the dequantized base plus the update")
func mergeIntoPackQuantized() throws {
    let scratch = ScratchDirectory()
    let base = Paths.fixture("models/tiny-llama-ct-w4a16"), adapter = Paths.fixture("lora/adapters/llama-lora-all-linear")
    let report = try CheckpointMerger.merge(base: try Checkpoint(path: base), adapters: [(try LoRAAdapter(folder: adapter), 1)],
                                            to: scratch.file("merged"), options: MergeOptions(dtype: .f32, threads: .single))
    #expect(try expectDequantizedPlusUpdate(base: base, adapter: adapter, merged: scratch.file("merged"), scaling: 2) == report.rows.count)
    // Each row says how large the update is beside what the base's own 4-bit format costs that tensor.
    #expect(report.rows.allSatisfy { ($0.updateRMS ?? 0) > 0 && ($0.baseQuantizationRMSE ?? 0) > 0 })
}

@Test("An update smaller than the base's quantization error is reported as lost in requantization")
func tinyUpdateIsReportedLost() throws {
    let scratch = ScratchDirectory()
    let base = Paths.fixture("models/tiny-llama-ct-w4a16"), adapter = Paths.fixture("lora/adapters/llama-lora-all-linear")
    let report = try CheckpointMerger.merge(base: try Checkpoint(path: base), adapters: [(try LoRAAdapter(folder: adapter), 1e-4)],
                                            to: scratch.file("merged"), options: MergeOptions(requantize: true, threads: .single))
    #expect(report.rows.allSatisfy { $0.updateRMS! < $0.baseQuantizationRMSE! })
    #expect(report.notes.contains { $0.hasPrefix("\(report.rows.count) of \(report.rows.count) merged tensors change by less than the base's quantization error") })
}

@Test("A GGUF base of an architecture ckpt cannot map back to Hugging Face names is refused by name, nothing written")
func unmappedGGUFBaseIsRefused() throws {
    let scratch = ScratchDirectory()
    var options = GGUFExport.Options()
    options.threads = .single
    _ = try GGUFExport.convert(try Checkpoint(path: Paths.fixture("models/tiny-qwen2")), to: scratch.file("qwen2.gguf"), preset: .f16, options: options)
    #expect(throws: GGUFSourceError.unsupportedArchitecture(file: scratch.file("qwen2.gguf"), found: "qwen2")) {
        _ = try Checkpoint(path: scratch.file("qwen2.gguf"))
    }
}
