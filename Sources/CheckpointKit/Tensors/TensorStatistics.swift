/// Summary statistics of a tensor's values, computed in one streaming pass.
///
/// Min, max, mean and standard deviation are over the finite values; NaN and ±Inf are counted
/// instead. Partial sums are kept per chunk in f64 and combined in chunk order, so the result is
/// the same for every thread count.
public struct TensorStatistics: Equatable, Sendable {
    /// All elements, finite or not.
    public var count: Int
    /// Elements that are neither NaN nor ±Inf; min, max, mean and std are over these.
    public var finiteCount: Int
    /// Smallest finite value; NaN when there is none.
    public var min: Double
    /// Largest finite value; NaN when there is none.
    public var max: Double
    /// Mean of the finite values, in f64; NaN when there are none.
    public var mean: Double
    /// Population standard deviation (divides by n), as numpy's default.
    public var std: Double
    /// NaN elements.
    public var nanCount: Int
    /// +Inf and −Inf elements.
    public var infCount: Int

    static let chunkElements = 1 << 16

    /// One pass over `view`'s values (as `FloatValues` reads them) in 64 Ki-element chunks over `threads`.
    public static func compute(_ view: TensorView, threads: ThreadBudget = .allCores) -> TensorStatistics {
        combined(count: view.elementCount, threads: threads) { range in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: range.count) { scratch in
                FloatValues.read(view, range: range, into: scratch.baseAddress!)
                return Partial.of(UnsafeBufferPointer(scratch))
            }
        }
    }

    /// The same statistics of f32 values already in memory (a dequantized weight).
    public static func compute(_ values: [Float], threads: ThreadBudget = .allCores) -> TensorStatistics {
        values.withUnsafeBufferPointer { all in
            combined(count: all.count, threads: threads) { Partial.of(UnsafeBufferPointer(rebasing: all[$0])) }
        }
    }

    /// The moments of `count` elements, one 64 Ki-element chunk at a time over `threads`, merged in
    /// chunk order (so the result does not depend on the thread count).
    static func combined(count n: Int, threads: ThreadBudget, chunk partial: (Range<Int>) -> Partial) -> TensorStatistics {
        let chunks = (n + chunkElements - 1) / chunkElements
        var partials = [Partial](repeating: Partial(), count: chunks)
        partials.withUnsafeMutableBufferPointer { out in
            threads.forEachChunk(chunks) { chunk in
                let start = chunk * chunkElements
                out[chunk] = partial(start..<Swift.min(n, start + chunkElements))
            }
        }
        var total = Partial()
        for p in partials { total.merge(p) }
        return total.statistics(count: n)
    }

    /// Running moments of one chunk (Chan et al. merge keeps the variance stable).
    struct Partial {
        var finite = 0
        var nan = 0
        var inf = 0
        var min = Double.infinity
        var max = -Double.infinity
        var mean = 0.0
        var m2 = 0.0

        static func of(_ values: UnsafeBufferPointer<Float>) -> Partial {
            var p = Partial()
            var sum = 0.0
            var lo = Float.infinity, hi = -Float.infinity
            for v in values {
                if v.isFinite {
                    sum += Double(v)
                    lo = Swift.min(lo, v)
                    hi = Swift.max(hi, v)
                    p.finite += 1
                } else if v.isNaN {
                    p.nan += 1
                } else {
                    p.inf += 1
                }
            }
            guard p.finite > 0 else { return p }
            p.mean = sum / Double(p.finite)
            var m2 = 0.0
            for v in values where v.isFinite {
                let d = Double(v) - p.mean
                m2 += d * d
            }
            p.m2 = m2
            p.min = Double(lo)
            p.max = Double(hi)
            return p
        }

        mutating func merge(_ other: Partial) {
            nan += other.nan
            inf += other.inf
            guard other.finite > 0 else { return }
            if finite == 0 {
                (finite, min, max, mean, m2) = (other.finite, other.min, other.max, other.mean, other.m2)
                return
            }
            let n = Double(finite + other.finite)
            let delta = other.mean - mean
            mean += delta * Double(other.finite) / n
            m2 += other.m2 + delta * delta * Double(finite) * Double(other.finite) / n
            finite += other.finite
            min = Swift.min(min, other.min)
            max = Swift.max(max, other.max)
        }

        func statistics(count: Int) -> TensorStatistics {
            TensorStatistics(count: count, finiteCount: finite, min: finite > 0 ? min : .nan, max: finite > 0 ? max : .nan,
                             mean: finite > 0 ? mean : .nan, std: finite > 0 ? (m2 / Double(finite)).squareRoot() : .nan,
                             nanCount: nan, infCount: inf)
        }
    }
}
