import ArgumentParser
import CheckpointKit
import ToolSupport

@main
struct InspectCommand: ToolCommand {
    static let configuration = CommandConfiguration(
        commandName: "ckpt-inspect",
        abstract: "Show the tensors, dtypes, shapes and totals of a safetensors file, shard set or model folder.",
        discussion: "Reads headers only unless --stats or --verify asks for the weights.",
        version: ckptVersion)

    @Argument(help: "A .safetensors file, a *.safetensors.index.json, or a model folder.")
    var path: String

    @Flag(help: "Per-tensor min/max/mean/std and NaN/Inf counts (reads every weight).")
    var stats = false

    @Flag(help: "Read every byte and check structure and finiteness; exit 1 on the first fault.")
    var verify = false

    @Flag(help: "List the stored tensors (a quantized weight's packed codes, scales… each on its own) instead of the model's logical ones.")
    var storage = false

    @OptionGroup var common: CommonOptions

    func run() throws {
        try runTool(common) {
            let checkpoint = try Checkpoint(path: path)
            let inspection = try CheckpointInspection(checkpoint, storage: storage, statistics: stats, threads: common.threadBudget)
            var verified: CheckpointVerifier.Report?
            if verify { verified = try CheckpointVerifier.verify(checkpoint, threads: common.threadBudget) }
            if common.json {
                var document = inspection.json
                if let verified, case .object(var members) = document {
                    members.append(("verified", ["files": JSONValue(verified.files), "bytes_read": JSONValue(verified.bytesRead),
                                                 "float_tensors_checked": JSONValue(verified.tensorsChecked)]))
                    document = .object(members)
                }
                printJSON(document)
                return
            }
            print(summary(inspection))
            print()
            print(table(inspection))
            if let verified {
                print("\nverified: \(verified.files) file(s), \(formatBytes(verified.bytesRead)) read, "
                    + "\(verified.tensorsChecked) float tensors finite, no faults")
            }
        }
    }

    func summary(_ inspection: CheckpointInspection) -> String {
        var lines: [String] = []
        let fileWord = inspection.files.count == 1 ? "file" : "files"
        let format = inspection.format == "safetensors" ? "" : inspection.format + " "
        let fileBytes = inspection.files.reduce(0) { $0 + $1.bytes }
        let view = inspection.storageView ? "stored tensors" : "tensors"
        lines.append("\(inspection.path): \(format)\(inspection.layout), \(formatCount(inspection.tensors.count)) \(view), "
            + "\(formatCount(inspection.parameterCount)) \(inspection.storageView ? "stored elements" : "parameters")")
        lines.append("size: \(formatCount(fileBytes)) bytes in \(inspection.files.count) \(fileWord) (\(formatBytes(fileBytes)), "
            + "\(formatBytes(inspection.tensorBytes)) of tensor data; 1 KB = 1000 bytes)")
        lines.append("dtypes: " + inspection.parametersByType.map { "\($0.0) \(formatCount($0.1))" }.joined(separator: ", "))
        if let config = inspection.config {
            let architecture = config["architectures"]?.arrayValue?.first?.stringValue ?? config["model_type"]?.stringValue ?? "?"
            var parts = [architecture]
            for key in ["hidden_size", "n_embd", "num_hidden_layers", "n_layer", "vocab_size", "torch_dtype", "dtype"] {
                if let v = config[key] { parts.append("\(key) \(v.stringValue ?? v.serialized())") }
            }
            lines.append("config: " + parts.joined(separator: ", "))
        }
        if !inspection.metadata.isEmpty {
            lines.append("metadata: " + inspection.metadata.map { "\($0.0)=\($0.1)" }.joined(separator: ", "))
        }
        lines.append("quantization: \(inspection.quantization ?? "none")")
        return lines.joined(separator: "\n")
    }

    func table(_ inspection: CheckpointInspection) -> String {
        let showFile = inspection.files.count > 1
        var headers = ["tensor", "dtype", "shape", "bytes"]
        if showFile { headers.append("file") }
        if stats { headers += ["min", "max", "mean", "std", "nan", "inf"] }
        var rightAligned: Set<Int> = [3]
        if stats { rightAligned.formUnion((headers.count - 6)..<headers.count) }
        var table = TextTable(headers: headers, rightAligned: rightAligned)
        for t in inspection.tensors {
            var row = [t.name, t.storedType ?? t.dtype.rawValue, t.shape.isEmpty ? "[]" : t.shape.map(String.init).joined(separator: "×"),
                       formatCount(t.bytes)]
            if showFile { row.append(t.file) }
            if let s = t.statistics {
                row += [formatValue(s.min), formatValue(s.max), formatValue(s.mean), formatValue(s.std),
                        String(s.nanCount), String(s.infCount)]
            }
            table.add(row)
        }
        return table.render()
    }
}
