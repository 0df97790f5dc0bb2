import Foundation
import TestSupport
import Testing

@Test("ckpt-inspect --json on the sharded fixture lists three files and the tiny Llama's 262,720 parameters")
func inspectShardedFixture() throws {
    let result = try Tools.run("ckpt-inspect", [Tools.fixture("models/tiny-llama-sharded"), "--json"])
    #expect(result.status == 0, "\(result.stderr)")
    let doc = try parseJSONObject(result.stdout)
    #expect(doc["layout"] as? String == "sharded")
    #expect((doc["files"] as? [[String: Any]])?.map { $0["name"] as? String } ==
        ["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"])
    #expect(doc["parameters"] as? Int == 262_720)
    #expect(doc["bytes"] as? Int == 525_440)
    #expect((doc["config"] as? [String: Any])?["model_type"] as? String == "llama")
    #expect((doc["tensors"] as? [Any])?.count == 39)
}

@Test("ckpt-inspect --verify reads the GPT-2 fixture and finds no fault")
func verifyGPT2Fixture() throws {
    let result = try Tools.run("ckpt-inspect", [Tools.fixture("models/tiny-gpt2"), "--verify"])
    #expect(result.status == 0, "\(result.stderr)")
    #expect(result.stdout.contains("GPT2LMHeadModel"))
    #expect(result.stdout.contains("no faults"))
}

@Test("A model folder holding an LFS pointer fails with exit 1, naming the pointer")
func lfsFolder() throws {
    let result = try Tools.run("ckpt-inspect", [Tools.fixture("models/bad/lfs-pointer-model")])
    #expect(result.status == 1)
    #expect(result.stderr.contains("lfs-pointer-model/model.safetensors: this is a Git LFS pointer"))
    #expect(result.stderr.contains("529488 bytes"))
}

@Test("Converting the sharded fixture keeps its three shard names, and converting back restores every byte")
func convertShardedFixture() throws {
    let scratch = ScratchDirectory()
    let toF16 = try Tools.run("ckpt-convert", [Tools.fixture("models/tiny-llama-sharded"), scratch.file("f32"), "--type", "f32"])
    #expect(toF16.status == 0, "\(toF16.stderr)")
    let names = try FileManager.default.contentsOfDirectory(atPath: scratch.file("f32")).sorted()
    #expect(names == ["config.json", "generation_config.json", "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                      "model-00003-of-00003.safetensors", "model.safetensors.index.json", "special_tokens_map.json", "tokenizer.json",
                      "tokenizer_config.json"])
    let back = try Tools.run("ckpt-convert", [scratch.file("f32"), scratch.file("bf16"), "--type", "bf16", "--shard-size", "10GB"])
    #expect(back.status == 0, "\(back.stderr)")
    // One shard again: the bytes are transformers' own single-file save of the same model.
    #expect(FileManager.default.contents(atPath: scratch.file("bf16/model.safetensors"))
        == FileManager.default.contents(atPath: Tools.fixture("models/tiny-llama/model.safetensors")))
    #expect(FileManager.default.contents(atPath: scratch.file("bf16/tokenizer.json"))
        == FileManager.default.contents(atPath: Tools.fixture("models/tiny-llama/tokenizer.json")))
}
