/// bitsandbytes' 8-bit blockwise quantization with the dynamic code, as its CPU library does it
/// (`csrc/cpu_ops.cpp`, `quantize_cpu_impl`): per block, absmax and `inv = 1 / absmax`; each
/// value `v * inv` is clamped to [-1, 1], mapped to one of 65,536 evenly spaced bins, and the bin
/// looks up its code index in a table built from the code's midpoints. An all-zero block
/// stores absmax 0 and index 0. This is what quantizes the absmax of double-quantized NF4/FP4.
enum BlockwiseDynamic8Bit {
    static let lookupSize = 65_536

    /// The bin → code index table, built with the library's exact float expressions.
    static let lookup: [UInt8] = {
        let code = DynamicCode.values
        let midpoints = (0..<(code.count - 1)).map { Float(0.5) * (code[$0] + code[$0 + 1]) }
        var table = [UInt8](repeating: 0, count: lookupSize)
        var index = 0
        for i in 0..<lookupSize {
            let value = Float(-1) + (Float(2) * Float(i)) / Float(lookupSize - 1)
            while index < code.count - 1 && midpoints[index] < value { index += 1 }
            table[i] = UInt8(index)
        }
        return table
    }()

    /// `(uint16_t) fmaf((clamp(v, -1, 1) + 1) * 0.5f, 65535.0f, 0.5f)`: the library's compiled
    /// expression (a fused multiply-add in its disassembly), truncated toward zero.
    @inline(__always)
    static func bin(_ v: Float) -> Int {
        let clamped = min(max(v, -1), 1)
        let scaled = Float(0.5).addingProduct((clamped + 1) * Float(0.5), Float(lookupSize - 1))
        return Int(UInt16(scaled))
    }

    /// Quantizes `x` in blocks of `blockSize`: one code index per value, one absmax per block.
    static func quantize(_ x: [Float], blockSize: Int) -> (codes: [UInt8], absmax: [Float]) {
        let n = x.count
        let blocks = (n + blockSize - 1) / blockSize
        var codes = [UInt8](repeating: 0, count: n)
        var absmax = [Float](repeating: 0, count: blocks)
        let table = lookup
        for b in 0..<blocks {
            let range = (b * blockSize)..<min(n, (b + 1) * blockSize)
            var m: Float = 0
            for i in range { m = max(m, abs(x[i])) }
            absmax[b] = m
            guard m != 0 else { continue }  // codes stay 0, as the library writes them
            let inverse = 1 / m
            for i in range { codes[i] = table[bin(x[i] * inverse)] }
        }
        return (codes, absmax)
    }

    /// `code[index] * absmax[block]`, in float32.
    static func dequantize(_ codes: UnsafeBufferPointer<UInt8>, absmax: UnsafeBufferPointer<Float>, blockSize: Int) -> [Float] {
        let code = DynamicCode.values
        return (0..<codes.count).map { code[Int(codes[$0])] * absmax[$0 / blockSize] }
    }
}

/// Double quantization of a 4-bit tensor's absmax (bitsandbytes `compress_statistics`):
/// subtract the mean, then quantize 8-bit blockwise (blocks of 256) with the dynamic code.
public struct DoubleQuantizedAbsmax: Sendable, Equatable {
    /// Absmax codes per nested scale: 256, as bitsandbytes uses.
    public static let nestedBlockSize = 256

    /// One 8-bit code per 4-bit block (stored as `absmax`, U8).
    public var codes: [UInt8]
    /// One float32 scale per 256 codes (stored as `nested_absmax`).
    public var nestedAbsmax: [Float]
    /// The mean of the absmax that was subtracted (`nested_offset`).
    public var offset: Float

    /// Compresses `absmax`. The offset is torch's float32 `mean()` (`TorchMean`), unless given.
    public init(compressing absmax: [Float], offset: Float? = nil) {
        let mean = offset ?? TorchMean.mean(absmax)
        let centred = absmax.map { $0 - mean }
        let (codes, nested) = BlockwiseDynamic8Bit.quantize(centred, blockSize: Self.nestedBlockSize)
        self.codes = codes
        self.nestedAbsmax = nested
        self.offset = mean
    }

    /// Wraps stored parts as read from a file, unchecked.
    public init(codes: [UInt8], nestedAbsmax: [Float], offset: Float) {
        self.codes = codes
        self.nestedAbsmax = nestedAbsmax
        self.offset = offset
    }

    /// The absmax a loader reconstructs: `code[q] * nested_absmax + offset`, in float32.
    public var expanded: [Float] {
        codes.withUnsafeBufferPointer { c in
            nestedAbsmax.withUnsafeBufferPointer { a in
                BlockwiseDynamic8Bit.dequantize(c, absmax: a, blockSize: Self.nestedBlockSize).map { $0 + offset }
            }
        }
    }
}
