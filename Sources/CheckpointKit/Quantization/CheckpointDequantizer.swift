/// Failures of `CheckpointDequantizer`: a checkpoint with nothing to dequantize.
public enum DequantizationError: Error, Equatable, Sendable, CustomStringConvertible {
    case notQuantized(path: String)

    /// The one-line message: the path and the quantized layouts that were expected.
    public var description: String {
        switch self {
        case let .notQuantized(path):
            return "\(path): no quantized tensors found (expected the bitsandbytes NF4/FP4 or compressed-tensors int8 layout)"
        }
    }
}

/// What a dequantization did.
public struct DequantizationReport: Sendable {
    /// The output path as given.
    public var output: String
    /// Weight files written: shard names plus the index when there are several, or the output path for a lone file.
    public var files: [String]
    /// (name, scheme, output dtype) of each dequantized weight.
    public var tensors: [(name: String, scheme: any QuantizationScheme, dtype: DType)]
    /// Names of the tensors that were not quantized, copied or converted to the requested dtype.
    public var kept: [String]
    /// Wall-clock duration, in seconds.
    public var seconds: Double
}

/// Any quantized layout the suite reads back to floats: quantized weights become float tensors
/// again (their original dtype unless `dtype` says otherwise), other tensors are kept (or
/// converted to `dtype` when given), `quantization_config` leaves config.json. Each shard's
/// header is planned from the shapes, and each tensor is written by the stream writer while the
/// next one is decoded.
public enum CheckpointDequantizer {
    /// Writes `checkpoint` atomically with quantized weights decoded to their original dtype (or `dtype`); throws `notQuantized` when nothing is quantized.
    public static func dequantize(_ checkpoint: Checkpoint, to output: String, dtype: DType?, threads: ThreadBudget = .allCores,
                                  overwrite: Bool = false) throws -> DequantizationReport {
        try dequantize(checkpoint, to: output, dtype: dtype, threads: threads, overwrite: overwrite, writing: .streamed)
    }

    /// `dequantize`, writing through `writing`: `.sequential` is the plain twin the tests hold the streamed path to.
    static func dequantize(_ checkpoint: Checkpoint, to output: String, dtype: DType?, threads: ThreadBudget, overwrite: Bool,
                           writing: TensorWriting) throws -> DequantizationReport {
        try FileSystem.refuseOverlap(output: output, inputs: [checkpoint.path])
        let clock = Stopwatch()
        let logical = try LogicalCheckpoint(checkpoint)
        guard logical.scheme != nil || checkpoint.entries.contains(where: { $0.storedType != nil }) else {
            throw DequantizationError.notQuantized(path: checkpoint.path)
        }
        var report = DequantizationReport(output: output, files: [], tensors: [], kept: [], seconds: 0)
        var byName: [String: LogicalTensor] = [:]
        var shards = checkpoint.mirroredShards
        for tensor in logical.tensors {
            let outputType: DType
            if let scheme = tensor.scheme {
                outputType = dtype ?? tensor.dtype
                report.tensors.append((tensor.name, scheme, outputType))
            } else {
                outputType = dtype.flatMap { FloatConversion.canConvert(from: tensor.dtype, to: $0) ? $0 : nil } ?? tensor.dtype
                report.kept.append(tensor.name)
            }
            byName[tensor.name] = tensor
            shards[tensor.fileIndex].tensors.append(TensorSpec(name: tensor.name, dtype: outputType, shape: tensor.shape))
        }
        var config = checkpoint.config
        if case .object(var members)? = config {
            members.removeAll { $0.0 == "quantization_config" }
            config = .object(members)
            if let dtype { config = CheckpointConverter.updatingDType(config!, to: dtype) }
        }
        let written = try CheckpointWriter.write(from: checkpoint, to: output, shards: shards.filter { !$0.tensors.isEmpty }, config: config,
                                                 overwrite: overwrite, writing: writing) { info, out in
            let tensor = byName[info.name]!
            if case .plain(let entry) = tensor.storage {
                try out.convert(checkpoint.view(entry), threads: threads)
                checkpoint.releasePages(entry)
                return
            }
            // Decoded whole (a layout's blocks and scales span the tensor), its parts' pages let go,
            // then written in pieces while the next tensor is decoded.
            let values = logical.float32(tensor, threads: threads)
            logical.releasePages(tensor)
            try values.withUnsafeBufferPointer { try out.convert($0, threads: threads) }
        }
        report.files = written.files
        report.seconds = clock.seconds
        return report
    }
}
