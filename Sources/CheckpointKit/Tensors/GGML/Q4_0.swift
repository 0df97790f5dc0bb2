import CKernels

/// Q4_0: blocks of 32 with one f16 scale d and 4-bit q (18 bytes); x ≈ d·(q − 8); element j in
/// the low nibble of byte j, element j+16 in its high nibble.
extension GGMLType {
    /// GGUF id 2; decoded here, written through `Q4_0Codec.quantize`.
    public static let q4_0 = GGMLType(rawValue: 2, name: "Q4_0", blockSize: 32, typeSize: 18, activations: .q8_0, decode: { raw, o in
        for b in 0..<(o.count / 32) {
            let base = b * 18
            let d = GGMLBlock.half(raw, base)
            for j in 0..<16 {
                let byte = raw[base + 2 + j]
                o[b * 32 + j] = d * Float(Int(byte & 0xF) - 8)
                o[b * 32 + j + 16] = d * Float(Int(byte >> 4) - 8)
            }
        }
    }, encode: { x, threads in Q4_0Codec.quantize(x, threads: threads) }, quantize: KQuantizers.q4_0)
}

extension KQuantizers {
    /// `quantize_q4_0`: the reference quantizer, or with importance `quantize_row_q4_0_impl`
    /// (a weighted symmetric fit per 32, codes 0…15).
    static let q4_0: RowQuantizer = { x, count, importance, out in
        guard let importance else {
            Q4_0Codec.quantizeBlocks(x, blocks: count / 32, into: out)
            return
        }
        legacySymmetric(x, count, importance, out, blockBytes: 18, nmax: 8) { l, block in
            for j in 0..<16 { block.storeBytes(of: UInt8(bitPattern: l[j] | l[j + 16] << 4), toByteOffset: 2 + j, as: UInt8.self) }
        }
    }

    /// The imatrix path of the 32-value types: σ² = mean x² over the whole row, then the weights
    /// qw·√(σ² + x²) of up to 16 blocks at a time handed to `blocks` (values, weights, output, how
    /// many blocks), which fits them together, a block per SIMD lane.
    static func legacy(_ x: UnsafePointer<Float>, _ count: Int, _ importance: UnsafePointer<Float>, _ out: UnsafeMutableRawPointer,
                       blockBytes: Int, _ blocks: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutableRawPointer, Int) -> Void) {
        let sigma2 = KQuantSearch.sumOfSquares(x, count) / Float(count)
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 16 * 32) { buffer in
            let weights = buffer.baseAddress!
            var first = 0
            while first < count / 32 {
                let n = min(16, count / 32 - first)
                for b in 0..<n {
                    KQuantSearch.importanceWeights(importance + 32 * (first + b), x + 32 * (first + b), 32, sigma2: sigma2, into: weights + 32 * b)
                }
                blocks(x + 32 * first, weights, out + first * blockBytes, n)
                first += n
            }
        }
    }

    /// The imatrix path of Q4_0 and Q5_0: `legacy`'s weights, a weighted symmetric fit per block
    /// (codes 0..<2·nmax), each block's f16 scale stored first and its codes packed by `pack`.
    static func legacySymmetric(_ x: UnsafePointer<Float>, _ count: Int, _ importance: UnsafePointer<Float>, _ out: UnsafeMutableRawPointer,
                                blockBytes: Int, nmax: Int, pack: (UnsafePointer<Int8>, UnsafeMutableRawPointer) -> Void) {
        withUnsafeTemporaryAllocation(of: Int8.self, capacity: 16 * 32) { codes in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: 16) { scales in
                let L = codes.baseAddress!, d = scales.baseAddress!
                legacy(x, count, importance, out, blockBytes: blockBytes) { xb, weights, y, blocks in
                    KQuantSearch.symmetric(groups: blocks, 32, nmax, xb, L, scales: d, weights: weights)
                    for b in 0..<blocks {
                        let block = y + blockBytes * b
                        KQuantSearch.storeHalf(d[b], block)
                        pack(L + 32 * b, block)
                    }
                }
            }
        }
    }

    /// C's `(int)f` as x86 computes it (cvttss2si): toward zero, and 0x80000000 for NaN or out of range.
    @inline(__always)
    static func truncatingInt(_ f: Float) -> Int32 {
        f.isNaN || f >= 2_147_483_648 || f < -2_147_483_648 ? Int32.min : Int32(f)  // Int32(Float) truncates toward zero
    }

    /// The 5-bit codes of a 32-block (`L`, values 0…31) as Q5_0/Q5_1 store them: low nibbles in
    /// 16 bytes at `qs`, fifth bits in the u32 at `qh`.
    @inline(__always)
    static func packFiveBits(_ L: (Int) -> UInt8, qh: UnsafeMutableRawPointer, qs: UnsafeMutableRawPointer) {
        var high: UInt32 = 0
        for j in 0..<16 {
            let a = L(j), b = L(j + 16)
            qs.storeBytes(of: (a & 0x0F) | (b & 0x0F) << 4, toByteOffset: j, as: UInt8.self)
            high |= UInt32((a & 0x10) >> 4) << UInt32(j)
            high |= UInt32((b & 0x10) >> 4) << UInt32(j + 16)
        }
        qh.storeBytes(of: high.littleEndian, as: UInt32.self)
    }
}

/// Q4_0 quantization as llama.cpp's reference quantizer (`quantize_row_q4_0_ref`) makes it, and a fast twin.
public enum Q4_0Codec {
    /// Fast: SIMD within a block, blocks spread over threads; equal to `quantizeReference`.
    public static func quantize(_ x: UnsafeBufferPointer<Float>, threads: ThreadBudget = .allCores) -> [UInt8] {
        let blocks = x.count / 32
        var out = [UInt8](repeating: 0, count: blocks * 18)
        let perChunk = 2048
        out.withUnsafeMutableBytes { o in
            let (x, o) = (UncheckedSendable(x), UncheckedSendable(o))
            threads.forEachChunk((blocks + perChunk - 1) / perChunk) { chunk in
                let first = chunk * perChunk, count = min(blocks, first + perChunk) - first
                quantizeBlocks(x.value.baseAddress! + 32 * first, blocks: count, into: o.value.baseAddress! + 18 * first)
            }
        }
        return out
    }

    /// `blocks` blocks of 32 values at `x` into 18-byte blocks at `out`, one thread: each block of
    /// finite values with one sign at its largest magnitude in SIMD (the AVX-512 twin,
    /// `ckpt_q4_0_block_avx512`, when `wide`), any other by the reference.
    static func quantizeBlocks(_ x: UnsafePointer<Float>, blocks: Int, into out: UnsafeMutableRawPointer, wide: Bool = avx512Available) {
        let signMask = SIMD16<UInt32>(repeating: 0x7FFF_FFFF)
        let magic = SIMD16<Float>(repeating: 12_582_912), half = SIMD16<Float>(repeating: 0.5), one = SIMD16<Float>(repeating: 1)
        for b in 0..<blocks {
            let p = UnsafeRawPointer(x + 32 * b), block = out + 18 * b
            if wide {
                var d: Float = 0
                if ckpt_q4_0_block_avx512(x + 32 * b, (block + 2).assumingMemoryBound(to: UInt8.self), &d) != 0 {
                    KQuantSearch.storeHalf(d, block)
                } else {
                    quantizeBlockReference(x + 32 * b, into: block)
                }
                continue
            }
            let v0 = p.loadUnaligned(as: SIMD16<Float>.self), v1 = p.loadUnaligned(fromByteOffset: 64, as: SIMD16<Float>.self)
            // |x| as integers (bit patterns order like the magnitudes, NaN and ±Inf above every finite
            // value); the signed extremes as floats, for whether +m or −m is there.
            let a0 = unsafeBitCast(unsafeBitCast(v0, to: SIMD16<UInt32>.self) & signMask, to: SIMD16<Int32>.self)
            let a1 = unsafeBitCast(unsafeBitCast(v1, to: SIMD16<UInt32>.self) & signMask, to: SIMD16<Int32>.self)
            let amaxBits = a0.replacing(with: a1, where: a0 .< a1).largestLane()
            let top = v0.maximum(v1).largestLane(), bottom = -(-v0.minimum(v1)).largestLane()
            let m = Float(bitPattern: UInt32(bitPattern: amaxBits))
            let positive = top == m, negative = bottom == -m
            let d = (positive ? m : -m) / -8
            let inverse: Float = d == 0 ? 0 : 1 / d
            // NaN/Inf, +m and −m both present (the first one decides; an all-zero block's ±0 too), or
            // a scale so small its inverse overflows: the reference, which C's conversions define there.
            guard amaxBits < 0x7F80_0000, positive != negative, inverse.isFinite else {
                quantizeBlockReference(x + 32 * b, into: block)
                continue
            }
            KQuantSearch.storeHalf(d, block)
            // x·(1/d) + 8.5 lies in [0.5, 16.5]: its truncation is its floor, the nearest-even of
            // y − 0.5 corrected upwards once, then clipped to 15.
            @inline(__always) func codes(_ v: SIMD16<Float>) -> SIMD16<UInt32> {
                let y = v * inverse + 8.5
                let r = ((y - half) + magic) - magic
                let floor = r + one.replacing(with: 0, where: r + one .> y)
                let q = floor.minimum(SIMD16<Float>(repeating: 15))
                return unsafeBitCast(q + magic, to: SIMD16<UInt32>.self) & 0xF
            }
            let bytes = codes(v0) | codes(v1) &<< 4
            block.storeBytes(of: SIMD16<UInt8>(truncatingIfNeeded: bytes), toByteOffset: 2, as: SIMD16<UInt8>.self)
        }
    }

    /// Reference: per 32 values the element of largest magnitude (the first, on ties) gives d = max / −8;
    /// q = trunc(x·(1/d) + 8.5) clipped to 0…15.
    public static func quantizeReference(_ x: UnsafeBufferPointer<Float>) -> [UInt8] {
        let blocks = x.count / 32
        var out = [UInt8](repeating: 0, count: blocks * 18)
        out.withUnsafeMutableBytes { o in
            for b in 0..<blocks { quantizeBlockReference(x.baseAddress! + 32 * b, into: o.baseAddress! + 18 * b) }
        }
        return out
    }

    /// One block of the reference.
    static func quantizeBlockReference(_ x: UnsafePointer<Float>, into block: UnsafeMutableRawPointer) {
        var best = 0
        for j in 1..<32 where abs(x[j]) > abs(x[best]) { best = j }
        let d = x[best] / -8
        let inverse: Float = d == 0 ? 0 : 1 / d
        KQuantSearch.storeHalf(d, block)
        // C's MIN(15, (int8_t)(x·id + 8.5f)), wrap-around and all, so NaN or huge values cannot trap.
        func q(_ j: Int) -> UInt8 {
            UInt8(truncatingIfNeeded: min(15, Int(Int8(truncatingIfNeeded: KQuantizers.truncatingInt(x[j] * inverse + 8.5)))))
        }
        for j in 0..<16 { block.storeBytes(of: q(j) | q(j + 16) << 4, toByteOffset: 2 + j, as: UInt8.self) }
    }
}
