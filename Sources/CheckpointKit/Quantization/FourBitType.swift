/// The two 4-bit codebooks of bitsandbytes: a nibble is an index into 16 float32 values.
public enum FourBitType: String, Sendable, CaseIterable {
    /// NormalFloat4: quantiles of N(0, 1), sorted, so the nibble order is the value order.
    case nf4
    /// bitsandbytes' FP4 (1 sign, 2 exponent, 1 mantissa bit), normalised to [-1, 1].
    case fp4

    /// `bitsandbytes.functional.get_4bit_type(name)` as float32 bit patterns (0.50.2). FP4's
    /// list holds the integer 0 twice (Python's `-0` is 0), so codes 0 and 8 are both +0.0.
    static let nf4Bits: [UInt32] = [
        0xBF80_0000, 0xBF32_39B1, 0xBF06_6B30, 0xBECA_32A0, 0xBE91_A24D, 0xBE3D_353F, 0xBDBA_7871, 0x0000_0000,
        0x3DA2_FAFF, 0x3E24_CAE3, 0x3E7C_04DD, 0x3EAD_033A, 0x3EE1_A4B8, 0x3F10_07AB, 0x3F39_13B3, 0x3F80_0000,
    ]
    static let fp4Bits: [UInt32] = [
        0x0000_0000, 0x3BAA_AAAB, 0x3F2A_AAAB, 0x3F80_0000, 0x3EAA_AAAB, 0x3F00_0000, 0x3E2A_AAAB, 0x3E80_0000,
        0x0000_0000, 0xBBAA_AAAB, 0xBF2A_AAAB, 0xBF80_0000, 0xBEAA_AAAB, 0xBF00_0000, 0xBE2A_AAAB, 0xBE80_0000,
    ]

    /// The 16 values, indexed by nibble (the `quant_map` tensor of the file).
    public var code: [Float] {
        (self == .nf4 ? Self.nf4Bits : Self.fp4Bits).map { Float(bitPattern: $0) }
    }

    /// Nibbles in ascending value order (a stable argsort, as torch gives for these tables).
    var order: [UInt8] {
        let code = self.code
        return (0..<16).sorted { code[$0] != code[$1] ? code[$0] < code[$1] : $0 < $1 }.map { UInt8($0) }
    }

    /// The 15 float32 midpoints between neighbours in value order: `(a + b) / 2` in float32,
    /// exactly as bitsandbytes computes the bounds it bucketizes against.
    var midpoints: [Float] {
        let code = self.code, order = self.order
        return (0..<15).map { (code[Int(order[$0])] + code[Int(order[$0 + 1])]) / 2 }
    }

    /// The quant_state / config spelling.
    public var name: String { rawValue }
}
