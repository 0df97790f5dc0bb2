/// A tensor to be written: its name, dtype and shape; the bytes come later, streamed.
public struct TensorSpec: Equatable, Sendable {
    /// The tensor's name in the header.
    public var name: String
    /// Element type of the bytes to be written.
    public var dtype: DType
    /// Dimensions, slowest-varying first.
    public var shape: [Int]

    /// Memberwise; the producer must later write exactly `byteCount` bytes.
    public init(name: String, dtype: DType, shape: [Int]) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
    }

    /// Product of `shape` (1 for a scalar).
    public var elementCount: Int { shape.reduce(1, *) }
    /// Bytes the producer must write: elements × dtype size.
    public var byteCount: Int { elementCount * dtype.size }
}

/// Errors of the writing side, each naming the file and tensor.
public enum SafetensorsWriteError: Error, Equatable, Sendable, CustomStringConvertible {
    case duplicateTensor(file: String, tensor: String)
    case wrongByteCount(file: String, tensor: String, expected: Int, actual: Int)
    /// A tensor handed to a `SafetensorsStreamWriter` that its layout does not hold.
    case unplannedTensor(file: String, tensor: String)
    /// A tensor whose dtype or shape differs from the one its layout planned.
    case differsFromPlan(file: String, tensor: String, expected: String, actual: String)
    /// A tensor of the layout that was never written when the file was finished.
    case notWritten(file: String, tensor: String)
    /// A piece of a tensor handed to a `SafetensorsStreamWriter` that does not start where the tensor's last piece ended.
    case pieceOutOfOrder(file: String, tensor: String, expectedOffset: Int, offset: Int)

    /// One line: the file (and tensor or key) at fault, what is wrong, and what was expected.
    public var description: String {
        switch self {
        case let .duplicateTensor(file, tensor):
            return "\(faultLocation(file, tensor: tensor)): written twice (expected unique names)"
        case let .wrongByteCount(file, tensor, expected, actual):
            return "\(faultLocation(file, tensor: tensor)): produced the wrong number of bytes (expected \(expected), got \(actual))"
        case let .unplannedTensor(file, tensor):
            return "\(faultLocation(file, tensor: tensor)): not in the file's planned layout (expected only planned tensors)"
        case let .differsFromPlan(file, tensor, expected, actual):
            return "\(faultLocation(file, tensor: tensor)): differs from the file's planned layout (expected \(expected), got \(actual))"
        case let .notWritten(file, tensor):
            return "\(faultLocation(file, tensor: tensor)): never written (expected every planned tensor before the file is finished)"
        case let .pieceOutOfOrder(file, tensor, expectedOffset, offset):
            return "\(faultLocation(file, tensor: tensor)): a piece starts at byte \(offset) of the tensor (expected \(expectedOffset), where the last one ended)"
        }
    }
}

/// The complete layout of a safetensors file before any data is written: the order of the
/// tensors, their offsets and the header bytes, exactly as the reference library lays them out
/// (dtype rank descending, then name by bytes; header padded with spaces to a multiple of 8;
/// `__metadata__` first).
public struct SafetensorsLayout: Sendable {
    /// Tensors in file order, with their data offsets.
    public let tensors: [TensorInfo]
    /// The 8-byte length field followed by the padded JSON header.
    public let header: [UInt8]

    /// `metadata` keeps its order; `"format": "pt"` is added first when absent, because
    /// transformers refuses files without it.
    public init(_ specs: [TensorSpec], metadata: [(String, String)] = []) {
        let ordered = specs.sorted { a, b in
            if a.dtype.writerRank != b.dtype.writerRank { return a.dtype.writerRank > b.dtype.writerRank }
            return a.name.utf8.lexicographicallyPrecedes(b.name.utf8)
        }
        var offset = 0
        var infos: [TensorInfo] = []
        infos.reserveCapacity(ordered.count)
        for spec in ordered {
            infos.append(TensorInfo(name: spec.name, dtype: spec.dtype, shape: spec.shape,
                                    dataOffsets: offset..<(offset + spec.byteCount)))
            offset += spec.byteCount
        }
        var meta = metadata
        if !meta.contains(where: { $0.0 == "format" }) { meta.insert(("format", "pt"), at: 0) }
        var members: [(String, JSONValue)] = [("__metadata__", .object(meta.map { ($0.0, .string($0.1)) }))]
        for info in infos {
            members.append((info.name, [
                "dtype": .string(info.dtype.rawValue),
                "shape": .array(info.shape.map { JSONValue($0) }),
                "data_offsets": [JSONValue(info.dataOffsets.lowerBound), JSONValue(info.dataOffsets.upperBound)],
            ]))
        }
        var json = Array(JSONValue.object(members).serialized(style: .compact).utf8)
        let padded = (json.count + 7) / 8 * 8
        json.append(contentsOf: repeatElement(UInt8(ascii: " "), count: padded - json.count))
        var header = [UInt8]()
        header.reserveCapacity(8 + json.count)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { header.append(contentsOf: $0) }
        header.append(contentsOf: json)
        self.tensors = infos
        self.header = header
    }

    /// Bytes of tensor data after the header: the last tensor's end offset.
    public var dataSize: Int { tensors.last?.dataOffsets.upperBound ?? 0 }
    /// Total file size in bytes: the length field, the padded header and the data.
    public var fileSize: Int { header.count + dataSize }
}

extension SafetensorsLayout {
    /// Writes the file at `path` (which must not exist): the header, then each tensor in file
    /// order, its bytes produced by `produce` into the output. The count each tensor writes is
    /// checked, and the file is flushed and fsynced before this returns.
    public func write(to path: String, produce: (TensorInfo, OutputFile) throws -> Void) throws {
        var seen = Set<String>()
        for info in tensors where !seen.insert(info.name).inserted {
            throw SafetensorsWriteError.duplicateTensor(file: path, tensor: info.name)
        }
        let out = try OutputFile(creating: path)
        try out.write(header)
        for info in tensors {
            let before = out.position
            try produce(info, out)
            let written = out.position - before
            guard written == info.byteCount else {
                throw SafetensorsWriteError.wrongByteCount(file: path, tensor: info.name, expected: info.byteCount,
                                                           actual: written)
            }
        }
        try out.finish()
    }
}
