import ArgumentParser
import CheckpointKit
import ToolSupport

@main
struct CompareCommand: ToolCommand {
    static let configuration = CommandConfiguration(
        commandName: "ckpt-compare",
        abstract: "What a quantization or merge cost: both perplexities, KL divergence, same-top-token rate, Δp.",
        discussion: """
            Runs BASE and CANDIDATE over the same chunks (llama.cpp's method) and compares them \
            token by token over the full vocabulary. Gates: --max-ppl-increase PCT and --max-kld X \
            exit 3 when not met. --save-base FILE stores the base's log-probabilities (top-k, f32) \
            so later runs with --base FILE evaluate only the candidate; KL against a saved base \
            folds the tokens outside the top k into one bucket (a lower bound, stated in the output).
            """,
        version: ckptVersion)

    @Argument(help: "BASE CANDIDATE, or just CANDIDATE with --base FILE, or just BASE with --save-base FILE.")
    var models: [String] = []

    @OptionGroup var input: EvaluationInput

    @Option(help: "Exit 3 if the candidate's perplexity exceeds the base's by more than this many percent.")
    var maxPplIncrease: Double?

    @Option(help: "Exit 3 if the mean KL divergence exceeds this.")
    var maxKld: Double?

    @Option(help: "Save the base's log-probabilities to this file.")
    var saveBase: String?

    @Option(help: "Use base log-probabilities saved by --save-base instead of running the base.")
    var base: String?

    @Option(help: "Log-probabilities kept per position with --save-base.")
    var topK: Int = 64

    @Flag(help: "Replace an existing --save-base or --piece file.")
    var force = false

    @Option(help: ArgumentHelp("With --chunk-range: write the per-token values --combine needs to this file (its --json names it).", valueName: "FILE"))
    var piece: String?

    @OptionGroup var common: CommonOptions

    func validate() throws {
        if !input.combine.isEmpty {
            guard models.isEmpty, base == nil, saveBase == nil, piece == nil else {
                throw ValidationError("--combine takes the pieces' JSON files only (no models, --base, --save-base or --piece)")
            }
            return
        }
        if input.chunkRange != nil {
            guard base == nil, saveBase == nil else { throw ValidationError("--chunk-range runs BASE and CANDIDATE; it cannot be combined with --base or --save-base") }
            guard piece != nil, common.json else { throw ValidationError("--chunk-range needs --piece FILE and --json (what --combine reads)") }
        } else if piece != nil {
            throw ValidationError("--piece is written only by a --chunk-range run")
        }
        if models.isEmpty {
            throw ValidationError("missing expected argument '<models> ...' (BASE CANDIDATE, or --combine piece.json …)")
        }
        if base != nil {
            guard models.count == 1 else { throw ValidationError("with --base FILE give only the CANDIDATE model") }
            guard saveBase == nil else { throw ValidationError("--base and --save-base cannot be combined") }
            if let given = input.givenOptions.first {
                throw ValidationError("\(given) cannot be combined with --base: the saved file fixes the tokens, --ctx and --chunks")
            }
        } else {
            guard models.count == 2 || (models.count == 1 && saveBase != nil) else {
                throw ValidationError("give BASE and CANDIDATE (or BASE with --save-base FILE, or CANDIDATE with --base FILE)")
            }
            guard input.isGiven else { throw ValidationError("give --text FILE or --tokens FILE") }
        }
        guard topK >= 1 else { throw ValidationError("--top-k must be at least 1") }
    }

    func run() throws {
        var gateFailures: [String] = []
        try runTool(common) {
            reuseLargeAllocations()
            if !input.combine.isEmpty {
                let pieces = try readPieces(input.combine, program: "ckpt-compare")
                let result = try DivergencePiece.combine(pieces.map { ($0.file, $0.split) })
                let identity = pieces[0].split["identity"]!
                gateFailures = report(result, base: pieces[0].document["base"]?.stringValue ?? "base",
                                      candidate: pieces[0].document["candidate"]?.stringValue ?? "candidate", exact: true,
                                      plan: ChunkPlanDescription(context: identity["ctx"]?.intValue ?? 0, chunks: identity["chunks"]?.intValue ?? 0, topK: nil))
                return
            }
            var saved: BaseLogProbabilities?
            var baseName = base ?? models[0]
            if let base {
                saved = try BaseLogProbabilities.load(base)
            } else {
                let checkpoint = try Checkpoint(path: models[0])
                let model = try TransformerModel(checkpoint: checkpoint, threads: common.threadBudget)
                if let warning = input.contextWarning(model.config, model: models[0]) { warn(warning, options: common) }
                let (tokens, bos, source) = try input.tokens(for: checkpoint, vocabulary: model.config.vocabularySize)
                var plan = try ChunkPlan(tokens: tokens.count, context: input.contextLength, chunks: input.chunks, bos: bos, file: source)
                if let range = input.chunkRangeValue { plan = try plan.restricted(to: range, file: source) }
                if saveBase != nil || models.count == 1 {
                    let computed = try BaseLogProbabilities.compute(model, tokens: tokens, plan: plan, topK: topK) { chunk in
                        reportChunk("base", chunk, of: plan.chunks, "base [\(chunk)/\(plan.chunks)]", options: common)
                    }
                    if let saveBase { try computed.save(to: saveBase, overwrite: force) }
                    saved = computed
                    baseName = models[0]
                }
                if models.count == 2 && saveBase == nil {
                    let candidateCheckpoint = try Checkpoint(path: models[1])
                    let candidate = try TransformerModel(checkpoint: candidateCheckpoint, threads: common.threadBudget)
                    // Different vocabularies are refused by the evaluator itself, naming both sizes.
                    if input.text != nil && candidate.config.vocabularySize == model.config.vocabularySize {
                        let (candidateTokens, _, _) = try input.tokens(for: candidateCheckpoint, vocabulary: candidate.config.vocabularySize)
                        try QualityGates.requireSameTokens(tokens, candidateTokens, file: source, baseModel: models[0], candidateModel: models[1])
                    }
                    let result = try DivergenceEvaluator.evaluate(base: model, candidate: candidate, tokens: tokens, plan: plan) { chunk, r in
                        reportChunk("compare", chunk, of: plan.range.count, "[\(chunk)/\(plan.range.count)] mean KLD \(formatValue(r.meanDivergence)), PPL \(formatDecimal(r.base.perplexity, places: 4)) → "
                            + "\(formatDecimal(r.candidate.perplexity, places: 4))", options: common)
                    }
                    var split: JSONValue = .null
                    if let piece {
                        let identity = SplitRun.identity(models: [("base_fingerprint", model), ("candidate_fingerprint", candidate)], tokens: tokens, plan: plan)
                        try DivergencePiece.save(result, identity: identity, range: plan.range, to: piece, overwrite: force)
                        split = ["identity": identity, "chunk_range": [JSONValue(plan.range.lowerBound), JSONValue(plan.range.upperBound)],
                                 "piece_file": .string(piece)]
                    }
                    gateFailures = report(result, base: baseName, candidate: models[1], exact: true,
                                          plan: ChunkPlanDescription(context: plan.context, chunks: plan.range.count, topK: nil), split: split)
                    return
                }
            }
            guard let saved else { return }
            guard let candidatePath = models.count == 2 ? models[1] : (base != nil ? models[0] : nil) else {
                if !common.json { print("saved base log-probabilities of \(baseName) to \(saveBase!) (top \(saved.topK), \(saved.rows) positions)") }
                else { printJSON(["saved_base": .string(saveBase!), "positions": JSONValue(saved.rows), "top_k": JSONValue(saved.topK)]) }
                return
            }
            let candidate = try TransformerModel(checkpoint: try Checkpoint(path: candidatePath), threads: common.threadBudget)
            let result = try saved.compare(candidate) { chunk, r in
                reportChunk("compare", chunk, of: saved.chunks, "[\(chunk)/\(saved.chunks)] mean KLD ≥ \(formatValue(r.meanDivergence))",
                            options: common)
            }
            gateFailures = report(result, base: baseName, candidate: candidatePath, exact: false,
                                  plan: ChunkPlanDescription(context: saved.context, chunks: saved.chunks, topK: saved.topK))
        }
        if !gateFailures.isEmpty {
            printError("gate failed: " + gateFailures.joined(separator: "; "))
            throw ExitCode(ToolExit.qualityGateFailed)
        }
    }

    struct ChunkPlanDescription { var context: Int; var chunks: Int; var topK: Int? }


    /// Prints the comparison and returns the gates that failed.
    func report(_ r: DivergenceAccumulator, base: String, candidate: String, exact: Bool, plan: ChunkPlanDescription,
                split: JSONValue = .null) -> [String] {
        let ratio = r.candidate.perplexity / r.base.perplexity
        let increase = (ratio - 1) * 100
        let failures = QualityGates(maxPerplexityIncrease: maxPplIncrease, maxMeanDivergence: maxKld).failures(r)
        let kldNote = exact ? "full vocabulary" : "lower bound: tokens outside the saved top \(plan.topK ?? 0) folded into one bucket"
        if common.json {
            printJSON([
                "base": .string(base), "candidate": .string(candidate), "ctx": JSONValue(plan.context), "chunks": JSONValue(plan.chunks),
                "scored_tokens": JSONValue(r.count),
                "ppl_base": .double(r.base.perplexity), "ppl_base_stderr": .double(r.base.standardError),
                "ppl_candidate": .double(r.candidate.perplexity), "ppl_candidate_stderr": .double(r.candidate.standardError),
                "ppl_ratio": .double(ratio), "mean_ln_ppl_ratio": .double(r.candidate.meanNLL - r.base.meanNLL),
                "kld": ["mean": .double(r.meanDivergence), "median": .double(r.quantile(0.5)), "p90": .double(r.quantile(0.9)),
                        "p99": .double(r.quantile(0.99)), "max": .double(r.maxDivergence), "method": .string(kldNote)],
                "same_top_rate": .double(r.sameTopRate), "delta_p": ["mean": .double(r.meanDeltaP), "rms": .double(r.rmsDeltaP)],
                "gates_failed": .array(failures.map { .string($0) }), "split": split,
            ])
            return failures
        }
        var table = TextTable(headers: ["metric", "value"], rightAligned: [1])
        table.add(["PPL base", "\(formatDecimal(r.base.perplexity, places: 4)) ± \(formatDecimal(r.base.standardError, places: 4))"])
        table.add(["PPL candidate", "\(formatDecimal(r.candidate.perplexity, places: 4)) ± \(formatDecimal(r.candidate.standardError, places: 4))"])
        table.add(["PPL ratio", "\(formatDecimal(ratio, places: 5)) (\(increase >= 0 ? "+" : "")\(formatDecimal(increase, places: 3))%)"])
        table.add(["mean ln(PPL ratio)", formatValue(r.candidate.meanNLL - r.base.meanNLL)])
        table.add(["KLD mean", formatValue(r.meanDivergence)])
        table.add(["KLD median", formatValue(r.quantile(0.5))])
        table.add(["KLD p90", formatValue(r.quantile(0.9))])
        table.add(["KLD p99", formatValue(r.quantile(0.99))])
        table.add(["KLD max", formatValue(r.maxDivergence)])
        table.add(["same top token", "\(formatDecimal(100 * r.sameTopRate, places: 2))%"])
        table.add(["Δp mean", formatValue(r.meanDeltaP)])
        table.add(["Δp RMS", formatValue(r.rmsDeltaP)])
        print("\(candidate) against \(base): \(r.count) tokens scored in \(plan.chunks) chunks of \(plan.context); KLD over the \(kldNote)")
        print(table.render())
        return failures
    }
}
