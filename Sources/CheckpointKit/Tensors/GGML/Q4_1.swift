/// Q4_1: blocks of 32 with f16 scale d and minimum m, 4-bit q (20 bytes); x ≈ d·q + m.
extension GGMLType {
    /// GGUF id 3; written by `KQuantizers.q4_1`.
    public static let q4_1 = GGMLType(rawValue: 3, name: "Q4_1", blockSize: 32, typeSize: 20, activations: .q8_0, decode: { raw, o in
        for b in 0..<(o.count / 32) {
            let base = b * 20
            let d = GGMLBlock.half(raw, base), m = GGMLBlock.half(raw, base + 2)
            for j in 0..<16 {
                let byte = raw[base + 4 + j]
                o[b * 32 + j] = d * Float(byte & 0xF) + m
                o[b * 32 + j + 16] = d * Float(byte >> 4) + m
            }
        }
    }, quantize: KQuantizers.q4_1)
}

extension KQuantizers {
    /// `quantize_row_q4_1_ref` (d = (max − min)/15, m = min, q = trunc((x − min)/d + 0.5)) or,
    /// with importance, `quantize_row_q4_1_impl` (a weighted affine fit per 32).
    static let q4_1: RowQuantizer = { x, count, importance, out in
        minimumOffset(x, count, importance, out, bits: 4)
    }

    /// Q4_1 and Q5_1: blocks of 32 with an f16 scale and minimum (20 or 24 bytes).
    static func minimumOffset(_ x: UnsafePointer<Float>, _ count: Int, _ importance: UnsafePointer<Float>?, _ out: UnsafeMutableRawPointer,
                              bits: Int) {
        let five = bits == 5, blockBytes = five ? 24 : 20, nmax = five ? 31 : 15
        func store(_ L: (Int) -> UInt8, _ y: UnsafeMutableRawPointer) {
            if five {
                packFiveBits(L, qh: y + 4, qs: y + 8)
            } else {
                for j in 0..<16 { y.storeBytes(of: L(j) | L(j + 16) << 4, toByteOffset: 4 + j, as: UInt8.self) }
            }
        }
        guard let importance else {
            for b in 0..<(count / 32) {
                let xb = x + 32 * b, y = out + b * blockBytes
                var min = Float.greatestFiniteMagnitude, max = -Float.greatestFiniteMagnitude
                for j in 0..<32 {
                    if xb[j] < min { min = xb[j] }
                    if xb[j] > max { max = xb[j] }
                }
                let d = (max - min) / Float(nmax)
                let id: Float = d != 0 ? 1 / d : 0
                KQuantSearch.storeHalf(d, y); KQuantSearch.storeHalf(min, y + 2)
                store({ j in
                    let v = truncatingInt((xb[j] - min) * id + 0.5)
                    // Q4_1: MIN(15, (int8_t)v); Q5_1: (uint8_t)v.
                    return five ? UInt8(truncatingIfNeeded: v) : UInt8(truncatingIfNeeded: Swift.min(15, Int(Int8(truncatingIfNeeded: v))))
                }, y)
            }
            return
        }
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 16 * 32) { codes in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: 32) { floats in
                let L = codes.baseAddress!, d = floats.baseAddress!, minimums = d + 16
                legacy(x, count, importance, out, blockBytes: blockBytes) { xb, weights, y, blocks in
                    KQuantSearch.affine(groups: blocks, 32, nmax, xb, weights, L, scales: d, minimums: minimums,
                                        rmin: -0.9, rdelta: 0.05, steps: 36, absoluteError: false)
                    for b in 0..<blocks {
                        let block = y + blockBytes * b, l = L + 32 * b
                        KQuantSearch.storeHalf(d[b], block); KQuantSearch.storeHalf(-minimums[b], block + 2)
                        store({ l[$0] }, block)
                    }
                }
            }
        }
    }
}
