/// Q5_1: blocks of 32 with f16 scale d and minimum m, the fifth bits in a u32 and 4-bit low
/// parts (24 bytes); x ≈ d·q + m.
extension GGMLType {
    /// GGUF id 7; written by `KQuantizers.q5_1`.
    public static let q5_1 = GGMLType(rawValue: 7, name: "Q5_1", blockSize: 32, typeSize: 24, activations: .q8_0, decode: { raw, o in
        for b in 0..<(o.count / 32) {
            let base = b * 24
            let d = GGMLBlock.half(raw, base), m = GGMLBlock.half(raw, base + 2)
            let qh = raw.loadUnaligned(fromByteOffset: base + 4, as: UInt32.self).littleEndian
            for j in 0..<32 {
                let low = j < 16 ? raw[base + 8 + j] & 0xF : raw[base + 8 + j - 16] >> 4
                let q = Int(low) | Int((qh >> UInt32(j)) & 1) << 4
                o[b * 32 + j] = d * Float(q) + m
            }
        }
    }, quantize: KQuantizers.q5_1)
}

extension KQuantizers {
    /// `quantize_row_q5_1_ref` / `_impl`: Q4_1's with codes 0…31 (no clamp in the reference).
    static let q5_1: RowQuantizer = { x, count, importance, out in
        minimumOffset(x, count, importance, out, bits: 5)
    }
}
