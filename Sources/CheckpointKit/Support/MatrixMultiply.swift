import COpenBLAS
#if canImport(Glibc)
import Glibc
#endif

/// Matrix products through OpenBLAS, row-major, float32.
public enum MatrixMultiply {
    /// C[m×n] = alpha · A[m×k] · B[k×n] (+ beta · C). Pointers are row-major and dense.
    /// Leading dimensions default to the dense ones; pass them to work on strided sub-matrices
    /// (one attention head inside a [T, heads·headDim] row-major buffer).
    public static func multiply(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, into c: UnsafeMutablePointer<Float>,
                                m: Int, n: Int, k: Int, alpha: Float = 1, beta: Float = 0,
                                transposeA: Bool = false, transposeB: Bool = false, lda: Int? = nil, ldb: Int? = nil, ldc: Int? = nil) {
        guard m > 0, n > 0 else { return }
        guard k > 0 else {
            let stride = ldc ?? n
            for i in 0..<m { for j in 0..<n { c[i * stride + j] = beta == 0 ? 0 : c[i * stride + j] * beta } }
            return
        }
        _ = kernels
        cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda ?? (transposeA ? m : k)), b, Int32(ldb ?? (transposeB ? k : n)),
                    beta, c, Int32(ldc ?? n))
    }

    /// Plain triple loop, for tests of the above.
    public static func multiplyReference(_ a: [Float], _ b: [Float], m: Int, n: Int, k: Int, alpha: Float = 1) -> [Float] {
        var c = [Float](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                var sum = 0.0
                for p in 0..<k { sum += Double(a[i * k + p]) * Double(b[p * n + j]) }
                c[i * n + j] = Float(sum) * alpha
            }
        }
        return c
    }

    /// c[n, n] (upper triangle, row-major) += aᵀ·a for a [k, n]: a Gram matrix at half a product's
    /// cost, on `threads` of the caller's, in column panels (a diagonal `ssyrk` block and the `sgemm`
    /// block above it), the panel with the most work first. The caller keeps OpenBLAS single-threaded:
    /// its own workers spin on `sched_yield` after each call, taking a core from the forward pass
    /// between calibration products. Each value sums the same way for any thread count.
    public static func addGram(_ a: UnsafePointer<Float>, rows k: Int, columns n: Int, into c: UnsafeMutablePointer<Float>, threads: ThreadBudget) {
        guard n > 0, k > 0 else { return }
        _ = kernels
        let panel = 64, panels = (n + panel - 1) / panel
        let shared = UncheckedSendable((a, c))
        threads.forEachChunk(panels) { chunk in
            let (a, c) = shared.value
            let first = (panels - 1 - chunk) * panel, width = Swift.min(n, first + panel) - first
            cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, Int32(width), Int32(k), 1, a + first, Int32(n), 1, c + first * n + first, Int32(n))
            if first > 0 {
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(first), Int32(width), Int32(k), 1, a, Int32(n), a + first, Int32(n),
                            1, c + first, Int32(n))
            }
        }
    }

    /// c[n, n] += aᵀ·b for a and b [k, n], in row panels of c on `threads` of the caller's (OpenBLAS
    /// single-threaded, as for `addGram`); each value sums the same way for any thread count.
    public static func addTransposedProduct(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, rows k: Int, columns n: Int,
                                            into c: UnsafeMutablePointer<Float>, threads: ThreadBudget) {
        guard n > 0, k > 0 else { return }
        _ = kernels
        let panel = 64
        let shared = UncheckedSendable((a, b, c))
        threads.forEachPiece(of: n, size: panel) { rows in
            let (a, b, c) = shared.value
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(rows.count), Int32(n), Int32(k), 1, a + rows.lowerBound, Int32(n), b, Int32(n),
                        1, c + rows.lowerBound * n, Int32(n))
        }
    }

    /// The threads OpenBLAS's own pool uses now.
    public static var openBLASThreadCount: Int {
        _ = kernels
        return Int(openblas_get_num_threads())
    }

    /// OpenBLAS's own thread pool; ckpt sets it from --threads, at most `openBLASThreadLimit`.
    public static func setThreads(_ threads: ThreadBudget) {
        _ = kernels
        openblas_set_num_threads(Int32(Swift.min(threads.count, openBLASThreadLimit)))
    }

    /// `CKPT_OPENBLAS_THREADS` (a positive count), else no limit: the most threads `setThreads` gives
    /// OpenBLAS. OpenBLAS's thread count is one setting for the whole process, and some of its kernels
    /// (Haswell's) give other last bits on other counts: the test suite, which runs many models at once
    /// in one process, sets 1 so that no test's product depends on what another test set.
    public static let openBLASThreadLimit: Int = {
        guard let text = getenv("CKPT_OPENBLAS_THREADS").map({ String(cString: $0) }), let limit = Int(text), limit > 0 else { return Int.max }
        return limit
    }()

    /// Stops OpenBLAS's worker threads, which it starts at load and which spin before they sleep (a
    /// tenth of a core per short run); the next product on more than one OpenBLAS thread starts them
    /// again. For a program's start, before any product.
    public static func stopIdleThreads() {
        ckpt_openblas_stop_idle_threads()
    }

    /// The OpenBLAS kernels in use (e.g. "SkylakeX"), chosen once before the first product: a CPU
    /// newer than the system's OpenBLAS would otherwise run its SSE3 fallback (see shim.h).
    public static let kernels: String = String(cString: ckpt_openblas_prefer_known_core())
}
