/// Q8_K: super-blocks of 256 (292 bytes): an f32 d, 256 int8 q and sixteen int16 sums (used only
/// by dot products); x ≈ d·q. llama.cpp's intermediate type, rarely stored.
extension GGMLType {
    /// GGUF id 15; read only (ckpt decodes Q8_K but does not write it).
    public static let q8_K = GGMLType(rawValue: 15, name: "Q8_K", blockSize: 256, typeSize: 292, activations: .none, decode: { raw, o in
        for b in 0..<(o.count / 256) {
            let base = b * 292
            let d = Float(bitPattern: raw.loadUnaligned(fromByteOffset: base, as: UInt32.self).littleEndian)
            for j in 0..<256 { o[b * 256 + j] = d * Float(Int8(bitPattern: raw[base + 4 + j])) }
        }
    })
}
