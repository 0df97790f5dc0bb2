@testable import CheckpointKit
import Testing

/// Row ranges that start and end on awkward boundaries: single rows, odd counts, the last row.
private func awkwardRanges(rows: Int) -> [Range<Int>] {
    var ranges: [Range<Int>] = [0..<rows, 0..<1, (rows - 1)..<rows]
    if rows > 3 { ranges += [1..<(rows - 1), (rows / 2)..<(rows / 2 + 1), 1..<4] }
    return ranges
}

/// Every 2-D tensor of `folder`, widened a row range at a time, against the whole-tensor decode.
private func expectRowsMatchWholeDecode(_ folder: String) throws -> Int {
    let logical = try LogicalCheckpoint(try Checkpoint(path: Paths.fixture(folder)))
    var checked = 0
    for tensor in logical.tensors where tensor.shape.count == 2 {
        let whole = logical.float32(tensor, threads: .single)
        let stored = logical.storedRows(tensor, threads: .single)
        #expect(stored.rows == tensor.shape[0] && stored.columns == tensor.shape[1])
        for range in awkwardRanges(rows: stored.rows) {
            var out = [Float](repeating: .nan, count: range.count * stored.columns)
            out.withUnsafeMutableBufferPointer { stored.widen(range, into: $0.baseAddress!) }
            let expected = Array(whole[(range.lowerBound * stored.columns)..<(range.upperBound * stored.columns)])
            #expect(out.elementsEqual(expected) { $0.bitPattern == $1.bitPattern }, "\(folder) \(tensor.name) rows \(range)")
        }
        checked += 1
    }
    return checked
}

@Test("Rows widened from bf16, NF4 (double quant), int8 and GGUF blocks equal the whole-tensor decode bit for bit",
      arguments: ["models/tiny-llama", "models/tiny-llama-bnb-nf4", "models/tiny-llama-ct-int8", "convert/tiny-llama.gguf"])
func storedRowsMatchWholeDecode(folder: String) throws {
    #expect(try expectRowsMatchWholeDecode(folder) > 10)
}

@Test("A slice of a fused projection widens the same rows as the whole")
func fusedSliceWidensItsRows() {
    let values = (0..<(6 * 4)).map { Float($0) }
    let whole = StoredRows.floats(values, rows: 6, columns: 4)
    let middle = whole.slice(2..<5)
    var out = [Float](repeating: 0, count: 2 * 4)
    out.withUnsafeMutableBufferPointer { middle.widen(1..<3, into: $0.baseAddress!) }
    #expect(out == Array(values[12..<20]))
    #expect(middle.rows == 3 && middle.columns == 4)
}

@Test("4-bit range decoding (Swift and AVX-512) equals the reference at odd starts, odd ends and block edges",
      arguments: [FourBitType.nf4, .fp4])
func fourBitRangeDecodeMatchesReference(type: FourBitType) {
    let n = 300, blockSize = 64
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    let packed = (0..<((n + 1) / 2)).map { _ -> UInt8 in
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return UInt8(truncatingIfNeeded: state >> 33)
    }
    let absmax = (0..<((n + blockSize - 1) / blockSize)).map { Float($0 + 1) * 0.37 }
    var reference = [Float](repeating: 0, count: n)
    packed.withUnsafeBufferPointer { p in
        absmax.withUnsafeBufferPointer { a in
            reference.withUnsafeMutableBufferPointer {
                FourBitQuantizer.dequantizeReference(packed: p, absmax: a, blockSize: blockSize, type: type, into: $0)
            }
        }
    }
    let pairs = FourBitQuantizer.pairTable(type.code)
    for wide in avx512Available ? [false, true] : [false] {
    for range in [0..<n, 1..<n, 63..<65, 64..<128, 1..<2, 127..<130, 299..<300, 5..<6, 3..<40, 16..<64] {
        var out = [Float](repeating: .nan, count: range.count)
        packed.withUnsafeBufferPointer { p in
            absmax.withUnsafeBufferPointer { a in
                pairs.withUnsafeBufferPointer { t in
                    out.withUnsafeMutableBufferPointer {
                        FourBitQuantizer.dequantizeRange(packed: p.baseAddress!, absmax: a.baseAddress!, blockSize: blockSize, pairs: t.baseAddress!,
                                                         range: range, into: $0.baseAddress!, wide: wide)
                    }
                }
            }
        }
        #expect(out == Array(reference[range]), "\(type) \(range), AVX-512 \(wide)")
    }
    }
}

@Test("The soft-cap kernel stays within Float rounding of tanh in f64")
func softcapMatchesReference() {
    let values: [Float] = (0..<37).map { Float($0 - 18) * 3.7 } + [0, -0, 1e-6, 200, -200, 49.9]
    for cap: Float in [50, 30, 5] {
        let expected = TransformerKernels.softcapReference(values, cap: cap)
        var ours = values
        ours.withUnsafeMutableBufferPointer { TransformerKernels.softcap($0.baseAddress!, count: $0.count, cap: cap) }
        let worst = zip(ours, expected).map { abs($0 - $1) / max(1, abs($1)) }.max() ?? .infinity
        #expect(worst < 1e-6, "cap \(cap): worst relative error \(worst)")
    }
}
