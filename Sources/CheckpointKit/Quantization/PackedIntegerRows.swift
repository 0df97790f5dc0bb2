/// One packed integer weight as a checkpoint stores it (compressed-tensors `pack-quantized`, GPTQ
/// or AWQ GEMM): its stored parts, the packed words first, and the decoder their layout needs.
public struct PackedIntegerWeight: QuantizedWeight {
    /// Every stored tensor of the weight, the packed words first.
    public var parts: [Checkpoint.Entry]
    let decoder: PackedIntegerRows
    /// The scheme the file's parameters describe.
    public var scheme: any QuantizationScheme

    /// `(u − z) · s` per group, rounded to the scale dtype as the format's loader computes it, as `[N, K]`.
    public func decode(from checkpoint: Checkpoint, shape: [Int], into out: UnsafeMutableBufferPointer<Float>, threads: ThreadBudget) {
        checkpoint.view(parts[0]).withBytes { decoder.decode($0, into: out, threads: threads) }
    }

    /// Rows decoded a tile at a time from the mapped words.
    public func storedRows(from checkpoint: Checkpoint, shape: [Int]) -> StoredRows? { decoder.storedRows(checkpoint.view(parts[0])) }
}

/// A packed integer weight read as the loaders read it, whichever way its words run:
/// compressed-tensors packs each output row along K, GPTQ packs each input column along K
/// (`qweight` `[K/w, N]`), AWQ packs along N in its own nibble order (`[K, N/8]`). Scales and
/// zero points are small and unpacked once to `[N, groups]`; the words stay as stored.
struct PackedIntegerRows: Sendable {
    /// Which way the words run.
    enum WordOrder: Sendable {
        /// `[N, ceil(K·b/32)]`, lowest column in the lowest bits (compressed-tensors).
        case alongRows
        /// `[ceil(K·b/32), N]`, lowest column in the lowest bits (GPTQ).
        case alongColumns
        /// `[K, N/8]` 4-bit, nibble i holding output `8c + awqOrder[i]` (AutoAWQ GEMM).
        case awq
    }

    let order: WordOrder
    let bits: Int
    /// Output rows N and input columns K of the logical `[N, K]` weight.
    let rows: Int, columns: Int
    let groups: Int
    /// `[N, groups]` scales as stored, widened.
    let scales: [Float]
    /// `[N, groups]` unsigned zero points (the true zero, whatever convention the file stores).
    let zeros: [UInt8]
    /// The group of each column.
    let groupOfColumn: [Int32]
    /// Products are rounded to it, as loaders compute in the scale dtype.
    let scaleType: DType

    /// Words per stored row.
    var wordsPerRow: Int {
        switch order {
        case .alongRows: return (columns * bits + 31) / 32
        case .alongColumns: return rows
        case .awq: return rows / 8
        }
    }

    /// The unsigned code of `[n, k]`.
    @inline(__always)
    func code(_ words: UnsafeRawPointer, _ n: Int, _ k: Int) -> UInt8 {
        // Files need not align their data to 4 bytes: every word is loaded unaligned.
        @inline(__always) func word(_ i: Int) -> UInt32 { words.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self) }
        let mask = UInt32((1 << bits) - 1), perWord = 32 / bits
        switch order {
        case .alongRows: return UInt8(truncatingIfNeeded: (word(n * wordsPerRow + k / perWord) >> UInt32((k % perWord) * bits)) & mask)
        case .alongColumns: return UInt8(truncatingIfNeeded: (word((k / perWord) * rows + n) >> UInt32((k % perWord) * bits)) & mask)
        case .awq: return UInt8(truncatingIfNeeded: (word(k * (rows / 8) + n / 8) >> UInt32(4 * IntegerPacking.awqNibble[n & 7])) & 0xF)
        }
    }

    /// Rows `first ..< first + count` of the `[N, K]` weight, `(u − z) · s` rounded to the scale dtype, into `out`.
    func decode(_ words: UnsafeRawPointer, first: Int, count: Int, into out: UnsafeMutablePointer<Float>) {
        groupOfColumn.withUnsafeBufferPointer { groupOf in
            for n in first..<(first + count) {
                let row = out + (n - first) * columns
                let base = n * groups
                for k in 0..<columns {
                    let g = base + Int(groupOf[k])
                    row[k] = IntegerCodes.round(Float(Int(code(words, n, k)) - Int(zeros[g])) * scales[g], to: scaleType)
                }
            }
        }
    }

    /// The rows as `StoredRows` over `view`'s words (mapped, read in place).
    func storedRows(_ view: TensorView) -> StoredRows {
        let decoder = self
        return StoredRows(rows: rows, columns: columns, storedBytes: view.byteCount + scales.count * 5 + groupOfColumn.count * 4) { first, count, out in
            view.withBytes { raw in decoder.decode(raw.baseAddress!, first: first, count: count, into: out) }
        }
    }

    /// The whole weight from `words` into `out`, rows spread over `threads`.
    func decode(_ words: UnsafeRawBufferPointer, into out: UnsafeMutableBufferPointer<Float>, threads: ThreadBudget) {
        let pointer = UncheckedSendable(words.baseAddress!)
        let target = UncheckedSendable(out.baseAddress!)
        let workers = max(1, min(threads.count, rows / 16))
        threads.forEachChunk(workers) { worker in
            let first = rows * worker / workers, last = rows * (worker + 1) / workers
            decode(pointer.value, first: first, count: last - first, into: target.value + first * columns)
        }
    }

    /// Column → group for `columns` columns in groups of `groupSize`.
    static func contiguousGroups(columns: Int, groupSize: Int) -> [Int32] { (0..<columns).map { Int32($0 / groupSize) } }

    /// `[a, b]` values transposed to `[b, a]`.
    static func transposed<T>(_ values: [T], rows a: Int, columns b: Int) -> [T] {
        guard let first = values.first else { return values }
        var out = [T](repeating: first, count: values.count)
        for i in 0..<a { for j in 0..<b { out[j * a + i] = values[i * b + j] } }
        return out
    }

    /// The words of an I32 view as UInt32 values.
    static func words(_ view: TensorView) -> [UInt32] { view.withBytes { IntegerPacking.words($0) } }
}
