/// Q6_K: super-blocks of 256 (210 bytes): low 4 bits (128 bytes), high 2 bits (64), sixteen
/// int8 sub-block scales, f16 d; x ≈ d·scale·(q − 32).
extension GGMLType {
    /// GGUF id 14; read only (ckpt decodes Q6_K but does not write it).
    public static let q6_K = GGMLType(rawValue: 14, name: "Q6_K", blockSize: 256, typeSize: 210, activations: .none, decode: { raw, o in
        for b in 0..<(o.count / 256) {
            let base = b * 210
            let ql = base, qh = base + 128, scales = base + 192
            let d = GGMLBlock.half(raw, base + 208)
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
    })
}
