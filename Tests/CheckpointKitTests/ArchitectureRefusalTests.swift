@testable import CheckpointKit
import Foundation
import Testing
import TestSupport

/// A copy of fixtures/architectures/`name` in `scratch` with its config.json edited (and, when
/// given, its safetensors replaced), for refusals.
private func variant(_ scratch: ScratchDirectory, of name: String, edit: (inout [String: Any]) -> Void) throws -> String {
    let source = Paths.fixture("architectures/" + name)
    let folder = scratch.file(name + "-" + UUID().uuidString)
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    for file in ["model.safetensors", "tokenizer.json"] {
        try FileManager.default.copyItem(atPath: source + "/" + file, toPath: folder + "/" + file)
    }
    var config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: source + "/config.json"))) as! [String: Any]
    edit(&config)
    try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: folder + "/config.json"))
    return folder
}

/// The one-line error loading `folder` as a model gives.
private func refusal(_ folder: String) -> String {
    do {
        _ = try TransformerModel(checkpoint: try Checkpoint(path: folder), threads: .single)
        return "loaded"
    } catch {
        return "\(error)"
    }
}

@Test("A rope_type, activation or layer type ckpt does not implement is refused by key and value, never approximated")
func unimplementedFeaturesAreNamed() throws {
    let scratch = ScratchDirectory()
    let rope = try variant(scratch, of: "llama3") { config in
        var parameters = config["rope_parameters"] as! [String: Any]
        parameters["rope_type"] = "proportional"
        config["rope_parameters"] = parameters
    }
    #expect(refusal(rope).contains("rope_parameters.rope_type: proportional is not supported (expected default, linear, dynamic, yarn, llama3 or longrope)"))
    let activation = try variant(scratch, of: "qwen3") { $0["hidden_act"] = "relu2" }
    #expect(refusal(activation).contains("hidden_act: relu2 is not supported"))
    let layerType = try variant(scratch, of: "gemma2") { config in
        config["layer_types"] = ["chunked_attention", "full_attention"]
    }
    #expect(refusal(layerType).contains("layer_types: \"chunked_attention\" is not supported (expected full_attention or sliding_attention)"))
    let legacyScaling = try variant(scratch, of: "mistral-sliding") { $0["rope_scaling"] = ["type": "su-mini"]; $0["rope_parameters"] = nil }
    #expect(refusal(legacyScaling).contains("su-mini is not supported"))
    let chunked = try variant(scratch, of: "llama3") { $0["attention_chunk_size"] = 8192 }
    #expect(refusal(chunked).contains("attention_chunk_size: 8192 is not supported by ckpt's LlamaForCausalLM (expected it absent, null or false)"))
    let bidirectional = try variant(scratch, of: "gemma3") { $0["use_bidirectional_attention"] = true }
    #expect(refusal(bidirectional).contains("use_bidirectional_attention: true is not supported"))
    let llama3WithoutFactors = try variant(scratch, of: "llama3") { config in
        config["rope_parameters"] = ["rope_type": "llama3", "factor": 8.0, "rope_theta": 10000.0]
    }
    #expect(refusal(llama3WithoutFactors).contains("rope_parameters.low_freq_factor: missing (expected a number for rope_type llama3)"))
}

@Test("Sizes the tensors contradict are refused naming the tensor or the key, before anything is sized by them")
func configsTheTensorsContradict() throws {
    let scratch = ScratchDirectory()
    let layers = try variant(scratch, of: "qwen3") { $0["num_hidden_layers"] = 60000; $0["layer_types"] = nil }
    #expect(refusal(layers).contains("num_hidden_layers: 60000 layers, but"))
    #expect(refusal(layers).contains("holds tensors for 2 (expected them to agree)"))
    let absurdLayers = try variant(scratch, of: "qwen3") { $0["num_hidden_layers"] = 1 << 40 }
    #expect(refusal(absurdLayers).contains("num_hidden_layers: 1099511627776 is out of range"))
    let hidden = try variant(scratch, of: "olmo2") { $0["hidden_size"] = 1 << 23 }
    #expect(refusal(hidden).contains("tensor 'model.embed_tokens.weight': wrong shape (expected [512, 8388608], got [512, 32])"))
    let experts = try variant(scratch, of: "mixtral") { $0["num_local_experts"] = 6 }
    #expect(refusal(experts).contains("tensor 'model.layers.0.block_sparse_moe.gate.weight': wrong shape (expected [6, 32], got [4, 32])"))
    let topK = try variant(scratch, of: "qwen3-moe") { $0["num_experts_per_tok"] = 9 }
    #expect(refusal(topK).contains("num_experts_per_tok: 9 is more than the 4 experts"))
}

@Test("GPT-2's learned positions bound the context: a longer chunk is refused, not read past the table")
func learnedPositionsBoundTheContext() throws {
    let model = try TransformerModel(checkpoint: try Checkpoint(path: Paths.fixture("models/tiny-gpt2")), threads: .single)
    let limit = try #require(model.maximumContext)
    let plan = ChunkPlan(context: limit + 2, chunks: 1, bos: nil)
    #expect(throws: EvaluationError.contextBeyondModel(model: model.path, context: limit + 2, maximum: limit)) {
        try plan.forEachScoredLogits(model, chunks: 0..<1, from: Array(repeating: 1, count: limit + 2)) { _, _, _ in }
    }
    #expect(throws: EvaluationError.contextBeyondModel(model: model.path, context: limit + 2, maximum: limit)) {
        try plan.forEachNextTokenLogProbabilities(model, chunks: 0..<1, from: Array(repeating: 1, count: limit + 2)) { _, _ in }
    }
}
