/// A tensor's bytes where they already are (a memory-mapped file), with its dtype and shape.
///
/// Copying a view copies no data. The view keeps its storage alive, so its bytes stay valid
/// for as long as the view exists.
public struct TensorView: @unchecked Sendable {
    /// Name, dtype, shape and container offsets of the viewed tensor.
    public let info: TensorInfo
    /// Keeps the mapping alive.
    public let storage: AnyObject
    /// Valid while this view (or its storage) is alive: Swift may release a temporary view right
    /// after reading this property, so copy with `byteArray` or use `withBytes` when the view
    /// is not held in a variable.
    public let bytes: UnsafeRawBufferPointer

    /// A view over bytes owned by `owner` (e.g. a decoded buffer).
    public init(info: TensorInfo, owner: AnyObject, bytes: UnsafeRawBufferPointer) {
        self.info = info
        self.storage = owner
        self.bytes = bytes
    }

    /// The bytes, with the mapping kept alive for the duration of `body`.
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withExtendedLifetime(storage) { try body(bytes) }
    }

    /// A copy of the bytes.
    public var byteArray: [UInt8] { withBytes { Array($0) } }

    /// Shorthand for `info.name`.
    public var name: String { info.name }
    /// Shorthand for `info.dtype`.
    public var dtype: DType { info.dtype }
    /// Shorthand for `info.shape`.
    public var shape: [Int] { info.shape }
    /// Shorthand for `info.elementCount`.
    public var elementCount: Int { info.elementCount }
}
