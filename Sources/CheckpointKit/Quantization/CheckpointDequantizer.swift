public enum DequantizationError: Error, Equatable, Sendable, CustomStringConvertible {
    case notQuantized(path: String)

    public var description: String {
        switch self {
        case let .notQuantized(path):
            return "\(path): no quantized tensors found (expected the bitsandbytes NF4/FP4 or compressed-tensors int8 layout)"
        }
    }
}

/// What a dequantization did.
public struct DequantizationReport: Sendable {
    public var output: String
    public var files: [String]
    /// (name, scheme, output dtype) of each dequantized weight.
    public var tensors: [(name: String, scheme: any QuantizationScheme, dtype: DType)]
    public var keptCount: Int
    public var seconds: Double
}

/// Any quantized layout the suite reads back to floats: quantized weights become float tensors
/// again (their original dtype unless `dtype` says otherwise), other tensors are kept (or
/// converted to `dtype` when given), `quantization_config` leaves config.json.
public enum CheckpointDequantizer {
    public static func dequantize(_ checkpoint: Checkpoint, to output: String, dtype: DType?, threads: ThreadBudget = .allCores,
                                  overwrite: Bool = false) throws -> DequantizationReport {
        let clock = Stopwatch()
        let logical = try LogicalCheckpoint(checkpoint)
        guard logical.scheme != nil || checkpoint.entries.contains(where: { $0.storedType != nil }) else {
            throw DequantizationError.notQuantized(path: checkpoint.path)
        }
        var report = DequantizationReport(output: output, files: [], tensors: [], keptCount: 0, seconds: 0)
        var byName: [String: LogicalTensor] = [:]
        var shards = checkpoint.mirroredShards
        for tensor in logical.tensors {
            let outputType: DType
            if let scheme = tensor.scheme {
                outputType = dtype ?? tensor.dtype
                report.tensors.append((tensor.name, scheme, outputType))
            } else {
                outputType = dtype.flatMap { FloatConversion.canConvert(from: tensor.dtype, to: $0) ? $0 : nil } ?? tensor.dtype
                report.keptCount += 1
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
                                                 overwrite: overwrite) { info, out in
            let tensor = byName[info.name]!
            if case .plain(let entry) = tensor.storage {
                try CheckpointConverter.streamConverted(checkpoint.view(entry), to: info.dtype, into: out, threads: threads)
                checkpoint.releasePages(entry)
                return
            }
            let values = logical.float32(tensor, threads: threads)
            try out.write(count: info.byteCount) { destination in
                values.withUnsafeBytes { FloatConversion.convert($0, from: .f32, to: info.dtype, into: destination, threads: threads) }
            }
        }
        report.files = written.files
        report.seconds = clock.seconds
        return report
    }
}

/// One row of `ckpt-diff`: a tensor present in A, B or both.
public struct TensorDifference: Sendable {
    public enum Status: String, Sendable {
        case compared, onlyInA = "only in A", onlyInB = "only in B", shapeMismatch = "shape mismatch"
    }

    public var name: String
    public var status: Status
    public var shapeA: [Int]?
    public var shapeB: [Int]?
    /// "BF16", or "nf4 (blocks of 64)" for a quantized tensor.
    public var typeA: String?
    public var typeB: String?
    public var metrics: ErrorMetrics?
}

/// Per-tensor comparison of two checkpoints, dequantizing whichever side is quantized.
public enum CheckpointDiff {
    public static func compare(_ a: Checkpoint, _ b: Checkpoint, threads: ThreadBudget = .allCores) throws -> [TensorDifference] {
        let left = try LogicalCheckpoint(a), right = try LogicalCheckpoint(b)
        let rightByName = Dictionary(right.tensors.map { ($0.name, $0) }, uniquingKeysWith: { x, _ in x })
        let leftNames = Set(left.tensors.map(\.name))
        func describe(_ t: LogicalTensor) -> String {
            if let scheme = t.scheme { return "\(scheme)" }
            if case .plain(let entry) = t.storage, let stored = entry.storedType { return stored }
            return t.dtype.rawValue
        }
        var rows: [TensorDifference] = []
        for t in left.tensors {
            guard let u = rightByName[t.name] else {
                rows.append(TensorDifference(name: t.name, status: .onlyInA, shapeA: t.shape, typeA: describe(t)))
                continue
            }
            guard t.shape == u.shape else {
                rows.append(TensorDifference(name: t.name, status: .shapeMismatch, shapeA: t.shape, shapeB: u.shape, typeA: describe(t),
                                             typeB: describe(u)))
                continue
            }
            let x = left.float32(t, threads: threads), y = right.float32(u, threads: threads)
            let metrics = x.withUnsafeBufferPointer { xs in y.withUnsafeBufferPointer { ErrorMetrics.compare(reference: xs, candidate: $0, threads: threads) } }
            rows.append(TensorDifference(name: t.name, status: .compared, shapeA: t.shape, shapeB: u.shape, typeA: describe(t), typeB: describe(u),
                                         metrics: metrics))
        }
        for u in right.tensors where !leftNames.contains(u.name) {
            rows.append(TensorDifference(name: u.name, status: .onlyInB, shapeB: u.shape, typeB: describe(u)))
        }
        return rows
    }
}
