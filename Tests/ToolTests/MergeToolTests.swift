import Foundation
import TestSupport
import Testing

private let tinyLlama = Tools.fixture("models/tiny-llama")
private let allLinear = Tools.fixture("lora/adapters/llama-lora-all-linear")
private let second = Tools.fixture("lora/adapters/llama-lora-second")

@Test("ckpt-merge-lora --dry-run prints the plan and writes nothing")
func mergeDryRun() throws {
    let scratch = ScratchDirectory()
    let result = try Tools.run("ckpt-merge-lora", [tinyLlama, allLinear, scratch.file("out"), "--dry-run", "--json"])
    #expect(result.status == 0, "\(result.stderr)")
    let doc = try parseJSONObject(result.stdout)
    #expect(doc["dry_run"] as? Bool == true)
    let tensors = try #require(doc["tensors"] as? [[String: Any]])
    #expect(tensors.count == 28)
    let q = try #require(tensors.first { $0["name"] as? String == "model.layers.0.self_attn.q_proj.weight" })
    let adapter = try #require((q["adapters"] as? [[String: Any]])?.first)
    #expect(adapter["rank"] as? Int == 8 && adapter["scaling"] as? Double == 2)
    #expect(scratch.contents.isEmpty)
}

@Test("Two adapters with --weight merge into a bf16 folder with the tokenizer copied")
func mergeTwoAdapters() throws {
    let scratch = ScratchDirectory()
    let result = try Tools.run("ckpt-merge-lora", [tinyLlama, allLinear, scratch.file("out"), "--adapter", second, "--weight", "0.7",
                                                   "--weight", "0.3", "--json"])
    #expect(result.status == 0, "\(result.stderr)")
    let tensors = try #require(try parseJSONObject(result.stdout)["tensors"] as? [[String: Any]])
    let k = try #require(tensors.first { $0["name"] as? String == "model.layers.0.self_attn.k_proj.weight" })
    #expect((k["adapters"] as? [[String: Any]])?.map { $0["weight"] as? Double } == [0.7, 0.3])
    #expect(((k["relative_change"] as? Double) ?? 0) > 0)
    let names = try FileManager.default.contentsOfDirectory(atPath: scratch.file("out")).sorted()
    #expect(names.contains("tokenizer.json") && names.contains("config.json") && names.contains("model.safetensors"))
}

@Test("A wrong number of --weight values is a usage error")
func mergeWeightCount() throws {
    let result = try Tools.run("ckpt-merge-lora", [tinyLlama, allLinear, "/tmp/never", "--adapter", second, "--weight", "1", "--weight", "2",
                                                   "--weight", "3"])
    #expect(result.status == 64)
    #expect(result.stderr.contains("--weight given 3 time(s) for 2 adapters"))
}

@Test("An adapter for another model is refused naming the keys, exit 1, nothing written")
func mergeWrongBase() throws {
    let scratch = ScratchDirectory()
    let result = try Tools.run("ckpt-merge-lora", [Tools.fixture("models/tiny-gpt2"), allLinear, scratch.file("out")])
    #expect(result.status == 1)
    #expect(result.stderr.hasPrefix("error: \(allLinear)/adapter_model.safetensors: 56 adapter key(s) match no base tensor: "))
    #expect(result.stderr.split(separator: "\n").count == 1)
    #expect(scratch.contents.isEmpty)
}

@Test("A shape that does not fit says both shapes")
func mergeShapeMismatch() throws {
    let scratch = ScratchDirectory()
    guard FileManager.default.fileExists(atPath: Tools.repository + "/../shared/assets/lora/gpt2-tigrinya-lora") else {
        print("skipped: ../shared/assets is absent")
        return
    }
    let result = try Tools.run("ckpt-merge-lora", [Tools.fixture("models/tiny-gpt2"), Tools.repository + "/../shared/assets/lora/gpt2-tigrinya-lora",
                                                   scratch.file("out")])
    #expect(result.status == 1)
    #expect(result.stderr.contains("does not fit base tensor 'transformer.h.0.attn.c_attn.weight' (expected shape [8, 64], got [8, 768])"))
    #expect(scratch.contents.isEmpty)
}

@Test("An adapter trained on another model family gets a warning")
func mergeBaseHint() throws {
    let scratch = ScratchDirectory()
    let adapter = scratch.file("adapter")
    try FileManager.default.copyItem(atPath: allLinear, toPath: adapter)
    let config = try String(contentsOfFile: adapter + "/adapter_config.json", encoding: .utf8)
    var json = try #require(JSONSerialization.jsonObject(with: Data(config.utf8)) as? [String: Any])
    json["base_model_name_or_path"] = "facebook/opt-125m"
    try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: adapter + "/adapter_config.json"))
    let result = try Tools.run("ckpt-merge-lora", [tinyLlama, adapter, scratch.file("out")])
    #expect(result.status == 0, "\(result.stderr)")
    #expect(result.stderr.contains("adapter was trained on 'facebook/opt-125m', but the base is a llama model"))
}

@Test("An unsupported peft_type is named")
func mergeIA3() throws {
    let scratch = ScratchDirectory()
    try FileManager.default.createDirectory(atPath: scratch.file("ia3"), withIntermediateDirectories: true)
    FileManager.default.createFile(atPath: scratch.file("ia3/adapter_config.json"), contents: Data(#"{"peft_type": "IA3"}"#.utf8))
    let result = try Tools.run("ckpt-merge-lora", [tinyLlama, scratch.file("ia3"), scratch.file("out")])
    #expect(result.status == 1)
    #expect(result.stderr.contains("peft_type IA3 is not supported"))
}

@Test("Merging into the NF4 base writes floats by default, or NF4 again with --requantize")
func mergeQuantizedBase() throws {
    let scratch = ScratchDirectory()
    let nf4 = Tools.fixture("models/tiny-llama-bnb-nf4")
    let floats = try Tools.run("ckpt-merge-lora", [nf4, allLinear, scratch.file("floats"), "--json"])
    #expect(floats.status == 0, "\(floats.stderr)")
    let inspectFloats = try parseJSONObject(try Tools.run("ckpt-inspect", [scratch.file("floats"), "--json"]).stdout)
    #expect(inspectFloats["quantization"] is NSNull)
    #expect((inspectFloats["tensors"] as? [[String: Any]])?.allSatisfy { $0["dtype"] as? String == "BF16" } == true)
    // Against the exact merge into the bf16 weights the difference is NF4's error, not a mistake.
    #expect(try Tools.run("ckpt-merge-lora", [tinyLlama, allLinear, scratch.file("exact")]).status == 0)
    let diff = try parseJSONObject(try Tools.run("ckpt-diff", [scratch.file("exact"), scratch.file("floats"), "--json"]).stdout)
    let rows = try #require(diff["tensors"] as? [[String: Any]])
    #expect(rows.filter { ($0["name"] as? String)?.contains("proj") == true }
        .allSatisfy { (($0["metrics"] as? [String: Any])?["snr_db"] as? Double ?? 0) > 18 })

    let requantized = try Tools.run("ckpt-merge-lora", [nf4, allLinear, scratch.file("nf4"), "--requantize", "--json"])
    #expect(requantized.status == 0, "\(requantized.stderr)")
    let tensors = try #require(try parseJSONObject(requantized.stdout)["tensors"] as? [[String: Any]])
    #expect(tensors.allSatisfy { (($0["requantization"] as? [String: Any])?["snr_db"] as? Double ?? 0) > 18 })
    let inspect = try parseJSONObject(try Tools.run("ckpt-inspect", [scratch.file("nf4"), "--json"]).stdout)
    #expect(inspect["quantization"] as? String == "bitsandbytes nf4 (double quant)")
}

@Test("A full disk while merging leaves nothing behind",
      .disabled(if: Tools.sanitizer != nil, "resource limits (ulimit) cannot hold a sanitized program"))
func mergeFullDisk() throws {
    let scratch = ScratchDirectory()
    let result = try Tools.start("ckpt-merge-lora", [tinyLlama, allLinear, scratch.file("out")], shellPrefix: "ulimit -f 200").wait()
    #expect(result.status == 1)
    #expect(result.stderr.contains("cannot write (File too large)"))
    #expect(scratch.contents.isEmpty)
}

@Test("Merged files are byte-identical with --threads 1 and --threads 2")
func mergeThreadInvariance() throws {
    let scratch = ScratchDirectory()
    for threads in ["1", "2"] {
        let r = try Tools.run("ckpt-merge-lora", [tinyLlama, Tools.fixture("lora/adapters/llama-dora"), scratch.file(threads), "--dtype", "f32",
                                                  "--threads", threads, "--quiet"])
        #expect(r.status == 0, "\(r.stderr)")
    }
    #expect(FileManager.default.contents(atPath: scratch.file("1/model.safetensors"))
        == FileManager.default.contents(atPath: scratch.file("2/model.safetensors")))
}

@Test("--requantize --calibration-text into a GPTQ base re-runs GPTQ on the merged floats, reports each row's error and leaves no temporary")
func mergeCalibratedRequantization() throws {
    let scratch = ScratchDirectory()
    let result = try Tools.run("ckpt-merge-lora", [Tools.fixture("models/tiny-llama-gptq"), allLinear, scratch.file("out"), "--requantize",
                                                   "--calibration-text", Tools.fixture("text/eval.txt"), "--calibration-tokens", "512",
                                                   "--ctx", "128", "--json"])
    #expect(result.status == 0, "\(result.stderr)")
    let doc = try parseJSONObject(result.stdout)
    let tensors = try #require(doc["tensors"] as? [[String: Any]])
    #expect(tensors.count == 28 && tensors.allSatisfy { $0["requantization"] != nil && $0["update_rms"] != nil && $0["base_quantization_rmse"] != nil })
    #expect((doc["notes"] as? [String])?.contains { $0.hasPrefix("re-quantized by GPTQ") } == true)
    let config = try #require(try parseJSONObject(String(decoding: try Data(contentsOf: URL(fileURLWithPath: scratch.file("out/config.json"))), as: UTF8.self))["quantization_config"] as? [String: Any])
    #expect(config["quant_method"] as? String == "gptq")
    #expect(scratch.contents == ["out"], "the merged floats were a temporary")
}

@Test("--calibration-text without --requantize is a usage error")
func calibrationNeedsRequantize() throws {
    let result = try Tools.run("ckpt-merge-lora", [tinyLlama, allLinear, "/tmp/never", "--calibration-text", Tools.fixture("text/eval.txt")])
    #expect(result.status == 64 && result.stderr.contains("--calibration-text re-runs GPTQ/AWQ when re-quantizing: add --requantize"))
}

@Test("ckpt-convert ADAPTER out.gguf --base BASE writes a LoRA GGUF; without --base it is a usage error")
func convertAdapterToGGUF() throws {
    let scratch = ScratchDirectory()
    let result = try Tools.run("ckpt-convert", [allLinear, scratch.file("lora.gguf"), "--base", tinyLlama, "--type", "f16", "--json"])
    #expect(result.status == 0, "\(result.stderr)")
    let doc = try parseJSONObject(result.stdout)
    #expect(doc["architecture"] as? String == "llama" && (doc["pairs"] as? [Any])?.count == 28 && doc["alpha"] as? Double == 16)
    let missing = try Tools.run("ckpt-convert", [allLinear, scratch.file("other.gguf")])
    #expect(missing.status == 64 && missing.stderr.contains("is a LoRA adapter: give --base BASE"))
}
