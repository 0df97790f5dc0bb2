import CKernels

/// Q8_0: blocks of 32 int8 values with one f16 scale d (34 bytes); x ≈ d·q.
extension GGMLType {
    /// GGUF id 8; decoded here, written through `Q8_0Codec.quantize`.
    public static let q8_0 = GGMLType(rawValue: 8, name: "Q8_0", blockSize: 32, typeSize: 34, activations: .q8_0, decode: { raw, o in
        for b in 0..<(o.count / 32) {
            let base = b * 34
            let d = GGMLBlock.half(raw, base)
            for j in 0..<32 { o[b * 32 + j] = Float(Int8(bitPattern: raw[base + 2 + j])) * d }
        }
    }, encode: { x, threads in Q8_0Codec.quantize(x, threads: threads) }, quantize: { x, count, _, out in
        // Q8_0 takes no importance weights: llama.cpp ignores an imatrix for it.
        Q8_0Codec.quantizeBlocks(x, blocks: count / 32, into: out)
    })
}

/// Q8_0 quantization, llama.cpp's reference quantizer (`quantize_row_q8_0_ref`) and a fast twin.
public enum Q8_0Codec {
    /// Fast: SIMD within a block (a block of finite values by the AVX-512 twin, `ckpt_q8_0_block_avx512`,
    /// when `wide`), blocks spread over threads; equal to `quantizeReference`.
    public static func quantize(_ x: UnsafeBufferPointer<Float>, threads: ThreadBudget = .allCores) -> [UInt8] {
        quantize(x, threads: threads, wide: avx512Available)
    }

    /// `quantize` with the choice of block kernel, for tests of both.
    static func quantize(_ x: UnsafeBufferPointer<Float>, threads: ThreadBudget, wide: Bool) -> [UInt8] {
        let blocks = x.count / 32
        var out = [UInt8](repeating: 0, count: blocks * 34)
        let perChunk = 2048
        out.withUnsafeMutableBytes { o in
            let (x, o) = (UncheckedSendable(x), UncheckedSendable(o))
            threads.forEachChunk((blocks + perChunk - 1) / perChunk) { chunk in
                let first = chunk * perChunk, count = min(blocks, first + perChunk) - first
                quantizeBlocks(x.value.baseAddress! + 32 * first, blocks: count, into: o.value.baseAddress! + 34 * first, wide: wide)
            }
        }
        return out
    }

    /// `blocks` blocks of 32 values at `x` into 34-byte blocks at `out`, one thread: each block in
    /// SIMD (the AVX-512 twin, `ckpt_q8_0_block_avx512`, for a block of finite values when `wide`).
    static func quantizeBlocks(_ x: UnsafePointer<Float>, blocks: Int, into o: UnsafeMutableRawPointer, wide: Bool = avx512Available) {
        let signMask = SIMD16<UInt32>(repeating: 0x7FFF_FFFF)
        for b in 0..<blocks {
            var scale: Float = 0
            if wide, ckpt_q8_0_block_avx512(x + b * 32, (o + b * 34 + 2).assumingMemoryBound(to: Int8.self), &scale) != 0 {
                KQuantSearch.storeHalf(scale, o + b * 34)
                continue
            }
            let p = UnsafeRawPointer(x + b * 32)
            let v0 = p.loadUnaligned(as: SIMD16<Float>.self), v1 = p.loadUnaligned(fromByteOffset: 64, as: SIMD16<Float>.self)
            let a0 = unsafeBitCast(unsafeBitCast(v0, to: SIMD16<UInt32>.self) & signMask, to: SIMD16<Float>.self)
            let a1 = unsafeBitCast(unsafeBitCast(v1, to: SIMD16<UInt32>.self) & signMask, to: SIMD16<Float>.self)
            let m16 = a0.maximum(a1)
            let m4 = m16.largestFourLanes()
            var m: Float = 0
            for k in 0..<4 { m = max(m, m4[k]) }
            let d = m / 127
            let inverse: Float = d == 0 ? 0 : 1 / d
            KQuantSearch.storeHalf(d, o + b * 34)
            let q0 = SIMD16<Int8>(truncatingIfNeeded: (v0 * inverse).roundedHalfAwayToInt32())
            let q1 = SIMD16<Int8>(truncatingIfNeeded: (v1 * inverse).roundedHalfAwayToInt32())
            o.storeBytes(of: q0, toByteOffset: b * 34 + 2, as: SIMD16<Int8>.self)
            o.storeBytes(of: q1, toByteOffset: b * 34 + 18, as: SIMD16<Int8>.self)
        }
    }

    /// Reference (`ggml_quantize_q8_0`): per 32 values d = absmax/127, q = round(x·(1/d)) with
    /// the float32 d, then d stored as f16.
    public static func quantizeReference(_ x: UnsafeBufferPointer<Float>) -> [UInt8] {
        let blocks = x.count / 32
        var out = [UInt8](repeating: 0, count: blocks * 34)
        for b in 0..<blocks {
            var m: Float = 0
            for j in 0..<32 { m = max(m, abs(x[b * 32 + j])) }
            let d = m / 127
            let inverse: Float = d == 0 ? 0 : 1 / d
            GGMLBlock.storeHalf(d, &out, b * 34)
            for j in 0..<32 {
                // C's float → int8_t conversion as x86 compiles it (cvttss2si, low byte): a block whose
                // scale is subnormal has an infinite inverse, and its codes become 0 instead of a trap.
                out[b * 34 + 2 + j] = UInt8(truncatingIfNeeded: KQuantizers.truncatingInt(GGMLBlock.roundHalfAway(x[b * 32 + j] * inverse)))
            }
        }
        return out
    }
}
