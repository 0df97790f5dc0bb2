import CheckpointKit
import Foundation
import TestSupport
import Testing

private let tinyLlama = Tools.fixture("models/tiny-llama")

@Test("safetensors → GGUF → safetensors gives back every bf16 weight byte for byte, and a tokenizer with the same ids")
func ggufRoundTrip() throws {
    let scratch = ScratchDirectory()
    let toGGUF = try Tools.run("ckpt-convert", [tinyLlama, scratch.file("tiny.gguf"), "--to", "gguf", "--type", "bf16"])
    #expect(toGGUF.status == 0, "\(toGGUF.stderr)")
    let gguf = try GGUFFile(path: scratch.file("tiny.gguf"))
    #expect(gguf.value("general.architecture")?.stringValue == "llama")
    #expect(gguf.info(named: "blk.0.attn_q.weight")?.type == .bf16)
    #expect(gguf.info(named: "blk.0.attn_norm.weight")?.type == .f32)
    let back = try Tools.run("ckpt-convert", [scratch.file("tiny.gguf"), scratch.file("back"), "--type", "bf16"])
    #expect(back.status == 0, "\(back.stderr)")
    let original = try Checkpoint(path: tinyLlama), restored = try Checkpoint(path: scratch.file("back"))
    for entry in original.entries {
        #expect(restored.view(named: entry.info.name)?.byteArray == original.view(entry).byteArray, "\(entry.info.name)")
    }
    let text = try String(contentsOfFile: Tools.fixture("text/eval.txt"), encoding: .utf8)
    let rebuilt = try Tokenizer(path: scratch.file("back/tokenizer.json"))
    let reference = try Tokenizer(path: tinyLlama + "/tokenizer.json")
    #expect(rebuilt.encode(text) == reference.encode(text))
    #expect(restored.config?["num_key_value_heads"]?.intValue == 2 && restored.config?["tie_word_embeddings"]?.boolValue == false)
}

@Test("Q8_0 and Q4_0 GGUF files hold gguf-py's bytes: dequantized, they stay within the block error of the weights")
func ggufQuantized() throws {
    let scratch = ScratchDirectory()
    for (type, tolerance) in [("q8_0", Float(0.004)), ("q4_0", Float(0.08))] {
        #expect(try Tools.run("ckpt-convert", [tinyLlama, scratch.file(type + ".gguf"), "--to", "gguf", "--type", type]).status == 0)
        let gguf = try GGUFFile(path: scratch.file(type + ".gguf"))
        let info = try #require(gguf.info(named: "blk.0.ffn_up.weight"))
        #expect(info.type == (type == "q8_0" ? .q8_0 : .q4_0))
        let original = FloatValues.array(try #require(try Checkpoint(path: tinyLlama).view(named: "model.layers.0.mlp.up_proj.weight")))
        let restored = try gguf.float32(info)
        let worst = zip(original, restored).map { abs($0 - $1) }.max() ?? 1
        #expect(worst < tolerance, "\(type): worst error \(worst)")
    }
}

@Test("An unknown --type for GGUF, and a tensor llama.cpp's layout has no name for, are refused with nothing written")
func ggufRefusals() throws {
    let scratch = ScratchDirectory()
    let badType = try Tools.run("ckpt-convert", [tinyLlama, scratch.file("x.gguf"), "--to", "gguf", "--type", "q3_x"])
    #expect(badType.status == 64)
    // Qwen3-MoE with a dense first layer (mlp_only_layers): llama.cpp's qwen3moe has no dense FFN, the converter refuses it too.
    let dense = try Tools.run("ckpt-convert", [Tools.fixture("architectures/qwen3-moe"), scratch.file("x.gguf"), "--type", "q8_0"])
    #expect(dense.status == 1)
    #expect(dense.stderr.contains("tensor 'model.layers.0.mlp.down_proj.weight': no GGUF name for it in the qwen3moe layout"), "\(dense.stderr)")
    #expect(scratch.contents.isEmpty)
    let gpt2 = try Tools.run("ckpt-convert", [Tools.fixture("models/tiny-gpt2"), scratch.file("gpt2.gguf"), "--to", "gguf"])
    #expect(gpt2.status == 0, "\(gpt2.stderr)")
    #expect(try GGUFFile(path: scratch.file("gpt2.gguf")).value("general.architecture")?.stringValue == "gpt2")
}

@Test("A GGUF names its pre-tokenizer as llama.cpp would (gpt-2 for the fixture's byte-level tokenizer), never default")
func ggufNamesThePreTokenizer() throws {
    let scratch = ScratchDirectory()
    let run = try Tools.run("ckpt-convert", [tinyLlama, scratch.file("tiny.gguf"), "--to", "gguf", "--type", "q8_0"])
    #expect(run.status == 0, "\(run.stderr)")
    let gguf = try GGUFFile(path: scratch.file("tiny.gguf"))
    #expect(gguf.value("tokenizer.ggml.pre")?.stringValue == "gpt-2")
    #expect(gguf.value("tokenizer.ggml.model")?.stringValue == "gpt2")
    // Requantized from that GGUF, the name is carried over as it is.
    let again = try Tools.run("ckpt-convert", [scratch.file("tiny.gguf"), scratch.file("again.gguf"), "--to", "gguf", "--type", "f16"])
    #expect(again.status == 0, "\(again.stderr)")
    #expect(try GGUFFile(path: scratch.file("again.gguf")).value("tokenizer.ggml.pre")?.stringValue == "gpt-2")
}

@Test("A tokenizer whose pre-tokenizer llama.cpp cannot name is refused in one line, nothing written, input untouched")
func ggufRefusesAnUnnamedPreTokenizer() throws {
    let scratch = ScratchDirectory()
    let folder = scratch.file("digits")
    try FileManager.default.copyItem(atPath: tinyLlama, toPath: folder)
    let path = folder + "/tokenizer.json"
    guard case .object(let members) = try JSONParser.parse(String(contentsOfFile: path, encoding: .utf8)) else { Issue.record("not JSON"); return }
    let digitsFirst: JSONValue = ["type": "Sequence", "pretokenizers": [
        ["type": "Digits", "individual_digits": true],
        ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true],
    ]]
    let changed = JSONValue.object(members.map { $0.0 == "pre_tokenizer" ? ($0.0, digitsFirst) : $0 })
    try changed.serialized().write(toFile: path, atomically: true, encoding: .utf8)
    let before = try Data(contentsOf: URL(fileURLWithPath: path))
    let run = try Tools.run("ckpt-convert", [folder, scratch.file("out.gguf"), "--to", "gguf"])
    #expect(run.status == 1)
    #expect(run.stderr.hasPrefix("error: \(path): llama.cpp has no name for this pre-tokenizer (probe hash "))
    #expect(run.stderr.split(separator: "\n").count == 1)
    #expect(!FileManager.default.fileExists(atPath: scratch.file("out.gguf")))
    #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == before)
}

/// A GGUF v3 holding only `general.architecture` (no tensors).
private func ggufDeclaring(architecture: String, at path: String) {
    var bytes: [UInt8] = []
    func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    func string(_ s: String) { u64(UInt64(s.utf8.count)); bytes.append(contentsOf: s.utf8) }
    u32(0x4655_4747); u32(3); u64(0); u64(1)
    string("general.architecture"); u32(8); string(architecture)
    FileManager.default.createFile(atPath: path, contents: Data(bytes))
}

@Test("A GGUF of another architecture is refused by name, nothing written")
func ggufOtherArchitecture() throws {
    let scratch = ScratchDirectory()
    ggufDeclaring(architecture: "qwen2", at: scratch.file("q.gguf"))
    let result = try Tools.run("ckpt-convert", [scratch.file("q.gguf"), scratch.file("out")])
    #expect(result.status == 1)
    #expect(result.stderr.contains("GGUF architecture 'qwen2' is not supported"))
    #expect(scratch.contents == ["q.gguf"])
}

@Test("A tied GGUF (no output.weight) becomes a folder with tied embeddings and no lm_head")
func ggufTied() throws {
    let scratch = ScratchDirectory()
    let result = try Tools.run("ckpt-convert", [Tools.fixture("convert/micro-llama-tied.gguf"), scratch.file("out"), "--type", "bf16", "--json"])
    #expect(result.status == 0, "\(result.stderr)")
    let checkpoint = try Checkpoint(path: scratch.file("out"))
    #expect(checkpoint.config?["tie_word_embeddings"]?.boolValue == true)
    #expect(checkpoint.entry(named: "lm_head.weight") == nil && checkpoint.entry(named: "model.embed_tokens.weight") != nil)
}

@Test("A pickle calling os.system is refused by ckpt-convert with its name, exit 1, nothing written")
func convertRefusesPickle() throws {
    let scratch = ScratchDirectory()
    let result = try Tools.run("ckpt-convert", [Tools.fixture("convert/pickles_bad/forbidden_os_system.bin"), scratch.file("out")])
    #expect(result.status == 1)
    #expect(result.stderr.contains("the pickle calls os.system, which a state dict never needs (refused, nothing executed)"))
    #expect(scratch.contents.isEmpty)
}

@Test("A sharded pytorch_model.bin folder converts to safetensors with the same tensors")
func convertShardedBin() throws {
    let scratch = ScratchDirectory()
    let result = try Tools.run("ckpt-convert", [Tools.fixture("convert/pytorch/micro-llama-sharded"), scratch.file("out")])
    #expect(result.status == 0, "\(result.stderr)")
    let converted = try Checkpoint(path: scratch.file("out"))
    let single = try PyTorchCheckpoint(path: Tools.fixture("convert/pytorch/micro-llama/pytorch_model.bin"))
    for t in single.tensors {
        #expect(converted.view(named: t.name)?.byteArray == withExtendedLifetime(single) { Array(t.bytes) }, "\(t.name)")
    }
    #expect(converted.config != nil)
}
