import ArgumentParser
import CheckpointKit

/// The token-stream options of ckpt-perplexity and ckpt-compare.
public struct EvaluationInput: ParsableArguments {
    /// `--text FILE`: text to tokenize with the checkpoint's tokenizer.
    @Option(help: "A text file, tokenized with the model's tokenizer.json.")
    public var text: String?

    /// `--tokens FILE`: pre-tokenized ids, instead of text.
    @Option(help: "Pre-tokenized ids: one per line (or whitespace separated), or a JSON array.")
    public var tokens: String?

    /// `--ctx N`: tokens per chunk, at least 4; nil when not given (512).
    @Option(help: "Tokens per chunk (default 512).")
    public var ctx: Int?

    /// Tokens per chunk: `--ctx`, else 512 as llama-perplexity.
    public var contextLength: Int { ctx ?? 512 }

    /// `--chunks N`: evaluate only the first N chunks; nil means all.
    @Option(help: "Evaluate only the first N chunks.")
    public var chunks: Int?

    /// `--chunk-range A:B`: only chunks A..<B of the whole run's plan (a piece of a split run).
    @Option(name: .customLong("chunk-range"), help: ArgumentHelp(
        "Evaluate only chunks A..<B (0-based, B excluded) of the plan a whole run makes; --json then carries what --combine needs.",
        valueName: "A:B"))
    public var chunkRange: String?

    /// `--combine FILE…`: the --json outputs of --chunk-range runs, combined into the whole run's result.
    @Option(parsing: .upToNextOption, help: ArgumentHelp("Combine the --json outputs of --chunk-range runs into the whole run's result, exactly (ckpt-imatrix: add up imatrix files).",
                                                         valueName: "FILE"))
    public var combine: [String] = []

    /// The parsed `--chunk-range`, nil when not given.
    public var chunkRangeValue: Range<Int>? { chunkRange.flatMap(SplitRun.parseRange) }

    /// Defaults only; ArgumentParser fills the options from the command line.
    public init() {}

    /// Whether a token source was given; the commands require one unless a saved base supplies the tokens.
    public var isGiven: Bool { text != nil || tokens != nil }

    /// The options given on the command line, as spelled there (for refusing them where they cannot act).
    public var givenOptions: [String] {
        [("--text", text != nil), ("--tokens", tokens != nil), ("--ctx", ctx != nil), ("--chunks", chunks != nil),
         ("--chunk-range", chunkRange != nil)].filter(\.1).map(\.0)
    }

    /// A warning when `--ctx` runs past the positions `config` was trained on, nil otherwise.
    public func contextWarning(_ config: TransformerConfig, model: String) -> String? {
        guard contextLength > config.maxPositions else { return nil }
        return "warning: --ctx \(contextLength) is beyond \(model)'s max_position_embeddings \(config.maxPositions): "
            + "positions past it were never trained, so the perplexity measures that too"
    }

    /// Refuses both --text and --tokens together, --ctx below 4 and --chunks below 1.
    public mutating func validate() throws {
        guard text == nil || tokens == nil else { throw ValidationError("give only one of --text FILE or --tokens FILE") }
        if let ctx, ctx < 4 || ctx > 1 << 20 { throw ValidationError("--ctx must be from 4 to \(1 << 20) (got \(ctx))") }
        if let chunks, chunks < 1 { throw ValidationError("--chunks must be at least 1 (got \(chunks))") }
        if let chunkRange, SplitRun.parseRange(chunkRange) == nil {
            throw ValidationError("--chunk-range must be A:B with 0 ≤ A < B (got \(chunkRange))")
        }
        if !combine.isEmpty, let given = givenOptions.first {
            throw ValidationError("\(given) cannot be combined with --combine: the pieces fix the tokens and the plan")
        }
    }

    /// The token stream, the BOS id chunks start with (nil when the tokenizer adds none), and
    /// the file they came from.
    public func tokens(for checkpoint: Checkpoint, vocabulary: Int) throws -> (tokens: [Int], bos: Int?, source: String) {
        if let tokens {
            return (try TokenFile.read(tokens, vocabulary: vocabulary), nil, tokens)
        }
        let text = try TextTokens(reading: text!, checkpoint: checkpoint)
        try TextTokens.check(text.tokens, bos: text.bos, vocabulary: vocabulary, file: text.file, tokenizerFile: text.tokenizerFile)
        return (text.tokens, text.bos, text.file)
    }
}

/// Split runs' `--json` documents and their `split` objects, each checked to come from `program`.
public func readPieces(_ files: [String], program: String) throws -> [(file: String, split: JSONValue, document: JSONValue)] {
    try files.map { file in
        let mapped = try MappedFile(path: file)
        let json: JSONValue
        do { json = try JSONParser.parse(mapped.bytes) } catch {
            throw EvaluationError.badPiece(file: file, reason: "not JSON (\(error))")
        }
        guard json["program"]?.stringValue == program else {
            throw EvaluationError.badPiece(file: file, reason: "written by \(json["program"]?.stringValue ?? "something else") (expected \(program) --json)")
        }
        guard let split = json["split"], split != .null else {
            throw EvaluationError.badPiece(file: file, reason: "no split object (expected the --json output of a --chunk-range run)")
        }
        return (file, split, json)
    }
}
