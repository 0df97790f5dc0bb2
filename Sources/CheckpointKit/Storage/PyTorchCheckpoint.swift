/// Failures reading a `torch.save` checkpoint.
public enum PickleError: Error, Equatable, Sendable, CustomStringConvertible {
    case forbiddenGlobal(file: String, name: String)
    case unsupportedOpcode(file: String, opcode: UInt8, offset: Int)
    case malformed(file: String, reason: String)
    case missingStorage(file: String, key: String)
    case tensorOutOfBounds(file: String, tensor: String)
    case legacyFormat(file: String)
    case expandedTensorTooLarge(file: String, tensor: String, bytes: Int, storageBytes: Int)

    /// One line: the file (and tensor or key) at fault, what is wrong, and what was expected.
    public var description: String {
        switch self {
        case let .forbiddenGlobal(file, name):
            return "\(file): the pickle calls \(name), which a state dict never needs (refused, nothing executed)"
        case let .unsupportedOpcode(file, opcode, offset):
            return "\(file): unsupported pickle opcode 0x\(String(opcode, radix: 16)) at byte \(offset) (expected a torch.save state dict)"
        case let .malformed(file, reason): return "\(file): malformed pickle: \(reason)"
        case let .missingStorage(file, key): return "\(file): storage '\(key)' named by the pickle is missing from the archive"
        case let .tensorOutOfBounds(file, tensor): return "\(faultLocation(file, tensor: tensor)): size and strides reach past its storage"
        case let .expandedTensorTooLarge(file, tensor, bytes, storageBytes):
            return "\(faultLocation(file, tensor: tensor)): its strides repeat \(storageBytes) bytes of storage into \(bytes) (expected at most the storage or \(PyTorchCheckpoint.maximumGatheredBytes >> 20) MiB)"
        case let .legacyFormat(file):
            return "\(file): the legacy (pre-1.6) torch.save format is not read (expected the zip format; re-save it with a current torch)"
        }
    }
}

/// A `torch.save` checkpoint (the zip format): the state dict unpickled by a restricted machine
/// that knows only what a state dict needs — OrderedDict, the tensor rebuild functions and the
/// storage types — and refuses every other global by name without calling anything.
public final class PyTorchCheckpoint: @unchecked Sendable {
    /// One state-dict entry: its key, dtype, shape and row-major bytes.
    public struct Tensor {
        /// The state-dict key.
        public var name: String
        /// Element type, from the torch storage type.
        public var dtype: DType
        /// Sizes, slowest-varying first.
        public var shape: [Int]
        /// Row-major bytes (gathered when the pickled strides are not contiguous).
        public var bytes: UnsafeRawBufferPointer
        let owner: AnyObject
    }

    /// The path the archive was opened from.
    public let path: String
    /// The state dict's tensors in pickle order; non-tensor entries are skipped.
    public let tensors: [Tensor]
    let archive: ZipArchive
    /// The largest copy a strided (non-contiguous) tensor may be gathered into beyond its storage's size.
    public static let maximumGatheredBytes = 256 << 20

    /// Unpickles the archive's `data.pkl` without executing anything; throws `ZipError`, `PickleError` or `FileAccessError`.
    public init(path: String) throws {
        self.path = path
        do {
            archive = try ZipArchive(path: path)
        } catch ZipError.notAZip {
            // The legacy format is a bare pickle stream starting with PROTO 2.
            let head = try MappedFile(path: path)
            if head.count > 2 && head.bytes[0] == 0x80 && head.bytes[1] == 0x02 { throw PickleError.legacyFormat(file: path) }
            throw ZipError.notAZip(file: path)
        }
        guard let pickle = archive.members.first(where: { $0.name.hasSuffix("/data.pkl") || $0.name == "data.pkl" }) else {
            throw PickleError.malformed(file: path, reason: "no data.pkl in the archive (expected torch.save's zip layout)")
        }
        let prefix = String(pickle.name.dropLast("data.pkl".count))
        let (bytes, owner) = try archive.contents(pickle)
        var machine = Unpickler(bytes: bytes, file: path)
        let root = try withExtendedLifetime(owner) { try machine.run() }
        guard case .dict(let items) = root else { throw PickleError.malformed(file: path, reason: "the top object is not a dict") }
        var tensors: [Tensor] = []
        var storages: [String: (UnsafeRawBufferPointer, AnyObject)] = [:]
        for (key, value) in items {
            guard case .string(let name) = key else { continue }
            guard case .tensor(let t) = value else { continue }  // non-tensor entries (e.g. _metadata) are skipped
            if storages[t.storageKey] == nil {
                guard let member = archive.member(named: prefix + "data/" + t.storageKey) else {
                    throw PickleError.missingStorage(file: path, key: t.storageKey)
                }
                storages[t.storageKey] = try archive.contents(member)
            }
            let (storage, storageOwner) = storages[t.storageKey]!
            tensors.append(try Self.materialize(t, name: name, storage: storage, owner: storageOwner, file: path))
        }
        self.tensors = tensors
    }

    /// Tensor `index` as a view of its row-major bytes.
    public func view(_ index: Int) -> TensorView {
        let t = tensors[index]
        return TensorView(info: TensorInfo(name: t.name, dtype: t.dtype, shape: t.shape, dataOffsets: 0..<t.bytes.count), owner: t.owner,
                          bytes: t.bytes)
    }

    /// The size of the archive on disk.
    public var byteCount: Int { archive.mapped.count }

    /// A view when the tensor is contiguous, else a gathered copy.
    static func materialize(_ t: Unpickler.TensorRecord, name: String, storage: UnsafeRawBufferPointer, owner: AnyObject, file: String) throws -> Tensor {
        let size = t.dtype.size
        // Every number here came from the pickle: bound the shape first, then do the arithmetic checked.
        guard t.offset >= 0, t.offset <= storage.count, t.stride.count == t.shape.count, ShapeLimits.isAcceptable(t.shape),
            t.stride.allSatisfy({ $0 >= 0 })
        else { throw PickleError.tensorOutOfBounds(file: file, tensor: name) }
        let count = t.shape.reduce(1, *)
        var last = t.offset
        for (d, s) in zip(t.shape, t.stride) where d > 0 {
            let (step, overflow) = (d - 1).multipliedReportingOverflow(by: s)
            let (sum, overflow2) = last.addingReportingOverflow(step)
            guard !overflow, !overflow2 else { throw PickleError.tensorOutOfBounds(file: file, tensor: name) }
            last = sum
        }
        guard count == 0 || (last < storage.count / size) else {
            throw PickleError.tensorOutOfBounds(file: file, tensor: name)
        }
        var contiguous = true
        var expected = 1
        for (d, s) in zip(t.shape, t.stride).reversed() where d > 1 {
            if s != expected { contiguous = false }
            expected *= d
        }
        if contiguous {
            let start = t.offset * size
            return Tensor(name: name, dtype: t.dtype, shape: t.shape, bytes: UnsafeRawBufferPointer(rebasing: storage[start..<(start + count * size)]),
                          owner: owner)
        }
        // A strided view is gathered into a copy; one that repeats its storage (stride 0) may not
        // grow past its storage or 256 MiB, whichever is larger, so a tiny file cannot ask for gigabytes.
        guard count * size <= max(storage.count, Self.maximumGatheredBytes) else {
            throw PickleError.expandedTensorTooLarge(file: file, tensor: name, bytes: count * size, storageBytes: storage.count)
        }
        let copy = OwnedBytes(count: count * size)
        var index = [Int](repeating: 0, count: t.shape.count)
        for i in 0..<count {
            var element = t.offset
            for (k, s) in t.stride.enumerated() { element += index[k] * s }
            copy.pointer.advanced(by: i * size).copyMemory(from: storage.baseAddress! + element * size, byteCount: size)
            var k = t.shape.count - 1
            while k >= 0 {
                index[k] += 1
                if index[k] < t.shape[k] { break }
                index[k] = 0
                k -= 1
            }
        }
        return Tensor(name: name, dtype: t.dtype, shape: t.shape, bytes: UnsafeRawBufferPointer(start: copy.pointer, count: count * size), owner: copy)
    }
}

/// A pickle machine for state dicts. Values are data only; "calls" are interpreted for the few
/// allowed globals and refused for everything else.
struct Unpickler {
    struct TensorRecord {
        var storageKey: String
        var dtype: DType
        var offset: Int
        var shape: [Int]
        var stride: [Int]
    }

    indirect enum Value {
        case none, bool(Bool), int(Int), float(Double), string(String), bytes([UInt8])
        case tuple([Value]), list([Value]), dict([(Value, Value)])
        case global(String)
        case storage(key: String, dtype: DType)
        case tensor(TensorRecord)
        case mark
    }

    static let storageTypes: [String: DType] = [
        "torch.FloatStorage": .f32, "torch.HalfStorage": .f16, "torch.BFloat16Storage": .bf16, "torch.DoubleStorage": .f64,
        "torch.LongStorage": .i64, "torch.IntStorage": .i32, "torch.ShortStorage": .i16, "torch.CharStorage": .i8,
        "torch.ByteStorage": .u8, "torch.BoolStorage": .bool, "torch.Float8_e4m3fnStorage": .f8e4m3, "torch.Float8_e5m2Storage": .f8e5m2,
        "torch.UInt16Storage": .u16, "torch.UInt32Storage": .u32, "torch.UInt64Storage": .u64,
        // Untyped storage (torch ≥ 2 for unsigned types): bytes, the dtype comes with the rebuild.
        "torch.storage.UntypedStorage": .u8, "torch.UntypedStorage": .u8,
    ]
    static let dtypes: [String: DType] = [
        "torch.float32": .f32, "torch.float16": .f16, "torch.bfloat16": .bf16, "torch.float64": .f64, "torch.int64": .i64,
        "torch.int32": .i32, "torch.int16": .i16, "torch.int8": .i8, "torch.uint8": .u8, "torch.bool": .bool, "torch.uint16": .u16,
        "torch.uint32": .u32, "torch.uint64": .u64, "torch.float8_e4m3fn": .f8e4m3, "torch.float8_e5m2": .f8e5m2,
    ]
    static let callables: Set<String> = [
        "collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor_v3", "torch._utils._rebuild_tensor",
        "torch._utils._rebuild_parameter",
        "torch._utils._rebuild_parameter_with_state",
    ]

    let bytes: UnsafeRawBufferPointer
    let file: String
    var position = 0
    var stack: [Value] = []
    /// How deeply each stack value nests containers (a deep value's release recurses).
    var depths: [Int] = []
    var memo: [Int: (value: Value, depth: Int)] = [:]
    /// Elements copied by APPEND/SETITEM so far: copy-on-write makes a memoized list's every
    /// append a full copy, so the total is bounded linearly in the pickle's size.
    var work = 0
    /// Deepest container nesting accepted (state dicts nest 3 or 4 deep).
    static let maximumDepth = 64

    init(bytes: UnsafeRawBufferPointer, file: String) {
        self.bytes = bytes
        self.file = file
    }

    func bad(_ reason: String) -> PickleError { .malformed(file: file, reason: reason) }

    mutating func take(_ n: Int) throws -> UnsafeRawBufferPointer {
        guard n >= 0, n <= bytes.count - position else { throw bad("truncated at byte \(position)") }
        defer { position += n }
        return UnsafeRawBufferPointer(rebasing: bytes[position..<(position + n)])
    }

    mutating func integer<T: FixedWidthInteger>(_: T.Type) throws -> T {
        let raw = try take(MemoryLayout<T>.size)
        return T(littleEndian: raw.loadUnaligned(as: T.self))
    }

    mutating func line() throws -> String {
        guard let end = bytes[position...].firstIndex(of: 0x0A) else { throw bad("unterminated line at byte \(position)") }
        defer { position = end + 1 }
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[position..<end]), as: UTF8.self)
    }

    mutating func pop() throws -> Value { try popWithDepth().value }

    mutating func popWithDepth() throws -> (value: Value, depth: Int) {
        guard let v = stack.popLast(), let d = depths.popLast() else { throw bad("stack underflow at byte \(position)") }
        return (v, d)
    }

    /// Pushes `value`, nesting `depth` containers deep; refuses nesting past `maximumDepth`.
    mutating func push(_ value: Value, depth: Int = 0) throws {
        guard depth <= Self.maximumDepth else { throw bad("containers nested deeper than \(Self.maximumDepth) at byte \(position)") }
        stack.append(value)
        depths.append(depth)
    }

    /// Counts `elements` copied and refuses work beyond 16 per byte of pickle (plus a million).
    mutating func spend(_ elements: Int) throws {
        work += elements
        guard work <= 16 * bytes.count + 1_000_000 else { throw bad("more work than its \(bytes.count) bytes can ask for (a quadratic pickle)") }
    }

    mutating func popToMark() throws -> [Value] { try popToMarkWithDepth().items }

    /// The values above the last mark, and the deepest of them.
    mutating func popToMarkWithDepth() throws -> (items: [Value], depth: Int) {
        guard let mark = stack.lastIndex(where: { if case .mark = $0 { return true } else { return false } }) else {
            throw bad("no mark at byte \(position)")
        }
        let items = Array(stack[(mark + 1)...])
        let depth = depths[(mark + 1)...].max() ?? 0
        stack.removeSubrange(mark...)
        depths.removeSubrange(mark...)
        try spend(items.count)
        return (items, depth)
    }

    mutating func global(_ name: String) throws -> Value {
        guard Self.callables.contains(name) || Self.storageTypes[name] != nil || Self.dtypes[name] != nil else {
            throw PickleError.forbiddenGlobal(file: file, name: name)
        }
        return .global(name)
    }

    static func ints(_ v: Value) -> [Int]? {
        guard case .tuple(let items) = v else { return nil }
        return items.compactMap { if case .int(let i) = $0 { return i } else { return nil } }
    }

    mutating func reduce(_ callable: Value, _ arguments: Value) throws -> Value {
        guard case .global(let name) = callable, case .tuple(let args) = arguments else { throw bad("REDUCE of a non-global") }
        switch name {
        case "collections.OrderedDict": return .dict([])
        case "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor":
            guard args.count >= 4, case .storage(let key, let dtype) = args[0], case .int(let offset) = args[1],
                let shape = Self.ints(args[2]), let stride = Self.ints(args[3])
            else { throw bad("unexpected \(name) arguments") }
            return .tensor(TensorRecord(storageKey: key, dtype: dtype, offset: offset, shape: shape, stride: stride))
        case "torch._utils._rebuild_tensor_v3":
            // (untyped storage, offset, size, stride, requires_grad, hooks, dtype, …)
            guard args.count >= 7, case .storage(let key, _) = args[0], case .int(let offset) = args[1],
                let shape = Self.ints(args[2]), let stride = Self.ints(args[3]), case .global(let dtypeName) = args[6],
                let dtype = Self.dtypes[dtypeName]
            else { throw bad("unexpected \(name) arguments") }
            return .tensor(TensorRecord(storageKey: key, dtype: dtype, offset: offset, shape: shape, stride: stride))
        case "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state":
            guard let first = args.first, case .tensor = first else { throw bad("unexpected \(name) arguments") }
            return first
        default: throw PickleError.forbiddenGlobal(file: file, name: name)
        }
    }

    mutating func run() throws -> Value {
        while position < bytes.count {
            let opcodeOffset = position
            let op = bytes[position]
            position += 1
            switch op {
            case 0x80: _ = try take(1)  // PROTO
            case 0x95: _ = try take(8)  // FRAME
            case UInt8(ascii: "."): return try pop()  // STOP
            case UInt8(ascii: "("): try push(.mark)
            case UInt8(ascii: "N"): try push(.none)
            case 0x88: try push(.bool(true))
            case 0x89: try push(.bool(false))
            case UInt8(ascii: "}"): try push(.dict([]))
            case UInt8(ascii: "]"): try push(.list([]))
            case UInt8(ascii: ")"): try push(.tuple([]))
            case UInt8(ascii: "K"): try push(.int(Int(try integer(UInt8.self))))
            case UInt8(ascii: "M"): try push(.int(Int(try integer(UInt16.self))))
            case UInt8(ascii: "J"): try push(.int(Int(try integer(Int32.self))))
            case 0x8a:  // LONG1
                let n = Int(try integer(UInt8.self))
                guard n <= 8 else { throw bad("integer wider than 64 bits") }
                let raw = try take(n)
                var v: Int64 = 0
                for (i, b) in raw.enumerated() { v |= Int64(b) << (8 * Int64(i)) }
                if n > 0 && n < 8 && raw[n - 1] & 0x80 != 0 { v -= Int64(1) << (8 * Int64(n)) }
                try push(.int(Int(v)))
            case UInt8(ascii: "G"):
                let raw = try take(8)
                try push(.float(Double(bitPattern: UInt64(bigEndian: raw.loadUnaligned(as: UInt64.self)))))
            case UInt8(ascii: "X"):
                let n = Int(try integer(UInt32.self))
                try push(.string(String(decoding: try take(n), as: UTF8.self)))
            case 0x8c:
                let n = Int(try integer(UInt8.self))
                try push(.string(String(decoding: try take(n), as: UTF8.self)))
            case UInt8(ascii: "C"):
                let n = Int(try integer(UInt8.self))
                try push(.bytes(Array(try take(n))))
            case UInt8(ascii: "B"):
                let n = Int(try integer(UInt32.self))
                try push(.bytes(Array(try take(n))))
            case UInt8(ascii: "i"):  // INST: a call by name; only ever allowed names pass
                let module = try line(), name = try line()
                _ = try global(module + "." + name)
                throw PickleError.forbiddenGlobal(file: file, name: module + "." + name)
            case UInt8(ascii: "c"):  // GLOBAL
                let module = try line(), name = try line()
                try push(try global(module + "." + name))
            case 0x93:  // STACK_GLOBAL
                guard case .string(let name) = try pop(), case .string(let module) = try pop() else { throw bad("STACK_GLOBAL of non-strings") }
                try push(try global(module + "." + name))
            case UInt8(ascii: "q"): memo[Int(try integer(UInt8.self))] = stack.last.map { ($0, depths.last!) }
            case UInt8(ascii: "r"): memo[Int(try integer(UInt32.self))] = stack.last.map { ($0, depths.last!) }
            case 0x94: memo[memo.count] = stack.last.map { ($0, depths.last!) }  // MEMOIZE
            case UInt8(ascii: "h"):
                guard let v = memo[Int(try integer(UInt8.self))] else { throw bad("unknown memo") }
                try push(v.value, depth: v.depth)
            case UInt8(ascii: "j"):
                guard let v = memo[Int(try integer(UInt32.self))] else { throw bad("unknown memo") }
                try push(v.value, depth: v.depth)
            case UInt8(ascii: "t"):
                let (items, depth) = try popToMarkWithDepth()
                try push(.tuple(items), depth: depth + 1)
            case 0x85:
                let a = try popWithDepth()
                try push(.tuple([a.value]), depth: a.depth + 1)
            case 0x86:
                let b = try popWithDepth(), a = try popWithDepth()
                try push(.tuple([a.value, b.value]), depth: max(a.depth, b.depth) + 1)
            case 0x87:
                let c = try popWithDepth(), b = try popWithDepth(), a = try popWithDepth()
                try push(.tuple([a.value, b.value, c.value]), depth: max(a.depth, b.depth, c.depth) + 1)
            case UInt8(ascii: "l"):
                let (items, depth) = try popToMarkWithDepth()
                try push(.list(items), depth: depth + 1)
            case UInt8(ascii: "a"):
                let v = try popWithDepth(), list = try popWithDepth()
                guard case .list(var items) = list.value else { throw bad("APPEND to a non-list") }
                try spend(items.count + 1)
                items.append(v.value)
                try push(.list(items), depth: max(list.depth, v.depth + 1))
            case UInt8(ascii: "e"):
                let (values, depth) = try popToMarkWithDepth()
                let list = try popWithDepth()
                guard case .list(var items) = list.value else { throw bad("APPENDS to a non-list") }
                try spend(items.count)
                items += values
                try push(.list(items), depth: max(list.depth, depth + 1))
            case UInt8(ascii: "s"):
                let v = try popWithDepth(), k = try popWithDepth(), dict = try popWithDepth()
                guard case .dict(var items) = dict.value else { throw bad("SETITEM on a non-dict") }
                try spend(items.count + 1)
                items.append((k.value, v.value))
                try push(.dict(items), depth: max(dict.depth, max(k.depth, v.depth) + 1))
            case UInt8(ascii: "u"):
                let (values, depth) = try popToMarkWithDepth()
                let dict = try popWithDepth()
                guard values.count % 2 == 0, case .dict(var items) = dict.value else { throw bad("SETITEMS on a non-dict") }
                try spend(items.count)
                for i in stride(from: 0, to: values.count, by: 2) { items.append((values[i], values[i + 1])) }
                try push(.dict(items), depth: max(dict.depth, depth + 1))
            case UInt8(ascii: "R"):
                let args = try pop(), callable = try pop()
                try push(try reduce(callable, args), depth: 1)
            case UInt8(ascii: "b"):  // BUILD: state for an OrderedDict (its _metadata) is dropped
                _ = try pop()
            case UInt8(ascii: "Q"):  // BINPERSID: ('storage', type, key, location, numel)
                guard case .tuple(let pid) = try pop(), pid.count >= 3, case .string("storage") = pid[0],
                    case .global(let typeName) = pid[1], let dtype = Self.storageTypes[typeName], case .string(let key) = pid[2]
                else { throw bad("unexpected persistent id") }
                try push(.storage(key: key, dtype: dtype))
            default:
                throw PickleError.unsupportedOpcode(file: file, opcode: op, offset: opcodeOffset)
            }
        }
        throw bad("no STOP opcode")
    }
}
