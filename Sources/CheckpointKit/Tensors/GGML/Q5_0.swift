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
                packFiveBits({ j in UInt8(truncatingIfNeeded: Swift.min(31, Int(Int8(truncatingIfNeeded: truncatingInt(xb[j] * id + 16.5))))) },
                             qh: y + 2, qs: y + 6)
            }
            return
        }
        withUnsafeTemporaryAllocation(of: Int8.self, capacity: 32) { codes in
            let L = codes.baseAddress!
            legacy(x, count, importance, out, blockBytes: 22) { xb, weights, y in
                KQuantSearch.storeHalf(KQuantSearch.symmetric(32, 16, xb, L, weights: weights), y)
                packFiveBits({ UInt8(bitPattern: L[$0]) }, qh: y + 2, qs: y + 6)
            }
        }
    }
}
