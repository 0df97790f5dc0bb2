import ArgumentParser
import CheckpointKit
import ToolSupport

@main
struct MergeLoRACommand: ToolCommand {
    static let configuration = CommandConfiguration(
        commandName: "ckpt-merge-lora",
        abstract: "Merge PEFT LoRA adapters into their base weights (LoRA, rsLoRA, DoRA, embeddings, Conv1D, modules_to_save).",
        discussion: """
            Every adapter tensor must find its base tensor: an unmatched key is an error, never a \
            silent skip. Several adapters merge as base + Σ weight·delta (give one --weight per \
            adapter, the positional one first, or one per --adapter). A quantized base is \
            dequantized, merged and written as floats, or re-quantized in its own scheme with \
            --requantize. With --combination, the adapters are first combined into one as PEFT's \
            add_weighted_adapter does (linear, cat, svd, ties, ties_svd, dare_linear, dare_ties, \
            dare_linear_svd, dare_ties_svd, magnitude_prune, magnitude_prune_svd), then merged, or \
            written as a PEFT adapter folder with --save-adapter.
            """,
        version: ckptVersion)

    @Argument(help: "Base checkpoint: a .safetensors file, an index or a model folder (may be quantized).")
    var base: String

    @Argument(help: "PEFT adapter folder (adapter_config.json + adapter_model.safetensors).")
    var adapter: String

    @Argument(help: "Output folder (or a .safetensors file when the base is a single file); not needed with --dry-run.")
    var output: String?

    @Option(name: .customLong("adapter"), help: "A further adapter to merge (repeatable).")
    var moreAdapters: [String] = []

    @Option(help: "Weight of each adapter's delta, in order (repeatable; default 1).")
    var weight: [Double] = []

    @Option(help: "Combine the adapters first, as PEFT's add_weighted_adapter: \(CombinationMethod.allCases.map(\.rawValue).joined(separator: ", ")).")
    var combination: String?

    @Option(help: "Fraction of values kept by ties, dare_* and magnitude_prune*, in (0, 1].")
    var density: Double?

    @Option(help: "total or frequency: how TIES elects each value's sign.")
    var majoritySignMethod: String = "total"

    @Option(help: "Rank of the *_svd methods' result (default: the largest rank of the adapters).")
    var svdRank: Int?

    @Option(help: "Quantile in (0, 1] at which the *_svd factors are clamped.")
    var svdClamp: Double?

    @Option(help: "Seed of the DARE random masks.")
    var seed: UInt64 = 0

    @Flag(help: "Write the combined adapter to <output> as a PEFT adapter folder instead of merging it.")
    var saveAdapter = false

    @Option(help: "keep, f32, f16 or bf16: dtype of the written floats (keep: the base's).")
    var dtype: String = "keep"

    @Flag(help: "Re-quantize merged weights of a quantized base in its own scheme and block size.")
    var requantize = false

    @OptionGroup var calibration: CalibrationTextOptions

    @Flag(help: "Print the plan (adapter key → base tensor, rank, scaling, shape) and write nothing.")
    var dryRun = false

    @Flag(help: "Replace an existing output.")
    var force = false

    @OptionGroup var common: CommonOptions

    var adapterFolders: [String] { [adapter] + moreAdapters }

    var weights: [Double] {
        if weight.count == adapterFolders.count { return weight }
        if weight.count == moreAdapters.count { return [1] + weight }
        return adapterFolders.map { _ in 1 }
    }

    func validate() throws {
        guard dtype == "keep" || parseFloatType(dtype) != nil else { throw ValidationError("--dtype \(dtype): expected keep, f32, f16 or bf16") }
        guard weight.isEmpty || weight.count == adapterFolders.count || weight.count == moreAdapters.count else {
            throw ValidationError("--weight given \(weight.count) time(s) for \(adapterFolders.count) adapters (expected one per adapter, or one per --adapter)")
        }
        if weight.contains(where: { !$0.isFinite }) { throw ValidationError("--weight must be finite") }
        if output == nil && !dryRun { throw ValidationError("missing expected argument '<output>' (only --dry-run needs none)") }
        if let combination, CombinationMethod(rawValue: combination) == nil {
            throw ValidationError("--combination \(combination): expected one of \(CombinationMethod.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if TaskMerging.MajoritySign(rawValue: majoritySignMethod) == nil {
            throw ValidationError("--majority-sign-method \(majoritySignMethod): expected total or frequency")
        }
        if let density, !(density > 0 && density <= 1) { throw ValidationError("--density \(density): expected a fraction in (0, 1]") }
        if let svdClamp, !(svdClamp > 0 && svdClamp <= 1) { throw ValidationError("--svd-clamp \(svdClamp): expected a quantile in (0, 1]") }
        if let svdRank, svdRank <= 0 { throw ValidationError("--svd-rank \(svdRank): expected a positive integer") }
        if saveAdapter && combination == nil { throw ValidationError("--save-adapter writes a combined adapter: give --combination") }
        if saveAdapter && (requantize || dtype != "keep") { throw ValidationError("--save-adapter writes an adapter: --requantize and --dtype apply to merged models") }
        if calibration.calibrationText != nil && !requantize { throw ValidationError("--calibration-text re-runs GPTQ/AWQ when re-quantizing: add --requantize") }
        if calibration.calibrationText != nil && dryRun { throw ValidationError("--calibration-text has nothing to calibrate in a --dry-run") }
        if !calibration.countsArePositive { throw ValidationError("--calibration-tokens and --ctx must be positive") }
        if combination == nil, density != nil || svdRank != nil || svdClamp != nil {
            throw ValidationError("--density, --svd-rank and --svd-clamp apply to --combination")
        }
    }

    func run() throws {
        try runTool(common) {
            let checkpoint = try Checkpoint(path: base)
            let adapters = try zip(adapterFolders, weights).map { (try LoRAAdapter(folder: $0), $1) }
            let options = MergeOptions(dtype: dtype == "keep" ? nil : parseFloatType(dtype), requantize: requantize, dryRun: dryRun,
                                       threads: common.threadBudget, overwrite: force)
            let weighted = adapters.map { (adapter: $0.0, weight: $0.1) }
            let report: MergeReport
            if let combination = combination.flatMap(CombinationMethod.init(rawValue:)) {
                var combining = CombinationOptions(method: combination, density: density)
                combining.majoritySign = TaskMerging.MajoritySign(rawValue: majoritySignMethod)!
                combining.svdRank = svdRank
                combining.svdClamp = svdClamp
                combining.seed = seed
                combining.threads = common.threadBudget
                // Every adapter is checked against the base (keys, shapes, ranks, finite values) before combining.
                _ = try LoRAPlanner.plan(base: try LogicalCheckpoint(checkpoint), adapters: weighted)
                let combined = try AdapterCombiner.combine(weighted, options: combining)
                if saveAdapter {
                    try combined.write(to: output!, overwrite: force)
                    for note in combined.notes { log("note: \(note)", options: common) }
                    print("wrote \(output!): \(combined.modules.count) modules combined by \(combination.rawValue) from \(adapters.count) adapter(s), rank \(combined.rank)")
                    return
                }
                report = try mergeMaybeCalibrated(checkpoint, options: options) { target, options in
                    try CheckpointMerger.merge(base: checkpoint, combined: combined, sources: adapters.map(\.0), to: target, options: options)
                }
            } else {
                report = try mergeMaybeCalibrated(checkpoint, options: options) { target, options in
                    try CheckpointMerger.merge(base: checkpoint, adapters: weighted, to: target, options: options)
                }
            }
            for note in report.notes { log("note: \(note)", options: common) }
            if common.json {
                printJSON(json(report))
                return
            }
            let quantizedBase = report.rows.contains { $0.baseQuantizationRMSE != nil }
            var table = TextTable(headers: ["base tensor", "shape", "kind", "adapter key", "rank", "scaling", "weight"]
                                  + (dryRun ? [] : ["rel. change"]) + (quantizedBase ? ["update rms", "base quant rmse"] : [])
                                  + (requantize ? ["requant snr dB"] : []),
                                  rightAligned: [4, 5, 6, 7, 8, 9, 10, 11])
            for row in report.rows {
                for (i, a) in row.adapters.enumerated() {
                    var cells = [i == 0 ? row.tensor : "", i == 0 ? row.shape.map(String.init).joined(separator: "×") : "", i == 0 ? row.kind : "",
                                 a.key, a.rank > 0 ? String(a.rank) : "-", formatValue(a.scaling), formatValue(a.weight)]
                    if !dryRun { cells.append(i == 0 ? row.relativeChange.map { formatValue($0) } ?? "" : "") }
                    if quantizedBase {
                        cells.append(i == 0 ? row.updateRMS.map { formatValue($0) } ?? "" : "")
                        cells.append(i == 0 ? row.baseQuantizationRMSE.map { formatValue($0) } ?? "" : "")
                    }
                    if requantize { cells.append(i == 0 ? row.requantization.map { formatDecibels($0.snrDB) } ?? "" : "") }
                    table.add(cells)
                }
            }
            print(table.render())
            if report.dryRun {
                print("\ndry run: \(report.rows.count) base tensors would change; nothing written")
            } else {
                print("\nwrote \(report.output): \(report.rows.count) tensors merged from \(adapters.count) adapter(s), "
                    + "\(formatBytes(onDiskBytes(report.output))) on disk in \(formatDecimal(report.seconds, places: 2)) s")
            }
        }
    }

    /// The merge as asked: straight to the output, or with --calibration-text into floats that
    /// GPTQ/AWQ then quantizes in the base's scheme (the rows then carry that quantization's error).
    func mergeMaybeCalibrated(_ checkpoint: Checkpoint, options: MergeOptions,
                              merge: (String, MergeOptions) throws -> MergeReport) throws -> MergeReport {
        guard let calibrationText = calibration.calibrationText else { return try merge(output ?? "", options) }
        var floats = options
        floats.requantize = false
        floats.overwrite = true
        let calibration = CalibratedRequantization.Calibration(text: calibrationText, tokens: calibration.calibrationTokens, context: calibration.ctx,
                                                                   sampling: calibration.calibrationSampling)
        return try CalibratedRequantization.run(base: checkpoint, to: output!, calibration: calibration, threads: common.threadBudget,
                                                overwrite: force) { try merge($0, floats) }
    }

    func json(_ report: MergeReport) -> JSONValue {
        [
            "input": .string(base), "output": report.output.isEmpty ? .null : .string(report.output), "dry_run": .bool(report.dryRun),
            "output_bytes": report.dryRun ? .null : JSONValue(onDiskBytes(report.output)), "files": .array(report.files.map { .string($0) }),
            "notes": .array(report.notes.map { .string($0) }), "seconds": .double(report.seconds),
            "tensors": .array(report.rows.map { row in
                var members: [(String, JSONValue)] = [
                    ("name", .string(row.tensor)), ("shape", .array(row.shape.map { JSONValue($0) })), ("kind", .string(row.kind)),
                    ("adapters", .array(row.adapters.map {
                        ["key": .string($0.key), "rank": JSONValue($0.rank), "scaling": .double($0.scaling), "weight": .double($0.weight)]
                    })),
                ]
                if let change = row.relativeChange { members.append(("relative_change", .double(change))) }
                if let m = row.requantization { members.append(("requantization", metricsJSON(m))) }
                if let rms = row.updateRMS { members.append(("update_rms", .double(rms))) }
                if let rmse = row.baseQuantizationRMSE { members.append(("base_quantization_rmse", .double(rmse))) }
                return .object(members)
            }),
        ]
    }
}
