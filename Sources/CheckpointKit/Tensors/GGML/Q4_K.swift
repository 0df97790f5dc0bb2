/// Q4_K: super-blocks of 256 (144 bytes): f16 d and dmin, twelve bytes of 6-bit scales and
/// mins for eight sub-blocks of 32, then 4-bit q; x ≈ d·scale·q − dmin·min.
extension GGMLType {
    /// GGUF id 12; read only (ckpt decodes Q4_K but does not write it).
    public static let q4_K = GGMLType(rawValue: 12, name: "Q4_K", blockSize: 256, typeSize: 144, activations: .none, decode: { raw, o in
        KQuantBlocks.decodeQ4Q5(raw, o, five: false)
    })
}

/// The K-quant layouts Q4_K and Q5_K share.
enum KQuantBlocks {
    static func decodeQ4Q5(_ raw: UnsafeRawBufferPointer, _ o: UnsafeMutableBufferPointer<Float>, five: Bool) {
        let stride = five ? 176 : 144
        for b in 0..<(o.count / 256) {
            let base = b * stride
            let d = GGMLBlock.half(raw, base), dmin = GGMLBlock.half(raw, base + 2)
            let (sc, mn) = GGMLBlock.scalesAndMins(raw, base + 4)
            let qh = base + 16, qs = base + (five ? 48 : 16)
            for s in 0..<8 {
                let scale = d * Float(sc[s]), minimum = dmin * Float(mn[s])
                let group = s / 2, shift = UInt8(4 * (s % 2))
                for i in 0..<32 {
                    var q = (raw[qs + group * 32 + i] >> shift) & 0x0F
                    if five { q |= ((raw[qh + i] >> UInt8(s)) & 1) << 4 }
                    o[b * 256 + s * 32 + i] = scale * Float(q) - minimum
                }
            }
        }
    }
}
