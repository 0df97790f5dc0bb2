/// `--optimize-scales`: per block (or group), the scale that minimises the squared
/// reconstruction error, searched over a grid of fractions of the absmax scale. Values beyond the
/// chosen scale clamp to the largest code; dequantization is still `code × scale`, so the file
/// loads unchanged wherever the absmax would. The grid includes 1.0, so the result is never
/// worse than plain absmax for the block.
public enum ScaleSearch {
    /// 1.0, 0.9875, …, 0.75: 21 candidates.
    static let fractions: [Float] = (0...20).map { 1 - Float($0) * 0.0125 }

    /// One scale per block of `blockSize` flattened values, for `FourBitQuantizer.quantize(fixedScales:)`; an all-zero block keeps 0.
    /// With `importance` (one weight per column of rows `columns` long: an imatrix), each squared error counts by its column's weight.
    public static func fourBitScales(_ x: UnsafeBufferPointer<Float>, blockSize: Int, type: FourBitType, importance: [Float]? = nil,
                                     columns: Int = 1, threads: ThreadBudget = .allCores) -> [Float] {
        let n = x.count
        let blocks = FourBitQuantizer.blockCount(n, blockSize: blockSize)
        var scales = [Float](repeating: 0, count: blocks)
        let tables = FourBitQuantizer.BucketTables(type)
        let code = type.code
        scales.withUnsafeMutableBufferPointer { out in
            let blocksPerChunk = max(1, 4096 / blockSize)
            let chunks = (blocks + blocksPerChunk - 1) / blocksPerChunk
            threads.forEachChunk(chunks) { chunk in
                for b in (chunk * blocksPerChunk)..<min(blocks, (chunk + 1) * blocksPerChunk) {
                    let start = b * blockSize
                    let count = min(blockSize, n - start)
                    let absmax = FourBitQuantizer.absoluteMaximum(x.baseAddress! + start, count)
                    guard absmax > 0 else {
                        out[b] = absmax
                        continue
                    }
                    var best = absmax, bestError = Double.infinity
                    for f in fractions {
                        let scale = absmax * f
                        let error = fourBitError(x.baseAddress! + start, count: count, scale: scale, tables: tables, code: code,
                                                 importance: importance, first: start, columns: columns)
                        if error < bestError {
                            bestError = error
                            best = scale
                        }
                    }
                    out[b] = best
                }
            }
        }
        return scales
    }

    @inline(__always)
    static func fourBitError(_ x: UnsafePointer<Float>, count: Int, scale: Float, tables: FourBitQuantizer.BucketTables,
                             code: [Float], importance: [Float]? = nil, first: Int = 0, columns: Int = 1) -> Double {
        let reciprocal = 1 / scale
        var error: Float = 0
        var i = 0
        while i < count {
            var v = SIMD16<Float>()
            let lanes = min(16, count - i)
            if lanes == 16 { v = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self) } else {
                for k in 0..<lanes { v[k] = x[i + k] }
            }
            let nibbles = tables.nibbles(v * reciprocal)
            var decoded = SIMD16<Float>()
            for k in 0..<16 { decoded[k] = code[Int(nibbles[k])] }
            var e = v - decoded * scale
            if lanes < 16 { for k in lanes..<16 { e[k] = 0 } }
            if let importance {
                var w = SIMD16<Float>()
                for k in 0..<lanes { w[k] = importance[(first + i + k) % columns] }
                error += (e * e * w).sum()
            } else {
                error += (e * e).sum()
            }
            i += 16
        }
        return Double(error)
    }

    /// One scale per group, rows × groupsPerRow row-major, already rounded to `scaleType`; an all-zero group keeps 0.
    /// With `importance` (one weight per column), each squared error counts by its column's weight.
    public static func int8Scales(_ x: UnsafeBufferPointer<Float>, rows: Int, columns: Int, groupSize: Int, scaleType: DType,
                                  importance: [Float]? = nil, threads: ThreadBudget = .allCores) -> [Float] {
        let groups = BlockInt8Quantizer.groupsPerRow(columns: columns, groupSize: groupSize)
        var scales = [Float](repeating: 0, count: rows * groups)
        scales.withUnsafeMutableBufferPointer { out in
            threads.forEachChunk(rows) { r in
                for g in 0..<groups {
                    let start = r * columns + g * groupSize
                    let count = min(columns, (g + 1) * groupSize) - g * groupSize
                    let plain = FourBitQuantizer.absoluteMaximum(x.baseAddress! + start, count) / 127
                    guard plain > 0 else { continue }
                    var best = plain, bestError = Double.infinity
                    for f in fractions {
                        let scale = BlockInt8Quantizer.storedScale(plain * f, scaleType)
                        guard scale > 0 else { continue }
                        var error = 0.0
                        for i in start..<(start + count) {
                            let q = min(max((x[i] / scale).rounded(.toNearestOrAwayFromZero), -127), 127)
                            let e = Double(x[i] - q * scale)
                            error += e * e * Double(importance?[i - r * columns] ?? 1)
                        }
                        if error < bestError {
                            bestError = error
                            best = scale
                        }
                    }
                    out[r * groups + g] = best
                }
            }
        }
        return scales
    }
}
