import COpenBLAS

/// The scales that best fit codes already chosen: with every code fixed, a row's reconstruction
/// ŵ = Σ_g s_g·v_g (v_g its units in group g: code − zero, or the NF4/FP4 table value) is linear
/// in its scales, so the scales of least output error (w − ŵ)·H·(w − ŵ)ᵀ solve one small system
/// A·s = b per row, A[g, h] = v_gᵀ·H·v_h and b[g] = v_gᵀ·H·w. GPTQ picks each group's scale
/// before its codes (from the weight as the earlier errors left it); refitting afterwards lets the
/// scales follow the codes, the step least-squares rounding schemes (llama.cpp's `make_qx_quants`)
/// take per block, here over the whole row through H.
enum GPTQScaleRefit {
    /// New scales `[rows, groups]` for `units` `[rows, columns]` in groups `groupOf`, fitting
    /// `weight` under `hessian` `[columns, columns]`; a row keeps `scales` where its system is
    /// singular, a solved scale is not positive and finite, or the rounded fit is no better.
    /// Scales are rounded to `scaleType` before they are compared.
    static func refit(units: [Float], weight: [Float], hessian: [Float], rows: Int, columns: Int, groupOf: [Int32], groups: Int,
                      scales: [Float], scaleType: DType) -> [Float] {
        let systems = normalEquations(units: units, weight: weight, hessian: hessian, rows: rows, columns: columns, groupOf: groupOf, groups: groups)
        var result = scales
        for n in 0..<rows {
            let a = Array(systems.a[(n * groups * groups)..<((n + 1) * groups * groups)])
            let b = Array(systems.b[(n * groups)..<((n + 1) * groups)])
            let current = Array(scales[(n * groups)..<((n + 1) * groups)])
            guard let solved = solve(a, b, current: current, size: groups) else { continue }
            let rounded = solved.map { IntegerCodes.round(Float($0), to: scaleType) }
            guard rounded.allSatisfy({ $0 > 0 && $0.isFinite }) else { continue }
            if error(a, b, rounded, size: groups) < error(a, b, current, size: groups) {
                result.replaceSubrange((n * groups)..<((n + 1) * groups), with: rounded)
            }
        }
        return result
    }

    /// Every row's A `[rows, groups, groups]` and b `[rows, groups]` in f64: b from W·H, A group by
    /// group from V_h·H[h, ·] (one product's worth of work over all groups).
    static func normalEquations(units: [Float], weight: [Float], hessian: [Float], rows: Int, columns: Int,
                                groupOf: [Int32], groups: Int) -> (a: [Double], b: [Double]) {
        var a = [Double](repeating: 0, count: rows * groups * groups), b = [Double](repeating: 0, count: rows * groups)
        var product = [Float](repeating: 0, count: rows * columns)
        weight.withUnsafeBufferPointer { w in
            hessian.withUnsafeBufferPointer { h in
                product.withUnsafeMutableBufferPointer { p in
                    MatrixMultiply.multiply(w.baseAddress!, h.baseAddress!, into: p.baseAddress!, m: rows, n: columns, k: columns)
                }
            }
        }
        for n in 0..<rows { for k in 0..<columns { b[n * groups + Int(groupOf[k])] += Double(units[n * columns + k]) * Double(product[n * columns + k]) } }
        var members = [[Int]](repeating: [], count: groups)
        for k in 0..<columns { members[Int(groupOf[k])].append(k) }
        for h in 0..<groups where !members[h].isEmpty {
            let width = members[h].count
            var gathered = [Float](repeating: 0, count: rows * width), hessianRows = [Float](repeating: 0, count: width * columns)
            for n in 0..<rows { for (i, k) in members[h].enumerated() { gathered[n * width + i] = units[n * columns + k] } }
            for (i, k) in members[h].enumerated() { for j in 0..<columns { hessianRows[i * columns + j] = hessian[k * columns + j] } }
            gathered.withUnsafeBufferPointer { v in
                hessianRows.withUnsafeBufferPointer { hr in
                    product.withUnsafeMutableBufferPointer { p in
                        MatrixMultiply.multiply(v.baseAddress!, hr.baseAddress!, into: p.baseAddress!, m: rows, n: columns, k: width)
                    }
                }
            }
            for n in 0..<rows {
                for k in 0..<columns { a[(n * groups + Int(groupOf[k])) * groups + h] += Double(units[n * columns + k]) * Double(product[n * columns + k]) }
            }
        }
        return (a, b)
    }

    /// A·s = b by Cholesky; groups whose units are all zero keep their scale. Nil when A is not positive definite.
    static func solve(_ a: [Double], _ b: [Double], current: [Float], size g: Int) -> [Double]? {
        var m = a, rhs = b
        for i in 0..<g where m[i * g + i] <= 0 {
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
    static func error(_ a: [Double], _ b: [Double], _ s: [Float], size g: Int) -> Double {
        var total = 0.0
        for i in 0..<g {
            var row = 0.0
            for j in 0..<g { row += a[i * g + j] * Double(s[j]) }
            total += Double(s[i]) * row - 2 * b[i] * Double(s[i])
        }
        return total
    }
}
