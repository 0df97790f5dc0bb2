@testable import CheckpointKit
import Foundation
import TestSupport
import Testing

/// A base folder with one linear layer, an embedding and a tied head (no lm_head stored).
private func makeBase(_ scratch: ScratchDirectory, dtype: DType = .f32) throws -> String {
    let folder = scratch.file("base")
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    try writeF32(folder + "/model.safetensors", [("model.embed_tokens.weight", [10, 6]), ("model.layers.0.self_attn.q_proj.weight", [4, 6]),
                                                 ("model.layers.0.self_attn.q_proj.bias", [4]), ("model.norm.weight", [6])], seed: 1, dtype: dtype)
    FileManager.default.createFile(atPath: folder + "/config.json",
                                   contents: Data(#"{"model_type": "llama", "tie_word_embeddings": true}"#.utf8))
    return folder
}

private let q = "base_model.model.model.layers.0.self_attn.q_proj"

@Test("The sgemm delta equals plain loops for linear, Conv1D-transposed and embedding layouts")
func deltaMatchesReference() throws {
    let scratch = ScratchDirectory()
    try writeF32(scratch.file("t.safetensors"), [("a", [3, 7]), ("b", [5, 3])], seed: 9)
    let file = try SafetensorsFile(path: scratch.file("t.safetensors"))
    let a = file.view(named: "a")!, b = file.view(named: "b")!
    for (operation, shape) in [(LoRAContribution.Operation.linear(transposed: false), [5, 7]), (.linear(transposed: true), [7, 5]), (.embedding, [7, 5])] {
        let c = LoRAContribution(adapterIndex: 0, module: "m", operation: operation, a: a, b: b, rank: 3, scaling: 2.5, weight: 0.5,
                                 magnitude: nil, bias: nil, keys: [])
        let fast = LoRAMath.delta(c, shape: shape), reference = LoRAMath.deltaReference(c, shape: shape)
        #expect(zip(fast, reference).allSatisfy { abs($0 - $1) <= 1e-6 * max(1, abs($1)) }, "\(operation)")
    }
}

@Test("rank_pattern and alpha_pattern match PEFT's (.*\\.)?(key)$ and rsLoRA divides by √r")
func patterns() throws {
    let json = try JSONParser.parse(#"{"peft_type": "LORA", "r": 8, "lora_alpha": 16, "use_rslora": true, "rank_pattern": {"q_proj": 4, "layers.1.mlp.down_proj": 16}, "alpha_pattern": {"down_proj": 8}}"#)
    let config = try AdapterConfig(parsing: json, file: "c.json")
    #expect(config.rankAndScaling(module: "model.layers.0.self_attn.q_proj") == (4, 16 / 2))
    #expect(config.rankAndScaling(module: "model.layers.1.mlp.down_proj") == (16, 8 / 4))
    #expect(config.rankAndScaling(module: "model.layers.2.mlp.down_proj") == (8, 8 / 8.0.squareRoot()))
    #expect(config.rankAndScaling(module: "model.layers.0.self_attn.k_proj") == (8, 16 / 8.0.squareRoot()))
    // A pattern matches whole dotted components only.
    #expect(config.rankAndScaling(module: "model.layers.0.self_attn.xq_proj").rank == 8)
}

@Test("Merging a plain LoRA adds scaling·B·A to exactly the targeted weight")
func plainMerge() throws {
    let scratch = ScratchDirectory()
    let base = try makeBase(scratch)
    let adapter = try makeAdapter(scratch, name: "lora", config: #"{"peft_type": "LORA", "r": 2, "lora_alpha": 4}"#,
                                  tensors: [(q + ".lora_A.weight", [2, 6]), (q + ".lora_B.weight", [4, 2])], seed: 5)
    let checkpoint = try Checkpoint(path: base)
    let lora = try LoRAAdapter(folder: adapter)
    let report = try CheckpointMerger.merge(base: checkpoint, adapters: [(lora, 1)], to: scratch.file("out"), options: .init())
    #expect(report.rows.map(\.tensor) == ["model.layers.0.self_attn.q_proj.weight"])
    let merged = try Checkpoint(path: scratch.file("out"))
    let w = FloatValues.array(checkpoint.view(named: "model.layers.0.self_attn.q_proj.weight")!)
    let a = FloatValues.array(lora.file.view(named: q + ".lora_A.weight")!), b = FloatValues.array(lora.file.view(named: q + ".lora_B.weight")!)
    let out = FloatValues.array(merged.view(named: "model.layers.0.self_attn.q_proj.weight")!)
    for i in 0..<4 {
        for j in 0..<6 {
            let expected = w[i * 6 + j] + 2 * (b[i * 2] * a[j] + b[i * 2 + 1] * a[6 + j])
            #expect(abs(out[i * 6 + j] - expected) < 1e-6)
        }
    }
    for name in ["model.embed_tokens.weight", "model.norm.weight", "model.layers.0.self_attn.q_proj.bias"] {
        #expect(merged.view(named: name)!.byteArray == checkpoint.view(named: name)!.byteArray, "\(name) untouched")
    }
    #expect(merged.config?["tie_word_embeddings"]?.boolValue == true)
}

@Test("Two adapters merge as base + Σ weight·delta")
func weightedAdapters() throws {
    let scratch = ScratchDirectory()
    let base = try makeBase(scratch)
    let config = #"{"peft_type": "LORA", "r": 2, "lora_alpha": 2}"#
    let one = try makeAdapter(scratch, name: "one", config: config, tensors: [(q + ".lora_A.weight", [2, 6]), (q + ".lora_B.weight", [4, 2])], seed: 5)
    let two = try makeAdapter(scratch, name: "two", config: config, tensors: [(q + ".lora_A.weight", [2, 6]), (q + ".lora_B.weight", [4, 2])], seed: 6)
    let checkpoint = try Checkpoint(path: base)
    _ = try CheckpointMerger.merge(base: checkpoint, adapters: [(try LoRAAdapter(folder: one), 0.7), (try LoRAAdapter(folder: two), 0.3)],
                                   to: scratch.file("both"), options: .init())
    _ = try CheckpointMerger.merge(base: checkpoint, adapters: [(try LoRAAdapter(folder: one), 0.7)], to: scratch.file("a"), options: .init())
    let a = try Checkpoint(path: scratch.file("a"))
    _ = try CheckpointMerger.merge(base: a, adapters: [(try LoRAAdapter(folder: two), 0.3)], to: scratch.file("ab"), options: .init())
    let both = FloatValues.array(try Checkpoint(path: scratch.file("both")).view(named: "model.layers.0.self_attn.q_proj.weight")!)
    let sequential = FloatValues.array(try Checkpoint(path: scratch.file("ab")).view(named: "model.layers.0.self_attn.q_proj.weight")!)
    #expect(zip(both, sequential).allSatisfy { abs($0 - $1) < 1e-6 })
}

@Test("An adapter changing only lm_head of a tied model writes both and unties them")
func tiedHead() throws {
    let scratch = ScratchDirectory()
    let base = try makeBase(scratch, dtype: .bf16)
    let adapter = try makeAdapter(scratch, name: "head", config: #"{"peft_type": "LORA", "r": 2, "lora_alpha": 2}"#,
                                  tensors: [("base_model.model.lm_head.lora_A.weight", [2, 6]), ("base_model.model.lm_head.lora_B.weight", [10, 2])],
                                  seed: 3)
    let report = try CheckpointMerger.merge(base: try Checkpoint(path: base), adapters: [(try LoRAAdapter(folder: adapter), 1)],
                                            to: scratch.file("out"), options: .init())
    #expect(report.notes.contains { $0.contains("tie_word_embeddings is set to false") })
    let merged = try Checkpoint(path: scratch.file("out"))
    #expect(merged.config?["tie_word_embeddings"]?.boolValue == false)
    let head = try #require(merged.view(named: "lm_head.weight"))
    let embedding = try #require(merged.view(named: "model.embed_tokens.weight"))
    #expect(head.dtype == .bf16 && head.shape == [10, 6])
    #expect(embedding.byteArray == (try Checkpoint(path: base).view(named: "model.embed_tokens.weight")!.byteArray))
    #expect(head.byteArray != embedding.byteArray)
}

@Test("Bad adapters are refused with the file, the key and what was expected", arguments: [
    ("rank", #"{"peft_type": "LORA", "r": 3, "lora_alpha": 4}"#, [(q + ".lora_A.weight", [2, 6]), (q + ".lora_B.weight", [4, 2])], "rank disagrees"),
    ("shape", #"{"peft_type": "LORA", "r": 2, "lora_alpha": 4}"#, [(q + ".lora_A.weight", [2, 5]), (q + ".lora_B.weight", [4, 2])], "expected shape [2, 6], got [2, 5]"),
    ("unmatched", #"{"peft_type": "LORA", "r": 2, "lora_alpha": 4}"#, [("base_model.model.model.layers.9.mlp.up_proj.lora_A.weight", [2, 6]),
                                                                        ("base_model.model.model.layers.9.mlp.up_proj.lora_B.weight", [4, 2])], "match no base tensor"),
    ("ia3", #"{"peft_type": "IA3"}"#, [(q + ".ia3_l", [4])], "peft_type IA3 is not supported"),
    ("half", #"{"peft_type": "LORA", "r": 2, "lora_alpha": 4}"#, [(q + ".lora_A.weight", [2, 6])], "has no lora_B"),
    ("stray", #"{"peft_type": "LORA", "r": 2, "lora_alpha": 4}"#, [(q + ".lora_A.weight", [2, 6]), (q + ".lora_B.weight", [4, 2]),
                                                                    ("base_model.model.model.norm.weight", [6])], "not a LoRA key"),
])
func badAdapters(name: String, config: String, tensors: [(String, [Int])], message: String) throws {
    let scratch = ScratchDirectory()
    let base = try makeBase(scratch)
    let folder = try makeAdapter(scratch, name: name, config: config, tensors: tensors, seed: 4)
    do {
        let adapter = try LoRAAdapter(folder: folder)
        _ = try CheckpointMerger.merge(base: try Checkpoint(path: base), adapters: [(adapter, 1)], to: scratch.file("out"), options: .init())
        Issue.record("accepted")
    } catch {
        #expect("\(error)".contains(message), "\(error)")
        #expect("\(error)".contains(folder) || "\(error)".contains(base))
    }
    #expect(!FileManager.default.fileExists(atPath: scratch.file("out")))
}

@Test("NaN in an adapter is refused naming the key and index")
func nanAdapter() throws {
    let scratch = ScratchDirectory()
    let base = try makeBase(scratch)
    var poisoned = [Float](repeating: 0.01, count: 12)
    poisoned[7] = .nan
    let folder = try makeAdapter(scratch, name: "nan", config: #"{"peft_type": "LORA", "r": 2, "lora_alpha": 4}"#,
                                 tensors: [(q + ".lora_A.weight", [2, 6]), (q + ".lora_B.weight", [4, 2])], seed: 4,
                                 overrides: [q + ".lora_A.weight": poisoned])
    #expect(throws: LoRAError.nonFinite(file: folder + "/adapter_model.safetensors", key: q + ".lora_A.weight", index: 7)) {
        _ = try CheckpointMerger.merge(base: try Checkpoint(path: base), adapters: [(try LoRAAdapter(folder: folder), 1)],
                                       to: scratch.file("out"), options: .init())
    }
}

@Test("A missing or malformed adapter_config.json is named")
func adapterConfigErrors() throws {
    let scratch = ScratchDirectory()
    try FileManager.default.createDirectory(atPath: scratch.file("empty"), withIntermediateDirectories: true)
    #expect(throws: LoRAError.missingConfig(folder: scratch.file("empty"))) { try LoRAAdapter(folder: scratch.file("empty")) }
    FileManager.default.createFile(atPath: scratch.file("empty/adapter_config.json"), contents: Data("{\"r\": ".utf8))
    #expect(throws: LoRAError.self) { try LoRAAdapter(folder: scratch.file("empty")) }
}
