import COpenBLAS

/// What GPTQ quantizes to and how (GPTQModel's `QuantizeConfig`, the parts ckpt uses).
public struct GPTQOptions: Sendable, Equatable {
    /// The codebook: integers of `bits` (GPTQModel), or bitsandbytes' NF4/FP4 table (ckpt's extension).
    public enum Codes: Sendable, Equatable {
        case integer(bits: Int, symmetric: Bool)
        case fourBit(FourBitType)
    }

    public var codes: Codes
    /// Columns per group; nil for one group per row.
    public var groupSize: Int?
    /// Columns in decreasing order of diag(H) (`desc_act`).
    public var actOrder = false
    /// Group parameters fixed up front on the unpermuted weight (`static_groups`).
    public var staticGroups = false
    /// Act-order within groups (GPTQModel's `act_group_aware`): each group's columns by decreasing
    /// diag(H), whole groups by their largest, the tail in place; groups stay contiguous, so g_idx
    /// stays `k / G` (loaders that take no permuted g_idx read it) and parameters still follow the updates.
    public var groupAwareOrder = false
    /// Dampening as a fraction of the mean of diag(H) (`damp_percent`).
    public var damp: Double = 0.01
    /// Added to `damp` after each failed Cholesky (`damp_auto_increment`).
    public var dampIncrement: Double = 0.01
    /// Columns per lazy batch update.
    public var blockSize = 128
    /// Scales are rounded to it before they are used, so codes are the best for the stored scale (f32 = GPTQModel's arithmetic).
    public var scaleType: DType = .f32
    /// GPTQModel's `mse`: 0 takes each group's min/max range (its default); a positive value is the
    /// norm of the range search (`GPTQRangeSearch`), which shrinks the range in `GPTQRangeSearch.grid`
    /// steps by up to `GPTQRangeSearch.maxShrink` and keeps the trial of least Σ |q − w|^mse
    /// (`GPTQRangeSearch.standardNorm`, 2.4, is the original GPTQ's). At most `GPTQRangeSearch.largestNorm`.
    public var mse: Double = 0
    /// GPTAQ's α (GPTQModel's `GPTAQConfig.alpha`, 0.25 there): how much of the asymmetry term the
    /// updates carry when `GPTQ.quantize` is given the float model's inputs (`shift`).
    public var asymmetryAlpha: Double = 0.25
    /// Refit every row's scales to its chosen codes by least squares through H (`GPTQScaleRefit`),
    /// the codes unchanged; not with GPTAQ's `shift`, whose target is another product.
    public var refitScales = false
    /// Rounds of refinement once GPTQ has chosen the codes: each round refits the scales (with
    /// `refitScales`) and then moves the codes by coordinate descent through H under them
    /// (`GPTQCoordinateDescent`, up to `GPTQCoordinateDescent.passesPerRound` passes), and a last
    /// refit follows the last round; 0 for GPTQ's codes as they are. Not with GPTAQ's `shift`,
    /// whose target is another product.
    public var refineRounds = 0

    /// Options for `codes` in groups of `groupSize`, GPTQModel's defaults otherwise.
    public init(codes: Codes, groupSize: Int?) {
        self.codes = codes
        self.groupSize = groupSize
    }
}

/// One weight quantized by GPTQ.
public struct GPTQResult: Sendable {
    /// Integer codes, scales, zeros and g_idx (integer codebooks only).
    public var integer: IntegerCodes?
    /// NF4/FP4: per row and group the absmax (`[rows, groups]`), with the chosen values in `quantized`.
    public var absmax: [Float]?
    /// The values the codes stand for, `[rows, columns]` in column order (GPTQModel's `Q`).
    public var quantized: [Float]
    /// The dampening fraction that let the Cholesky succeed.
    public var damp: Double
    /// Σ (w − q)² / d² / 2 over the weight: GPTQ's own loss.
    public var loss: Double
}

/// Failures of GPTQ.
public enum GPTQError: Error, Equatable, Sendable, CustomStringConvertible {
    case notPositiveDefinite(tensor: String, damp: Double)
    case badShape(tensor: String, reason: String)
    case invalidNorm(tensor: String, norm: Double)

    /// The one-line message naming the weight.
    public var description: String {
        switch self {
        case let .notPositiveDefinite(tensor, damp):
            return "'\(tensor)': the Hessian is not positive definite even with dampening \(damp) (expected calibration text that reaches every input column)"
        case let .badShape(tensor, reason):
            return "'\(tensor)': \(reason)"
        case let .invalidNorm(tensor, norm):
            return "'\(tensor)': the range search's norm is \(norm) (expected 0 for none, or a value in (0, \(GPTQRangeSearch.largestNorm)])"
        }
    }
}

/// GPTQ (Frantar et al.) as GPTQModel's `GPTQ.quantize` runs it: dead columns zeroed, optional
/// act-order, the upper Cholesky factor of the dampened inverse Hessian, columns quantized one
/// at a time with the error fed forward, lazily in blocks. See docs/w4a16-formats-spec.md §4.
public enum GPTQ {
    /// Quantizes `weight` `[rows, columns]` given `hessian` `[columns, columns]` (any positive multiple of XᵀX).
    /// `threads` share the range search (`options.mse`), the column loop's row pieces and the scale
    /// refit; the result is the same for any count. OpenBLAS runs single-threaded from the column loop
    /// on (a process-wide setting, restored on return). Once an interruption is requested the result
    /// is partial: the caller checks `Interruption.isRequested`.
    ///
    /// With `shift` = Σ (x_float − x)ᵀ·x `[columns, columns]` (x the inputs `hessian` sums, x_float
    /// the float model's inputs of the same tokens, the same multiple), the updates also steer the
    /// outputs toward the float model's W·x_float rather than W·x, as GPTAQ (Li et al. 2025,
    /// GPTQModel's `gptaq`) does: P = α·triu(D·Uᵀ, 1)·U, U the upper Cholesky factor of H⁻¹, and
    /// each column c's update gains w_c·P[c, ·]. A zero `shift` gives plain GPTQ's result exactly.
    public static func quantize(_ weight: [Float], hessian: [Float], rows: Int, columns: Int, options: GPTQOptions,
                                name: String = "", threads: ThreadBudget = .allCores, shift: [Float]? = nil) throws -> GPTQResult {
        guard weight.count == rows * columns, hessian.count == columns * columns, shift.map({ $0.count == columns * columns }) ?? true else {
            throw GPTQError.badShape(tensor: name, reason: "weight \(weight.count) and Hessian \(hessian.count) values for [\(rows), \(columns)]")
        }
        let group = options.groupSize.map { Swift.min($0, columns) } ?? columns
        if case .fourBit = options.codes, columns % group != 0 {
            throw GPTQError.badShape(tensor: name, reason: "4-bit codebooks need blocks that divide the rows (\(columns) columns, blocks of \(group))")
        }
        guard options.mse == 0 || (options.mse > 0 && options.mse <= GPTQRangeSearch.largestNorm) else {
            throw GPTQError.invalidNorm(tensor: name, norm: options.mse)
        }
        var w = weight, h = hessian
        // Whole-row parameters come before dead columns are zeroed (GPTQModel L1010); only one group per row uses them.
        let rowParameters = options.groupSize == nil ? parameters(w, rows: rows, columns: columns, range: 0..<columns, options: options, threads: threads) : []
        for c in 0..<columns where h[c * columns + c] == 0 {
            h[c * columns + c] = 1
            for n in 0..<rows { w[n * columns + c] = 0 }
        }
        let groups = (columns + group - 1) / group
        let staticParameters: [[(Float, Float)]]? = options.staticGroups && options.groupSize != nil
            ? (0..<groups).map { parameters(w, rows: rows, columns: columns, range: ($0 * group)..<Swift.min(columns, ($0 + 1) * group), options: options, threads: threads) }
            : nil
        // Act-order: columns by decreasing diag(H), ties by index (a stable sort).
        var order = Array(0..<columns)
        func louder(_ a: Int, _ b: Int) -> Bool { h[a * columns + a] != h[b * columns + b] ? h[a * columns + a] > h[b * columns + b] : a < b }
        let groupAware = options.actOrder && options.groupAwareOrder && options.groupSize != nil && !options.staticGroups
        if groupAware {
            let full = columns / group
            let peak = (0..<full).map { g in (g * group..<(g + 1) * group).map { h[$0 * columns + $0] }.max()! }
            let groupOrder = (0..<full).sorted { peak[$0] != peak[$1] ? peak[$0] > peak[$1] : $0 < $1 }
            order = groupOrder.flatMap { g in (g * group..<(g + 1) * group).sorted(by: louder) } + Array((full * group)..<columns)
        } else if options.actOrder {
            order.sort(by: louder)
        }
        var permuted = [Float](repeating: 0, count: rows * columns), hp = [Float](repeating: 0, count: columns * columns)
        for n in 0..<rows { for c in 0..<columns { permuted[n * columns + c] = w[n * columns + order[c]] } }
        for i in 0..<columns { for j in 0..<columns { hp[i * columns + j] = h[order[i] * columns + order[j]] } }
        let (u, damp) = try inverseCholesky(hp, size: columns, damp: options.damp, increment: options.dampIncrement, name: name)
        let asymmetry = shift.map { asymmetryTerm($0, u: u, order: order, alpha: Float(options.asymmetryAlpha)) }

        // The lazy column loop (GPTQModel L1210–1257). Rows are independent once a block's group
        // parameters are known, so each block runs in row pieces on `threads`, OpenBLAS single-threaded
        // inside them (its own workers would spin between calls beside ckpt's). That setting is the
        // process's: it is restored on return, and the refit below runs in it too.
        let blockSize = Swift.max(1, options.blockSize)
        let work = LazyColumns(weight: permuted, rows: rows, columns: columns, blockSize: blockSize)
        permuted = []
        var groupParameters: [[(Float, Float)]] = []
        var current = rowParameters
        var columnParameters = [[(Float, Float)]](repeating: [], count: blockSize)
        let blasThreads = MatrixMultiply.openBLASThreadCount
        MatrixMultiply.setThreads(.single)
        defer { MatrixMultiply.setThreads(ThreadBudget(blasThreads)) }
        var i1 = 0
        while i1 < columns {
            let i2 = Swift.min(i1 + blockSize, columns), width = i2 - i1
            for i in 0..<width {
                let c = i1 + i
                if options.groupSize != nil {
                    if let staticParameters {
                        current = staticParameters[order[c] / group]
                    } else if c % group == 0 {
                        // Measured on the weight as previous blocks left it, not this block's updates (GPTQModel's quirk, spec §4.3).
                        current = parameters(work.weightBuffer, rows: rows, columns: columns, range: c..<Swift.min(columns, c + group),
                                             options: options, threads: threads)
                        groupParameters.append(current)
                    }
                }
                columnParameters[i] = current
            }
            u.withUnsafeBufferPointer { uBuffer in
                (asymmetry ?? []).withUnsafeBufferPointer { asymmetryBuffer in
                    columnParameters.withUnsafeBufferPointer { parameterColumns in
                        let shared = UncheckedSendable((uBuffer.baseAddress!, asymmetry == nil ? nil : asymmetryBuffer.baseAddress, parameterColumns))
                        threads.forEachPiece(of: rows, size: LazyColumns.rowsPerPiece) { piece in
                            let (u, asymmetry, parameterColumns) = shared.value
                            work.run(piece, columns: i1..<i2, u: u, asymmetry: asymmetry, parameters: parameterColumns, options: options)
                        }
                    }
                }
            }
            i1 = i2
        }
        // Pieces an interruption skipped are left as they were: the caller checks `Interruption.isRequested`.
        let loss = UnsafeBufferPointer(start: work.rowLoss, count: rows).reduce(0, +)

        // Back to column order; groups as appended (processing order), which g_idx indexes.
        var units = [Float](repeating: 0, count: rows * columns)
        for n in 0..<rows { for c in 0..<columns { units[n * columns + order[c]] = work.units[n * columns + c] } }
        var allGroups: [[(Float, Float)]] = options.groupSize == nil ? [rowParameters] : (staticParameters ?? groupParameters)
        var groupOf = [Int32](repeating: 0, count: columns)
        for c in 0..<columns { groupOf[order[c]] = Int32(options.groupSize == nil ? 0 : (staticParameters != nil ? order[c] / group : c / group)) }
        if groupAware {
            // Processing group p is the original group order[p·G] / G: parameters back in column order.
            var byColumn = allGroups
            for p in allGroups.indices { byColumn[order[p * group] / group] = allGroups[p] }
            allGroups = byColumn
            for k in 0..<columns { groupOf[k] = Int32(k / group) }
        }
        let count = allGroups.count
        // Each value as the loop chose it: its group's scale times its unit (the same product, so the same bits).
        var quantized = [Float](repeating: 0, count: rows * columns)
        for n in 0..<rows { for k in 0..<columns { quantized[n * columns + k] = allGroups[Int(groupOf[k])][n].0 * units[n * columns + k] } }
        switch options.codes {
        case let .integer(bits, symmetric):
            var codes = IntegerCodes(rows: rows, columns: columns, bits: bits, groupSize: group, codes: [UInt8](repeating: 0, count: rows * columns),
                                     scales: [Float](repeating: 0, count: rows * count), zeros: [UInt8](repeating: 0, count: rows * count),
                                     symmetric: symmetric, groupIndex: groupOf, scaleType: options.scaleType)
            for n in 0..<rows {
                for g in 0..<count {
                    codes.scales[n * count + g] = allGroups[g][n].0
                    codes.zeros[n * count + g] = UInt8(allGroups[g][n].1)
                }
                for k in 0..<columns { codes.codes[n * columns + k] = UInt8(units[n * columns + k] + allGroups[Int(groupOf[k])][n].1) }
            }
            if shift == nil {
                let zeros = codes.zeros.map(Float.init)
                codes.scales = refine(&units, scales: codes.scales, zeros: zeros, weight: w, hessian: h, damp: damp, rows: rows, columns: columns,
                                      groupOf: groupOf, order: order, scaleType: options.scaleType, options: options, threads: threads, into: &quantized)
                for n in 0..<rows {
                    for k in 0..<columns { codes.codes[n * columns + k] = UInt8(units[n * columns + k] + zeros[n * count + Int(groupOf[k])]) }
                }
            }
            if PackQuantizedLayout.isMonotonic(groupOf) { codes.groupIndex = nil }
            return GPTQResult(integer: codes, absmax: nil, quantized: quantized, damp: damp, loss: loss)
        case .fourBit:
            var absmax = [Float](repeating: 0, count: rows * count)
            for n in 0..<rows { for g in 0..<count { absmax[n * count + g] = allGroups[g][n].0 } }
            if shift == nil {
                absmax = refine(&units, scales: absmax, zeros: [Float](repeating: 0, count: absmax.count), weight: w, hessian: h, damp: damp,
                                rows: rows, columns: columns, groupOf: groupOf, order: order, scaleType: .f32, options: options, threads: threads,
                                into: &quantized)
            }
            return GPTQResult(integer: nil, absmax: absmax, quantized: quantized, damp: damp, loss: loss)
        }
    }

    /// λ = `damp` · mean(diag h): what GPTQ's updates added to H's diagonal.
    static func damping(_ h: [Float], size k: Int, damp: Double) -> Float {
        Float(damp * meanDiagonal(h, size: k))
    }

    /// mean(diag h) of `h` `[k, k]`, summed in f64.
    static func meanDiagonal(_ h: [Float], size k: Int) -> Double {
        var sum = 0.0
        for i in 0..<k { sum += Double(h[i * k + i]) }
        return sum / Double(Swift.max(k, 1))
    }

    /// What follows GPTQ's column loop: with `options.refitScales`, the scales refitted to the codes;
    /// then `options.refineRounds` rounds of coordinate descent over the codes under the scales, each
    /// followed by a refit. Returns the scales; `quantized` holds the scales times the units.
    static func refine(_ units: inout [Float], scales: [Float], zeros: [Float], weight: [Float], hessian: [Float], damp: Double, rows: Int,
                       columns: Int, groupOf: [Int32], order: [Int], scaleType: DType, options: GPTQOptions, threads: ThreadBudget,
                       into quantized: inout [Float]) -> [Float] {
        let groups = scales.count / Swift.max(rows, 1)
        var scales = scales
        let lambda = damping(hessian, size: columns, damp: damp)
        // Every refit reads the same W·H.
        let product = options.refitScales
            ? GPTQScaleRefit.weightTimesHessian(weight: weight, hessian: hessian, rows: rows, columns: columns, threads: threads) : []
        func refitScales() {
            guard options.refitScales else { return }
            scales = GPTQScaleRefit.refit(units: units, weight: weight, hessian: hessian, damping: lambda,
                                          rows: rows, columns: columns, groupOf: groupOf, groups: groups, scales: scales,
                                          scaleType: scaleType, threads: threads, weightTimesHessian: product)
        }
        refitScales()
        for _ in 0..<options.refineRounds where !Interruption.isRequested {
            let moved = GPTQCoordinateDescent.refine(units: &units, weight: weight, hessian: hessian, damping: lambda,
                                                     rows: rows, columns: columns, groupOf: groupOf, scales: scales, zeros: zeros, order: order,
                                                     passes: GPTQCoordinateDescent.passesPerRound, options: options, threads: threads)
            guard moved > 0 else { break }
            refitScales()
        }
        for n in 0..<rows { for k in 0..<columns { quantized[n * columns + k] = scales[n * groups + Int(groupOf[k])] * units[n * columns + k] } }
        return scales
    }

    /// GPTAQ's P = α·triu(D·Uᵀ, 1)·U in processing order, `[columns, columns]` row-major, D = `shift`
    /// permuted by `order`. P is strictly upper triangular: a column's update reaches only later columns.
    static func asymmetryTerm(_ shift: [Float], u: [Float], order: [Int], alpha: Float) -> [Float] {
        let k = order.count
        var d = [Float](repeating: 0, count: k * k)
        for i in 0..<k { for j in 0..<k { d[i * k + j] = shift[order[i] * k + order[j]] } }
        var a = [Float](repeating: 0, count: k * k), p = [Float](repeating: 0, count: k * k)
        d.withUnsafeBufferPointer { dp in
            u.withUnsafeBufferPointer { up in
                a.withUnsafeMutableBufferPointer { ap in
                    MatrixMultiply.multiply(dp.baseAddress!, up.baseAddress!, into: ap.baseAddress!, m: k, n: k, k: k, transposeB: true)
                }
            }
        }
        for i in 0..<k { for j in 0...i { a[i * k + j] = 0 } }
        a.withUnsafeBufferPointer { ap in
            u.withUnsafeBufferPointer { up in
                p.withUnsafeMutableBufferPointer { pp in
                    MatrixMultiply.multiply(ap.baseAddress!, up.baseAddress!, into: pp.baseAddress!, m: k, n: k, k: k, alpha: alpha)
                }
            }
        }
        return p
    }

    /// Per row, (scale, zero) of the columns `range` of `w` `[rows, columns]`: GPTQModel's
    /// `find_params` for integers, the absmax (zero 0) for a 4-bit codebook; with `options.mse`,
    /// the range search's choice (`GPTQRangeSearch`), rows spread over `threads`.
    static func parameters(_ w: [Float], rows: Int, columns: Int, range: Range<Int>, options: GPTQOptions, threads: ThreadBudget) -> [(Float, Float)] {
        w.withUnsafeBufferPointer { parameters($0, rows: rows, columns: columns, range: range, options: options, threads: threads) }
    }

    /// `parameters` of a weight in memory GPTQ holds itself.
    static func parameters(_ wp: UnsafeBufferPointer<Float>, rows: Int, columns: Int, range: Range<Int>, options: GPTQOptions,
                           threads: ThreadBudget) -> [(Float, Float)] {
        options.mse > 0
            ? searchedParameters(wp, rows: rows, columns: columns, range: range, options: options, threads: threads)
            : plainParameters(wp, rows: rows, columns: columns, range: range, options: options)
    }

    /// `parameters` without the search: min/max, or absmax.
    static func plainParameters(_ wp: UnsafeBufferPointer<Float>, rows: Int, columns: Int, range: Range<Int>, options: GPTQOptions) -> [(Float, Float)] {
        (0..<rows).map { n in
            let slice = UnsafeBufferPointer(rebasing: wp[(n * columns + range.lowerBound)..<(n * columns + range.upperBound)])
            switch options.codes {
            case let .integer(bits, symmetric):
                let (scale, zero) = IntegerQuantizer.gptqParameters(slice, bits: bits, symmetric: symmetric, scaleType: options.scaleType)
                return (scale, Float(zero))
            case .fourBit:
                return (slice.reduce(Float(0)) { Swift.max($0, abs($1)) }, 0)
            }
        }
    }

    /// The value `v` quantizes to under one row's (scale, zero): the scale times `quantizedUnit`.
    @inline(__always)
    static func quantizedValue(_ v: Float, _ p: (Float, Float), options: GPTQOptions) -> Float {
        p.0 * quantizedUnit(v, p, options: options)
    }

    /// The unit `v` quantizes to under one row's (scale, zero): `clamp(round(v / s) + z) − z`, or the
    /// nearest codebook entry (ties to the lower index; 0 for a zero absmax).
    @inline(__always)
    static func quantizedUnit(_ v: Float, _ p: (Float, Float), options: GPTQOptions) -> Float {
        switch options.codes {
        case let .integer(bits, _):
            return Float(IntegerQuantizer.gptqCode(v, scale: p.0, zero: UInt8(p.1), bits: bits)) - p.1
        case let .fourBit(type):
            guard p.0 > 0 else { return 0 }
            let x = Swift.min(Swift.max(v / p.0, -1), 1)
            return (type == .nf4 ? nf4Nearest : fp4Nearest).nearest(x)
        }
    }

    /// `quantizedUnit` with the codebook scanned entry by entry, for tests of the search.
    static func quantizedUnitReference(_ v: Float, _ p: (Float, Float), options: GPTQOptions) -> Float {
        guard case let .fourBit(type) = options.codes else { return quantizedUnit(v, p, options: options) }
        guard p.0 > 0 else { return 0 }
        let table = type.code
        let x = Swift.min(Swift.max(v / p.0, -1), 1)
        var best = 0
        for i in 1..<16 where abs(x - table[i]) < abs(x - table[best]) { best = i }
        return table[best]
    }

    static let nf4Nearest = CodebookNearest(.nf4)
    static let fp4Nearest = CodebookNearest(.fp4)

    /// The upper Cholesky factor U of (H + λI)⁻¹ (UᵀU = (H + λI)⁻¹), λ = damp · mean(diag H), in f64;
    /// on failure the dampening grows by `increment` while below 1 (GPTQModel L911–937).
    static func inverseCholesky(_ h: [Float], size k: Int, damp: Double, increment: Double, name: String) throws -> (u: [Float], damp: Double) {
        let mean = meanDiagonal(h, size: k)
        var p = damp
        while true {
            var a = h.map(Double.init)
            for i in 0..<k { a[i * k + i] += p * mean }
            var n = Int32(k), info: Int32 = 0
            var lower = Int8(UInt8(ascii: "L")), upper = Int8(UInt8(ascii: "U"))
            // Symmetric, so row- and column-major agree; the lower triangle (column-major) is what LAPACK fills.
            dpotrf_(&lower, &n, &a, &n, &info)
            if info == 0 { dpotri_(&lower, &n, &a, &n, &info) }
            if info == 0 {
                for j in 0..<k { for i in 0..<j { a[i + j * k] = a[j + i * k] } }  // mirror to the upper triangle
                dpotrf_(&upper, &n, &a, &n, &info)
            }
            if info == 0 {
                // Column-major upper U[i][j] (i ≤ j) sits at i + j·k; written row-major.
                var u = [Float](repeating: 0, count: k * k)
                for i in 0..<k { for j in i..<k { u[i * k + j] = Float(a[i + j * k]) } }
                return (u, p)
            }
            p += increment
            guard increment > 0, p < 1 else { throw GPTQError.notPositiveDefinite(tensor: name, damp: p - increment) }
        }
    }
}

/// GPTQ's working memory for the lazy column loop: the weight as the errors leave it, the chosen
/// values, each row's loss, and per row one block's values and errors. Every piece of rows touches
/// only its own rows, so pieces run on separate threads.
final class LazyColumns: @unchecked Sendable {
    /// Rows per piece of work: a fixed cut, so the result is the same for any thread count. Each
    /// piece's update multiplies by U's block rows, which OpenBLAS packs on every call: 64 rows
    /// keep that packing small beside the product.
    static let rowsPerPiece = 64

    let rows: Int, columns: Int, blockSize: Int
    /// `[rows, columns]` in processing order, updated by the errors fed forward.
    let weight: UnsafeMutablePointer<Float>
    /// The chosen units `[rows, columns]` in processing order: GPTQModel's `Q` over each value's scale.
    let units: UnsafeMutablePointer<Float>
    /// Σ e² / 2 per row.
    let rowLoss: UnsafeMutablePointer<Double>
    /// Per row, the current block's values and its errors `(w − q) / d`, `blockSize` each.
    let block: UnsafeMutablePointer<Float>, errors: UnsafeMutablePointer<Float>

    /// Buffers for `weight` `[rows, columns]`, copied in.
    init(weight values: [Float], rows: Int, columns: Int, blockSize: Int) {
        (self.rows, self.columns, self.blockSize) = (rows, columns, blockSize)
        let weight = UnsafeMutablePointer<Float>.allocate(capacity: Swift.max(1, rows * columns))
        weight.initialize(repeating: 0, count: rows * columns)
        values.withUnsafeBufferPointer { if let source = $0.baseAddress { weight.update(from: source, count: rows * columns) } }
        self.weight = weight
        units = .allocate(capacity: Swift.max(1, rows * columns))
        units.initialize(repeating: 0, count: rows * columns)
        rowLoss = .allocate(capacity: Swift.max(1, rows))
        rowLoss.initialize(repeating: 0, count: rows)
        block = .allocate(capacity: Swift.max(1, rows * blockSize))
        errors = .allocate(capacity: Swift.max(1, rows * blockSize))
    }

    deinit {
        for p in [weight, units, block, errors] { p.deallocate() }
        rowLoss.deallocate()
    }

    /// The weight as a buffer, for the group parameters.
    var weightBuffer: UnsafeBufferPointer<Float> { UnsafeBufferPointer(start: weight, count: rows * columns) }

    /// The block `span` of columns for the rows `piece`: each column quantized with `parameters`
    /// (one per column of the block, per row), its error fed to the block's later columns through
    /// U (and GPTAQ's P), then to the columns after the block at once: W[:, i2:] −= E·U[i1:i2, i2:].
    func run(_ piece: Range<Int>, columns span: Range<Int>, u: UnsafePointer<Float>, asymmetry: UnsafePointer<Float>?,
             parameters: UnsafeBufferPointer<[(Float, Float)]>, options: GPTQOptions) {
        let (i1, i2, width) = (span.lowerBound, span.upperBound, span.count)
        for n in piece {
            let row = block + n * width, rowErrors = errors + n * width
            row.update(from: weight + n * columns + i1, count: width)
            var loss = 0.0
            for i in 0..<width {
                let c = i1 + i
                let value = row[i]
                let p = parameters[i][n]
                let unit = GPTQ.quantizedUnit(value, p, options: options)
                units[n * columns + c] = unit
                let q = p.0 * unit
                let e = (value - q) / u[c * columns + c]
                loss += Double(e * e) / 2
                rowErrors[i] = e
                let uRow = u + c * columns + i1
                if let asymmetry {
                    let pRow = asymmetry + c * columns + i1
                    for j in i..<width { row[j] -= e * uRow[j] - value * pRow[j] }
                } else {
                    for j in i..<width { row[j] -= e * uRow[j] }
                }
            }
            rowLoss[n] += loss
        }
        guard i2 < columns, !piece.isEmpty else { return }
        let first = piece.lowerBound
        MatrixMultiply.multiply(errors + first * width, u + i1 * columns + i2, into: weight + first * columns + i2,
                                m: piece.count, n: columns - i2, k: width, alpha: -1, beta: 1, lda: width, ldb: columns, ldc: columns)
        if let asymmetry {
            // GPTAQ: W[:, i2:] += W1 · P[i1:i2, i2:], W1 the block as the loop left it (its chosen values).
            MatrixMultiply.multiply(block + first * width, asymmetry + i1 * columns + i2, into: weight + first * columns + i2,
                                    m: piece.count, n: columns - i2, k: width, alpha: 1, beta: 1, lda: width, ldb: columns, ldc: columns)
        }
    }
}
