/// Reads elements of any supported dtype as f32, a chunk at a time: what statistics, quantizers
/// and the forward pass consume. Integers and F64 convert with one rounding; BOOL reads as 0/1.
public enum FloatValues {
    /// Writes elements `range` of `view` as f32 into `destination` (count = range.count).
    public static func read(_ view: TensorView, range: Range<Int>, into destination: UnsafeMutablePointer<Float>) {
        view.withBytes { read(dtype: view.dtype, $0.baseAddress!, range: range, into: destination) }
    }

    /// Elements `range` of raw `dtype` data at `src` as f32 into `destination`.
    static func read(dtype: DType, _ src: UnsafeRawPointer, range: Range<Int>, into destination: UnsafeMutablePointer<Float>) {
        let dst = UnsafeMutableRawPointer(destination)
        let n = range.count
        let start = range.lowerBound
        switch dtype {
        case .f32:
            dst.copyMemory(from: src + start * 4, byteCount: n * 4)
        case .bf16:
            FloatConversion.bf16ToF32Chunk(src + start * 2, dst, n)
        case .f16:
            FloatConversion.f16ToF32Chunk(src + start * 2, dst, n)
        case .f64:
            for i in 0..<n { destination[i] = Float(src.loadUnaligned(fromByteOffset: (start + i) * 8, as: Double.self)) }
        case .f8e4m3:
            for i in 0..<n { destination[i] = float8E4M3FNToF32(src.load(fromByteOffset: start + i, as: UInt8.self)) }
        case .f8e5m2:
            for i in 0..<n {
                let h = UInt16(src.load(fromByteOffset: start + i, as: UInt8.self)) << 8
                destination[i] = FloatConversion.f16ToF32Reference(h)
            }
        case .bool, .u8:
            for i in 0..<n { destination[i] = Float(src.load(fromByteOffset: start + i, as: UInt8.self)) }
        case .i8:
            for i in 0..<n { destination[i] = Float(src.load(fromByteOffset: start + i, as: Int8.self)) }
        case .i16:
            for i in 0..<n { destination[i] = Float(src.loadUnaligned(fromByteOffset: (start + i) * 2, as: Int16.self)) }
        case .u16:
            for i in 0..<n { destination[i] = Float(src.loadUnaligned(fromByteOffset: (start + i) * 2, as: UInt16.self)) }
        case .i32:
            for i in 0..<n { destination[i] = Float(src.loadUnaligned(fromByteOffset: (start + i) * 4, as: Int32.self)) }
        case .u32:
            for i in 0..<n { destination[i] = Float(src.loadUnaligned(fromByteOffset: (start + i) * 4, as: UInt32.self)) }
        case .i64:
            for i in 0..<n { destination[i] = Float(src.loadUnaligned(fromByteOffset: (start + i) * 8, as: Int64.self)) }
        case .u64:
            for i in 0..<n { destination[i] = Float(src.loadUnaligned(fromByteOffset: (start + i) * 8, as: UInt64.self)) }
        }
    }

    /// The whole tensor as a new f32 array; the common float dtypes convert on `threads`.
    public static func array(_ view: TensorView, threads: ThreadBudget = .single) -> [Float] {
        let n = view.elementCount
        return [Float](unsafeUninitializedCapacity: n) { buffer, initialized in
            read(view, into: buffer, threads: threads)
            initialized = n
        }
    }

    /// The whole tensor as a new f32 array and the flat index of its first NaN or ±Inf (nil when every
    /// value is finite). Each piece of 64 Ki values is checked right after it is widened, while it is
    /// still in cache, instead of in a second pass over the array; the index is the same for any thread count.
    public static func arrayFindingNonFinite(_ view: TensorView, threads: ThreadBudget = .single) -> (values: [Float], firstNonFinite: Int?) {
        let n = view.elementCount
        guard n > 0 else { return ([], nil) }
        let pieceSize = FloatConversion.chunkElements
        let pieces = (n + pieceSize - 1) / pieceSize
        var firstPerPiece = [Int](repeating: .max, count: pieces)
        let values = [Float](unsafeUninitializedCapacity: n) { buffer, initialized in
            view.withBytes { raw in
                firstPerPiece.withUnsafeMutableBufferPointer { first in
                    threads.forEachChunk(pieces) { piece in
                        let range = (piece * pieceSize)..<min(n, (piece + 1) * pieceSize)
                        let destination = buffer.baseAddress! + range.lowerBound
                        read(dtype: view.dtype, raw.baseAddress!, range: range, into: destination)
                        if let i = firstNonFinite(destination, count: range.count) { first[piece] = range.lowerBound + i }
                    }
                }
            }
            initialized = n
        }
        let first = firstPerPiece.min() ?? .max
        return (values, first == .max ? nil : first)
    }

    /// Reference: the index of the first NaN or ±Inf among `count` floats at `values`, one at a time.
    static func firstNonFiniteReference(_ values: UnsafePointer<Float>, count: Int) -> Int? {
        (0..<count).first { !values[$0].isFinite }
    }

    /// Fast: `firstNonFiniteReference` run only on a piece `allFinite`'s SIMD exponent scan flags.
    @inline(__always)
    static func firstNonFinite(_ values: UnsafePointer<Float>, count: Int) -> Int? {
        allFinite(UnsafeBufferPointer(start: values, count: count)) ? nil : firstNonFiniteReference(values, count: count)
    }

    /// Raw `dtype` bytes (F32, F16, BF16 or F64) as f32 values: an encoded part read back.
    public static func array(_ bytes: [UInt8], dtype: DType) -> [Float] {
        var out = [Float](repeating: 0, count: bytes.count / dtype.size)
        bytes.withUnsafeBytes { src in out.withUnsafeMutableBytes { FloatConversion.convert(src, from: dtype, to: .f32, into: $0, threads: .single) } }
        return out
    }

    /// f32 `values` as raw `dtype` bytes (F32, F16, BF16 or F64), each rounded once: a part to write.
    public static func bytes(_ values: [Float], as dtype: DType) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: values.count * dtype.size)
        values.withUnsafeBytes { src in out.withUnsafeMutableBytes { FloatConversion.convert(src, from: .f32, to: dtype, into: $0, threads: .single) } }
        return out
    }

    /// The whole tensor into `out` (elementCount values); the common float dtypes convert on `threads`.
    public static func read(_ view: TensorView, into out: UnsafeMutableBufferPointer<Float>, threads: ThreadBudget) {
        guard view.elementCount > 0 else { return }
        if [.f32, .f16, .bf16, .f64].contains(view.dtype) {
            view.withBytes { FloatConversion.convert($0, from: view.dtype, to: .f32, into: UnsafeMutableRawBufferPointer(out), threads: threads) }
        } else {
            read(view, range: 0..<view.elementCount, into: out.baseAddress!)
        }
    }

    /// float8_e4m3fn (OCP FP8, no infinities; 0x7F/0xFF are NaN), exact in f32.
    public static func float8E4M3FNToF32(_ byte: UInt8) -> Float {
        let negative = byte & 0x80 != 0
        let exponent = Int(byte >> 3 & 0xF)
        let mantissa = Float(byte & 0x7)
        let magnitude: Float
        if exponent == 0xF && byte & 0x7 == 0x7 {
            return negative ? -Float.nan : Float.nan
        } else if exponent == 0 {
            magnitude = mantissa * 0x1p-9  // subnormal: m/8 × 2^-6
        } else {
            magnitude = (1 + mantissa / 8) * Float(sign: .plus, exponent: exponent - 7, significand: 1)
        }
        return negative ? -magnitude : magnitude
    }
}
