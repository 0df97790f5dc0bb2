/// Q2_K: super-blocks of 256 (84 bytes): sixteen bytes of 4-bit scale and min per sub-block of
/// 16, 2-bit q (64 bytes), f16 d and dmin; x ≈ d·scale·q − dmin·min.
extension GGMLType {
    /// GGUF id 10; read only (ckpt decodes Q2_K but does not write it).
    public static let q2_K = GGMLType(rawValue: 10, name: "Q2_K", blockSize: 256, typeSize: 84, activations: .none, decode: { raw, o in
        for b in 0..<(o.count / 256) {
            let base = b * 84
            let scales = base, qs = base + 16
            let d = GGMLBlock.half(raw, base + 80), dmin = GGMLBlock.half(raw, base + 82)
            for e in 0..<256 {
                // Element e: 32-byte group e/128, shift 2·((e%128)/32), byte e%32 of the group.
                let group = e / 128, shift = UInt8(2 * ((e % 128) / 32)), i = e % 32
                let q = (raw[qs + group * 32 + i] >> shift) & 3
                let sc = raw[scales + e / 16]
                o[b * 256 + e] = d * Float(sc & 0xF) * Float(q) - dmin * Float(sc >> 4)
            }
        }
    })
}
