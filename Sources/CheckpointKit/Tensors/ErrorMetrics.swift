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

    /// The sums of one chunk of `count` values.
    @inline(__always)
    private static func chunk(_ reference: UnsafePointer<Float>, _ candidate: UnsafePointer<Float>, count: Int) -> ErrorMetrics {
        var m = ErrorMetrics()
        m.count = count
        // Eight f64 lanes per sum: four independent add chains per register pair, where a
        // scalar loop waits on one add's latency per element.
        var sse8 = SIMD8<Double>(), sr8 = SIMD8<Double>(), sc8 = SIMD8<Double>(), d8 = SIMD8<Double>()
        var worst8 = SIMD8<Double>()
        let signMask = SIMD8<UInt64>(repeating: 0x7FFF_FFFF_FFFF_FFFF)
        var i = 0
        while i + 8 <= count {
            let a = SIMD8<Double>(UnsafeRawPointer(reference + i).loadUnaligned(as: SIMD8<Float>.self))
            let b = SIMD8<Double>(UnsafeRawPointer(candidate + i).loadUnaligned(as: SIMD8<Float>.self))
            let e = a - b
            sse8 += e * e
            sr8 += a * a
            sc8 += b * b
            d8 += a * b
            // A NaN error compares false and is skipped, as Swift.max skips it below.
            let magnitude = unsafeBitCast(unsafeBitCast(e, to: SIMD8<UInt64>.self) & signMask, to: SIMD8<Double>.self)
            worst8 = worst8.replacing(with: magnitude, where: magnitude .> worst8)
            i += 8
        }
        var sse = sse8.sum(), sr = sr8.sum(), sc = sc8.sum(), d = d8.sum(), worst = worst8.max()
        for i in i..<count {
            let a = Double(reference[i]), b = Double(candidate[i])
            let e = a - b
            sse += e * e
            sr += a * a
            sc += b * b
            d += a * b
            worst = Swift.max(worst, abs(e))
        }
        (m.sumSquaredError, m.sumSquaredReference, m.sumSquaredCandidate, m.dot, m.maxAbsError) = (sse, sr, sc, d, worst)
        return m
    }
}

#if canImport(Glibc)
import Glibc
#endif
