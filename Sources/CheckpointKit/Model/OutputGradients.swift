#if canImport(Glibc)
import Glibc
#endif

/// The gradients of the next-token loss with respect to every linear's output, token by token, on the
/// float model: the saliency GuidedQuant (Kim et al., ICML 2025) weighs each token's share of a
/// product's Hessian by. A backward pass through ckpt's own forward pass, one chunk at a time: the
/// blocks run forward once, keeping each layer's input, and on the way back each layer's internals
/// are recomputed from its input, so memory holds one chunk's layer inputs and one layer's weights.
public enum OutputGradients {
    /// Why `model`'s blocks are outside this backward pass, nil when they are inside it: pre-norm
    /// RMSNorm blocks with separate q, k and v, RoPE, no soft-capping and a SwiGLU feed-forward
    /// (Llama, Mistral, Qwen 2, SmolLM and their kin).
    public static func unsupportedReason(_ model: TransformerModel) -> String? {
        let c = model.config, arch = model.architecture
        if arch.norm == .layer { return "its LayerNorm blocks" }
        if arch.transposedLinear || model.positions != nil { return "its learned positions and Conv1D products" }
        if c.rope == nil { return "attention without RoPE" }
        if c.attentionSoftcap != nil || c.finalSoftcap != nil { return "its soft-capped logits" }
        if model.head.rounding != .none { return "llama.cpp's activation rounding" }
        // GELU's slope has no golden yet (no covered family uses it): until one checks it, such blocks keep the fixed weight.
        if c.activation != .silu { return "a GELU feed-forward" }
        for layer in model.layers {
            if layer.preAttentionNorm == nil || layer.preFeedForwardNorm == nil || layer.postAttentionNorm != nil
                || layer.postFeedForwardNorm != nil {
                return "norms other than one before the attention and one before the feed-forward"
            }
            if layer.queryNorm != nil || layer.keyNorm != nil { return "its query and key norms" }
            if [layer.q, layer.k, layer.v].contains(where: { $0.name.isEmpty }) { return "its fused q, k and v" }
            guard case .gated = layer.feedForward else { return "a feed-forward that is not gated" }
        }
        return nil
    }

    /// Per product (weight name without `.weight`), per position of the chunks (all of one length),
    /// Σ over `chunks` of ‖∂L/∂z‖², where z is the product's output (before RoPE, bias included) and L
    /// the summed negative log-likelihood of each chunk's next tokens under the float model. Products
    /// that `unsupportedReason` rules out are not handled: check it first.
    public static func squaredNorms(_ model: TransformerModel, chunks: [[Int]], threads: ThreadBudget) -> [String: [Double]] {
        guard let length = chunks.first?.count, length > 1 else { return [:] }
        let pass = BackwardPass(model, tokens: length, threads: threads)
        for chunk in chunks where chunk.count == length {
            if Interruption.isRequested { break }
            pass.run(chunk)
        }
        MatrixMultiply.setThreads(.single)
        return pass.norms
    }

    /// The buffers of one chunk's backward pass, allocated once.
    private final class BackwardPass {
        let model: TransformerModel, threads: ThreadBudget
        let T: Int, d: Int, heads: Int, kvHeads: Int, hd: Int, qDim: Int, kvDim: Int, ff: Int
        let globalRope: (cos: [Float], sin: [Float])?, localRope: (cos: [Float], sin: [Float])?
        var norms: [String: [Double]] = [:]
        /// Each layer's input [layers, T, d], and the gradient with respect to the current one [T, d].
        let inputs, gradient: UnsafeMutablePointer<Float>
        // A layer's recomputed internals and their gradients.
        let h1, h2, mid, rstd1, rstd2, q, k, v, attended, gate, up: UnsafeMutablePointer<Float>
        let dq, dk, dv, dAttended, dGate, dUp, dHidden, probabilities, dProbabilities: UnsafeMutablePointer<Float>
        /// One layer's weights as f32, each `[outputs, inputs]`.
        let wq, wk, wv, wo, wGate, wUp, wDown: UnsafeMutablePointer<Float>
        /// Owns every buffer above.
        private let buffers: ZeroedBuffers
        static let vocabularyTile = 4096

        init(_ model: TransformerModel, tokens: Int, threads: ThreadBudget) {
            self.model = model
            self.threads = threads
            let c = model.config
            T = tokens; d = c.hiddenSize; heads = c.heads; kvHeads = c.kvHeads; hd = c.headDim
            qDim = heads * hd; kvDim = kvHeads * hd
            ff = model.layers.map { layer -> Int in
                if case let .gated(gate, _, _) = layer.feedForward { return gate.outputs }
                return 0
            }.max() ?? 0
            globalRope = c.rope.map { $0.tables(positions: tokens) }
            localRope = c.localRope.map { $0.tables(positions: tokens) }
            let buffers = ZeroedBuffers()
            let zeros = buffers.make
            inputs = zeros(model.layers.count * T * d); gradient = zeros(T * d)
            h1 = zeros(T * d); h2 = zeros(T * d); mid = zeros(T * d); rstd1 = zeros(T); rstd2 = zeros(T)
            q = zeros(T * qDim); k = zeros(T * kvDim); v = zeros(T * kvDim); attended = zeros(T * qDim)
            gate = zeros(T * ff); up = zeros(T * ff)
            dq = zeros(T * qDim); dk = zeros(T * kvDim); dv = zeros(T * kvDim); dAttended = zeros(T * qDim)
            dGate = zeros(T * ff); dUp = zeros(T * ff); dHidden = zeros(T * d)
            probabilities = zeros(T * T); dProbabilities = zeros(T * T)
            wq = zeros(qDim * d); wk = zeros(kvDim * d); wv = zeros(kvDim * d); wo = zeros(d * qDim)
            wGate = zeros(ff * d); wUp = zeros(ff * d); wDown = zeros(d * ff)
            self.buffers = buffers
        }

        /// Adds ‖row‖² of `values` [T, width] to the product's per-position sums.
        func record(_ name: String, _ values: UnsafePointer<Float>, width: Int) {
            var sums = norms[name] ?? [Double](repeating: 0, count: T)
            for t in 0..<T {
                sums[t] += Double(TransformerKernels.sumOfSquares(values + t * width, count: width))
            }
            norms[name] = sums
        }

        func run(_ chunk: [Int]) {
            let layers = model.layers
            // Forward through the model's own blocks (its workers, OpenBLAS single-threaded), keeping each layer's input.
            MatrixMultiply.setThreads(.single)
            let scratch = TransformerModel.Scratch(model, tokens: T)
            model.embed(chunk, into: scratch.x, scratch: scratch)
            for (index, layer) in layers.enumerated() {
                (inputs + index * T * d).update(from: scratch.x, count: T * d)
                model.block(layer, scratch.x, tokens: T, rope: layer.localRope ? localRope : globalRope, scratch: scratch)
            }
            // The rest is products of whole matrices: OpenBLAS on every thread.
            MatrixMultiply.setThreads(threads)
            headBackward(final: scratch.x, labels: chunk)
            for index in layers.indices.reversed() { layerBackward(layers[index], index: index) }
        }

        /// y = γ·x·r with r = 1/√(mean x² + ε), row by row; `rstd` keeps r.
        func rmsForward(_ x: UnsafePointer<Float>, _ gamma: [Float], into y: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>) {
            let epsilon = model.config.normEpsilon
            for t in 0..<T {
                let row = x + t * d, out = y + t * d
                var sum: Float = 0
                for j in 0..<d { sum += row[j] * row[j] }
                let r = 1 / (sum / Float(d) + epsilon).squareRoot()
                rstd[t] = r
                for j in 0..<d { out[j] = gamma[j] * (row[j] * r) }
            }
        }

        /// dx += ∂y/∂x · dy for y = rmsForward(x): r·γ·dy − x·r³·Σ(γ·dy·x)/d.
        func rmsBackward(_ x: UnsafePointer<Float>, _ gamma: [Float], rstd: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                         adding dx: UnsafeMutablePointer<Float>) {
            for t in 0..<T {
                let row = x + t * d, g = dy + t * d, out = dx + t * d
                let r = rstd[t]
                var dot: Float = 0
                for j in 0..<d { dot += gamma[j] * g[j] * row[j] }
                let c = r * r * r * dot / Float(d)
                for j in 0..<d { out[j] += r * gamma[j] * g[j] - row[j] * c }
            }
        }

        /// The final norm and the head: ∂L/∂x of the last layer's output into `gradient`, the head's
        /// rows taken a tile at a time twice (the log-sum-exp first, then the softmax's gradient).
        func headBackward(final x: UnsafeMutablePointer<Float>, labels: [Int]) {
            let head = model.head, vocabulary = head.outputs, rows = T - 1
            let tile = Self.vocabularyTile
            var hidden = [Float](repeating: 0, count: T * d), rstd = [Float](repeating: 0, count: T)
            var weights = [Float](repeating: 0, count: min(tile, vocabulary) * d)
            var logits = [Float](repeating: 0, count: rows * min(tile, vocabulary))
            var maxima = [Float](repeating: -.infinity, count: rows), totals = [Double](repeating: 0, count: rows)
            var dNormed = [Float](repeating: 0, count: T * d)
            hidden.withUnsafeMutableBufferPointer { h in
                rstd.withUnsafeMutableBufferPointer { rmsForward(x, model.finalNorm.weight, into: h.baseAddress!, rstd: $0.baseAddress!) }
            }
            func tileLogits(_ range: Range<Int>) {
                weights.withUnsafeMutableBufferPointer { head.weight.widen(range, into: $0.baseAddress!) }
                hidden.withUnsafeBufferPointer { h in
                    weights.withUnsafeBufferPointer { w in
                        logits.withUnsafeMutableBufferPointer {
                            MatrixMultiply.multiply(h.baseAddress!, w.baseAddress!, into: $0.baseAddress!, m: rows, n: range.count, k: d, transposeB: true)
                        }
                    }
                }
                if let bias = head.bias {
                    for r in 0..<rows { for j in range.indices { logits[r * range.count + j] += bias[range.lowerBound + j] } }
                }
            }
            var start = 0
            while start < vocabulary {
                let range = start..<min(vocabulary, start + tile)
                tileLogits(range)
                for r in 0..<rows {
                    let row = r * range.count
                    var m = maxima[r]
                    for j in 0..<range.count { m = max(m, logits[row + j]) }
                    var sum = 0.0
                    for j in 0..<range.count { sum += Glibc.exp(Double(logits[row + j] - m)) }
                    totals[r] = totals[r] * Glibc.exp(Double(maxima[r] - m)) + sum
                    maxima[r] = m
                }
                start = range.upperBound
            }
            let normalizers = (0..<rows).map { maxima[$0] + Float(Glibc.log(totals[$0])) }
            start = 0
            while start < vocabulary {
                let range = start..<min(vocabulary, start + tile)
                tileLogits(range)
                for r in 0..<rows {
                    let row = r * range.count, z = normalizers[r]
                    for j in 0..<range.count { logits[row + j] = Float(Glibc.exp(Double(logits[row + j] - z))) }
                    let label = labels[r + 1]
                    if range.contains(label) { logits[row + label - range.lowerBound] -= 1 }
                }
                logits.withUnsafeBufferPointer { g in
                    weights.withUnsafeBufferPointer { w in
                        dNormed.withUnsafeMutableBufferPointer {
                            MatrixMultiply.multiply(g.baseAddress!, w.baseAddress!, into: $0.baseAddress!, m: rows, n: d, k: range.count, beta: 1)
                        }
                    }
                }
                start = range.upperBound
            }
            gradient.update(repeating: 0, count: T * d)
            rstd.withUnsafeBufferPointer { r in
                dNormed.withUnsafeBufferPointer { rmsBackward(x, model.finalNorm.weight, rstd: r.baseAddress!, dy: $0.baseAddress!, adding: gradient) }
            }
        }

        /// out[T, l.outputs] = x[T, l.inputs] · Wᵀ (+ bias).
        func forward(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ l: TransformerModel.Linear, into out: UnsafeMutablePointer<Float>) {
            MatrixMultiply.multiply(x, w, into: out, m: T, n: l.outputs, k: l.inputs, transposeB: true)
            if let bias = l.bias {
                for t in 0..<T { for j in 0..<l.outputs { out[t * l.outputs + j] += bias[j] } }
            }
        }

        /// dx[T, l.inputs] (+)= dy[T, l.outputs] · W.
        func backward(_ dy: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ l: TransformerModel.Linear, into dx: UnsafeMutablePointer<Float>,
                      adding: Bool) {
            MatrixMultiply.multiply(dy, w, into: dx, m: T, n: l.inputs, k: l.outputs, beta: adding ? 1 : 0)
        }

        /// Rotates `x` [T, heads·hd] by each position's angles with the forward pass's kernel, or back by
        /// them (`inverse`: the transpose, for gradients, which is the rotation by the negated sines).
        func rotate(_ x: UnsafeMutablePointer<Float>, heads: Int, rope: (cos: [Float], sin: [Float]), inverse: Bool) {
            let sines = inverse ? rope.sin.map { -$0 } : rope.sin
            rope.cos.withUnsafeBufferPointer { c in
                sines.withUnsafeBufferPointer { s in
                    TransformerKernels.applyRoPE(x, rows: T, heads: heads, headDim: hd, rotary: model.config.rope?.rotaryDimensions, start: 0,
                                                 cos: c.baseAddress!, sin: s.baseAddress!, threads: threads)
                }
            }
        }

        /// Softmax probabilities of `head` [T, T] into `p`: scaled q·kᵀ, causal (and windowed).
        func attentionProbabilities(head: Int, window: Int?, into p: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>) {
            let kv = head / (heads / kvHeads)
            MatrixMultiply.multiply(q + head * hd, k + kv * hd, into: p, m: T, n: T, k: hd, alpha: model.config.attentionScale, transposeB: true,
                                    lda: qDim, ldb: kvDim, ldc: T)
            for i in 0..<T {
                let low = window.map { max(0, i - $0 + 1) } ?? 0
                TransformerKernels.softmaxRow(p + i * T, valid: low..<(i + 1), columns: T)
            }
        }

        /// One layer's backward pass: `gradient` holds ∂L/∂(the layer's output) and leaves holding ∂L/∂(its input).
        func layerBackward(_ layer: TransformerModel.Layer, index: Int) {
            guard case let .gated(gateLinear, upLinear, downLinear) = layer.feedForward,
                  let norm1 = layer.preAttentionNorm?.weight, let norm2 = layer.preFeedForwardNorm?.weight else { return }
            let rope = layer.localRope ? localRope : globalRope
            let width = gateLinear.outputs, group = heads / kvHeads
            layer.q.weight.widen(0..<qDim, into: wq); layer.k.weight.widen(0..<kvDim, into: wk); layer.v.weight.widen(0..<kvDim, into: wv)
            layer.o.weight.widen(0..<d, into: wo)
            gateLinear.weight.widen(0..<width, into: wGate); upLinear.weight.widen(0..<width, into: wUp); downLinear.weight.widen(0..<d, into: wDown)
            let x = UnsafePointer(inputs + index * T * d)
            // Recompute the layer.
            rmsForward(x, norm1, into: h1, rstd: rstd1)
            forward(h1, wq, layer.q, into: q); forward(h1, wk, layer.k, into: k); forward(h1, wv, layer.v, into: v)
            if let rope {
                rotate(q, heads: heads, rope: rope, inverse: false)
                rotate(k, heads: kvHeads, rope: rope, inverse: false)
            }
            for head in 0..<heads {
                attentionProbabilities(head: head, window: layer.window, into: probabilities, q: q, k: k)
                MatrixMultiply.multiply(probabilities, v + (head / group) * hd, into: attended + head * hd, m: T, n: hd, k: T,
                                        lda: T, ldb: kvDim, ldc: qDim)
            }
            mid.update(from: x, count: T * d)
            MatrixMultiply.multiply(attended, wo, into: mid, m: T, n: d, k: qDim, beta: 1, transposeB: true)
            rmsForward(mid, norm2, into: h2, rstd: rstd2)
            forward(h2, wGate, gateLinear, into: gate); forward(h2, wUp, upLinear, into: up)

            // The feed-forward's gradients.
            let dOut = gradient
            record(downLinear.name, dOut, width: d)
            MatrixMultiply.multiply(dOut, wDown, into: dGate, m: T, n: width, k: d)   // ∂L/∂(act(gate)·up)
            for i in 0..<(T * width) {
                let g = gate[i], u = up[i], dm = dGate[i]
                let (a, slope) = Self.silu(g)
                dUp[i] = dm * a
                dGate[i] = dm * u * slope
            }
            record(gateLinear.name, dGate, width: width); record(upLinear.name, dUp, width: width)
            backward(dGate, wGate, gateLinear, into: dHidden, adding: false)
            backward(dUp, wUp, upLinear, into: dHidden, adding: true)
            rmsBackward(mid, norm2, rstd: rstd2, dy: dHidden, adding: gradient)   // now ∂L/∂mid

            // The attention's gradients.
            record(layer.o.name, gradient, width: d)
            MatrixMultiply.multiply(gradient, wo, into: dAttended, m: T, n: qDim, k: d)
            dq.update(repeating: 0, count: T * qDim); dk.update(repeating: 0, count: T * kvDim); dv.update(repeating: 0, count: T * kvDim)
            let scale = model.config.attentionScale
            for head in 0..<heads {
                let kv = head / group
                attentionProbabilities(head: head, window: layer.window, into: probabilities, q: q, k: k)
                // ∂L/∂P = dA·vᵀ; ∂L/∂v += Pᵀ·dA.
                MatrixMultiply.multiply(dAttended + head * hd, v + kv * hd, into: dProbabilities, m: T, n: T, k: hd, transposeB: true,
                                        lda: qDim, ldb: kvDim, ldc: T)
                MatrixMultiply.multiply(probabilities, dAttended + head * hd, into: dv + kv * hd, m: T, n: hd, k: T, beta: 1,
                                        transposeA: true, lda: T, ldb: qDim, ldc: kvDim)
                // ∂L/∂S = P ∘ (dP − Σ_j P·dP), times the scale, in place of dP.
                for i in 0..<T {
                    let pr = probabilities + i * T, dp = dProbabilities + i * T
                    var dot: Float = 0
                    for j in 0...i { dot += pr[j] * dp[j] }
                    for j in 0..<T { dp[j] = j <= i ? scale * pr[j] * (dp[j] - dot) : 0 }
                }
                MatrixMultiply.multiply(dProbabilities, k + kv * hd, into: dq + head * hd, m: T, n: hd, k: T, lda: T, ldb: kvDim, ldc: qDim)
                MatrixMultiply.multiply(dProbabilities, q + head * hd, into: dk + kv * hd, m: T, n: hd, k: T, beta: 1, transposeA: true,
                                        lda: T, ldb: qDim, ldc: kvDim)
            }
            if let rope {
                rotate(dq, heads: heads, rope: rope, inverse: true)
                rotate(dk, heads: kvHeads, rope: rope, inverse: true)
            }
            record(layer.q.name, dq, width: qDim); record(layer.k.name, dk, width: kvDim); record(layer.v.name, dv, width: kvDim)
            backward(dq, wq, layer.q, into: dHidden, adding: false)
            backward(dk, wk, layer.k, into: dHidden, adding: true)
            backward(dv, wv, layer.v, into: dHidden, adding: true)
            rmsBackward(x, norm1, rstd: rstd1, dy: dHidden, adding: gradient)   // now ∂L/∂x
        }

        /// silu(g) and its slope.
        static func silu(_ g: Float) -> (Float, Float) {
            let s = 1 / (1 + Float(Glibc.exp(Double(-g))))
            return (g * s, s * (1 + g * (1 - s)))
        }
    }
}
