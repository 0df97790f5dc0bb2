/// A tensor's name, dtype and shape, and where its bytes lie within its container's data.
public struct TensorInfo: Equatable, Sendable {
    /// The tensor's name, as its container spells it.
    public var name: String
    /// Element type of the stored bytes.
    public var dtype: DType
    /// Dimensions, slowest-varying first (row-major); empty for a scalar.
    public var shape: [Int]
    /// Offsets relative to the start of the data buffer (after the header).
    public var dataOffsets: Range<Int>

    /// Memberwise; nothing is checked here (readers validate shape, dtype and offsets first).
    public init(name: String, dtype: DType, shape: [Int], dataOffsets: Range<Int>) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.dataOffsets = dataOffsets
    }

    /// Product of `shape` (1 for a scalar).
    public var elementCount: Int { shape.reduce(1, *) }
    /// Bytes the tensor occupies: the length of `dataOffsets`.
    public var byteCount: Int { dataOffsets.count }
}
