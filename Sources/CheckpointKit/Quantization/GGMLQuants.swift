/// GGML tensor types ckpt reads (and, for F32/F16/BF16/Q8_0/Q4_0, writes).
public enum GGMLType: UInt32, Sendable, CaseIterable {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, bf16 = 30
    /// K-quants (blocks of 256): Q4_K, Q5_K and Q6_K are dequantized; Q2_K, Q3_K and Q8_K are
    /// read and named but not dequantized yet.
    case q2_K = 10, q3_K = 11, q4_K = 12, q5_K = 13, q6_K = 14, q8_K = 15

    public var isDequantizable: Bool { rawValue < 10 || self == .bf16 || self == .q4_K || self == .q5_K || self == .q6_K }

    public var name: String {
        switch self {
        case .f32: return "F32"
        case .f16: return "F16"
        case .q4_0: return "Q4_0"
        case .q4_1: return "Q4_1"
        case .q5_0: return "Q5_0"
        case .q5_1: return "Q5_1"
        case .q8_0: return "Q8_0"
        case .bf16: return "BF16"
        case .q2_K: return "Q2_K"
        case .q3_K: return "Q3_K"
        case .q4_K: return "Q4_K"
        case .q5_K: return "Q5_K"
        case .q6_K: return "Q6_K"
        case .q8_K: return "Q8_K"
        }
    }

    /// Elements per block.
    public var blockSize: Int {
        switch self {
        case .f32, .f16, .bf16: return 1
        case .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .q8_K: return 256
        default: return 32
        }
    }

    /// Bytes per block.
    public var typeSize: Int {
        switch self {
        case .f32: return 4
        case .f16, .bf16: return 2
        case .q4_0: return 18
        case .q4_1: return 20
        case .q5_0: return 22
        case .q5_1: return 24
        case .q8_0: return 34
        case .q2_K: return 84
        case .q3_K: return 110
        case .q4_K: return 144
        case .q5_K: return 176
        case .q6_K: return 210
        case .q8_K: return 292
        }
    }

    public func byteCount(elements: Int) -> Int { elements / blockSize * typeSize }
}

/// Dequantization and quantization of GGML blocks, bit-exact with gguf-py's `quants` module
/// (which reproduces ggml-quants.c). Half-precision scales are IEEE f16.
public enum GGMLQuants {
    @inline(__always)
    static func half(_ raw: UnsafeRawBufferPointer, _ offset: Int) -> Float {
        FloatConversion.f16ToF32Reference(raw.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    public static func dequantize(_ raw: UnsafeRawBufferPointer, type: GGMLType, count: Int) -> [Float] {
        var out = [Float](repeating: 0, count: count)
        out.withUnsafeMutableBufferPointer { o in
            switch type {
            case .f32: UnsafeMutableRawBufferPointer(o).copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[0..<(count * 4)]))
            case .f16: FloatConversion.f16ToF32(raw, UnsafeMutableRawBufferPointer(o))
            case .bf16: FloatConversion.bf16ToF32(raw, UnsafeMutableRawBufferPointer(o))
            case .q8_0:
                for b in 0..<(count / 32) {
                    let base = b * 34
                    let d = half(raw, base)
                    for j in 0..<32 { o[b * 32 + j] = Float(Int8(bitPattern: raw[base + 2 + j])) * d }
                }
            case .q4_0:
                for b in 0..<(count / 32) {
                    let base = b * 18
                    let d = half(raw, base)
                    for j in 0..<16 {
                        let byte = raw[base + 2 + j]
                        o[b * 32 + j] = d * Float(Int(byte & 0xF) - 8)
                        o[b * 32 + j + 16] = d * Float(Int(byte >> 4) - 8)
                    }
                }
            case .q4_1:
                for b in 0..<(count / 32) {
                    let base = b * 20
                    let d = half(raw, base), m = half(raw, base + 2)
                    for j in 0..<16 {
                        let byte = raw[base + 4 + j]
                        o[b * 32 + j] = d * Float(byte & 0xF) + m
                        o[b * 32 + j + 16] = d * Float(byte >> 4) + m
                    }
                }
            case .q5_0, .q5_1:
                let withMin = type == .q5_1
                let stride = withMin ? 24 : 22
                for b in 0..<(count / 32) {
                    let base = b * stride
                    let d = half(raw, base), m = withMin ? half(raw, base + 2) : 0
                    let qh = raw.loadUnaligned(fromByteOffset: base + (withMin ? 4 : 2), as: UInt32.self)
                    let qs = base + (withMin ? 8 : 6)
                    for j in 0..<32 {
                        let low = j < 16 ? raw[qs + j] & 0xF : raw[qs + j - 16] >> 4
                        let q = Int(low) | Int((qh >> UInt32(j)) & 1) << 4
                        o[b * 32 + j] = withMin ? d * Float(q) + m : d * Float(q - 16)
                    }
                }
            case .q4_K, .q5_K:
                // d, dmin (f16), 12 bytes of 6-bit scales and mins, [qh (32 bytes) for Q5_K], qs (128).
                let five = type == .q5_K
                let stride = five ? 176 : 144
                for b in 0..<(count / 256) {
                    let base = b * stride
                    let d = half(raw, base), dmin = half(raw, base + 2)
                    let sc = base + 4
                    var scale = [Float](repeating: 0, count: 8), minimum = scale
                    for j in 0..<4 {
                        let dj = raw[sc + j], mj = raw[sc + 4 + j], mdj = raw[sc + 8 + j]
                        scale[j] = d * Float(dj & 0x3F)
                        minimum[j] = dmin * Float(mj & 0x3F)
                        scale[4 + j] = d * Float((mdj & 0x0F) | ((dj >> 2) & 0x30))
                        minimum[4 + j] = dmin * Float((mdj >> 4) | ((mj >> 2) & 0x30))
                    }
                    let qh = base + 16, qs = base + (five ? 48 : 16)
                    for s in 0..<8 {
                        let group = s / 2, shift = UInt8(4 * (s % 2))
                        for i in 0..<32 {
                            var q = (raw[qs + group * 32 + i] >> shift) & 0x0F
                            if five { q |= ((raw[qh + i] >> UInt8(s)) & 1) << 4 }
                            o[b * 256 + s * 32 + i] = scale[s] * Float(q) - minimum[s]
                        }
                    }
                }
            case .q6_K:
                // ql (128 bytes), qh (64), 16 int8 scales, d (f16).
                for b in 0..<(count / 256) {
                    let base = b * 210
                    let ql = base, qh = base + 128, scales = base + 192
                    let d = half(raw, base + 208)
                    for e in 0..<256 {
                        let g = e / 128, h = (e % 128) / 64, k = e % 64
                        let low = (raw[ql + g * 64 + k] >> UInt8(4 * h)) & 0x0F
                        let j = (e % 128) / 32, i = e % 32
                        let high = (raw[qh + g * 32 + i] >> UInt8(2 * j)) & 0x03
                        let q = Int(low | high << 4) - 32
                        let s = Float(Int8(bitPattern: raw[scales + e / 16]))
                        o[b * 256 + e] = (d * s) * Float(q)
                    }
                }
            case .q2_K, .q3_K, .q8_K:
                preconditionFailure("Q2_K, Q3_K and Q8_K are not dequantized (checked by GGUFFile.float32)")
            }
        }
        return out
    }

    /// gguf-py's `np_roundf`: round half away from zero, computed as floor(|x|) + floor(2·frac).
    @inline(__always)
    static func roundHalfAway(_ x: Float) -> Float {
        let a = abs(x)
        let floored = a.rounded(.down)
        let b = floored + (2 * (a - floored)).rounded(.down)
        return x < 0 ? -b : (x > 0 ? b : 0)
    }

    /// Q8_0, fast: SIMD within a block, blocks spread over threads; equal to the reference below.
    public static func quantizeQ8_0(_ x: UnsafeBufferPointer<Float>, threads: ThreadBudget = .allCores) -> [UInt8] {
        let blocks = x.count / 32
        var out = [UInt8](repeating: 0, count: blocks * 34)
        let perChunk = 2048
        out.withUnsafeMutableBytes { o in
            threads.forEachChunk((blocks + perChunk - 1) / perChunk) { chunk in
                let signMask = SIMD16<UInt32>(repeating: 0x7FFF_FFFF)
                for b in (chunk * perChunk)..<min(blocks, (chunk + 1) * perChunk) {
                    let p = UnsafeRawPointer(x.baseAddress! + b * 32)
                    let v0 = p.loadUnaligned(as: SIMD16<Float>.self), v1 = p.loadUnaligned(fromByteOffset: 64, as: SIMD16<Float>.self)
                    let a0 = unsafeBitCast(unsafeBitCast(v0, to: SIMD16<UInt32>.self) & signMask, to: SIMD16<Float>.self)
                    let a1 = unsafeBitCast(unsafeBitCast(v1, to: SIMD16<UInt32>.self) & signMask, to: SIMD16<Float>.self)
                    let m16 = a0.maximum(a1)
                    let m8 = m16.lowHalf.replacing(with: m16.highHalf, where: m16.lowHalf .< m16.highHalf)
                    var m: Float = 0
                    for k in 0..<8 { m = max(m, m8[k]) }
                    let d = m / 127
                    let inverse: Float = d == 0 ? 0 : 1 / d
                    let h = FloatConversion.f32ToF16Reference(d)
                    o.storeBytes(of: h.littleEndian, toByteOffset: b * 34, as: UInt16.self)
                    let q0 = SIMD16<Int8>(truncatingIfNeeded: (v0 * inverse).roundedHalfAwayToInt32())
                    let q1 = SIMD16<Int8>(truncatingIfNeeded: (v1 * inverse).roundedHalfAwayToInt32())
                    o.storeBytes(of: q0, toByteOffset: b * 34 + 2, as: SIMD16<Int8>.self)
                    o.storeBytes(of: q1, toByteOffset: b * 34 + 18, as: SIMD16<Int8>.self)
                }
            }
        }
        return out
    }

    /// Q8_0 (`ggml_quantize_q8_0` reference): per 32 values d = absmax/127, q = round(x·(1/d))
    /// with the float32 d, then d stored as f16.
    public static func quantizeQ8_0Reference(_ x: UnsafeBufferPointer<Float>) -> [UInt8] {
        let blocks = x.count / 32
        var out = [UInt8](repeating: 0, count: blocks * 34)
        for b in 0..<blocks {
            var m: Float = 0
            for j in 0..<32 { m = max(m, abs(x[b * 32 + j])) }
            let d = m / 127
            let inverse: Float = d == 0 ? 0 : 1 / d
            let h = FloatConversion.f32ToF16Reference(d)
            out[b * 34] = UInt8(h & 0xFF)
            out[b * 34 + 1] = UInt8(h >> 8)
            for j in 0..<32 {
                out[b * 34 + 2 + j] = UInt8(bitPattern: Int8(roundHalfAway(x[b * 32 + j] * inverse)))
            }
        }
        return out
    }

    /// Q4_0: per 32 values the element of largest magnitude (the first, on ties) gives
    /// d = max / −8; q = trunc(x·(1/d) + 8.5) clipped to 0…15; element j in the low nibble of
    /// byte j, element j+16 in its high nibble.
    public static func quantizeQ4_0(_ x: UnsafeBufferPointer<Float>) -> [UInt8] {
        let blocks = x.count / 32
        var out = [UInt8](repeating: 0, count: blocks * 18)
        for b in 0..<blocks {
            var best = 0
            for j in 1..<32 where abs(x[b * 32 + j]) > abs(x[b * 32 + best]) { best = j }
            let d = x[b * 32 + best] / -8
            let inverse: Float = d == 0 ? 0 : 1 / d
            let h = FloatConversion.f32ToF16Reference(d)
            out[b * 18] = UInt8(h & 0xFF)
            out[b * 18 + 1] = UInt8(h >> 8)
            func q(_ j: Int) -> UInt8 {
                let v = (x[b * 32 + j] * inverse + 8.5).rounded(.towardZero)
                return UInt8(min(max(v, 0), 15))
            }
            for j in 0..<16 { out[b * 18 + 2 + j] = q(j) | q(j + 16) << 4 }
        }
        return out
    }
}
