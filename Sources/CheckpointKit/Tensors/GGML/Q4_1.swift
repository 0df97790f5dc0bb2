/// Q4_1: blocks of 32 with f16 scale d and minimum m, 4-bit q (20 bytes); x ≈ d·q + m.
extension GGMLType {
    /// GGUF id 3; read only (ckpt decodes Q4_1 but does not write it).
    public static let q4_1 = GGMLType(rawValue: 3, name: "Q4_1", blockSize: 32, typeSize: 20, activations: .q8_0, decode: { raw, o in
        for b in 0..<(o.count / 32) {
            let base = b * 20
            let d = GGMLBlock.half(raw, base), m = GGMLBlock.half(raw, base + 2)
            for j in 0..<16 {
                let byte = raw[base + 4 + j]
                o[b * 32 + j] = d * Float(byte & 0xF) + m
                o[b * 32 + j + 16] = d * Float(byte >> 4) + m
            }
        }
    })
}
