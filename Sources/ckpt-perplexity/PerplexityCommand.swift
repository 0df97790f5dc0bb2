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

    @Argument(help: "Model: a folder, safetensors file or index, GGUF file, or PyTorch .bin (any layout ckpt reads).")
    var model: String

    @Flag(help: "Round each product's activations as llama.cpp's CPU backend does for the weight's GGML type (q8_0, q8_K, f16), to reproduce llama-perplexity's numbers on a GGUF. Default: exact, as transformers.")
    var emulateLlamaCpp = false

    @OptionGroup var input: EvaluationInput

    @OptionGroup var common: CommonOptions

    func validate() throws {
        guard input.isGiven else { throw ValidationError("give --text FILE or --tokens FILE") }
    }

    func run() throws {
        try runTool(common) {
            let checkpoint = try Checkpoint(path: model)
            let clock = Stopwatch()
            let network = try TransformerModel(checkpoint: checkpoint, threads: common.threadBudget, emulatingLlamaCpp: emulateLlamaCpp)
            if let warning = input.contextWarning(network.config, model: model) { warn(warning, options: common) }
            let loadSeconds = clock.seconds
            let (tokens, bos, source) = try input.tokens(for: checkpoint, vocabulary: network.config.vocabularySize)
            let plan = try ChunkPlan(tokens: tokens.count, context: input.contextLength, chunks: input.chunks, bos: bos, file: source)
            let evalClock = Stopwatch()
            let (total, perChunk) = try PerplexityEvaluator.evaluate(network, tokens: tokens, plan: plan) { chunk, running in
                reportChunk("perplexity", chunk, of: plan.chunks, "[\(chunk)/\(plan.chunks)] ppl \(formatDecimal(running.perplexity, places: 4)) ± \(formatDecimal(running.standardError, places: 4))",
                    options: common)
            }
            let seconds = evalClock.seconds
            let processed = plan.chunks * plan.context
            if common.json {
                printJSON([
                    "model": .string(model), "source": .string(source), "tokens": JSONValue(tokens.count), "ctx": JSONValue(plan.context),
                    "chunks": JSONValue(plan.chunks), "scored_tokens": JSONValue(total.count), "perplexity": .double(total.perplexity),
                    "standard_error": .double(total.standardError), "mean_nll": .double(total.meanNLL),
                    "per_chunk_perplexity": .array(perChunk.map { .double($0) }), "bos": bos.map { JSONValue($0) } ?? .null,
                    "seconds": .double(seconds), "load_seconds": .double(loadSeconds),
                    "tokens_per_second": .double(Double(processed) / seconds),
                ])
                return
            }
            print("\(model): PPL = \(formatDecimal(total.perplexity, places: 4)) ± \(formatDecimal(total.standardError, places: 5)) "
                + "over \(total.count) scored tokens (\(plan.chunks) chunks of \(plan.context))")
            print("\(formatDecimal(Double(processed) / seconds, places: 1)) tokens/s, \(formatDecimal(seconds, places: 2)) s "
                + "(+ \(formatDecimal(loadSeconds, places: 2)) s loading)")
        }
    }
}
