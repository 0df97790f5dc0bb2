import CKernels

/// NF4 / FP4 blockwise quantization, bit-identical to bitsandbytes' `quantize_4bit` on CPU
/// (its default torch kernel, `backends/default/ops.py`, 0.50.2):
///
/// - the tensor is flattened row-major and cut into blocks of `blockSize`;
/// - a full block stores its absmax; its values are scaled by `x * (1 / max(absmax, 1e-38))`;
/// - the last, partial block stores `max(absmax, 1e-38)` and scales by `x / that` (a division,
///   not a reciprocal product: the two round differently);
/// - scaled values are clamped to [-1, 1] and bucketized against the 15 midpoints of the code
///   in value order, a value on a midpoint taking the lower code (`torch.bucketize`);
/// - two nibbles per byte, the first element in the high nibble; an odd count pads a 0.0.
///
/// An all-zero block therefore stores absmax 0 and encodes every element as the code of 0.0.
public enum FourBitQuantizer {
    /// torch's `clamp(min=1e-38)` bound, rounded to float32 (a subnormal).
    static let smallestDivisor = Float(1e-38)

    /// Elements per parallel chunk (a whole number of blocks is taken per chunk).
    static let chunkElements = 1 << 16

    /// Output sizes for `count` elements.
    public static func packedByteCount(_ count: Int) -> Int { (count + 1) / 2 }
    /// Blocks, hence absmax entries, for `count` elements; the last may be partial.
    public static func blockCount(_ count: Int, blockSize: Int) -> Int { (count + blockSize - 1) / blockSize }

    // MARK: - Reference: one value at a time, exactly the torch expressions.

    /// The torch expressions one value at a time: fills `packed` ((n + 1) / 2 bytes) and `absmax` (one per block).
    public static func quantizeReference(_ x: UnsafeBufferPointer<Float>, blockSize: Int, type: FourBitType,
                                         packed: UnsafeMutableBufferPointer<UInt8>, absmax: UnsafeMutableBufferPointer<Float>) {
        let n = x.count
        let midpoints = type.midpoints, order = type.order
        let blocks = blockCount(n, blockSize: blockSize)
        var nibbles = [UInt8](repeating: 0, count: n + 1)
        for b in 0..<blocks {
            let range = (b * blockSize)..<min(n, (b + 1) * blockSize)
            var m: Float = 0
            for i in range { m = max(m, abs(x[i])) }
            let isFull = range.count == blockSize
            let divisor = max(m, smallestDivisor)
            absmax[b] = isFull ? m : divisor
            let reciprocal = 1 / divisor
            for i in range {
                let scaled = min(max(isFull ? x[i] * reciprocal : x[i] / divisor, -1), 1)
                let bucket = midpoints.reduce(0) { $0 + ($1 < scaled ? 1 : 0) }
                nibbles[i] = order[bucket]
            }
        }
        if n % 2 == 1 {
            let zeroBucket = midpoints.reduce(0) { $0 + ($1 < 0 ? 1 : 0) }
            nibbles[n] = order[zeroBucket]
        }
        for j in 0..<packedByteCount(n) { packed[j] = nibbles[2 * j] << 4 | nibbles[2 * j + 1] }
    }

    /// `code[nibble] × absmax[block]` one value at a time, for `out.count` values.
    public static func dequantizeReference(packed: UnsafeBufferPointer<UInt8>, absmax: UnsafeBufferPointer<Float>, blockSize: Int,
                                           type: FourBitType, into out: UnsafeMutableBufferPointer<Float>) {
        let code = type.code
        for i in 0..<out.count {
            let byte = packed[i / 2]
            let nibble = i % 2 == 0 ? byte >> 4 : byte & 0xF
            out[i] = code[Int(nibble)] * absmax[i / blockSize]
        }
    }

    // MARK: - Fast: SIMD over a block, blocks spread over threads; equal to the reference bit for bit.

    /// With `fixedScales`, each block is encoded against the given scale (an optimised one)
    /// instead of its absmax, and that scale is stored where the absmax goes.
    public static func quantize(_ x: UnsafeBufferPointer<Float>, blockSize: Int, type: FourBitType,
                                packed: UnsafeMutableBufferPointer<UInt8>, absmax: UnsafeMutableBufferPointer<Float>,
                                fixedScales: UnsafeBufferPointer<Float>? = nil, threads: ThreadBudget = .allCores) {
        quantize(x, blockSize: blockSize, type: type, packed: packed, absmax: absmax, fixedScales: fixedScales, threads: threads,
                 wide: avx512Available)
    }

    /// `quantize` with the choice of kernel (the AVX-512 twins when `wide`), for tests of both.
    static func quantize(_ x: UnsafeBufferPointer<Float>, blockSize: Int, type: FourBitType,
                         packed: UnsafeMutableBufferPointer<UInt8>, absmax: UnsafeMutableBufferPointer<Float>,
                         fixedScales: UnsafeBufferPointer<Float>? = nil, threads: ThreadBudget = .allCores, wide: Bool) {
        let n = x.count
        precondition(blockSize >= 16 && blockSize % 16 == 0, "4-bit block sizes are multiples of 16")
        precondition(packed.count >= packedByteCount(n) && absmax.count >= blockCount(n, blockSize: blockSize))
        let tables = BucketTables(type)
        let blocksPerChunk = max(1, chunkElements / blockSize)
        let blocks = blockCount(n, blockSize: blockSize), fullBlocks = n / blockSize
        let chunks = (blocks + blocksPerChunk - 1) / blocksPerChunk
        threads.forEachChunk(chunks) { chunk in
            let firstBlock = chunk * blocksPerChunk, end = min(blocks, firstBlock + blocksPerChunk)
            func block(_ b: Int) {
                let start = b * blockSize
                let count = min(blockSize, n - start)
                let m = fixedScales?[b] ?? absoluteMaximum(x.baseAddress! + start, count)
                if count == blockSize {
                    absmax[b] = m
                    encodeBlock(x.baseAddress! + start, count: count, scale: max(m, smallestDivisor), divide: false,
                                tables: tables, into: packed.baseAddress! + start / 2, wide: wide)
                } else {
                    let divisor = max(m, smallestDivisor)
                    absmax[b] = divisor
                    encodeBlock(x.baseAddress! + start, count: count, scale: divisor, divide: true, tables: tables,
                                into: packed.baseAddress! + start / 2, wide: wide)
                }
            }
            var b = firstBlock
            if wide && fixedScales == nil {
                // The AVX-512 twin takes runs of full blocks (absmax and codes in one pass); a block with
                // a NaN or an infinity, and the partial last one, go through `block`.
                let runEnd = min(end, fullBlocks)
                tables.midpointScalars.withUnsafeBufferPointer { m in
                    tables.stepScalars.withUnsafeBufferPointer { steps in
                        while b < runEnd {
                            b += ckpt_fourbit_blocks_avx512(x.baseAddress! + b * blockSize, runEnd - b, blockSize, smallestDivisor, m.baseAddress!,
                                                            tables.lowestScalar, steps.baseAddress!, packed.baseAddress! + b * blockSize / 2,
                                                            absmax.baseAddress! + b)
                            if b < runEnd {
                                block(b)
                                b += 1
                            }
                        }
                    }
                }
            }
            while b < end {
                block(b)
                b += 1
            }
        }
    }

    /// The absmax `quantize` stores for each block (no fixed scales), without encoding: what double
    /// quantization's offset is the mean of, so a file's header can be planned before its weights are encoded.
    public static func blockAbsmax(_ x: UnsafeBufferPointer<Float>, blockSize: Int, threads: ThreadBudget = .single) -> [Float] {
        let n = x.count
        let blocks = blockCount(n, blockSize: blockSize)
        let blocksPerChunk = max(1, chunkElements / blockSize)
        let chunks = (blocks + blocksPerChunk - 1) / blocksPerChunk
        return [Float](unsafeUninitializedCapacity: blocks) { absmax, initialized in
            threads.forEachChunk(chunks) { chunk in
                for b in (chunk * blocksPerChunk)..<min(blocks, (chunk + 1) * blocksPerChunk) {
                    let start = b * blockSize, count = min(blockSize, n - start)
                    let m = absoluteMaximum(x.baseAddress! + start, count)
                    // A partial last block stores its divisor, as `quantize` does.
                    absmax[b] = count == blockSize ? m : max(m, smallestDivisor)
                }
            }
            initialized = blocks
        }
    }

    /// Encodes one block against a given scale (its absmax, or an optimised one): nibbles of
    /// `clamp(x * (1/scale))` (or `x / scale` when `divide`), packed two per byte.
    /// `start` of the block must be even, which every block size ≥ 2 guarantees.
    @inline(__always)
    static func encodeBlock(_ x: UnsafePointer<Float>, count: Int, scale: Float, divide: Bool, tables: BucketTables,
                            into out: UnsafeMutablePointer<UInt8>, wide: Bool = avx512Available) {
        let reciprocal = 1 / scale
        // The AVX-512 twin (`ckpt_fourbit_encode_avx512`) takes the runs of 16 where the CPU has it.
        var i = !wide ? 0 : tables.midpointScalars.withUnsafeBufferPointer { m in
            tables.stepScalars.withUnsafeBufferPointer { steps in
                ckpt_fourbit_encode_avx512(x, count, scale, reciprocal, divide ? 1 : 0, m.baseAddress!, tables.lowestScalar, steps.baseAddress!, out)
            }
        }
        while i + 16 <= count {
            let v = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self)
            let scaled = divide ? v / scale : v * reciprocal
            let nibbles = tables.nibbles(scaled)
            let bytes = (nibbles.evenHalf &<< 4) | nibbles.oddHalf
            UnsafeMutableRawPointer(out + i / 2).storeBytes(of: SIMD8<UInt8>(truncatingIfNeeded: bytes), as: SIMD8<UInt8>.self)
            i += 16
        }
        if i < count {
            // Tail of a partial last block; lanes past the end scale 0.0, as torch's padding does.
            var v = SIMD16<Float>()
            for k in 0..<(count - i) { v[k] = x[i + k] }
            let scaled = divide ? v / scale : v * reciprocal
            let nibbles = tables.nibbles(scaled)
            let bytes = (nibbles.evenHalf &<< 4) | nibbles.oddHalf
            for k in 0..<((count - i + 1) / 2) { out[i / 2 + k] = UInt8(truncatingIfNeeded: bytes[k]) }
        }
    }

    @inline(__always)
    static func absoluteMaximum(_ x: UnsafePointer<Float>, _ count: Int, wide: Bool = avx512Available) -> Float {
        if wide {
            // The AVX-512 twin's bits, unless it saw an infinity or a NaN: then the scan below decides.
            let bits = ckpt_absmax_bits_avx512(x, count)
            if bits < 0x7F80_0000 { return Float(bitPattern: UInt32(bits)) }
        }
        var a = SIMD16<Float>(), b = SIMD16<Float>()
        var i = 0
        let signMask = SIMD16<UInt32>(repeating: 0x7FFF_FFFF)
        while i + 32 <= count {
            let v0 = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<UInt32>.self) & signMask
            let v1 = UnsafeRawPointer(x + i + 16).loadUnaligned(as: SIMD16<UInt32>.self) & signMask
            a = a.maximum(unsafeBitCast(v0, to: SIMD16<Float>.self))
            b = b.maximum(unsafeBitCast(v1, to: SIMD16<Float>.self))
            i += 32
        }
        // Halve by compare and select too: `SIMD.max()` walks the lanes one by one through the
        // stack with NaN checks, and once per 64-value block that cost as much as the scan.
        a = a.maximum(b)
        var m = a.largestLane()
        while i < count {
            m = max(m, abs(x[i]))
            i += 1
        }
        return m
    }

    /// Midpoints splatted once, and how the nibble changes as a value passes each of them.
    struct BucketTables {
        let midpoints: [SIMD16<Float>]
        /// The nibble of the lowest bucket, and `order[k + 1] &- order[k]` for midpoint k: the
        /// nibble of a value's bucket is their wrapping sum over the midpoints below it, so FP4's
        /// permuted order needs no per-lane table lookup.
        let lowest: SIMD16<UInt32>
        let steps: [SIMD16<UInt32>]
        /// NF4's order is the identity: every step is 1.
        let unitSteps: Bool
        /// The same tables one value each, for the AVX-512 twin.
        let midpointScalars: [Float], lowestScalar: UInt32, stepScalars: [UInt32]

        init(_ type: FourBitType) {
            midpointScalars = type.midpoints
            midpoints = midpointScalars.map { SIMD16<Float>(repeating: $0) }
            let order = type.order.map(UInt32.init)
            lowestScalar = order[0]
            stepScalars = (0..<15).map { order[$0 + 1] &- order[$0] }
            lowest = SIMD16(repeating: lowestScalar)
            steps = stepScalars.map { SIMD16(repeating: $0) }
            unitSteps = order == Array(0..<16)
        }

        /// `order[number of midpoints strictly below each value]`. torch clamps to [-1, 1] first,
        /// which changes no count (every midpoint lies inside), so the clamp is left out; a NaN is
        /// below no midpoint and takes the lowest code, as -1 does.
        @inline(__always)
        func nibbles(_ scaled: SIMD16<Float>) -> SIMD16<UInt32> {
            var nibble = lowest
            if unitSteps {
                // A true lane is all ones (−1): subtracting the mask counts it.
                for k in 0..<15 { nibble &-= unsafeBitCast(midpoints[k] .< scaled, to: SIMD16<UInt32>.self) }
            } else {
                for k in 0..<15 { nibble &+= steps[k] & unsafeBitCast(midpoints[k] .< scaled, to: SIMD16<UInt32>.self) }
            }
            return nibble
        }
    }

    /// The 256-entry table `dequantizeRange` reads: one packed byte → its two codes (high nibble first).
    public static func pairTable(_ code: [Float]) -> [SIMD2<Float>] {
        precondition(code.count == 16, "a 4-bit code has 16 values")
        return (0..<256).map { SIMD2<Float>(code[$0 >> 4], code[$0 & 0xF]) }
    }

    /// Elements `range` of a packed 4-bit tensor into `out` (range.count values), one thread:
    /// the same values `dequantizeReference` gives at those positions. For the forward pass,
    /// which widens a tile of rows at a time.
    public static func dequantizeRange(packed: UnsafePointer<UInt8>, absmax: UnsafePointer<Float>, blockSize: Int,
                                       pairs: UnsafePointer<SIMD2<Float>>, range: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        dequantizeRange(packed: packed, absmax: absmax, blockSize: blockSize, pairs: pairs, range: range, into: out, wide: avx512Available)
    }

    /// `dequantizeRange` with the choice of kernel (the AVX-512 twin when `wide`), for tests of both.
    static func dequantizeRange(packed: UnsafePointer<UInt8>, absmax: UnsafePointer<Float>, blockSize: Int,
                                pairs: UnsafePointer<SIMD2<Float>>, range: Range<Int>, into out: UnsafeMutablePointer<Float>, wide: Bool) {
        var i = range.lowerBound
        let end = range.upperBound
        // The AVX-512 twin reads the 16 codes back out of the pair table: code[k] is pair (k << 4)'s first.
        var code = SIMD16<Float>()
        for k in 0..<16 { code[k] = pairs[k << 4][0] }
        if i < end && i % 2 == 1 {  // an odd start: the low nibble of its byte
            out[0] = pairs[Int(packed[i / 2])][1] * absmax[i / blockSize]
            i += 1
        }
        while i < end {
            let blockEnd = min(end, (i / blockSize + 1) * blockSize)
            let scale = absmax[i / blockSize]
            // Plain pointers and a count: no overflow check per element.
            let bytes = packed + i / 2, values = out + (i - range.lowerBound), pairCount = (blockEnd - i) / 2
            let done = wide ? withUnsafeBytes(of: &code) { ckpt_fourbit_decode_avx512(bytes, pairCount, $0.baseAddress!.assumingMemoryBound(to: Float.self), scale, values) } : 0
            for k in done..<pairCount {
                let v = pairs[Int(bytes[k])] * scale
                values[2 * k] = v[0]
                values[2 * k + 1] = v[1]
            }
            i += 2 * pairCount
            if i < blockEnd {  // an odd block end: the high nibble alone
                out[i - range.lowerBound] = pairs[Int(packed[i / 2])][0] * absmax[i / blockSize]
                i += 1
            }
        }
    }

    /// `dequantizeReference` through a byte-to-pair table, blocks spread over threads; the same float32 results.
    public static func dequantize(packed: UnsafeBufferPointer<UInt8>, absmax: UnsafeBufferPointer<Float>, blockSize: Int,
                                  type: FourBitType, into out: UnsafeMutableBufferPointer<Float>, threads: ThreadBudget = .allCores) {
        let n = out.count
        let code = type.code
        let blocksPerChunk = max(1, chunkElements / blockSize)
        let blocks = blockCount(n, blockSize: blockSize)
        let chunks = (blocks + blocksPerChunk - 1) / blocksPerChunk
        // Each chunk of whole blocks decoded by the one range loop, through the byte-to-pair table.
        let pairs = pairTable(code)
        pairs.withUnsafeBufferPointer { pairTable in
            threads.forEachChunk(chunks) { chunk in
                let range = (chunk * blocksPerChunk * blockSize)..<min(n, (chunk + 1) * blocksPerChunk * blockSize)
                dequantizeRange(packed: packed.baseAddress!, absmax: absmax.baseAddress!, blockSize: blockSize, pairs: pairTable.baseAddress!,
                                range: range, into: out.baseAddress! + range.lowerBound)
            }
        }
    }
}
