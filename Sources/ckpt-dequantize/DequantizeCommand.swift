import ArgumentParser
import CheckpointKit
import ToolSupport

@main
struct DequantizeCommand: ToolCommand {
    static let configuration = CommandConfiguration(
        commandName: "ckpt-dequantize",
        abstract: "Turn a quantized checkpoint (bitsandbytes NF4/FP4, compressed-tensors int8) back into floats.",
        discussion: "Quantized weights take their original dtype unless --dtype says otherwise; quantization_config is removed.",
        version: ckptVersion)

    @Argument(help: "Input: a quantized .safetensors file, index or model folder.")
    var input: String

    @Argument(help: "Output folder (or a .safetensors file when the input is a single file).")
    var output: String

    @Option(help: "f32, f16 or bf16 for every float tensor (default: each weight's original dtype).")
    var dtype: String?

    @Flag(help: "Replace an existing output.")
    var force = false

    @OptionGroup var common: CommonOptions

    func validate() throws {
        if let dtype, parseFloatType(dtype) == nil { throw ValidationError("--dtype \(dtype): expected f32, f16 or bf16") }
    }

    func run() throws {
        try runTool(common) {
            let checkpoint = try Checkpoint(path: input)
            let report = try CheckpointDequantizer.dequantize(checkpoint, to: output, dtype: dtype.flatMap(parseFloatType),
                                                              threads: common.threadBudget, overwrite: force)
            if common.json {
                printJSON([
                    "input": .string(input), "output": .string(report.output), "files": .array(report.files.map { .string($0) }),
                    "output_bytes": JSONValue(onDiskBytes(report.output)),
                    "kept": .array(report.kept.map { .string($0) }), "seconds": .double(report.seconds),
                    "tensors": .array(report.tensors.map {
                        ["name": .string($0.name), "scheme": .string("\($0.scheme)"), "dtype": .string($0.dtype.rawValue)]
                    }),
                ])
                return
            }
            var counts: [String: Int] = [:]
            for t in report.tensors { counts["\(t.scheme) → \(t.dtype.rawValue)", default: 0] += 1 }
            var table = TextTable(headers: ["dequantized", "tensors"], rightAligned: [1])
            for (key, n) in counts.sorted(by: { $0.key < $1.key }) { table.add([key, String(n)]) }
            table.add(["kept", String(report.kept.count)])
            print(table.render())
            print("\nwrote \(report.output): \(report.files.joined(separator: ", ")), \(formatBytes(onDiskBytes(report.output))) on disk "
                + "in \(formatDecimal(report.seconds, places: 2)) s")
        }
    }
}
