/// Element types of the safetensors format that ckpt reads and writes.
///
/// The raw values are the header spellings. Types the reference library lists but ckpt does
/// not handle (sub-byte floats, complex, FNUZ variants) are named in `DType.unsupportedNames`
/// so that a file using them is refused with a precise message rather than "unknown".
public enum DType: String, CaseIterable, Sendable, Comparable {
    case bool = "BOOL"
    case u8 = "U8"
    case i8 = "I8"
    case f8e5m2 = "F8_E5M2"
    case f8e4m3 = "F8_E4M3"
    case i16 = "I16"
    case u16 = "U16"
    case f16 = "F16"
    case bf16 = "BF16"
    case i32 = "I32"
    case u32 = "U32"
    case f32 = "F32"
    case f64 = "F64"
    case i64 = "I64"
    case u64 = "U64"

    /// Listed by the reference safetensors library (0.7) but not supported here.
    public static let unsupportedNames: Set<String> = [
        "F4", "F6_E2M3", "F6_E3M2", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "C64",
    ]

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .bool, .u8, .i8, .f8e5m2, .f8e4m3: return 1
        case .i16, .u16, .f16, .bf16: return 2
        case .i32, .u32, .f32: return 4
        case .f64, .i64, .u64: return 8
        }
    }

    /// Position in the reference library's `Dtype` enum. Its writer orders tensors by this
    /// rank, descending, then by name; matching it makes our files byte-identical to theirs.
    public var writerRank: Int {
        switch self {
        case .bool: return 0
        case .u8: return 4
        case .i8: return 5
        case .f8e5m2: return 6
        case .f8e4m3: return 7
        case .i16: return 11
        case .u16: return 12
        case .f16: return 13
        case .bf16: return 14
        case .i32: return 15
        case .u32: return 16
        case .f32: return 17
        case .f64: return 19
        case .i64: return 20
        case .u64: return 21
        }
    }

    /// Orders by `writerRank`, the reference writer's dtype order (its files list higher ranks first).
    public static func < (lhs: DType, rhs: DType) -> Bool { lhs.writerRank < rhs.writerRank }

    /// True for the floating-point types whose values ckpt converts and measures.
    public var isFloatingPoint: Bool {
        switch self {
        case .f16, .bf16, .f32, .f64, .f8e4m3, .f8e5m2: return true
        default: return false
        }
    }

    /// The lower-case name used on command lines and in config.json (`torch_dtype`).
    public var torchName: String {
        switch self {
        case .bool: return "bool"
        case .u8: return "uint8"
        case .i8: return "int8"
        case .f8e5m2: return "float8_e5m2"
        case .f8e4m3: return "float8_e4m3fn"
        case .i16: return "int16"
        case .u16: return "uint16"
        case .f16: return "float16"
        case .bf16: return "bfloat16"
        case .i32: return "int32"
        case .u32: return "uint32"
        case .f32: return "float32"
        case .f64: return "float64"
        case .i64: return "int64"
        case .u64: return "uint64"
        }
    }
}
