/// Q3_K: super-blocks of 256 (110 bytes): the high-bit mask (32 bytes), 2-bit low parts (64),
/// twelve bytes of 6-bit signed scales for sixteen sub-blocks of 16, f16 d; x ≈ d·scale·q with
/// q = low − 4 where the mask bit is clear.
extension GGMLType {
    /// GGUF id 11; read only (ckpt decodes Q3_K but does not write it).
    public static let q3_K = GGMLType(rawValue: 11, name: "Q3_K", blockSize: 256, typeSize: 110, activations: .none, decode: { raw, o in
        for b in 0..<(o.count / 256) {
            let base = b * 110
            let hmask = base, qs = base + 32, packed = base + 96
            let d = GGMLBlock.half(raw, base + 108)
            var scale = [Float](repeating: 0, count: 16)
            for j in 0..<16 {
                let low = j < 8 ? raw[packed + j] & 0x0F : raw[packed + j - 8] >> 4
                let high = (raw[packed + 8 + j % 4] >> UInt8(2 * (j / 4))) & 0x03
                scale[j] = d * Float(Int(low | high << 4) - 32)
            }
            for e in 0..<256 {
                let group = e / 128, shift = UInt8(2 * ((e % 128) / 32)), i = e % 32
                let low = Int((raw[qs + group * 32 + i] >> shift) & 3)
                let bit = (raw[hmask + i] >> UInt8(e / 32)) & 1
                o[b * 256 + e] = scale[e / 16] * Float(bit == 1 ? low : low - 4)
            }
        }
    })
}
