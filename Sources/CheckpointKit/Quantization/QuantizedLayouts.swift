/// Every quantized layout ckpt reads and writes: the one list. A new layout is one file beside
/// this one (its scheme, its stored weight, its detector) and one line here.
public enum QuantizedLayouts {
    /// The detectors, tried in order.
    public static let all: [any QuantizedLayout.Type] = [BitsandbytesFourBitLayout.self, CompressedTensorsInt8Layout.self, PackQuantizedLayout.self,
                                                        GPTQLayout.self, AWQLayout.self]

    /// The scheme a user names on the command line (`nf4`, `fp4`, `int4`, `int8`), or nil. `int4`
    /// is written as `format` (pack-quantized by default); `int8` as compressed-tensors
    /// `int-quantized` unless a format is named. A block size ≤ 0 means one scale per output channel.
    public static func scheme(named name: String, blockSize: Int, doubleQuant: Bool, scaleType: DType, format: IntegerFormat? = nil,
                              symmetric: Bool = true) -> (any QuantizationScheme)? {
        switch name {
        case "int4":
            return IntegerScheme(bits: 4, groupSize: blockSize > 0 ? blockSize : nil, symmetric: symmetric, format: format ?? .packQuantized)
        case "int8" where format != nil:
            return IntegerScheme(bits: 8, groupSize: blockSize > 0 ? blockSize : nil, symmetric: symmetric, format: format!)
        case "int8": return Int8Scheme(groupSize: blockSize, scaleType: scaleType)
        case "nf4": return FourBitScheme(type: .nf4, blockSize: blockSize, doubleQuant: doubleQuant)
        case "fp4": return FourBitScheme(type: .fp4, blockSize: blockSize, doubleQuant: doubleQuant)
        default: return nil
        }
    }

    /// Scheme names `scheme(named:…)` knows.
    public static let schemeNames = ["int4", "int8", "nf4", "fp4"]
}

extension LogicalCheckpoint {
    /// The logical view through every layout ckpt knows.
    public convenience init(_ checkpoint: Checkpoint) throws {
        try self.init(checkpoint, layouts: QuantizedLayouts.all)
    }
}

extension CheckpointInspection {
    /// Inspects `checkpoint`, recognising every quantized layout ckpt knows.
    public init(_ checkpoint: Checkpoint, storage: Bool = false, statistics: Bool = false, threads: ThreadBudget = .allCores) throws {
        try self.init(checkpoint, layouts: QuantizedLayouts.all, storage: storage, statistics: statistics, threads: threads)
    }
}
