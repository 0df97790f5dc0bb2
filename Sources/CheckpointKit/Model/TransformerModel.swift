/// A decoder-only transformer (Llama, Mistral, Qwen2, GPT-2) held in f32 and run a whole chunk
/// of tokens at a time: every matrix product through `cblas_sgemm`, the rest SIMD, scratch
/// memory allocated once per chunk length.
public final class TransformerModel: Sendable {
    /// The architecture, parsed from the checkpoint's config.json.
    public let config: TransformerConfig
    /// The checkpoint's path, naming the model in errors.
    public let path: String

    struct Layer: Sendable {
        var attentionNorm: [Float], attentionNormBias: [Float]?
        var q: [Float], k: [Float], v: [Float], o: [Float]
        var qBias: [Float]?, kBias: [Float]?, vBias: [Float]?, oBias: [Float]?
        var mlpNorm: [Float], mlpNormBias: [Float]?
        var gate: [Float]?, up: [Float], down: [Float]
        var upBias: [Float]?, downBias: [Float]?
        /// How each product's activations are rounded first (only when emulating llama.cpp).
        var rounding = Rounding()
    }

    /// Per-projection activation rounding of one layer.
    struct Rounding: Sendable {
        var q = ActivationRounding.none, k = ActivationRounding.none, v = ActivationRounding.none, o = ActivationRounding.none
        var gate = ActivationRounding.none, up = ActivationRounding.none, down = ActivationRounding.none
    }

    let embedding: [Float]
    let positions: [Float]?
    let layers: [Layer]
    let finalNorm: [Float], finalNormBias: [Float]?
    /// [vocab, hidden]; the embedding when tied.
    let head: [Float]
    /// How the head's activations are rounded first (only when emulating llama.cpp).
    let headRounding: ActivationRounding
    let threads: ThreadBudget

    /// Loads config.json and every weight (dequantized when quantized) as f32. With
    /// `emulatingLlamaCpp`, each product with a weight stored as a GGML type first rounds its
    /// activations as llama.cpp's CPU backend does (`ActivationRounding`), so perplexities
    /// reproduce llama-perplexity's; otherwise products use the activations as they are, as
    /// transformers does.
    public init(checkpoint: Checkpoint, threads: ThreadBudget = .allCores, emulatingLlamaCpp: Bool = false) throws {
        guard let json = checkpoint.config else { throw ModelError.missingConfig(path: checkpoint.path) }
        config = try TransformerConfig(parsing: json, file: checkpoint.configSource)
        path = checkpoint.path
        self.threads = threads
        // Our own workers split every product by rows (and attention by heads); OpenBLAS runs
        // single-threaded inside each, so its spinning threads never compete with ours.
        MatrixMultiply.setThreads(.single)
        let logical = try LogicalCheckpoint(checkpoint)
        let byName = Dictionary(logical.tensors.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let c = config
        // GPT-2 checkpoints come with or without the "transformer." prefix.
        let prefix = c.family == .gpt2 && byName["wte.weight"] != nil ? "" : (c.family == .gpt2 ? "transformer." : "model.")
        var loaded = 0
        func load(_ name: String, _ shape: [Int]) throws -> [Float] {
            loaded += 1
            WorkProgress.report("loading", done: loaded, total: logical.tensors.count, item: name)
            guard let t = byName[name] else { throw ModelError.missingWeight(file: checkpoint.path, tensor: name) }
            guard t.shape == shape || (shape.count == 1 && t.elementCount == shape[0]) else {
                throw ModelError.weightShape(file: checkpoint.path, tensor: name, expected: shape, actual: t.shape)
            }
            let values = logical.float32(t, threads: threads)
            logical.releasePages(t)  // the f32 copy is what we keep; the mapped bytes can go
            return values
        }
        func optional(_ name: String, _ shape: [Int]) throws -> [Float]? { byName[name] == nil ? nil : try load(name, shape) }
        /// The rounding llama.cpp gives the activations of a product with `name`, as the source stores it.
        func rounding(_ name: String) -> ActivationRounding {
            guard emulatingLlamaCpp, case .plain(let entry)? = byName[name]?.storage else { return .none }
            if let stored = entry.storedType { return GGMLType.all.first { $0.name == stored }?.activations ?? .none }
            guard checkpoint.format == .gguf else { return .none }
            return entry.info.dtype == .f16 ? .f16 : entry.info.dtype == .bf16 ? .bf16 : .none
        }
        let d = c.hiddenSize, qDim = c.heads * c.headDim, kvDim = c.kvHeads * c.headDim, ff = c.intermediateSize
        var layers: [Layer] = []
        if c.family == .gpt2 {
            embedding = try load(prefix + "wte.weight", [c.vocabularySize, d])
            positions = try load(prefix + "wpe.weight", [c.maxPositions, d])
            for i in 0..<c.layers {
                let p = "\(prefix)h.\(i)."
                // Conv1D weights are [in, out]; transpose once so every product is x·Wᵀ.
                let qkv = try load(p + "attn.c_attn.weight", [d, 3 * d])
                let qkvBias = try load(p + "attn.c_attn.bias", [3 * d])
                let qkvT = Self.transpose(qkv, rows: d, columns: 3 * d)
                layers.append(Layer(
                    attentionNorm: try load(p + "ln_1.weight", [d]), attentionNormBias: try load(p + "ln_1.bias", [d]),
                    q: Array(qkvT[0..<(d * d)]), k: Array(qkvT[(d * d)..<(2 * d * d)]), v: Array(qkvT[(2 * d * d)...]),
                    o: Self.transpose(try load(p + "attn.c_proj.weight", [d, d]), rows: d, columns: d),
                    qBias: Array(qkvBias[0..<d]), kBias: Array(qkvBias[d..<(2 * d)]), vBias: Array(qkvBias[(2 * d)...]),
                    oBias: try load(p + "attn.c_proj.bias", [d]),
                    mlpNorm: try load(p + "ln_2.weight", [d]), mlpNormBias: try load(p + "ln_2.bias", [d]),
                    gate: nil, up: Self.transpose(try load(p + "mlp.c_fc.weight", [d, ff]), rows: d, columns: ff),
                    down: Self.transpose(try load(p + "mlp.c_proj.weight", [ff, d]), rows: ff, columns: d),
                    upBias: try load(p + "mlp.c_fc.bias", [ff]), downBias: try load(p + "mlp.c_proj.bias", [d])))
            }
            finalNorm = try load(prefix + "ln_f.weight", [d])
            finalNormBias = try load(prefix + "ln_f.bias", [d])
        } else {
            embedding = try load(prefix + "embed_tokens.weight", [c.vocabularySize, d])
            positions = nil
            for i in 0..<c.layers {
                let p = "\(prefix)layers.\(i)."
                layers.append(Layer(
                    attentionNorm: try load(p + "input_layernorm.weight", [d]), attentionNormBias: nil,
                    q: try load(p + "self_attn.q_proj.weight", [qDim, d]), k: try load(p + "self_attn.k_proj.weight", [kvDim, d]),
                    v: try load(p + "self_attn.v_proj.weight", [kvDim, d]), o: try load(p + "self_attn.o_proj.weight", [d, qDim]),
                    qBias: try optional(p + "self_attn.q_proj.bias", [qDim]), kBias: try optional(p + "self_attn.k_proj.bias", [kvDim]),
                    vBias: try optional(p + "self_attn.v_proj.bias", [kvDim]), oBias: try optional(p + "self_attn.o_proj.bias", [d]),
                    mlpNorm: try load(p + "post_attention_layernorm.weight", [d]), mlpNormBias: nil,
                    gate: try load(p + "mlp.gate_proj.weight", [ff, d]), up: try load(p + "mlp.up_proj.weight", [ff, d]),
                    down: try load(p + "mlp.down_proj.weight", [d, ff]), upBias: nil, downBias: nil,
                    rounding: Rounding(q: rounding(p + "self_attn.q_proj.weight"), k: rounding(p + "self_attn.k_proj.weight"),
                                       v: rounding(p + "self_attn.v_proj.weight"), o: rounding(p + "self_attn.o_proj.weight"),
                                       gate: rounding(p + "mlp.gate_proj.weight"), up: rounding(p + "mlp.up_proj.weight"),
                                       down: rounding(p + "mlp.down_proj.weight"))))
            }
            finalNorm = try load(prefix + "norm.weight", [d])
            finalNormBias = nil
        }
        self.layers = layers
        if let stored = try optional("lm_head.weight", [c.vocabularySize, d]), !(c.tiedEmbeddings && c.family == .gpt2) {
            head = stored
            headRounding = rounding("lm_head.weight")
        } else {
            head = embedding
            headRounding = rounding(prefix + (c.family == .gpt2 ? "wte.weight" : "embed_tokens.weight"))
        }
    }

    static func transpose(_ m: [Float], rows: Int, columns: Int) -> [Float] {
        var out = [Float](repeating: 0, count: m.count)
        for r in 0..<rows { for c in 0..<columns { out[c * rows + r] = m[r * columns + c] } }
        return out
    }

    /// Output columns per product block: fixed, so every element is computed the same way for any
    /// thread count. Splitting by weight rows packs each weight once (the activations, smaller,
    /// are packed once per block).
    static let columnBlock = 256
    /// Query rows per causal attention block.
    static let attentionBlock = 64

    /// x[T, in] · W[out, in]ᵀ (+ bias) → out[T, out], in blocks of output columns spread over the workers.
    private func linear(_ x: UnsafePointer<Float>, _ w: [Float], _ bias: [Float]?, into out: UnsafeMutablePointer<Float>,
                        rows: Int, inputs: Int, outputs: Int, rounding: ActivationRounding = .none) {
        if rounding != .none && rounding.fits(rowLength: inputs) {
            // llama.cpp's arithmetic, on request only: the activations rounded as its vec_dot_type stores them.
            let rounded = UnsafeMutableBufferPointer<Float>.allocate(capacity: rows * inputs)
            defer { rounded.deallocate() }
            _ = rounded.initialize(from: UnsafeBufferPointer(start: x, count: rows * inputs))
            rounding.apply(rounded, rowLength: inputs)
            linear(UnsafePointer(rounded.baseAddress!), w, bias, into: out, rows: rows, inputs: inputs, outputs: outputs)
            return
        }
        let blocks = (outputs + Self.columnBlock - 1) / Self.columnBlock
        w.withUnsafeBufferPointer { wp in
            threads.forEachChunk(blocks) { block in
                let first = block * Self.columnBlock
                let count = min(Self.columnBlock, outputs - first)
                MatrixMultiply.multiply(x, wp.baseAddress! + first * inputs, into: out + first, m: rows, n: count, k: inputs,
                                        transposeB: true, lda: inputs, ldb: inputs, ldc: outputs)
                if let bias {
                    for r in 0..<rows {
                        let o = out + r * outputs
                        for j in first..<(first + count) { o[j] += bias[j] }
                    }
                }
            }
        }
    }

    /// Logits [scored.count, vocab] for the tokens of one chunk (positions 0..<tokens.count),
    /// computed for the rows in `scored` only (the others still feed attention).
    public func logits(_ tokens: [Int], scored: Range<Int>? = nil) -> [Float] {
        let c = config
        let T = tokens.count
        let scored = scored ?? 0..<T
        let d = c.hiddenSize, hd = c.headDim, qDim = c.heads * hd, kvDim = c.kvHeads * hd, ff = c.intermediateSize
        // Rotary tables for this chunk's positions: cheap next to one layer, and keeps the model immutable.
        let (ropeCos, ropeSin) = c.family == .gpt2 ? ([Float](), [Float]())
            : TransformerKernels.ropeTables(theta: c.ropeTheta, headDim: hd, positions: max(T, 1))
        var x = [Float](repeating: 0, count: T * d)
        var h = x
        var q = [Float](repeating: 0, count: T * qDim), k = [Float](repeating: 0, count: T * kvDim), v = k
        var attention = [Float](repeating: 0, count: T * qDim)
        var scores = [Float](repeating: 0, count: c.heads * T * T)
        var up = [Float](repeating: 0, count: T * ff), gate = up
        for (t, token) in tokens.enumerated() {
            for j in 0..<d { x[t * d + j] = embedding[token * d + j] }
            if let positions { for j in 0..<d { x[t * d + j] += positions[t * d + j] } }
        }
        let group = c.heads / c.kvHeads
        let scale = 1 / Float(hd).squareRoot()
        for layer in layers {
            x.withUnsafeMutableBufferPointer { xp in
                h.withUnsafeMutableBufferPointer { hp in
                    normalize(xp.baseAddress!, layer.attentionNorm, layer.attentionNormBias, into: hp.baseAddress!, rows: T)
                    q.withUnsafeMutableBufferPointer { qp in
                        k.withUnsafeMutableBufferPointer { kp in
                            v.withUnsafeMutableBufferPointer { vp in
                                linear(hp.baseAddress!, layer.q, layer.qBias, into: qp.baseAddress!, rows: T, inputs: d, outputs: qDim, rounding: layer.rounding.q)
                                linear(hp.baseAddress!, layer.k, layer.kBias, into: kp.baseAddress!, rows: T, inputs: d, outputs: kvDim, rounding: layer.rounding.k)
                                linear(hp.baseAddress!, layer.v, layer.vBias, into: vp.baseAddress!, rows: T, inputs: d, outputs: kvDim, rounding: layer.rounding.v)
                                if c.family != .gpt2 {
                                    ropeCos.withUnsafeBufferPointer { cp in
                                        ropeSin.withUnsafeBufferPointer { sp in
                                            TransformerKernels.applyRoPE(qp.baseAddress!, rows: T, heads: c.heads, headDim: hd, start: 0,
                                                                         cos: cp.baseAddress!, sin: sp.baseAddress!, threads: threads)
                                            TransformerKernels.applyRoPE(kp.baseAddress!, rows: T, heads: c.kvHeads, headDim: hd, start: 0,
                                                                         cos: cp.baseAddress!, sin: sp.baseAddress!, threads: threads)
                                        }
                                    }
                                }
                                attention.withUnsafeMutableBufferPointer { ap in
                                    scores.withUnsafeMutableBufferPointer { sp in
                                        // Heads are independent: one per worker at a time, each with its own scores.
                                        threads.forEachChunk(c.heads) { head in
                                            let kv = head / group
                                            let headScores = sp.baseAddress! + head * T * T
                                            // Causal: a block of query rows needs only the keys up to its last row.
                                            var first = 0
                                            while first < T {
                                                let rows = min(Self.attentionBlock, T - first)
                                                let keys = first + rows
                                                let block = headScores + first * T
                                                MatrixMultiply.multiply(qp.baseAddress! + first * qDim + head * hd, kp.baseAddress! + kv * hd,
                                                                        into: block, m: rows, n: keys, k: hd, alpha: scale, transposeB: true,
                                                                        lda: qDim, ldb: kvDim, ldc: T)
                                                TransformerKernels.causalSoftmax(block, rows: rows, stride: T, firstRow: first, columns: keys)
                                                MatrixMultiply.multiply(block, vp.baseAddress! + kv * hd, into: ap.baseAddress! + first * qDim + head * hd,
                                                                        m: rows, n: hd, k: keys, lda: T, ldb: kvDim, ldc: qDim)
                                                first += rows
                                            }
                                        }
                                        linear(ap.baseAddress!, layer.o, layer.oBias, into: hp.baseAddress!, rows: T, inputs: qDim, outputs: d, rounding: layer.rounding.o)
                                    }
                                }
                            }
                        }
                    }
                    add(hp.baseAddress!, into: xp.baseAddress!, count: T * d)
                    normalize(xp.baseAddress!, layer.mlpNorm, layer.mlpNormBias, into: hp.baseAddress!, rows: T)
                    up.withUnsafeMutableBufferPointer { upp in
                        gate.withUnsafeMutableBufferPointer { gp in
                            linear(hp.baseAddress!, layer.up, layer.upBias, into: upp.baseAddress!, rows: T, inputs: d, outputs: ff, rounding: layer.rounding.up)
                            if let g = layer.gate {
                                linear(hp.baseAddress!, g, nil, into: gp.baseAddress!, rows: T, inputs: d, outputs: ff, rounding: layer.rounding.gate)
                                TransformerKernels.siluMultiply(gp.baseAddress!, upp.baseAddress!, count: T * ff, threads: threads)
                                linear(gp.baseAddress!, layer.down, layer.downBias, into: hp.baseAddress!, rows: T, inputs: ff, outputs: d, rounding: layer.rounding.down)
                            } else {
                                TransformerKernels.geluTanh(upp.baseAddress!, count: T * ff, threads: threads)
                                linear(upp.baseAddress!, layer.down, layer.downBias, into: hp.baseAddress!, rows: T, inputs: ff, outputs: d)
                            }
                        }
                    }
                    add(hp.baseAddress!, into: xp.baseAddress!, count: T * d)
                }
            }
        }
        // Final norm and the head, for the scored rows only.
        let rows = scored.count
        var out = [Float](repeating: 0, count: rows * c.vocabularySize)
        x.withUnsafeBufferPointer { xp in
            h.withUnsafeMutableBufferPointer { hp in
                normalize(xp.baseAddress! + scored.lowerBound * d, finalNorm, finalNormBias, into: hp.baseAddress!, rows: rows)
                out.withUnsafeMutableBufferPointer { op in
                    linear(hp.baseAddress!, head, nil, into: op.baseAddress!, rows: rows, inputs: d, outputs: c.vocabularySize, rounding: headRounding)
                }
            }
        }
        return out
    }

    private func normalize(_ x: UnsafePointer<Float>, _ weight: [Float], _ bias: [Float]?, into out: UnsafeMutablePointer<Float>, rows: Int) {
        weight.withUnsafeBufferPointer { w in
            if let bias {
                bias.withUnsafeBufferPointer { b in
                    TransformerKernels.layerNorm(x, weight: w.baseAddress!, bias: b.baseAddress!, into: out, rows: rows, dim: config.hiddenSize,
                                                 epsilon: config.normEpsilon, threads: threads)
                }
            } else {
                TransformerKernels.rmsNorm(x, weight: w.baseAddress!, into: out, rows: rows, dim: config.hiddenSize, epsilon: config.normEpsilon,
                                           threads: threads)
            }
        }
    }

    private func add(_ source: UnsafePointer<Float>, into target: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { target[i] += source[i] }
    }
}
