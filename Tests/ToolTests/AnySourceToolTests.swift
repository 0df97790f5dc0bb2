import CheckpointKit
import Foundation
import TestSupport
import Testing

/// Every program reads every source: a GGUF (fixtures/convert/tiny-llama.gguf is fixtures/models/tiny-llama
/// as convert_hf_to_gguf.py writes it, every GGML type) and a PyTorch `.bin` behave as the same
/// model in safetensors.
private let gguf = Tools.fixture("convert/tiny-llama.gguf")
private let pytorchBin = Tools.fixture("convert/pytorch/micro-llama/pytorch_model.bin")
private let evalText = Tools.fixture("text/eval.txt")

private func perplexity(_ model: String) throws -> Double {
    let run = try Tools.run("ckpt-perplexity", [model, "--text", evalText, "--ctx", "128", "--chunks", "2", "--json", "--threads", "2"])
    #expect(run.status == 0, "\(run.stderr)")
    return try #require(try parseJSONObject(run.stdout)["perplexity"] as? Double)
}

@Test("ckpt-perplexity reads a GGUF directly and gives the perplexity of its f32 Hugging Face conversion, to the last digit")
func perplexityOfGGUF() throws {
    let scratch = ScratchDirectory()
    #expect(try Tools.run("ckpt-convert", [gguf, scratch.file("hf")]).status == 0)
    let direct = try perplexity(gguf), converted = try perplexity(scratch.file("hf"))
    #expect(direct == converted)
    #expect(direct > 1 && direct < 200)
}

@Test("ckpt-diff matches a GGUF's tensors to the folder it came from by their Hugging Face names")
func diffAcrossFormats() throws {
    let run = try Tools.run("ckpt-diff", [Tools.fixture("models/tiny-llama"), gguf, "--json"])
    #expect(run.status == 0, "\(run.stderr)")
    let rows = try #require(try parseJSONObject(run.stdout)["tensors"] as? [[String: Any]])
    #expect(rows.count == (try Checkpoint(path: Tools.fixture("models/tiny-llama"))).entries.count)
    #expect(rows.contains { ($0["type_b"] as? String) == "Q8_0" })
    #expect(rows.allSatisfy { ($0["status"] as? String) == "compared" }, "\(rows.filter { ($0["status"] as? String) != "compared" })")
    // Q/K rows un-permuted: each matches its original (exactly where stored as F16), a misplaced row would not.
    for row in rows where (row["name"] as? String).map({ $0.contains("q_proj") || $0.contains("k_proj") }) == true {
        #expect(((row["metrics"] as? [String: Any])?["cosine"] as? Double ?? 0) > 0.99, "\(row)")
    }
}

@Test("ckpt-quantize, ckpt-merge-lora and ckpt-inspect take a GGUF; ckpt-compare runs a folder against its GGUF")
func programsTakeGGUF() throws {
    let scratch = ScratchDirectory()
    let quantize = try Tools.run("ckpt-quantize", [gguf, scratch.file("nf4"), "--scheme", "nf4"])
    #expect(quantize.status == 0, "\(quantize.stderr)")
    let quantized = try LogicalCheckpoint(try Checkpoint(path: scratch.file("nf4")))
    #expect(quantized.scheme?.schemeName == "nf4")
    #expect(FileManager.default.fileExists(atPath: scratch.file("nf4/tokenizer.json")))

    let merge = try Tools.run("ckpt-merge-lora", [gguf, Tools.fixture("lora/adapters/llama-lora-all-linear"), scratch.file("merged")])
    #expect(merge.status == 0, "\(merge.stderr)")
    #expect(try Checkpoint(path: scratch.file("merged")).entry(named: "model.layers.0.self_attn.q_proj.weight") != nil)

    let inspect = try Tools.run("ckpt-inspect", [gguf, "--json"])
    #expect(inspect.status == 0, "\(inspect.stderr)")
    let doc = try parseJSONObject(inspect.stdout)
    #expect(doc["format"] as? String == "gguf")
    let tensors = try #require(doc["tensors"] as? [[String: Any]])
    #expect(tensors.contains { ($0["name"] as? String) == "model.layers.0.self_attn.q_proj.weight" })
    #expect((doc["metadata"] as? [String: Any])?["general.architecture"] as? String == "llama")

    let compare = try Tools.run("ckpt-compare", [Tools.fixture("models/tiny-llama"), gguf, "--text", evalText, "--ctx", "128",
                                                 "--chunks", "2", "--json"])
    #expect(compare.status == 0, "\(compare.stderr)")
    let kld = try #require((try parseJSONObject(compare.stdout)["kld"] as? [String: Any])?["mean"] as? Double)
    #expect(kld > 0 && kld < 0.05)
}

@Test("ckpt-quantize of a PyTorch .bin writes what quantizing its safetensors conversion writes")
func quantizePyTorch() throws {
    let scratch = ScratchDirectory()
    #expect(try Tools.run("ckpt-convert", [pytorchBin, scratch.file("st")]).status == 0)
    let direct = try Tools.run("ckpt-quantize", [pytorchBin, scratch.file("a"), "--scheme", "int8", "--include", "proj"])
    #expect(direct.status == 0, "\(direct.stderr)")
    #expect(try Tools.run("ckpt-quantize", [scratch.file("st"), scratch.file("b"), "--scheme", "int8", "--include", "proj"]).status == 0)
    let a = try Data(contentsOf: URL(fileURLWithPath: scratch.file("a/model.safetensors")))
    let b = try Data(contentsOf: URL(fileURLWithPath: scratch.file("b/model.safetensors")))
    #expect(a == b)
}

@Test("A GGUF of an architecture ckpt cannot map is refused by name, in every program")
func unmappedArchitecture() throws {
    let scratch = ScratchDirectory()
    var bytes = try Data(contentsOf: URL(fileURLWithPath: Tools.fixture("convert/micro-llama-tied.gguf")))
    // Same-length rename of the architecture value: "llama" → "llamb".
    let needle = Data("llama".utf8), key = Data("general.architecture".utf8)
    let keyAt = try #require(bytes.range(of: key))
    let valueAt = try #require(bytes.range(of: needle, in: keyAt.upperBound..<bytes.count))
    bytes.replaceSubrange(valueAt, with: Data("llamb".utf8))
    try bytes.write(to: URL(fileURLWithPath: scratch.file("other.gguf")))
    for (tool, args) in [("ckpt-perplexity", ["--text", evalText]), ("ckpt-inspect", []), ("ckpt-diff", [gguf])] {
        let run = try Tools.run(tool, [scratch.file("other.gguf")] + args)
        #expect(run.status == 1, "\(tool): \(run.stderr)")
        #expect(run.stderr.contains("GGUF architecture 'llamb' is not supported"), "\(tool): \(run.stderr)")
    }
}

@Test("ckpt-compare refuses two models whose tokenizers split the text differently, naming the first token that differs")
func tokenizersMustAgree() throws {
    let scratch = ScratchDirectory()
    let folder = scratch.file("retok")
    try FileManager.default.copyItem(atPath: Tools.fixture("models/tiny-llama"), toPath: folder)
    // The same model with one merge fewer: the text tokenizes differently from some token on.
    let path = folder + "/tokenizer.json"
    var json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
    var model = try #require(json["model"] as? [String: Any])
    var merges = try #require(model["merges"] as? [Any])
    merges.removeFirst()
    model["merges"] = merges
    json["model"] = model
    try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: path))
    let run = try Tools.run("ckpt-compare", [Tools.fixture("models/tiny-llama"), folder, "--text", evalText, "--ctx", "128"])
    #expect(run.status == 1, "\(run.stderr)")
    #expect(run.stderr.contains("tokenize the text differently from token"), "\(run.stderr)")
}

@Test("A GGUF whose tokenizer model is unknown still inspects and converts, and evaluation names the model it cannot tokenize with")
func unknownGGUFTokenizer() throws {
    let scratch = ScratchDirectory()
    var bytes = try Data(contentsOf: URL(fileURLWithPath: Tools.fixture("convert/micro-llama-tied.gguf")))
    let keyAt = try #require(bytes.range(of: Data("tokenizer.ggml.model".utf8)))
    let valueAt = try #require(bytes.range(of: Data("gpt2".utf8), in: keyAt.upperBound..<bytes.count))
    bytes.replaceSubrange(valueAt, with: Data("bert".utf8))
    try bytes.write(to: URL(fileURLWithPath: scratch.file("bert.gguf")))
    #expect(try Tools.run("ckpt-inspect", [scratch.file("bert.gguf")]).status == 0)
    let convert = try Tools.run("ckpt-convert", [scratch.file("bert.gguf"), scratch.file("hf")])
    #expect(convert.status == 0, "\(convert.stderr)")
    #expect(!FileManager.default.fileExists(atPath: scratch.file("hf/tokenizer.json")))
    let run = try Tools.run("ckpt-perplexity", [scratch.file("bert.gguf"), "--text", evalText, "--ctx", "16"])
    #expect(run.status == 1)
    #expect(run.stderr == "error: \(scratch.file("bert.gguf")): tokenizer.ggml.model 'bert' is not supported (expected gpt2 or llama)\n")
}

@Test("ckpt-diff of checkpoints whose tensor sets differ lists each side's extras and fails the --max-rmse gate")
func diffDifferentTensorSets() throws {
    let run = try Tools.run("ckpt-diff", [Tools.fixture("models/tiny-llama"), Tools.fixture("convert/micro-llama-tied.gguf"),
                                          "--max-rmse", "1", "--json"])
    #expect(run.status == 3, "\(run.stderr)")
    let rows = try #require(try parseJSONObject(run.stdout)["tensors"] as? [[String: Any]])
    #expect(rows.contains { ($0["status"] as? String) == "only in A" })
    #expect(rows.contains { ($0["status"] as? String) == "shape mismatch" })
}

@Test("ckpt-dequantize turns a GGUF's GGML blocks into bf16 safetensors, and ckpt-convert requantizes a GGUF to Q8_0 GGUF")
func ggufOutAndDequantized() throws {
    let scratch = ScratchDirectory()
    let dequantize = try Tools.run("ckpt-dequantize", [gguf, scratch.file("bf16"), "--dtype", "bf16"])
    #expect(dequantize.status == 0, "\(dequantize.stderr)")
    let folder = try Checkpoint(path: scratch.file("bf16"))
    #expect(folder.entries.allSatisfy { $0.info.dtype == .bf16 })
    #expect(FileManager.default.fileExists(atPath: scratch.file("bf16/tokenizer.json")))

    let requantize = try Tools.run("ckpt-convert", [gguf, scratch.file("q8.gguf"), "--to", "gguf", "--type", "q8_0"])
    #expect(requantize.status == 0, "\(requantize.stderr)")
    let written = try GGUFFile(path: scratch.file("q8.gguf"))
    #expect(written.info(named: "blk.0.ffn_up.weight")?.type == .q8_0)
    let diff = try Tools.run("ckpt-diff", [gguf, scratch.file("q8.gguf"), "--json"])
    #expect(diff.status == 0, "\(diff.stderr)")
    let rows = try #require(try parseJSONObject(diff.stdout)["tensors"] as? [[String: Any]])
    #expect(rows.allSatisfy { ($0["status"] as? String) == "compared" && (($0["metrics"] as? [String: Any])?["cosine"] as? Double ?? 0) > 0.999 })
}

/// `micro-llama-tied.gguf` with the u32 value of metadata `key` replaced.
private func patchedGGUF(_ scratch: ScratchDirectory, key: String, value: UInt32) throws -> String {
    var bytes = try Data(contentsOf: URL(fileURLWithPath: Tools.fixture("convert/micro-llama-tied.gguf")))
    var needle = Data()
    withUnsafeBytes(of: UInt64(key.utf8.count).littleEndian) { needle.append(contentsOf: $0) }
    needle.append(contentsOf: Array(key.utf8))
    let at = try #require(bytes.range(of: needle))
    #expect(bytes[at.upperBound] == 4)  // GGUF type u32
    withUnsafeBytes(of: value.littleEndian) { bytes.replaceSubrange((at.upperBound + 4)..<(at.upperBound + 8), with: $0) }
    let path = scratch.file("\(key)-\(value).gguf")
    try bytes.write(to: URL(fileURLWithPath: path))
    return path
}

@Test("A GGUF with zero or absurd head counts is refused naming the key, and converting it leaves nothing behind",
      arguments: [("llama.attention.head_count", UInt32(0)), ("llama.attention.head_count", .max), ("llama.attention.head_count_kv", 0),
                  ("llama.attention.head_count_kv", 3)])
func badHeadCounts(key: String, value: UInt32) throws {
    let scratch = ScratchDirectory()
    let file = try patchedGGUF(scratch, key: key, value: value)
    let run = try Tools.run("ckpt-convert", [file, scratch.file("out")])
    #expect(run.status == 1, "\(run.stderr)")
    #expect(run.stderr.contains(value == 3 ? "attn_k.weight" : "'\(key)' is \(value)"), "\(run.stderr)")
    #expect(!scratch.contents.contains { $0.hasPrefix("out") })
}
