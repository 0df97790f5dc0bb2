import ArgumentParser
import CheckpointKit
import ToolSupport

@main
struct PerplexityCommand: ToolCommand {
    static let configuration = CommandConfiguration(
        commandName: "ckpt-perplexity",
        abstract: "Perplexity of a model over a text, with llama.cpp's method (chunks of --ctx tokens, second halves scored).",
        discussion: """
            Each chunk of --ctx tokens is run at once; the logits of its second half are scored \
            against the next token. When the tokenizer adds BOS, each chunk starts with BOS, as in \
            llama.cpp. Prints PPL ± its standard error; running values go to stderr per chunk.
            """,
        version: ckptVersion)

    @Argument(help: "Model: a folder, safetensors file or index, GGUF file, or PyTorch .bin (any layout ckpt reads). Not with --combine.")
    var model: String?

    @Flag(help: "Round each product's activations as llama.cpp's CPU backend does for the weight's GGML type (q8_0, q8_K, f16), to reproduce llama-perplexity's numbers on a GGUF. Default: exact, as transformers.")
    var emulateLlamaCpp = false

    @OptionGroup var input: EvaluationInput

    @OptionGroup var common: CommonOptions

    func validate() throws {
        if !input.combine.isEmpty {
            guard model == nil else { throw ValidationError("--combine takes the pieces' JSON files only, not a MODEL") }
            return
        }
        guard model != nil else { throw ValidationError("missing expected argument '<model>' (or --combine piece.json …)") }
        guard input.isGiven else { throw ValidationError("give --text FILE or --tokens FILE") }
    }

    func run() throws {
        try runTool(common) {
            reuseLargeAllocations()
            if !input.combine.isEmpty { return try combinePieces() }
            let model = model!
            let checkpoint = try Checkpoint(path: model)
            let clock = Stopwatch()
            let network = try TransformerModel(checkpoint: checkpoint, threads: common.threadBudget, emulatingLlamaCpp: emulateLlamaCpp)
            if let warning = input.contextWarning(network.config, model: model) { warn(warning, options: common) }
            let loadSeconds = clock.seconds
            let (tokens, bos, source) = try input.tokens(for: checkpoint, vocabulary: network.config.vocabularySize)
            var plan = try ChunkPlan(tokens: tokens.count, context: input.contextLength, chunks: input.chunks, bos: bos, file: source)
            if let range = input.chunkRangeValue { plan = try plan.restricted(to: range, file: source) }
            let evalClock = Stopwatch()
            let result = try PerplexityEvaluator.evaluate(network, tokens: tokens, plan: plan) { done, running in
                reportChunk("perplexity", done, of: plan.range.count,
                            "[\(done)/\(plan.range.count)] ppl \(formatDecimal(running.perplexity, places: 4)) ± \(formatDecimal(running.standardError, places: 4))",
                            options: common)
            }
            let seconds = evalClock.seconds
            let processed = plan.range.count * plan.context
            let total = result.total
            if common.json {
                let identity = SplitRun.identity(models: [("model_fingerprint", network)], tokens: tokens, plan: plan,
                                                 extra: [("emulate_llama_cpp", .bool(emulateLlamaCpp))])
                printJSON([
                    "model": .string(model), "source": .string(source), "tokens": JSONValue(tokens.count), "ctx": JSONValue(plan.context),
                    "chunks": JSONValue(plan.range.count), "scored_tokens": JSONValue(total.count), "perplexity": .double(total.perplexity),
                    "standard_error": .double(total.standardError), "mean_nll": .double(total.meanNLL),
                    "per_chunk_perplexity": .array(result.perChunk.map { .double($0) }), "bos": bos.map { JSONValue($0) } ?? .null,
                    "seconds": .double(seconds), "load_seconds": .double(loadSeconds),
                    "tokens_per_second": .double(Double(processed) / seconds),
                    "split": ["identity": identity, "chunk_range": [JSONValue(plan.range.lowerBound), JSONValue(plan.range.upperBound)],
                              "chunk_sums": SplitRun.chunkSums(result.chunks)],
                ])
                return
            }
            let which = plan.range == 0..<plan.chunks ? "\(plan.chunks) chunks of \(plan.context)"
                : "chunks \(plan.range.lowerBound)..<\(plan.range.upperBound) of \(plan.chunks), \(plan.context) tokens each; --json to combine"
            print("\(model): PPL = \(formatDecimal(total.perplexity, places: 4)) ± \(formatDecimal(total.standardError, places: 5)) "
                + "over \(total.count) scored tokens (\(which))")
            print("\(formatDecimal(Double(processed) / seconds, places: 1)) tokens/s, \(formatDecimal(seconds, places: 2)) s "
                + "(+ \(formatDecimal(loadSeconds, places: 2)) s loading)")
        }
    }

    /// `--combine`: the whole run's perplexity from its pieces, printed as a single run prints it.
    func combinePieces() throws {
        let pieces = try readPieces(input.combine, program: "ckpt-perplexity")
        let result = try SplitRun.combinePerplexity(pieces.map { ($0.file, $0.split) })
        let total = result.total
        let first = pieces[0].split["identity"]!
        let model = pieces[0].document["model"]?.stringValue ?? "model"
        let ctx = first["ctx"]?.intValue ?? 0, chunks = first["chunks"]?.intValue ?? 0
        if common.json {
            printJSON([
                "model": .string(model), "source": pieces[0].document["source"] ?? .null, "tokens": first["tokens"] ?? .null,
                "ctx": JSONValue(ctx), "chunks": JSONValue(chunks), "scored_tokens": JSONValue(total.count), "perplexity": .double(total.perplexity),
                "standard_error": .double(total.standardError), "mean_nll": .double(total.meanNLL),
                "per_chunk_perplexity": .array(result.perChunk.map { .double($0) }), "bos": first["bos"] ?? .null,
                "pieces": .array(input.combine.map { .string($0) }),
                "split": ["identity": first, "chunk_range": [JSONValue(0), JSONValue(chunks)], "chunk_sums": SplitRun.chunkSums(result.chunks)],
            ])
            return
        }
        print("\(model): PPL = \(formatDecimal(total.perplexity, places: 4)) ± \(formatDecimal(total.standardError, places: 5)) "
            + "over \(total.count) scored tokens (\(chunks) chunks of \(ctx), combined from \(pieces.count) pieces)")
    }
}
