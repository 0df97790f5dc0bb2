/// Q4_0: blocks of 32 with one f16 scale d and 4-bit q (18 bytes); x ≈ d·(q − 8); element j in
/// the low nibble of byte j, element j+16 in its high nibble.
extension GGMLType {
    /// GGUF id 2; decoded here, written through `Q4_0Codec.quantize`.
    public static let q4_0 = GGMLType(rawValue: 2, name: "Q4_0", blockSize: 32, typeSize: 18, activations: .q8_0, decode: { raw, o in
        for b in 0..<(o.count / 32) {
            let base = b * 18
            let d = GGMLBlock.half(raw, base)
            for j in 0..<16 {
                let byte = raw[base + 2 + j]
                o[b * 32 + j] = d * Float(Int(byte & 0xF) - 8)
                o[b * 32 + j + 16] = d * Float(Int(byte >> 4) - 8)
            }
        }
    }, encode: { x, _ in Q4_0Codec.quantize(x) })
}

/// Q4_0 quantization as llama.cpp's reference quantizer makes it.
public enum Q4_0Codec {
    /// Per 32 values the element of largest magnitude (the first, on ties) gives d = max / −8;
    /// q = trunc(x·(1/d) + 8.5) clipped to 0…15.
    public static func quantize(_ x: UnsafeBufferPointer<Float>) -> [UInt8] {
        let blocks = x.count / 32
        var out = [UInt8](repeating: 0, count: blocks * 18)
        for b in 0..<blocks {
            var best = 0
            for j in 1..<32 where abs(x[b * 32 + j]) > abs(x[b * 32 + best]) { best = j }
            let d = x[b * 32 + best] / -8
            let inverse: Float = d == 0 ? 0 : 1 / d
            GGMLBlock.storeHalf(d, &out, b * 18)
            func q(_ j: Int) -> UInt8 {
                let v = (x[b * 32 + j] * inverse + 8.5).rounded(.towardZero)
                return UInt8(min(max(v, 0), 15))
            }
            for j in 0..<16 { out[b * 18 + 2 + j] = q(j) | q(j + 16) << 4 }
        }
        return out
    }
}
