import COpenBLAS

/// The scales that best fit codes already chosen: with every code fixed, a row's reconstruction
/// ŵ = Σ_g s_g·v_g (v_g its units in group g: code − zero, or the NF4/FP4 table value) is linear
/// in its scales, so the scales of least output error (w − ŵ)·H·(w − ŵ)ᵀ solve one small system
/// A·s = b per row, A[g, h] = v_gᵀ·H·v_h and b[g] = v_gᵀ·H·w. GPTQ picks each group's scale
/// before its codes (from the weight as the earlier errors left it); refitting afterwards lets the
/// scales follow the codes, the step least-squares rounding schemes (llama.cpp's `make_qx_quants`)
/// take per block, here over the whole row through H.
enum GPTQScaleRefit {
    /// Rows whose systems are built and solved together: a fixed cut, so any thread count gives the
    /// same scales. Each piece multiplies by the whole of H, which OpenBLAS packs on every call.
    static let rowsPerPiece = 64

    /// New scales `[rows, groups]` for `units` `[rows, columns]` in groups `groupOf`, fitting `weight`
    /// under `hessian` + `damping`·I (`[columns, columns]`). A group whose units are all zero keeps its
    /// scale; a row keeps all of `scales` where its system is singular, a refitted scale is not positive
    /// and finite, or the fit rounded to `scaleType` is no better. Rows go in pieces over `threads`
    /// (OpenBLAS single-threaded inside them, as the caller leaves it).
    /// `weightTimesHessian` is `weightTimesHessian(weight:hessian:rows:columns:threads:)` when the caller refits
    /// the same weight more than once; nil computes it here.
    static func refit(units: [Float], weight: [Float], hessian: [Float], damping: Float, rows: Int, columns: Int, groupOf: [Int32],
                      groups: Int, scales: [Float], scaleType: DType, threads: ThreadBudget, weightTimesHessian: [Float]? = nil) -> [Float] {
        let product = weightTimesHessian ?? Self.weightTimesHessian(weight: weight, hessian: hessian, rows: rows, columns: columns, threads: threads)
        // Each group's columns, and H's rows in group order (H itself when every group is one run of columns).
        var members = [[Int]](repeating: [], count: groups)
        for k in 0..<columns { members[Int(groupOf[k])].append(k) }
        let groupOrder = members.flatMap { $0 }
        let hessianByGroup: [Float]
        if groupOrder == Array(0..<columns) {
            hessianByGroup = hessian
        } else {
            var gathered = [Float](repeating: 0, count: columns * columns)
            for (i, k) in groupOrder.enumerated() { for j in 0..<columns { gathered[i * columns + j] = hessian[k * columns + j] } }
            hessianByGroup = gathered
        }
        var firstRow = [Int](repeating: 0, count: groups)
        for g in 1..<Swift.max(groups, 1) { firstRow[g] = firstRow[g - 1] + members[g - 1].count }
        var result = scales
        units.withUnsafeBufferPointer { v in
            weight.withUnsafeBufferPointer { w in
                product.withUnsafeBufferPointer { wh in
                    hessianByGroup.withUnsafeBufferPointer { hg in
                        result.withUnsafeMutableBufferPointer { out in
                            let shared = UncheckedSendable((v, w, wh, hg, out))
                            threads.forEachPiece(of: rows, size: rowsPerPiece) { piece in
                                let (v, w, wh, hg, out) = shared.value
                                let (a, b) = normalEquations(units: v, weight: w, weightTimesHessian: wh, hessianByGroup: hg, damping: damping,
                                                             rows: piece, columns: columns, groupOf: groupOf, members: members, firstRow: firstRow)
                                for (p, n) in piece.enumerated() {
                                    let system = Array(a[(p * groups * groups)..<((p + 1) * groups * groups)])
                                    let right = Array(b[(p * groups)..<((p + 1) * groups)])
                                    let current = Array(out[(n * groups)..<((n + 1) * groups)])
                                    if let better = bestScales(system, right, current: current, scaleType: scaleType) {
                                        for g in 0..<groups { out[n * groups + g] = better[g] }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return result
    }

    /// W·H `[rows, columns]`, in the pieces of rows the refit builds its systems in (so each row's
    /// values are those a piece's own product gives): the same for every refit of one weight.
    static func weightTimesHessian(weight: [Float], hessian: [Float], rows: Int, columns: Int, threads: ThreadBudget) -> [Float] {
        var product = [Float](repeating: 0, count: rows * columns)
        weight.withUnsafeBufferPointer { w in
            hessian.withUnsafeBufferPointer { h in
                product.withUnsafeMutableBufferPointer { p in
                    let shared = UncheckedSendable((w, h, p))
                    threads.forEachPiece(of: rows, size: rowsPerPiece) { piece in
                        let (w, h, p) = shared.value
                        MatrixMultiply.multiply(w.baseAddress! + piece.lowerBound * columns, h.baseAddress!, into: p.baseAddress! + piece.lowerBound * columns,
                                                m: piece.count, n: columns, k: columns)
                    }
                }
            }
        }
        return product
    }

    /// The rows `piece`'s A `[rows, groups, groups]` and b `[rows, groups]` in f64: b from W·H, A group
    /// by group from V_h·H[h, ·] (one product's worth of work over all groups), plus the damping's
    /// diagonal: λ·Σ v² on A's diagonal, λ·Σ v·w in b.
    static func normalEquations(units v: UnsafeBufferPointer<Float>, weight w: UnsafeBufferPointer<Float>,
                                weightTimesHessian wh: UnsafeBufferPointer<Float>, hessianByGroup hg: UnsafeBufferPointer<Float>, damping: Float,
                                rows piece: Range<Int>, columns: Int, groupOf: [Int32], members: [[Int]], firstRow: [Int]) -> (a: [Double], b: [Double]) {
        let groups = members.count, count = piece.count, first = piece.lowerBound
        var a = [Double](repeating: 0, count: count * groups * groups), b = [Double](repeating: 0, count: count * groups)
        var product = [Float](repeating: 0, count: count * columns)
        for r in 0..<count {
            let n = first + r
            for k in 0..<columns {
                let g = Int(groupOf[k]), vk = Double(v[n * columns + k])
                b[r * groups + g] += vk * (Double(wh[n * columns + k]) + Double(damping) * Double(w[n * columns + k]))
                a[(r * groups + g) * groups + g] += Double(damping) * vk * vk
            }
        }
        var gathered = [Float](repeating: 0, count: count * (members.map(\.count).max() ?? 0))
        for hIndex in 0..<groups where !members[hIndex].isEmpty {
            let width = members[hIndex].count
            for r in 0..<count { for (i, k) in members[hIndex].enumerated() { gathered[r * width + i] = v[(first + r) * columns + k] } }
            gathered.withUnsafeBufferPointer { g in
                product.withUnsafeMutableBufferPointer { p in
                    MatrixMultiply.multiply(g.baseAddress!, hg.baseAddress! + firstRow[hIndex] * columns, into: p.baseAddress!,
                                            m: count, n: columns, k: width)
                }
            }
            // Group by group, each sum in ascending columns: the order a scan of all columns gives.
            for r in 0..<count {
                let n = first + r
                for (g, groupColumns) in members.enumerated() {
                    var sum = a[(r * groups + g) * groups + hIndex]
                    for k in groupColumns { sum += Double(v[n * columns + k]) * Double(product[r * columns + k]) }
                    a[(r * groups + g) * groups + hIndex] = sum
                }
            }
        }
        return (a, b)
    }

    /// The solved scales rounded to `scaleType` when every refitted one is positive and finite and
    /// their fit beats `current`'s; nil to keep `current`.
    static func bestScales(_ a: [Double], _ b: [Double], current: [Float], scaleType: DType) -> [Float]? {
        let g = current.count
        let active = (0..<g).map { a[$0 * g + $0] > 0 }
        guard let solved = solve(a, b, current: current, active: active) else { return nil }
        var rounded = current
        for i in 0..<g where active[i] {
            rounded[i] = IntegerCodes.round(Float(solved[i]), to: scaleType)
            guard rounded[i] > 0, rounded[i].isFinite else { return nil }
        }
        return objective(a, b, rounded) < objective(a, b, current) ? rounded : nil
    }

    /// A·s = b by Cholesky over the `active` groups; the others keep `current` (their rows and columns of A are zero).
    /// Nil when A is not positive definite there.
    static func solve(_ a: [Double], _ b: [Double], current: [Float], active: [Bool]) -> [Double]? {
        let g = current.count
        var m = a, rhs = b
        for i in 0..<g where !active[i] {
            for j in 0..<g { m[i * g + j] = 0; m[j * g + i] = 0 }
            m[i * g + i] = 1
            rhs[i] = Double(current[i])
        }
        var n = Int32(g), one: Int32 = 1, info: Int32 = 0
        var lower = Int8(UInt8(ascii: "L"))
        dposv_(&lower, &n, &one, &m, &n, &rhs, &n, &info)
        guard info == 0, rhs.allSatisfy(\.isFinite) else { return nil }
        return rhs
    }

    /// sᵀ·A·s − 2·bᵀ·s: the output error up to the constant wᵀ·H·w.
    static func objective(_ a: [Double], _ b: [Double], _ s: [Float]) -> Double {
        let g = s.count
        var total = 0.0
        for i in 0..<g {
            var row = 0.0
            for j in 0..<g { row += a[i * g + j] * Double(s[j]) }
            total += Double(s[i]) * row - 2 * b[i] * Double(s[i])
        }
        return total
    }
}
