/// A 2-D weight kept as its checkpoint stores it (bf16, f16, GGML blocks, NF4, int8, …), whose
/// rows widen to f32 on demand: the forward pass widens a tile of rows just before each product,
/// so a model never holds a whole f32 copy of its weights.
public struct StoredRows: Sendable {
    /// Rows of the matrix (its first dimension).
    public let rows: Int
    /// Elements per row (the product of the other dimensions).
    public let columns: Int
    /// Bytes of weight data this matrix keeps reachable (mapped or owned).
    public let storedBytes: Int
    private let widenRange: @Sendable (_ first: Int, _ count: Int, _ out: UnsafeMutablePointer<Float>) -> Void

    /// A matrix whose rows `first ..< first + count` `widen` writes as f32.
    public init(rows: Int, columns: Int, storedBytes: Int,
                widen: @escaping @Sendable (_ first: Int, _ count: Int, _ out: UnsafeMutablePointer<Float>) -> Void) {
        self.rows = rows
        self.columns = columns
        self.storedBytes = storedBytes
        self.widenRange = widen
    }

    /// Writes rows `range` as f32 into `out` (range.count × columns values).
    @inline(__always)
    public func widen(_ range: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        precondition(range.lowerBound >= 0 && range.upperBound <= rows, "rows within the matrix")
        if !range.isEmpty { widenRange(range.lowerBound, range.count, out) }
    }

    /// Rows `range` of this matrix as a matrix of their own (a fused projection's part).
    public func slice(_ range: Range<Int>) -> StoredRows {
        precondition(range.lowerBound >= 0 && range.upperBound <= rows, "a slice within the matrix")
        let parent = self
        return StoredRows(rows: range.count, columns: columns, storedBytes: storedBytes * range.count / max(rows, 1)) { first, count, out in
            parent.widenRange(range.lowerBound + first, count, out)
        }
    }

    /// A matrix held as f32 values already (small tensors, or layouts without a row decoder).
    public static func floats(_ values: [Float], rows: Int, columns: Int) -> StoredRows {
        precondition(values.count == rows * columns, "values fill the matrix")
        return StoredRows(rows: rows, columns: columns, storedBytes: values.count * 4) { first, count, out in
            values.withUnsafeBufferPointer { v in
                UnsafeMutableRawPointer(out).copyMemory(from: v.baseAddress! + first * columns, byteCount: count * columns * 4)
            }
        }
    }

    /// Rows of a view in any dtype FloatValues reads (mapped bytes are read in place).
    public static func view(_ view: TensorView, rows: Int, columns: Int) -> StoredRows {
        precondition(view.elementCount == rows * columns, "the view fills the matrix")
        let dtype = view.dtype
        return StoredRows(rows: rows, columns: columns, storedBytes: view.byteCount) { first, count, out in
            view.withBytes { FloatValues.read(dtype: dtype, $0.baseAddress!, range: (first * columns)..<((first + count) * columns), into: out) }
        }
    }

    /// Rows of GGML blocks (`columns` a whole number of blocks per row), optionally read through
    /// a row permutation: HF row r is stored row `storedRow(r)`.
    static func ggml(_ type: GGMLType, bytes: UnsafeRawBufferPointer, owner: AnyObject, rows: Int, columns: Int,
                     storedRow: (@Sendable (Int) -> Int)?) -> StoredRows {
        precondition(columns % type.blockSize == 0 && bytes.count >= rows * type.byteCount(elements: columns), "whole blocks per row")
        let rowBytes = type.byteCount(elements: columns)
        let shared = UncheckedSendable((owner, bytes))
        return StoredRows(rows: rows, columns: columns, storedBytes: rows * rowBytes) { first, count, out in
            let (owner, bytes) = shared.value
            withExtendedLifetime(owner) {
                for r in first..<(first + count) {
                    let stored = storedRow?(r) ?? r
                    type.decode(UnsafeRawBufferPointer(rebasing: bytes[(stored * rowBytes)..<((stored + 1) * rowBytes)]),
                                into: UnsafeMutableBufferPointer(start: out + (r - first) * columns, count: columns))
                }
            }
        }
    }
}

extension Checkpoint {
    /// The stored rows of a 2-D (or higher, flattened) entry, read in place where its bytes
    /// allow (safetensors, PyTorch, GGUF F32/F16/BF16), row by row from GGML blocks otherwise.
    public func storedRows(_ entry: Entry) -> StoredRows {
        let shape = entry.info.shape
        let rows = shape.first ?? 1, columns = shape.dropFirst().reduce(1, *)
        if case .gguf(let source) = containers[entry.fileIndex], let stored = source.storedRows(entry, rows: rows, columns: columns) {
            return stored
        }
        return .view(view(entry), rows: rows, columns: columns)
    }
}

extension LogicalCheckpoint {
    /// The rows of a logical tensor as stored: plain tensors in place, quantized weights decoded
    /// a tile at a time by their layout, or (a layout without a row decoder) decoded once to f32.
    public func storedRows(_ tensor: LogicalTensor, threads: ThreadBudget = .allCores) -> StoredRows {
        let rows = tensor.shape.first ?? 1, columns = tensor.shape.dropFirst().reduce(1, *)
        switch tensor.storage {
        case .plain(let entry):
            return checkpoint.storedRows(entry)
        case .quantized(let weight):
            if let stored = weight.storedRows(from: checkpoint, shape: tensor.shape) { return stored }
            return .floats(float32(tensor, threads: threads), rows: rows, columns: columns)
        }
    }
}

extension QuantizedWeight {
    /// No row decoder: the caller decodes the whole weight once.
    public func storedRows(from checkpoint: Checkpoint, shape: [Int]) -> StoredRows? { nil }
}
