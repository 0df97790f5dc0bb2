import CKernels

/// How far a candidate tensor is from a reference: max abs error, RMSE, cosine similarity and
/// signal-to-noise ratio. Sums are kept in f64 per chunk and combined in chunk order, so the
/// result does not depend on the thread count.
public struct ErrorMetrics: Equatable, Sendable {
    /// Elements compared.
    public var count = 0
    /// Σ (reference − candidate)², in f64.
    public var sumSquaredError = 0.0
    /// Largest |reference − candidate|; NaN differences are skipped.
    public var maxAbsError = 0.0
    /// Σ reference², in f64: the signal energy.
    public var sumSquaredReference = 0.0
    /// Σ candidate², in f64.
    public var sumSquaredCandidate = 0.0
    /// Σ reference·candidate, in f64.
    public var dot = 0.0

    /// Nothing compared yet: every sum zero.
    public init() {}

    /// √(sumSquaredError / count); 0 when nothing was compared.
    public var rmse: Double { count > 0 ? (sumSquaredError / Double(count)).squareRoot() : 0 }

    /// 10·log10(signal energy / error energy); +∞ when identical.
    public var snrDB: Double {
        if sumSquaredError == 0 { return .infinity }
        if sumSquaredReference == 0 { return -.infinity }
        return 10 * log10(sumSquaredReference / sumSquaredError)
    }

    /// dot(a, b) / (|a| |b|); 1 when both are zero.
    public var cosine: Double {
        let norms = (sumSquaredReference * sumSquaredCandidate).squareRoot()
        if norms == 0 { return sumSquaredReference == sumSquaredCandidate ? 1 : 0 }
        return dot / norms
    }

    /// Folds in another chunk's sums and max error; merging in chunk order keeps results thread-independent.
    public mutating func merge(_ other: ErrorMetrics) {
        count += other.count
        sumSquaredError += other.sumSquaredError
        maxAbsError = Swift.max(maxAbsError, other.maxAbsError)
        sumSquaredReference += other.sumSquaredReference
        sumSquaredCandidate += other.sumSquaredCandidate
        dot += other.dot
    }

    static let chunkElements = 1 << 16

    /// Compares two equally long f32 buffers in 64 Ki-element chunks over `threads`; the same for any thread count.
    public static func compare(reference: UnsafeBufferPointer<Float>, candidate: UnsafeBufferPointer<Float>,
                               threads: ThreadBudget = .allCores) -> ErrorMetrics {
        precondition(reference.count == candidate.count)
        return chunked(count: reference.count, threads: threads) { range in
            chunk(reference.baseAddress! + range.lowerBound, candidate.baseAddress! + range.lowerBound, count: range.count)
        }
    }

    /// Compares `reference` with values decoded a chunk at a time by `decode` (a flat range into the
    /// pointer given), each chunk measured while it is still in cache: the same chunks, and so the
    /// same bits, as decoding the whole tensor and calling `compare`.
    public static func compare(reference: UnsafeBufferPointer<Float>, decodingWith decode: (Range<Int>, UnsafeMutablePointer<Float>) -> Void,
                               threads: ThreadBudget = .allCores) -> ErrorMetrics {
        let n = reference.count
        let decoded = UnsafeMutablePointer<Float>.allocate(capacity: max(n, 1))
        defer { decoded.deallocate() }
        return chunked(count: n, threads: threads) { range in
            decode(range, decoded + range.lowerBound)
            return chunk(reference.baseAddress! + range.lowerBound, decoded + range.lowerBound, count: range.count)
        }
    }

    /// Runs `measure` on each 64 Ki-element chunk over `threads` and merges the results in chunk order.
    private static func chunked(count n: Int, threads: ThreadBudget, _ measure: (Range<Int>) -> ErrorMetrics) -> ErrorMetrics {
        let chunks = (n + chunkElements - 1) / chunkElements
        var partials = [ErrorMetrics](repeating: ErrorMetrics(), count: chunks)
        partials.withUnsafeMutableBufferPointer { out in
            threads.forEachChunk(chunks) { chunk in
                out[chunk] = measure((chunk * chunkElements)..<Swift.min(n, (chunk + 1) * chunkElements))
            }
        }
        var total = ErrorMetrics()
        for p in partials { total.merge(p) }
        return total
    }

    /// The sums of one chunk of `count` values: element i goes to lane i mod 8 of each sum, the
    /// lanes are added by `SIMD8.sum()`, the tail after them one at a time. `wide` takes the lanes
    /// from the AVX-512 kernel (the same bits; tests pass false for the Swift one).
    @inline(__always)
    static func chunk(_ reference: UnsafePointer<Float>, _ candidate: UnsafePointer<Float>, count: Int, wide: Bool = avx512Available) -> ErrorMetrics {
        var sse: Double, sr: Double, sc: Double, d: Double, worst: Double
        if wide {
            var lanes = (SIMD8<Double>(), SIMD8<Double>(), SIMD8<Double>(), SIMD8<Double>(), SIMD8<Double>())
            withUnsafeMutableBytes(of: &lanes) { ckpt_error_lanes_avx512(reference, candidate, count, $0.baseAddress!.assumingMemoryBound(to: Double.self)) }
            (sse, sr, sc, d, worst) = (lanes.0.sum(), lanes.1.sum(), lanes.2.sum(), lanes.3.sum(), lanes.4.max())
        } else {
            // Baseline x86-64 has sixteen 2-lane f64 registers: five 8-lane sums would spill on every
            // step, so lanes 0–3 and 4–7 are summed in two passes of 4-lane sums (the chunk is in
            // cache), and joined into the same eight lanes.
            let low = halfLanes(reference, candidate, count: count, offset: 0)
            let high = halfLanes(reference, candidate, count: count, offset: 4)
            sse = SIMD8(lowHalf: low.sse, highHalf: high.sse).sum()
            sr = SIMD8(lowHalf: low.sr, highHalf: high.sr).sum()
            sc = SIMD8(lowHalf: low.sc, highHalf: high.sc).sum()
            d = SIMD8(lowHalf: low.dot, highHalf: high.dot).sum()
            worst = SIMD8(lowHalf: low.worst, highHalf: high.worst).max()
        }
        for i in (count / 8 * 8)..<count {
            let a = Double(reference[i]), b = Double(candidate[i])
            let e = a - b
            sse += e * e
            sr += a * a
            sc += b * b
            d += a * b
            worst = Swift.max(worst, abs(e))
        }
        var m = ErrorMetrics()
        m.count = count
        (m.sumSquaredError, m.sumSquaredReference, m.sumSquaredCandidate, m.dot, m.maxAbsError) = (sse, sr, sc, d, worst)
        return m
    }

    /// Lanes `offset..<offset+4` of the eight-lane sums over the whole groups of eight in a chunk.
    @inline(__always)
    private static func halfLanes(_ reference: UnsafePointer<Float>, _ candidate: UnsafePointer<Float>, count: Int, offset: Int)
        -> (sse: SIMD4<Double>, sr: SIMD4<Double>, sc: SIMD4<Double>, dot: SIMD4<Double>, worst: SIMD4<Double>)
    {
        var sse = SIMD4<Double>(), sr = SIMD4<Double>(), sc = SIMD4<Double>(), dot = SIMD4<Double>(), worst = SIMD4<Double>()
        let signMask = SIMD4<UInt64>(repeating: 0x7FFF_FFFF_FFFF_FFFF)
        var i = 0
        while i + 8 <= count {
            let a = SIMD4<Double>(UnsafeRawPointer(reference + i + offset).loadUnaligned(as: SIMD4<Float>.self))
            let b = SIMD4<Double>(UnsafeRawPointer(candidate + i + offset).loadUnaligned(as: SIMD4<Float>.self))
            let e = a - b
            sse += e * e
            sr += a * a
            sc += b * b
            dot += a * b
            // A NaN error compares false and is skipped, as Swift.max skips it in the tail.
            let magnitude = unsafeBitCast(unsafeBitCast(e, to: SIMD4<UInt64>.self) & signMask, to: SIMD4<Double>.self)
            worst = worst.replacing(with: magnitude, where: magnitude .> worst)
            i += 8
        }
        return (sse, sr, sc, dot, worst)
    }

    /// Reference for `chunk`: the same eight lanes and order, one element at a time.
    static func chunkReference(_ reference: UnsafePointer<Float>, _ candidate: UnsafePointer<Float>, count: Int) -> ErrorMetrics {
        var sse = [Double](repeating: 0, count: 8), sr = sse, sc = sse, d = sse, worst = sse
        for i in 0..<(count / 8 * 8) {
            let a = Double(reference[i]), b = Double(candidate[i]), e = a - b
            sse[i % 8] += e * e
            sr[i % 8] += a * a
            sc[i % 8] += b * b
            d[i % 8] += a * b
            if abs(e) > worst[i % 8] { worst[i % 8] = abs(e) }
        }
        func lanes(_ v: [Double]) -> SIMD8<Double> { SIMD8(v) }
        var m = ErrorMetrics()
        m.count = count
        m.sumSquaredError = lanes(sse).sum()
        m.sumSquaredReference = lanes(sr).sum()
        m.sumSquaredCandidate = lanes(sc).sum()
        m.dot = lanes(d).sum()
        m.maxAbsError = lanes(worst).max()
        for i in (count / 8 * 8)..<count {
            let a = Double(reference[i]), b = Double(candidate[i]), e = a - b
            m.sumSquaredError += e * e
            m.sumSquaredReference += a * a
            m.sumSquaredCandidate += b * b
            m.dot += a * b
            m.maxAbsError = Swift.max(m.maxAbsError, abs(e))
        }
        return m
    }
}

#if canImport(Glibc)
import Glibc
#endif
