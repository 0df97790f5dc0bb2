#if canImport(Glibc)
import Glibc
#endif

/// Why a merge cannot be re-quantized with calibration.
public enum CalibratedRequantizationError: Error, Equatable, Sendable, CustomStringConvertible {
    case notIntegerBase(file: String, scheme: String)

    /// The one-line message.
    public var description: String {
        switch self {
        case let .notIntegerBase(file, scheme):
            return "\(file): --calibration-text re-runs GPTQ or AWQ, but the base is \(scheme) (expected a GPTQ, AWQ or pack-quantized base)"
        }
    }
}

/// A merge into a GPTQ, AWQ or pack-quantized base, quantized again the way such a base is made:
/// the adapters are merged into floats (in a temporary folder beside the output), then GPTQ (AWQ
/// for an AWQ base) runs layer by layer on the calibration text, in the base's scheme (bits,
/// group size, symmetry, act order, format); weights the base kept unquantized stay so.
/// Round-to-nearest re-encoding of a calibrated base undoes what its calibration bought.
public enum CalibratedRequantization {
    /// What to calibrate on.
    public struct Calibration: Sendable {
        /// The calibration text (read as bytes).
        public var text: String
        /// Tokens of it to use, in whole chunks of `context`.
        public var tokens: Int
        /// Tokens per calibration chunk.
        public var context: Int
        /// Which of the text's tokens are used.
        public var sampling: CalibrationSampling

        /// A calibration on `text`.
        public init(text: String, tokens: Int = 16384, context: Int = 512, sampling: CalibrationSampling = .spread) {
            self.text = text
            self.tokens = tokens
            self.context = context
            self.sampling = sampling
        }
    }

    /// The base's integer scheme with the calibrated method its format implies.
    public static func scheme(of logical: LogicalCheckpoint) throws -> IntegerScheme {
        guard var scheme = logical.scheme as? IntegerScheme else {
            throw CalibratedRequantizationError.notIntegerBase(file: logical.checkpoint.path, scheme: logical.scheme?.schemeName ?? "not quantized")
        }
        scheme.method = scheme.format == .awq ? "awq" : "gptq"
        return scheme
    }

    /// Runs `merge` into a temporary float folder, then quantizes that folder to `output` with
    /// calibration; the temporary is removed whatever happens. The merge's report comes back with
    /// the output's files and, per row, the calibrated quantization's error.
    public static func run(base: Checkpoint, to output: String, calibration: Calibration, threads: ThreadBudget, overwrite: Bool,
                           merge: (_ floats: String) throws -> MergeReport) throws -> MergeReport {
        let clock = Stopwatch()
        let baseLogical = try LogicalCheckpoint(base)
        let scheme = try scheme(of: baseLogical)
        try FileSystem.refuseOverlap(output: output, inputs: [base.path])
        let (directory, name) = FileSystem.split(output)
        let floats = FileSystem.join(directory.isEmpty ? "." : directory, ".\(AtomicOutput.temporaryStem(name))-merged.tmp-ckpt-\(getpid())")
        FileSystem.removeTree(floats)
        defer { FileSystem.removeTree(floats) }
        let merged = try merge(floats)
        let checkpoint = try Checkpoint(path: floats)
        // What the base kept as floats (lm_head, embeddings, its ignore list) stays unquantized.
        let kept = baseLogical.tensors.filter { $0.scheme == nil && $0.shape.count == 2 && $0.name.hasSuffix(".weight") }.map(\.name)
        let exclude = kept.isEmpty ? nil : "^(?:" + kept.map(escapedForRegex).joined(separator: "|") + ")$"
        let options = QuantizationOptions(scheme: scheme, exclude: exclude, threads: threads, overwrite: overwrite)
        let text = try TextTokens(reading: calibration.text, checkpoint: checkpoint)
        var settings = CalibrationOptions(text: text, budget: calibration.tokens, context: calibration.context, sampling: calibration.sampling)
        settings.method = scheme.method == "awq" ? CalibrationOptions.Method.awq : .gptq
        settings.actOrder = scheme.actOrder
        let quantized = try CalibratedQuantizer.quantize(checkpoint, to: output, options: options, calibration: settings)
        var report = merged
        report.output = output
        report.files = quantized.files
        report.seconds = clock.seconds
        let errors = Dictionary(quantized.tensors.map { ($0.name, $0.metrics) }, uniquingKeysWith: { a, _ in a })
        for i in report.rows.indices {
            report.rows[i].requantization = errors[report.rows[i].tensor]
            report.rows[i].baseQuantizationRMSE = errors[report.rows[i].tensor]?.rmse
        }
        report.notes.removeAll { $0.contains("change by less than the base's quantization error") }
        report.notes += CheckpointMerger.lostUpdateNotes(report.rows)
        report.notes.append("re-quantized by \(scheme.method.uppercased()) (\(scheme.description)) calibrated on \(calibration.text)")
        return report
    }

    /// `name` with the regular-expression metacharacters escaped.
    static func escapedForRegex(_ name: String) -> String {
        var out = ""
        for c in name {
            if "\\.^$|?*+()[]{}".contains(c) { out.append("\\") }
            out.append(c)
        }
        return out
    }
}
