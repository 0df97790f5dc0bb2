#if canImport(Glibc)
import Glibc
#endif

/// A decoder-only transformer run a whole chunk of tokens at a time. Its weights stay as the
/// checkpoint stores them (bf16, f16, GGML blocks, NF4, int8: mapped or packed); each product
/// widens a tile of weight rows to f32 just before `cblas_sgemm`, so no f32 copy of the model
/// exists. The family's description (`ArchitectureDescription`) decides which tensors make a
/// block and how; the forward pass below is the same for every family.
public final class TransformerModel: Sendable {
    /// The architecture, parsed from the checkpoint's config.json.
    public let config: TransformerConfig
    /// The checkpoint's path, naming the model in errors.
    public let path: String
    /// The family's tensor names and block layout the weights were found by.
    public let architecture: ArchitectureDescription
    /// Bytes of weights the model keeps reachable as stored (mapped or packed), plus the small f32 vectors.
    public let weightBytes: Int
    /// The longest chunk the model can run (GPT-2's learned positions), nil when RoPE sets no limit.
    public let maximumContext: Int?
    /// Values in its largest weight of at most `sharedRows` rows: the shared scratch each `Scratch` holds.
    let sharedWeightValues: Int
    /// Whether products may round their activations as llama.cpp does (then each `Scratch` holds a buffer for it).
    let roundsActivations: Bool

    /// One product x·Wᵀ (+ b) with its weight as stored.
    struct Linear: Sendable {
        let weight: StoredRows
        let bias: [Float]?
        /// How the activations are rounded first (only when emulating llama.cpp).
        let rounding: ActivationRounding
        /// The weight's name without `.weight` (e.g. `model.layers.0.self_attn.q_proj`), for
        /// activation statistics; empty for the parts of a fused projection after the first.
        var name = ""
        var outputs: Int { weight.rows }
        var inputs: Int { weight.columns }
    }

    /// A norm's f32 weight ((1 + w) already for Gemma) and, for LayerNorm, its bias.
    struct Norm: Sendable {
        let weight: [Float]
        let bias: [Float]?
    }

    /// One expert of a MoE layer.
    struct Expert: Sendable {
        let gate: Linear, up: Linear, down: Linear
    }

    /// A layer's feed-forward block.
    enum FeedForward: Sendable {
        case gated(gate: Linear, up: Linear, down: Linear)
        case plain(up: Linear, down: Linear)
        case experts(router: Linear, experts: [Expert])
    }

    /// One decoder block.
    struct Layer: Sendable {
        let preAttentionNorm: Norm?, postAttentionNorm: Norm?, preFeedForwardNorm: Norm?, postFeedForwardNorm: Norm?
        let q: Linear, k: Linear, v: Linear, o: Linear
        let queryNorm: Norm?, keyNorm: Norm?
        let feedForward: FeedForward
        /// Keys a query sees back from itself (itself included), nil for full attention.
        let window: Int?
        /// Whether the layer uses the local RoPE (Gemma 3's sliding layers).
        let localRope: Bool
    }

    let embedding: StoredRows
    let positions: StoredRows?
    let layers: [Layer]
    let finalNorm: Norm
    let head: Linear
    let threads: ThreadBudget

    /// Reads config.json and maps every weight as stored; quantized layouts without a row
    /// decoder are decoded once. With `emulatingLlamaCpp`, each product with a weight stored as
    /// a GGML type first rounds its activations as llama.cpp's CPU backend does
    /// (`ActivationRounding`), so perplexities reproduce llama-perplexity's; otherwise products
    /// use the activations as they are, as transformers does. The tensors present decide every
    /// size: a config that disagrees with them is refused by tensor name before anything is allocated.
    public init(checkpoint: Checkpoint, threads: ThreadBudget = .allCores, emulatingLlamaCpp: Bool = false) throws {
        guard let json = checkpoint.config else { throw ModelError.missingConfig(path: checkpoint.path) }
        config = try TransformerConfig(parsing: json, file: checkpoint.configSource)
        path = checkpoint.path
        self.threads = threads
        roundsActivations = emulatingLlamaCpp
        // Our own workers split every product by rows (and attention by heads); OpenBLAS runs
        // single-threaded inside each, so its spinning threads never compete with ours.
        MatrixMultiply.setThreads(.single)
        let logical = try LogicalCheckpoint(checkpoint)
        let byName = Dictionary(logical.tensors.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let c = config
        let arch = ArchitectureDescription.of(c.family, gpt2Prefix: byName["wte.weight"] != nil ? "" : "transformer.")
        architecture = arch
        var loaded = 0, bytes = 0
        func tensor(_ name: String, _ shape: [Int], vector: Bool = false) throws -> LogicalTensor {
            guard let t = byName[name] else { throw ModelError.missingWeight(file: checkpoint.path, tensor: name) }
            guard t.shape == shape || (vector && t.elementCount == shape[0] && t.shape.count <= 1) else {
                throw ModelError.weightShape(file: checkpoint.path, tensor: name, expected: shape, actual: t.shape)
            }
            loaded += 1
            WorkProgress.report("loading", done: loaded, total: logical.tensors.count, item: name)
            return t
        }
        func matrix(_ name: String, _ shape: [Int]) throws -> StoredRows {
            let stored = logical.storedRows(try tensor(name, shape), threads: threads)
            bytes += stored.storedBytes
            return stored
        }
        func vector(_ name: String, _ count: Int) throws -> [Float] {
            let t = try tensor(name, [count], vector: true)
            bytes += count * 4
            return logical.float32(t, threads: threads)
        }
        func optionalVector(_ name: String, _ count: Int) throws -> [Float]? { byName[name] == nil ? nil : try vector(name, count) }
        /// The rounding llama.cpp gives the activations of a product with `name`, as the source stores it.
        func rounding(_ name: String) -> ActivationRounding {
            guard emulatingLlamaCpp, case .plain(let entry)? = byName[name]?.storage else { return .none }
            if let stored = entry.storedType { return GGMLType.all.first { $0.name == stored }?.activations ?? .none }
            guard checkpoint.format == .gguf else { return .none }
            return entry.info.dtype == .f16 ? .f16 : entry.info.dtype == .bf16 ? .bf16 : .none
        }
        func linear(_ base: String, outputs: Int, inputs: Int) throws -> Linear {
            Linear(weight: try matrix(base + ".weight", [outputs, inputs]), bias: try optionalVector(base + ".bias", outputs),
                   rounding: rounding(base + ".weight"), name: base)
        }
        /// Rows `parts` of one fused projection (Phi-3 `qkv_proj`, `gate_up_proj`), each a product of its own.
        func fused(_ base: String, parts: [Int], inputs: Int) throws -> [Linear] {
            let all = try linear(base, outputs: parts.reduce(0, +), inputs: inputs)
            var first = 0
            return parts.map { count in
                defer { first += count }
                return Linear(weight: all.weight.slice(first..<(first + count)), bias: all.bias.map { Array($0[first..<(first + count)]) },
                              rounding: all.rounding, name: first == 0 ? base : "")
            }
        }
        /// GPT-2's Conv1D weights are stored [in, out]: transposed once (f32) so every product is x·Wᵀ.
        func conv1D(_ base: String, inputs: Int, parts: [Int]) throws -> [Linear] {
            let outputs = parts.reduce(0, +)
            let t = try tensor(base + ".weight", [inputs, outputs])
            let stored = logical.float32(t, threads: threads)
            var transposed = [Float](repeating: 0, count: stored.count)
            for r in 0..<inputs { for col in 0..<outputs { transposed[col * inputs + r] = stored[r * outputs + col] } }
            bytes += stored.count * 4
            let all = StoredRows.floats(transposed, rows: outputs, columns: inputs)
            let bias = try optionalVector(base + ".bias", outputs)
            var first = 0
            return parts.map { count in
                defer { first += count }
                return Linear(weight: all.slice(first..<(first + count)), bias: bias.map { Array($0[first..<(first + count)]) }, rounding: .none,
                              name: first == 0 ? base : "")
            }
        }
        func norm(_ name: String?, width: Int) throws -> Norm? {
            guard let name else { return nil }
            let weight = try vector(name, width)
            switch arch.norm {
            case .rms: return Norm(weight: weight, bias: nil)
            case .rmsPlusOne: return Norm(weight: weight.map { 1 + $0 }, bias: nil)
            case .layer: return Norm(weight: weight, bias: try vector(String(name.dropLast("weight".count)) + "bias", width))
            }
        }

        let d = c.hiddenSize, hd = c.headDim, qDim = c.heads * hd, kvDim = c.kvHeads * hd, ff = c.intermediateSize
        embedding = try matrix(arch.embedding, [c.vocabularySize, d])
        if let name = arch.positions {
            let rows = byName[name]?.shape.first ?? c.maxPositions
            positions = try matrix(name, [rows, d])
            maximumContext = rows
        } else {
            positions = nil
            maximumContext = nil
        }
        // A config claiming more layers than the file holds is named before any layer is read.
        let held = Set(byName.keys.compactMap { name -> Int? in
            guard name.hasPrefix(arch.layerPrefix) else { return nil }
            return Int(name.dropFirst(arch.layerPrefix.count).prefix { $0 != "." })
        })
        guard held.count >= c.layers, (0..<c.layers).allSatisfy(held.contains) else {
            throw ModelError.badConfig(file: checkpoint.configSource, key: c.family == .gpt2 ? "n_layer" : "num_hidden_layers",
                                       reason: "\(c.layers) layers, but \(checkpoint.path) holds tensors for \(held.count) (expected them to agree)")
        }
        var layers: [Layer] = []
        for i in 0..<c.layers {
            let p = arch.layerPrefix + "\(i)."
            let q: Linear, k: Linear, v: Linear, o: Linear
            switch arch.attention {
            case let .separate(qName, kName, vName):
                q = try linear(p + qName, outputs: qDim, inputs: d)
                k = try linear(p + kName, outputs: kvDim, inputs: d)
                v = try linear(p + vName, outputs: kvDim, inputs: d)
            case let .fused(name):
                let parts = arch.transposedLinear ? try conv1D(p + name, inputs: d, parts: [qDim, kvDim, kvDim])
                    : try fused(p + name, parts: [qDim, kvDim, kvDim], inputs: d)
                (q, k, v) = (parts[0], parts[1], parts[2])
            }
            o = arch.transposedLinear ? try conv1D(p + arch.output, inputs: qDim, parts: [d])[0] : try linear(p + arch.output, outputs: d, inputs: qDim)
            let queryNorm: Norm?, keyNorm: Norm?
            switch arch.queryKeyNorm {
            case .none: (queryNorm, keyNorm) = (nil, nil)
            case .perHead:
                queryNorm = try norm(p + arch.queryKeyNormNames.q, width: hd)
                keyNorm = try norm(p + arch.queryKeyNormNames.k, width: hd)
            case .wholeProjection:
                queryNorm = try norm(p + arch.queryKeyNormNames.q, width: qDim)
                keyNorm = try norm(p + arch.queryKeyNormNames.k, width: kvDim)
            }
            let feedForward: FeedForward
            if let moe = c.experts, moe.sparseLayers[i], let names = arch.experts {
                let router = try linear(p + names.router, outputs: moe.count, inputs: d)
                let experts = try (0..<moe.count).map { e -> Expert in
                    let (gate, up, down) = names.expert(e)
                    return Expert(gate: try linear(p + gate, outputs: moe.intermediateSize, inputs: d),
                                  up: try linear(p + up, outputs: moe.intermediateSize, inputs: d),
                                  down: try linear(p + down, outputs: d, inputs: moe.intermediateSize))
                }
                feedForward = .experts(router: router, experts: experts)
            } else {
                switch arch.feedForward {
                case let .gated(gate, up, down):
                    feedForward = .gated(gate: try linear(p + gate, outputs: ff, inputs: d), up: try linear(p + up, outputs: ff, inputs: d),
                                         down: try linear(p + down, outputs: d, inputs: ff))
                case let .fusedGated(gateUp, down):
                    let parts = try fused(p + gateUp, parts: [ff, ff], inputs: d)
                    feedForward = .gated(gate: parts[0], up: parts[1], down: try linear(p + down, outputs: d, inputs: ff))
                case let .plain(up, down):
                    if arch.transposedLinear {
                        feedForward = .plain(up: try conv1D(p + up, inputs: d, parts: [ff])[0], down: try conv1D(p + down, inputs: ff, parts: [d])[0])
                    } else {
                        feedForward = .plain(up: try linear(p + up, outputs: ff, inputs: d), down: try linear(p + down, outputs: d, inputs: ff))
                    }
                }
            }
            layers.append(Layer(
                preAttentionNorm: try norm(arch.preAttentionNorm.map { p + $0 }, width: d),
                postAttentionNorm: try norm(arch.postAttentionNorm.map { p + $0 }, width: d),
                preFeedForwardNorm: try norm(arch.preFeedForwardNorm.map { p + $0 }, width: d),
                postFeedForwardNorm: try norm(arch.postFeedForwardNorm.map { p + $0 }, width: d),
                q: q, k: k, v: v, o: o, queryNorm: queryNorm, keyNorm: keyNorm, feedForward: feedForward,
                window: c.slidingWindows[i], localRope: c.slidingWindows[i] != nil && c.localRope != nil))
        }
        self.layers = layers
        finalNorm = try norm(arch.finalNorm, width: d)!
        if byName[arch.head] != nil, !(c.tiedEmbeddings && c.family == .gpt2) {
            head = Linear(weight: try matrix(arch.head, [c.vocabularySize, d]), bias: nil, rounding: rounding(arch.head),
                          name: String(arch.head.dropLast(".weight".count)))
        } else {
            head = Linear(weight: embedding, bias: nil, rounding: rounding(arch.embedding), name: String(arch.head.dropLast(".weight".count)))
        }
        weightBytes = bytes
        sharedWeightValues = Self.matrices(embedding: embedding, positions: positions, layers: layers, head: head)
            .filter { $0.rows <= Self.sharedRows }.map { $0.rows * $0.columns }.max() ?? 0
    }

    /// Every weight matrix the forward pass multiplies by, in a fixed order (embedding, layers, head).
    var weightMatrices: [StoredRows] { Self.matrices(embedding: embedding, positions: positions, layers: layers, head: head) }

    /// The weight matrices of a model made of these parts, in `weightMatrices`' order.
    private static func matrices(embedding: StoredRows, positions: StoredRows?, layers: [Layer], head: Linear) -> [StoredRows] {
        var all = [embedding] + (positions.map { [$0] } ?? [])
        for layer in layers {
            all += [layer.q.weight, layer.k.weight, layer.v.weight, layer.o.weight]
            switch layer.feedForward {
            case let .gated(gate, up, down): all += [gate.weight, up.weight, down.weight]
            case let .plain(up, down): all += [up.weight, down.weight]
            case let .experts(router, experts): all += [router.weight] + experts.flatMap { [$0.gate.weight, $0.up.weight, $0.down.weight] }
            }
        }
        return all + [head.weight]
    }

    /// Every norm weight and bias, in a fixed order.
    var weightVectors: [[Float]] {
        var all: [[Float]] = []
        func add(_ norm: Norm?) { if let norm { all.append(norm.weight); if let b = norm.bias { all.append(b) } } }
        for layer in layers {
            [layer.preAttentionNorm, layer.postAttentionNorm, layer.preFeedForwardNorm, layer.postFeedForwardNorm, layer.queryNorm, layer.keyNorm]
                .forEach(add)
        }
        add(finalNorm)
        return all
    }

    /// Query rows per causal attention block.
    static let attentionBlock = 64

    /// Scratch memory for a batch of chunks (`sequences` of `tokens` tokens each), allocated once and reused by every layer and the head.
    final class Scratch {
        let x, h, q, k, v, attended, mlp, up, gate, tiles, shared, scores, rounded, gathered, expertOutput, router: UnsafeMutablePointer<Float>
        let tileStride: Int, workers: Int
        /// Per worker, one head item's logits (`forEachHeadItem`): at most `headStride` values.
        let headItems: UnsafeMutablePointer<Float>, headStride: Int
        /// Sees every product's input (an importance-matrix collector), or nil.
        var observer: ActivationObserver?
        /// Products (names without `.weight`) whose inputs alone are wanted: each is observed and not
        /// computed, no other product is observed, and once all have been, the rest of the layer is
        /// skipped (a calibration pass that needs one group's inputs stops there). Nil computes and
        /// observes everything.
        var observedOnly: Set<String>? {
            didSet { pending = observedOnly ?? [] }
        }
        /// Those of `observedOnly` not yet observed in this run of the layer (reset per chunk by the caller).
        var pending: Set<String> = []
        /// Whether every product of `observedOnly` has been observed: nothing more of the layer is computed.
        var finished: Bool { observedOnly != nil && pending.isEmpty }
        /// With `observedOnly`, whether the products outside it are observed too (and computed): a pass
        /// that wants every input but no output skips the layer's last products (its down projections).
        var observesEveryProduct = false
        /// Owns every buffer above.
        private let buffers: ZeroedBuffers

        /// Scratch for `sequences` chunks of `tokens` tokens each, run through the blocks together.
        init(_ model: TransformerModel, tokens length: Int, sequences: Int = 1) {
            let c = model.config
            let T = length * sequences
            let qDim = c.heads * c.headDim, kvDim = c.kvHeads * c.headDim
            let ff = max(c.intermediateSize, c.experts?.intermediateSize ?? 0)
            let widest = max(c.hiddenSize, qDim, ff)
            workers = max(1, model.threads.count)
            tileStride = TransformerModel.columnBlock * widest
            let buffers = ZeroedBuffers()
            let make = buffers.make
            x = make(T * c.hiddenSize); h = make(T * c.hiddenSize); mlp = make(T * c.hiddenSize)
            q = make(T * qDim); k = make(T * kvDim); v = make(T * kvDim); attended = make(T * qDim)
            up = make(T * ff); gate = make(T * ff)
            tiles = make(workers * tileStride)
            // A head item: at most `length` rows by one tile (the whole vocabulary when it is shared-size, else a column block).
            let vocabulary = c.vocabularySize
            headStride = length * (vocabulary <= TransformerModel.sharedRows ? (vocabulary + 15) / 16 * 16 : TransformerModel.columnBlock)
            headItems = make(workers * headStride)
            shared = make(model.sharedWeightValues)
            scores = make(workers * TransformerModel.attentionBlock * length)
            // Only products emulating llama.cpp round their activations first.
            rounded = make(model.roundsActivations ? T * widest : 0)
            let moe = c.experts != nil
            gathered = make(moe ? length * c.hiddenSize : 0); expertOutput = make(moe ? length * c.hiddenSize : 0)
            router = make(moe ? length * (c.experts?.count ?? 0) : 0)
            self.buffers = buffers
        }
    }

    /// x[rows, in] · Wᵀ (+ bias) → out[rows, out]: weight rows widened to f32 tile by tile and
    /// multiplied by `cblas_sgemm`, the work items (`ProductTiling`) spread over the workers.
    /// With `addingToZeros`, `out` is already all zeros and the products are added to it, which
    /// spares OpenBLAS its pass zeroing the output first (a fresh logits array, 50 MB a chunk at 135M).
    /// With `sequences` > 1 the rows are that many sequences of `rows / sequences`, each cut as it would be alone (the
    /// weight widened once for all): every value is then computed exactly as for its sequence alone.
    private func linear(_ input: UnsafePointer<Float>, _ layer: Linear, into out: UnsafeMutablePointer<Float>, rows: Int, sequences: Int = 1,
                        scratch: Scratch, addingToZeros: Bool = false) {
        let inputs = layer.inputs, outputs = layer.outputs
        if let only = scratch.observedOnly {
            // A pass for some products' inputs: only those are observed (and not computed), the others computed
            // unobserved until every one of those has been seen, and then nothing more.
            guard !scratch.pending.isEmpty else { return }
            if only.contains(layer.name) {
                scratch.observer?.observe(layer.name, input, rows: rows, columns: inputs)
                scratch.pending.remove(layer.name)
                return
            }
            if scratch.observesEveryProduct, let observer = scratch.observer, !layer.name.isEmpty {
                observer.observe(layer.name, input, rows: rows, columns: inputs)
            }
        } else if let observer = scratch.observer, !layer.name.isEmpty {
            observer.observe(layer.name, input, rows: rows, columns: inputs)
        }
        var x = input
        if layer.rounding != .none && layer.rounding.fits(rowLength: inputs) {
            // llama.cpp's arithmetic, on request only: the activations rounded as its vec_dot_type stores them.
            scratch.rounded.update(from: input, count: rows * inputs)
            layer.rounding.apply(UnsafeMutableBufferPointer(start: scratch.rounded, count: rows * inputs), rowLength: inputs)
            x = UnsafePointer(scratch.rounded)
        }
        guard rows > 0, outputs > 0 else { return }
        let sequenceRows = rows / max(1, sequences)
        let tiling = Self.tiling(outputs: outputs, rows: sequenceRows)
        let source = UncheckedSendable(x)
        /// One item: weight rows `tile` (already f32 at `weights`) times token rows `block`, bias added.
        func multiply(_ x: UnsafePointer<Float>, _ weights: UnsafePointer<Float>, tile: Range<Int>, block: Range<Int>) {
            MatrixMultiply.multiply(x + block.lowerBound * inputs, weights, into: out + block.lowerBound * outputs + tile.lowerBound,
                                    m: block.count, n: tile.count, k: inputs, beta: addingToZeros ? 1 : 0, transposeB: true,
                                    lda: inputs, ldb: inputs, ldc: outputs)
            if let bias = layer.bias {
                for r in block {
                    let o = out + r * outputs
                    for j in tile { o[j] += bias[j] }
                }
            }
        }
        if tiling.shared {
            // The whole weight widened once (in four pieces), then every item reads its tile from there.
            let shared = scratch.shared
            threads.forEachChunk(4) { piece in
                let first = piece * outputs / 4, end = (piece + 1) * outputs / 4
                layer.weight.widen(first..<end, into: shared + first * inputs)
            }
            threads.forEachChunk(tiling.items * sequences) { item in
                let sequence = item / tiling.items, within = item % tiling.items
                let tile = tiling.tile(within / tiling.tokenBlocks, of: outputs)
                let block = tiling.block(within % tiling.tokenBlocks, of: sequenceRows)
                let first = sequence * sequenceRows
                multiply(source.value, shared + tile.lowerBound * inputs, tile: tile, block: (first + block.lowerBound)..<(first + block.upperBound))
            }
            return
        }
        // Each worker widens the tiles it takes into its own scratch.
        let workers = min(scratch.workers, tiling.tiles)
        threads.forEachChunk(workers) { worker in
            let buffer = scratch.tiles + worker * scratch.tileStride
            var index = worker
            while index < tiling.tiles {
                let tile = tiling.tile(index, of: outputs)
                layer.weight.widen(tile, into: buffer)
                for first in stride(from: 0, to: rows, by: max(1, sequenceRows)) {
                    multiply(source.value, buffer, tile: tile, block: first..<(first + sequenceRows))
                }
                index += workers
            }
        }
    }

    /// How one product x[rows, in]·Wᵀ is cut into work items: `tiles` tiles of `tileRows` weight
    /// rows, each multiplied by `tokenBlocks` blocks of `blockRows` activation rows. It depends on
    /// the shape alone, so every element is computed the same way for any thread count; the item
    /// count is a multiple of 4, so 1, 2 or 4 workers taking items in turn finish together.
    struct ProductTiling: Equatable {
        /// Weight rows per tile (a multiple of 16, the kernel's width), and tiles.
        var tileRows: Int, tiles: Int
        /// Activation rows per block, and blocks.
        var blockRows: Int, tokenBlocks: Int
        /// Whether the whole weight is widened once into shared scratch first (it has at most
        /// `sharedRows` rows); otherwise each item widens its own tile.
        var shared: Bool

        /// Items: every tile times every token block.
        var items: Int { tiles * tokenBlocks }
        /// Weight rows of tile `index`.
        func tile(_ index: Int, of outputs: Int) -> Range<Int> { (index * tileRows)..<min(outputs, (index + 1) * tileRows) }
        /// Activation rows of block `index`.
        func block(_ index: Int, of rows: Int) -> Range<Int> { (index * blockRows)..<min(rows, (index + 1) * blockRows) }
    }

    /// The most weight rows a product widens whole into shared scratch (q, k, v, o and, at 135M, down).
    static let sharedRows = 1024
    /// The most weight rows per tile of a wider product (gate, up, head), widened by the worker that takes it.
    static let columnBlock = 512

    /// The cut of a product of `outputs` weight rows and `rows` activation rows. OpenBLAS packs
    /// both operands on every call, so a weight of at most `sharedRows` rows is cut four ways into
    /// a × b = 4 token blocks × tiles choosing the fewest packed values (b·rows + a·outputs): the
    /// narrow k and v split the tokens, square ones both. A wider weight is cut into the fewest
    /// tiles of at most `columnBlock` rows, rounded up to a multiple of 4.
    static func tiling(outputs: Int, rows: Int) -> ProductTiling {
        func sixteens(_ n: Int) -> Int { max(16, (n + 15) / 16 * 16) }
        if outputs <= sharedRows {
            let a = [1, 2, 4].min { (4 / $0) * rows + $0 * outputs < (4 / $1) * rows + $1 * outputs }!
            let tileRows = sixteens((outputs + 4 / a - 1) / (4 / a))
            let blockRows = max(1, (rows + a - 1) / a)
            return ProductTiling(tileRows: tileRows, tiles: (outputs + tileRows - 1) / tileRows,
                                 blockRows: blockRows, tokenBlocks: (rows + blockRows - 1) / blockRows, shared: true)
        }
        let tiles = ((outputs + columnBlock - 1) / columnBlock + 3) / 4 * 4
        let tileRows = sixteens((outputs + tiles - 1) / tiles)
        return ProductTiling(tileRows: tileRows, tiles: (outputs + tileRows - 1) / tileRows, blockRows: rows, tokenBlocks: 1, shared: false)
    }

    private func normalize(_ x: UnsafePointer<Float>, _ norm: Norm, into out: UnsafeMutablePointer<Float>, rows: Int) {
        let width = norm.weight.count
        norm.weight.withUnsafeBufferPointer { w in
            if let bias = norm.bias {
                bias.withUnsafeBufferPointer { b in
                    TransformerKernels.layerNorm(x, weight: w.baseAddress!, bias: b.baseAddress!, into: out, rows: rows, dim: width,
                                                 epsilon: config.normEpsilon, threads: threads)
                }
            } else {
                TransformerKernels.rmsNorm(x, weight: w.baseAddress!, into: out, rows: rows, dim: width, epsilon: config.normEpsilon, threads: threads)
            }
        }
    }

    /// Logits [scored.count, vocab] for the tokens of one chunk (positions 0..<tokens.count),
    /// computed for the rows in `scored` only (the others still feed attention). The tokens
    /// must lie in the vocabulary and number at most `maximumContext`.
    public func logits(_ tokens: [Int], scored: Range<Int>? = nil, observer: ActivationObserver? = nil) -> [Float] {
        let scored = scored ?? 0..<tokens.count
        let scratch = Scratch(self, tokens: tokens.count)
        scratch.observer = observer
        runBlocks([tokens], scratch: scratch)
        var out = Self.zeroedLogits(count: scored.count * config.vocabularySize, threads: threads)
        out.withUnsafeMutableBufferPointer { headLogits(sequence: 0, length: tokens.count, scored: scored, into: $0, scratch: scratch) }
        return out
    }

    /// Runs `sequences` (chunks of one length, each from position 0) through the blocks together,
    /// then hands each sequence's logits for the rows `scored` ([scored.count, vocab], in one buffer
    /// the next sequence overwrites) to `body`, in order. Batching widens each weight once for all the
    /// sequences (llama-perplexity likewise runs n_batch / n_ctx chunks at a time) and spreads the work
    /// over more items; each product is still cut per sequence as it would be alone, so every sequence's
    /// logits are those `logits(_:scored:)` gives it alone, bit for bit.
    public func forEachScoredLogits(_ sequences: [[Int]], scored: Range<Int>,
                                    _ body: (Int, UnsafeBufferPointer<Float>) throws -> Void) rethrows {
        guard let length = sequences.first?.count else { return }
        let scratch = Scratch(self, tokens: length, sequences: sequences.count)
        runBlocks(sequences, scratch: scratch)
        var out = Self.zeroedLogits(count: scored.count * config.vocabularySize, threads: threads)
        try out.withUnsafeMutableBufferPointer { buffer in
            for index in sequences.indices {
                // The first product adds into the fresh zeros; later ones overwrite (OpenBLAS zeroes first).
                headLogits(sequence: index, length: length, scored: scored, into: buffer, scratch: scratch, overwriting: index > 0)
                try body(index, UnsafeBufferPointer(buffer))
            }
        }
    }

    /// Runs `sequences` (chunks of one length, each from position 0) through the blocks together and gives, per
    /// sequence, the natural-log probability of each next token: row p of `scored` scores token p + 1, so `scored`
    /// ends before the last position. Nil for a sequence with a NaN or infinite logit among those rows.
    /// The logits are the bits `forEachScoredLogits` hands out, but never held whole: the head runs tile by tile
    /// (`forEachHeadItem`) and keeps per row and tile only the maximum and Σ e^(v − max), joined over the tiles in
    /// tile order, so memory holds a tile per worker instead of [rows, vocabulary] (131 MB a chunk at a 128K
    /// vocabulary) and the result is the same for any thread count; it is within about 1e-7 relative of normalizing
    /// whole rows, as `logSoftmaxNormalizer` does.
    public func nextTokenLogProbabilities(_ sequences: [[Int]], scored: Range<Int>) -> [[Double]?] {
        guard let length = sequences.first?.count else { return [] }
        precondition(scored.lowerBound >= 0 && scored.upperBound < length, "every scored row needs a next token")
        let scratch = Scratch(self, tokens: length, sequences: sequences.count)
        runBlocks(sequences, scratch: scratch)
        let rows = scored.count, positions = sequences.count * rows
        let tiles = Self.tiling(outputs: head.outputs, rows: rows).tiles
        let next = sequences.flatMap { tokens in scored.map { tokens[$0 + 1] } }
        // Per scored position and tile: the tile's maximum (NaN when a value is not finite) and Σ e^(v − max).
        var maxima = [Float](repeating: 0, count: positions * tiles), sums = [Double](repeating: 0, count: positions * tiles)
        var nextLogits = [Float](repeating: 0, count: positions)
        maxima.withUnsafeMutableBufferPointer { maxima in
            sums.withUnsafeMutableBufferPointer { sums in
                nextLogits.withUnsafeMutableBufferPointer { nextLogits in
                    let targets = UncheckedSendable((maxima.baseAddress!, sums.baseAddress!, nextLogits.baseAddress!))
                    forEachHeadItem(sequences: sequences.count, length: length, scored: scored, scratch: scratch) { sequence, index, tile, block, values in
                        let (maxima, sums, nextLogits) = targets.value
                        for r in block {
                            let row = UnsafeBufferPointer(start: values + (r - block.lowerBound) * tile.count, count: tile.count)
                            let position = sequence * rows + r
                            let (m, sum) = allFinite(row) ? exponentialSum(row) : (.nan, 0)
                            maxima[position * tiles + index] = m
                            sums[position * tiles + index] = sum
                            if tile.contains(next[position]) { nextLogits[position] = row[next[position] - tile.lowerBound] }
                        }
                    }
                }
            }
        }
        return sequences.indices.map { sequence in
            var values: [Double] = []
            values.reserveCapacity(rows)
            for position in (sequence * rows)..<((sequence + 1) * rows) {
                let parts = position * tiles..<((position + 1) * tiles)
                var m = -Float.infinity
                for t in parts {
                    guard maxima[t].isFinite else { return nil }
                    m = max(m, maxima[t])
                }
                var sum = 0.0
                for t in parts { sum += sums[t] * Glibc.exp(Double(maxima[t]) - Double(m)) }
                values.append(Double(nextLogits[position] - m) - Glibc.log(sum))
            }
            return values
        }
    }

    /// How many chunks of `length` tokens `forEachScoredLogits` and `nextTokenLogProbabilities` should run together:
    /// up to four (llama-perplexity's 2048-token batches at ctx 512), as many as keep their activations within
    /// max(64 MB, the weights / 16), so memory stays near the file's size (four at SmolLM2-135M, two at a 1B model).
    public func sequencesPerBatch(length: Int) -> Int {
        let c = config
        let qDim = c.heads * c.headDim, kvDim = c.kvHeads * c.headDim
        let ff = max(c.intermediateSize, c.experts?.intermediateSize ?? 0)
        let perSequence = max(1, length * 4 * (3 * c.hiddenSize + 2 * qDim + 2 * kvDim + 2 * ff))
        let budget = max(64 << 20, weightBytes / 16)
        return max(1, min(4, budget / perSequence))
    }

    /// A logits array of `count` zeros, zeroed on every worker (the head adds into it): 50 MB a chunk at 135M.
    private static func zeroedLogits(count: Int, threads: ThreadBudget) -> [Float] {
        [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            let base = UncheckedSendable(buffer.baseAddress)
            threads.forEachPiece(of: buffer.count, size: 1 << 18) { piece in
                (base.value! + piece.lowerBound).initialize(repeating: 0, count: piece.count)
            }
            initialized = buffer.count
        }
    }

    /// Embeds the sequences (all of one length) into `scratch.x` and runs every block over them.
    private func runBlocks(_ sequences: [[Int]], scratch: Scratch) {
        let c = config
        let T = sequences.first?.count ?? 0
        // Rotary tables for this chunk's length (dynamic and longrope depend on it).
        let global = c.rope.map { $0.tables(positions: max(T, 1)) }
        let local = c.localRope.map { $0.tables(positions: max(T, 1)) }
        for (index, tokens) in sequences.enumerated() { embed(tokens, into: scratch.x + index * T * c.hiddenSize, scratch: scratch) }
        for layer in layers {
            block(layer, scratch.x, tokens: T, sequences: sequences.count, rope: layer.localRope ? local : global, scratch: scratch)
        }
    }

    /// The final norm and the head for rows `scored` of sequence `sequence` (after `runBlocks`) into `out`
    /// [scored.count, vocab]: added to the zeros `out` holds, or with `overwriting`, written over it.
    private func headLogits(sequence: Int, length: Int, scored: Range<Int>, into out: UnsafeMutableBufferPointer<Float>, scratch: Scratch,
                            overwriting: Bool = false) {
        let c = config
        normalize(scratch.x + (sequence * length + scored.lowerBound) * c.hiddenSize, finalNorm, into: scratch.h, rows: scored.count)
        linear(scratch.h, head, into: out.baseAddress!, rows: scored.count, scratch: scratch, addingToZeros: !overwriting)
        if let cap = c.finalSoftcap { TransformerKernels.softcap(out.baseAddress!, count: out.count, cap: cap) }
    }

    /// The final norm and the head over rows `scored` of every sequence (after `runBlocks`), cut as `linear` cuts one
    /// sequence's product (the same tiles and token blocks, so the same bits as `headLogits`), each weight tile widened
    /// once for all the sequences. Each item's logits, [block.count, tile.count] with bias and soft-capping applied, go
    /// to `consume(sequence, tile index, tile, block, values)` on the worker that made them, in a buffer it reuses.
    private func forEachHeadItem(sequences: Int, length: Int, scored: Range<Int>, scratch: Scratch,
                                 _ consume: (Int, Int, Range<Int>, Range<Int>, UnsafeMutablePointer<Float>) -> Void) {
        let c = config, rows = scored.count, inputs = head.inputs, outputs = head.outputs
        for s in 0..<sequences {
            normalize(scratch.x + (s * length + scored.lowerBound) * c.hiddenSize, finalNorm, into: scratch.h + s * rows * inputs, rows: rows)
        }
        var x = UnsafePointer(scratch.h)
        if head.rounding != .none && head.rounding.fits(rowLength: inputs) {
            // llama.cpp's arithmetic, on request only, as `linear` does it.
            scratch.rounded.update(from: x, count: sequences * rows * inputs)
            head.rounding.apply(UnsafeMutableBufferPointer(start: scratch.rounded, count: sequences * rows * inputs), rowLength: inputs)
            x = UnsafePointer(scratch.rounded)
        }
        guard rows > 0, outputs > 0 else { return }
        let tiling = Self.tiling(outputs: outputs, rows: rows)
        precondition(tiling.blockRows * tiling.tileRows <= scratch.headStride, "a head item exceeds its scratch")
        if tiling.shared {
            threads.forEachChunk(4) { piece in
                let first = piece * outputs / 4, end = (piece + 1) * outputs / 4
                head.weight.widen(first..<end, into: scratch.shared + first * inputs)
            }
        }
        let source = UncheckedSendable(x)
        let workers = min(scratch.workers, tiling.items)
        threads.forEachChunk(workers) { worker in
            let logits = scratch.headItems + worker * scratch.headStride
            var item = worker
            while item < tiling.items {
                let index = item / tiling.tokenBlocks
                let tile = tiling.tile(index, of: outputs), block = tiling.block(item % tiling.tokenBlocks, of: rows)
                let weights: UnsafePointer<Float>
                if tiling.shared {
                    weights = UnsafePointer(scratch.shared + tile.lowerBound * inputs)
                } else {
                    let buffer = scratch.tiles + worker * scratch.tileStride
                    head.weight.widen(tile, into: buffer)
                    weights = UnsafePointer(buffer)
                }
                for s in 0..<sequences {
                    MatrixMultiply.multiply(source.value + (s * rows + block.lowerBound) * inputs, weights, into: logits,
                                            m: block.count, n: tile.count, k: inputs, transposeB: true, lda: inputs, ldb: inputs, ldc: tile.count)
                    if let bias = head.bias {
                        for r in 0..<block.count {
                            let o = logits + r * tile.count
                            for j in tile.indices { o[j] += bias[tile.lowerBound + j] }
                        }
                    }
                    if let cap = c.finalSoftcap { TransformerKernels.softcap(logits, count: block.count * tile.count, cap: cap) }
                    consume(s, index, tile, block, logits)
                }
                item += workers
            }
        }
    }

    /// The embeddings of `tokens` (positions added, scaled where the family does) into `x` [T, hidden].
    func embed(_ tokens: [Int], into x: UnsafeMutablePointer<Float>, scratch: Scratch) {
        let d = config.hiddenSize, T = tokens.count, h = scratch.h
        for (t, token) in tokens.enumerated() {
            embedding.widen(token..<(token + 1), into: x + t * d)
            if let positions {
                positions.widen(t..<(t + 1), into: h)
                for j in 0..<d { x[t * d + j] += h[j] }
            }
        }
        if architecture.scalesEmbedding {
            let scale = Float(Double(d).squareRoot())
            for i in 0..<(T * d) { x[i] *= scale }
        }
    }

    /// One decoder block on `x` [S·T, hidden] (S sequences of T tokens) in place: x += postnorm(attention(prenorm(x))),
    /// then the same with the feed-forward.
    func block(_ layer: Layer, _ x: UnsafeMutablePointer<Float>, tokens length: Int, sequences: Int = 1, rope: (cos: [Float], sin: [Float])?,
               scratch: Scratch) {
        let d = config.hiddenSize, h = scratch.h, m = scratch.mlp
        let T = length * sequences
        if let norm = layer.preAttentionNorm { normalize(x, norm, into: h, rows: T) } else { h.update(from: x, count: T * d) }
        attention(layer, input: h, into: m, tokens: length, sequences: sequences, rope: rope, scratch: scratch)
        if scratch.finished { return }
        if let norm = layer.postAttentionNorm { normalize(m, norm, into: m, rows: T) }
        add(m, into: x, count: T * d)
        if let norm = layer.preFeedForwardNorm { normalize(x, norm, into: h, rows: T) } else { h.update(from: x, count: T * d) }
        feedForward(layer, input: h, into: m, tokens: T, sequences: sequences, scratch: scratch)
        if scratch.finished { return }
        if let norm = layer.postFeedForwardNorm { normalize(m, norm, into: m, rows: T) }
        add(m, into: x, count: T * d)
    }

    /// One layer's attention of `input` [S·T, hidden] into `out` [S·T, hidden]: each of the S sequences of T tokens attends within itself.
    private func attention(_ layer: Layer, input: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, tokens T: Int, sequences: Int,
                           rope: (cos: [Float], sin: [Float])?, scratch s: Scratch) {
        let c = config
        let hd = c.headDim, qDim = c.heads * hd, kvDim = c.kvHeads * hd
        let rows = T * sequences
        linear(input, layer.q, into: s.q, rows: rows, sequences: sequences, scratch: s)
        linear(input, layer.k, into: s.k, rows: rows, sequences: sequences, scratch: s)
        linear(input, layer.v, into: s.v, rows: rows, sequences: sequences, scratch: s)
        if s.finished { return }
        if let qn = layer.queryNorm, let kn = layer.keyNorm {
            // Per head: each head's values are a row of their own; whole projection: each token's.
            let perHead = architecture.queryKeyNorm == .perHead
            normalize(s.q, qn, into: s.q, rows: perHead ? rows * c.heads : rows)
            normalize(s.k, kn, into: s.k, rows: perHead ? rows * c.kvHeads : rows)
        }
        if let rope, let embedding = c.rope {
            rope.cos.withUnsafeBufferPointer { cp in
                rope.sin.withUnsafeBufferPointer { sp in
                    for sequence in 0..<sequences {
                        TransformerKernels.applyRoPE(s.q + sequence * T * qDim, rows: T, heads: c.heads, headDim: hd,
                                                     rotary: embedding.rotaryDimensions, start: 0, cos: cp.baseAddress!, sin: sp.baseAddress!,
                                                     threads: threads)
                        TransformerKernels.applyRoPE(s.k + sequence * T * kvDim, rows: T, heads: c.kvHeads, headDim: hd,
                                                     rotary: embedding.rotaryDimensions, start: 0, cos: cp.baseAddress!, sin: sp.baseAddress!,
                                                     threads: threads)
                    }
                }
            }
        }
        let group = c.heads / c.kvHeads
        let window = layer.window, cap = c.attentionSoftcap, scale = c.attentionScale
        // Work items: per sequence, a head's query blocks paired first with last, second with
        // second-to-last (a causal block's cost grows with its position), so items cost alike
        // and the workers, taking them in turn, finish together.
        let blocks = (T + Self.attentionBlock - 1) / Self.attentionBlock
        let pairs = (blocks + 1) / 2
        let items = sequences * c.heads * pairs
        let workers = min(s.workers, items)
        threads.forEachChunk(workers) { worker in
            let scores = s.scores + worker * Self.attentionBlock * T
            var item = worker
            while item < items {
                let sequence = item / (c.heads * pairs)
                let head = item / pairs % c.heads, pair = item % pairs
                let kv = head / group
                let q = s.q + sequence * T * qDim, k = s.k + sequence * T * kvDim, v = s.v + sequence * T * kvDim
                let attended = s.attended + sequence * T * qDim
                for block in stride(from: pair, through: blocks - 1 - pair, by: max(1, blocks - 1 - 2 * pair)) {
                    // Causal (and windowed): a block of query rows needs only the keys from its first row's window to its last row.
                    let first = block * Self.attentionBlock
                    let rows = min(Self.attentionBlock, T - first)
                    let keyEnd = first + rows
                    let keyStart = window.map { max(0, first - $0 + 1) } ?? 0
                    let keys = keyEnd - keyStart
                    MatrixMultiply.multiply(q + first * qDim + head * hd, k + keyStart * kvDim + kv * hd, into: scores,
                                            m: rows, n: keys, k: hd, alpha: scale, transposeB: true, lda: qDim, ldb: kvDim, ldc: keys)
                    for i in 0..<rows {
                        let query = first + i
                        let low = window.map { max(keyStart, query - $0 + 1) } ?? keyStart
                        let row = scores + i * keys
                        if let cap { TransformerKernels.softcap(row + (low - keyStart), count: query - low + 1, cap: cap) }
                        TransformerKernels.softmaxRow(row, valid: (low - keyStart)..<(query - keyStart + 1), columns: keys)
                    }
                    MatrixMultiply.multiply(scores, v + keyStart * kvDim + kv * hd, into: attended + first * qDim + head * hd,
                                            m: rows, n: hd, k: keys, lda: keys, ldb: kvDim, ldc: qDim)
                }
                item += workers
            }
        }
        linear(s.attended, layer.o, into: out, rows: rows, sequences: sequences, scratch: s)
    }

    /// One layer's feed-forward block of `input` [T, hidden] into `out` [T, hidden].
    private func feedForward(_ layer: Layer, input: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, tokens T: Int, sequences: Int,
                             scratch s: Scratch) {
        switch layer.feedForward {
        case let .gated(gate, up, down):
            gatedProduct(input, gate: gate, up: up, down: down, into: out, rows: T, sequences: sequences, scratch: s)
        case let .plain(up, down):
            linear(input, up, into: s.up, rows: T, sequences: sequences, scratch: s)
            if s.finished { return }
            TransformerKernels.geluTanh(s.up, count: T * up.outputs, threads: threads)
            linear(s.up, down, into: out, rows: T, sequences: sequences, scratch: s)
        case let .experts(router, experts):
            // Sequence by sequence: an expert's rows are then the tokens one sequence routes to it, as when it runs alone.
            let length = T / max(1, sequences), d = config.hiddenSize
            for sequence in 0..<sequences {
                mixture(input + sequence * length * d, router: router, experts: experts, into: out + sequence * length * d, tokens: length,
                        scratch: s)
            }
        }
    }

    /// act(x·gateᵀ) ⊙ (x·upᵀ) · downᵀ.
    private func gatedProduct(_ x: UnsafePointer<Float>, gate: Linear, up: Linear, down: Linear, into out: UnsafeMutablePointer<Float>,
                              rows: Int, sequences: Int = 1, scratch s: Scratch) {
        linear(x, up, into: s.up, rows: rows, sequences: sequences, scratch: s)
        linear(x, gate, into: s.gate, rows: rows, sequences: sequences, scratch: s)
        // Gate and up observed only (a calibration pass for their inputs): there is nothing to multiply further.
        if s.finished || s.observedOnly.map({ $0.contains(gate.name) || $0.contains(up.name) }) == true { return }
        switch config.activation {
        case .silu: TransformerKernels.siluMultiply(s.gate, s.up, count: rows * up.outputs, threads: threads)
        case .geluTanh: TransformerKernels.geluTanhMultiply(s.gate, s.up, count: rows * up.outputs, threads: threads)
        }
        linear(s.gate, down, into: out, rows: rows, sequences: sequences, scratch: s)
    }

    /// A MoE block as transformers runs it: router softmax in f32, the top-k experts per token
    /// (renormalized when the family says so), each expert run on its tokens, outputs added in expert order.
    private func mixture(_ x: UnsafePointer<Float>, router: Linear, experts: [Expert], into out: UnsafeMutablePointer<Float>, tokens T: Int,
                         scratch s: Scratch) {
        guard let moe = config.experts else { return }
        let d = config.hiddenSize, count = experts.count
        linear(x, router, into: s.router, rows: T, scratch: s)
        var routed = [[(token: Int, weight: Float)]](repeating: [], count: count)
        var probabilities = [Float](repeating: 0, count: count)
        for t in 0..<T {
            let logits = s.router + t * count
            var m = -Float.infinity
            for e in 0..<count { m = max(m, logits[e]) }
            var total: Float = 0
            for e in 0..<count { probabilities[e] = Float(Glibc.exp(Double(logits[e] - m))); total += probabilities[e] }
            for e in 0..<count { probabilities[e] /= total }
            // Top k by probability, the lower index first among equals.
            let chosen = (0..<count).sorted { probabilities[$0] > probabilities[$1] || (probabilities[$0] == probabilities[$1] && $0 < $1) }
                .prefix(moe.perToken)
            var sum: Float = 0
            for e in chosen { sum += probabilities[e] }
            for e in chosen { routed[e].append((t, moe.normalizeTopK ? probabilities[e] / sum : probabilities[e])) }
        }
        out.update(repeating: 0, count: T * d)
        for (e, expert) in experts.enumerated() where !routed[e].isEmpty {
            let tokens = routed[e]
            for (j, entry) in tokens.enumerated() { (s.gathered + j * d).update(from: x + entry.token * d, count: d) }
            s.observer?.inputsRefilled()
            gatedProduct(s.gathered, gate: expert.gate, up: expert.up, down: expert.down, into: s.expertOutput, rows: tokens.count, scratch: s)
            for (j, entry) in tokens.enumerated() {
                let source = s.expertOutput + j * d, target = out + entry.token * d
                for i in 0..<d { target[i] += entry.weight * source[i] }
            }
        }
    }

    /// target += source, in pieces on every worker (each sum is the same whoever computes it).
    private func add(_ source: UnsafePointer<Float>, into target: UnsafeMutablePointer<Float>, count: Int) {
        threads.forEachPiece(of: count, size: 1 << 15) { piece in
            for i in piece { target[i] += source[i] }
        }
    }
}

/// Zeroed f32 buffers allocated one by one and freed together (a pass's scratch memory).
final class ZeroedBuffers {
    private var all: [UnsafeMutablePointer<Float>] = []

    /// A new buffer of `count` zeros (at least one value), freed with this object.
    func make(_ count: Int) -> UnsafeMutablePointer<Float> {
        let p = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
        p.initialize(repeating: 0, count: max(count, 1))
        all.append(p)
        return p
    }

    deinit { for p in all { p.deallocate() } }
}
