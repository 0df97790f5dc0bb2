import ArgumentParser
import CheckpointKit
import ToolSupport

@main
struct QuantizeCommand: ToolCommand {
    static let configuration = CommandConfiguration(
        commandName: "ckpt-quantize",
        abstract: "Quantize a checkpoint to int8 (compressed-tensors) or NF4/FP4 (bitsandbytes) with block scales.",
        discussion: """
            By default the linear layers' 2-D weights are quantized; embeddings, lm_head, norms and \
            biases keep their dtype. The output keeps the input's shard layout, gains a \
            quantization_config in config.json, and loads in transformers (NF4/FP4 with bitsandbytes, \
            int8 with compressed-tensors). Reports RMSE, max error and SNR per tensor.
            """,
        version: ckptVersion)

    @Argument(help: "Input: a .safetensors file, an index, or a model folder.")
    var input: String

    @Argument(help: "Output folder (or a .safetensors file when the input is a single file).")
    var output: String

    @Option(help: "int4, int8, nf4 or fp4.")
    var scheme: String

    @Option(help: "Values per scale: nf4/fp4 32…4096 (a power of two); int4/int8 any size dividing the rows, or --block-size=-1 for one scale per output channel.")
    var blockSize: Int = 64

    @Option(help: "int4/int8: the file format, pack-quantized (compressed-tensors, vLLM's W4A16; int4's default), gptq or awq (int4 only). int8 without it is compressed-tensors int-quantized.")
    var format: String?

    @Flag(help: "int4/int8: a zero point per group (asymmetric) instead of a symmetric range.")
    var asymmetric = false

    @Flag(help: "4-bit only: quantize the absmax too (8-bit, blocks of 256), as bnb_4bit_use_double_quant.")
    var doubleQuant = false

    @Option(help: "int8 only: dtype of the stored scales, f32 (default), f16 or bf16.")
    var scaleDtype: String?

    @Option(help: "Quantize the 2-D float tensors whose names match this regex (embeddings included if matched).")
    var include: String?

    @Option(help: "Keep tensors whose names match this regex in their dtype.")
    var exclude: String?

    @Flag(help: "Search each block's scale for the least squared error instead of taking its absmax.")
    var optimizeScales = false

    @Option(help: "An importance matrix (ckpt-imatrix or llama-imatrix GGUF, or legacy .dat): the scale search weights each column's error by it (implies --optimize-scales).")
    var imatrix: String?

    @Option(help: "How codes are chosen: rtn (round to nearest, the default), gptq, awq, or awq+gptq (AWQ's scales, then GPTQ on the scaled weights); all but rtn calibrated on --calibration-text, layer by layer.")
    var method: String = "rtn"

    @OptionGroup var calibration: CalibrationTextOptions

    @Flag(help: "GPTQ: quantize columns in decreasing order of their activations' energy (desc_act, or act_group_aware; see --static-groups).")
    var actOrder = false

    @Flag(help: "GPTQ with --act-order: fix every group's scale before the reordering (static_groups). Without it, --format gptq follows the order across groups (desc_act, a permuted g_idx); pack-quantized, AWQ and nf4/fp4, whose loaders take no permuted g_idx, order columns within groups (act_group_aware).")
    var staticGroups = false

    @Option(help: ArgumentHelp("GPTQ: dampening, as a fraction of the mean Hessian diagonal; raised per layer when a Hessian is not positive definite. Default: 0.01 (GPTQModel's) for int4/int8, 0.1 for nf4/fp4, where it cut SmolLM2-135M's perplexity increase from +19.6% to +14.2%.",
                                valueName: "fraction"))
    var damp: Double?

    @Option(help: ArgumentHelp("GPTQ: search each group's range as GPTQModel's mse option does: shrink min/max (absmax for nf4/fp4) in 1% steps down to 21% and keep the scale whose codes give the least Σ|q − w|^norm. 0 turns it off (min/max, GPTQModel's default). Default: 2.4 (the original GPTQ's norm) for int4/int8, where it cut SmolLM2-135M's perplexity increase by 40%; 0 for nf4/fp4, where it lowered the KL divergence but not the perplexity.",
                               valueName: "norm"))
    var mse: Double?

    @Option(help: ArgumentHelp("GPTQ/AWQ: how many times each calibration chunk's first token (the attention sink later tokens read) counts in the Hessians, or `auto`: a weight per product, measured from the float model's loss gradients on 4 calibration chunks (the first token's mean squared output gradient over the other tokens'). Default: auto for --method gptq (8 where the backward pass does not cover the model's blocks), which took SmolLM2-135M's int4 g64 KL divergence from 0.218 (weight 8) to 0.199 and NF4's from 0.166 to 0.131; 1 (every token alike, as GPTQModel) for awq and awq+gptq, which take a number only.",
                               valueName: "weight|auto"))
    var firstTokenWeight: FirstTokenWeightArgument?

    @Flag(inversion: .prefixedNo, help: "GPTQ (gptq, awq+gptq): take each layer's Hessians group after group (q, k, v; o; gate, up; down), each from a pass with the groups before it already quantized, as GPTQModel's true_sequential (on there) does, instead of all from one float pass of the layer. Off by default: on SmolLM2-135M it changed int4 GPTQ's perplexity increase from +29.9% to +30.5% and NF4's from +24.9% to +23.1%, for about a third more time.")
    var trueSequential = false

    @Flag(help: "--method gptq: GPTAQ's asymmetric calibration: run the float model beside the quantized one and steer each product's outputs toward the float model's (its outputs on its own inputs), not toward the quantized model's inputs times the float weight. Costs a second forward pass (about 1.7× the time) and more memory. On SmolLM2-135M int4 g64 with --true-sequential: +27.8% perplexity against +30.5% without it.")
    var gptaq = false

    @Flag(inversion: .prefixedNo, help: "GPTQ: once a weight's codes are chosen, refit each row's scales to them by least squares through the Hessian (the codes unchanged), and again after --refine-rounds moves them. Default: on for nf4/fp4, where it lowered SmolLM2-135M's perplexity increase in all three recipes measured (GPTQ +24.9% → +22.9%); for int4/int8 on when the codes are refined (the default with --method gptq), off otherwise, where it raised the increase in two of three.")
    var refitScales: Bool?

    @Option(help: ArgumentHelp("GPTQ: rounds of refinement once the codes are chosen (0 to 100): each moves every value to the code that lowers its row's output error through the Hessian most with the others fixed (coordinate descent, up to 4 passes), then refits the scales (see --refit-scales). Default: 2 with --method gptq, where it lowered SmolLM2-135M's mean KL divergence from 0.257 to 0.208 for int4 (perplexity increase +24.8% → +17.8%) and from 0.180 to 0.174 for NF4 (+19.3% → +17.9%); 0 for awq+gptq, where it raised NF4's.", valueName: "rounds"))
    var refineRounds: Int?

    @Flag(inversion: .prefixedNo, help: "AWQ: after scaling, search each group's clipping range on the calibration inputs (AutoAWQ's auto_clip; query and key projections are never clipped).")
    var awqClip = true

    @Flag(help: "Quantize tensors holding NaN or Inf instead of refusing them.")
    var allowNonfinite = false

    @Flag(help: "Replace an existing output.")
    var force = false

    @OptionGroup var common: CommonOptions

    var parsedScheme: (any QuantizationScheme)? {
        parseFloatType(scaleDtype ?? "f32").flatMap {
            QuantizedLayouts.scheme(named: scheme.lowercased(), blockSize: blockSize, doubleQuant: doubleQuant, scaleType: $0,
                                    format: format.flatMap { IntegerFormat(rawValue: $0.lowercased()) }, symmetric: !asymmetric)
        }
    }

    var isInteger: Bool { parsedScheme is IntegerScheme }

    /// The range search's norm GPTQ runs with (0: none): `--mse`, else on for integer codes only.
    /// Measured on SmolLM2-135M (WikiText-2, calibrated on Tiny Shakespeare): int4 g64 act-order
    /// +52.8% → +31.4% perplexity, GPTQ format +37.8% → +29.8%, int8 +0.30% → +0.21%; NF4 +24.9% →
    /// +26.3% with mean KLD 0.215 → 0.193, not clearly better, so NF4/FP4 keep min/max.
    var gptqNorm: Double {
        guard runsGPTQ else { return 0 }
        return mse ?? (isInteger ? GPTQRangeSearch.standardNorm : 0)
    }

    /// Whether the method ends in GPTQ (gptq, awq+gptq), which the GPTQ flags then apply to.
    var runsGPTQ: Bool { ["gptq", "awq+gptq"].contains(method.lowercased()) }

    func validate() throws {
        guard QuantizedLayouts.schemeNames.contains(scheme.lowercased()) else {
            throw ValidationError("--scheme \(scheme): unknown (expected \(QuantizedLayouts.schemeNames.joined(separator: ", ")))")
        }
        if let scaleDtype {
            guard parseFloatType(scaleDtype) != nil else { throw ValidationError("--scale-dtype \(scaleDtype): expected f32, f16 or bf16") }
            // bitsandbytes keeps 4-bit absmax in f32 (or 8-bit codes with --double-quant): there is nothing to choose.
            guard scheme.lowercased() == "int8" else { throw ValidationError("--scale-dtype applies to int8 only (\(scheme) stores f32 absmax)") }
        }
        for (flag, pattern) in [("--include", include), ("--exclude", exclude)] {
            if let pattern, (try? Regex(pattern)) == nil { throw ValidationError("\(flag) \(pattern): not a valid regular expression") }
        }
        if doubleQuant && scheme.lowercased().hasPrefix("int") { throw ValidationError("--double-quant applies to nf4 and fp4 only") }
        if let format {
            guard let parsed = IntegerFormat(rawValue: format.lowercased()) else {
                throw ValidationError("--format \(format): unknown (expected \(IntegerFormat.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            guard scheme.lowercased().hasPrefix("int") else { throw ValidationError("--format applies to int4 and int8 (\(scheme) keeps the bitsandbytes layout)") }
            if parsed == .awq && scheme.lowercased() != "int4" { throw ValidationError("--format awq holds int4 only") }
        }
        if asymmetric && !scheme.lowercased().hasPrefix("int") { throw ValidationError("--asymmetric applies to int4 and int8") }
        if asymmetric && parsedScheme is Int8Scheme { throw ValidationError("--asymmetric int8 needs --format pack-quantized or gptq") }
        if blockSize <= 0 && !(parsedScheme is IntegerScheme) { throw ValidationError("--block-size \(blockSize): expected a positive size") }
        let chosen = method.lowercased()
        guard ["rtn", "gptq", "awq", "awq+gptq"].contains(chosen) else {
            throw ValidationError("--method \(method): unknown (expected rtn, gptq, awq or awq+gptq)")
        }
        if chosen != "rtn" {
            guard calibration.calibrationText != nil else { throw ValidationError("--method \(chosen) needs --calibration-text FILE") }
            guard calibration.countsArePositive else { throw ValidationError("--calibration-tokens and --ctx must be positive") }
            if let damp { guard damp > 0, damp < 1 else { throw ValidationError("--damp \(damp): expected a fraction in (0, 1)") } }
            if let weight = firstTokenWeight?.fixed, !(weight >= 0 && weight <= CalibrationOptions.largestFirstTokenWeight) {
                throw ValidationError("--first-token-weight \(weight): expected a weight in [0, 1000000] or auto")
            }
            if let firstTokenWeight, firstTokenWeight.fixed == nil, chosen != "gptq" {
                throw ValidationError("--first-token-weight auto applies to --method gptq (AWQ's scale search reads one Hessian per scaling group)")
            }
            if optimizeScales || imatrix != nil { throw ValidationError("--method \(chosen) chooses its own scales: drop --optimize-scales and --imatrix") }
            if runsGPTQ && parsedScheme is Int8Scheme { throw ValidationError("--method \(chosen) with int8 needs --format pack-quantized or gptq") }
        } else if calibration.calibrationText != nil {
            throw ValidationError("--calibration-text applies to --method gptq and awq")
        } else if firstTokenWeight != nil {
            throw ValidationError("--first-token-weight applies to --method gptq, awq and awq+gptq")
        }
        if !runsGPTQ {
            for (flag, given) in [("--act-order", actOrder), ("--static-groups", staticGroups), ("--mse", mse != nil),
                                  ("--refit-scales", refitScales != nil), ("--refine-rounds", refineRounds != nil)] where given {
                throw ValidationError("\(flag) applies to --method gptq and awq+gptq")
            }
        }
        if let mse, !(mse >= 0 && mse <= GPTQRangeSearch.largestNorm) {
            throw ValidationError("--mse \(mse): expected a norm in (0, \(formatDecimal(GPTQRangeSearch.largestNorm, places: 0))], or 0 to turn the search off")
        }
        if gptaq && method.lowercased() != "gptq" { throw ValidationError("--gptaq applies to --method gptq") }
        if let refineRounds, !(0...GPTQCoordinateDescent.largestRoundCount).contains(refineRounds) {
            throw ValidationError("--refine-rounds \(refineRounds): expected 0 to \(GPTQCoordinateDescent.largestRoundCount)")
        }
        if gptaq && (refineRounds ?? 0) > 0 { throw ValidationError("--refine-rounds descends through H's product, not toward the float model's outputs --gptaq steers toward: drop one") }
        if gptaq && refitScales == true { throw ValidationError("--refit-scales fits H's product, not the float model's outputs --gptaq steers toward: drop one") }
        if staticGroups && !actOrder { throw ValidationError("--static-groups applies with --act-order") }
        if isInteger && (optimizeScales || imatrix != nil) {
            throw ValidationError("--optimize-scales and --imatrix apply to nf4, fp4 and int-quantized int8")
        }
        do { try parsedScheme!.validate() } catch { throw ValidationError("\(error)") }
    }

    func run() throws {
        try runTool(common) {
            // Each weight allocates its f32 copy, codes and decoded values afresh: reused blocks
            // spare the page faults and zeroing (1.6 M faults, ~5 s of system time on a 1 B model).
            reuseLargeAllocations()
            // Calibration runs two matrices' GPTQ side by side: their freed blocks are then kept once, not per worker.
            if method.lowercased() != "rtn" { shareOneAllocatorArena() }
            let checkpoint = try Checkpoint(path: input)
            var options = QuantizationOptions(scheme: parsedScheme!, include: include, exclude: exclude,
                                              optimizeScales: optimizeScales || imatrix != nil,
                                              allowNonFinite: allowNonfinite, threads: common.threadBudget, overwrite: force)
            if let imatrix { options.importance = try ImportanceMatrix(reading: imatrix) }
            let report: QuantizationReport
            if method.lowercased() != "rtn", let calibrationText = calibration.calibrationText {
                if var integer = options.scheme as? IntegerScheme {
                    integer.method = method.lowercased()
                    integer.actOrder = actOrder
                    integer.staticGroups = staticGroups
                    integer.damp = damp ?? CalibrationOptions.dampByDefault(integer)
                    integer.mse = gptqNorm
                    // The config says how GPTQ ran; other methods keep the field as before.
                    if runsGPTQ { integer.trueSequential = trueSequential }
                    options.scheme = integer
                }
                let text = try TextTokens(reading: calibrationText, checkpoint: checkpoint)
                var settings = CalibrationOptions(text: text, budget: calibration.calibrationTokens, context: calibration.ctx,
                                                  sampling: calibration.calibrationSampling)
                settings.method = CalibrationOptions.Method(rawValue: method.lowercased()) ?? .gptq
                settings.actOrder = actOrder
                settings.staticGroups = staticGroups
                settings.damp = damp
                settings.mse = gptqNorm
                settings.clip = awqClip
                settings.firstTokenWeight = firstTokenWeight?.fixed
                if let firstTokenWeight { settings.measuresFirstTokenWeights = firstTokenWeight.fixed == nil }
                settings.trueSequential = trueSequential
                settings.asymmetric = gptaq
                settings.refitScales = refitScales
                settings.refineRounds = refineRounds
                report = try CalibratedQuantizer.quantize(checkpoint, to: output, options: options, calibration: settings)
            } else {
                report = try CheckpointQuantizer.quantize(checkpoint, to: output, options: options)
            }
            for note in report.notes { log("note: \(note)", options: common) }
            if common.json {
                printJSON(json(report))
                return
            }
            print(table(report))
            print("\nwrote \(report.output) (\(report.scheme)): \(report.tensors.count) tensors quantized "
                + "(\(formatBytes(report.bytesIn)) → \(formatBytes(report.bytesOut))), \(report.kept.count) kept; "
                + "\(formatBytes(onDiskBytes(report.output))) on disk in \(formatDecimal(report.seconds, places: 2)) s")
            if let plain = report.plainTotal {
                let reduction = plain.rmse > 0 ? 100 * (1 - report.total.rmse / plain.rmse) : 0
                print("optimized scales: RMSE \(formatValue(report.total.rmse)) vs \(formatValue(plain.rmse)) with absmax scales "
                    + "(\(formatDecimal(reduction, places: 1))% lower)")
            }
        }
    }

    func table(_ report: QuantizationReport) -> String {
        var table = TextTable(headers: ["tensor", "shape", "rmse", "max err", "snr dB", "bits/w", "bytes in", "bytes out", "ms"],
                              rightAligned: Set(2..<9))
        func row(_ name: String, _ shape: String, _ m: ErrorMetrics, bits: Double, bytesIn: Int, bytesOut: Int, seconds: Double) -> [String] {
            [name, shape, formatValue(m.rmse), formatValue(m.maxAbsError), formatDecibels(m.snrDB), formatDecimal(bits, places: 2),
             formatBytes(bytesIn), formatBytes(bytesOut), formatDecimal(seconds * 1000, places: 1)]
        }
        for t in report.tensors {
            table.add(row(t.name, t.shape.map(String.init).joined(separator: "×"), t.metrics, bits: t.bitsPerWeight, bytesIn: t.bytesIn,
                          bytesOut: t.bytesOut, seconds: t.seconds))
        }
        let count = report.total.count
        table.add(row("total", formatCount(count), report.total, bits: Double(report.bytesOut * 8) / Double(max(count, 1)),
                      bytesIn: report.bytesIn, bytesOut: report.bytesOut, seconds: report.tensors.reduce(0) { $0 + $1.seconds }))
        return table.render()
    }

    func json(_ report: QuantizationReport) -> JSONValue {
        var total = metricsJSON(report.total)
        if case .object(var members) = total {
            members += [("bytes_in", JSONValue(report.bytesIn)), ("bytes_out", JSONValue(report.bytesOut)),
                        ("bits_per_weight", .double(Double(report.bytesOut * 8) / Double(max(report.total.count, 1))))]
            if let plain = report.plainTotal { members.append(("absmax_scales", metricsJSON(plain))) }
            total = .object(members)
        }
        return [
            "input": .string(input), "output": .string(report.output), "output_bytes": JSONValue(onDiskBytes(report.output)),
            "bytes_in": JSONValue(report.bytesIn), "bytes_out": JSONValue(report.bytesOut),
            "scheme": .string(report.scheme.schemeName), "description": .string("\(report.scheme)"),
            "files": .array(report.files.map { .string($0) }), "kept": .array(report.kept.map { .string($0) }),
            "notes": .array(report.notes.map { .string($0) }), "seconds": .double(report.seconds), "total": total,
            "tensors": .array(report.tensors.map { t in
                var m = metricsJSON(t.metrics)
                if case .object(var members) = m {
                    members += [("name", .string(t.name)), ("shape", .array(t.shape.map { JSONValue($0) })),
                                ("bits_per_weight", .double(t.bitsPerWeight)), ("bytes_in", JSONValue(t.bytesIn)),
                                ("bytes_out", JSONValue(t.bytesOut)), ("seconds", .double(t.seconds))]
                    if let plain = t.plainMetrics { members.append(("absmax_scales", metricsJSON(plain))) }
                    m = .object(members)
                }
                return m
            }),
        ]
    }
}

/// `--first-token-weight`: a number of times, or `auto` for a weight per product measured from the loss's gradients.
struct FirstTokenWeightArgument: ExpressibleByArgument {
    /// The weight given, nil for `auto`.
    let fixed: Double?

    init?(argument: String) {
        if argument.lowercased() == "auto" {
            fixed = nil
        } else if let value = Double(argument) {
            fixed = value
        } else {
            return nil
        }
    }
}
