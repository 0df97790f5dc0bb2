/// The llama family's tensor names in GGUF and in Hugging Face checkpoints, one table for both
/// directions, and llama.cpp's Q/K row permutation (`permute` in convert_hf_to_gguf.py).
public enum GGUFLlamaNames {
    // The dense llama names of the writer's table (GGUFArchitecture), read in both directions.
    static let fixedNames = GGUFArchitecture.standardGlobals
    static let layerModules = GGUFArchitecture.preNorms + GGUFArchitecture.attention + GGUFArchitecture.gatedFeedForward

    /// The Hugging Face name of a GGUF llama tensor.
    public static func hfName(_ name: String) -> String? {
        if let n = fixedNames.first(where: { $0.gguf == name }) { return n.hf }
        let parts = name.split(separator: ".")
        guard parts.count == 4, parts[0] == "blk", let layer = Int(parts[1]), layer >= 0,
            let module = layerModules.first(where: { $0.gguf == parts[2] })
        else { return nil }
        return "model.layers.\(layer).\(module.hf).\(parts[3])"
    }

    /// The GGUF name of a Hugging Face llama tensor.
    public static func ggufName(_ name: String) -> String? {
        if let n = fixedNames.first(where: { $0.hf == name }) { return n.gguf }
        let parts = name.split(separator: ".").map(String.init)
        guard parts.count >= 5, parts[0] == "model", parts[1] == "layers", let layer = Int(parts[2]),
            let module = layerModules.first(where: { $0.hf == parts[3..<(parts.count - 1)].joined(separator: ".") })
        else { return nil }
        return "blk.\(layer).\(module.gguf).\(parts.last!)"
    }

    /// Whether rows of `rows` can be permuted for `heads` heads (each head an even number of rows).
    public static func canPermute(rows: Int, heads: Int) -> Bool {
        heads > 0 && rows % heads == 0 && (rows / heads) % 2 == 0
    }

    /// Moves rows of `rowBytes` bytes: HF row h·d + j·d/2 + i is GGUF row h·d + 2i + j
    /// (`toGGUF: false` undoes it). `canPermute(rows:heads:)` must hold.
    public static func permuteRows(_ source: UnsafeRawBufferPointer, into target: UnsafeMutableRawBufferPointer, rows: Int, rowBytes: Int,
                                   heads: Int, toGGUF: Bool) {
        precondition(canPermute(rows: rows, heads: heads) && source.count >= rows * rowBytes && target.count >= rows * rowBytes)
        let headDim = rows / heads
        let half = headDim / 2
        for h in 0..<heads {
            for i in 0..<half {
                for j in 0..<2 {
                    let hf = (h * headDim + j * half + i) * rowBytes, gguf = (h * headDim + 2 * i + j) * rowBytes
                    let (from, to) = toGGUF ? (hf, gguf) : (gguf, hf)
                    (target.baseAddress! + to).copyMemory(from: source.baseAddress! + from, byteCount: rowBytes)
                }
            }
        }
    }

    /// `permuteRows` on f32 values of `columns` per row.
    public static func permuteRows(_ values: [Float], rows: Int, columns: Int, heads: Int, toGGUF: Bool) -> [Float] {
        var out = [Float](repeating: 0, count: values.count)
        values.withUnsafeBytes { source in
            out.withUnsafeMutableBytes {
                permuteRows(source, into: $0, rows: rows, rowBytes: columns * 4, heads: heads, toGGUF: toGGUF)
            }
        }
        return out
    }
}
