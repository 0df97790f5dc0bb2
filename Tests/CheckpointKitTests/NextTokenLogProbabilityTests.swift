@testable import CheckpointKit
import Foundation
import Testing
import TestSupport

/// `TransformerModel.nextTokenLogProbabilities` normalizes each row tile by tile instead of holding whole logit
/// rows; these tests hold it to the whole-row path (`logits` + `logSoftmaxNormalizer`) on every architecture golden
/// family (heads narrower than one tile) and on a seeded model whose 4099-row head spans twelve tiles.

private let families = ["llama3", "llama-linear", "llama-dynamic", "llama-yarn", "mistral-sliding", "qwen2-yarn", "qwen3", "qwen3-moe",
                        "mixtral", "gemma2", "gemma3", "phi3", "phi4-mini", "olmo2", "gemma2-nf4", "qwen3-moe-nf4"]

private func evalTokens() -> [Int] {
    readBytes(Paths.fixture("eval/eval_tokens_u32le.bin")).withUnsafeBytes { raw in raw.bindMemory(to: UInt32.self).map { Int($0) } }
}

/// The seeded 4099-token llama, written once per test run.
private let wideVocabulary: String = {
    let folder = NSTemporaryDirectory() + "ckpt-wide-vocab-" + UUID().uuidString
    try! SeededModels.write("wide-vocab", to: folder, tokenizerFolder: Paths.fixture("models/tiny-llama"))
    return folder
}()

/// Three chunks of `length` tokens below `vocabulary`, drawn from the evaluation text (spread over the wider vocabulary).
private func chunks(length: Int, vocabulary: Int) -> [[Int]] {
    let tokens = evalTokens()
    return (0..<3).map { c in (0..<length).map { i in (tokens[c * length + i] * 7919 + i) % vocabulary } }
}

/// The largest |tiled − whole-row| over the chunks' scored rows, relative to max(1, |log p|).
private func worstDifference(_ model: TransformerModel, _ sequences: [[Int]], scored: Range<Int>) throws -> Double {
    let tiled = model.nextTokenLogProbabilities(sequences, scored: scored)
    let vocabulary = model.config.vocabularySize
    var worst = 0.0
    for (index, sequence) in sequences.enumerated() {
        let values = try #require(tiled[index])
        let logits = model.logits(sequence, scored: scored)
        for (r, position) in scored.enumerated() {
            let whole = logits.withUnsafeBufferPointer { all -> Double in
                let row = UnsafeBufferPointer(rebasing: all[(r * vocabulary)..<((r + 1) * vocabulary)])
                let (m, logSum) = logSoftmaxNormalizerReference(row)
                return Double(row[sequence[position + 1]] - m) - logSum
            }
            worst = max(worst, abs(values[r] - whole) / max(1, abs(whole)))
        }
    }
    return worst
}

@Test("Head tiles give every family's next-token log-probabilities within 1e-6 of whole logit rows", arguments: families)
func tiledHeadMatchesWholeRows(family: String) throws {
    let model = try TransformerModel(checkpoint: try Checkpoint(path: Paths.fixture("architectures/" + family)), threads: ThreadBudget(2))
    let worst = try worstDifference(model, chunks(length: 48, vocabulary: model.config.vocabularySize), scored: 24..<47)
    #expect(worst < 1e-6, "\(family): worst relative difference \(worst)")
}

@Test("A head of twelve tiles gives the whole rows' log-probabilities within 1e-6, the same bits on 1, 2 and 3 threads")
func wideHeadMatchesWholeRowsOnAnyThreads() throws {
    let checkpoint = try Checkpoint(path: wideVocabulary)
    let model = try TransformerModel(checkpoint: checkpoint, threads: .single)
    #expect(model.config.vocabularySize == 4099)
    #expect(TransformerModel.tiling(outputs: 4099, rows: 31).tiles == 12)
    let sequences = chunks(length: 64, vocabulary: 4099)
    let worst = try worstDifference(model, sequences, scored: 32..<63)
    #expect(worst < 1e-6, "worst relative difference \(worst)")
    let one = model.nextTokenLogProbabilities(sequences, scored: 32..<63).map { $0?.map(\.bitPattern) }
    for threads in [2, 3] {
        let other = try TransformerModel(checkpoint: checkpoint, threads: ThreadBudget(threads))
        #expect(other.nextTokenLogProbabilities(sequences, scored: 32..<63).map { $0?.map(\.bitPattern) } == one, "\(threads) threads")
    }
}

@Test("Chunks run together give each chunk the log-probabilities it gets alone, bit for bit")
func batchedLogProbabilitiesMatchSingleChunks() throws {
    let model = try TransformerModel(checkpoint: try Checkpoint(path: wideVocabulary), threads: ThreadBudget(2))
    let sequences = chunks(length: 64, vocabulary: 4099)
    let together = model.nextTokenLogProbabilities(sequences, scored: 32..<63)
    for (index, sequence) in sequences.enumerated() {
        let alone = model.nextTokenLogProbabilities([sequence], scored: 32..<63)
        #expect(together[index]?.map(\.bitPattern) == alone[0]?.map(\.bitPattern), "chunk \(index)")
    }
}

@Test("A head row holding NaN makes perplexity refuse the first chunk by number, in both evaluation paths")
func nonFiniteLogitsAreRefusedByChunk() throws {
    let scratch = ScratchDirectory()
    let folder = scratch.file("poisoned")
    try SeededModels.write("wide-vocab", to: folder, tokenizerFolder: Paths.fixture("models/tiny-llama"))
    // A NaN (bf16 0x7FC0) in the head's row 4000: every position's logit for token 4000 becomes NaN.
    let file = try SafetensorsFile(path: folder + "/model.safetensors")
    let head = try #require(file.info(named: "lm_head.weight"))
    let offset = file.dataStart + head.dataOffsets.lowerBound + 4000 * 64 * 2
    var bytes = readBytes(folder + "/model.safetensors")
    bytes[offset] = 0xC0
    bytes[offset + 1] = 0x7F
    try Data(bytes).write(to: URL(fileURLWithPath: folder + "/model.safetensors"))
    let model = try TransformerModel(checkpoint: try Checkpoint(path: folder), threads: ThreadBudget(2))
    let stream = chunks(length: 64, vocabulary: 4099).flatMap { $0 }
    let plan = ChunkPlan(context: 64, chunks: 3, bos: nil)
    let refusal = EvaluationError.nonFiniteLogits(model: model.path, chunk: 1)
    #expect(throws: refusal) { _ = try PerplexityEvaluator.evaluate(model, tokens: stream, plan: plan) }
    #expect(throws: refusal) { try plan.forEachScoredLogits(model, chunks: 0..<3, from: stream) { _, _, _ in } }
}
