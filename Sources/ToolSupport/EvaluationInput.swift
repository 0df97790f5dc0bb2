import ArgumentParser
import CheckpointKit

/// The token-stream options of ckpt-perplexity and ckpt-compare.
public struct EvaluationInput: ParsableArguments {
    @Option(help: "A text file, tokenized with the model's tokenizer.json.")
    public var text: String?

    @Option(help: "Pre-tokenized ids: one per line (or whitespace separated), or a JSON array.")
    public var tokens: String?

    @Option(help: "Tokens per chunk.")
    public var ctx: Int = 512

    @Option(help: "Evaluate only the first N chunks.")
    public var chunks: Int?

    public init() {}

    /// Whether a token source was given; the commands require one unless a saved base supplies the tokens.
    public var isGiven: Bool { text != nil || tokens != nil }

    public mutating func validate() throws {
        guard text == nil || tokens == nil else { throw ValidationError("give only one of --text FILE or --tokens FILE") }
        guard ctx >= 4 else { throw ValidationError("--ctx must be at least 4 (got \(ctx))") }
        if let chunks, chunks < 1 { throw ValidationError("--chunks must be at least 1 (got \(chunks))") }
    }

    /// The token stream, the BOS id chunks start with (nil when the tokenizer adds none), and
    /// the file they came from.
    public func tokens(for checkpoint: Checkpoint, vocabulary: Int) throws -> (tokens: [Int], bos: Int?, source: String) {
        if let tokens {
            return (try TokenFile.read(tokens, vocabulary: vocabulary), nil, tokens)
        }
        let path = text!
        let tokenizer = try Tokenizer(checkpoint: checkpoint)
        let mapped = try MappedFile(path: path)
        let ids = tokenizer.encode(String(decoding: mapped.bytes, as: UTF8.self))
        if let bad = ids.firstIndex(where: { $0 >= vocabulary }) {
            throw EvaluationError.tokenOutOfRange(file: path, index: bad, token: ids[bad], vocabulary: vocabulary)
        }
        return (ids, tokenizer.addsBOS ? tokenizer.bosTokenID : nil, path)
    }
}
