/// Runs split across machines: `--chunk-range A:B` evaluates chunks A..<B of the plan a whole
/// run would make, and its JSON carries what a whole run needs to finish the job; `--combine`
/// checks that the pieces come from the same models, tokens and settings and cover every chunk
/// exactly once, then adds them up in chunk order, which is the order a whole run adds in, so the
/// combined result equals the single run's to the last bit.
public enum SplitRun {
    /// `A:B` (0-based, B exclusive), or nil when the text is not two integers with A < B.
    public static func parseRange(_ text: String) -> Range<Int>? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let a = Int(parts[0]), let b = Int(parts[1]), a >= 0, a < b else { return nil }
        return a..<b
    }

    /// What every piece of one run shares, in a fixed order; a piece differing in any is refused by that field's name.
    public static func identity(models: [(field: String, model: TransformerModel)], tokens: [Int], plan: ChunkPlan,
                                extra: [(String, JSONValue)] = []) -> JSONValue {
        var fields: [(String, JSONValue)] = models.map { ($0.field, .string(fingerprint($0.model))) }
        fields += [("tokens_sha256", .string(tokensDigest(tokens))), ("tokens", JSONValue(tokens.count)), ("ctx", JSONValue(plan.context)),
                   ("chunks", JSONValue(plan.chunks)), ("bos", plan.bos.map { JSONValue($0) } ?? .null)]
        return .object(fields + extra)
    }

    /// sha256 of the token ids as little-endian u32.
    public static func tokensDigest(_ tokens: [Int]) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(tokens.count * 4)
        for t in tokens { withUnsafeBytes(of: UInt32(truncatingIfNeeded: t).littleEndian) { bytes.append(contentsOf: $0) } }
        return sha256Hex(bytes)
    }

    /// A digest of what the model computes: its parsed config, and the first and last row of
    /// every weight as f32, so the same model in another format or on another machine matches,
    /// and a different fine-tune of the same shape does not.
    public static func fingerprint(_ model: TransformerModel) -> String {
        var bytes = Array("\(model.config)".utf8)
        func append(_ values: UnsafeBufferPointer<Float>) { bytes.append(contentsOf: UnsafeRawBufferPointer(values)) }
        for matrix in model.weightMatrices where matrix.rows > 0 {
            var row = [Float](repeating: 0, count: matrix.columns)
            for r in Set([0, matrix.rows - 1]).sorted() {
                row.withUnsafeMutableBufferPointer { matrix.widen(r..<(r + 1), into: $0.baseAddress!) }
                row.withUnsafeBufferPointer(append)
            }
        }
        for vector in model.weightVectors { vector.withUnsafeBufferPointer(append) }
        return sha256Hex(bytes)
    }

    /// The pieces in chunk order, after checking that they share one identity and cover the
    /// plan's chunks exactly once. Each piece is its file and the `split` object of its JSON.
    public static func ordered(_ pieces: [(file: String, split: JSONValue)]) throws -> [(file: String, range: Range<Int>, split: JSONValue)] {
        guard let first = pieces.first else { throw EvaluationError.badPiece(file: "--combine", reason: "no pieces given") }
        var ranged: [(file: String, range: Range<Int>, split: JSONValue)] = []
        let reference = first.split["identity"]
        guard let referenceFields = reference?.objectMembers, let chunks = reference?["chunks"]?.intValue, chunks > 0, chunks <= 1 << 24 else {
            throw EvaluationError.badPiece(file: first.file, reason: "no split identity (expected the --json output of a --chunk-range run)")
        }
        for piece in pieces {
            guard let identity = piece.split["identity"]?.objectMembers else {
                throw EvaluationError.badPiece(file: piece.file, reason: "no split identity (expected the --json output of a --chunk-range run)")
            }
            for (key, value) in referenceFields {
                let other = identity.first { $0.0 == key }?.1 ?? .null
                guard other == value else {
                    throw EvaluationError.pieceMismatch(file: piece.file, field: key, expected: value.serialized(), actual: other.serialized(),
                                                        reference: first.file)
                }
            }
            guard let bounds = piece.split["chunk_range"]?.arrayValue?.compactMap(\.intValue), bounds.count == 2,
                bounds[0] >= 0, bounds[0] < bounds[1], bounds[1] <= chunks
            else {
                throw EvaluationError.badPiece(file: piece.file, reason: "chunk_range missing or outside 0..<\(chunks)")
            }
            ranged.append((piece.file, bounds[0]..<bounds[1], piece.split))
        }
        ranged.sort { $0.range.lowerBound < $1.range.lowerBound }
        var next = 0
        for piece in ranged {
            if piece.range.lowerBound > next {
                throw EvaluationError.pieceCoverage(reason: "chunks \(next)..<\(piece.range.lowerBound) are in no piece (expected pieces covering 0..<\(chunks))")
            }
            if piece.range.lowerBound < next {
                throw EvaluationError.pieceCoverage(reason: "\(piece.file) covers chunk \(piece.range.lowerBound), which an earlier piece covers too")
            }
            next = piece.range.upperBound
        }
        guard next == chunks else {
            throw EvaluationError.pieceCoverage(reason: "chunks \(next)..<\(chunks) are in no piece (expected pieces covering 0..<\(chunks))")
        }
        return ranged
    }

    /// A perplexity run's per-chunk sums as its JSON carries them: [Σ NLL, Σ NLL², count] per chunk.
    public static func chunkSums(_ chunks: [PerplexityAccumulator]) -> JSONValue {
        .array(chunks.map { .array([.double($0.sum), .double($0.sumOfSquares), JSONValue($0.count)]) })
    }

    /// The whole run's perplexity from pieces of `ckpt-perplexity --chunk-range … --json`, added in chunk order.
    public static func combinePerplexity(_ pieces: [(file: String, split: JSONValue)]) throws -> PerplexityResult {
        var chunks: [PerplexityAccumulator] = []
        for piece in try ordered(pieces) {
            guard let sums = piece.split["chunk_sums"]?.arrayValue, sums.count == piece.range.count else {
                throw EvaluationError.badPiece(file: piece.file, reason: "chunk_sums missing or not one per chunk of its range")
            }
            for entry in sums {
                guard let parts = entry.arrayValue, parts.count == 3, let sum = parts[0].doubleValue, let squares = parts[1].doubleValue,
                    let count = parts[2].intValue, count >= 0, sum.isFinite, squares.isFinite
                else { throw EvaluationError.badPiece(file: piece.file, reason: "a chunk_sums entry is not [sum, sum of squares, count]") }
                chunks.append(PerplexityAccumulator(count: count, sum: sum, sumOfSquares: squares))
            }
        }
        return PerplexityResult(chunks: chunks)
    }
}

/// A perplexity run: each chunk's accumulator, and their total added in chunk order.
public struct PerplexityResult: Sendable {
    /// One accumulator per evaluated chunk, in chunk order.
    public var chunks: [PerplexityAccumulator]
    /// The run's total: the chunks merged in order.
    public var total: PerplexityAccumulator {
        var total = PerplexityAccumulator()
        for chunk in chunks { total.merge(chunk) }
        return total
    }
    /// Each chunk's own perplexity.
    public var perChunk: [Double] { chunks.map(\.perplexity) }
}
