/// Every way a safetensors file can be refused, each naming the file, the tensor where there is
/// one, and what was expected against what was found.
///
/// The rules are those of the reference implementation (huggingface/safetensors `tensor.rs`),
/// made stricter where it is silent: duplicate names and trailing bytes are errors here too.
public enum SafetensorsError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Fewer than the 8 bytes of the header-length field.
    case fileTooSmall(file: String, size: Int)
    case headerTooLarge(file: String, length: UInt64, limit: Int)
    /// 8 + header length runs past the end of the file.
    case headerExceedsFile(file: String, headerEnd: UInt64, fileSize: Int)
    case headerNotUTF8(file: String, offset: Int)
    case headerNotJSON(file: String, reason: String)
    case headerNotObject(file: String)
    case invalidMetadata(file: String, key: String, reason: String)
    case invalidTensorEntry(file: String, tensor: String, reason: String)
    case unknownDType(file: String, tensor: String, dtype: String)
    case unsupportedDType(file: String, tensor: String, dtype: String)
    case duplicateTensor(file: String, tensor: String)
    case offsetsReversed(file: String, tensor: String, begin: Int, end: Int)
    /// Sorted by offset, each tensor must begin where the previous one ended.
    case offsetsNotContiguous(file: String, tensor: String, expectedBegin: Int, begin: Int)
    case sizeOverflow(file: String, tensor: String, shape: [UInt64])
    case tensorSizeMismatch(file: String, tensor: String, expectedBytes: Int, actualBytes: Int)
    /// The file ends before the data of `tensor` does.
    case dataTruncated(file: String, tensor: String, expectedFileSize: Int, fileSize: Int)
    case trailingBytes(file: String, expectedFileSize: Int, fileSize: Int)
    /// A Git LFS pointer was checked out instead of the weights.
    case gitLFSPointer(file: String, claimedSize: Int?)

    /// One line: the file (and tensor or key) at fault, what is wrong, and what was expected.
    public var description: String {
        switch self {
        case let .fileTooSmall(file, size):
            return "\(file): file too small to be safetensors (expected at least 8 bytes, got \(size))"
        case let .headerTooLarge(file, length, limit):
            return "\(file): header length too large (expected at most \(limit) bytes, got \(length))"
        case let .headerExceedsFile(file, headerEnd, fileSize):
            return "\(file): header runs past the end of the file (expected a file of at least \(headerEnd) bytes, got \(fileSize))"
        case let .headerNotUTF8(file, offset):
            return "\(file): header is not valid UTF-8 (expected UTF-8 JSON, got an invalid byte at header offset \(offset))"
        case let .headerNotJSON(file, reason):
            return "\(file): header is not valid JSON (\(reason))"
        case let .headerNotObject(file):
            return "\(file): header is not a JSON object (expected {\"name\": {...}, ...})"
        case let .invalidMetadata(file, key, reason):
            return "\(file): __metadata__ '\(key)': \(reason) (expected a map of strings to strings)"
        case let .invalidTensorEntry(file, tensor, reason):
            return "\(faultLocation(file, tensor: tensor)): \(reason)"
        case let .unknownDType(file, tensor, dtype):
            return "\(faultLocation(file, tensor: tensor)): unknown dtype (expected one of \(DType.allCases.map(\.rawValue).joined(separator: " ")), got \(dtype))"
        case let .unsupportedDType(file, tensor, dtype):
            return "\(faultLocation(file, tensor: tensor)): dtype \(dtype) is valid safetensors but not supported by ckpt (expected one of \(DType.allCases.map(\.rawValue).joined(separator: " ")))"
        case let .duplicateTensor(file, tensor):
            return "\(faultLocation(file, tensor: tensor)): name appears more than once in the header (expected unique names)"
        case let .offsetsReversed(file, tensor, begin, end):
            return "\(faultLocation(file, tensor: tensor)): data_offsets end before they begin (expected begin ≤ end, got [\(begin), \(end)])"
        case let .offsetsNotContiguous(file, tensor, expectedBegin, begin):
            let kind = begin > expectedBegin ? "a gap before it" : "an overlap with the previous tensor"
            return "\(faultLocation(file, tensor: tensor)): data_offsets leave \(kind) (expected begin \(expectedBegin), got \(begin))"
        case let .sizeOverflow(file, tensor, shape):
            return "\(faultLocation(file, tensor: tensor)): shape \(shape) overflows a 64-bit byte count"
        case let .tensorSizeMismatch(file, tensor, expectedBytes, actualBytes):
            return "\(faultLocation(file, tensor: tensor)): data_offsets disagree with shape and dtype (expected \(expectedBytes) bytes, got \(actualBytes))"
        case let .dataTruncated(file, tensor, expectedFileSize, fileSize):
            return "\(faultLocation(file, tensor: tensor)): file is truncated (expected \(expectedFileSize) bytes, got \(fileSize))"
        case let .trailingBytes(file, expectedFileSize, fileSize):
            return "\(file): unexpected bytes after the last tensor (expected \(expectedFileSize) bytes, got \(fileSize))"
        case let .gitLFSPointer(file, claimedSize):
            let size = claimedSize.map { " of \($0) bytes" } ?? ""
            return "\(file): this is a Git LFS pointer, not the weights (expected safetensors, got a pointer to a file\(size)); run `git lfs pull`"
        }
    }
}
