import CheckpointKit
import Foundation
import Testing

private let tinyLlama = Tools.fixture("models/tiny-llama")

@Test("safetensors → GGUF → safetensors gives back every bf16 weight byte for byte, and a tokenizer with the same ids")
func ggufRoundTrip() throws {
    let scratch = Scratch()
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
    let scratch = Scratch()
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

@Test("An unknown --type for GGUF and an unsupported architecture are refused")
func ggufRefusals() throws {
    let scratch = Scratch()
    let badType = try Tools.run("ckpt-convert", [tinyLlama, scratch.file("x.gguf"), "--to", "gguf", "--type", "q3_k"])
    #expect(badType.status == 64)
    let gpt2 = try Tools.run("ckpt-convert", [Tools.fixture("models/tiny-gpt2"), scratch.file("x.gguf"), "--to", "gguf"])
    #expect(gpt2.status == 1)
    #expect(gpt2.stderr.contains("architecture GPT2LMHeadModel cannot be written as GGUF"))
    #expect(scratch.contents.isEmpty)
}
