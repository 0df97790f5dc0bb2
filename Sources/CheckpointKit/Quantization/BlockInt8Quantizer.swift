import CKernels

/// Symmetric int8 with one scale per group of `groupSize` consecutive values along each row
/// (the compressed-tensors "group" strategy): `scale = absmax / 127`, rounded to the stored
/// scale dtype first, then `q = round-half-away(x / scale)` clamped to [-127, 127] against that
/// stored scale, so `q × scale` is exactly what a loader reconstructs. A group of zeros stores
/// scale 0 and q 0. The last group of a row may be shorter when `groupSize` does not divide it.
public enum BlockInt8Quantizer {
    /// Scales per row: `ceil(columns / groupSize)`, the last group possibly partial.
    public static func groupsPerRow(columns: Int, groupSize: Int) -> Int { (columns + groupSize - 1) / groupSize }

    /// The scale as stored in `scaleType` (F32, F16 or BF16), back in float32.
    @inline(__always)
    static func storedScale(_ scale: Float, _ scaleType: DType) -> Float {
        switch scaleType {
        case .f16: return FloatConversion.f16ToF32Reference(FloatConversion.f32ToF16Reference(scale))
        case .bf16: return FloatConversion.bf16ToF32Reference(FloatConversion.f32ToBF16Reference(scale))
        default: return scale
        }
    }

    // MARK: - Reference

    /// One value at a time, as described above: fills `q` (rows × columns) and `scales` (rows × groupsPerRow), row-major.
    public static func quantizeReference(_ x: UnsafeBufferPointer<Float>, rows: Int, columns: Int, groupSize: Int, scaleType: DType,
                                         q: UnsafeMutableBufferPointer<Int8>, scales: UnsafeMutableBufferPointer<Float>) {
        let groups = groupsPerRow(columns: columns, groupSize: groupSize)
        for r in 0..<rows {
            for g in 0..<groups {
                let range = (r * columns + g * groupSize)..<(r * columns + min(columns, (g + 1) * groupSize))
                var m: Float = 0
                for i in range { m = max(m, abs(x[i])) }
                let scale = storedScale(m / 127, scaleType)
                scales[r * groups + g] = scale
                for i in range {
                    q[i] = scale == 0 ? 0 : Int8(min(max((x[i] / scale).rounded(.toNearestOrAwayFromZero), -127), 127))
                }
            }
        }
    }

    /// `q × scale` one value at a time into `out` (rows × columns, row-major).
    public static func dequantizeReference(_ q: UnsafeBufferPointer<Int8>, scales: UnsafeBufferPointer<Float>, rows: Int, columns: Int,
                                           groupSize: Int, into out: UnsafeMutableBufferPointer<Float>) {
        let groups = groupsPerRow(columns: columns, groupSize: groupSize)
        for r in 0..<rows {
            for c in 0..<columns { out[r * columns + c] = Float(q[r * columns + c]) * scales[r * groups + c / groupSize] }
        }
    }

    // MARK: - Fast: rows spread over threads, SIMD within a group.

    /// `quantizeReference` with SIMD groups and rows spread over threads; `fixedScales` (rounded to `scaleType`) replace absmax / 127.
    public static func quantize(_ x: UnsafeBufferPointer<Float>, rows: Int, columns: Int, groupSize: Int, scaleType: DType,
                                q: UnsafeMutableBufferPointer<Int8>, scales: UnsafeMutableBufferPointer<Float>,
                                fixedScales: UnsafeBufferPointer<Float>? = nil, threads: ThreadBudget = .allCores) {
        let groups = groupsPerRow(columns: columns, groupSize: groupSize)
        let rowsPerChunk = max(1, (1 << 16) / max(columns, 1))
        let chunks = (rows + rowsPerChunk - 1) / rowsPerChunk
        threads.forEachChunk(chunks) { chunk in
            for r in (chunk * rowsPerChunk)..<min(rows, (chunk + 1) * rowsPerChunk) {
                for g in 0..<groups {
                    let start = r * columns + g * groupSize
                    let count = min(columns, (g + 1) * groupSize) - g * groupSize
                    let scale: Float
                    if let fixedScales {
                        scale = storedScale(fixedScales[r * groups + g], scaleType)
                    } else {
                        scale = storedScale(FourBitQuantizer.absoluteMaximum(x.baseAddress! + start, count) / 127, scaleType)
                    }
                    scales[r * groups + g] = scale
                    encodeGroup(x.baseAddress! + start, count: count, scale: scale, into: q.baseAddress! + start)
                }
            }
        }
    }

    /// `q = clamp(round-half-away(x / scale), ±127)` with float adds and compares only: SSE2
    /// has no vector round, and the stdlib's SIMD float → int conversion goes lane by lane (and
    /// traps on NaN). Adding 1.5 × 2²³ to a value within ±2²² rounds it to the nearest integer,
    /// ties to even, into the low bits of the sum; the exact remainder `v − that` is ±0.5 on a
    /// tie, and a tie that went towards zero is moved one further away. Checked against the
    /// scalar expression on every finite float32.
    @inline(__always)
    static func encodeGroup(_ x: UnsafePointer<Float>, count: Int, scale: Float, into q: UnsafeMutablePointer<Int8>, wide: Bool = avx512Available) {
        guard scale != 0 else {
            q.update(repeating: 0, count: count)
            return
        }
        let upper = SIMD16<Float>(repeating: 127), lower = SIMD16<Float>(repeating: -127)
        // The AVX-512 twin (`ckpt_int8_encode_avx512`) takes the runs of 16 where the CPU has it.
        var i = wide ? ckpt_int8_encode_avx512(x, count, scale, q) : 0
        while i + 16 <= count {
            let scaled = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self) / scale
            // A NaN (allowed by --allow-nonfinite) becomes −127, as pointwiseMax made it.
            let v = scaled.replacing(with: lower, where: .!(scaled .>= lower)).minimum(upper)
            let r = v.roundedHalfAwayToInt32()
            UnsafeMutableRawPointer(q + i).storeBytes(of: SIMD16<Int8>(truncatingIfNeeded: r), as: SIMD16<Int8>.self)
            i += 16
        }
        while i < count {
            q[i] = Int8(min(max((x[i] / scale).rounded(.toNearestOrAwayFromZero), -127), 127))
            i += 1
        }
    }

    /// `dequantizeReference` with rows spread over threads, each chunk of rows decoded by `dequantize(range:)`.
    public static func dequantize(_ q: UnsafeBufferPointer<Int8>, scales: UnsafeBufferPointer<Float>, rows: Int, columns: Int,
                                  groupSize: Int, into out: UnsafeMutableBufferPointer<Float>, threads: ThreadBudget = .allCores) {
        let rowsPerChunk = max(1, (1 << 16) / max(columns, 1))
        let chunks = (rows + rowsPerChunk - 1) / rowsPerChunk
        threads.forEachChunk(chunks) { chunk in
            let range = (chunk * rowsPerChunk * columns)..<(min(rows, (chunk + 1) * rowsPerChunk) * columns)
            dequantize(q, scales: scales, columns: columns, groupSize: groupSize, range: range, into: out.baseAddress! + range.lowerBound)
        }
    }

    /// The flat elements `range` of a row-major `[rows, columns]` weight, `q · scale` written from `out[0]`:
    /// one group (or the part of it inside the range) at a time, one scale per run. The one decode loop.
    public static func dequantize(_ q: UnsafeBufferPointer<Int8>, scales: UnsafeBufferPointer<Float>, columns: Int, groupSize: Int,
                                  range: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        dequantize(q, scales: scales, columns: columns, groupSize: groupSize, range: range, into: out, wide: avx512Available)
    }

    /// `dequantize(range:)` with the choice of kernel (the AVX-512 twin when `wide`), for tests of both.
    static func dequantize(_ q: UnsafeBufferPointer<Int8>, scales: UnsafeBufferPointer<Float>, columns: Int, groupSize: Int,
                           range: Range<Int>, into out: UnsafeMutablePointer<Float>, wide: Bool) {
        let groups = groupsPerRow(columns: columns, groupSize: groupSize)
        var i = range.lowerBound
        while i < range.upperBound {
            let row = i / columns, column = i % columns
            let end = min(range.upperBound, row * columns + min(columns, (column / groupSize + 1) * groupSize))
            let scale = scales[row * groups + column / groupSize]
            // Plain pointers and a count: a loop the optimizer vectorizes (widening 16 codes at a time).
            let codes = q.baseAddress! + i, values = out + (i - range.lowerBound)
            let done = wide ? ckpt_int8_decode_avx512(codes, end - i, scale, values) : 0
            for k in done..<(end - i) { values[k] = Float(codes[k]) * scale }
            i = end
        }
    }
}
