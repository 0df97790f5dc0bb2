/// Q2_K: super-blocks of 256 (84 bytes): sixteen bytes of 4-bit scale and min per sub-block of
/// 16, 2-bit q (64 bytes), f16 d and dmin; x ≈ d·scale·q − dmin·min.
extension GGMLType {
    /// GGUF id 10; written by `KQuantizers.q2_K`.
    public static let q2_K = GGMLType(rawValue: 10, name: "Q2_K", blockSize: 256, typeSize: 84, activations: .none, decode: { raw, o in
        for b in 0..<(o.count / 256) {
            let base = b * 84
            let scales = base, qs = base + 16
            let d = GGMLBlock.half(raw, base + 80), dmin = GGMLBlock.half(raw, base + 82)
            for e in 0..<256 {
                // Element e: 32-byte group e/128, shift 2·((e%128)/32), byte e%32 of the group.
                let group = e / 128, shift = UInt8(2 * ((e % 128) / 32)), i = e % 32
                let q = (raw[qs + group * 32 + i] >> shift) & 3
                let sc = raw[scales + e / 16]
                o[b * 256 + e] = d * Float(sc & 0xF) * Float(q) - dmin * Float(sc >> 4)
            }
        }
    }, quantize: KQuantizers.q2_K)
}

extension KQuantizers {
    /// `quantize_row_q2_K_ref` (no importance: absolute-error fit per 16, 4-bit scales and mins
    /// from their maxima) or `quantize_row_q2_K_impl` (importance-weighted fits, then the scales
    /// and mins themselves fitted), then every value re-rounded with the f16-rounded scales.
    static let q2_K: RowQuantizer = { x, count, importance, out in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 16 * 3 + 256) { floats in
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 256 + 32) { bytes in
                let scales = floats.baseAddress!, mins = scales + 16, sw = scales + 32, weights = scales + 48
                let L = bytes.baseAddress!, Ls = L + 256, Lm = L + 272
                for block in 0..<(count / 256) {
                    let xb = x + block * 256, y = out + block * 84
                    let scaleBytes = y.assumingMemoryBound(to: UInt8.self)
                    var d: Float = 0, dmin: Float = 0
                    if let importance {
                        let qw = importance + block * 256
                        let sigma2 = KQuantSearch.sumOfSquares(xb, 256) / 256
                        for j in 0..<16 {
                            sw[j] = KQuantSearch.importanceWeights(qw + 16 * j, xb + 16 * j, 16, sigma2: sigma2, into: weights + 16 * j)
                        }
                        KQuantSearch.affine(groups: 16, 16, 3, xb, weights, L, scales: scales, minimums: mins,
                                            rmin: -0.9, rdelta: 0.05, steps: 36, absoluteError: false)
                        let dm = KQuantSearch.positive(16, 15, scales, Ls, weights: sw)
                        let mm = KQuantSearch.positive(16, 15, mins, Lm, weights: sw)
                        for j in 0..<16 { scaleBytes[j] = Ls[j] | Lm[j] << 4 }
                        KQuantSearch.storeHalf(dm, y + 80); KQuantSearch.storeHalf(mm, y + 82)
                    } else {
                        var maxScale: Float = 0, maxMin: Float = 0
                        for l in 0..<256 { weights[l] = abs(xb[l]) }
                        KQuantSearch.affine(groups: 16, 16, 3, xb, weights, L, scales: scales, minimums: mins,
                                            rmin: -0.5, rdelta: 0.1, steps: 15, absoluteError: true)
                        for j in 0..<16 {
                            if scales[j] > maxScale { maxScale = scales[j] }
                            if mins[j] > maxMin { maxMin = mins[j] }
                        }
                        if maxScale > 0 {
                            let iscale = 15 / maxScale
                            for j in 0..<16 { scaleBytes[j] = UInt8(truncatingIfNeeded: KQuantSearch.nearestInt(iscale * scales[j])) }
                            KQuantSearch.storeHalf(maxScale / 15, y + 80)
                        } else {
                            for j in 0..<16 { scaleBytes[j] = 0 }
                            KQuantSearch.storeHalf(0, y + 80)
                        }
                        if maxMin > 0 {
                            let iscale = 15 / maxMin
                            for j in 0..<16 {
                                scaleBytes[j] |= UInt8(truncatingIfNeeded: KQuantSearch.nearestInt(iscale * mins[j]) << 4)
                            }
                            KQuantSearch.storeHalf(maxMin / 15, y + 82)
                        } else {
                            KQuantSearch.storeHalf(0, y + 82)
                        }
                    }
                    d = KQuantSearch.loadHalf(y + 80); dmin = KQuantSearch.loadHalf(y + 82)
                    for j in 0..<16 {
                        let dd = d * Float(scaleBytes[j] & 0xF)
                        if dd == 0 { continue }
                        let m = dmin * Float(scaleBytes[j] >> 4)
                        for i in 0..<16 {
                            L[16 * j + i] = UInt8(max(0, min(3, KQuantSearch.nearestInt((xb[16 * j + i] + m) / dd))))
                        }
                    }
                    KQuantSearch.packTwoBits(L, into: scaleBytes + 16)
                }
            }
        }
    }
}
