/// Q5_0: blocks of 32 with f16 scale d, the fifth bits in a u32 and 4-bit low parts (22 bytes);
/// x ≈ d·(q − 16).
extension GGMLType {
    /// GGUF id 6; read only (ckpt decodes Q5_0 but does not write it).
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
    })
}
