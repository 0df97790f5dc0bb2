@testable import CheckpointKit
import Foundation
import TestSupport
import Testing

/// Adapters trained with added tokens, merged as transformers' resize_token_embeddings + PEFT's
/// merge_and_unload do: goldens in fixtures/lora/vocab/, made by tools/make_lora_vocab_goldens.py.
private let folder = Paths.fixture("lora/vocab")
private let manifest: JSONValue = try! readJSON(folder + "/manifest.json")
private let goldens = try! SafetensorsFile(path: folder + "/goldens.safetensors")

/// Merges `adapter` into tiny-llama (kept in bf16, as PEFT merged it) and returns the output folder.
private func merge(_ adapter: String, _ scratch: ScratchDirectory) throws -> (Checkpoint, MergeReport) {
    let report = try CheckpointMerger.merge(base: try Checkpoint(path: Paths.fixture("models/tiny-llama")),
                                            adapters: [(try LoRAAdapter(folder: adapter.hasPrefix("/") ? adapter : folder + "/adapters/" + adapter), 1)],
                                            to: scratch.file("merged"),
                                            options: MergeOptions(threads: .single))
    return (try Checkpoint(path: scratch.file("merged")), report)
}

/// Each value within one bf16 step of the golden (PEFT adds the f32 delta to bf16 weights and rounds once, as ckpt does).
private func expectClose(_ got: [Float], _ want: [Float], slack: Float = 0, _ what: String) {
    #expect(got.count == want.count, "\(what): \(got.count) values (expected \(want.count))")
    let worst = zip(got, want).map { abs($0 - $1) - max(abs($1), 1e-30) * 0x1p-8 - slack }.max() ?? 0
    #expect(worst <= 0, "\(what): beyond one bf16 step by \(worst)")
}

@Test("An adapter whose saved embedding and head have rows for added tokens grows the vocabulary and brings its tokenizer")
func addedTokensThroughModulesToSave() throws {
    let scratch = ScratchDirectory()
    let (merged, report) = try merge("llama-added-tokens", scratch)
    for name in ["model.embed_tokens.weight", "lm_head.weight"] {
        let got = FloatValues.array(merged.view(named: name)!)
        #expect(merged.entry(named: name)?.info.shape == [516, 64])
        #expect(got == FloatValues.array(goldens.view(named: "llama-added-tokens/" + name)!), "\(name) is the trained copy, exactly")
    }
    expectClose(FloatValues.array(merged.view(named: "model.layers.0.self_attn.q_proj.weight")!),
                FloatValues.array(goldens.view(named: "llama-added-tokens/model.layers.0.self_attn.q_proj.weight")!), "q_proj")
    #expect(merged.config?["vocab_size"]?.intValue == 516)
    #expect(readBytes(scratch.file("merged/tokenizer.json")) == readBytes(folder + "/adapters/llama-added-tokens/tokenizer.json"))
    #expect(!FileManager.default.fileExists(atPath: scratch.file("merged/special_tokens_map.json")), "no base tokenizer file is mixed in")
    #expect(report.notes.contains { $0.contains("the vocabulary grows from 512 to 516 tokens") })
}

@Test("An embedding LoRA over a resized vocabulary: the embedding from the saved base layer plus the delta, the head's new rows the mean")
func addedTokensThroughEmbeddingLoRA() throws {
    let scratch = ScratchDirectory()
    let (merged, _) = try merge("llama-added-tokens-embedding-lora", scratch)
    expectClose(FloatValues.array(merged.view(named: "model.embed_tokens.weight")!),
                FloatValues.array(goldens.view(named: "llama-added-tokens-embedding-lora/model.embed_tokens.weight")!), "embed_tokens")
    let head = FloatValues.array(merged.view(named: "lm_head.weight")!)
    let want = FloatValues.array(goldens.view(named: "llama-added-tokens-embedding-lora/lm_head.weight")!)
    #expect(Array(head[..<(512 * 64)]) == Array(want[..<(512 * 64)]), "the old rows are the base's")
    let deviation = Float(manifest["cases"]!.arrayValue![1]["head_new_rows_deviation_from_mean"]!.doubleValue!)
    expectClose(Array(head[(512 * 64)...]), Array(want[(512 * 64)...]), slack: deviation, "new head rows, mean-resized")
    #expect(merged.config?["vocab_size"]?.intValue == 516)
}

@Test("A grown vocabulary without the adapter's tokenizer is refused by name, and nothing is written")
func resizedVocabularyNeedsTokenizer() throws {
    let scratch = ScratchDirectory()
    // The adapter with its weights and config only, as a user copies it without the tokenizer.
    let adapter = scratch.file("no-tokenizer")
    try FileManager.default.createDirectory(atPath: adapter, withIntermediateDirectories: true)
    for name in ["adapter_config.json", "adapter_model.safetensors"] {
        try FileManager.default.copyItem(atPath: folder + "/adapters/llama-added-tokens/" + name, toPath: adapter + "/" + name)
    }
    #expect(throws: LoRAError.resizedVocabularyWithoutTokenizer(folder: adapter, key: "base_model.model.lm_head.modules_to_save.weight", from: 512, to: 516)) {
        _ = try merge(adapter, scratch)
    }
    #expect(!FileManager.default.fileExists(atPath: scratch.file("merged")))
}

@Test("Trained token rows (trainable_token_indices) replace those rows of the embedding, as PEFT's index_copy does")
func trainableTokenRows() throws {
    let scratch = ScratchDirectory()
    let (merged, report) = try merge("llama-trainable-tokens", scratch)
    #expect(FloatValues.array(merged.view(named: "model.embed_tokens.weight")!)
        == FloatValues.array(goldens.view(named: "llama-trainable-tokens/model.embed_tokens.weight")!), "embed_tokens, exactly")
    expectClose(FloatValues.array(merged.view(named: "model.layers.0.self_attn.q_proj.weight")!),
                FloatValues.array(goldens.view(named: "llama-trainable-tokens/model.layers.0.self_attn.q_proj.weight")!), "q_proj")
    #expect(report.rows.first { $0.tensor == "model.embed_tokens.weight" }?.kind == "trainable_tokens")
    #expect(merged.config?["vocab_size"]?.intValue == 512)
}

@Test("A trained token id beyond the base's vocabulary is refused by name")
func trainableTokenOutOfRange() throws {
    let scratch = ScratchDirectory()
    let adapter = scratch.file("ids")
    try FileManager.default.createDirectory(atPath: adapter, withIntermediateDirectories: true)
    try FileManager.default.copyItem(atPath: folder + "/adapters/llama-trainable-tokens/adapter_model.safetensors", toPath: adapter + "/adapter_model.safetensors")
    let config = try String(contentsOfFile: folder + "/adapters/llama-trainable-tokens/adapter_config.json", encoding: .utf8)
        .replacingOccurrences(of: "511", with: "600")
    try config.write(toFile: adapter + "/adapter_config.json", atomically: true, encoding: .utf8)
    do {
        _ = try merge(adapter, scratch)
        Issue.record("an id past the vocabulary was merged")
    } catch let error as LoRAError {
        #expect("\(error)".contains("token id 600 is beyond the 512 rows of model.embed_tokens.weight"))
    }
}
