import ArgumentParser
import CheckpointKit
import ToolSupport

@main
struct ImatrixCommand: ToolCommand {
    static let configuration = CommandConfiguration(
        commandName: "ckpt-imatrix",
        abstract: "Importance matrix of a model over a text, as llama-imatrix computes it, in its GGUF format.",
        discussion: """
            Each chunk of --ctx tokens (BOS first when the tokenizer adds it) is run through the \
            model; for every weight matrix of a block the sum of each input column's squared \
            activations and the tokens counted are kept, and written as llama-imatrix's GGUF \
            (NAME.in_sum2, NAME.counts, imatrix.* keys) under llama.cpp's tensor names. \
            --combine adds up imatrix files (GGUF or legacy .dat) instead. ckpt-convert --imatrix \
            and llama-quantize --imatrix read the result.
            """,
        version: ckptVersion)

    @Argument(help: "Model: a folder, safetensors file or index, GGUF file, or PyTorch .bin. Not with --combine.")
    var model: String?

    @OptionGroup var input: EvaluationInput

    @Option(name: .shortAndLong, help: "The imatrix file to write (GGUF).")
    var output: String

    @Flag(help: "Also collect the output head (llama-imatrix --process-output).")
    var processOutput = false

    @Flag(help: "Round each product's activations as llama.cpp's CPU backend does for a GGUF's stored types, to reproduce llama-imatrix on that GGUF.")
    var emulateLlamaCpp = false

    @Flag(help: "Replace an existing output.")
    var force = false

    @OptionGroup var common: CommonOptions

    func validate() throws {
        if !input.combine.isEmpty {
            guard model == nil else { throw ValidationError("--combine takes imatrix files only, not a MODEL") }
            return
        }
        guard model != nil else { throw ValidationError("missing expected argument '<model>' (or --combine a.gguf b.dat …)") }
        guard input.isGiven else { throw ValidationError("give --text FILE or --tokens FILE") }
        if input.chunkRange != nil { throw ValidationError("--chunk-range applies to ckpt-perplexity and ckpt-compare; run ckpt-imatrix on the text it needs") }
    }

    func run() throws {
        try runTool(common) {
            reuseLargeAllocations()
            let matrix: ImportanceMatrix
            if !input.combine.isEmpty {
                matrix = try ImportanceMatrix.combine(try input.combine.map { try ImportanceMatrix(reading: $0) })
            } else {
                let model = model!
                let checkpoint = try Checkpoint(path: model)
                let network = try TransformerModel(checkpoint: checkpoint, threads: common.threadBudget, emulatingLlamaCpp: emulateLlamaCpp)
                let (tokens, bos, source) = try input.tokens(for: checkpoint, vocabulary: network.config.vocabularySize)
                let plan = try ChunkPlan(tokens: tokens.count, context: input.contextLength, chunks: input.chunks, bos: bos, file: source)
                let collector = ImportanceCollector(model: network, includeOutput: processOutput)
                collector.collect(network, tokens: tokens, plan: plan) { done in
                    reportChunk("imatrix", done, of: plan.range.count, "[\(done)/\(plan.range.count)]", options: common)
                }
                if Interruption.isRequested { throw FileAccessError.interrupted(file: model) }
                guard let architecture = GGUFArchitecture.of(network.config.family) else {
                    throw GGUFExport.Failure.unsupportedArchitecture(file: model, found: network.config.family.rawValue)
                }
                matrix = collector.matrix(architecture: architecture, datasets: [source], chunkSize: plan.context, chunks: plan.range.count)
            }
            try matrix.write(to: output, overwrite: force)
            if common.json {
                printJSON(["output": .string(output), "entries": JSONValue(matrix.entries.count), "chunks": JSONValue(matrix.chunkCount),
                           "chunk_size": JSONValue(matrix.chunkSize), "datasets": .array(matrix.datasets.map { .string($0) })])
                return
            }
            print("wrote \(output): \(matrix.entries.count) weight matrices, \(matrix.chunkCount) chunks of \(matrix.chunkSize) tokens")
        }
    }
}
