/// The character classes the pre-tokenizer patterns test: `\p{L}`, `\p{N}`, `\s`, and the rest.
///
/// `\s` is the Unicode White_Space property (what Oniguruma, the regex engine of Hugging Face
/// `tokenizers`, matches for `\s` in UTF-8); letters are general categories Lu Ll Lt Lm Lo,
/// numbers Nd Nl No (also Rust's `char::is_numeric`, used by the `Digits` pre-tokenizer). The
/// classes come from the standard library's Unicode tables, so a scalar assigned in a Unicode
/// version newer than the reference's may classify differently there.
enum ScalarClass: UInt8 {
    case other = 0
    case letter = 1
    case number = 2
    case whitespace = 3

    /// The class of `scalar` (any value; those that are not scalars are `.other`). Hot loops
    /// use a `ScalarClassTable` they fetched once instead (a global's lazy initialization check
    /// costs a call on every access).
    static func of(_ scalar: UInt32) -> ScalarClass {
        ScalarClassTable.shared.classOf(scalar)
    }

    static func compute(_ value: UInt32) -> ScalarClass {
        guard let scalar = Unicode.Scalar(value) else { return .other }
        let properties = scalar.properties
        if properties.isWhitespace { return .whitespace }
        switch properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
        case .decimalNumber, .letterNumber, .otherNumber: return .number
        default: return .other
        }
    }

}

/// Classes of U+0000…U+FFFF, one byte per scalar, built once on first use (about 5 ms: the
/// property lookups of the standard library are too slow for the scanner's inner loop). The
/// storage is allocated once and never freed, so the pointer stays valid for the process.
struct ScalarClassTable: @unchecked Sendable {
    let basicPlane: UnsafePointer<UInt8>

    static let shared = ScalarClassTable()

    private init() {
        let table = UnsafeMutablePointer<UInt8>.allocate(capacity: 0x10000)
        for v in 0..<0x10000 { table[v] = ScalarClass.compute(UInt32(v)).rawValue }
        basicPlane = UnsafePointer(table)
    }

    @inline(__always)
    func classOf(_ scalar: UInt32) -> ScalarClass {
        if scalar < 0x10000 { return ScalarClass(rawValue: basicPlane[Int(scalar)]) ?? .other }
        return ScalarClass.compute(scalar)
    }
}

/// Decodes the scalar whose UTF-8 encoding starts at `p[i]`, returning it and its length.
///
/// The input is valid UTF-8 (it comes from a Swift `String` or from our own transformations),
/// but the decoder stays total: a sequence cut short by `end` reads as one byte.
@inline(__always)
func decodeUTF8Scalar(_ p: UnsafePointer<UInt8>, _ i: Int, _ end: Int) -> (scalar: UInt32, length: Int) {
    let b0 = UInt32(p[i])
    if b0 < 0x80 { return (b0, 1) }
    if b0 < 0xE0 {
        guard i + 1 < end else { return (b0, 1) }
        return ((b0 & 0x1F) << 6 | UInt32(p[i + 1] & 0x3F), 2)
    }
    if b0 < 0xF0 {
        guard i + 2 < end else { return (b0, 1) }
        return ((b0 & 0x0F) << 12 | UInt32(p[i + 1] & 0x3F) << 6 | UInt32(p[i + 2] & 0x3F), 3)
    }
    guard i + 3 < end else { return (b0, 1) }
    return ((b0 & 0x07) << 18 | UInt32(p[i + 1] & 0x3F) << 12 | UInt32(p[i + 2] & 0x3F) << 6 | UInt32(p[i + 3] & 0x3F), 4)
}

/// Appends the UTF-8 encoding of `scalar` to `bytes`.
func appendUTF8(_ scalar: UInt32, to bytes: inout [UInt8]) {
    switch scalar {
    case 0..<0x80:
        bytes.append(UInt8(truncatingIfNeeded: scalar))
    case 0x80..<0x800:
        bytes.append(UInt8(truncatingIfNeeded: 0xC0 | scalar >> 6))
        bytes.append(UInt8(truncatingIfNeeded: 0x80 | scalar & 0x3F))
    case 0x800..<0x10000:
        bytes.append(UInt8(truncatingIfNeeded: 0xE0 | scalar >> 12))
        bytes.append(UInt8(truncatingIfNeeded: 0x80 | scalar >> 6 & 0x3F))
        bytes.append(UInt8(truncatingIfNeeded: 0x80 | scalar & 0x3F))
    default:
        bytes.append(UInt8(truncatingIfNeeded: 0xF0 | scalar >> 18))
        bytes.append(UInt8(truncatingIfNeeded: 0x80 | scalar >> 12 & 0x3F))
        bytes.append(UInt8(truncatingIfNeeded: 0x80 | scalar >> 6 & 0x3F))
        bytes.append(UInt8(truncatingIfNeeded: 0x80 | scalar & 0x3F))
    }
}
