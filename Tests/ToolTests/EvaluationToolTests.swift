import CheckpointKit
import Foundation
import TestSupport
import Testing

private let tinyLlama = Tools.fixture("models/tiny-llama")
private let evalText = Tools.fixture("text/eval.txt")

@Test("ckpt-perplexity --json gives transformers' PPL and its standard error on the fixture text")
func perplexityJSON() throws {
    let result = try Tools.run("ckpt-perplexity", [tinyLlama, "--text", evalText, "--ctx", "128", "--json"])
    #expect(result.status == 0, "\(result.stderr)")
    let doc = try parseJSONObject(result.stdout)
    #expect(doc["tokens"] as? Int == 21_392)
    #expect(doc["chunks"] as? Int == 167)
    #expect(doc["scored_tokens"] as? Int == 10_521)
    #expect(abs((doc["perplexity"] as? Double ?? 0) - 24.386628335883515) < 1e-3)
    #expect(abs((doc["standard_error"] as? Double ?? 0) - 0.5555910274838607) < 1e-3)
    #expect((doc["per_chunk_perplexity"] as? [Double])?.count == 167)
}

@Test("--tokens takes ids one per line or as a JSON array, with the same result")
func perplexityTokens() throws {
    let scratch = ScratchDirectory()
    let ids = (0..<600).map { ($0 * 37 + 11) % 512 }
    try ids.map(String.init).joined(separator: "\n").write(toFile: scratch.file("ids.txt"), atomically: true, encoding: .utf8)
    try ("[" + ids.map(String.init).joined(separator: ", ") + "]").write(toFile: scratch.file("ids.json"), atomically: true, encoding: .utf8)
    let lines = try parseJSONObject(try Tools.run("ckpt-perplexity", [tinyLlama, "--tokens", scratch.file("ids.txt"), "--ctx", "64", "--json"]).stdout)
    let json = try parseJSONObject(try Tools.run("ckpt-perplexity", [tinyLlama, "--tokens", scratch.file("ids.json"), "--ctx", "64", "--json"]).stdout)
    #expect(lines["chunks"] as? Int == 9)
    #expect(lines["perplexity"] as? Double == json["perplexity"] as? Double)
}

@Test("A text shorter than two contexts says how many tokens it has and needs")
func perplexityTooShort() throws {
    let scratch = ScratchDirectory()
    try "To be, or not to be.".write(toFile: scratch.file("short.txt"), atomically: true, encoding: .utf8)
    let result = try Tools.run("ckpt-perplexity", [tinyLlama, "--text", scratch.file("short.txt"), "--ctx", "512"])
    #expect(result.status == 1)
    #expect(result.stderr.contains("\(scratch.file("short.txt")): too short for this context (expected at least 1024 tokens, got "))
}

@Test("A token id outside the vocabulary is refused with its position")
func perplexityBadToken() throws {
    let scratch = ScratchDirectory()
    try "1 2 3 70000 4".write(toFile: scratch.file("ids.txt"), atomically: true, encoding: .utf8)
    let result = try Tools.run("ckpt-perplexity", [tinyLlama, "--tokens", scratch.file("ids.txt")])
    #expect(result.status == 1)
    #expect(result.stderr.contains("token 3 is 70000, outside the vocabulary (expected 0..<512)"))
}

/// A copy of the tiny Llama with its config changed or one tensor replaced.
private func variant(_ scratch: ScratchDirectory, name: String, config: (inout [String: Any]) -> Void,
                     replace: (String, (Int) -> Float)? = nil) throws -> String {
    let folder = scratch.file(name)
    try FileManager.default.copyItem(atPath: tinyLlama, toPath: folder)
    var json = try #require(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/config.json"))) as? [String: Any])
    config(&json)
    try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: folder + "/config.json"))
    if let (tensor, value) = replace {
        // Rewrite the file with one tensor's bf16 values replaced (ckpt's writer keeps the layout).
        let data = try Data(contentsOf: URL(fileURLWithPath: folder + "/model.safetensors"))
        let headerLength = Int(data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        let header = try #require(JSONSerialization.jsonObject(with: data[8..<(8 + headerLength)]) as? [String: Any])
        let entry = try #require(header[tensor] as? [String: Any])
        let offsets = try #require(entry["data_offsets"] as? [Int])
        var bytes = [UInt8](data)
        for i in 0..<((offsets[1] - offsets[0]) / 2) {
            let bits = UInt16(value(i).bitPattern >> 16)
            bytes[8 + headerLength + offsets[0] + 2 * i] = UInt8(bits & 0xFF)
            bytes[8 + headerLength + offsets[0] + 2 * i + 1] = UInt8(bits >> 8)
        }
        try Data(bytes).write(to: URL(fileURLWithPath: folder + "/model.safetensors"))
    }
    return folder
}

@Test("NaN logits stop the run, naming the chunk")
func perplexityNaN() throws {
    let scratch = ScratchDirectory()
    let broken = try variant(scratch, name: "nan", config: { _ in }, replace: ("model.norm.weight", { _ in .nan }))
    let result = try Tools.run("ckpt-perplexity", [broken, "--text", evalText, "--ctx", "128"])
    #expect(result.status == 1)
    #expect(result.stderr.contains("\(broken): chunk 1: the model produced NaN or infinite logits"))
}

@Test("An unsupported architecture is named with the supported ones")
func unsupportedArchitecture() throws {
    let scratch = ScratchDirectory()
    let bert = try variant(scratch, name: "bert", config: { $0["architectures"] = ["BertForMaskedLM"]; $0["model_type"] = "bert" })
    let result = try Tools.run("ckpt-perplexity", [bert, "--text", evalText])
    #expect(result.status == 1)
    #expect(result.stderr.contains("unsupported architecture (expected one of LlamaForCausalLM, MistralForCausalLM, MixtralForCausalLM, "
        + "Qwen2ForCausalLM, Qwen3ForCausalLM, Qwen3MoeForCausalLM, Gemma2ForCausalLM, Gemma3ForCausalLM, Phi3ForCausalLM, Olmo2ForCausalLM, "
        + "GPT2LMHeadModel, got BertForMaskedLM)"))
}

@Test("ckpt-compare gives the NF4 model's KL divergence and exits 3 when a gate fails")
func compareGates() throws {
    let nf4 = Tools.fixture("models/tiny-llama-bnb-nf4")
    let passing = try Tools.run("ckpt-compare", [tinyLlama, nf4, "--text", evalText, "--ctx", "128", "--chunks", "40", "--max-ppl-increase", "5",
                                                 "--json"])
    #expect(passing.status == 0, "\(passing.stderr)")
    let doc = try parseJSONObject(passing.stdout)
    let kld = try #require(doc["kld"] as? [String: Any])
    #expect((kld["mean"] as? Double ?? 0) > 0.01 && (kld["mean"] as? Double ?? 1) < 0.1)
    #expect((doc["same_top_rate"] as? Double ?? 0) > 0.7)
    let failing = try Tools.run("ckpt-compare", [tinyLlama, nf4, "--text", evalText, "--ctx", "128", "--chunks", "40", "--max-kld", "0.001"])
    #expect(failing.status == 3)
    #expect(failing.stderr.contains("gate failed: mean KLD"))
}

@Test("--save-base then --base reproduces the comparison's perplexities, Δp and top-token rate")
func compareSavedBase() throws {
    let scratch = ScratchDirectory()
    let int8 = Tools.fixture("models/tiny-llama-ct-int8")
    let direct = try parseJSONObject(try Tools.run("ckpt-compare", [tinyLlama, int8, "--text", evalText, "--ctx", "128", "--chunks", "20", "--json"]).stdout)
    let save = try Tools.run("ckpt-compare", [tinyLlama, "--save-base", scratch.file("base.safetensors"), "--text", evalText, "--ctx", "128",
                                              "--chunks", "20", "--json"])
    #expect(save.status == 0, "\(save.stderr)")
    let reused = try Tools.run("ckpt-compare", [int8, "--base", scratch.file("base.safetensors"), "--json"])
    #expect(reused.status == 0, "\(reused.stderr)")
    let saved = try parseJSONObject(reused.stdout)
    for key in ["ppl_base", "ppl_candidate", "same_top_rate"] {
        #expect(abs((saved[key] as? Double ?? 0) - (direct[key] as? Double ?? 1)) < 1e-6, "\(key)")
    }
    let exact = (direct["kld"] as? [String: Any])?["mean"] as? Double ?? 0
    let bound = (saved["kld"] as? [String: Any])?["mean"] as? Double ?? 0
    #expect(bound <= exact * 1.000001 && bound > 0.9 * exact, "top-k KL \(bound) vs exact \(exact)")
}

@Test("Models with different vocabularies cannot be compared")
func compareVocabularyMismatch() throws {
    let scratch = ScratchDirectory()
    // The tiny Llama cut to a 256-token vocabulary: embedding and head keep their first rows.
    let other = try variant(scratch, name: "v", config: { $0["vocab_size"] = 256 })
    let source = try SafetensorsFile(path: tinyLlama + "/model.safetensors")
    let specs = source.tensors.map { TensorSpec(name: $0.name, dtype: $0.dtype, shape: $0.shape.first == 512 ? [256] + $0.shape.dropFirst() : $0.shape) }
    try FileManager.default.removeItem(atPath: other + "/model.safetensors")
    try SafetensorsLayout(specs, metadata: source.metadata).write(to: other + "/model.safetensors") { info, out in
        try out.write(Array(source.view(named: info.name)!.byteArray.prefix(info.byteCount)))
    }
    let result = try Tools.run("ckpt-compare", [tinyLlama, other, "--text", evalText, "--ctx", "128"])
    #expect(result.status == 1)
    #expect(result.stderr == "error: \(other): vocabulary differs from the base \(tinyLlama) (expected 512 entries, got 256)\n")
}

@Test("Perplexity is bit-identical with --threads 1 and --threads 2")
func perplexityThreadInvariance() throws {
    let one = try parseJSONObject(try Tools.run("ckpt-perplexity", [tinyLlama, "--text", evalText, "--ctx", "128", "--chunks", "10", "--threads", "1", "--json"]).stdout)
    let two = try parseJSONObject(try Tools.run("ckpt-perplexity", [tinyLlama, "--text", evalText, "--ctx", "128", "--chunks", "10", "--threads", "2", "--json"]).stdout)
    #expect(one["perplexity"] as? Double == two["perplexity"] as? Double)
    #expect(one["per_chunk_perplexity"] as? [Double] == two["per_chunk_perplexity"] as? [Double])
}

@Test("A tokenizer.json of an unsupported model type is named, exit 1")
func unsupportedTokenizer() throws {
    let scratch = ScratchDirectory()
    let folder = try variant(scratch, name: "unigram", config: { _ in })
    try #"{"version": "1.0", "added_tokens": [], "model": {"type": "Unigram", "vocab": [["a", 0.0]]}}"#
        .write(toFile: folder + "/tokenizer.json", atomically: true, encoding: .utf8)
    let result = try Tools.run("ckpt-perplexity", [folder, "--text", evalText])
    #expect(result.status == 1)
    #expect(result.stderr.hasPrefix("error: ") && result.stderr.contains("Unigram"))
}

@Test("A NaN weight cannot go into a GGUF block type: refused naming tensor and index, exit 1, nothing written")
func ggufRefusesNaN() throws {
    let scratch = ScratchDirectory()
    let broken = try variant(scratch, name: "nan", config: { _ in }, replace: ("model.layers.1.mlp.up_proj.weight", { $0 == 7 ? .nan : 0.01 }))
    let result = try Tools.run("ckpt-convert", [broken, scratch.file("out.gguf"), "--type", "q4_k_m"])
    #expect(result.status == 1)
    #expect(result.stderr.contains("model.layers.1.mlp.up_proj.weight"), "\(result.stderr)")
    #expect(!FileManager.default.fileExists(atPath: scratch.file("out.gguf")))
}
