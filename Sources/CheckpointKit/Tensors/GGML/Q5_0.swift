/// Q5_0: blocks of 32 with f16 scale d, the fifth bits in a u32 and 4-bit low parts (22 bytes);
/// x ≈ d·(q − 16).
extension GGMLType {
    /// GGUF id 6; written by `KQuantizers.q5_0`.
    public static let q5_0 = GGMLType(rawValue: 6, name: "Q5_0", blockSize: 32, typeSize: 22, activations: .q8_0, decode: { raw, o in
        for b in 0..<(o.count / 32) {
            let base = b * 22
            let d = GGMLBlock.half(raw, base)
            let qh = raw.loadUnaligned(fromByteOffset: base + 2, as: UInt32.self).littleEndian
            for j in 0..<32 {
                let low = j < 16 ? raw[base + 6 + j] & 0xF : raw[base + 6 + j - 16] >> 4
                let q = Int(low) | Int((qh >> UInt32(j)) & 1) << 4
                o[b * 32 + j] = d * Float(q - 16)
            }
        }
    }, quantize: KQuantizers.q5_0)
}

extension KQuantizers {
    /// `quantize_row_q5_0_ref`'s codes MIN(31, (int8)(x·id + 16.5)) for 32 values, 16 lanes at a
    /// time, when every x·id + 16.5 is a number in [0, 64) (so C's truncation is plain
    /// truncation); nil otherwise (NaN, infinities), where the scalar path follows C bit for bit.
    @inline(__always)
    static func fiveBitCodes(_ x: UnsafePointer<Float>, _ id: Float) -> (SIMD16<Int32>, SIMD16<Int32>)? {
        let raw = UnsafeRawPointer(x)
        let a = raw.loadUnaligned(as: SIMD16<Float>.self) * id + 16.5
        let b = raw.loadUnaligned(fromByteOffset: 64, as: SIMD16<Float>.self) * id + 16.5
        let zero = SIMD16<Float>(), limit = SIMD16<Float>(repeating: 64)
        // NaN fails both comparisons, so it falls to the scalar path too.
        guard all((a .>= zero) .& (a .< limit) .& (b .>= zero) .& (b .< limit)) else { return nil }
        return (truncatedCodes(a), truncatedCodes(b))
    }

    /// trunc(v) for lanes in [0, 64), clamped to 31: the nearest integer through the 1.5·2²³ bias,
    /// one less where that rounded up (no per-lane `truncf` call).
    @inline(__always)
    static func truncatedCodes(_ v: SIMD16<Float>) -> SIMD16<Int32> {
        let nearest = KQuantSearch.nearestInts(v)
        let roundedUp = unsafeBitCast((v + 12_582_912) - 12_582_912 .> v, to: SIMD16<Int32>.self)  // −1 where true
        return (nearest &+ roundedUp).clampedLanes(SIMD16(repeating: 0), SIMD16(repeating: 31))
    }

    /// `quantize_row_q5_0_ref` (d = max/−16, q = MIN(31, trunc(x/d + 16.5))) or, with importance,
    /// `quantize_row_q5_0_impl` (a weighted symmetric fit per 32, codes 0…31).
    static let q5_0: RowQuantizer = { x, count, importance, out in
        guard let importance else {
            for b in 0..<(count / 32) {
                let xb = x + 32 * b, y = out + b * 22
                let (max, _) = KQuantSearch.signedMaximum(xb, 32)
                let d = max / -16
                let id: Float = d != 0 ? 1 / d : 0
                KQuantSearch.storeHalf(d, y)
                if let (low, high) = fiveBitCodes(xb, id) {
                    packFiveBits({ j in UInt8(truncatingIfNeeded: j < 16 ? low[j] : high[j - 16]) }, qh: y + 2, qs: y + 6)
                } else {
                    packFiveBits({ j in UInt8(truncatingIfNeeded: Swift.min(31, Int(Int8(truncatingIfNeeded: truncatingInt(xb[j] * id + 16.5))))) },
                                 qh: y + 2, qs: y + 6)
                }
            }
            return
        }
        legacySymmetric(x, count, importance, out, blockBytes: 22, nmax: 16) { l, block in
            packFiveBits({ UInt8(bitPattern: l[$0]) }, qh: block + 2, qs: block + 6)
        }
    }
}
