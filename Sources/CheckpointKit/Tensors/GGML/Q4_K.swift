/// Q4_K: super-blocks of 256 (144 bytes): f16 d and dmin, twelve bytes of 6-bit scales and
/// mins for eight sub-blocks of 32, then 4-bit q; x ≈ d·scale·q − dmin·min.
extension GGMLType {
    /// GGUF id 12; written by `KQuantizers.q4_K`.
    public static let q4_K = GGMLType(rawValue: 12, name: "Q4_K", blockSize: 256, typeSize: 144, activations: .none, decode: { raw, o in
        KQuantBlocks.decodeQ4Q5(raw, o, five: false)
    }, quantize: KQuantizers.q4_K)
}

/// llama.cpp's quantizers for the types ckpt writes, one row at a time (`RowQuantizer`).
enum KQuantizers {
    /// `quantize_row_q4_K_ref` / `quantize_row_q4_K_impl`.
    static let q4_K: RowQuantizer = { x, count, importance, out in fourOrFiveBit(x, count, importance, out, five: false) }

    /// Q4_K and Q5_K: per 32 values an affine fit (codes 0…15 or 0…31); without importance the
    /// 6-bit scales and mins scale to their maxima, with it they are fitted themselves
    /// (`make_qp_quants`); then every value is re-rounded with the f16-rounded scales.
    static func fourOrFiveBit(_ x: UnsafePointer<Float>, _ count: Int, _ importance: UnsafePointer<Float>?, _ out: UnsafeMutableRawPointer,
                              five: Bool) {
        let nmax = five ? 31 : 15, blockBytes = five ? 176 : 144
        // The sub-block fits of two super-blocks (16 groups of 32) run at once, a group per lane.
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 512 + 16 * 3) { floats in
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 512 + 16) { bytes in
                let weights = floats.baseAddress!, allScales = weights + 512, allMins = allScales + 16, sw = allMins + 16
                let codes = bytes.baseAddress!, Ls = codes + 512, Lm = Ls + 8
                for block in 0..<(count / 256) {
                    let xb = x + block * 256, y = (out + block * blockBytes).assumingMemoryBound(to: UInt8.self)
                    let packed = y + 4
                    let second = block % 2 == 1
                    if !second {
                        // This block and the next: weights per value, then all their sub-block fits.
                        let pair = Swift.min(2, count / 256 - block)
                        for b in 0..<pair {
                            let xs = xb + 256 * b, ws = weights + 256 * b
                            if let importance {
                                let qw = importance + (block + b) * 256
                                let sigma2 = 2 * KQuantSearch.sumOfSquares(xs, 256) / 256
                                for j in 0..<8 {
                                    sw[8 * b + j] = KQuantSearch.importanceWeights(qw + 32 * j, xs + 32 * j, 32, sigma2: sigma2, into: ws + 32 * j)
                                }
                            } else {
                                for j in 0..<8 {
                                    let average = (KQuantSearch.sumOfSquares(xs + 32 * j, 32) / 32).squareRoot()
                                    for l in 0..<32 { ws[32 * j + l] = average + abs(xs[32 * j + l]) }
                                }
                            }
                        }
                        if importance != nil {
                            KQuantSearch.affine(groups: 8 * pair, 32, nmax, xb, weights, codes, scales: allScales, minimums: allMins,
                                                rmin: -0.9, rdelta: 0.05, steps: 36, absoluteError: false)
                        } else {
                            KQuantSearch.affine(groups: 8 * pair, 32, nmax, xb, weights, codes, scales: allScales, minimums: allMins,
                                                rmin: five ? -0.5 : -1, rdelta: 0.1, steps: five ? 15 : 20, absoluteError: false)
                        }
                    }
                    let scales = allScales + (second ? 8 : 0), mins = allMins + (second ? 8 : 0)
                    let L = codes + (second ? 256 : 0)
                    if importance != nil {
                        let weightSums = sw + (second ? 8 : 0)
                        let dBlock = KQuantSearch.positive(8, 63, scales, Ls, weights: weightSums)
                        let mBlock = KQuantSearch.positive(8, 63, mins, Lm, weights: weightSums)
                        for j in 0..<8 { packScaleMin(packed, j, min(63, Ls[j]), min(63, Lm[j])) }
                        KQuantSearch.storeHalf(dBlock, y); KQuantSearch.storeHalf(mBlock, y + 2)
                    } else {
                        var maxScale: Float = 0, maxMin: Float = 0
                        for j in 0..<8 {
                            if scales[j] > maxScale { maxScale = scales[j] }
                            if mins[j] > maxMin { maxMin = mins[j] }
                        }
                        let inverseScale: Float = maxScale > 0 ? 63 / maxScale : 0
                        let inverseMin: Float = maxMin > 0 ? 63 / maxMin : 0
                        for j in 0..<8 {
                            let ls = UInt8(truncatingIfNeeded: KQuantSearch.nearestInt(inverseScale * scales[j]))
                            let lm = UInt8(truncatingIfNeeded: KQuantSearch.nearestInt(inverseMin * mins[j]))
                            packScaleMin(packed, j, min(63, ls), min(63, lm))
                        }
                        KQuantSearch.storeHalf(maxScale / 63, y); KQuantSearch.storeHalf(maxMin / 63, y + 2)
                    }
                    let d = KQuantSearch.loadHalf(y), dmin = KQuantSearch.loadHalf(y + 2)
                    for j in 0..<8 {
                        let (sc, m) = scaleMin(packed, j)
                        let dd = d * Float(sc)
                        if dd == 0 { continue }
                        let dm = dmin * Float(m)
                        for i in 0..<32 {
                            L[32 * j + i] = UInt8(max(0, min(nmax, KQuantSearch.nearestInt((xb[32 * j + i] + dm) / dd))))
                        }
                    }
                    if five {
                        let qh = y + 16, ql = y + 48
                        for k in 0..<32 { qh[k] = 0 }
                        var m1: UInt8 = 1, m2: UInt8 = 2
                        for n in stride(from: 0, to: 256, by: 64) {
                            for j in 0..<32 {
                                var l1 = L[n + j], l2 = L[n + j + 32]
                                if l1 > 15 { l1 -= 16; qh[j] |= m1 }
                                if l2 > 15 { l2 -= 16; qh[j] |= m2 }
                                ql[n / 2 + j] = l1 | l2 << 4
                            }
                            m1 <<= 2; m2 <<= 2
                        }
                    } else {
                        let qs = y + 16
                        for j in stride(from: 0, to: 256, by: 64) {
                            for l in 0..<32 { qs[j / 2 + l] = L[j + l] | L[j + l + 32] << 4 }
                        }
                    }
                }
            }
        }
    }

    /// Stores sub-block j's 6-bit scale and min in the 12-byte K4 layout (in order j = 0…7).
    @inline(__always)
    static func packScaleMin(_ s: UnsafeMutablePointer<UInt8>, _ j: Int, _ ls: UInt8, _ lm: UInt8) {
        if j < 4 {
            s[j] = ls
            s[j + 4] = lm
        } else {
            s[j + 4] = (ls & 0xF) | (lm & 0xF) << 4
            s[j - 4] |= (ls >> 4) << 6
            s[j] |= (lm >> 4) << 6
        }
    }

    /// `get_scale_min_k4`: sub-block j's 6-bit scale and min.
    @inline(__always)
    static func scaleMin(_ q: UnsafePointer<UInt8>, _ j: Int) -> (UInt8, UInt8) {
        if j < 4 { return (q[j] & 63, q[j + 4] & 63) }
        return ((q[j + 4] & 0xF) | (q[j - 4] >> 6) << 4, (q[j + 4] >> 4) | (q[j] >> 6) << 4)
    }
}

/// The K-quant layouts Q4_K and Q5_K share.
enum KQuantBlocks {
    static func decodeQ4Q5(_ raw: UnsafeRawBufferPointer, _ o: UnsafeMutableBufferPointer<Float>, five: Bool) {
        let stride = five ? 176 : 144
        for b in 0..<(o.count / 256) {
            let base = b * stride
            let d = GGMLBlock.half(raw, base), dmin = GGMLBlock.half(raw, base + 2)
            let (sc, mn) = GGMLBlock.scalesAndMins(raw, base + 4)
            let qh = base + 16, qs = base + (five ? 48 : 16)
            for s in 0..<8 {
                let scale = d * Float(sc[s]), minimum = dmin * Float(mn[s])
                let group = s / 2, shift = UInt8(4 * (s % 2))
                for i in 0..<32 {
                    var q = (raw[qs + group * 32 + i] >> shift) & 0x0F
                    if five { q |= ((raw[qh + i] >> UInt8(s)) & 1) << 4 }
                    o[b * 256 + s * 32 + i] = scale * Float(q) - minimum
                }
            }
        }
    }
}
