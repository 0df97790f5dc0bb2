/// One row of `ckpt-diff`: a tensor present in A, B or both.
public struct TensorDifference: Sendable {
    /// Whether the tensor was compared, found on one side only, or found with different shapes.
    public enum Status: String, Sendable {
        case compared, onlyInA = "only in A", onlyInB = "only in B", shapeMismatch = "shape mismatch"
    }

    /// The logical tensor's name (a quantized weight's `P.weight`).
    public var name: String
    /// What was done with the tensor; `metrics` is set only when `.compared`.
    public var status: Status
    /// Logical shape in A; nil when only in B.
    public var shapeA: [Int]?
    /// Logical shape in B; nil when only in A.
    public var shapeB: [Int]?
    /// "BF16", or "nf4 (blocks of 64)" for a quantized tensor.
    public var typeA: String?
    /// B's dtype or scheme, described as `typeA` is.
    public var typeB: String?
    /// B's error against A as the reference, both decoded to float32; nil unless compared.
    public var metrics: ErrorMetrics?
}

/// Per-tensor comparison of two checkpoints, dequantizing whichever side is quantized.
public enum CheckpointDiff {
    /// One row per logical tensor, A's in order then those only in B; quantized tensors are decoded to float32 first.
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
