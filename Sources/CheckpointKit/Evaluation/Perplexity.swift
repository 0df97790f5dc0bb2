#if canImport(Glibc)
import Glibc
#endif

/// Every way an evaluation can be refused, naming the file or model and what was expected.
public enum EvaluationError: Error, Equatable, Sendable, CustomStringConvertible {
    case textTooShort(file: String, tokens: Int, needed: Int)
    case tokenOutOfRange(file: String, index: Int, token: Int, vocabulary: Int)
    case badTokenFile(file: String, reason: String)
    case vocabularyMismatch(base: String, baseSize: Int, candidate: String, candidateSize: Int)
    case nonFiniteLogits(model: String, chunk: Int)
    case badBaseFile(file: String, reason: String)
    case tokenizersDisagree(file: String, base: String, candidate: String, index: Int, baseToken: Int?, candidateToken: Int?)
    case contextBeyondModel(model: String, context: Int, maximum: Int)
    case chunkRangeOutside(file: String, range: String, chunks: Int, context: Int)
    case badPiece(file: String, reason: String)
    case pieceMismatch(file: String, field: String, expected: String, actual: String, reference: String)
    case pieceCoverage(reason: String)

    /// One line: the file (and tensor or key) at fault, what is wrong, and what was expected.
    public var description: String {
        switch self {
        case let .textTooShort(file, tokens, needed):
            return "\(file): too short for this context (expected at least \(needed) tokens, got \(tokens))"
        case let .tokenOutOfRange(file, index, token, vocabulary):
            return "\(file): token \(index) is \(token), outside the vocabulary (expected 0..<\(vocabulary))"
        case let .badTokenFile(file, reason):
            return "\(file): \(reason) (expected token ids, one per line or a JSON array)"
        case let .vocabularyMismatch(base, baseSize, candidate, candidateSize):
            return "\(candidate): vocabulary differs from the base \(base) (expected \(baseSize) entries, got \(candidateSize))"
        case let .nonFiniteLogits(model, chunk):
            return "\(model): chunk \(chunk): the model produced NaN or infinite logits"
        case let .badBaseFile(file, reason):
            return "\(file): unusable saved base log-probabilities: \(reason)"
        case let .tokenizersDisagree(file, base, candidate, index, baseToken, candidateToken):
            func show(_ t: Int?) -> String { t.map(String.init) ?? "end of text" }
            return "\(file): \(base) and \(candidate) tokenize the text differently from token \(index) "
                + "(expected \(show(baseToken)) as the base does, got \(show(candidateToken))); compare models that share a tokenizer"
        case let .contextBeyondModel(model, context, maximum):
            return "\(model): --ctx \(context) is beyond the model's \(maximum) learned positions (expected at most \(maximum))"
        case let .chunkRangeOutside(file, range, chunks, context):
            return "\(file): --chunk-range \(range) is outside the text's \(chunks) chunks of \(context) (expected A:B with B at most \(chunks))"
        case let .badPiece(file, reason):
            return "\(file): not a piece of a split run: \(reason)"
        case let .pieceMismatch(file, field, expected, actual, reference):
            return "\(file): \(field) differs from \(reference)'s (expected \(expected), got \(actual)); combine pieces of one run only"
        case let .pieceCoverage(reason):
            return "--combine: \(reason)"
        }
    }
}

/// llama.cpp's perplexity: the token stream cut into chunks of `context` tokens; in each, the
/// logits at positions context/2 … context−2 are scored against the next token (the first half
/// only gives context). When the tokenizer adds BOS, each chunk's first token is replaced by
/// BOS. PPL = exp(mean NLL); its standard error is the delta-method estimate llama.cpp prints:
/// ppl · sqrt((mean(nll²) − mean(nll)²) / (count − 1)).
public struct PerplexityAccumulator: Sendable, Equatable {
    /// Negative log-likelihoods added.
    public private(set) var count = 0
    /// Σ NLL, in nats.
    public private(set) var sum = 0.0
    /// Σ NLL², for the standard error.
    public private(set) var sumOfSquares = 0.0

    /// No tokens yet.
    public init() {}

    /// Sums as a split run's piece carries them.
    public init(count: Int, sum: Double, sumOfSquares: Double) {
        self.count = count
        self.sum = sum
        self.sumOfSquares = sumOfSquares
    }

    /// Adds another accumulator's tokens (a whole run merges its chunks in order, so pieces combine to the same bits).
    public mutating func merge(_ other: PerplexityAccumulator) {
        count += other.count
        sum += other.sum
        sumOfSquares += other.sumOfSquares
    }

    /// Adds one token's negative log-likelihood, in nats.
    public mutating func add(negativeLogLikelihood v: Double) {
        count += 1
        sum += v
        sumOfSquares += v * v
    }

    /// Mean NLL in nats; NaN when empty.
    public var meanNLL: Double { count > 0 ? sum / Double(count) : .nan }
    /// exp(mean NLL); NaN when empty.
    public var perplexity: Double { Glibc.exp(meanNLL) }
    /// The ± llama.cpp prints for the perplexity; NaN below two tokens.
    public var standardError: Double {
        guard count > 1 else { return .nan }
        let mean = meanNLL
        let variance = sumOfSquares / Double(count) - mean * mean
        return variance > 0 ? perplexity * (variance / Double(count - 1)).squareRoot() : 0
    }
}

/// The chunking shared by perplexity and KL divergence.
public struct ChunkPlan: Sendable {
    /// Tokens per chunk.
    public var context: Int
    /// Chunks scored: as many as asked for, at most as many whole chunks as the stream holds.
    public var chunks: Int
    /// The BOS id that replaces each chunk's first token, or nil to keep the text's own.
    public var bos: Int?
    /// The chunks this run evaluates: all of them, or a `--chunk-range` of a split run.
    public var range: Range<Int>

    /// The first scored logit row of a chunk (llama.cpp's `first = n_ctx/2`).
    public var firstScored: Int { context / 2 }
    /// Logit rows scored per chunk: first … context−2.
    public var scoredRows: Range<Int> { firstScored..<(context - 1) }

    /// Plans `chunks` (nil: all) chunks of `context` tokens; throws `textTooShort` below two chunks' worth.
    public init(tokens: Int, context: Int, chunks: Int?, bos: Int?, file: String) throws {
        guard tokens >= 2 * context else { throw EvaluationError.textTooShort(file: file, tokens: tokens, needed: 2 * context) }
        self.context = context
        self.chunks = min(chunks ?? Int.max, tokens / context)
        self.bos = bos
        range = 0..<self.chunks
    }

    /// A plan of `chunks` chunks of `context` tokens, all evaluated (from saved parameters: the token count was checked when they were saved).
    public init(context: Int, chunks: Int, bos: Int?) {
        self.context = context
        self.chunks = chunks
        self.bos = bos
        range = 0..<chunks
    }

    /// The same plan evaluating only chunks `range` (a piece of a split run); throws when they are not all in the plan.
    public func restricted(to range: Range<Int>, file: String) throws -> ChunkPlan {
        guard range.lowerBound >= 0, range.upperBound <= chunks, !range.isEmpty else {
            throw EvaluationError.chunkRangeOutside(file: file, range: "\(range.lowerBound):\(range.upperBound)", chunks: chunks, context: context)
        }
        var plan = self
        plan.range = range
        return plan
    }

    /// The chunks `chunks` in batches of at most `limit` and `model.sequencesPerBatch`, in order: each batch's first
    /// chunk index and its chunks' tokens go to `body`. Refuses a context beyond the model; stops on an interruption.
    public func forEachBatch(_ model: TransformerModel, chunks: Range<Int>, from stream: [Int], limit: Int = .max,
                             _ body: (Int, [[Int]]) throws -> Void) throws {
        if let maximum = model.maximumContext, context > maximum {
            throw EvaluationError.contextBeyondModel(model: model.path, context: context, maximum: maximum)
        }
        let batch = max(1, min(limit, model.sequencesPerBatch(length: context)))
        var first = chunks.lowerBound
        while first < chunks.upperBound {
            if Interruption.isRequested { throw FileAccessError.interrupted(file: model.path) }
            let indices = first..<min(chunks.upperBound, first + batch)
            try body(first, indices.map { tokens($0, from: stream) })
            first = indices.upperBound
        }
    }

    /// The chunks `chunks` run through `model` a batch at a time (`forEachBatch`): each chunk's index, tokens and
    /// scored logits ([scoredRows.count, vocab], valid during the call) go to `body` in chunk order, refused if any
    /// is NaN or infinite. A chunk's logits are the same bits in any batch.
    public func forEachScoredLogits(_ model: TransformerModel, chunks: Range<Int>, from stream: [Int], limit: Int = .max,
                                    _ body: (Int, [Int], UnsafeBufferPointer<Float>) throws -> Void) throws {
        try forEachBatch(model, chunks: chunks, from: stream, limit: limit) { first, sequences in
            try forEachScoredLogits(model, batch: sequences, first: first, body)
        }
    }

    /// One batch of `forEachBatch` (its chunks' tokens, the first being chunk `first`) run through `model`:
    /// each chunk's index, tokens and scored logits go to `body` in order, refused if any is NaN or infinite.
    public func forEachScoredLogits(_ model: TransformerModel, batch sequences: [[Int]], first: Int,
                                    _ body: (Int, [Int], UnsafeBufferPointer<Float>) throws -> Void) throws {
        try model.forEachScoredLogits(sequences, scored: scoredRows) { index, logits in
            guard allFinite(logits) else { throw EvaluationError.nonFiniteLogits(model: model.path, chunk: first + index + 1) }
            try body(first + index, sequences[index], logits)
        }
    }

    /// The chunks `chunks` run through `model` a batch at a time: each chunk's index and the log-probabilities of
    /// the tokens after its scored rows (`TransformerModel.nextTokenLogProbabilities`, no [rows, vocab] logits held)
    /// go to `body` in chunk order; a chunk with a NaN or infinite logit among its scored rows is refused.
    public func forEachNextTokenLogProbabilities(_ model: TransformerModel, chunks: Range<Int>, from stream: [Int],
                                                 _ body: (Int, [Double]) throws -> Void) throws {
        try forEachBatch(model, chunks: chunks, from: stream) { first, sequences in
            for (index, values) in model.nextTokenLogProbabilities(sequences, scored: scoredRows).enumerated() {
                guard let values else { throw EvaluationError.nonFiniteLogits(model: model.path, chunk: first + index + 1) }
                try body(first + index, values)
            }
        }
    }

    /// Chunk `i`'s tokens, with BOS in front when the tokenizer adds one.
    public func tokens(_ i: Int, from stream: [Int]) -> [Int] {
        var chunk = Array(stream[(i * context)..<((i + 1) * context)])
        if let bos { chunk[0] = bos }
        return chunk
    }
}

/// `measure(r)` for every row r in `0..<rows`, the rows spread over `threads`, the values in
/// row order: each row is measured alone, so the values are the same for any thread count,
/// and the caller adds them up in order.
func measureRows<Value>(_ rows: Int, placeholder: Value, threads: ThreadBudget, _ measure: (Int) -> Value) -> [Value] {
    var values = [Value](repeating: placeholder, count: rows)
    values.withUnsafeMutableBufferPointer { buffer in
        let target = UncheckedSendable(buffer.baseAddress)
        threads.forEachChunk(rows) { r in target.value![r] = measure(r) }
    }
    return values
}

/// Perplexity of one model over a chunk plan, as llama.cpp's `perplexity` computes it.
public enum PerplexityEvaluator {
    /// The chunks of `plan.range`, each accumulated on its own and merged in order; after each,
    /// the number done and the running total go to `progress`.
    public static func evaluate(_ model: TransformerModel, tokens: [Int], plan: ChunkPlan,
                                progress: (Int, PerplexityAccumulator) -> Void = { _, _ in }) throws -> PerplexityResult
    {
        var total = PerplexityAccumulator()
        var chunks: [PerplexityAccumulator] = []
        try plan.forEachNextTokenLogProbabilities(model, chunks: plan.range, from: tokens) { _, logProbabilities in
            var chunkNLL = PerplexityAccumulator()
            for value in logProbabilities { chunkNLL.add(negativeLogLikelihood: -value) }
            chunks.append(chunkNLL)
            total.merge(chunkNLL)
            progress(chunks.count, total)
        }
        return PerplexityResult(chunks: chunks)
    }
}

/// A text file tokenized by a checkpoint's tokenizer (read as bytes), the way every program feeds text to a model.
public struct TextTokens: Sendable {
    /// The token ids of the whole text.
    public var tokens: [Int]
    /// The BOS id each chunk starts with when the tokenizer adds one.
    public var bos: Int?
    /// The text file, and the tokenizer file the BOS id comes from (named in errors).
    public var file: String, tokenizerFile: String

    /// Tokenizes `path` with `checkpoint`'s tokenizer.
    public init(reading path: String, checkpoint: Checkpoint) throws {
        let tokenizer = try Tokenizer(checkpoint: checkpoint)
        let mapped = try MappedFile(path: path)
        tokens = tokenizer.encode(String(decoding: mapped.bytes, as: UTF8.self))
        bos = tokenizer.addsBOS ? tokenizer.bosTokenID : nil
        file = path
        tokenizerFile = tokenizer.file
    }

    /// Throws `tokenOutOfRange` for the first id (or the BOS id) outside `0 ..< vocabulary`: the model's embedding has no row for it.
    public static func check(_ tokens: [Int], bos: Int?, vocabulary: Int, file: String, tokenizerFile: String) throws {
        if let bad = tokens.firstIndex(where: { !(0..<vocabulary).contains($0) }) {
            throw EvaluationError.tokenOutOfRange(file: file, index: bad, token: tokens[bad], vocabulary: vocabulary)
        }
        if let bos, !(0..<vocabulary).contains(bos) {
            throw EvaluationError.tokenOutOfRange(file: tokenizerFile, index: 0, token: bos, vocabulary: vocabulary)
        }
    }
}

/// Token ids from a file: whitespace/newline separated integers, or a JSON array.
public enum TokenFile {
    /// Reads token ids (whitespace- or comma-separated, or a JSON array), each checked to lie in 0..<vocabulary.
    public static func read(_ path: String, vocabulary: Int) throws -> [Int] {
        let mapped = try MappedFile(path: path)
        guard mapped.count < 1 << 31 else { throw EvaluationError.badTokenFile(file: path, reason: "larger than 2 GB") }
        let bytes = mapped.bytes
        var ids: [Int] = []
        if let first = bytes.first(where: { $0 != 0x20 && $0 != 0x0A && $0 != 0x0D && $0 != 0x09 }), first == UInt8(ascii: "[") {
            let json: JSONValue
            do { json = try JSONParser.parse(bytes) } catch { throw EvaluationError.badTokenFile(file: path, reason: error.description) }
            guard let array = json.arrayValue else { throw EvaluationError.badTokenFile(file: path, reason: "not an array") }
            for (i, v) in array.enumerated() {
                guard let id = v.intValue else { throw EvaluationError.badTokenFile(file: path, reason: "element \(i) is not an integer") }
                ids.append(id)
            }
        } else {
            var current = 0, inNumber = false, negative = false
            for b in bytes {
                switch b {
                case UInt8(ascii: "0")...UInt8(ascii: "9"):
                    guard current < Int.max / 100 else { throw EvaluationError.badTokenFile(file: path, reason: "a number is too large") }
                    current = current * 10 + Int(b - UInt8(ascii: "0"))
                    inNumber = true
                case UInt8(ascii: "-") where !inNumber: negative = true
                case 0x20, 0x0A, 0x0D, 0x09, UInt8(ascii: ","):
                    if inNumber { ids.append(negative ? -current : current) }
                    (current, inNumber, negative) = (0, false, false)
                default:
                    throw EvaluationError.badTokenFile(file: path, reason: "unexpected character '\(Character(Unicode.Scalar(b)))'")
                }
            }
            if inNumber { ids.append(negative ? -current : current) }
        }
        if let bad = ids.firstIndex(where: { $0 < 0 || $0 >= vocabulary }) {
            throw EvaluationError.tokenOutOfRange(file: path, index: bad, token: ids[bad], vocabulary: vocabulary)
        }
        return ids
    }
}
