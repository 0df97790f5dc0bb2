/// Conversions between the float formats checkpoints use: F32, F16 and BF16 (and F64 in).
///
/// Rounding is to nearest, ties to even, as torch does. Overflow to F16 gives ±Inf. NaN stays
/// NaN, as the canonical quiet NaN with its sign kept (0x7E00 / 0x7FC0 | sign; torch writes the
/// same for F16, while its own BF16 spelling differs between its scalar and vector paths).
///
/// Integer SIMD vectors are compared only against vectors: comparing with a scalar literal
/// compiles to a lane-by-lane loop through the stack (Swift 6.3, x86-64), 20× slower.
///
/// Each fast kernel is SIMD over 16 elements with a scalar tail and runs chunks on several
/// threads; its scalar reference stands beside it, and the tests hold the two together over
/// every 16-bit pattern and the f32 edge cases.
public enum FloatConversion {
    /// Elements per parallel chunk: large enough to amortise scheduling, small enough to balance.
    static let chunkElements = 1 << 16

    // MARK: - Scalar references: one value at a time, obviously right.

    /// Reference: BF16 bits to f32, exact (the bits become the top half).
    public static func bf16ToF32Reference(_ bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }

    /// Reference: F16 bits to f32, exact for every pattern; a NaN keeps its payload and is quieted.
    public static func f16ToF32Reference(_ bits: UInt16) -> Float {
        let sign = UInt32(bits & 0x8000) << 16
        let exponent = Int(bits >> 10 & 0x1F)
        let mantissa = UInt32(bits & 0x3FF)
        if exponent == 0x1F {
            // Inf, or NaN with its payload, quieted as torch and IEEE conversions do.
            let quiet: UInt32 = mantissa != 0 ? 0x0040_0000 : 0
            return Float(bitPattern: sign | 0x7F80_0000 | mantissa << 13 | quiet)
        }
        if exponent == 0 {
            // Zero or subnormal: mantissa × 2^-24, exact in f32.
            let magnitude = Float(mantissa) * Float(sign: .plus, exponent: -24, significand: 1)
            return Float(bitPattern: sign | magnitude.bitPattern)
        }
        return Float(bitPattern: sign | UInt32(exponent - 15 + 127) << 23 | mantissa << 13)
    }

    /// Reference: f32 to BF16 bits, round to nearest even; NaN becomes 0x7FC0 with its sign.
    public static func f32ToBF16Reference(_ value: Float) -> UInt16 {
        let bits = value.bitPattern
        if value.isNaN { return UInt16(bits >> 16 & 0x8000) | 0x7FC0 }
        let lsb = (bits >> 16) & 1
        return UInt16(truncatingIfNeeded: (bits &+ 0x7FFF &+ lsb) >> 16)
    }

    /// Reference: f32 to F16 bits, one rounding to nearest even; overflow gives ±Inf, NaN 0x7E00 with its sign.
    public static func f32ToF16Reference(_ value: Float) -> UInt16 {
        let sign = UInt16(value.bitPattern >> 16 & 0x8000)
        if value.isNaN { return sign | 0x7E00 }
        let magnitude = abs(value)
        if magnitude.isInfinite { return sign | 0x7C00 }
        // Work in doubles: exact for every f32, so one rounding step decides everything.
        let m = Double(magnitude)
        let smallest = 0x1p-24  // f16's smallest subnormal
        if m < 0x1p-14 {
            // Subnormal range: a multiple of 2^-24, round to nearest even integer count.
            let units = (m / smallest).rounded(.toNearestOrEven)
            return sign | UInt16(units)  // units == 1024 reaches the smallest normal: still right
        }
        var exponent = Int(m.exponent)
        let ulp = Double(sign: .plus, exponent: exponent - 10, significand: 1)
        var significand = (m / ulp).rounded(.toNearestOrEven)  // in [1024, 2048]
        if significand == 2048 {
            significand = 1024
            exponent += 1
        }
        if exponent > 15 { return sign | 0x7C00 }
        return sign | UInt16(exponent + 15) << 10 | (UInt16(significand) - 1024)
    }

    /// Fast: one f32 to F16 bits, the reference's result (NaN made 0x7E00 with its sign): for the
    /// per-block scales of the GGML quantizers, where first the reference's f64 steps and then
    /// `Float16(_:)` (a libgcc call on this target, 2% of a Q4_0 export) showed in profiles. The
    /// lanes of `f32ToF16Vector`, one at a time.
    @inline(__always)
    public static func f32ToF16(_ value: Float) -> UInt16 {
        let bits = value.bitPattern
        let sign = UInt16(truncatingIfNeeded: bits >> 16) & 0x8000
        let magnitude = bits & 0x7FFF_FFFF
        // 2^16 and above (and Inf, NaN): f16's infinity, or its quiet NaN.
        if magnitude >= (127 + 16) << 23 { return sign | (magnitude > 0x7F80_0000 ? 0x7E00 : 0x7C00) }
        if magnitude < 113 << 23 {
            // f16 subnormal or zero: float addition aligns the bits, rounding to even.
            let magic = Float(bitPattern: ((127 - 15) + (23 - 10) + 1) << 23)
            return sign | UInt16(truncatingIfNeeded: (Float(bitPattern: magnitude) + magic).bitPattern &- magic.bitPattern)
        }
        // Normal: rebias the exponent and round to nearest even by integer addition.
        let rounded = (magnitude &+ (UInt32(bitPattern: Int32(15 - 127)) << 23) &+ 0xFFF &+ ((magnitude >> 13) & 1)) >> 13
        return sign | UInt16(truncatingIfNeeded: rounded)
    }

    // MARK: - Fast kernels over raw buffers (unaligned sources are fine).

    /// Fast: BF16 values in `source` to f32 in `destination` (4 bytes per element); bit-identical to the reference.
    public static func bf16ToF32(_ source: UnsafeRawBufferPointer, _ destination: UnsafeMutableRawBufferPointer,
                                 threads: ThreadBudget = .allCores) {
        let count = source.count / 2
        precondition(destination.count >= count * 4)
        parallelChunks(count: count, threads: threads) { range in
            bf16ToF32Chunk(source.baseAddress! + range.lowerBound * 2, destination.baseAddress! + range.lowerBound * 4,
                           range.count)
        }
    }

    /// Fast: F16 values in `source` to f32 in `destination` (4 bytes per element); bit-identical to the reference.
    public static func f16ToF32(_ source: UnsafeRawBufferPointer, _ destination: UnsafeMutableRawBufferPointer,
                                threads: ThreadBudget = .allCores) {
        let count = source.count / 2
        precondition(destination.count >= count * 4)
        parallelChunks(count: count, threads: threads) { range in
            f16ToF32Chunk(source.baseAddress! + range.lowerBound * 2, destination.baseAddress! + range.lowerBound * 4,
                          range.count)
        }
    }

    /// Fast: f32 values in `source` to BF16 in `destination` (2 bytes per element); bit-identical to the reference.
    public static func f32ToBF16(_ source: UnsafeRawBufferPointer, _ destination: UnsafeMutableRawBufferPointer,
                                 threads: ThreadBudget = .allCores) {
        let count = source.count / 4
        precondition(destination.count >= count * 2)
        parallelChunks(count: count, threads: threads) { range in
            f32ToBF16Chunk(source.baseAddress! + range.lowerBound * 4, destination.baseAddress! + range.lowerBound * 2,
                           range.count)
        }
    }

    /// Fast: f32 values in `source` to F16 in `destination` (2 bytes per element); bit-identical to the reference.
    public static func f32ToF16(_ source: UnsafeRawBufferPointer, _ destination: UnsafeMutableRawBufferPointer,
                                threads: ThreadBudget = .allCores) {
        let count = source.count / 4
        precondition(destination.count >= count * 2)
        parallelChunks(count: count, threads: threads) { range in
            f32ToF16Chunk(source.baseAddress! + range.lowerBound * 4, destination.baseAddress! + range.lowerBound * 2,
                          range.count)
        }
    }

    /// BF16 → F16 through an exact f32 intermediate held in registers: a single rounding.
    public static func bf16ToF16(_ source: UnsafeRawBufferPointer, _ destination: UnsafeMutableRawBufferPointer,
                                 threads: ThreadBudget = .allCores) {
        let count = source.count / 2
        precondition(destination.count >= count * 2)
        parallelChunks(count: count, threads: threads) { range in
            halfToHalfChunk(source.baseAddress! + range.lowerBound * 2, destination.baseAddress! + range.lowerBound * 2,
                            range.count, bf16ToF16Vector)
        }
    }

    /// F16 → BF16 through an exact f32 intermediate held in registers: a single rounding.
    public static func f16ToBF16(_ source: UnsafeRawBufferPointer, _ destination: UnsafeMutableRawBufferPointer,
                                 threads: ThreadBudget = .allCores) {
        let count = source.count / 2
        precondition(destination.count >= count * 2)
        parallelChunks(count: count, threads: threads) { range in
            halfToHalfChunk(source.baseAddress! + range.lowerBound * 2, destination.baseAddress! + range.lowerBound * 2,
                            range.count) { f32ToBF16Vector(f16ToF32Vector($0)) }
        }
    }

    /// BF16 → F16 for 16 lanes. When every exponent lands in f16's normal range (weights almost
    /// always do) the conversion is exact bit surgery: rebias the exponent, widen the 7-bit
    /// mantissa to 10 bits. Otherwise the vector takes the general path through f32.
    @inline(__always)
    static func bf16ToF16Vector(_ h: SIMD16<UInt16>) -> SIMD16<UInt16> {
        let exponent = (h &>> SIMD16<UInt16>(repeating: 7)) & SIMD16<UInt16>(repeating: 0xFF)
        let outside = (exponent .< SIMD16<UInt16>(repeating: 113)) .| (exponent .> SIMD16<UInt16>(repeating: 142))
        if anyLane(outside) { return f32ToF16Vector(SIMD16<UInt32>(truncatingIfNeeded: h) &<< 16) }
        let sign = h & SIMD16<UInt16>(repeating: 0x8000)
        let mantissa = h & SIMD16<UInt16>(repeating: 0x7F)
        return sign | (exponent &- SIMD16<UInt16>(repeating: 112)) &<< SIMD16<UInt16>(repeating: 10)
            | mantissa &<< SIMD16<UInt16>(repeating: 3)
    }

    @inline(__always)
    static func halfToHalfChunk(_ src: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer, _ count: Int,
                                _ convert: (SIMD16<UInt16>) -> SIMD16<UInt16>) {
        var i = 0
        while i + 16 <= count {
            let h = src.loadUnaligned(fromByteOffset: i * 2, as: SIMD16<UInt16>.self)
            dst.storeBytes(of: convert(h), toByteOffset: i * 2, as: SIMD16<UInt16>.self)
            i += 16
        }
        if i < count {
            var tail = SIMD16<UInt16>()
            for k in 0..<(count - i) { tail[k] = src.loadUnaligned(fromByteOffset: (i + k) * 2, as: UInt16.self) }
            let out = convert(tail)
            for k in 0..<(count - i) { dst.storeBytes(of: out[k], toByteOffset: (i + k) * 2, as: UInt16.self) }
        }
    }

    static func parallelChunks(count: Int, threads: ThreadBudget, _ body: (Range<Int>) -> Void) {
        let chunks = (count + chunkElements - 1) / chunkElements
        threads.forEachChunk(chunks) { chunk in
            let start = chunk * chunkElements
            body(start..<min(count, start + chunkElements))
        }
    }

    // MARK: - Chunk kernels

    @inline(__always)
    static func bf16ToF32Chunk(_ src: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer, _ count: Int) {
        var i = 0
        while i + 16 <= count {
            let h = src.loadUnaligned(fromByteOffset: i * 2, as: SIMD16<UInt16>.self)
            let w = SIMD16<UInt32>(truncatingIfNeeded: h) &<< 16
            dst.storeBytes(of: w, toByteOffset: i * 4, as: SIMD16<UInt32>.self)
            i += 16
        }
        while i < count {
            let h = src.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)
            dst.storeBytes(of: UInt32(h) << 16, toByteOffset: i * 4, as: UInt32.self)
            i += 1
        }
    }

    @inline(__always)
    static func f16ToF32Vector(_ h: SIMD16<UInt16>) -> SIMD16<UInt32> {
        // Giesen's branch-free half→float: shift exponent and mantissa into place, rebias, then
        // fix the two special exponents (Inf/NaN and zero/subnormal) with masks.
        let wide = SIMD16<UInt32>(truncatingIfNeeded: h)
        var o = (wide & 0x7FFF) &<< 13
        let exponent = o & (0x7C00 << 13)
        o &+= (127 - 15) << 23
        o &+= SIMD16<UInt32>(repeating: (128 - 16) << 23).replacing(with: 0, where: exponent .!= SIMD16<UInt32>(repeating: (0x7C00 << 13)))
        let isSubnormal = exponent .== SIMD16<UInt32>(repeating: 0)
        let magic = Float(bitPattern: 113 << 23)
        let renormalised = unsafeBitCast(unsafeBitCast(o &+ (1 << 23), to: SIMD16<Float>.self) - magic,
                                         to: SIMD16<UInt32>.self)
        o.replace(with: renormalised, where: isSubnormal)
        // NaN (exponent all ones, mantissa non-zero) comes out quiet, as from torch.
        o |= SIMD16<UInt32>(repeating: 0x0040_0000).replacing(with: 0, where: (wide & 0x7FFF) .<= SIMD16<UInt32>(repeating: 0x7C00))
        return o | (wide & 0x8000) &<< 16
    }

    @inline(__always)
    static func f16ToF32Chunk(_ src: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer, _ count: Int) {
        var i = 0
        while i + 16 <= count {
            let h = src.loadUnaligned(fromByteOffset: i * 2, as: SIMD16<UInt16>.self)
            dst.storeBytes(of: f16ToF32Vector(h), toByteOffset: i * 4, as: SIMD16<UInt32>.self)
            i += 16
        }
        if i < count {
            var tail = SIMD16<UInt16>()
            for k in 0..<(count - i) { tail[k] = src.loadUnaligned(fromByteOffset: (i + k) * 2, as: UInt16.self) }
            let w = f16ToF32Vector(tail)
            for k in 0..<(count - i) { dst.storeBytes(of: w[k], toByteOffset: (i + k) * 4, as: UInt32.self) }
        }
    }

    @inline(__always)
    static func f32ToBF16Vector(_ u: SIMD16<UInt32>) -> SIMD16<UInt16> {
        let lsb = (u &>> 16) & 1
        let rounded = (u &+ 0x7FFF &+ lsb) &>> 16
        let isNaN = (u & 0x7FFF_FFFF) .> SIMD16<UInt32>(repeating: 0x7F80_0000)
        let quietNaN = ((u &>> 16) & 0x8000) | 0x7FC0
        return SIMD16<UInt16>(truncatingIfNeeded: rounded.replacing(with: quietNaN, where: isNaN))
    }

    @inline(__always)
    static func f32ToBF16Chunk(_ src: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer, _ count: Int) {
        var i = 0
        while i + 16 <= count {
            let u = src.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<UInt32>.self)
            dst.storeBytes(of: f32ToBF16Vector(u), toByteOffset: i * 2, as: SIMD16<UInt16>.self)
            i += 16
        }
        if i < count {
            var tail = SIMD16<UInt32>()
            for k in 0..<(count - i) { tail[k] = src.loadUnaligned(fromByteOffset: (i + k) * 4, as: UInt32.self) }
            let h = f32ToBF16Vector(tail)
            for k in 0..<(count - i) { dst.storeBytes(of: h[k], toByteOffset: (i + k) * 2, as: UInt16.self) }
        }
    }

    @inline(__always)
    static func f32ToF16Vector(_ bits: SIMD16<UInt32>) -> SIMD16<UInt16> {
        // Giesen's float_to_half_fast3_rtne, with its branches turned into masks.
        let sign = bits & 0x8000_0000
        let magnitude = bits ^ sign
        // Inf or NaN (or finite values that overflow f16).
        let special = SIMD16<UInt32>(repeating: 0x7C00).replacing(with: 0x7E00, where: magnitude .> SIMD16<UInt32>(repeating: 0x7F80_0000))
        // Values whose f16 is subnormal or zero: float addition aligns the bits, rounding to even.
        let denormMagic = Float(bitPattern: ((127 - 15) + (23 - 10) + 1) << 23)
        let subnormal = unsafeBitCast(unsafeBitCast(magnitude, to: SIMD16<Float>.self) + denormMagic,
                                      to: SIMD16<UInt32>.self) &- denormMagic.bitPattern
        // Normal values: rebias the exponent and round to nearest even by integer addition.
        let mantissaOdd = (magnitude &>> 13) & 1
        let normal = (magnitude &+ (UInt32(bitPattern: Int32(15 - 127)) << 23) &+ 0xFFF &+ mantissaOdd) &>> 13
        var result = normal.replacing(with: subnormal, where: magnitude .< SIMD16<UInt32>(repeating: (113 << 23)))
        result.replace(with: special, where: magnitude .>= SIMD16<UInt32>(repeating: ((127 + 16) << 23)))
        return SIMD16<UInt16>(truncatingIfNeeded: result | sign &>> 16)
    }

    @inline(__always)
    static func f32ToF16Chunk(_ src: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer, _ count: Int) {
        var i = 0
        while i + 16 <= count {
            let u = src.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<UInt32>.self)
            dst.storeBytes(of: f32ToF16Vector(u), toByteOffset: i * 2, as: SIMD16<UInt16>.self)
            i += 16
        }
        if i < count {
            var tail = SIMD16<UInt32>()
            for k in 0..<(count - i) { tail[k] = src.loadUnaligned(fromByteOffset: (i + k) * 4, as: UInt32.self) }
            let h = f32ToF16Vector(tail)
            for k in 0..<(count - i) { dst.storeBytes(of: h[k], toByteOffset: (i + k) * 2, as: UInt16.self) }
        }
    }
}

extension FloatConversion {
    /// True when `convert` handles this pair: any float dtype in, F32/F16/BF16 out (or the
    /// same dtype, copied).
    public static func canConvert(from source: DType, to target: DType) -> Bool {
        source == target || ([.f32, .f16, .bf16, .f64].contains(source) && [.f32, .f16, .bf16].contains(target))
    }

    /// Converts `count` elements from `source` (dtype `from`) into `destination` (dtype `to`).
    public static func convert(_ source: UnsafeRawBufferPointer, from: DType, to: DType,
                               into destination: UnsafeMutableRawBufferPointer, threads: ThreadBudget = .allCores) {
        precondition(canConvert(from: from, to: to))
        let count = source.count / from.size
        precondition(destination.count >= count * to.size)
        switch (from, to) {
        case _ where from == to:
            if count > 0 { destination.baseAddress!.copyMemory(from: source.baseAddress!, byteCount: count * to.size) }
        case (.bf16, .f32): bf16ToF32(source, destination, threads: threads)
        case (.f16, .f32): f16ToF32(source, destination, threads: threads)
        case (.f32, .bf16): f32ToBF16(source, destination, threads: threads)
        case (.f32, .f16): f32ToF16(source, destination, threads: threads)
        case (.bf16, .f16): bf16ToF16(source, destination, threads: threads)
        case (.f16, .bf16): f16ToBF16(source, destination, threads: threads)
        case (.f64, _):
            // Rare in checkpoints: a plain loop, rounding once from f64 (f16 via Float16).
            let src = source.baseAddress!, dst = destination.baseAddress!
            for i in 0..<count {
                let d = src.loadUnaligned(fromByteOffset: i * 8, as: Double.self)
                switch to {
                case .f32: dst.storeBytes(of: Float(d), toByteOffset: i * 4, as: Float.self)
                case .f16:
                    let h = d.isNaN ? (d.sign == .minus ? 0xFE00 : 0x7E00) : Float16(d).bitPattern
                    dst.storeBytes(of: h, toByteOffset: i * 2, as: UInt16.self)
                default: dst.storeBytes(of: f64ToBF16(d), toByteOffset: i * 2, as: UInt16.self)
                }
            }
        default: preconditionFailure("unsupported conversion \(from) → \(to)")
        }
    }

    /// f64 → bf16 with a single rounding (round to nearest even on the f64 bits).
    static func f64ToBF16(_ d: Double) -> UInt16 {
        if d.isNaN { return (d.sign == .minus ? 0x8000 : 0) | 0x7FC0 }
        let f = Float(d)  // may round; redo exactly when the f32 lands on a bf16 tie
        let candidate = f32ToBF16Reference(f)
        if Double(f) == d || f.isInfinite { return candidate }
        // Compare d against the midpoint between the two bf16 neighbours of f.
        let truncated = Float(bitPattern: f.bitPattern & 0xFFFF_0000)
        let up = Float(bitPattern: (f.bitPattern & 0xFFFF_0000) &+ 0x1_0000)
        let mid = (Double(truncated) + Double(up)) / 2
        let lowBits = UInt16(truncatingIfNeeded: truncated.bitPattern >> 16)
        if abs(d) < abs(mid) { return lowBits }
        if abs(d) > abs(mid) { return lowBits &+ 1 }
        return lowBits & 1 == 0 ? lowBits : lowBits &+ 1
    }
}
