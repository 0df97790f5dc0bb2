/// A tensor's bytes where they already are (a memory-mapped file), with its dtype and shape.
///
/// Copying a view copies no data. The view keeps its storage alive, so its bytes stay valid
/// for as long as the view exists.
public struct TensorView: @unchecked Sendable {
    public let info: TensorInfo
    /// Keeps the mapping alive.
    public let storage: AnyObject
    public let bytes: UnsafeRawBufferPointer

    public init(info: TensorInfo, storage: MappedFile, byteRange: Range<Int>) {
        self.info = info
        self.storage = storage
        self.bytes = UnsafeRawBufferPointer(rebasing: storage.bytes[byteRange])
    }

    /// A view over bytes owned by `owner` (e.g. a decoded buffer).
    public init(info: TensorInfo, owner: AnyObject, bytes: UnsafeRawBufferPointer) {
        self.info = info
        self.storage = owner
        self.bytes = bytes
    }

    public var name: String { info.name }
    public var dtype: DType { info.dtype }
    public var shape: [Int] { info.shape }
    public var elementCount: Int { info.elementCount }
}
