/// How llama.cpp's CPU backend rounds the activations it multiplies with a weight of a given GGML
/// type (the type's `vec_dot_type`): 8-bit blocks of 32 with an f16 scale for the legacy quants
/// (q8_0; q8_1 holds the same values), half precision for F16 / BF16 weights, nothing for F32.
/// ckpt applies it only when asked to reproduce llama.cpp's numbers; its own products use the
/// activations as they are.
///
/// K-quant weights are left unrounded on purpose: llama.cpp's vec_dot_type for them is q8_K, but
/// rounding to q8_K here moved SmolLM2 Q4_K_M away from llama-perplexity (+0.32% against −0.07%
/// without it), so its CPU path evidently does not round those products that way; measured, not
/// guessed.
public enum ActivationRounding: Sendable, Equatable {
    case none, f16, bf16, q8_0

    /// Rounds `x` in place, row by row (`rowLength` values a row, a whole number of blocks).
    public func apply(_ x: UnsafeMutableBufferPointer<Float>, rowLength: Int) {
        switch self {
        case .none: return
        case .f16: for i in x.indices { x[i] = FloatConversion.f16ToF32Reference(FloatConversion.f32ToF16Reference(x[i])) }
        case .bf16: for i in x.indices { x[i] = FloatConversion.bf16ToF32Reference(FloatConversion.f32ToBF16Reference(x[i])) }
        case .q8_0:
            precondition(rowLength % 32 == 0 && x.count % rowLength == 0)
            for b in 0..<(x.count / 32) { Self.roundQ8_0(UnsafeMutableBufferPointer(rebasing: x[(b * 32)..<(b * 32 + 32)])) }
        }
    }

    /// Whether rows of `rowLength` values can be rounded (whole blocks).
    public func fits(rowLength: Int) -> Bool {
        switch self {
        case .q8_0: return rowLength % 32 == 0
        default: return true
        }
    }

    /// `quantize_row_q8_0_ref` then back: d = absmax/127, q = roundf(x·(1/d)), value q·fp16(d).
    static func roundQ8_0(_ block: UnsafeMutableBufferPointer<Float>) {
        var amax: Float = 0
        for v in block { amax = max(amax, abs(v)) }
        let d = amax / 127
        let inverse: Float = d == 0 ? 0 : 1 / d
        let stored = FloatConversion.f16ToF32Reference(FloatConversion.f32ToF16Reference(d))
        for j in block.indices { block[j] = (block[j] * inverse).rounded(.toNearestOrAwayFromZero) * stored }
    }
}
