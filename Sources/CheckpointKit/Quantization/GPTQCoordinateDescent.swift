import COpenBLAS
import Synchronization

/// Coordinate descent on GPTQ's own objective once its single pass is done: a row's output error
/// f(q) = (q − w)·(H + λI)·(q − w)ᵀ, with every other value fixed, is a parabola in one value q_j
/// whose lowest point is q_j − g_j / (H_jj + λ), g = (q − w)·(H + λI). The nearest code to that
/// point is the best code for q_j (a parabola is symmetric about its lowest point), so taking it
/// when it lowers f never raises f: passes over the columns reach codes that no single change can
/// improve. GPTQ visits each column once, committing it before the later columns have moved; the
/// passes revisit every column with all the others known (QuantEase, Behdin et al. 2023, does this
/// from scratch; here it starts from GPTQ's codes). Scales and zeros stay as they are.
public enum GPTQCoordinateDescent {
    /// Passes over the columns per refinement round (`GPTQOptions.refineRounds`); a pass that moves
    /// nothing ends the round early.
    public static let passesPerRound = 4
    /// The most rounds `GPTQOptions.refineRounds` is given by the command line: a round costs at most
    /// about `passesPerRound` of the weight's products with H, and one that moves nothing ends the refinement.
    public static let largestRoundCount = 100

    /// Rows per piece of work: a fixed cut, so the result is the same for any thread count. A piece's
    /// gradient is one product with H, which OpenBLAS packs whole on every call: 64 rows keep that
    /// packing under a third of the product (16 rows made it three times the product).
    static let rowsPerPiece = 64

    /// Refines `units` `[rows, columns]` (column order; a value is its group's scale times its unit)
    /// in place by up to `passes` passes over the columns in `order`, against `weight` under
    /// `hessian` + `damping`·I. `scales` and `zeros` are `[rows, groups]`, `groupOf` each column's
    /// group; a unit moves only to what `GPTQ.quantizedUnit` gives, so every code stays representable.
    /// Returns how many values changed. Rows go in pieces over `threads` (OpenBLAS single-threaded
    /// inside them, as the caller leaves it).
    static func refine(units: inout [Float], weight: [Float], hessian: [Float], damping: Float, rows: Int, columns: Int,
                       groupOf: [Int32], scales: [Float], zeros: [Float], order: [Int], passes: Int,
                       options: GPTQOptions, threads: ThreadBudget) -> Int {
        guard passes > 0, rows > 0, columns > 0 else { return 0 }
        let groups = scales.count / rows
        let changes = Atomic<Int>(0)
        // H's diagonal read once: in act-order its entries lie a whole row of H apart, a cache miss each.
        let curvatures = (0..<columns).map { hessian[$0 * columns + $0] + damping }
        units.withUnsafeMutableBufferPointer { u in
            weight.withUnsafeBufferPointer { w in
                hessian.withUnsafeBufferPointer { h in
                    let shared = UncheckedSendable((u, w, h))
                    threads.forEachPiece(of: rows, size: rowsPerPiece) { piece in
                        let (u, w, h) = shared.value
                        let changed = refine(piece, units: u, weight: w, hessian: h, curvatures: curvatures, damping: damping, columns: columns,
                                             groupOf: groupOf, groups: groups, scales: scales, zeros: zeros, order: order, passes: passes,
                                             options: options)
                        changes.add(changed, ordering: .relaxed)
                    }
                }
            }
        }
        return changes.load(ordering: .relaxed)
    }

    /// The rows `piece`: g = E·H + λE by one product for the piece, then each row's passes, g kept
    /// current by one axpy per changed value. `curvatures` holds H's diagonal plus λ.
    static func refine(_ piece: Range<Int>, units u: UnsafeMutableBufferPointer<Float>, weight w: UnsafeBufferPointer<Float>,
                       hessian h: UnsafeBufferPointer<Float>, curvatures: [Float], damping: Float, columns: Int, groupOf: [Int32], groups: Int,
                       scales: [Float], zeros: [Float], order: [Int], passes: Int, options: GPTQOptions) -> Int {
        let count = piece.count, first = piece.lowerBound
        var error = [Float](repeating: 0, count: count * columns), gradient = [Float](repeating: 0, count: count * columns)
        for r in 0..<count {
            let n = first + r
            for k in 0..<columns {
                error[r * columns + k] = scales[n * groups + Int(groupOf[k])] * u[n * columns + k] - w[n * columns + k]
            }
        }
        error.withUnsafeBufferPointer { e in
            gradient.withUnsafeMutableBufferPointer { g in
                MatrixMultiply.multiply(e.baseAddress!, h.baseAddress!, into: g.baseAddress!, m: count, n: columns, k: columns)
            }
        }
        var changed = 0
        gradient.withUnsafeMutableBufferPointer { g in
            curvatures.withUnsafeBufferPointer { curvatures in
                for r in 0..<count {
                    let n = first + r, row = g.baseAddress! + r * columns
                    for k in 0..<columns { row[k] += damping * error[r * columns + k] }
                    for _ in 0..<passes {
                        var changedInPass = 0
                        for j in order {
                            let curvature = curvatures[j]
                            guard curvature > 0 else { continue }
                            let group = n * groups + Int(groupOf[j])
                            let parameters = (scales[group], zeros[group])
                            let unit = u[n * columns + j], value = parameters.0 * unit
                            let best = GPTQ.quantizedUnit(value - row[j] / curvature, parameters, options: options)
                            guard best != unit else { continue }
                            let step = parameters.0 * best - value
                            // f changes by step·(2·g_j + step·curvature): take the move only when it is a strict descent.
                            guard step * (2 * row[j] + step * curvature) < 0 else { continue }
                            u[n * columns + j] = best
                            cblas_saxpy(Int32(columns), step, h.baseAddress! + j * columns, 1, row, 1)
                            row[j] += step * damping
                            changedInPass += 1
                        }
                        changed += changedInPass
                        if changedInPass == 0 { break }
                    }
                }
            }
        }
        return changed
    }
}
