/// A weight `[rows, columns]` quantized to b-bit integers per group of columns: unsigned codes,
/// and per row and group a scale and a zero point, `w = (u − z) · s`. What round-to-nearest and
/// GPTQ produce, and what compressed-tensors `pack-quantized`, GPTQ and AWQ store (each packs
/// the same integers its own way).
public struct IntegerCodes: Sendable, Equatable {
    /// Output rows (`nn.Linear` out_features).
    public var rows: Int
    /// Input columns (in_features).
    public var columns: Int
    /// Bits per code (2, 4 or 8).
    public var bits: Int
    /// Columns per group; `columns` for one group per row (per-channel).
    public var groupSize: Int
    /// Unsigned codes in `0 ..< 2^bits`, row-major `[rows, columns]`, in column order.
    public var codes: [UInt8]
    /// Scales `[rows, groups]` exactly as stored (already rounded to `scaleType`).
    public var scales: [Float]
    /// Unsigned zero points `[rows, groups]`; `2^(bits−1)` throughout when symmetric.
    public var zeros: [UInt8]
    /// Whether the zero point is the implicit middle code.
    public var symmetric: Bool
    /// The group of each column (act-order's `g_idx`), nil for `column / groupSize`.
    public var groupIndex: [Int32]?
    /// The dtype scales are stored in; each dequantized product is rounded to it, as loaders compute in it.
    public var scaleType: DType

    /// Groups per row.
    public var groups: Int {
        if let groupIndex { return Int(groupIndex.max() ?? -1) + 1 }
        return (columns + groupSize - 1) / groupSize
    }

    /// The group column `k` belongs to.
    @inline(__always)
    public func group(of k: Int) -> Int { groupIndex.map { Int($0[k]) } ?? k / groupSize }

    /// The values a loader reconstructs, `(u − z) · s` rounded to the scale dtype, into `out` row-major.
    public func dequantize(into out: UnsafeMutableBufferPointer<Float>) {
        let g = groups
        for n in 0..<rows {
            for k in 0..<columns {
                let gi = n * g + group(of: k)
                let value = Float(Int(codes[n * columns + k]) - Int(zeros[gi])) * scales[gi]
                out[n * columns + k] = IntegerCodes.round(value, to: scaleType)
            }
        }
    }

    /// The dequantized values as an array.
    public var dequantized: [Float] {
        var out = [Float](repeating: 0, count: rows * columns)
        out.withUnsafeMutableBufferPointer { dequantize(into: $0) }
        return out
    }

    /// `value` rounded to `dtype` (nearest, ties to even) and widened back; f32 and others unchanged.
    @inline(__always)
    public static func round(_ value: Float, to dtype: DType) -> Float {
        switch dtype {
        case .bf16: return FloatConversion.bf16ToF32Reference(FloatConversion.f32ToBF16Reference(value))
        case .f16: return Float(Float16(value))
        default: return value
        }
    }

    /// The smallest step of `dtype` above 1 (torch's `finfo(dtype).eps`), what a zero scale becomes in compressed-tensors.
    static func epsilon(_ dtype: DType) -> Float {
        switch dtype {
        case .bf16: return 0x1p-7
        case .f16: return 0x1p-10
        default: return Float.ulpOfOne
        }
    }
}

/// How round-to-nearest picks a group's scale and zero point: the two references differ.
public enum IntegerRoundingRule: String, Sendable {
    /// compressed-tensors' min-max observer (`calculate_qparams`, `_quantize`): symmetric scale
    /// absmax / (range / 2), arithmetic in the weight's dtype, clamp before rounding.
    case compressedTensors
    /// GPTQModel's `Quantizer.find_params` (and AutoAWQ's): scale (max − min) / (2^b − 1) in f32,
    /// symmetric zero 2^(b−1) with the range kept one-sided when a group has no negative value.
    case gptq
    /// AutoAWQ's `pseudo_quantize_tensor` with zero points: min and max of the group as they are
    /// (not widened to 0), scale max(max − min, 1e-5) / (2^b − 1), zero clamp(−round(min / s)).
    case awq
}

/// Round-to-nearest integer quantization per row and group, by either reference's rule.
public enum IntegerQuantizer {
    /// The codes of `x` `[rows, columns]` in groups of `groupSize` columns (`columns` for per-channel).
    /// `arithmetic` is the dtype compressed-tensors computes in (the weight's); `scaleType` the stored scales'.
    public static func roundToNearest(_ x: UnsafeBufferPointer<Float>, rows: Int, columns: Int, bits: Int, groupSize: Int,
                                      symmetric: Bool, rule: IntegerRoundingRule, arithmetic: DType, scaleType: DType) -> IntegerCodes {
        let groups = (columns + groupSize - 1) / groupSize
        var result = IntegerCodes(rows: rows, columns: columns, bits: bits, groupSize: groupSize,
                                  codes: [UInt8](repeating: 0, count: rows * columns), scales: [Float](repeating: 0, count: rows * groups),
                                  zeros: [UInt8](repeating: UInt8(1 << (bits - 1)), count: rows * groups), symmetric: symmetric,
                                  groupIndex: nil, scaleType: scaleType)
        for n in 0..<rows {
            for g in 0..<groups {
                let range = (n * columns + g * groupSize)..<(n * columns + min(columns, (g + 1) * groupSize))
                let group = UnsafeBufferPointer(rebasing: x[range])
                let (scale, zero) = switch rule {
                case .gptq: gptqParameters(group, bits: bits, symmetric: symmetric, scaleType: scaleType)
                case .awq: awqParameters(group, bits: bits, scaleType: scaleType)
                case .compressedTensors: compressedTensorsParameters(group, bits: bits, symmetric: symmetric, arithmetic: arithmetic, scaleType: scaleType)
                }
                result.scales[n * groups + g] = scale
                result.zeros[n * groups + g] = zero
                for i in range {
                    result.codes[i] = rule != .compressedTensors
                        ? gptqCode(x[i], scale: scale, zero: zero, bits: bits)
                        : compressedTensorsCode(x[i], scale: scale, zero: zero, bits: bits, arithmetic: arithmetic)
                }
            }
        }
        return result
    }

    /// compressed-tensors' scale and unsigned zero for one group: min/max widened to include 0,
    /// scale = max(|min|, max) / (range / 2) or (max − min) / range, a zero scale becoming the
    /// scale dtype's eps; the asymmetric zero `round(clamp(qmin − min / s))`, all in `arithmetic`.
    static func compressedTensorsParameters(_ group: UnsafeBufferPointer<Float>, bits: Int, symmetric: Bool, arithmetic: DType,
                                            scaleType: DType) -> (scale: Float, zero: UInt8) {
        let qMin = -Float(1 << (bits - 1)), qMax = Float(1 << (bits - 1)) - 1, offset = Float(1 << (bits - 1))
        var low: Float = 0, high: Float = 0
        for v in group { low = Swift.min(low, v); high = Swift.max(high, v) }
        let r = { (v: Float) in IntegerCodes.round(v, to: arithmetic) }
        var scale: Float
        if symmetric {
            scale = r(Swift.max(-low, high) / r((qMax - qMin) / 2))
        } else {
            scale = r(r(high - low) / (qMax - qMin))
        }
        scale = IntegerCodes.round(scale, to: scaleType)
        // The zero point comes from the scale before a zero scale becomes eps: an all-zero group
        // gives 0/0, which torch's cast to int8 turns into 0 here (stored as the offset).
        var zero: Float = 0
        if !symmetric && scale != 0 { zero = Swift.min(Swift.max(r(qMin - r(low / scale)), qMin), qMax).rounded(.toNearestOrEven) }
        if scale == 0 { scale = IntegerCodes.epsilon(scaleType) }
        return (scale, UInt8(zero + offset))
    }

    /// One compressed-tensors code: `round(clamp(x / s + zp))`, offset to unsigned.
    @inline(__always)
    static func compressedTensorsCode(_ v: Float, scale: Float, zero: UInt8, bits: Int, arithmetic: DType) -> UInt8 {
        let offset = Float(1 << (bits - 1))
        let qMin = -offset, qMax = offset - 1
        let scaled = IntegerCodes.round(IntegerCodes.round(v / scale, to: arithmetic) + (Float(zero) - offset), to: arithmetic)
        let q = Swift.min(Swift.max(scaled, qMin), qMax).rounded(.toNearestOrEven)
        return UInt8(q + offset)
    }

    /// GPTQModel's `find_params` for one group in f32, the scale then rounded to the stored dtype.
    static func gptqParameters(_ group: UnsafeBufferPointer<Float>, bits: Int, symmetric: Bool, scaleType: DType) -> (scale: Float, zero: UInt8) {
        let (low, high) = gptqRange(group, symmetric: symmetric)
        return gptqParameters(low: low, high: high, bits: bits, symmetric: symmetric, scaleType: scaleType)
    }

    /// The range `find_params` quantizes (quantizer.py:114-125): min and max widened to include 0,
    /// made symmetric, an all-zero group widened to [−1, 1]. Its `mse` search shrinks this range.
    static func gptqRange(_ group: UnsafeBufferPointer<Float>, symmetric: Bool) -> (low: Float, high: Float) {
        var low: Float = 0, high: Float = 0
        for v in group { low = Swift.min(low, v); high = Swift.max(high, v) }
        if symmetric {
            high = Swift.max(-low, high)
            // GPTQModel keeps xmin = 0 when the group has no negative value (spec §2.5).
            if low < 0 { low = -high }
        }
        if low == 0 && high == 0 { low = -1; high = 1 }
        return (low, high)
    }

    /// The scale and zero of the range `low…high` (quantizer.py:135-139, and :150-155 for a shrunk
    /// range): scale (high − low) / maxq in f32 rounded to the stored dtype, the zero from that
    /// rounded scale, clamped to the codes (GPTQModel leaves it unclamped; it cannot leave them
    /// unless the rounding of the scale pushes it there).
    @inline(__always)
    static func gptqParameters(low: Float, high: Float, bits: Int, symmetric: Bool, scaleType: DType) -> (scale: Float, zero: UInt8) {
        let scale = gptqScale(low: low, high: high, bits: bits, scaleType: scaleType)
        return (scale, gptqZero(low: low, scale: scale, bits: bits, symmetric: symmetric))
    }

    /// (high − low) / maxq in f32, rounded to the stored dtype.
    @inline(__always)
    static func gptqScale(low: Float, high: Float, bits: Int, scaleType: DType) -> Float {
        IntegerCodes.round((high - low) / Float((1 << bits) - 1), to: scaleType)
    }

    /// The middle code when symmetric, else round(−low / scale) clamped to the codes.
    @inline(__always)
    static func gptqZero(low: Float, scale: Float, bits: Int, symmetric: Bool) -> UInt8 {
        let maxq = Float((1 << bits) - 1)
        return UInt8(symmetric ? (maxq + 1) / 2 : Swift.min(Swift.max((-low / scale).rounded(.toNearestOrEven), 0), maxq))
    }

    /// AutoAWQ's scale and zero for one group (`pseudo_quantize_tensor`, zero_point=True), the scale rounded to the stored dtype.
    static func awqParameters(_ group: UnsafeBufferPointer<Float>, bits: Int, scaleType: DType) -> (scale: Float, zero: UInt8) {
        let maxq = Float((1 << bits) - 1)
        var low = Float.infinity, high = -Float.infinity
        for v in group { low = Swift.min(low, v); high = Swift.max(high, v) }
        let scale = IntegerCodes.round(Swift.max(high - low, 1e-5) / maxq, to: scaleType)
        let zero = Swift.min(Swift.max(-(low / scale).rounded(.toNearestOrEven), 0), maxq)
        return (scale, UInt8(zero))
    }

    /// One GPTQModel code: `clamp(round(x / s) + z, 0, maxq)`.
    @inline(__always)
    static func gptqCode(_ v: Float, scale: Float, zero: UInt8, bits: Int) -> UInt8 {
        let q = (v / scale).rounded(.toNearestOrEven) + Float(zero)
        return UInt8(Swift.min(Swift.max(q, 0), Float((1 << bits) - 1)))
    }
}

/// Packing b-bit codes into 32-bit words, lowest bits first, along either axis; and AWQ's
/// interleaved nibble order. One plain implementation each: these run once per tensor.
public enum IntegerPacking {
    /// AutoAWQ's order: bits `4i…4i+3` of a word hold column `8c + awqOrder[i]`.
    public static let awqOrder = [0, 2, 4, 6, 1, 3, 5, 7]

    /// Codes per 32-bit word.
    static func perWord(_ bits: Int) -> Int { 32 / bits }

    /// `values` `[rows, columns]` packed along each row: word `j` of row `r` holds columns
    /// `j·w ..< (j+1)·w` (w = 32 / bits), the first in the lowest bits; a short last word is zero-padded.
    /// compressed-tensors' `pack_to_int32(packed_dim=1)`.
    public static func packRows(_ values: [UInt8], rows: Int, columns: Int, bits: Int) -> [UInt32] {
        let w = perWord(bits), words = (columns + w - 1) / w
        var out = [UInt32](repeating: 0, count: rows * words)
        for r in 0..<rows {
            for c in 0..<columns { out[r * words + c / w] |= UInt32(values[r * columns + c]) << UInt32((c % w) * bits) }
        }
        return out
    }

    /// `values` `[rows, columns]` packed along each column: word row `j` holds rows `j·w ..< (j+1)·w`
    /// of every column (`[ceil(rows / w), columns]`). GPTQ's `qweight` of codes `[K, N]`, and
    /// compressed-tensors' zero points (`packed_dim=0`).
    public static func packColumns(_ values: [UInt8], rows: Int, columns: Int, bits: Int) -> [UInt32] {
        let w = perWord(bits), wordRows = (rows + w - 1) / w
        var out = [UInt32](repeating: 0, count: wordRows * columns)
        for r in 0..<rows {
            for c in 0..<columns { out[(r / w) * columns + c] |= UInt32(values[r * columns + c]) << UInt32((r % w) * bits) }
        }
        return out
    }

    /// Inverse of `packRows`: `[rows, columns]` codes.
    public static func unpackRows(_ words: [UInt32], rows: Int, columns: Int, bits: Int) -> [UInt8] {
        let w = perWord(bits), perRow = (columns + w - 1) / w, mask = UInt32((1 << bits) - 1)
        var out = [UInt8](repeating: 0, count: rows * columns)
        for r in 0..<rows {
            for c in 0..<columns { out[r * columns + c] = UInt8(truncatingIfNeeded: (words[r * perRow + c / w] >> UInt32((c % w) * bits)) & mask) }
        }
        return out
    }

    /// Inverse of `packColumns`: `[rows, columns]` codes.
    public static func unpackColumns(_ words: [UInt32], rows: Int, columns: Int, bits: Int) -> [UInt8] {
        let w = perWord(bits), mask = UInt32((1 << bits) - 1)
        var out = [UInt8](repeating: 0, count: rows * columns)
        for r in 0..<rows {
            for c in 0..<columns { out[r * columns + c] = UInt8(truncatingIfNeeded: (words[(r / w) * columns + c] >> UInt32((r % w) * bits)) & mask) }
        }
        return out
    }

    /// 4-bit `values` `[rows, columns]` (columns a multiple of 8) in AutoAWQ's GEMM order: `[rows, columns / 8]`.
    public static func packAWQ(_ values: [UInt8], rows: Int, columns: Int) -> [UInt32] {
        let words = columns / 8
        var out = [UInt32](repeating: 0, count: rows * words)
        for r in 0..<rows {
            for c in 0..<words {
                var word: UInt32 = 0
                for i in 0..<8 { word |= UInt32(values[r * columns + 8 * c + awqOrder[i]]) << UInt32(4 * i) }
                out[r * words + c] = word
            }
        }
        return out
    }

    /// Inverse of `packAWQ`: `[rows, columns]` codes.
    public static func unpackAWQ(_ words: [UInt32], rows: Int, columns: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: rows * columns)
        for r in 0..<rows {
            for c in 0..<columns {
                out[r * columns + c] = UInt8(truncatingIfNeeded: (words[r * (columns / 8) + c / 8] >> UInt32(4 * awqNibble[c & 7])) & 0xF)
            }
        }
        return out
    }

    /// Little-endian 32-bit words of raw bytes (loaded unaligned: files need not align their data).
    public static func words(_ raw: UnsafeRawBufferPointer) -> [UInt32] {
        (0..<(raw.count / 4)).map { raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self) }
    }

    /// The words of `bytes`.
    public static func words(_ bytes: [UInt8]) -> [UInt32] { bytes.withUnsafeBytes { words($0) } }

    /// The raw bytes of `values` as they are written.
    public static func bytes<T>(of values: [T]) -> [UInt8] { values.withUnsafeBytes { Array($0) } }

    /// The nibble holding each column of an AWQ word (the inverse of `awqOrder`).
    static let awqNibble: [Int] = {
        var inverse = [Int](repeating: 0, count: 8)
        for (i, column) in awqOrder.enumerated() { inverse[column] = i }
        return inverse
    }()
}
