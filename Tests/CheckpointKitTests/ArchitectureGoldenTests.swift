@testable import CheckpointKit
import Foundation
import Testing
import TestSupport

/// Goldens from transformers 5.24 (eager attention, f32) for a tiny model of every family ckpt
/// evaluates, each with the feature that defines it made to bite (windows shorter than the
/// sequence, original contexts shorter than it, soft-caps, MoE routing, …), stored as bf16 and as
/// bitsandbytes NF4: fixtures/architectures/, made by tools/make_architecture_goldens.py.
private let cases = ["llama3", "llama-linear", "llama-dynamic", "llama-yarn", "mistral-sliding", "qwen2-yarn", "qwen3", "qwen3-moe",
                     "mixtral", "gemma2", "gemma3", "phi3", "phi4-mini", "olmo2"]

private let manifest: JSONValue = try! readJSON(Paths.fixture("architectures/manifest.json"))

private func evalTokens() -> [Int] {
    readBytes(Paths.fixture("eval/eval_tokens_u32le.bin")).withUnsafeBytes { raw in raw.bindMemory(to: UInt32.self).map { Int($0) } }
}

private func model(_ folder: String) throws -> TransformerModel {
    try TransformerModel(checkpoint: try Checkpoint(path: Paths.fixture("architectures/" + folder)), threads: ThreadBudget(2))
}

/// The largest |ours − transformers| over the committed logit rows of `folder`'s golden.
private func worstLogitError(_ network: TransformerModel, golden folder: String) throws -> Float {
    let file = try SafetensorsFile(path: Paths.fixture("architectures/logits.safetensors"))
    let ids = FloatValues.array(try #require(file.view(named: "token_ids"))).map { Int($0) }
    let expected = FloatValues.array(try #require(file.view(named: folder)))
    let first = try #require(manifest["logits"]?["first_row"]?.intValue)
    let ours = network.logits(ids, scored: first..<ids.count)
    #expect(ours.count == expected.count)
    return zip(ours, expected).map { abs($0 - $1) }.max() ?? .infinity
}

@Test("Logits of every family, stored as bf16, are within 1e-4 of transformers", arguments: cases)
func architectureLogitsMatch(name: String) throws {
    let worst = try worstLogitError(try model(name), golden: name)
    #expect(worst < 1e-4, "\(name): max |Δlogit| = \(worst)")
}

@Test("Logits of every family, stored as bitsandbytes NF4, are within 1e-4 of transformers", arguments: cases)
func architectureNF4LogitsMatch(name: String) throws {
    let worst = try worstLogitError(try model(name + "-nf4"), golden: name + "-nf4")
    #expect(worst < 1e-4, "\(name)-nf4: max |Δlogit| = \(worst)")
}

@Test("Logits of every family, converted to f32 safetensors, are within 1e-4 of transformers", arguments: cases)
func architectureF32LogitsMatch(name: String) throws {
    let scratch = ScratchDirectory()
    let output = scratch.file(name)
    _ = try CheckpointConverter.convert(try Checkpoint(path: Paths.fixture("architectures/" + name)), to: output,
                                        options: ConversionOptions(targetType: .f32, threads: ThreadBudget(2)))
    let network = try TransformerModel(checkpoint: try Checkpoint(path: output), threads: ThreadBudget(2))
    let worst = try worstLogitError(network, golden: name)
    #expect(worst < 1e-4, "\(name) as f32: max |Δlogit| = \(worst)")
}

@Test("Perplexity of every family (bf16 and NF4, and the short-context branch of dynamic RoPE and longrope) is within 1e-4 of transformers",
      arguments: cases.flatMap { [$0, $0 + "-nf4"] })
func architecturePerplexityMatches(folder: String) throws {
    let runs = try #require(manifest["perplexity"]?["runs"]?[folder]?.objectMembers)
    let network = try model(folder)
    let tokens = evalTokens()
    for (context, run) in runs {
        let ctx = try #require(Int(context))
        let plan = try ChunkPlan(tokens: tokens.count, context: ctx, chunks: run["n_chunks"]?.intValue, bos: nil, file: "eval.txt")
        let total = try PerplexityEvaluator.evaluate(network, tokens: tokens, plan: plan).total
        #expect(total.count == run["count"]?.intValue)
        let ppl = try #require(run["ppl"]?.doubleValue)
        #expect(abs(total.perplexity / ppl - 1) < 1e-4, "\(folder) ctx \(ctx): \(total.perplexity) vs \(ppl)")
    }
}

@Test("RoPE inverse frequencies and attention factors of every kind equal transformers' own, per forward length and layer kind", arguments: cases)
func ropeFrequenciesMatch(name: String) throws {
    let config = try TransformerConfig(parsing: try readJSON(Paths.fixture("architectures/\(name)/config.json")), file: name)
    let byLength = try #require(manifest["logits"]?["cases"]?[name]?["rope"]?.objectMembers)
    for (length, kinds) in byLength {
        for (kind, golden) in try #require(kinds.objectMembers) {
            let rope = try #require(kind == "sliding_attention" ? config.localRope : config.rope)
            let (ours, factor) = rope.inverseFrequencies(length: try #require(Int(length)))
            let expected = try #require(golden["inv_freq_f32"]?.arrayValue).compactMap(\.doubleValue)
            #expect(ours.count == expected.count)
            for (a, b) in zip(ours, expected) { #expect(abs(Double(a) / b - 1) < 4e-7, "\(name) \(length) \(kind): \(a) vs \(b)") }
            #expect(abs(Double(factor) - (golden["attention_scaling"]?.doubleValue ?? .nan)) < 1e-6, "\(name) attention factor")
        }
    }
}

@Test("Logits are the same to the bit on 1, 2, 3 or 4 threads, so split runs on different machines combine exactly",
      arguments: ["llama3", "mistral-sliding", "qwen3-moe", "gemma2", "phi3"])
func logitsDoNotDependOnTheThreadCount(name: String) throws {
    let ids = Array(evalTokens().prefix(96))
    func logits(_ threads: Int) throws -> [Float] {
        try TransformerModel(checkpoint: try Checkpoint(path: Paths.fixture("architectures/" + name)), threads: ThreadBudget(threads))
            .logits(ids, scored: 40..<96)
    }
    let one = try logits(1)
    for threads in [2, 3, 4] {
        let other = try logits(threads)
        #expect(one.map(\.bitPattern) == other.map(\.bitPattern), "\(name) on \(threads) threads")
    }
}

@Test("Chunks run together give every family the logits each gives alone, bit for bit", arguments: cases)
func batchedChunksMatchSingleChunks(name: String) throws {
    let network = try model(name)
    let tokens = evalTokens()
    let length = 48
    let sequences = (0..<3).map { Array(tokens[($0 * length)..<(($0 + 1) * length)]) }
    let scored = (length / 2)..<(length - 1)
    var batched: [[Float]] = []
    network.forEachScoredLogits(sequences, scored: scored) { _, logits in batched.append(Array(logits)) }
    #expect(batched.count == 3)
    for (index, sequence) in sequences.enumerated() {
        let alone = network.logits(sequence, scored: scored)
        let worst = zip(batched[index], alone).map { abs($0 - $1) }.max() ?? .infinity
        #expect(batched[index] == alone, "\(name): sequence \(index): max |Δ| \(worst)")
    }
}
