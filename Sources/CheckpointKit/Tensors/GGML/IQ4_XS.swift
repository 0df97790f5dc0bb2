/// IQ4_XS: super-blocks of 256 (136 bytes): f16 d, 6-bit scales for eight blocks of 32 (high
/// bits in a u16, low nibbles in four bytes), then IQ4_NL's 4-bit codebook indices;
/// x ≈ d·(scale − 32)·kvalues[q].
extension GGMLType {
    /// GGUF id 23; written by `KQuantizers.iq4_XS`.
    public static let iq4_XS = GGMLType(rawValue: 23, name: "IQ4_XS", blockSize: 256, typeSize: 136, activations: .none, decode: { raw, o in
        for b in 0..<(o.count / 256) {
            let base = b * 136
            let d = GGMLBlock.half(raw, base)
            let high = raw.loadUnaligned(fromByteOffset: base + 2, as: UInt16.self).littleEndian
            for ib in 0..<8 {
                let ls = Int((raw[base + 4 + ib / 2] >> UInt8(4 * (ib % 2))) & 0xF) | Int((high >> UInt16(2 * ib)) & 3) << 4
                let dl = d * Float(ls - 32)
                for j in 0..<16 {
                    let byte = raw[base + 8 + 16 * ib + j]
                    o[b * 256 + 32 * ib + j] = dl * Float(KQuantizers.iq4Values[Int(byte & 0xF)])
                    o[b * 256 + 32 * ib + j + 16] = dl * Float(KQuantizers.iq4Values[Int(byte >> 4)])
                }
            }
        }
    }, quantize: KQuantizers.iq4_XS)
}

extension KQuantizers {
    /// `quantize_iq4_xs`: each super-block through `quantize_row_iq4_nl_impl` with 7 trial scales a side.
    static let iq4_XS: RowQuantizer = { x, count, importance, out in
        for block in 0..<(count / 256) {
            iq4(x + 256 * block, superBlock: 256, importance: importance.map { $0 + 256 * block }, out + 136 * block)
        }
    }
}
