/// Q6_K: super-blocks of 256 (210 bytes): low 4 bits (128 bytes), high 2 bits (64), sixteen
/// int8 sub-block scales, f16 d; x ≈ d·scale·(q − 32).
extension GGMLType {
    /// GGUF id 14; written by `KQuantizers.q6_K`.
    public static let q6_K = GGMLType(rawValue: 14, name: "Q6_K", blockSize: 256, typeSize: 210, activations: .none, decode: { raw, o in
        for b in 0..<(o.count / 256) {
            let base = b * 210
            let ql = base, qh = base + 128, scales = base + 192
            let d = GGMLBlock.half(raw, base + 208)
            for e in 0..<256 {
                let g = e / 128, h = (e % 128) / 64, k = e % 64
                let low = (raw[ql + g * 64 + k] >> UInt8(4 * h)) & 0x0F
                let j = (e % 128) / 32, i = e % 32
                let high = (raw[qh + g * 32 + i] >> UInt8(2 * j)) & 0x03
                let q = Int(low | high << 4) - 32
                let s = Float(Int8(bitPattern: raw[scales + e / 16]))
                o[b * 256 + e] = (d * s) * Float(q)
            }
        }
    }, quantize: KQuantizers.q6_K)
}

extension KQuantizers {
    /// `quantize_row_q6_K_ref` / `_impl`: a symmetric fit per 16 values (weights x², or the raw
    /// importance), int8 scales relative to the largest, then every value re-rounded with them.
    static let q6_K: RowQuantizer = { x, count, importance, out in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 16) { floats in
            withUnsafeTemporaryAllocation(of: Int8.self, capacity: 256) { codes in
                let scales = floats.baseAddress!, L = codes.baseAddress!
                for block in 0..<(count / 256) {
                    let xb = x + block * 256, y = (out + block * 210).assumingMemoryBound(to: UInt8.self)
                    var maxScale: Float = 0, maxAbsScale: Float = 0
                    // The sixteen sub-block fits at once, one per lane.
                    KQuantSearch.symmetric(groups: 16, 16, 32, xb, L, scales: scales, weights: importance.map { $0 + block * 256 })
                    for ib in 0..<16 where abs(scales[ib]) > maxAbsScale {
                        maxAbsScale = abs(scales[ib])
                        maxScale = scales[ib]
                    }
                    if maxAbsScale < KQuantSearch.groupEpsilon {
                        y.update(repeating: 0, count: 210)
                        continue
                    }
                    let iscale = -128 / maxScale
                    KQuantSearch.storeHalf(1 / iscale, y + 208)
                    let scaleCodes = y + 192
                    for ib in 0..<16 {
                        scaleCodes[ib] = UInt8(truncatingIfNeeded: min(127, KQuantSearch.nearestInt(iscale * scales[ib])))
                    }
                    let d = KQuantSearch.loadHalf(y + 208)
                    for j in 0..<16 {
                        let dd = d * Float(Int8(bitPattern: scaleCodes[j]))
                        if dd == 0 { continue }
                        for i in 0..<16 {
                            L[16 * j + i] = Int8(max(-32, min(31, KQuantSearch.nearestInt(xb[16 * j + i] / dd))) + 32)
                        }
                    }
                    L.withMemoryRebound(to: UInt8.self, capacity: 256) { L in
                        for j in stride(from: 0, to: 256, by: 128) {
                            let ql = y + j / 2, qh = y + 128 + j / 4
                            for l in 0..<32 {
                                ql[l] = (L[j + l] & 0xF) | (L[j + l + 64] & 0xF) << 4
                                ql[l + 32] = (L[j + l + 32] & 0xF) | (L[j + l + 96] & 0xF) << 4
                                qh[l] = L[j + l] >> 4 | (L[j + l + 32] >> 4) << 2 | (L[j + l + 64] >> 4) << 4 | (L[j + l + 96] >> 4) << 6
                            }
                        }
                    }
                }
            }
        }
    }
}
