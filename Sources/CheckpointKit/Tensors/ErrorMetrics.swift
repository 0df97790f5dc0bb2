/// How far a candidate tensor is from a reference: max abs error, RMSE, cosine similarity and
/// signal-to-noise ratio. Sums are kept in f64 per chunk and combined in chunk order, so the
/// result does not depend on the thread count.
public struct ErrorMetrics: Equatable, Sendable {
    public var count = 0
    public var sumSquaredError = 0.0
    public var maxAbsError = 0.0
    public var sumSquaredReference = 0.0
    public var sumSquaredCandidate = 0.0
    public var dot = 0.0

    public init() {}

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

    public mutating func merge(_ other: ErrorMetrics) {
        count += other.count
        sumSquaredError += other.sumSquaredError
        maxAbsError = Swift.max(maxAbsError, other.maxAbsError)
        sumSquaredReference += other.sumSquaredReference
        sumSquaredCandidate += other.sumSquaredCandidate
        dot += other.dot
    }

    static let chunkElements = 1 << 16

    public static func compare(reference: UnsafeBufferPointer<Float>, candidate: UnsafeBufferPointer<Float>,
                               threads: ThreadBudget = .allCores) -> ErrorMetrics {
        precondition(reference.count == candidate.count)
        let n = reference.count
        let chunks = (n + chunkElements - 1) / chunkElements
        var partials = [ErrorMetrics](repeating: ErrorMetrics(), count: chunks)
        partials.withUnsafeMutableBufferPointer { out in
            threads.forEachChunk(chunks) { chunk in
                var m = ErrorMetrics()
                let range = (chunk * chunkElements)..<Swift.min(n, (chunk + 1) * chunkElements)
                m.count = range.count
                var sse = 0.0, sr = 0.0, sc = 0.0, d = 0.0, worst = 0.0
                for i in range {
                    let a = Double(reference[i]), b = Double(candidate[i])
                    let e = a - b
                    sse += e * e
                    sr += a * a
                    sc += b * b
                    d += a * b
                    worst = Swift.max(worst, abs(e))
                }
                (m.sumSquaredError, m.sumSquaredReference, m.sumSquaredCandidate, m.dot, m.maxAbsError) = (sse, sr, sc, d, worst)
                out[chunk] = m
            }
        }
        var total = ErrorMetrics()
        for p in partials { total.merge(p) }
        return total
    }
}

#if canImport(Glibc)
import Glibc
#endif
