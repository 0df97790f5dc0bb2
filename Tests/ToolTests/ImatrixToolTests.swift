import CheckpointKit
import Foundation
import TestSupport
import Testing

private let tinyLlama = Tools.fixture("models/tiny-llama")
private let text = Tools.fixture("text/eval.txt")

@Test("ckpt-imatrix writes llama-imatrix's GGUF layout, which ckpt-convert --imatrix then uses")
func imatrixFeedsTheConverter() throws {
    let scratch = ScratchDirectory()
    let run = try Tools.run("ckpt-imatrix", [tinyLlama, "--text", text, "--ctx", "64", "-o", scratch.file("m.gguf")])
    #expect(run.status == 0, "\(run.stderr)")
    let file = try GGUFFile(path: scratch.file("m.gguf"))
    #expect(file.value("general.type")?.stringValue == "imatrix")
    #expect(file.value("imatrix.chunk_size")?.intValue == 64)
    // Seven products a layer (q, k, v, o, gate, up, down), four layers, two tensors each.
    #expect(file.tensors.count == 4 * 7 * 2)
    let sums = try #require(file.info(named: "blk.0.ffn_down.weight.in_sum2"))
    #expect(sums.dimensions == [192, 1])
    let counts = file.float32(try #require(file.info(named: "blk.0.ffn_down.weight.counts")))
    #expect(counts == [Float((file.value("imatrix.chunk_count")?.intValue ?? 0) * 64)])
    #expect(file.float32(sums).allSatisfy { $0 > 0 })
    let convert = try Tools.run("ckpt-convert", [tinyLlama, scratch.file("q.gguf"), "--type", "q4_0", "--imatrix", scratch.file("m.gguf")])
    #expect(convert.status == 0, "\(convert.stderr)")
    let plain = try Tools.run("ckpt-convert", [tinyLlama, scratch.file("p.gguf"), "--type", "q4_0"])
    #expect(plain.status == 0)
    let a = try GGUFFile(path: scratch.file("q.gguf")), b = try GGUFFile(path: scratch.file("p.gguf"))
    let name = "blk.1.attn_q.weight"
    #expect(Array(a.bytes(try #require(a.info(named: name)))) != Array(b.bytes(try #require(b.info(named: name)))), "the imatrix changed nothing")
}

@Test("--combine adds two imatrix files: sums and counts")
func imatrixCombine() throws {
    let scratch = ScratchDirectory()
    #expect(try Tools.run("ckpt-imatrix", [tinyLlama, "--text", text, "--ctx", "64", "--chunks", "2", "-o", scratch.file("a.gguf")]).status == 0)
    let run = try Tools.run("ckpt-imatrix", ["--combine", scratch.file("a.gguf"), scratch.file("a.gguf"), "-o", scratch.file("c.gguf")])
    #expect(run.status == 0, "\(run.stderr)")
    let one = try ImportanceMatrix(reading: scratch.file("a.gguf")), two = try ImportanceMatrix(reading: scratch.file("c.gguf"))
    for (name, entry) in one.entries {
        #expect(two.entries[name]?.sums == entry.sums.map { $0 + $0 })
        #expect(two.entries[name]?.counts == entry.counts.map { $0 * 2 })
    }
    #expect(two.chunkCount == 4)
}

@Test("An imatrix from another model is refused, naming the tensor, exit 1, nothing written")
func imatrixFromAnotherModel() throws {
    let scratch = ScratchDirectory()
    let other = Tools.fixture("gguf-presets/untied.imatrix.gguf")
    let run = try Tools.run("ckpt-convert", [tinyLlama, scratch.file("q.gguf"), "--type", "q4_k_m", "--imatrix", other])
    #expect(run.status == 1)
    #expect(run.stderr.hasPrefix("error: \(other): blk."))
    #expect(run.stderr.contains("expected an imatrix computed on the same model"))
    #expect(scratch.contents.isEmpty)
}

@Test("The legacy .dat format is read as llama-quantize reads it: values over the call count")
func legacyImatrix() throws {
    var bytes: [UInt8] = []
    func i32(_ v: Int32) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    let name = "blk.0.attn_q.weight"
    i32(1); i32(Int32(name.utf8.count)); bytes += Array(name.utf8); i32(4); i32(3)
    for v: Float in [8, 4, 2] { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes += $0 } }
    i32(7); i32(4); bytes += Array("wiki".utf8)
    let scratch = ScratchDirectory()
    let matrix = try ImportanceMatrix(reading: scratch.write("m.dat", bytes))
    #expect(matrix.weights(for: name) == [2, 1, 0.5])
    #expect(matrix.datasets == ["wiki"] && matrix.chunkCount == 7)
    // Truncated or absurd counts are refused before anything is allocated.
    for bad in [Array(bytes.prefix(20)), [0xFF, 0xFF, 0xFF, 0x7F] + Array(bytes.dropFirst(4))] {
        #expect(throws: ImportanceMatrix.Failure.self) { _ = try ImportanceMatrix(reading: scratch.write("bad.dat", bad)) }
    }
}

@Test("Combining counts that overflow is refused, not a trap (found by the fuzzer)")
func imatrixCombineOverflow() throws {
    let huge = ImportanceMatrix(entries: ["blk.0.attn_q.weight": .init(sums: [1], counts: [Int64.max - 1])], datasets: [], chunkCount: 1,
                                chunkSize: 1, file: "huge.gguf")
    #expect(throws: ImportanceMatrix.Failure.self) { _ = try ImportanceMatrix.combine([huge, huge]) }
}

@Test("A MoE model's imatrix (experts per expert) weights ckpt-quantize's scale search expert by expert, and a fused-QKV model's too")
func expertImatrixWeightsQuantize() throws {
    let scratch = ScratchDirectory()
    for model in [Tools.fixture("gguf-architectures/qwen3-moe-sparse"), Tools.fixture("architectures/phi3")] {
        let matrix = scratch.file("m.gguf")
        let imatrix = try Tools.run("ckpt-imatrix", [model, "--text", text, "--ctx", "64", "--chunks", "2", "-o", matrix, "--force"])
        #expect(imatrix.status == 0, "\(imatrix.stderr)")
        let weighted = try Tools.run("ckpt-quantize", [model, scratch.file("w"), "--scheme", "nf4", "--optimize-scales", "--imatrix", matrix, "--force"])
        #expect(weighted.status == 0, "\(model): \(weighted.stderr)")
        let plain = try Tools.run("ckpt-quantize", [model, scratch.file("p"), "--scheme", "nf4", "--optimize-scales", "--force"])
        #expect(plain.status == 0, "\(plain.stderr)")
        let name = model.hasSuffix("phi3") ? "model.layers.1.self_attn.qkv_proj.weight" : "model.layers.1.mlp.experts.2.up_proj.weight"
        let a = try Checkpoint(path: scratch.file("w")), b = try Checkpoint(path: scratch.file("p"))
        let absmax = name + ".absmax"
        #expect(FloatValues.array(try #require(a.view(named: absmax))) != FloatValues.array(try #require(b.view(named: absmax))),
                "\(name): the imatrix changed nothing")
    }
}
