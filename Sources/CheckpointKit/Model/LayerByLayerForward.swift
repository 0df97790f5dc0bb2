/// The forward pass run one decoder layer at a time over fixed chunks of calibration text, as
/// GPTQModel and llm-compressor run it: the hidden states of every chunk are kept between
/// layers, each layer is run once to observe its inputs and once more, with its weights
/// replaced by their quantized values, to give the next layer what the quantized model computes.
public final class LayerByLayerForward {
    /// The model whose layers are run.
    public let model: TransformerModel
    let chunks: [[Int]]
    /// Hidden states [T, hidden] per chunk, before the next layer to run.
    private var states: [[Float]]
    /// Tokens per chunk, and the rotary tables for that length (global and local RoPE), made once.
    private let length: Int
    private let globalRope: (cos: [Float], sin: [Float])?, localRope: (cos: [Float], sin: [Float])?
    /// The working buffers of one chunk, made on first use and kept for every later call.
    private lazy var scratch = TransformerModel.Scratch(model, tokens: length)

    /// Embeds every chunk (all of one length, each within the model's context).
    public init(model: TransformerModel, chunks: [[Int]]) {
        self.model = model
        self.chunks = chunks
        let T = chunks.first?.count ?? 0
        length = T
        globalRope = model.config.rope.map { $0.tables(positions: max(T, 1)) }
        localRope = model.config.localRope.map { $0.tables(positions: max(T, 1)) }
        let scratch = TransformerModel.Scratch(model, tokens: T)
        states = chunks.map { chunk in
            model.embed(chunk, into: scratch.x, scratch: scratch)
            return Array(UnsafeBufferPointer(start: scratch.x, count: T * model.config.hiddenSize))
        }
    }

    /// Decoder layers.
    public var layerCount: Int { model.layers.count }

    /// Whether every product of a layer is a linear of its own (fused projections and GPT-2's
    /// Conv1D are not: their parts cannot be replaced one by one).
    public var replacesEveryLinear: Bool {
        let arch = model.architecture
        if case .fused = arch.attention { return false }
        if case .fusedGated = arch.feedForward { return false }
        return !arch.transposedLinear
    }

    /// The linear weights (`P.weight`) of layer `i`, in the order the forward pass multiplies by them.
    public func weightNames(layer i: Int) -> [String] {
        let layer = model.layers[i]
        var names = [layer.q, layer.k, layer.v, layer.o].map(\.name)
        switch layer.feedForward {
        case let .gated(gate, up, down): names += [gate.name, up.name, down.name]
        case let .plain(up, down): names += [up.name, down.name]
        case let .experts(_, experts): names += experts.flatMap { [$0.gate.name, $0.up.name, $0.down.name] }
        }
        return names.filter { !$0.isEmpty }.map { $0 + ".weight" }
    }

    /// Layer `i`'s linears (`P.weight`) in the groups GPTQModel's true-sequential mode quantizes one
    /// after another, in the order the forward pass reaches them: the attention's inputs (q, k, v),
    /// its output (o), the feed-forward's inputs (gate and up, or up; every expert's), and its
    /// output (down; every expert's). No member's input depends on another member's output, so
    /// one pass observes a whole group, and each group's inputs can be computed with the groups
    /// before it already quantized. Taken from the layer's structure, not from its names.
    public func sequentialGroups(layer i: Int) -> [[String]] {
        let layer = model.layers[i]
        var groups: [[TransformerModel.Linear]] = [[layer.q, layer.k, layer.v], [layer.o]]
        switch layer.feedForward {
        case let .gated(gate, up, down): groups += [[gate, up], [down]]
        case let .plain(up, down): groups += [[up], [down]]
        case let .experts(_, experts): groups += [experts.flatMap { [$0.gate, $0.up] }, experts.map(\.down)]
        }
        return groups.map { $0.map(\.name).filter { !$0.isEmpty }.map { $0 + ".weight" } }.filter { !$0.isEmpty }
    }

    /// Linears reading one input, and what produces that input (a norm, or a linear whose output
    /// rows feed them unchanged): where AWQ's scales can be folded without changing the float model.
    public struct ScalingGroup: Sendable {
        /// The norm weight (`P.weight`) producing the input, or nil.
        public var norm: String?
        /// Whether that norm computes with (1 + w) (Gemma).
        public var normPlusOne: Bool
        /// The linear (`P.weight`) whose output rows are the input, or nil.
        public var producer: String?
        /// The linears (`P.weight`) reading the input.
        public var linears: [String]
    }

    /// Layer `i`'s scaling groups, as AutoAWQ's `get_layers_for_scaling` forms them for Llama: the
    /// attention norm → q, k, v; v → o when each head has its own values; the feed-forward norm
    /// → gate, up; up → down. MoE experts and layers whose norm follows its product form none.
    public func scalingGroups(layer i: Int) -> [ScalingGroup] {
        let layer = model.layers[i], arch = model.architecture, c = model.config
        let prefix = arch.layerPrefix + "\(i)."
        let plusOne = arch.norm == .rmsPlusOne
        guard arch.norm != .layer else { return [] }
        var groups: [ScalingGroup] = []
        if let norm = arch.preAttentionNorm {
            groups.append(ScalingGroup(norm: prefix + norm, normPlusOne: plusOne, producer: nil,
                                       linears: [layer.q, layer.k, layer.v].map { $0.name + ".weight" }))
        }
        if c.kvHeads == c.heads && layer.v.outputs == layer.o.inputs && layer.v.bias == nil {
            groups.append(ScalingGroup(norm: nil, normPlusOne: false, producer: layer.v.name + ".weight", linears: [layer.o.name + ".weight"]))
        }
        switch layer.feedForward {
        case let .gated(gate, up, down):
            if let norm = arch.preFeedForwardNorm {
                groups.append(ScalingGroup(norm: prefix + norm, normPlusOne: plusOne, producer: nil, linears: [gate.name + ".weight", up.name + ".weight"]))
            }
            if up.bias == nil { groups.append(ScalingGroup(norm: nil, normPlusOne: false, producer: up.name + ".weight", linears: [down.name + ".weight"])) }
        case let .plain(up, _):
            if let norm = arch.preFeedForwardNorm {
                groups.append(ScalingGroup(norm: prefix + norm, normPlusOne: plusOne, producer: nil, linears: [up.name + ".weight"]))
            }
        case .experts: break
        }
        return groups
    }

    /// Runs layer `i` over every chunk; `observer` sees each product's input. Weights named in
    /// `replacing` (`P.weight` → f32 values, row-major) stand in for the stored ones. With
    /// `advance`, the outputs become the inputs of the next call; without it, the layer's last
    /// products (down), whose outputs nothing observes, are not computed. With `observingOnly` (`P.weight`
    /// names, one of `sequentialGroups`), only the inputs of those products are wanted: each is
    /// observed and not computed, and the layer stops once all have been (it cannot advance then).
    public func run(layer i: Int, observer: ActivationObserver?, replacing: [String: [Float]] = [:], advance: Bool,
                    observingOnly: [String]? = nil) {
        run(layer: i, chunks: chunks.indices, observer: observer, replacing: replacing, advance: advance, observingOnly: observingOnly)
    }

    /// `run(layer:observer:replacing:advance:observingOnly:)` on the chunks `range` only: two passes (the
    /// float model's and the quantized one's) can take turns chunk by chunk, so an observer sees both
    /// inputs of a product together without either pass keeping every chunk's.
    public func run(layer i: Int, chunks range: Range<Int>, observer: ActivationObserver?, replacing: [String: [Float]] = [:], advance: Bool,
                    observingOnly: [String]? = nil) {
        precondition(!(advance && observingOnly != nil), "a pass that stops early has no outputs to advance")
        let layer = replaced(model.layers[i], replacing)
        let T = length, d = model.config.hiddenSize
        guard !chunks.isEmpty else { return }
        // One scratch for every chunk and call (all of one length): the observer sees the same buffers chunk after chunk.
        let scratch = self.scratch
        scratch.observer = observer
        func module(_ weight: String) -> String { weight.hasSuffix(".weight") ? String(weight.dropLast(".weight".count)) : weight }
        var only = observingOnly.map { Set($0.map(module)) }
        if only == nil, !advance, observer != nil, let last = sequentialGroups(layer: i).last {
            // Every input wanted and no output: the last group's products (down) are observed and not computed.
            only = Set(last.map(module))
            scratch.observesEveryProduct = true
        }
        defer {
            scratch.observer = nil
            scratch.observesEveryProduct = false
        }
        for index in range {
            scratch.observedOnly = only
            // A pass observing one group sees its products chunk after chunk at the same addresses: each chunk is new.
            observer?.inputsRefilled()
            states[index].withUnsafeBufferPointer { scratch.x.update(from: $0.baseAddress!, count: T * d) }
            model.block(layer, scratch.x, tokens: T, rope: layer.localRope ? localRope : globalRope, scratch: scratch)
            if advance { states[index].withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: scratch.x, count: T * d) } }
        }
    }

    /// `layer` with the linears named in `weights` replaced by those values.
    private func replaced(_ layer: TransformerModel.Layer, _ weights: [String: [Float]]) -> TransformerModel.Layer {
        guard !weights.isEmpty else { return layer }
        func swap(_ l: TransformerModel.Linear) -> TransformerModel.Linear {
            guard !l.name.isEmpty, let values = weights[l.name + ".weight"] else { return l }
            return TransformerModel.Linear(weight: .floats(values, rows: l.outputs, columns: l.inputs), bias: l.bias, rounding: l.rounding, name: l.name)
        }
        let feedForward: TransformerModel.FeedForward
        switch layer.feedForward {
        case let .gated(gate, up, down): feedForward = .gated(gate: swap(gate), up: swap(up), down: swap(down))
        case let .plain(up, down): feedForward = .plain(up: swap(up), down: swap(down))
        case let .experts(router, experts):
            feedForward = .experts(router: router, experts: experts.map { .init(gate: swap($0.gate), up: swap($0.up), down: swap($0.down)) })
        }
        return TransformerModel.Layer(preAttentionNorm: layer.preAttentionNorm, postAttentionNorm: layer.postAttentionNorm,
                                      preFeedForwardNorm: layer.preFeedForwardNorm, postFeedForwardNorm: layer.postFeedForwardNorm,
                                      q: swap(layer.q), k: swap(layer.k), v: swap(layer.v), o: swap(layer.o),
                                      queryNorm: layer.queryNorm, keyNorm: layer.keyNorm, feedForward: feedForward,
                                      window: layer.window, localRope: layer.localRope)
    }
}
