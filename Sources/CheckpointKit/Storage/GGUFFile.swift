/// Every way a GGUF file can be refused, naming the file (and the key or tensor) and what was expected.
public enum GGUFError: Error, Equatable, Sendable, CustomStringConvertible {
    case badMagic(file: String, found: UInt32)
    case unsupportedVersion(file: String, version: UInt32)
    case truncated(file: String, offset: Int, needed: Int)
    case countTooLarge(file: String, what: String, count: UInt64)
    case stringTooLong(file: String, offset: Int, length: UInt64)
    case arrayTooLong(file: String, key: String, count: UInt64)
    case unknownValueType(file: String, key: String, type: UInt32)
    case unknownTensorType(file: String, tensor: String, type: UInt32)
    case tooManyDimensions(file: String, tensor: String, dimensions: UInt32)
    case sizeOverflow(file: String, tensor: String)
    case tensorShapeInvalid(file: String, tensor: String, reason: String)
    case invalidString(file: String, offset: Int)
    case dataOutOfBounds(file: String, tensor: String, end: UInt64, fileSize: Int)
    case misalignedData(file: String, tensor: String, offset: UInt64, alignment: Int)
    case duplicateTensor(file: String, tensor: String)
    case duplicateKey(file: String, key: String)
    case overlappingData(file: String, tensor: String)
    case badAlignment(file: String, found: String)
    case gitLFSPointer(file: String, claimedSize: Int?)

    /// One line: the file (and tensor or key) at fault, what is wrong, and what was expected.
    public var description: String {
        switch self {
        case let .badMagic(file, found):
            return "\(file): not a GGUF file (expected magic \"GGUF\", got 0x\(String(found, radix: 16)))"
        case let .unsupportedVersion(file, version):
            return "\(file): GGUF version \(version) is not supported (expected 2 or 3)"
        case let .truncated(file, offset, needed):
            return "\(file): truncated at byte \(offset) (expected \(needed) more bytes)"
        case let .countTooLarge(file, what, count):
            return "\(file): \(what) count \(count) is impossible for this file's size"
        case let .stringTooLong(file, offset, length):
            return "\(file): string at byte \(offset) claims \(length) bytes (expected it to fit in the file)"
        case let .arrayTooLong(file, key, count):
            return "\(file): metadata '\(key)': array of \(count) elements cannot fit in the file"
        case let .unknownValueType(file, key, type):
            return "\(file): metadata '\(key)': unknown value type \(type) (expected 0…12)"
        case let .unknownTensorType(file, tensor, type):
            return "\(faultLocation(file, tensor: tensor)): unknown or unsupported GGML type \(type) (expected one of \(GGMLType.all.map(\.name).joined(separator: ", ")))"
        case let .tooManyDimensions(file, tensor, dimensions):
            return "\(faultLocation(file, tensor: tensor)): \(dimensions) dimensions (expected at most 4)"
        case let .sizeOverflow(file, tensor):
            return "\(faultLocation(file, tensor: tensor)): dimensions overflow a 64-bit element count"
        case let .tensorShapeInvalid(file, tensor, reason):
            return "\(faultLocation(file, tensor: tensor)): \(reason)"
        case let .invalidString(file, offset):
            return "\(file): string at byte \(offset) is not UTF-8 (expected UTF-8 keys and values)"
        case let .dataOutOfBounds(file, tensor, end, fileSize):
            return "\(faultLocation(file, tensor: tensor)): data runs past the end of the file (expected a file of at least \(end) bytes, got \(fileSize))"
        case let .misalignedData(file, tensor, offset, alignment):
            return "\(faultLocation(file, tensor: tensor)): data offset \(offset) is not a multiple of the alignment \(alignment)"
        case let .duplicateTensor(file, tensor):
            return "\(faultLocation(file, tensor: tensor)): appears twice (expected unique names)"
        case let .duplicateKey(file, key):
            return "\(file): metadata '\(key)': appears twice (expected unique keys)"
        case let .overlappingData(file, tensor):
            return "\(faultLocation(file, tensor: tensor)): data overlaps the previous tensor's (expected each tensor after the last, aligned)"
        case let .badAlignment(file, found):
            return "\(file): metadata 'general.alignment' is \(found) (expected a power of two from 1 to 65536)"
        case let .gitLFSPointer(file, claimedSize):
            let size = claimedSize.map { " of \($0) bytes" } ?? ""
            return "\(file): a Git LFS pointer, not the GGUF itself (run `git lfs pull` to fetch the real file\(size))"
        }
    }
}

/// A GGUF metadata value.
public enum GGUFValue: Equatable, Sendable {
    case uint(UInt64, type: UInt32)
    case int(Int64, type: UInt32)
    case float(Double, type: UInt32)
    case bool(Bool)
    case string(String)
    case array([GGUFValue], elementType: UInt32)

    /// An integer value that fits in `Int`; nil for floats, bools, strings, arrays and out-of-range values.
    public var intValue: Int? {
        switch self {
        case let .uint(v, _): return Int(exactly: v)
        case let .int(v, _): return Int(exactly: v)
        default: return nil
        }
    }

    /// Any numeric value as a `Double` (64-bit integers may round); nil for bools, strings and arrays.
    public var doubleValue: Double? {
        switch self {
        case let .uint(v, _): return Double(v)
        case let .int(v, _): return Double(v)
        case let .float(v, _): return v
        default: return nil
        }
    }

    /// The string, when this is a string; else nil.
    public var stringValue: String? { if case .string(let s) = self { return s } else { return nil } }
    /// The Boolean, when this is a bool; else nil.
    public var boolValue: Bool? { if case .bool(let b) = self { return b } else { return nil } }
    /// The elements (their GGUF element type dropped), when this is an array; else nil.
    public var arrayValue: [GGUFValue]? { if case .array(let a, _) = self { return a } else { return nil } }
}

/// A tensor as a GGUF header declares it.
public struct GGUFTensorInfo: Equatable, Sendable {
    /// The tensor's GGUF name (llama.cpp naming, e.g. `blk.0.attn_q.weight`).
    public var name: String
    /// ne[0] first: ne[0] is the fastest-varying (contiguous) dimension.
    public var dimensions: [Int]
    /// How the data is encoded (F32, Q4_K, …).
    public var type: GGMLType
    /// Relative to the start of the data section.
    public var offset: Int
    /// Bytes of data: elements / blockSize × typeSize.
    public var byteCount: Int

    /// Product of `dimensions`.
    public var elementCount: Int { dimensions.reduce(1, *) }
    /// The row-major shape (slowest first), as safetensors and torch write it.
    public var shape: [Int] { dimensions.reversed() }
}

/// A parsed, validated GGUF file (v2 or v3), memory-mapped; tensor data is read only on demand.
public final class GGUFFile: Sendable {
    /// The path the file was opened from.
    public let path: String
    /// The whole file, mapped; tensor bytes are views into it.
    public let mapped: MappedFile
    /// GGUF format version: 2 or 3.
    public let version: UInt32
    /// Metadata in file order.
    public let metadata: [(String, GGUFValue)]
    /// Tensor infos in header order, each checked to lie inside the file.
    public let tensors: [GGUFTensorInfo]
    /// Data alignment in bytes: `general.alignment`, or 32 when absent.
    public let alignment: Int
    /// Absolute file offset of the data section: the header's end rounded up to `alignment`.
    public let dataStart: Int
    private let tensorIndex: [String: Int]

    /// The first four bytes of every GGUF file, read as a little-endian u32.
    public static let magic: UInt32 = 0x4655_4747  // "GGUF" little-endian

    /// Maps and validates `path`; throws `FileAccessError` or `GGUFError`.
    public convenience init(path: String) throws {
        try self.init(mapped: try MappedFile(path: path))
    }

    /// Validates a mapped file: header, metadata, and every tensor's type, shape, alignment and bounds.
    public init(mapped: MappedFile) throws {
        let file = mapped.path
        path = file
        self.mapped = mapped
        var reader = GGUFReader(bytes: mapped.bytes, file: file)
        let magic = try reader.u32()
        guard magic == Self.magic else {
            if let pointer = GitLFSPointer(bytes: mapped.bytes) { throw GGUFError.gitLFSPointer(file: file, claimedSize: pointer.size) }
            throw GGUFError.badMagic(file: file, found: magic)
        }
        version = try reader.u32()
        guard version == 2 || version == 3 else { throw GGUFError.unsupportedVersion(file: file, version: version) }
        let tensorCount = try reader.u64()
        let kvCount = try reader.u64()
        // Each tensor info and each key-value takes well over 8 bytes: bound the counts by the size.
        guard tensorCount <= UInt64(mapped.count / 8) else { throw GGUFError.countTooLarge(file: file, what: "tensor", count: tensorCount) }
        guard kvCount <= UInt64(mapped.count / 8) else { throw GGUFError.countTooLarge(file: file, what: "metadata", count: kvCount) }
        var metadata: [(String, GGUFValue)] = []
        var keys = Set<String>()
        for _ in 0..<kvCount {
            let key = try reader.string()
            guard keys.insert(key).inserted else { throw GGUFError.duplicateKey(file: file, key: key) }
            let type = try reader.u32()
            metadata.append((key, try reader.value(type: type, key: key, depth: 0)))
        }
        var alignment = 32
        if let value = metadata.first(where: { $0.0 == "general.alignment" })?.1 {
            guard let a = value.intValue, a > 0, a <= 65536, a & (a - 1) == 0 else {
                throw GGUFError.badAlignment(file: file, found: value.intValue.map(String.init) ?? "not an integer")
            }
            alignment = a
        }
        var tensors: [GGUFTensorInfo] = []
        var index: [String: Int] = [:]
        for _ in 0..<tensorCount {
            let name = try reader.string()
            let dimensionCount = try reader.u32()
            guard dimensionCount <= 4 else { throw GGUFError.tooManyDimensions(file: file, tensor: name, dimensions: dimensionCount) }
            var dims: [Int] = []
            var elements: UInt64 = 1
            for _ in 0..<dimensionCount {
                let d = try reader.u64()
                let (product, overflow) = elements.multipliedReportingOverflow(by: d)
                guard !overflow, product <= UInt64(Int.max / 16), let di = Int(exactly: d) else {
                    throw GGUFError.sizeOverflow(file: file, tensor: name)
                }
                elements = product
                dims.append(di)
            }
            guard ShapeLimits.isAcceptable(dims) else { throw GGUFError.sizeOverflow(file: file, tensor: name) }
            let rawType = try reader.u32()
            guard let type = GGMLType(rawValue: rawType) else { throw GGUFError.unknownTensorType(file: file, tensor: name, type: rawType) }
            let offset = try reader.u64()
            guard let first = dims.first ?? 1 as Int?, first % type.blockSize == 0 else {
                throw GGUFError.tensorShapeInvalid(file: file, tensor: name,
                                                   reason: "ne[0] = \(dims.first ?? 1) is not a multiple of \(type.name)'s block of \(type.blockSize)")
            }
            let bytes = Int(elements) / type.blockSize * type.typeSize
            guard offset % UInt64(alignment) == 0 else { throw GGUFError.misalignedData(file: file, tensor: name, offset: offset, alignment: alignment) }
            guard index[name] == nil else { throw GGUFError.duplicateTensor(file: file, tensor: name) }
            guard let o = Int(exactly: offset), o <= Int.max / 2 else {
                throw GGUFError.dataOutOfBounds(file: file, tensor: name, end: offset, fileSize: mapped.count)
            }
            index[name] = tensors.count
            tensors.append(GGUFTensorInfo(name: name, dimensions: dims, type: type, offset: o, byteCount: bytes))
        }
        let headerEnd = reader.position
        dataStart = (headerEnd + alignment - 1) / alignment * alignment
        for t in tensors where dataStart + t.offset + t.byteCount > mapped.count {
            throw GGUFError.dataOutOfBounds(file: file, tensor: t.name, end: UInt64(dataStart + t.offset + t.byteCount), fileSize: mapped.count)
        }
        // As llama.cpp: tensors follow one another, none overlapping the one before.
        var end = 0
        for t in tensors.sorted(by: { $0.offset < $1.offset }) {
            guard t.offset >= end else { throw GGUFError.overlappingData(file: file, tensor: t.name) }
            end = t.offset + t.byteCount
        }
        self.metadata = metadata
        self.tensors = tensors
        self.alignment = alignment
        self.tensorIndex = index
    }

    /// The metadata value for `key`, if present.
    public func value(_ key: String) -> GGUFValue? { metadata.first { $0.0 == key }?.1 }

    /// The info of the tensor called `name`, if present.
    public func info(named name: String) -> GGUFTensorInfo? { tensorIndex[name].map { tensors[$0] } }

    /// Lets the mapped pages of `info`'s data go once read (they stay in the page cache).
    public func releasePages(_ info: GGUFTensorInfo) {
        mapped.adviseDone((dataStart + info.offset)..<(dataStart + info.offset + info.byteCount))
    }

    /// The raw bytes of a tensor.
    public func bytes(_ info: GGUFTensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: mapped.bytes[(dataStart + info.offset)..<(dataStart + info.offset + info.byteCount)])
    }

    /// A tensor's values as f32, decoded as gguf-py dequantizes them.
    public func float32(_ info: GGUFTensorInfo) -> [Float] {
        withExtendedLifetime(mapped) { info.type.decode(bytes(info), count: info.elementCount) }
    }
}

/// A bounds-checked little-endian cursor over untrusted bytes.
struct GGUFReader {
    let bytes: UnsafeRawBufferPointer
    let file: String
    var position = 0
    static let maximumDepth = 4

    init(bytes: UnsafeRawBufferPointer, file: String) {
        self.bytes = bytes
        self.file = file
    }

    mutating func need(_ n: Int) throws {
        guard n >= 0, position <= bytes.count, bytes.count - position >= n else {
            throw GGUFError.truncated(file: file, offset: position, needed: n)
        }
    }

    mutating func load<T: FixedWidthInteger>(_: T.Type) throws -> T {
        try need(MemoryLayout<T>.size)
        let v = bytes.loadUnaligned(fromByteOffset: position, as: T.self)
        position += MemoryLayout<T>.size
        return T(littleEndian: v)
    }

    mutating func u32() throws -> UInt32 { try load(UInt32.self) }
    mutating func u64() throws -> UInt64 { try load(UInt64.self) }

    mutating func string() throws -> String {
        let start = position
        let length = try u64()
        guard length <= UInt64(bytes.count - position) else {
            // A length the whole file could hold is a file cut short; one it could not is a lie.
            if length <= UInt64(bytes.count) { throw GGUFError.truncated(file: file, offset: position, needed: Int(length)) }
            throw GGUFError.stringTooLong(file: file, offset: start, length: length)
        }
        let n = Int(length)
        let raw = UnsafeRawBufferPointer(rebasing: bytes[position..<(position + n)])
        guard firstInvalidUTF8Offset(raw) == nil else { throw GGUFError.invalidString(file: file, offset: start) }
        let text = String(decoding: raw, as: UTF8.self)
        position += n
        return text
    }

    /// Minimum encoded size of one element of `type`, to bound array counts before allocating.
    static func minimumSize(_ type: UInt32) -> Int? {
        switch type {
        case 0, 1, 7: return 1
        case 2, 3: return 2
        case 4, 5, 6: return 4
        case 8: return 8
        case 9: return 12
        case 10, 11, 12: return 8
        default: return nil
        }
    }

    mutating func value(type: UInt32, key: String, depth: Int) throws -> GGUFValue {
        switch type {
        case 0: return .uint(UInt64(try load(UInt8.self)), type: type)
        case 1: return .int(Int64(try load(Int8.self)), type: type)
        case 2: return .uint(UInt64(try load(UInt16.self)), type: type)
        case 3: return .int(Int64(try load(Int16.self)), type: type)
        case 4: return .uint(UInt64(try load(UInt32.self)), type: type)
        case 5: return .int(Int64(try load(Int32.self)), type: type)
        case 6: return .float(Double(Float(bitPattern: try load(UInt32.self))), type: type)
        case 7: return .bool(try load(UInt8.self) != 0)
        case 8: return .string(try string())
        case 9:
            let elementType = try u32()
            // llama.cpp refuses arrays of arrays; so does ckpt.
            guard depth == 0, elementType != 9 else { throw GGUFError.unknownValueType(file: file, key: key, type: elementType) }
            let count = try u64()
            guard let size = Self.minimumSize(elementType) else { throw GGUFError.unknownValueType(file: file, key: key, type: elementType) }
            guard count <= UInt64((bytes.count - position) / size) else { throw GGUFError.arrayTooLong(file: file, key: key, count: count) }
            var values: [GGUFValue] = []
            values.reserveCapacity(Int(count))
            for _ in 0..<count { values.append(try value(type: elementType, key: key, depth: depth + 1)) }
            return .array(values, elementType: elementType)
        case 10: return .uint(try u64(), type: type)
        case 11: return .int(try load(Int64.self), type: type)
        case 12: return .float(Double(bitPattern: try u64()), type: type)
        default: throw GGUFError.unknownValueType(file: file, key: key, type: type)
        }
    }
}
