/// Q3_K: super-blocks of 256 (110 bytes): the high-bit mask (32 bytes), 2-bit low parts (64),
/// twelve bytes of 6-bit signed scales for sixteen sub-blocks of 16, f16 d; x ≈ d·scale·q with
/// q = low − 4 where the mask bit is clear.
extension GGMLType {
    /// GGUF id 11; written by `KQuantizers.q3_K`.
    public static let q3_K = GGMLType(rawValue: 11, name: "Q3_K", blockSize: 256, typeSize: 110, activations: .none, decode: { raw, o in
        for b in 0..<(o.count / 256) {
            let base = b * 110
            let hmask = base, qs = base + 32, packed = base + 96
            let d = GGMLBlock.half(raw, base + 108)
            var scale = [Float](repeating: 0, count: 16)
            for j in 0..<16 {
                let low = j < 8 ? raw[packed + j] & 0x0F : raw[packed + j - 8] >> 4
                let high = (raw[packed + 8 + j % 4] >> UInt8(2 * (j / 4))) & 0x03
                scale[j] = d * Float(Int(low | high << 4) - 32)
            }
            for e in 0..<256 {
                let group = e / 128, shift = UInt8(2 * ((e % 128) / 32)), i = e % 32
                let low = Int((raw[qs + group * 32 + i] >> shift) & 3)
                let bit = (raw[hmask + i] >> UInt8(e / 32)) & 1
                o[b * 256 + e] = scale[e / 16] * Float(bit == 1 ? low : low - 4)
            }
        }
    }, quantize: KQuantizers.q3_K)
}

extension KQuantizers {
    /// `quantize_row_q3_K_ref` (refined symmetric fits per 16, 6-bit scales from the largest) or
    /// `quantize_row_q3_K_impl` (importance-weighted fits, the scales themselves fitted), then every
    /// value re-rounded with the f16-rounded scales and its third bit moved to the mask.
    static let q3_K: RowQuantizer = { x, count, importance, out in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 16 + 16 + 256) { floats in
            withUnsafeTemporaryAllocation(of: Int8.self, capacity: 256 + 16) { codes in
                let scales = floats.baseAddress!, sw = scales + 16, weights = scales + 32
                let L = codes.baseAddress!, Ls = L + 256
                for block in 0..<(count / 256) {
                    let xb = x + block * 256, y = (out + block * 110).assumingMemoryBound(to: UInt8.self)
                    let hmask = y, qs = y + 32, packed = y + 96
                    for k in 0..<12 { packed[k] = 0 }
                    @inline(__always) func pack(_ j: Int, _ value: Int) {
                        let l = UInt8(truncatingIfNeeded: value)
                        if j < 8 { packed[j] = l & 0xF } else { packed[j - 8] |= (l & 0xF) << 4 }
                        packed[8 + j % 4] |= (l >> 4) << UInt8(2 * (j / 4))
                    }
                    if let importance {
                        let qw = importance + block * 256
                        let sigma2 = 2 * KQuantSearch.sumOfSquares(xb, 256) / 256
                        for j in 0..<16 {
                            sw[j] = KQuantSearch.importanceWeights(qw + 16 * j, xb + 16 * j, 16, sigma2: sigma2, into: weights + 16 * j)
                        }
                        KQuantSearch.symmetric(groups: 16, 16, 4, xb, L, scales: scales, weights: weights)
                        var dBlock: Float = 0
                        KQuantSearch.symmetric(groups: 1, 16, 32, scales, Ls, scales: &dBlock, weights: sw)
                        for j in 0..<16 { pack(j, Int(Ls[j])) }
                        KQuantSearch.storeHalf(dBlock, y + 108)
                    } else {
                        var maxScale: Float = 0, amax: Float = 0
                        for j in 0..<16 {
                            scales[j] = KQuantSearch.symmetricRefined(16, 4, xb + 16 * j, L + 16 * j)
                            if abs(scales[j]) > amax { amax = abs(scales[j]); maxScale = scales[j] }
                        }
                        if maxScale != 0 {
                            let iscale = -32 / maxScale
                            for j in 0..<16 {
                                let l = Int(Int8(truncatingIfNeeded: KQuantSearch.nearestInt(iscale * scales[j])))
                                pack(j, max(-32, min(31, l)) + 32)
                            }
                            KQuantSearch.storeHalf(1 / iscale, y + 108)
                        } else {
                            KQuantSearch.storeHalf(0, y + 108)
                        }
                    }
                    let d = KQuantSearch.loadHalf(y + 108)
                    for j in 0..<16 {
                        let low = j < 8 ? packed[j] & 0xF : packed[j - 8] >> 4
                        let sc = Int(low | ((packed[8 + j % 4] >> UInt8(2 * (j / 4))) & 3) << 4) - 32
                        let dd = d * Float(sc)
                        if dd == 0 { continue }
                        for i in 0..<16 {
                            L[16 * j + i] = Int8(max(-4, min(3, KQuantSearch.nearestInt(xb[16 * j + i] / dd))) + 4)
                        }
                    }
                    for k in 0..<32 { hmask[k] = 0 }
                    for j in 0..<256 where L[j] > 3 {
                        hmask[j % 32] |= 1 << UInt8(j / 32)
                        L[j] -= 4
                    }
                    L.withMemoryRebound(to: UInt8.self, capacity: 256) { KQuantSearch.packTwoBits($0, into: qs) }
                }
            }
        }
    }
}
