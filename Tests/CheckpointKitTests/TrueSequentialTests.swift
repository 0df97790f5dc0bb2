@testable import CheckpointKit
import Foundation
import TestSupport
import Testing

/// Keeps a copy of every input each product is given, by product name (without `.weight`).
private final class InputRecorder: ActivationObserver {
    var inputs: [String: [[Float]]] = [:]
    var columns: [String: Int] = [:]

    func observe(_ weight: String, _ x: UnsafePointer<Float>, rows: Int, columns: Int) {
        inputs[weight, default: []].append(Array(UnsafeBufferPointer(start: x, count: rows * columns)))
        self.columns[weight] = columns
    }

    /// XᵀX of every input `weight` was given, in f64, one element at a time.
    func gram(_ weight: String) -> [Double] {
        let n = columns[weight] ?? 0
        var h = [Double](repeating: 0, count: n * n)
        for x in inputs[weight] ?? [] {
            for r in 0..<(x.count / n) {
                for i in 0..<n { for j in 0..<n { h[i * n + j] += Double(x[r * n + i]) * Double(x[r * n + j]) } }
            }
        }
        return h
    }
}

/// `count` chunks of `length` tokens of the eval fixture, each id folded into the model's vocabulary.
private func chunks(_ count: Int, length: Int, vocabulary: Int) -> [[Int]] {
    let tokens = readBytes(Paths.fixture("eval/eval_tokens_u32le.bin")).withUnsafeBytes { raw in
        (0..<(count * length)).map { Int(raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self)) % vocabulary }
    }
    return (0..<count).map { Array(tokens[($0 * length)..<(($0 + 1) * length)]) }
}

/// Each value of `weight` rounded to one of 15 levels across its range (a stand-in for its quantized values).
private func coarse(_ checkpoint: Checkpoint, _ weight: String) throws -> [Float] {
    let logical = try LogicalCheckpoint(checkpoint)
    let tensor = try #require(logical.tensors.first { $0.name == weight })
    let values = logical.float32(tensor, threads: .single)
    let step = (values.map(abs).max() ?? 1) / 7
    return values.map { ($0 / step).rounded() * step }
}

/// The largest |a − b| relative to the largest |b|.
private func relativeError(_ a: [Float], _ b: [Double]) -> Double {
    let scale = b.map(abs).max() ?? 0
    return zip(a, b).map { abs(Double($0) - $1) }.max()! / max(scale, .leastNormalMagnitude)
}

@Test("A layer's sequential groups follow its structure: q, k, v; o; gate, up; down, and for experts every expert's gate and up, then every down")
func sequentialGroupsFollowTheLayer() throws {
    let llama = LayerByLayerForward(model: try TransformerModel(checkpoint: Checkpoint(path: Paths.fixture("models/tiny-llama"))), chunks: [])
    let p = "model.layers.1."
    #expect(llama.sequentialGroups(layer: 1) == [["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"], ["self_attn.o_proj"],
                                                 ["mlp.gate_proj", "mlp.up_proj"], ["mlp.down_proj"]].map { $0.map { p + $0 + ".weight" } })
    let mixtral = LayerByLayerForward(model: try TransformerModel(checkpoint: Checkpoint(path: Paths.fixture("architectures/mixtral"))), chunks: [])
    let groups = mixtral.sequentialGroups(layer: 0)
    #expect(groups.count == 4)
    #expect(groups[2] == (0..<4).flatMap { ["model.layers.0.block_sparse_moe.experts.\($0).w1.weight", "model.layers.0.block_sparse_moe.experts.\($0).w3.weight"] })
    #expect(groups[3] == (0..<4).map { "model.layers.0.block_sparse_moe.experts.\($0).w2.weight" })
    // Every linear the layer multiplies by is in exactly one group.
    #expect(Set(groups.flatMap { $0 }) == Set(mixtral.weightNames(layer: 0)) && groups.flatMap { $0 }.count == mixtral.weightNames(layer: 0).count)
}

@Test("A pass observing only the o-projection gives XᵀX of the attention output computed with q, k and v replaced, as a whole run with them does, and nothing else")
func sequentialPassSeesEarlierGroupsQuantized() throws {
    let checkpoint = try Checkpoint(path: Paths.fixture("models/tiny-llama"))
    let model = try TransformerModel(checkpoint: checkpoint, threads: .single)
    let forward = LayerByLayerForward(model: model, chunks: chunks(3, length: 48, vocabulary: model.config.vocabularySize))
    let groups = forward.sequentialGroups(layer: 0)
    var replaced: [String: [Float]] = [:]
    for name in groups[0] { replaced[name] = try coarse(checkpoint, name) }

    let pass = HessianCollector(threads: .single)
    forward.run(layer: 0, observer: pass, replacing: replaced, advance: false, observingOnly: groups[1])
    let whole = InputRecorder()
    forward.run(layer: 0, observer: whole, replacing: replaced, advance: false)
    let float = InputRecorder()
    forward.run(layer: 0, observer: float, advance: false)

    let o = String(groups[1][0].dropLast(".weight".count))
    let (h, tokens) = try #require(pass.hessian(groups[1][0]))
    #expect(tokens == 3 * 48)
    #expect(relativeError(h, whole.gram(o)) < 1e-5, "the pass's Hessian is XᵀX of what o reads with q, k, v replaced")
    // The replaced q, k and v change what o reads: the float Hessian is not the one GPTQ gets.
    #expect(relativeError(h, float.gram(o)) > 1e-3)
    // Only the group's products are observed.
    for name in groups[0] + groups[2] + groups[3] { #expect(pass.hessian(name) == nil, "\(name) observed") }
}

@Test("A pass observing every expert's down-projection gives the XᵀX of each expert's own routed inputs, as a whole run does")
func sequentialPassObservesEachExpert() throws {
    let checkpoint = try Checkpoint(path: Paths.fixture("architectures/mixtral"))
    let model = try TransformerModel(checkpoint: checkpoint, threads: .single)
    let forward = LayerByLayerForward(model: model, chunks: chunks(2, length: 32, vocabulary: model.config.vocabularySize))
    let groups = forward.sequentialGroups(layer: 1)
    var replaced: [String: [Float]] = [:]
    for name in groups[0] + groups[1] + groups[2] { replaced[name] = try coarse(checkpoint, name) }
    let pass = HessianCollector(threads: .single)
    forward.run(layer: 1, observer: pass, replacing: replaced, advance: false, observingOnly: groups[3])
    let whole = InputRecorder()
    forward.run(layer: 1, observer: whole, replacing: replaced, advance: false)
    var reached = 0
    for name in groups[3] {
        let product = String(name.dropLast(".weight".count))
        guard let (h, tokens) = pass.hessian(name) else {
            #expect(whole.inputs[product] == nil, "\(name) was reached in the whole run but not in the pass")
            continue
        }
        reached += 1
        #expect(tokens == whole.inputs[product]!.reduce(0) { $0 + $1.count } / whole.columns[product]!)
        #expect(relativeError(h, whole.gram(product)) < 1e-5, "\(name)")
    }
    #expect(reached >= 2)
}

@Test("True-sequential GPTQ quantizes the first layer's q, k and v exactly as the one-pass mode does (their inputs are the same) and its o from other inputs")
func trueSequentialChangesOnlyLaterGroups() throws {
    let scratch = ScratchDirectory()
    let outputs = try tinyLlamaCalibratedTwice("sequential", in: scratch) { calibration, second in calibration.trueSequential = second }
    for (index, output) in outputs.enumerated() { #expect(output.notes.contains { $0.contains("true sequential") } == (index == 1)) }
    try expectFirstLayerQKVAlikeAndODifferent(outputs[0].checkpoint, outputs[1].checkpoint)
}

@Test("The Hessian collector shares one sum between products reading one buffer in turn, and counts a refilled buffer as a new input")
func hessianCollectorSeesRefills() throws {
    var x: [Float] = [1, 2, 3, 4, 5, 6]
    let collector = HessianCollector(threads: .single)
    x.withUnsafeBufferPointer {
        collector.observe("q", $0.baseAddress!, rows: 3, columns: 2)
        collector.observe("k", $0.baseAddress!, rows: 3, columns: 2)
    }
    // The next chunk, in the same buffer: q and k read new rows, as a sequential pass observing only them sees them.
    collector.inputsRefilled()
    for i in x.indices { x[i] = -x[i] }
    x.withUnsafeBufferPointer {
        collector.observe("q", $0.baseAddress!, rows: 3, columns: 2)
        collector.observe("k", $0.baseAddress!, rows: 3, columns: 2)
    }
    // Σ over both chunks: 2 · [[1+9+25, 2+12+30], [·, 4+16+36]].
    for name in ["q.weight", "k.weight"] {
        let (h, tokens) = try #require(collector.hessian(name))
        #expect(tokens == 6)
        #expect(h == [70, 88, 88, 112], "\(name)")
    }
}

@Test("A pass that does not advance observes every product's input, the down projections' included, as a pass that advances does",
      arguments: ["models/tiny-llama", "architectures/mixtral"])
func observingPassSeesEveryInputWithoutTheLastProducts(fixture: String) throws {
    let checkpoint = try Checkpoint(path: Paths.fixture(fixture))
    let model = try TransformerModel(checkpoint: checkpoint, threads: .single)
    let tokens = chunks(2, length: 32, vocabulary: model.config.vocabularySize)
    let observing = LayerByLayerForward(model: model, chunks: tokens), advancing = LayerByLayerForward(model: model, chunks: tokens)
    let seen = InputRecorder(), computed = InputRecorder()
    observing.run(layer: 1, observer: seen, advance: false)
    advancing.run(layer: 1, observer: computed, advance: true)
    #expect(!seen.inputs.isEmpty)
    #expect(seen.inputs == computed.inputs)
    let down = try #require(observing.sequentialGroups(layer: 1).last)
    #expect(down.contains { seen.inputs[String($0.dropLast(".weight".count))] != nil }, "no down projection observed")
    // The observing pass left the hidden states as they were: it sees the same inputs again.
    let again = InputRecorder()
    observing.run(layer: 1, observer: again, advance: false)
    #expect(again.inputs == seen.inputs)
}
