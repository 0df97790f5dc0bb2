import ArgumentParser
import CheckpointKit
import ToolSupport

@main
struct ConvertCommand: ToolCommand {
    static let configuration = CommandConfiguration(
        commandName: "ckpt-convert",
        abstract: "Convert checkpoints between safetensors, GGUF and PyTorch: float dtype, shard size, GGUF output and types.",
        discussion: """
            Floating-point tensors take --type; integer and bool tensors keep theirs. Without \
            --shard-size the input's shard layout and file names are kept. config.json's dtype \
            field is updated and the folder's other files (tokenizer…) are copied. A PEFT LoRA \
            adapter folder with --base BASE becomes the LoRA GGUF llama.cpp applies with --lora \
            (convert_lora_to_gguf.py's layout; --type f32, f16, bf16 or q8_0, default f32).
            """,
        version: ckptVersion)

    @Argument(help: "Input: a .safetensors file, an index, a model folder (safetensors or pytorch_model.bin), a .bin, or a .gguf file.")
    var input: String

    @Argument(help: "Output folder, a .safetensors file (when the input is a single file), or a .gguf file (GGUF output).")
    var output: String

    @Option(name: .customLong("to"), help: "Output format: safetensors or gguf (default: gguf when the output name ends in .gguf, else safetensors).")
    var format: String?

    @Option(help: "Output type: f32, f16 or bf16 (safetensors; default: keep); for GGUF also llama-quantize's presets q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k_s, q3_k_m, q3_k_l, q4_k_s, q4_k_m, q5_k_s, q5_k_m, q6_k, iq4_nl, iq4_xs (default f16), each tensor typed as llama-quantize types it.")
    var type: String?

    @Option(name: .customLong("tensor-type"), help: "GGUF: REGEX=TYPE, tensors whose GGUF name matches take TYPE (a GGML type: q4_k, q6_k, q8_0, f16, …); repeatable, the first match wins, as llama-quantize.")
    var tensorTypes: [String] = []

    @Flag(help: "GGUF: keep output.weight unquantized (as llama-quantize --leave-output-tensor).")
    var leaveOutputTensor = false

    @Option(help: "GGUF: the type of output.weight (as llama-quantize --output-tensor-type).")
    var outputTensorType: String?

    @Option(help: "GGUF: the type of token_embd.weight (as llama-quantize --token-embedding-type).")
    var tokenEmbeddingType: String?

    @Flag(help: "GGUF: the preset's type for every tensor, without llama-quantize's per-tensor rules (row fallbacks aside).")
    var pure = false

    @Option(help: "GGUF: an importance matrix (llama-imatrix or ckpt-imatrix GGUF, or legacy .dat) weighting the quantization.")
    var imatrix: String?

    @Option(help: "LoRA adapter input: the base model it was trained on (a folder or file ckpt reads; its config names the architecture).")
    var base: String?

    @Option(help: "Reshard to files of at most this size, e.g. 500MB or 5GB (safetensors only; default: keep the input's shards).")
    var shardSize: String?

    @Flag(help: "Replace an existing output.")
    var force = false

    @OptionGroup var common: CommonOptions

    /// The GGML type a name means (Q4_K, q6_k, F16, …), among the types ckpt writes.
    static func ggmlType(_ name: String) -> GGMLType? {
        GGMLType.all.first { $0.name.lowercased() == name.lowercased() && ($0.isEncodable || [.f32, .f16, .bf16].contains($0)) }
    }

    /// One `--tensor-type REGEX=TYPE`.
    static func tensorTypeOverride(_ entry: String) throws -> (pattern: String, type: GGMLType) {
        guard let equals = entry.lastIndex(of: "="), equals != entry.startIndex else {
            throw ValidationError("--tensor-type \(entry): expected REGEX=TYPE, e.g. attn_v=q6_k")
        }
        let pattern = String(entry[..<equals]), name = String(entry[entry.index(after: equals)...])
        guard let type = ggmlType(name) else { throw ValidationError("--tensor-type \(entry): \(name) is not a GGML type ckpt writes") }
        guard (try? Regex(pattern.lowercased())) != nil else { throw ValidationError("--tensor-type \(entry): \(pattern) is not a valid regular expression") }
        return (pattern, type)
    }

    /// The format written: `--to`, else the output's name (`.gguf` → GGUF).
    var outputFormat: String { format?.lowercased() ?? (output.lowercased().hasSuffix(".gguf") ? "gguf" : "safetensors") }

    /// Whether the input is a PEFT adapter folder (written as a LoRA GGUF).
    var inputIsAdapter: Bool { FileSystem.isRegularFile(FileSystem.join(input, "adapter_config.json")) }

    func validate() throws {
        if inputIsAdapter {
            guard base != nil else { throw ValidationError("\(input) is a LoRA adapter: give --base BASE, the model it was trained on") }
            guard outputFormat == "gguf" else { throw ValidationError("a LoRA adapter is written as a llama.cpp LoRA GGUF: name the output .gguf") }
            if let type, AdapterGGUFWriter.outputType(type) == nil { throw ValidationError("--type \(type): expected f32, f16, bf16 or q8_0 for a LoRA GGUF") }
            if !tensorTypes.isEmpty || leaveOutputTensor || outputTensorType != nil || tokenEmbeddingType != nil || pure || imatrix != nil || shardSize != nil {
                throw ValidationError("--tensor-type, --leave-output-tensor, --output-tensor-type, --token-embedding-type, --pure, --imatrix and --shard-size apply to models, not adapters")
            }
            return
        }
        if base != nil { throw ValidationError("--base applies to a LoRA adapter input (a folder with adapter_config.json)") }
        if let format, !["safetensors", "gguf"].contains(format.lowercased()) {
            throw ValidationError("--to \(format): unknown output format (expected safetensors or gguf)")
        }
        if outputFormat == "safetensors" && output.lowercased().hasSuffix(".gguf") {
            throw ValidationError("--to safetensors contradicts the output name \(output) (drop --to, or name the output without .gguf)")
        }
        if outputFormat == "gguf" {
            if let type, GGUFExport.outputType(type) == nil {
                throw ValidationError("--type \(type): unsupported for GGUF (expected one of \(GGUFPreset.names))")
            }
            for entry in tensorTypes { _ = try Self.tensorTypeOverride(entry) }
            for (flag, name) in [("--output-tensor-type", outputTensorType), ("--token-embedding-type", tokenEmbeddingType)] {
                if let name, Self.ggmlType(name) == nil { throw ValidationError("\(flag) \(name): not a GGML type ckpt writes") }
            }
            if shardSize != nil {
                throw ValidationError("--shard-size applies to safetensors output; a GGUF is written as one file")
            }
        } else if !tensorTypes.isEmpty || leaveOutputTensor || outputTensorType != nil || tokenEmbeddingType != nil || pure || imatrix != nil {
            throw ValidationError("--tensor-type, --leave-output-tensor, --output-tensor-type, --token-embedding-type, --pure and --imatrix apply to GGUF output")
        } else if let type, parseFloatType(type) == nil {
            if GGUFExport.outputType(type) != nil {
                throw ValidationError("--type \(type) is a GGUF type, but \(output) is written as safetensors (name it .gguf or add --to gguf)")
            }
            throw ValidationError("--type \(type): unsupported (expected f32, f16 or bf16)")
        }
        if let shardSize, parseByteSize(shardSize) == nil {
            throw ValidationError("--shard-size \(shardSize): invalid size (expected e.g. 500MB or 5GB)")
        }
    }

    func run() throws {
        try runTool(common) {
            if inputIsAdapter {
                try convertAdapter()
                return
            }
            let report: ConversionReport
            if outputFormat == "gguf" {
                var options = GGUFExport.Options()
                options.threads = common.threadBudget
                options.overwrite = force
                options.plan.overrides = try tensorTypes.map(Self.tensorTypeOverride)
                options.plan.leaveOutputTensor = leaveOutputTensor
                options.plan.outputType = outputTensorType.flatMap(Self.ggmlType)
                options.plan.tokenEmbeddingType = tokenEmbeddingType.flatMap(Self.ggmlType)
                options.plan.pure = pure
                if let imatrix { options.importance = try ImportanceMatrix(reading: imatrix) }
                let preset = type.flatMap(GGUFExport.outputType) ?? .f16
                if input.hasSuffix(".gguf") && FileSystem.isRegularFile(input) {
                    // GGUF in, GGUF out: llama-quantize --allow-requantize, for every architecture, metadata kept.
                    report = try GGUFExport.requantize(try GGUFFile(path: input), to: output, preset: preset, options: options)
                } else {
                    report = try GGUFExport.convert(try Checkpoint(path: input), to: output, preset: preset, options: options)
                }
                for note in report.notes { warn(note, options: common) }
            } else {
                let checkpoint = try Checkpoint(path: input)
                // A GGUF's tensors decode to f32 unless --type says otherwise, as transformers loads them.
                let target = type.flatMap(parseFloatType) ?? (checkpoint.format == .gguf ? .f32 : nil)
                let options = ConversionOptions(targetType: target, shardSize: shardSize.flatMap(parseByteSize),
                                                threads: common.threadBudget, overwrite: force)
                report = try CheckpointConverter.convert(checkpoint, to: output, options: options)
            }
            if common.json {
                printJSON([
                    "input": .string(input), "output": .string(report.output), "output_bytes": JSONValue(onDiskBytes(report.output)),
                    "files": .array(report.files.map { .string($0) }),
                    "copied_files": .array(report.copiedFiles.map { .string($0) }),
                    "tensors": .array(report.tensors.map {
                        ["name": .string($0.name), "shape": .array($0.shape.map { JSONValue($0) }),
                         "from": .string($0.fromType.rawValue), "to": .string($0.storedType ?? $0.toType.rawValue),
                         "bytes_in": JSONValue($0.bytesIn), "bytes_out": JSONValue($0.bytesOut)]
                    }),
                    "bytes_in": JSONValue(report.bytesIn),
                    "bytes_out": JSONValue(report.bytesOut),
                    "seconds": JSONValue(report.seconds),
                ])
                return
            }
            let changed = report.tensors.filter { $0.fromType != $0.toType || $0.storedType != nil }
            var byPair: [String: (count: Int, bytesIn: Int, bytesOut: Int)] = [:]
            for t in changed {
                let key = "\(t.fromType.rawValue) → \(t.storedType ?? t.toType.rawValue)"
                let old = byPair[key] ?? (0, 0, 0)
                byPair[key] = (old.count + 1, old.bytesIn + t.bytesIn, old.bytesOut + t.bytesOut)
            }
            var table = TextTable(headers: ["conversion", "tensors", "bytes in", "bytes out"], rightAligned: [1, 2, 3])
            for (key, v) in byPair.sorted(by: { $0.key < $1.key }) {
                table.add([key, String(v.count), formatBytes(v.bytesIn), formatBytes(v.bytesOut)])
            }
            let kept = report.tensors.count - changed.count
            if kept > 0 {
                let bytes = report.tensors.filter { $0.fromType == $0.toType && $0.storedType == nil }.reduce(0) { $0 + $1.bytesIn }
                table.add(["kept as is", String(kept), formatBytes(bytes), formatBytes(bytes)])
            }
            print(table.render())
            print("\nwrote \(report.output): \(report.files.joined(separator: ", "))"
                + (report.copiedFiles.isEmpty ? "" : " (+ \(report.copiedFiles.joined(separator: ", ")))")
                + ", \(formatBytes(onDiskBytes(report.output))) on disk in \(formatDecimal(report.seconds, places: 2)) s")
        }
    }

    /// A PEFT adapter to a llama.cpp LoRA GGUF.
    func convertAdapter() throws {
        let adapter = try LoRAAdapter(folder: input)
        let report = try AdapterGGUFWriter.write(adapter, base: try Checkpoint(path: base!), to: output,
                                                 type: type.flatMap(AdapterGGUFWriter.outputType) ?? .f32, overwrite: force,
                                                 threads: common.threadBudget)
        let folded = report.pairs.filter { $0.foldedIntoB != 1 }
        if !folded.isEmpty {
            log("note: \(folded.count) pair(s) scale other than alpha/r (rsLoRA or patterns): the difference is folded into lora_b", options: common)
        }
        if common.json {
            printJSON([
                "input": .string(input), "base": .string(base!), "output": .string(report.output), "architecture": .string(report.architecture),
                "output_bytes": JSONValue(onDiskBytes(report.output)), "alpha": .double(report.alpha), "seconds": .double(report.seconds),
                "pairs": .array(report.pairs.map {
                    ["tensor": .string($0.tensor), "rank": JSONValue($0.rank), "scaling": .double($0.scaling),
                     "folded_into_b": .double($0.foldedIntoB), "type_a": .string($0.types.a), "type_b": .string($0.types.b)]
                }),
            ])
            return
        }
        var table = TextTable(headers: ["GGUF tensor", "rank", "scaling", "folded into B", "types"], rightAligned: [1, 2, 3])
        for pair in report.pairs {
            table.add([pair.tensor, String(pair.rank), formatValue(pair.scaling), formatValue(pair.foldedIntoB), "\(pair.types.a)/\(pair.types.b)"])
        }
        print(table.render())
        print("\nwrote \(report.output): LoRA GGUF for \(report.architecture), \(report.pairs.count) pairs, alpha \(formatValue(report.alpha)), "
            + "\(formatBytes(onDiskBytes(report.output))) on disk in \(formatDecimal(report.seconds, places: 2)) s")
    }
}
