/// An open, validated safetensors file: its header parsed and checked against every rule of the
/// format, its data memory-mapped and read only when a tensor's bytes are asked for.
public final class SafetensorsFile: Sendable {
    /// The header length field may not exceed this (as in the reference library).
    public static let maximumHeaderLength = 100_000_000

    /// The path the file was opened from.
    public let path: String
    /// The whole file, mapped; tensor views point into it.
    public let mapped: MappedFile
    /// The N of the format: bytes of JSON after the 8-byte length field.
    public let headerLength: Int
    /// `__metadata__` in file order; empty when absent.
    public let metadata: [(String, String)]
    /// Tensors in the order of their data offsets.
    public let tensors: [TensorInfo]
    private let indexByName: [String: Int]

    /// Opens and validates `path`. Only the header is read.
    public convenience init(path: String) throws {
        let mapped = try MappedFile(path: path)
        try self.init(mapped: mapped)
    }

    /// Validates a mapped file against every rule of the format, reading only the header.
    public init(mapped: MappedFile) throws(SafetensorsError) {
        let file = mapped.path
        let bytes = mapped.bytes
        self.path = file
        self.mapped = mapped

        if let pointer = GitLFSPointer(bytes: bytes) {
            throw .gitLFSPointer(file: file, claimedSize: pointer.size)
        }
        guard bytes.count >= 8 else { throw .fileTooSmall(file: file, size: bytes.count) }
        let declared = bytes.loadUnaligned(as: UInt64.self).littleEndian
        guard declared <= UInt64(Self.maximumHeaderLength) else {
            throw .headerTooLarge(file: file, length: declared, limit: Self.maximumHeaderLength)
        }
        let n = Int(declared)
        guard 8 + n <= bytes.count else {
            throw .headerExceedsFile(file: file, headerEnd: 8 + declared, fileSize: bytes.count)
        }
        let headerBytes = UnsafeRawBufferPointer(rebasing: bytes[8..<(8 + n)])
        if let bad = firstInvalidUTF8Offset(headerBytes) { throw .headerNotUTF8(file: file, offset: bad) }
        let root: JSONValue
        do {
            root = try JSONParser.parse(headerBytes)
        } catch {
            throw .headerNotJSON(file: file, reason: error.description)
        }
        guard case .object(let members) = root else { throw .headerNotObject(file: file) }

        var metadata: [(String, String)] = []
        var sawMetadata = false
        var tensors: [TensorInfo] = []
        tensors.reserveCapacity(members.count)
        var indexByName: [String: Int] = [:]
        for (key, value) in members {
            if key == "__metadata__" {
                guard !sawMetadata else { throw .invalidMetadata(file: file, key: key, reason: "appears twice") }
                sawMetadata = true
                metadata = try Self.parseMetadata(value, file: file)
                continue
            }
            guard indexByName[key] == nil else { throw .duplicateTensor(file: file, tensor: key) }
            indexByName[key] = tensors.count
            tensors.append(try Self.parseTensorEntry(name: key, value, file: file))
        }

        // Validate in offset order, as the reference does; stable for equal offsets.
        let order = tensors.indices.sorted {
            let a = tensors[$0].dataOffsets, b = tensors[$1].dataOffsets
            return (a.lowerBound, a.upperBound, $0) < (b.lowerBound, b.upperBound, $1)
        }
        tensors = order.map { tensors[$0] }
        indexByName.removeAll(keepingCapacity: true)
        var expectedBegin = 0
        for (index, info) in tensors.enumerated() {
            indexByName[info.name] = index
            guard info.dataOffsets.lowerBound == expectedBegin else {
                throw .offsetsNotContiguous(file: file, tensor: info.name, expectedBegin: expectedBegin,
                                            begin: info.dataOffsets.lowerBound)
            }
            expectedBegin = info.dataOffsets.upperBound
        }
        let expectedSize = 8 + n + expectedBegin
        if expectedSize > bytes.count {
            let firstShort = tensors.first { 8 + n + $0.dataOffsets.upperBound > bytes.count }
            throw .dataTruncated(file: file, tensor: firstShort?.name ?? "", expectedFileSize: expectedSize,
                                 fileSize: bytes.count)
        }
        if expectedSize < bytes.count {
            throw .trailingBytes(file: file, expectedFileSize: expectedSize, fileSize: bytes.count)
        }
        self.headerLength = n
        self.metadata = metadata
        self.tensors = tensors
        self.indexByName = indexByName
    }

    private static func parseMetadata(_ value: JSONValue, file: String) throws(SafetensorsError) -> [(String, String)] {
        guard case .object(let entries) = value else {
            throw .invalidMetadata(file: file, key: "__metadata__", reason: "not an object")
        }
        var seen = Set<String>()
        var result: [(String, String)] = []
        for (key, entry) in entries {
            guard case .string(let text) = entry else {
                throw .invalidMetadata(file: file, key: key, reason: "value is not a string")
            }
            guard seen.insert(key).inserted else { throw .invalidMetadata(file: file, key: key, reason: "key appears twice") }
            result.append((key, text))
        }
        return result
    }

    private static func parseTensorEntry(name: String, _ value: JSONValue, file: String) throws(SafetensorsError) -> TensorInfo {
        guard case .object = value else {
            throw .invalidTensorEntry(file: file, tensor: name, reason: "entry is not an object (expected {dtype, shape, data_offsets})")
        }
        guard let dtypeName = value["dtype"]?.stringValue else {
            throw .invalidTensorEntry(file: file, tensor: name, reason: "missing or non-string \"dtype\"")
        }
        guard let shapeValues = value["shape"]?.arrayValue else {
            throw .invalidTensorEntry(file: file, tensor: name, reason: "missing or non-array \"shape\"")
        }
        guard let offsetValues = value["data_offsets"]?.arrayValue else {
            throw .invalidTensorEntry(file: file, tensor: name, reason: "missing or non-array \"data_offsets\"")
        }
        func unsigned(_ v: JSONValue) -> UInt64? {
            switch v {
            case .integer(let i) where i >= 0: return UInt64(i)
            case .unsignedInteger(let u): return u
            default: return nil
            }
        }
        var rawShape: [UInt64] = []
        for dim in shapeValues {
            guard let d = unsigned(dim) else {
                throw .invalidTensorEntry(file: file, tensor: name,
                                          reason: "shape holds \(dim.serialized()) (expected non-negative integers)")
            }
            rawShape.append(d)
        }
        guard offsetValues.count == 2, let begin = unsigned(offsetValues[0]), let end = unsigned(offsetValues[1]),
            let b = Int(exactly: begin), let e = Int(exactly: end), e <= Int.max / 2
        else {
            throw .invalidTensorEntry(file: file, tensor: name,
                                      reason: "data_offsets is \(JSONValue.array(offsetValues).serialized()) (expected [begin, end] as non-negative integers)")
        }
        guard let dtype = DType(rawValue: dtypeName) else {
            if DType.unsupportedNames.contains(dtypeName) {
                throw .unsupportedDType(file: file, tensor: name, dtype: dtypeName)
            }
            throw .unknownDType(file: file, tensor: name, dtype: dtypeName)
        }
        guard b <= e else { throw .offsetsReversed(file: file, tensor: name, begin: b, end: e) }
        guard ShapeLimits.isAcceptable(rawShape) else { throw .sizeOverflow(file: file, tensor: name, shape: rawShape) }
        var count: UInt64 = 1
        for d in rawShape {
            let (product, overflow) = count.multipliedReportingOverflow(by: d)
            guard !overflow else { throw .sizeOverflow(file: file, tensor: name, shape: rawShape) }
            count = product
        }
        let (bytes, overflow) = count.multipliedReportingOverflow(by: UInt64(dtype.size))
        guard !overflow, let byteCount = Int(exactly: bytes), byteCount <= Int.max / 2 else {
            throw .sizeOverflow(file: file, tensor: name, shape: rawShape)
        }
        guard byteCount == e - b else {
            throw .tensorSizeMismatch(file: file, tensor: name, expectedBytes: byteCount, actualBytes: e - b)
        }
        // Every dimension fits in Int: their product does.
        return TensorInfo(name: name, dtype: dtype, shape: rawShape.map { Int($0) }, dataOffsets: b..<e)
    }

    /// Absolute byte offset of the data buffer within the file.
    public var dataStart: Int { 8 + headerLength }

    /// The info of the tensor called `name`, if present.
    public func info(named name: String) -> TensorInfo? {
        indexByName[name].map { tensors[$0] }
    }

    /// A zero-copy view of a tensor's bytes.
    public func view(_ info: TensorInfo) -> TensorView {
        let start = dataStart + info.dataOffsets.lowerBound
        return TensorView(info: info, storage: mapped, byteRange: start..<(start + info.byteCount))
    }

    /// A zero-copy view of the tensor called `name`, if present.
    public func view(named name: String) -> TensorView? {
        info(named: name).map(view)
    }

    /// The metadata value for `key`, if present.
    public func metadataValue(_ key: String) -> String? {
        metadata.first { $0.0 == key }?.1
    }
}

/// Returns the offset of the first byte that breaks UTF-8 validity, or nil if all is valid.
func firstInvalidUTF8Offset(_ bytes: UnsafeRawBufferPointer) -> Int? {
    var i = 0
    let n = bytes.count
    while i < n {
        let b0 = bytes[i]
        if b0 < 0x80 {
            i += 1
            continue
        }
        let length: Int
        var minimum: UInt32
        var scalar: UInt32
        switch b0 {
        case 0xC2...0xDF: length = 2; minimum = 0x80; scalar = UInt32(b0 & 0x1F)
        case 0xE0...0xEF: length = 3; minimum = 0x800; scalar = UInt32(b0 & 0x0F)
        case 0xF0...0xF4: length = 4; minimum = 0x10000; scalar = UInt32(b0 & 0x07)
        default: return i
        }
        guard i + length <= n else { return i }
        for k in 1..<length {
            let b = bytes[i + k]
            guard b & 0xC0 == 0x80 else { return i }
            scalar = scalar << 6 | UInt32(b & 0x3F)
        }
        if scalar < minimum || scalar > 0x10FFFF || (0xD800...0xDFFF).contains(scalar) { return i }
        i += length
    }
    return nil
}

/// A Git LFS pointer file: what a clone without `git lfs` leaves instead of the weights.
public struct GitLFSPointer: Equatable, Sendable {
    /// The size of the real file, as the pointer claims.
    public var size: Int?

    static let signature = Array("version https://git-lfs.github.com/spec/".utf8)

    /// Recognises a pointer by its first line; pointers are small text files (< 1 KB).
    public init?(bytes: UnsafeRawBufferPointer) {
        guard bytes.count >= Self.signature.count, bytes.count < 1024,
            zip(bytes, Self.signature).allSatisfy({ $0 == $1 })
        else { return nil }
        let text = String(decoding: bytes, as: UTF8.self)
        size = nil
        for line in text.split(separator: "\n") where line.hasPrefix("size ") {
            size = Int(line.dropFirst(5).trimmingCharacters(in: " \r"))
        }
    }
}

extension StringProtocol {
    /// Without the leading and trailing characters in `set` (no Foundation).
    public func trimmingCharacters(in set: String) -> SubSequence {
        var s = self[...]
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return s
    }
}
