/// A tensor's bytes where they already are (a memory-mapped file), with its dtype and shape.
///
/// Copying a view copies no data. The view keeps its storage alive, so its bytes stay valid
/// for as long as the view exists.
public struct TensorView: @unchecked Sendable {
    /// Name, dtype, shape and container offsets of the viewed tensor.
    public let info: TensorInfo
    /// Keeps the mapping alive.
    public let storage: AnyObject
    /// Valid only while `storage` is alive. Swift ends a value's lifetime at its last use, so a
    /// pointer read from a view (even one held in a variable) may outlive a decoded buffer:
    /// every access goes through `withBytes`, which keeps the storage alive around it.
    private let unsafeBytes: UnsafeRawBufferPointer

    /// A view over bytes owned by `owner` (e.g. a decoded buffer).
    public init(info: TensorInfo, owner: AnyObject, bytes: UnsafeRawBufferPointer) {
        self.info = info
        self.storage = owner
        self.unsafeBytes = bytes
    }

    /// The bytes, with the mapping kept alive for the duration of `body`.
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withExtendedLifetime(storage) { try body(unsafeBytes) }
    }

    /// How many bytes the tensor holds.
    public var byteCount: Int { unsafeBytes.count }

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
