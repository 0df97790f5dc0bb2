#if canImport(Glibc)
import Glibc
#endif

/// A base model's log-probabilities over the scored positions, saved so that comparing N
/// candidates costs N + 1 forward passes instead of 2N (`ckpt-compare --save-base / --base`).
///
/// Per scored position it keeps the top-k log-probabilities (ids and values, f32), the log of
/// the remaining probability mass, and the true token's log-probability. KL divergence against
/// a saved base therefore merges the non-top-k tokens into one bucket: by the log-sum
/// inequality the result is a lower bound of the full-vocabulary KL, exact up to what the tail
/// holds (with k = 64 the tail is typically under 1% of the mass). Perplexity, Δp and the
/// same-top-token rate are exact.
public struct BaseLogProbabilities: Sendable {
    /// The `kind` metadata of a saved base file; `load` refuses any other.
    public static let kind = "ckpt-base-logprobs-v1"

    /// Tokens per chunk.
    public var context: Int
    /// Chunks evaluated.
    public var chunks: Int
    /// Log-probabilities kept per position: k, at most the vocabulary size.
    public var topK: Int
    /// The token stream the chunks were cut from, so candidates are scored on the same text.
    public var tokens: [Int]
    /// The BOS id that replaced each chunk's first token, or nil.
    public var bos: Int?
    /// [rows, topK] ids and log-probabilities, most probable first.
    public var topIDs: [Int32]
    /// [rows, topK] natural-log probabilities of `topIDs`, in the same order.
    public var topLogProbabilities: [Float]
    /// [rows] log of the probability mass outside the top k (floored at log 1e-30).
    public var restLogProbability: [Float]
    /// [rows] log-probability of the true next token.
    public var trueLogProbability: [Float]
    /// The base model's vocabulary size; a candidate must match it.
    public var vocabularySize: Int

    /// Scored positions: chunks × scored rows per chunk.
    public var rows: Int { trueLogProbability.count }

    /// Runs `model` over the chunks and keeps what comparisons need.
    public static func compute(_ model: TransformerModel, tokens: [Int], plan: ChunkPlan, topK: Int,
                               progress: (Int) -> Void = { _ in }) throws -> BaseLogProbabilities {
        let vocabulary = model.config.vocabularySize
        let k = min(topK, vocabulary)
        var result = BaseLogProbabilities(context: plan.context, chunks: plan.chunks, topK: k, tokens: tokens, bos: plan.bos, topIDs: [],
                                          topLogProbabilities: [], restLogProbability: [], trueLogProbability: [], vocabularySize: vocabulary)
        let rows = Array(plan.scoredRows)
        try plan.forEachScoredLogits(model, chunks: 0..<plan.chunks, from: tokens) { i, chunk, all in
            let measured = measureRows(rows.count, placeholder: (max: Float(0), logSum: 0.0, order: [Int]()), threads: model.threads) { r in
                let row = UnsafeBufferPointer(rebasing: all[(r * vocabulary)..<((r + 1) * vocabulary)])
                let (m, logSum) = logSoftmaxNormalizer(row)
                return (m, logSum, topIndices(row, k))
            }
            for (r, position) in rows.enumerated() {
                let row = UnsafeBufferPointer(rebasing: all[(r * vocabulary)..<((r + 1) * vocabulary)])
                let (m, logSum, order) = measured[r]
                var topMass = 0.0
                for id in order {
                    let lp = Double(row[id] - m) - logSum
                    result.topIDs.append(Int32(id))
                    result.topLogProbabilities.append(Float(lp))
                    topMass += Glibc.exp(lp)
                }
                result.restLogProbability.append(Float(Glibc.log(max(1 - topMass, 1e-30))))
                result.trueLogProbability.append(Float(Double(row[chunk[position + 1]] - m) - logSum))
            }
            progress(i + 1)
        }
        return result
    }

    /// Compares a candidate against these saved base log-probabilities.
    public func compare(_ candidate: TransformerModel, progress: (Int, DivergenceAccumulator) -> Void = { _, _ in }) throws
        -> DivergenceAccumulator
    {
        guard candidate.config.vocabularySize == vocabularySize else {
            throw EvaluationError.vocabularyMismatch(base: "saved base", baseSize: vocabularySize, candidate: candidate.path,
                                                     candidateSize: candidate.config.vocabularySize)
        }
        let plan = ChunkPlan(context: context, chunks: chunks, bos: bos)
        var result = DivergenceAccumulator()
        var row = 0
        let rows = Array(plan.scoredRows)
        try plan.forEachScoredLogits(candidate, chunks: 0..<chunks, from: tokens) { i, chunk, all in
            let first = row
            let positions = measureRows(rows.count, placeholder: DivergenceAccumulator.Position.zero, threads: candidate.threads) { r in
                let row = first + r, position = rows[r]
                let c = UnsafeBufferPointer(rebasing: all[(r * vocabularySize)..<((r + 1) * vocabularySize)])
                let (mc, lc) = logSoftmaxNormalizer(c)
                var kl = 0.0, candidateTopMass = 0.0
                var top = 0
                for v in 0..<vocabularySize where c[v] > c[top] { top = v }
                for j in 0..<topK {
                    let id = Int(topIDs[row * topK + j])
                    let lpB = Double(topLogProbabilities[row * topK + j])
                    let lpC = Double(c[id] - mc) - lc
                    kl += Glibc.exp(lpB) * (lpB - lpC)
                    candidateTopMass += Glibc.exp(lpC)
                }
                let restB = Double(restLogProbability[row])
                let restC = Glibc.log(max(1 - candidateTopMass, 1e-30))
                kl += Glibc.exp(restB) * (restB - restC)
                let trueC = Double(c[chunk[position + 1]] - mc) - lc
                return DivergenceAccumulator.Position(divergence: kl, sameTop: Int(topIDs[row * topK]) == top,
                                                      baseLogProbability: Double(trueLogProbability[row]), candidateLogProbability: trueC)
            }
            for position in positions { result.add(position) }
            row += rows.count
            progress(i + 1, result)
        }
        return result
    }

    /// Saves as a safetensors file (atomically), metadata naming the format and parameters.
    public func save(to path: String, overwrite: Bool) throws {
        let n = rows
        let specs = [TensorSpec(name: "tokens", dtype: .i32, shape: [tokens.count]), TensorSpec(name: "top_ids", dtype: .i32, shape: [n, topK]),
                     TensorSpec(name: "top_logprobs", dtype: .f32, shape: [n, topK]), TensorSpec(name: "rest_logprob", dtype: .f32, shape: [n]),
                     TensorSpec(name: "true_logprob", dtype: .f32, shape: [n])]
        let metadata: [(String, String)] = [("format", "pt"), ("kind", Self.kind), ("ctx", String(context)), ("chunks", String(chunks)),
                                             ("top_k", String(topK)), ("vocab_size", String(vocabularySize)), ("bos", bos.map(String.init) ?? "none")]
        let atomic = try AtomicOutput(target: path, isDirectory: false, overwrite: overwrite)
        try atomic.translatingErrors {
            try SafetensorsLayout(specs, metadata: metadata).write(to: atomic.temporary) { info, out in
                switch info.name {
                case "tokens": try tokens.map { Int32($0) }.withUnsafeBytes { try out.write($0) }
                case "top_ids": try topIDs.withUnsafeBytes { try out.write($0) }
                case "top_logprobs": try topLogProbabilities.withUnsafeBytes { try out.write($0) }
                case "rest_logprob": try restLogProbability.withUnsafeBytes { try out.write($0) }
                default: try trueLogProbability.withUnsafeBytes { try out.write($0) }
                }
            }
            try atomic.commit()
        }
    }

    /// Reads a file `save(to:overwrite:)` wrote, checking its kind, metadata and every tensor's dtype and size.
    public static func load(_ path: String) throws -> BaseLogProbabilities {
        let file = try SafetensorsFile(path: path)
        func bad(_ reason: String) -> EvaluationError { .badBaseFile(file: path, reason: reason) }
        guard file.metadataValue("kind") == kind else { throw bad("not written by ckpt-compare --save-base (kind \(file.metadataValue("kind") ?? "missing"))") }
        guard let context = file.metadataValue("ctx").flatMap(Int.init), let chunks = file.metadataValue("chunks").flatMap(Int.init),
            let topK = file.metadataValue("top_k").flatMap(Int.init), let vocabulary = file.metadataValue("vocab_size").flatMap(Int.init),
            (4...(1 << 20)).contains(context), (1...(1 << 24)).contains(chunks), (1...(1 << 24)).contains(vocabulary),
            (1...vocabulary).contains(topK)
        else { throw bad("missing or invalid ctx / chunks / top_k / vocab_size metadata (expected ctx 4…2^20, chunks 1…2^24, top_k 1…vocab_size)") }
        let plan = ChunkPlan(context: context, chunks: chunks, bos: nil)
        // Sizes from the file's own numbers, each product checked before it sizes anything.
        let (rows, o1) = chunks.multipliedReportingOverflow(by: plan.scoredRows.count)
        let (cells, o2) = rows.multipliedReportingOverflow(by: topK)
        let (covered, o3) = chunks.multipliedReportingOverflow(by: context)
        guard !o1, !o2, !o3, cells <= file.mapped.count else { throw bad("ctx × chunks × top_k is larger than the file can hold") }
        func tensor(_ name: String, _ dtype: DType, _ count: Int) throws -> TensorView {
            guard let v = file.view(named: name), v.dtype == dtype, v.elementCount == count else {
                throw bad("tensor '\(name)' missing or not \(dtype.rawValue) × \(count)")
            }
            return v
        }
        let tokens = try file.view(named: "tokens").map { FloatValues.array($0).map { Int($0) } } ?? []
        guard tokens.count >= covered else { throw bad("fewer tokens than its chunks cover") }
        guard tokens.allSatisfy({ $0 >= 0 && $0 < vocabulary }) else { throw bad("a token id is outside the vocabulary") }
        let ids = try tensor("top_ids", .i32, rows * topK).withBytes { Array($0.bindMemory(to: Int32.self)) }
        guard ids.allSatisfy({ $0 >= 0 && Int($0) < vocabulary }) else { throw bad("a top-k id is outside the vocabulary") }
        let bosText = file.metadataValue("bos") ?? "none"
        if let bos = Int(bosText), !(0..<vocabulary).contains(bos) { throw bad("bos \(bos) is outside the vocabulary") }
        return BaseLogProbabilities(context: context, chunks: chunks, topK: topK, tokens: tokens, bos: Int(bosText), topIDs: ids,
                                    topLogProbabilities: FloatValues.array(try tensor("top_logprobs", .f32, rows * topK)),
                                    restLogProbability: FloatValues.array(try tensor("rest_logprob", .f32, rows)),
                                    trueLogProbability: FloatValues.array(try tensor("true_logprob", .f32, rows)), vocabularySize: vocabulary)
    }
}

/// The `k` largest entries' indices, largest first (ties: lower index first), in one pass
/// with a small sorted buffer: no full sort of the vocabulary.
func topIndices(_ row: UnsafeBufferPointer<Float>, _ k: Int) -> [Int] {
    var best: [(value: Float, index: Int)] = []
    best.reserveCapacity(k + 1)
    for (i, v) in row.enumerated() {
        if best.count == k, let last = best.last, !(v > last.value) { continue }
        var position = best.count
        while position > 0 && v > best[position - 1].value { position -= 1 }
        best.insert((v, i), at: position)
        if best.count > k { best.removeLast() }
    }
    return best.map(\.index)
}

