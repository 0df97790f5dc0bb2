/// IQ4_NL: blocks of 32 (18 bytes): f16 d and 4-bit indices into a fixed non-linear codebook;
/// x ≈ d·kvalues[q], element j in the low nibble of byte j, element j+16 in its high nibble.
extension GGMLType {
    /// GGUF id 20; written by `KQuantizers.iq4_NL`.
    public static let iq4_NL = GGMLType(rawValue: 20, name: "IQ4_NL", blockSize: 32, typeSize: 18, activations: .q8_0, decode: { raw, o in
        for b in 0..<(o.count / 32) {
            let base = b * 18
            let d = GGMLBlock.half(raw, base)
            for j in 0..<16 {
                let byte = raw[base + 2 + j]
                o[b * 32 + j] = d * Float(KQuantizers.iq4Values[Int(byte & 0xF)])
                o[b * 32 + j + 16] = d * Float(KQuantizers.iq4Values[Int(byte >> 4)])
            }
        }
    }, quantize: KQuantizers.iq4_NL)
}

extension KQuantizers {
    /// `kvalues_iq4nl`: the sixteen codes of IQ4_NL and IQ4_XS.
    static let iq4Values: [Int8] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113]

    /// `quantize_iq4_nl`: each block through `quantize_row_iq4_nl_impl` with 7 trial scales a side.
    static let iq4_NL: RowQuantizer = { x, count, importance, out in
        for block in 0..<(count / 32) {
            iq4(x + 32 * block, superBlock: 32, importance: importance.map { $0 + 32 * block }, out + 18 * block)
        }
    }

    /// `quantize_row_iq4_nl_impl(sbs, 32, …, kvalues_iq4nl, qw, ntry: 7)` for one super-block of
    /// `superBlock` values (32: IQ4_NL, d then qs; 256: IQ4_XS, d, scales_h, scales_l then qs).
    static func iq4(_ x: UnsafePointer<Float>, superBlock: Int, importance: UnsafePointer<Float>?, _ out: UnsafeMutableRawPointer) {
        let tries = 7, blocks = superBlock / 32
        iq4Values.withUnsafeBufferPointer { codebook in
            let values = codebook.baseAddress!
            withUnsafeTemporaryAllocation(of: Float.self, capacity: 32 + 8) { floats in
                withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 256) { codes in
                    let weight = floats.baseAddress!, scales = weight + 32, L = codes.baseAddress!
                    L.update(repeating: 0, count: superBlock)
                    let y = out.assumingMemoryBound(to: UInt8.self)
                    let qs = y + (blocks > 1 ? 8 : 2)
                    var sigma2 = KQuantSearch.sumOfSquares(x, superBlock)
                    sigma2 *= 2 / Float(superBlock)
                    var maxScale: Float = 0, amaxScale: Float = 0
                    for ib in 0..<blocks {
                        let xb = x + 32 * ib, Lb = L + 32 * ib
                        if let importance {
                            let qw = importance + 32 * ib
                            KQuantSearch.importanceWeights(qw, xb, 32, sigma2: sigma2, into: weight)
                        } else {
                            for j in 0..<32 { weight[j] = xb[j] * xb[j] }
                        }
                        let (max, amax) = KQuantSearch.signedMaximum(xb, 32)
                        if amax < KQuantSearch.groupEpsilon {
                            scales[ib] = 0
                            continue
                        }
                        var d = -max / Float(values[0])
                        var id = 1 / d
                        var sumqx: Float = 0, sumq2: Float = 0
                        for j in 0..<32 {
                            let l = KQuantSearch.bestIndex(values, id * xb[j])
                            Lb[j] = UInt8(l)
                            let q = Float(values[l]), w = weight[j]
                            sumqx += w * q * xb[j]
                            sumq2 += w * q * q
                        }
                        d = sumq2 > 0 ? sumqx / sumq2 : 0
                        var best = d * sumqx
                        for step in -tries...tries {
                            id = Float(step + Int(values[0])) / max
                            sumqx = 0; sumq2 = 0
                            for j in 0..<32 {
                                let q = Float(values[KQuantSearch.bestIndex(values, id * xb[j])]), w = weight[j]
                                sumqx += w * q * xb[j]
                                sumq2 += w * q * q
                            }
                            if sumq2 > 0 && sumqx * sumqx > best * sumq2 {
                                d = sumqx / sumq2
                                best = d * sumqx
                            }
                        }
                        scales[ib] = d
                        if abs(d) > amaxScale { amaxScale = abs(d); maxScale = d }
                    }
                    if blocks > 1 {
                        // IQ4_XS: 6-bit block scales relative to the largest; codes re-chosen with them.
                        let d = -maxScale / 32
                        KQuantSearch.storeHalf(d, y)
                        let id: Float = d != 0 ? 1 / d : 0
                        var high: UInt16 = 0
                        let low = y + 4
                        for ib in 0..<blocks {
                            var l = Swift.max(-32, Swift.min(31, KQuantSearch.nearestInt(id * scales[ib])))
                            let dl = d * Float(l)
                            let idl: Float = dl != 0 ? 1 / dl : 0
                            for j in 0..<32 { L[32 * ib + j] = UInt8(KQuantSearch.bestIndex(values, idl * x[32 * ib + j])) }
                            l += 32
                            let lowBits = UInt8(l & 0xF), highBits = UInt16(l >> 4)
                            if ib % 2 == 0 { low[ib / 2] = lowBits } else { low[ib / 2] |= lowBits << 4 }
                            high |= highBits << UInt16(2 * (ib % 8))
                        }
                        (out + 2).storeBytes(of: high.littleEndian, as: UInt16.self)
                    } else {
                        KQuantSearch.storeHalf(scales[0], y)
                        let id: Float = scales[0] != 0 ? 1 / scales[0] : 0
                        for j in 0..<32 { L[j] = UInt8(KQuantSearch.bestIndex(values, id * x[j])) }
                    }
                    for i in 0..<blocks {
                        for j in 0..<16 { qs[16 * i + j] = L[32 * i + j] | L[32 * i + 16 + j] << 4 }
                    }
                }
            }
        }
    }
}
