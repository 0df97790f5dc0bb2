/// Q5_K: Q4_K's super-block (176 bytes) with 32 bytes of fifth bits before the low nibbles.
extension GGMLType {
    /// GGUF id 13; read only (ckpt decodes Q5_K but does not write it).
    public static let q5_K = GGMLType(rawValue: 13, name: "Q5_K", blockSize: 256, typeSize: 176, activations: .none, decode: { raw, o in
        KQuantBlocks.decodeQ4Q5(raw, o, five: true)
    })
}
