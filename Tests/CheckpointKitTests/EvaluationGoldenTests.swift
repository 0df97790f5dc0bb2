@testable import CheckpointKit
import Foundation
import Testing

/// Goldens from transformers (f32, eager attention) made by tools/make_eval_goldens.py:
/// fixtures/eval/logits.safetensors, manifest.json and eval_tokens_u32le.bin.
private func manifest() throws -> JSONValue { try readJSON(Paths.fixture("eval/manifest.json")) }

private func evalTokens() -> [Int] {
    readBytes(Paths.fixture("eval/eval_tokens_u32le.bin")).withUnsafeBytes { raw in raw.bindMemory(to: UInt32.self).map { Int($0) } }
}

private let models: [String: TransformerModel] = {
    var loaded: [String: TransformerModel] = [:]
    for name in ["tiny-llama", "tiny-gpt2", "tiny-qwen2", "tiny-mistral", "tiny-llama-bnb-nf4", "tiny-llama-ct-int8"] {
        loaded[name] = try! TransformerModel(checkpoint: try! Checkpoint(path: Paths.fixture("models/" + name)), threads: ThreadBudget(2))
    }
    return loaded
}()

@Test("Logits are within 1e-4 of transformers for Llama, GPT-2, Qwen2 and Mistral", arguments: ["tiny-llama", "tiny-gpt2", "tiny-qwen2", "tiny-mistral"])
func logitsMatchTransformers(model: String) throws {
    let file = try SafetensorsFile(path: Paths.fixture("eval/logits.safetensors"))
    let ids = FloatValues.array(try #require(file.view(named: "token_ids"))).map { Int($0) }
    let expected = FloatValues.array(try #require(file.view(named: model)))
    let ours = try #require(models[model]).logits(ids)
    #expect(ours.count == expected.count)
    let worst = zip(ours, expected).map { abs($0 - $1) }.max() ?? .infinity
    #expect(worst < 1e-4, "\(model): max |Δlogit| = \(worst)")
}

@Test("Perplexity with llama.cpp's method matches transformers within 0.01%", arguments: [("tiny-llama", 128), ("tiny-llama", 64), ("tiny-gpt2", 128), ("tiny-gpt2", 64)])
func perplexityMatches(model: String, context: Int) throws {
    let run = try #require(try manifest()["perplexity"]?["runs"]?[model]?[String(context)])
    let tokens = evalTokens()
    #expect(tokens.count == 21_392)
    let plan = try ChunkPlan(tokens: tokens.count, context: context, chunks: nil, bos: nil, file: "eval.txt")
    #expect(plan.chunks == run["n_chunks"]?.intValue)
    let total = try PerplexityEvaluator.evaluate(try #require(models[model]), tokens: tokens, plan: plan).total
    #expect(total.count == run["count"]?.intValue)
    let ppl = try #require(run["ppl"]?.doubleValue), stderr = try #require(run["ppl_stderr"]?.doubleValue)
    #expect(abs(total.perplexity / ppl - 1) < 1e-4, "\(total.perplexity) vs \(ppl)")
    #expect(abs(total.standardError / stderr - 1) < 1e-3, "\(total.standardError) vs \(stderr)")
}

@Test("KL divergence of the NF4 and int8 models against their base is within 1% of torch's", arguments: ["tiny-llama-bnb-nf4", "tiny-llama-ct-int8"])
func divergenceMatches(candidate: String) throws {
    let golden = try #require(try manifest()["kl_divergence"]?["candidates"]?[candidate])
    let tokens = evalTokens()
    let plan = try ChunkPlan(tokens: tokens.count, context: 128, chunks: nil, bos: nil, file: "eval.txt")
    let result = try DivergenceEvaluator.evaluate(base: try #require(models["tiny-llama"]), candidate: try #require(models[candidate]),
                                                  tokens: tokens, plan: plan)
    #expect(result.count == golden["count"]?.intValue)
    func close(_ ours: Double, _ key: String, _ sub: String? = nil, tolerance: Double = 0.01) throws {
        let value = try #require(sub.map { golden[key]?[$0]?.doubleValue } ?? golden[key]?.doubleValue)
        #expect(abs(ours / value - 1) < tolerance, "\(candidate) \(key) \(sub ?? ""): \(ours) vs \(value)")
    }
    try close(result.meanDivergence, "kld", "mean")
    try close(result.quantile(0.5), "kld", "median")
    try close(result.quantile(0.9), "kld", "p90")
    try close(result.quantile(0.99), "kld", "p99")
    try close(result.maxDivergence, "kld", "max")
    try close(result.sameTopRate, "same_top_rate", tolerance: 0.002)
    try close(result.rmsDeltaP, "delta_p", "rms")
    try close(result.candidate.perplexity, "ppl_candidate", tolerance: 1e-4)
    try close(result.base.perplexity, "ppl_base", tolerance: 1e-4)
}
