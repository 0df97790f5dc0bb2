/// Q5_K: Q4_K's super-block (176 bytes) with 32 bytes of fifth bits before the low nibbles.
extension GGMLType {
    /// GGUF id 13; written by `KQuantizers.q5_K`.
    public static let q5_K = GGMLType(rawValue: 13, name: "Q5_K", blockSize: 256, typeSize: 176, activations: .none, decode: { raw, o in
        KQuantBlocks.decodeQ4Q5(raw, o, five: true)
    }, quantize: KQuantizers.q5_K)
}

extension KQuantizers {
    /// `quantize_row_q5_K_ref` / `quantize_row_q5_K_impl` (Q4_K's with codes 0…31).
    static let q5_K: RowQuantizer = { x, count, importance, out in fourOrFiveBit(x, count, importance, out, five: true) }
}
