@testable import CheckpointKit
import Foundation
import Testing
import TestSupport

/// ckpt's backward pass against torch autograd through transformers 5.24 (eager, f32):
/// fixtures/architectures/output_gradients.safetensors, made by tools/make_gradient_goldens.py.
private let goldenModels = ["llama3": "architectures/llama3", "mistral-sliding": "architectures/mistral-sliding",
                            "qwen2-yarn": "architectures/qwen2-yarn", "tiny-llama": "models/tiny-llama"]

@Test("Per-token squared gradients of every product's output match torch autograd (full, sliding-window and biased attention)",
      arguments: goldenModels.keys.sorted())
func outputGradientsMatchTorch(label: String) throws {
    let file = try SafetensorsFile(path: Paths.fixture("architectures/output_gradients.safetensors"))
    let ids = FloatValues.array(try #require(file.view(named: "token_ids"))).map { Int($0) }
    let chunks = [Array(ids[0..<32]), Array(ids[32..<64])]
    let model = try TransformerModel(checkpoint: try Checkpoint(path: Paths.fixture(goldenModels[label]!)), threads: ThreadBudget(2))
    #expect(OutputGradients.unsupportedReason(model) == nil)
    let ours = OutputGradients.squaredNorms(model, chunks: chunks, threads: ThreadBudget(2))
    let prefix = label + "/"
    let names = file.tensors.map(\.name).filter { $0.hasPrefix(prefix) }.map { String($0.dropFirst(prefix.count)) }
    #expect(names.count == model.layers.count * 7)
    #expect(Set(ours.keys) == Set(names))
    for name in names {
        let expected = FloatValues.array(try #require(file.view(named: prefix + name))).map(Double.init)
        let got = try #require(ours[name])
        #expect(got.count == expected.count)
        let scale = expected.max() ?? 0
        #expect(scale > 0, "\(label) \(name): the golden has no gradient")
        let worst = zip(got, expected).map { abs($0 - $1) }.max() ?? .infinity
        #expect(worst <= 1e-4 * scale, "\(label) \(name): max |Δ| \(worst) against a largest value of \(scale)")
    }
    // The first query reads only its own key: its softmax is constant, so nothing flows back to it.
    let firstQuery = try #require(ours["model.layers.0.self_attn.q_proj"])[0]
    #expect(firstQuery < 1e-12)
}

@Test("The backward pass names what it does not cover: query/key norms, soft-capping, post-norms, LayerNorm blocks",
      arguments: ["qwen3", "gemma2", "olmo2"])
func outputGradientsRefuseUncoveredBlocks(name: String) throws {
    let model = try TransformerModel(checkpoint: try Checkpoint(path: Paths.fixture("architectures/" + name)), threads: ThreadBudget(2))
    #expect(OutputGradients.unsupportedReason(model) != nil)
}

@Test("GPT-2's blocks are outside the backward pass")
func outputGradientsRefuseGPT2() throws {
    let model = try TransformerModel(checkpoint: try Checkpoint(path: Paths.fixture("models/tiny-gpt2")), threads: ThreadBudget(2))
    #expect(OutputGradients.unsupportedReason(model) != nil)
}

@Test("Per-product first-token weights give each product the Hessian a collector with that one weight gives, on one shared input")
func perProductFirstTokenWeightsMatchAFixedWeight() throws {
    let columns = 5, rows = 7
    var generator = SeededGenerator(seed: 11)
    let chunks = (0..<3).map { _ in (0..<(rows * columns)).map { _ in Float.random(in: -1...1, using: &generator) } }
    func collect(_ collector: HessianCollector) {
        for chunk in chunks {
            collector.inputsRefilled()
            chunk.withUnsafeBufferPointer { x in
                // q and k read the same buffer, as in the forward pass.
                collector.observe("q", x.baseAddress!, rows: rows, columns: columns)
                collector.observe("k", x.baseAddress!, rows: rows, columns: columns)
            }
        }
    }
    let measured = HessianCollector(threads: ThreadBudget(1))
    measured.firstTokenWeights = ["q": 0, "k": 40]
    collect(measured)
    for (name, weight) in [("q", Float(0)), ("k", Float(40))] {
        let fixed = HessianCollector(threads: ThreadBudget(1), firstTokenWeight: weight)
        collect(fixed)
        let a = try #require(measured.hessian(name)), b = try #require(fixed.hessian(name))
        #expect(a.tokens == b.tokens)
        let worst = zip(a.values, b.values).map { abs($0 - $1) }.max() ?? .infinity
        #expect(worst < 1e-4, "\(name): max |Δ| \(worst)")
    }
}

@Test("A product's measured first-token weight is its first position's squared gradient over the mean of the positions that have a next token, capped, and skipped when not finite")
func firstTokenWeightsFromSquaredGradients() {
    let weights = CalibratedQuantizer.firstTokenWeights([
        "plain": [12, 2, 4, 0],             // the last position has no next token: (2 + 4) / 2 = 3
        "silent": [0, 1, 1, 0],
        "huge": [1e300, 1e-300, 1e-300, 0],
        "broken": [.nan, 1, 1, 0],
        "unreached": [1, 0, 0, 0],
        "short": [1, 1],
    ])
    #expect(weights == ["plain": 4, "silent": 0, "huge": Float(CalibrationOptions.largestFirstTokenWeight)])
}
