/// The unquantized GGML types: plain little-endian floats, one element per "block".
extension GGMLType {
    /// IEEE float32.
    public static let f32 = GGMLType(rawValue: 0, name: "F32", blockSize: 1, typeSize: 4, activations: .none, decode: { raw, out in
        UnsafeMutableRawBufferPointer(out).copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[0..<(out.count * 4)]))
    }, encode: { x, _ in Array(UnsafeRawBufferPointer(x)) }, quantize: { x, count, _, out in
        out.copyMemory(from: x, byteCount: count * 4)
    })

    /// IEEE float16.
    public static let f16 = GGMLType(rawValue: 1, name: "F16", blockSize: 1, typeSize: 2, activations: .f16, decode: { raw, out in
        FloatConversion.f16ToF32(UnsafeRawBufferPointer(rebasing: raw[0..<(out.count * 2)]), UnsafeMutableRawBufferPointer(out))
    }, encode: { x, threads in encodeFloats(x, to: .f16, threads: threads) }, quantize: { x, count, _, out in
        FloatConversion.f32ToF16Chunk(x, out, count)
    })

    /// bfloat16.
    public static let bf16 = GGMLType(rawValue: 30, name: "BF16", blockSize: 1, typeSize: 2, activations: .bf16, decode: { raw, out in
        FloatConversion.bf16ToF32(UnsafeRawBufferPointer(rebasing: raw[0..<(out.count * 2)]), UnsafeMutableRawBufferPointer(out))
    }, encode: { x, threads in encodeFloats(x, to: .bf16, threads: threads) }, quantize: { x, count, _, out in
        FloatConversion.f32ToBF16Chunk(x, out, count)
    })

    /// The same-named safetensors dtype, for the float types.
    public var floatDType: DType? { self == .f32 ? .f32 : self == .f16 ? .f16 : self == .bf16 ? .bf16 : nil }

    static func encodeFloats(_ x: UnsafeBufferPointer<Float>, to dtype: DType, threads: ThreadBudget) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: x.count * dtype.size)
        bytes.withUnsafeMutableBytes { FloatConversion.convert(UnsafeRawBufferPointer(x), from: .f32, to: dtype, into: $0, threads: threads) }
        return bytes
    }
}
