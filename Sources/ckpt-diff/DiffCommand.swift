import ArgumentParser
import CheckpointKit
import ToolSupport

@main
struct DiffCommand: ToolCommand {
    static let configuration = CommandConfiguration(
        commandName: "ckpt-diff",
        abstract: "Compare two checkpoints tensor by tensor: shapes, dtypes, max abs error, RMSE, cosine, SNR.",
        discussion: """
            Quantized tensors on either side are dequantized first. With --max-rmse, exits 3 when a \
            tensor's RMSE exceeds it or the tensor sets or shapes differ.
            """,
        version: ckptVersion)

    @Argument(help: "Checkpoint A (the reference).")
    var a: String

    @Argument(help: "Checkpoint B.")
    var b: String

    @Option(help: "Quality gate: the largest RMSE any tensor may have.")
    var maxRmse: Double?

    @OptionGroup var common: CommonOptions

    func run() throws {
        var gateFailed: [String] = []
        try runTool(common) {
            let rows = try CheckpointDiff.compare(try Checkpoint(path: a), try Checkpoint(path: b), threads: common.threadBudget)
            // Nothing compared proves nothing: a diff of two unrelated models is not a pass.
            if !rows.contains(where: { $0.metrics != nil }) {
                gateFailed.append("no tensor of \(a) has a comparable counterpart in \(b) (\(rows.count) unmatched)")
            }
            if let maxRmse {
                for row in rows {
                    if let m = row.metrics {
                        if m.rmse > maxRmse { gateFailed.append("\(row.name): RMSE \(formatValue(m.rmse)) > \(formatValue(maxRmse))") }
                    } else {
                        gateFailed.append("\(row.name): \(row.status.rawValue)")
                    }
                }
            }
            if common.json {
                printJSON([
                    "a": .string(a), "b": .string(b), "gates_failed": .array(gateFailed.map { .string($0) }),
                    "tensors": .array(rows.map { row in
                        var members: [(String, JSONValue)] = [("name", .string(row.name)), ("status", .string(row.status.rawValue))]
                        if let s = row.shapeA { members.append(("shape_a", .array(s.map { JSONValue($0) }))) }
                        if let s = row.shapeB { members.append(("shape_b", .array(s.map { JSONValue($0) }))) }
                        if let t = row.typeA { members.append(("type_a", .string(t))) }
                        if let t = row.typeB { members.append(("type_b", .string(t))) }
                        if let m = row.metrics { members.append(("metrics", metricsJSON(m))) }
                        return .object(members)
                    }),
                ])
            } else {
                var table = TextTable(headers: ["tensor", "shape", "A", "B", "max abs", "rmse", "cosine", "snr dB"], rightAligned: Set(4..<8))
                var total = ErrorMetrics()
                for row in rows {
                    let shape = (row.shapeA ?? row.shapeB ?? []).map(String.init).joined(separator: "×")
                    if let m = row.metrics {
                        total.merge(m)
                        table.add([row.name, shape, row.typeA ?? "", row.typeB ?? "", formatValue(m.maxAbsError), formatValue(m.rmse),
                                   formatDecimal(m.cosine, places: 6), formatDecibels(m.snrDB)])
                    } else {
                        table.add([row.name, shape, row.typeA ?? "-", row.typeB ?? "-", row.status.rawValue, "", "", ""])
                    }
                }
                print(table.render())
                let compared = rows.filter { $0.metrics != nil }.count
                print(compared == 0 ? "\nno tensors compared" : "\n\(compared) tensors compared: max abs \(formatValue(total.maxAbsError)), "
                    + "RMSE \(formatValue(total.rmse)), SNR \(formatDecibels(total.snrDB)) dB"
                    + (rows.contains { $0.metrics == nil } ? "; \(rows.filter { $0.metrics == nil }.count) not comparable" : ""))
            }
        }
        if !gateFailed.isEmpty {
            printError("gate failed: " + gateFailed.prefix(5).joined(separator: "; ") + (gateFailed.count > 5 ? "; …" : ""))
            throw ExitCode(ToolExit.qualityGateFailed)
        }
    }
}
