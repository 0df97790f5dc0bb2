@testable import CheckpointKit
import Foundation
import TestSupport
import Testing

/// Goldens from llama.cpp itself (convert_hf_to_gguf.py --outtype bf16, then llama-quantize, and
/// llama-imatrix for the importance matrices; pinned 0c1e570): fixtures/gguf-presets/, made by
/// tools/make_gguf_preset_goldens.py from two seeded llama models regenerated here bit for bit.
private let goldens: JSONValue = try! readJSON(Paths.fixture("gguf-presets/goldens.json"))

/// The seeded model `name` written once per test run, and its GGUF names, shapes and tensors.
private final class SeededModel: @unchecked Sendable {
    let scratch = ScratchDirectory()
    let folder: String
    let checkpoint: Checkpoint
    let logical: LogicalCheckpoint
    init(_ name: String) {
        folder = scratch.file(name)
        try! SeededModels.write(name, to: folder, tokenizerFolder: Paths.fixture("models/tiny-llama"))
        checkpoint = try! Checkpoint(path: folder)
        logical = try! LogicalCheckpoint(checkpoint)
    }
    var planTensors: [GGUFTypePlan.Tensor] {
        logical.tensors.compactMap { t in
            GGUFLlamaNames.ggufName(t.name).map { GGUFTypePlan.Tensor(name: $0, dims: Array(t.shape.reversed()), inputType: t.shape.count == 1 ? .f32 : .bf16) }
        }
    }
    var model: GGUFTypePlan.Model {
        let s = SeededModels.shapes[folder.split(separator: "/").last.map(String.init)!]!
        return GGUFTypePlan.Model(architecture: "llama", layers: s.layers, heads: s.heads, kvHeads: s.kvHeads, experts: 0)
    }
}

private let models = ["untied": SeededModel("untied"), "tied": SeededModel("tied")]

/// A golden run's key (e.g. "Q4_K_M+imatrix", "overrides") as a preset and options.
private func setting(_ key: String, model: String) throws -> (GGUFPreset, GGUFTypePlan.Options, ImportanceMatrix?) {
    var options = GGUFTypePlan.Options()
    var importance: ImportanceMatrix? = nil
    var presetName = key
    if key.hasSuffix("+imatrix") {
        presetName = String(key.dropLast(8))
        importance = try ImportanceMatrix(reading: Paths.fixture("gguf-presets/\(model).imatrix.gguf"))
        options.hasImportance = true
    }
    switch key {
    case "overrides": presetName = "Q4_K_M"; options.overrides = [("attn_v", .q8_0), ("ffn_(up|gate)", .q5_K)]
    case "leave-output": presetName = "Q4_K_M"; options.leaveOutputTensor = true
    case "output-type": presetName = "Q3_K_M"; options.outputType = .q5_K; options.tokenEmbeddingType = .q4_K
    case "pure": presetName = "Q4_K_M"; options.pure = true
    default: break
    }
    return (try #require(GGUFPreset(name: presetName)), options, importance)
}

private func runs(_ model: String) -> [String] {
    (goldens["models"]?[model]?.objectMembers ?? []).map(\.0).filter { $0 != "config" && $0 != "bf16" }.sorted()
}

@Test("Every preset, with and without an imatrix, with overrides, types every tensor as llama-quantize does",
      arguments: ["untied", "tied"])
func presetTypesMatchLlamaQuantize(model name: String) throws {
    let model = try #require(models[name])
    #expect(runs(name).count == 16 + 8 + 4)
    for key in runs(name) {
        let golden = try #require(goldens["models"]?[name]?[key])
        let (preset, options, _) = try setting(key, model: name)
        if golden["refused"] != nil {
            #expect(throws: GGUFTypePlan.Failure.self, "\(name) \(key)") {
                _ = try GGUFTypePlan.plan(model.planTensors, model: model.model, preset: preset, options: options)
            }
            continue
        }
        let plan = try GGUFTypePlan.plan(model.planTensors, model: model.model, preset: preset, options: options)
        for (tensor, expected) in try #require(golden.objectMembers) {
            let type = plan[tensor]?.type.name
            #expect(type == expected.arrayValue?[0].stringValue, "\(name) \(key) \(tensor): \(type ?? "missing")")
        }
    }
}

@Test("Each tensor's bytes equal llama-quantize's for every type it takes, with and without the imatrix", arguments: ["untied", "tied"])
func presetBytesMatchLlamaQuantize(model name: String) throws {
    let model = try #require(models[name])
    let importance = try ImportanceMatrix(reading: Paths.fixture("gguf-presets/\(name).imatrix.gguf"))
    // One tensor per (type, imatrix) pair the goldens hold: the bytes of a tensor depend on nothing else.
    var checked = Set<String>()
    for key in runs(name) {
        guard let members = goldens["models"]?[name]?[key]?.objectMembers, goldens["models"]?[name]?[key]?["refused"] == nil else { continue }
        let withImportance = key.hasSuffix("+imatrix")
        for (tensor, expected) in members.sorted(by: { $0.0 < $1.0 }) {
            let type = try #require(expected.arrayValue?[0].stringValue), hash = try #require(expected.arrayValue?[1].stringValue)
            let usesImportance = withImportance && importance.entries[tensor] != nil
            guard !["F32", "BF16"].contains(type), checked.insert("\(type) \(usesImportance)").inserted else { continue }
            let source = try #require(model.logical.tensors.first { GGUFLlamaNames.ggufName($0.name) == tensor })
            var values = model.logical.float32(source, threads: ThreadBudget(2))
            if tensor.hasSuffix("attn_q.weight") || tensor.hasSuffix("attn_k.weight") {
                let s = SeededModels.shapes[name]!
                values = GGUFLlamaNames.permuteRows(values, rows: source.shape[0], columns: source.shape[1],
                                                    heads: tensor.hasSuffix("attn_q.weight") ? s.heads : s.kvHeads, toGGUF: true)
            }
            let ggml = try #require(GGMLType.all.first { $0.name == type })
            let bytes = try #require(values.withUnsafeBufferPointer {
                ggml.encode($0, rowLength: source.shape[1], importance: usesImportance ? importance.weights(for: tensor) : nil, threads: ThreadBudget(2))
            })
            #expect(sha256Hex(bytes) == hash, "\(name) \(key) \(tensor) as \(type)")
        }
    }
    #expect(checked.count >= 10, "\(checked.sorted())")
}

@Test("A whole Q4_K_M file with the imatrix holds llama-quantize's tensors: names, types and bytes")
func wholeFileMatchesLlamaQuantize() throws {
    let model = try #require(models["untied"])
    let scratch = ScratchDirectory()
    var options = GGUFExport.Options()
    options.importance = try ImportanceMatrix(reading: Paths.fixture("gguf-presets/untied.imatrix.gguf"))
    options.threads = ThreadBudget(2)
    let report = try GGUFExport.convert(model.checkpoint, to: scratch.file("q.gguf"), preset: .q4_k_m, options: options)
    #expect(report.notes.count == 4)  // ffn_down rows of 320, one per layer: Q4_K → Q5_0 or Q6_K → Q8_0
    #expect(report.notes.first?.contains("ncols 320 not divisible by 256") == true)
    let file = try GGUFFile(path: scratch.file("q.gguf"))
    let golden = try #require(goldens["models"]?["untied"]?["Q4_K_M+imatrix"]?.objectMembers)
    #expect(file.tensors.map(\.name) == golden.map(\.0).sorted { GGUFTypePlan.llamaOrder($0, $1) })
    for (tensor, expected) in golden {
        let info = try #require(file.info(named: tensor))
        #expect(info.type.name == expected.arrayValue?[0].stringValue, "\(tensor)")
        #expect(sha256Hex(Array(file.bytes(info))) == expected.arrayValue?[1].stringValue, "\(tensor)")
    }
    #expect(file.value("general.file_type")?.intValue == 15)
}

@Test("ckpt-imatrix's sums are llama-imatrix's on the same BF16 GGUF and text: same entries and counts, sums within 1e-2, most within 1e-3")
func importanceMatchesLlamaImatrix() throws {
    let model = try #require(models["untied"])
    let reference = try ImportanceMatrix(reading: Paths.fixture("gguf-presets/untied.imatrix.gguf"))
    let text = Paths.sharedAssets + "/corpora/tinyshakespeare_input.txt"
    guard FileManager.default.fileExists(atPath: text) else {
        print("skipped: \(text) is absent (the shared assets are not here)")
        return
    }
    // As llama-imatrix ran: on the BF16 GGUF, its products' activations rounded as llama.cpp rounds them.
    let scratch = ScratchDirectory()
    _ = try GGUFExport.convert(model.checkpoint, to: scratch.file("bf16.gguf"), type: .bf16, overwrite: false, threads: ThreadBudget(2))
    let gguf = try Checkpoint(path: scratch.file("bf16.gguf"))
    let network = try TransformerModel(checkpoint: gguf, threads: ThreadBudget(2), emulatingLlamaCpp: true)
    let tokenizer = try Tokenizer(checkpoint: model.checkpoint)
    let tokens = tokenizer.encode(String(decoding: readBytes(text).prefix(20_000), as: UTF8.self))
    let plan = try ChunkPlan(tokens: tokens.count, context: 64, chunks: 8, bos: tokenizer.addsBOS ? tokenizer.bosTokenID : nil, file: text)
    let collector = ImportanceCollector(model: network, includeOutput: false)
    collector.collect(network, tokens: tokens, plan: plan)
    let ours = collector.matrix(ggufName: GGUFLlamaNames.ggufName, datasets: [text], chunkSize: 64, chunks: 8)
    #expect(Set(ours.entries.keys) == Set(reference.entries.keys))
    var relative: [Float] = []
    for (name, theirs) in reference.entries {
        let mine = try #require(ours.entries[name])
        #expect(mine.counts == theirs.counts, "\(name)")
        for (a, b) in zip(mine.sums, theirs.sums) { relative.append(abs(a - b) / max(abs(b), 1e-30)) }
    }
    relative.sort()
    let median = relative[relative.count / 2], worst = relative.last ?? .infinity
    print("imatrix vs llama-imatrix: median relative difference \(median), worst \(worst)")
    #expect(median < 1e-3 && worst < 1e-2)
}

@Test("A tensor's layer is the ASCII number between blk. and the next dot, and nothing else is one")
func layerOfTensorName() {
    #expect(GGUFTypePlan.layer(of: "blk.0.attn_q.weight") == 0)
    #expect(GGUFTypePlan.layer(of: "blk.117.ffn_down.weight") == 117)
    #expect(GGUFTypePlan.layer(of: "blk.007.ffn_up.weight") == 7)
    for notLayer in ["token_embd.weight", "blk..attn_q.weight", "blk.12", "blk.1a.x", "blk.-1.x", "blk.١.x", "xblk.1.x", "blk." + String(repeating: "9", count: 40) + ".x"] {
        #expect(GGUFTypePlan.layer(of: notLayer) == nil, "\(notLayer)")
    }
    #expect(GGUFTypePlan.llamaOrder("blk.2.attn_q.weight", "blk.10.attn_k.weight"))
    #expect(GGUFTypePlan.llamaOrder("output.weight", "blk.0.attn_k.weight"))
    #expect(GGUFTypePlan.llamaOrder("blk.3.attn_k.weight", "blk.3.attn_q.weight"))
}

@Test("Byte substring search agrees with String.contains on tensor names and llama.cpp's patterns")
func byteSearchMatchesContains() {
    let names = ["blk.0.attn_q.weight", "blk.12.ffn_gate_inp.weight", "token_embd.weight", "output_norm.weight", "", "a", "é.ffn_up", "blk.1.time_mix_w1.weight"]
    let patterns = GGUFTypePlan.neverQuantized + ["attn_q.weight", "ffn_up", "ffn_gate", "", "weight", "blk.12.ffn_gate_inp.weight!", "é"]
    for name in names {
        for pattern in patterns {
            #expect(name.containsBytes(pattern) == (pattern.isEmpty || name.contains(pattern)), "\(name) / \(pattern)")
        }
    }
}
