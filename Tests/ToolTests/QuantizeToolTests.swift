import CheckpointKit
import Foundation
import TestSupport
import Testing

private let tinyLlama = Tools.fixture("models/tiny-llama")

@Test("ckpt-quantize --scheme nf4 quantizes the 28 linear weights and keeps embeddings, lm_head and norms")
func quantizeNF4() throws {
    let scratch = ScratchDirectory()
    let result = try Tools.run("ckpt-quantize", [tinyLlama, scratch.file("nf4"), "--scheme", "nf4", "--json", "--quiet"])
    #expect(result.status == 0, "\(result.stderr)")
    let doc = try parseJSONObject(result.stdout)
    let tensors = try #require(doc["tensors"] as? [[String: Any]])
    #expect(tensors.count == 28)
    let kept = try #require(doc["kept"] as? [String])
    #expect(kept.contains("model.embed_tokens.weight") && kept.contains("lm_head.weight") && kept.contains("model.norm.weight"))
    let total = try #require(doc["total"] as? [String: Any])
    #expect((total["snr_db"] as? Double ?? 0) > 18)  // NF4 on trained weights: ~20 dB
    #expect(abs((total["bits_per_weight"] as? Double ?? 0) - 4.66) < 0.01)  // 4 bits + f32 absmax per 64 + the small maps
    let inspect = try parseJSONObject(try Tools.run("ckpt-inspect", [scratch.file("nf4"), "--json"]).stdout)
    #expect(inspect["quantization"] as? String == "bitsandbytes nf4")
    let config = try #require(inspect["config"] as? [String: Any])
    let q = try #require(config["quantization_config"] as? [String: Any])
    #expect(q["quant_method"] as? String == "bitsandbytes" && q["bnb_4bit_quant_type"] as? String == "nf4")
    #expect(FileManager.default.fileExists(atPath: scratch.file("nf4/tokenizer.json")))
}

@Test("Quantized output is byte-identical with --threads 1 and --threads 2", arguments: ["nf4", "fp4", "int8"])
func quantizeThreadInvariance(scheme: String) throws {
    let scratch = ScratchDirectory()
    var extra = scheme == "int8" ? ["--optimize-scales"] : ["--double-quant"]
    extra += ["--quiet"]
    for threads in ["1", "2"] {
        let r = try Tools.run("ckpt-quantize", [tinyLlama, scratch.file(threads), "--scheme", scheme, "--threads", threads] + extra)
        #expect(r.status == 0, "\(r.stderr)")
    }
    #expect(FileManager.default.contents(atPath: scratch.file("1/model.safetensors"))
        == FileManager.default.contents(atPath: scratch.file("2/model.safetensors")))
}

@Test("The sharded fixture keeps its three shards when quantized, and ckpt-diff compares it with the original")
func quantizeShardedAndDiff() throws {
    let scratch = ScratchDirectory()
    let q = try Tools.run("ckpt-quantize", [Tools.fixture("models/tiny-llama-sharded"), scratch.file("int8"), "--scheme", "int8", "--quiet"])
    #expect(q.status == 0, "\(q.stderr)")
    let names = try FileManager.default.contentsOfDirectory(atPath: scratch.file("int8")).filter { $0.hasSuffix(".safetensors") }.sorted()
    #expect(names == ["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"])
    let diff = try Tools.run("ckpt-diff", [tinyLlama, scratch.file("int8"), "--json"])
    #expect(diff.status == 0, "\(diff.stderr)")
    let rows = try #require(try parseJSONObject(diff.stdout)["tensors"] as? [[String: Any]])
    #expect(rows.count == 39)
    #expect(rows.allSatisfy { $0["status"] as? String == "compared" })
    let qProj = try #require(rows.first { $0["name"] as? String == "model.layers.0.self_attn.q_proj.weight" })
    #expect((qProj["type_b"] as? String)?.hasPrefix("int8") == true)
    let metrics = try #require(qProj["metrics"] as? [String: Any])
    #expect((metrics["snr_db"] as? Double ?? 0) > 40)
    // A gate the int8 error cannot meet exits 3.
    let gated = try Tools.run("ckpt-diff", [tinyLlama, scratch.file("int8"), "--max-rmse", "1e-6"])
    #expect(gated.status == 3)
    #expect(gated.stderr.hasPrefix("gate failed: "))
    #expect(try Tools.run("ckpt-diff", [tinyLlama, scratch.file("int8"), "--max-rmse", "0.01"]).status == 0)
}

@Test("ckpt-dequantize restores floats within the scheme's error and removes quantization_config")
func dequantizeRoundTrip() throws {
    let scratch = ScratchDirectory()
    #expect(try Tools.run("ckpt-quantize", [tinyLlama, scratch.file("nf4"), "--scheme", "nf4", "--double-quant", "--quiet"]).status == 0)
    let d = try Tools.run("ckpt-dequantize", [scratch.file("nf4"), scratch.file("back"), "--dtype", "f32"])
    #expect(d.status == 0, "\(d.stderr)")
    let inspect = try parseJSONObject(try Tools.run("ckpt-inspect", [scratch.file("back"), "--json"]).stdout)
    #expect(inspect["quantization"] is NSNull)
    #expect((inspect["config"] as? [String: Any])?["quantization_config"] == nil)
    #expect((inspect["config"] as? [String: Any])?["dtype"] as? String == "float32")
    #expect((inspect["tensors"] as? [[String: Any]])?.count == 39)
    // The dequantized file holds exactly what a loader reconstructs: diffing it with the NF4
    // folder (dequantized on the fly) shows no error at all.
    let same = try parseJSONObject(try Tools.run("ckpt-diff", [scratch.file("nf4"), scratch.file("back"), "--json"]).stdout)
    let rows = try #require(same["tensors"] as? [[String: Any]])
    #expect(rows.allSatisfy { (($0["metrics"] as? [String: Any])?["max_abs_error"] as? Double) == 0 })
}

@Test("Already-quantized input is refused, naming the scheme found")
func refuseQuantizedInput() throws {
    let scratch = ScratchDirectory()
    #expect(try Tools.run("ckpt-quantize", [tinyLlama, scratch.file("nf4"), "--scheme", "nf4", "--quiet"]).status == 0)
    let again = try Tools.run("ckpt-quantize", [scratch.file("nf4"), scratch.file("twice"), "--scheme", "int8"])
    #expect(again.status == 1)
    #expect(again.stderr == "error: \(scratch.file("nf4")): already quantized (found bitsandbytes nf4); dequantize it first with ckpt-dequantize\n")
    #expect(!FileManager.default.fileExists(atPath: scratch.file("twice")))
}

@Test("Invalid block sizes are usage errors", arguments: [["nf4", "48"], ["nf4", "8192"], ["fp4", "16"], ["int8", "0"]])
func invalidBlockSize(args: [String]) throws {
    let result = try Tools.run("ckpt-quantize", [tinyLlama, "/tmp/never", "--scheme", args[0], "--block-size", args[1]])
    #expect(result.status == 64)
    #expect(result.stderr.contains("--block-size \(args[1])"))
}

@Test("A regex matching nothing warns; one matching everything quantizes embeddings and says so")
func regexSelection() throws {
    let scratch = ScratchDirectory()
    let none = try Tools.run("ckpt-quantize", [tinyLlama, scratch.file("none"), "--scheme", "int8", "--include", "^nothing$"])
    #expect(none.status == 0)
    #expect(none.stderr.contains("note: --include ^nothing$ matches no 2-D float tensor"))
    let all = try Tools.run("ckpt-quantize", [tinyLlama, scratch.file("all"), "--scheme", "int8", "--include", ".*", "--json"])
    #expect(all.status == 0)
    #expect(all.stderr.isEmpty)  // --json keeps notes out of stderr; they are in the document
    let doc = try parseJSONObject(all.stdout)
    #expect((doc["tensors"] as? [Any])?.count == 30)
    #expect((doc["notes"] as? [String])?.contains { $0.contains("model.embed_tokens.weight") && $0.contains("lm_head") } == true)
    let excluded = try Tools.run("ckpt-quantize", [tinyLlama, scratch.file("ex"), "--scheme", "nf4", "--exclude", "mlp", "--json"])
    #expect((try parseJSONObject(excluded.stdout)["tensors"] as? [Any])?.count == 16)
}

/// A one-tensor checkpoint with a NaN at flat index 5.
private func writeNaNCheckpoint(_ path: String) {
    let header = #"{"__metadata__":{"format":"pt"},"layers.0.proj.weight":{"dtype":"F32","shape":[2,4],"data_offsets":[0,32]}}"#
    var json = Array(header.utf8)
    while json.count % 8 != 0 { json.append(0x20) }
    var bytes: [UInt8] = []
    withUnsafeBytes(of: UInt64(json.count).littleEndian) { bytes.append(contentsOf: $0) }
    bytes += json
    for (i, v) in [Float](repeating: 0.5, count: 8).enumerated() {
        withUnsafeBytes(of: (i == 5 ? Float.nan : v).bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
    }
    FileManager.default.createFile(atPath: path, contents: Data(bytes))
}

@Test("NaN weights are refused naming tensor and index, unless --allow-nonfinite")
func nonFiniteWeights() throws {
    let scratch = ScratchDirectory()
    writeNaNCheckpoint(scratch.file("nan.safetensors"))
    let refused = try Tools.run("ckpt-quantize", [scratch.file("nan.safetensors"), scratch.file("out"), "--scheme", "nf4"])
    #expect(refused.status == 1)
    #expect(refused.stderr == "error: \(scratch.file("nan.safetensors")): tensor 'layers.0.proj.weight': nan at flat index 5 "
        + "(expected finite weights; pass --allow-nonfinite to quantize anyway)\n")
    #expect(scratch.contents == ["nan.safetensors"])
    let allowed = try Tools.run("ckpt-quantize", [scratch.file("nan.safetensors"), scratch.file("out"), "--scheme", "nf4",
                                                  "--allow-nonfinite", "--quiet"])
    #expect(allowed.status == 0)
}

@Test("A full disk while writing the quantized model leaves nothing behind",
      .disabled(if: Tools.sanitizer != nil, "resource limits (ulimit) cannot hold a sanitized program"))
func quantizeFullDisk() throws {
    let scratch = ScratchDirectory()
    let result = try Tools.start("ckpt-quantize", [tinyLlama, scratch.file("out"), "--scheme", "int8"], shellPrefix: "ulimit -f 200").wait()
    #expect(result.status == 1)
    #expect(result.stderr.contains("\(scratch.file("out"))/model.safetensors: cannot write (File too large)"))
    #expect(scratch.contents.isEmpty)
}

@Test("SIGINT while quantizing stops with exit 130 and no partial output")
func quantizeInterrupted() throws {
    let scratch = ScratchDirectory()
    try writeSparseBF16Matrix(scratch.file("big.safetensors"), rows: 8192, columns: 8192)
    let running = try Tools.start("ckpt-quantize", [scratch.file("big.safetensors"), scratch.file("out"), "--scheme", "nf4",
                                                    "--optimize-scales", "--threads", "1"])
    usleep(300_000)  // well inside the scale search over 64M elements
    running.interrupt()
    let result = running.wait()
    #expect(result.status == 130)
    #expect(result.stderr.contains("interrupted; nothing was written"))
    #expect(scratch.contents == ["big.safetensors"])
}

/// A model-like file with one BF16 linear weight whose data is a sparse hole.
func writeSparseBF16Matrix(_ path: String, rows: Int, columns: Int) throws {
    try writeSparseBF16(path, name: "model.layers.0.mlp.up_proj.weight", shape: [rows, columns])
}

@Test("ckpt-quantize --method gptq refuses a calibration text shorter than one chunk, saying how many tokens it has and needs, and writes nothing")
func gptqShortCalibrationRefused() throws {
    let scratch = ScratchDirectory()
    let text = scratch.write("short.txt", Array("To be, or not to be.".utf8))
    let r = try Tools.run("ckpt-quantize", [tinyLlama, scratch.file("out"), "--scheme", "int4", "--block-size", "32", "--method", "gptq",
                                            "--calibration-text", text, "--ctx", "64"])
    #expect(r.status == 1)
    #expect(r.stderr.hasPrefix("error: ") && r.stderr.contains("short.txt") && r.stderr.contains("need at least 64"), "\(r.stderr)")
    #expect(r.stderr.split(separator: "\n").count == 1)
    #expect(!FileManager.default.fileExists(atPath: scratch.file("out")))
}

@Test("ckpt-quantize's calibration flags are refused where they do not apply, naming the flag")
func calibrationFlagsValidated() throws {
    let scratch = ScratchDirectory()
    for (arguments, expected) in [(["--scheme", "int4", "--act-order"], "--act-order applies to --method gptq"),
                                  (["--scheme", "int4", "--method", "gptq"], "needs --calibration-text"),
                                  (["--scheme", "nf4", "--format", "gptq"], "--format applies to int4 and int8"),
                                  (["--scheme", "int8", "--format", "awq"], "--format awq holds int4 only"),
                                  (["--scheme", "int4", "--method", "smooth"], "--method smooth: unknown"),
                                  (["--scheme", "int4", "--mse", "2.4"], "--mse applies to --method gptq"),
                                  (["--scheme", "int4", "--method", "awq", "--calibration-text", "c.txt", "--gptaq"], "--gptaq applies to --method gptq"),
                                  (["--scheme", "int4", "--method", "gptq", "--calibration-text", "c.txt", "--mse=-1"], "--mse -1.0: expected a norm")] {
        let r = try Tools.run("ckpt-quantize", [tinyLlama, scratch.file("out")] + arguments)
        #expect(r.status == 64 && r.stderr.contains(expected), "\(arguments): \(r.stderr)")
    }
}

@Test("ckpt-quantize --method gptq searches int4 group ranges by default (mse 2.4 in the GPTQ config, said in a note), NF4 only when asked, and --mse 0 turns it off")
func gptqRangeSearchDefaults() throws {
    let scratch = ScratchDirectory()
    let calibration = ["--method", "gptq", "--calibration-text", Tools.fixture("text/eval.txt"), "--calibration-tokens", "256", "--ctx", "128", "--json"]
    for (name, arguments, norm) in [("on", ["--scheme", "int4", "--block-size", "32", "--format", "gptq"], 2.4),
                                    ("off", ["--scheme", "int4", "--block-size", "32", "--format", "gptq", "--mse", "0"], 0),
                                    ("nf4", ["--scheme", "nf4"], 0), ("nf4-on", ["--scheme", "nf4", "--mse", "2.4"], 2.4)] {
        let r = try Tools.run("ckpt-quantize", [tinyLlama, scratch.file(name)] + arguments + calibration)
        #expect(r.status == 0, "\(name): \(r.stderr)")
        let notes = try #require(try parseJSONObject(r.stdout)["notes"] as? [String])
        #expect(notes.contains("GPTQ searched each group's range (GPTQModel's mse, norm 2.4)") == (norm > 0), "\(name): \(notes)")
        guard name == "on" || name == "off" else { continue }
        let config = try #require(try parseJSONObject(String(decoding: try Data(contentsOf: URL(fileURLWithPath: scratch.file(name + "/config.json"))), as: UTF8.self))["quantization_config"] as? [String: Any])
        #expect((config["meta"] as? [String: Any])?["mse"] as? Double == norm, "\(name)")
    }
    // The search changes the scales it is asked to: the two int4 files differ.
    #expect(FileManager.default.contents(atPath: scratch.file("on/model.safetensors")) != FileManager.default.contents(atPath: scratch.file("off/model.safetensors")))
}

@Test("ckpt-quantize calibrates on chunks spread over the whole text unless --calibration-sampling start, and refuses another name as a usage error")
func calibrationSamplingChoice() throws {
    let scratch = ScratchDirectory()
    // eval.txt is about 10,000 tokens, far more than the 256 asked for: the two samplings see different text.
    let calibration = ["--scheme", "int4", "--block-size", "32", "--method", "gptq", "--calibration-text", Tools.fixture("text/eval.txt"),
                       "--calibration-tokens", "256", "--ctx", "128", "--quiet"]
    for (name, extra) in [("spread", [String]()), ("spread-named", ["--calibration-sampling", "spread"]), ("start", ["--calibration-sampling", "start"])] {
        let r = try Tools.run("ckpt-quantize", [tinyLlama, scratch.file(name)] + calibration + extra)
        #expect(r.status == 0, "\(name): \(r.stderr)")
    }
    let weights = { (name: String) in FileManager.default.contents(atPath: scratch.file(name + "/model.safetensors")) }
    #expect(weights("spread") != nil && weights("spread") == weights("spread-named"), "spread is the default")
    #expect(weights("spread") != weights("start"), "the text's opening calibrates differently from chunks across all of it")
    let wrong = try Tools.run("ckpt-quantize", [tinyLlama, scratch.file("wrong")] + calibration + ["--calibration-sampling", "middle"])
    #expect(wrong.status == 64 && wrong.stderr.contains("spread") && wrong.stderr.contains("start"), "\(wrong.stderr)")
    #expect(!FileManager.default.fileExists(atPath: scratch.file("wrong")))
}

@Test("ckpt-quantize --scheme int4 --format gptq writes GPTQ parts that ckpt-inspect reads back as a GPTQ checkpoint")
func quantizeGPTQFormat() throws {
    let scratch = ScratchDirectory()
    let r = try Tools.run("ckpt-quantize", [tinyLlama, scratch.file("gptq"), "--scheme", "int4", "--block-size", "32", "--format", "gptq", "--quiet"])
    #expect(r.status == 0, "\(r.stderr)")
    let inspect = try parseJSONObject(try Tools.run("ckpt-inspect", [scratch.file("gptq"), "--json"]).stdout)
    #expect(inspect["quantization"] as? String == "gptq v1 4-bit")
    let config = try #require((inspect["config"] as? [String: Any])?["quantization_config"] as? [String: Any])
    #expect(config["checkpoint_format"] as? String == "gptq" && config["bits"] as? Int == 4 && config["group_size"] as? Int == 32)
}

/// The bytes `ckpt-quantize` wrote for the sharded fixture before its writer streamed (main at
/// 00c4a7b, one tensor after another): the streamed, overlapped writer must write the same files.
/// Recorded with that commit's binary: `ckpt-quantize fixtures/models/tiny-llama-sharded OUT ARGS`, then `sha256sum`.
private let shardedQuantizeHashes: [([String], [String: String])] = [
    (["--scheme", "nf4"], ["model-00001-of-00003.safetensors": "3a3eae2837250b2143c249c3262e9d8582f06cfa0e6b8846460d5c016faccbee", "model-00002-of-00003.safetensors": "6ce24090c5bde9ff1b99cb2b4caaec0d9ec81ec8090476dc6754b7ef6c1570fe", "model-00003-of-00003.safetensors": "055783ce1a44bd814de79af7e7e681d64adece024a0295dd324d73ef6038c53e", "model.safetensors.index.json": "b6dd0d0b6f930791e5f2a7ea7bf3e463ccc7f807d965826efeabd06b6bcf5205", "config.json": "aed9e3bb9cbbc5a861c1358f3ed6a95907831ed9d0f68e91caf59e26b98c3309"]),
    (["--scheme", "fp4", "--double-quant", "--block-size", "128"], ["model-00001-of-00003.safetensors": "ae4572776c5bd5b1ddb9fea8d0eedc3a2784fbc907f762e68b75119535c77d7e", "model-00002-of-00003.safetensors": "48cdf4f60aae0d101da2d8cb1b7ed9cab490a0dcfa823dda3c3c03e699714d8d", "model-00003-of-00003.safetensors": "2ac2f0c5bce03f90312c90c4568bc6a74ccf364e971149f32a2887ffe20dfd52", "model.safetensors.index.json": "70f2e95cba52fd691052fcfb3d6165fa04880960c1b3d8b9becdc2497b83e246", "config.json": "a5294e1874639f55cc6f59e18375bc7d3c69d087d297f17ddb03b69638fb0378"]),
    (["--scheme", "int4"], ["model-00001-of-00003.safetensors": "9f0b6bacde31b21e6692f42aaa910daa9d4b075e1ccc24239c59db24ed165c4a", "model-00002-of-00003.safetensors": "f02f4ffc6a62c79cbea7bff3b0e4af85ad1d602b10b7b2d930ad47956bdbf9c5", "model-00003-of-00003.safetensors": "b6f9a0c5debea8813f94d111bc987d8d4f2886ca186ecd2df607472a416765c4", "model.safetensors.index.json": "e8cd893597ce56007d2e9938b9db6dd352207e4896605f7e7bd473a08ab8dad6", "config.json": "f7a3c02952cdd3128f12647e60f11fc8788d55965568748b94d04dfa90093018"]),
    (["--scheme", "int4", "--asymmetric", "--block-size", "32"], ["model-00001-of-00003.safetensors": "9736a52838717a154fc88e967adf26fd4ded55f21897aca68d010bb6a882ea8c", "model-00002-of-00003.safetensors": "ec450320097746f6e8be069cf155f049e09623762930002ecdc73e83b6560be3", "model-00003-of-00003.safetensors": "f989a0595fe11ccbd6abe691668596b81a1ed810461b53743a509e22d06721d4", "model.safetensors.index.json": "6134c8f2701a52366286f1811b1544e1190f2406125550e6f27bbf39ad6ddd75", "config.json": "cafa1b17808aab2c444ed8508a5a3a4d8c46daf4e6edb25344cb28beca477e1a"]),
    (["--scheme", "int8", "--scale-dtype", "bf16", "--optimize-scales"], ["model-00001-of-00003.safetensors": "7e6df9f57ee3c56309418b57fc84d4b51d2403f51afadfb658fc843eb223df76", "model-00002-of-00003.safetensors": "0dc09f80e80b2b7affeb95d7887ed555c0c97c35d8ee5c12271747e87b2cc547", "model-00003-of-00003.safetensors": "191a7e14fafbbbb406e4951f8da35f8c6a153805c77fa1bc09d8981d6c333db4", "model.safetensors.index.json": "a5a5330ac9e5fe9964615dc1e5a66c0cf6d68caf9d4834e6ea9dfc176a3fb42b", "config.json": "0b43cbc2583c961b2d2d2441e66cd13e2f5a83d72a4a3b12c4fb9ece5b73f16b"]),
    (["--scheme", "int8", "--format", "pack-quantized", "--block-size=-1"], ["model-00001-of-00003.safetensors": "bc603a451f9a04eaa00a0face87e4134596489ae09b921b3cce3b5e4132807f8", "model-00002-of-00003.safetensors": "430a3e22930e4f1cbbbd76b1d6f7201088f798e74a3b600d8b0e930802908817", "model-00003-of-00003.safetensors": "387b2545a6c873886771b7c45edf72a858b80975d9fb04e70aea2a629ac50ca6", "model.safetensors.index.json": "a0700003c59eb55a64fdfa5c454420bb21838794942a858468c3754c6a81a592", "config.json": "7939ff7bae8159172666aaae05af9419ba4fcd92d1d7930cf9ddabe017f81036"]),
]

@Test("ckpt-quantize writes the sharded fixture byte for byte as before streaming, for every scheme, with one thread or two",
      arguments: shardedQuantizeHashes.indices)
func quantizeMatchesBufferedWriter(index: Int) throws {
    let (arguments, hashes) = shardedQuantizeHashes[index]
    let scratch = ScratchDirectory()
    for threads in ["1", "2"] {
        let result = try Tools.run("ckpt-quantize", [Tools.fixture("models/tiny-llama-sharded"), scratch.file(threads), "--threads", threads,
                                                     "--quiet"] + arguments)
        #expect(result.status == 0, "\(result.stderr)")
        for (name, expected) in hashes {
            let bytes = try #require(FileManager.default.contents(atPath: scratch.file(threads + "/" + name)), "\(name)")
            #expect(sha256Hex([UInt8](bytes)) == expected, "\(arguments) --threads \(threads): \(name)")
        }
    }
}

@Test("ckpt-quantize --method gptq runs one float pass per layer unless --true-sequential is given, and its GPTQ config says which; --gptaq says so in a note")
func gptqTrueSequentialFlag() throws {
    let scratch = ScratchDirectory()
    let calibration = ["--scheme", "int4", "--block-size", "32", "--format", "gptq", "--method", "gptq", "--calibration-text", Tools.fixture("text/eval.txt"),
                       "--calibration-tokens", "256", "--ctx", "128", "--json"]
    for (name, flags, sequential) in [("plain", [String](), false), ("sequential", ["--true-sequential"], true), ("gptaq", ["--true-sequential", "--gptaq"], true)] {
        let r = try Tools.run("ckpt-quantize", [tinyLlama, scratch.file(name)] + calibration + flags)
        #expect(r.status == 0, "\(name): \(r.stderr)")
        let notes = try #require(try parseJSONObject(r.stdout)["notes"] as? [String])
        #expect(notes.contains { $0.contains("true sequential") } == sequential, "\(name): \(notes)")
        #expect(notes.contains { $0.hasPrefix("GPTAQ") } == (name == "gptaq"), "\(name): \(notes)")
        let config = try #require(try parseJSONObject(String(decoding: try Data(contentsOf: URL(fileURLWithPath: scratch.file(name + "/config.json"))), as: UTF8.self))["quantization_config"] as? [String: Any])
        #expect(config["true_sequential"] as? Bool == sequential, "\(name)")
    }
}

@Test("ckpt-quantize refits GPTQ's scales by default for nf4, and for int4 when its codes are refined (the default) but not with --refine-rounds 0; each flag turns it the other way, and round to nearest refuses it")
func gptqRefitDefaultFollowsTheCodebook() throws {
    let scratch = ScratchDirectory()
    let calibration = ["--method", "gptq", "--calibration-text", Tools.fixture("text/eval.txt"), "--calibration-tokens", "256", "--ctx", "128", "--json"]
    let int4 = ["--scheme", "int4", "--block-size", "32"], nf4 = ["--scheme", "nf4"]
    for (name, flags, refits) in [("nf4", nf4, true), ("nf4-off", nf4 + ["--no-refit-scales"], false),
                                  ("int4", int4, true), ("int4-off", int4 + ["--no-refit-scales"], false),
                                  ("int4-unrefined", int4 + ["--refine-rounds", "0"], false),
                                  ("int4-unrefined-on", int4 + ["--refine-rounds", "0", "--refit-scales"], true)] {
        let r = try Tools.run("ckpt-quantize", [tinyLlama, scratch.file(name)] + calibration + flags)
        #expect(r.status == 0, "\(name): \(r.stderr)")
        let notes = try #require(try parseJSONObject(r.stdout)["notes"] as? [String])
        #expect(notes.contains { $0.contains("refitted each row's scales") } == refits, "\(name): \(notes)")
    }
    let refused = try Tools.run("ckpt-quantize", [tinyLlama, scratch.file("rtn"), "--scheme", "nf4", "--refit-scales"])
    #expect(refused.status != 0 && refused.stderr.contains("--refit-scales applies to --method gptq and awq+gptq"), "\(refused.stderr)")
    #expect(!FileManager.default.fileExists(atPath: scratch.file("rtn")))
}

@Test("ckpt-quantize --refine-rounds moves GPTQ's codes and says so (2 rounds for int4 unless told); a count outside 0…100, round to nearest and --gptaq refuse it as usage errors")
func gptqRefinePasses() throws {
    let scratch = ScratchDirectory()
    let calibration = ["--scheme", "int4", "--block-size", "32", "--method", "gptq", "--calibration-text", Tools.fixture("text/eval.txt"),
                       "--calibration-tokens", "256", "--ctx", "128", "--json"]
    for (name, extra) in [("plain", ["--refine-rounds", "0"]), ("refined", ["--refine-rounds", "3"]), ("default", [])] {
        let r = try Tools.run("ckpt-quantize", [tinyLlama, scratch.file(name)] + calibration + extra)
        #expect(r.status == 0, "\(name): \(r.stderr)")
        let notes = try #require(try parseJSONObject(r.stdout)["notes"] as? [String])
        #expect(notes.contains { $0.contains("coordinate descent") } == (name != "plain"), "\(name): \(notes)")
        #expect(notes.contains { $0.contains("up to 2 rounds") } == (name == "default"), "\(name): \(notes)")
    }
    let weights = { (name: String) in FileManager.default.contents(atPath: scratch.file(name + "/model.safetensors")) }
    #expect(weights("plain") != nil && weights("plain") != weights("refined"), "the descent moved no code")
    for (name, flags, message) in [("negative", calibration + ["--refine-rounds=-1"], "expected 0 to 100"),
                                   ("many", calibration + ["--refine-rounds", "101"], "expected 0 to 100"),
                                   ("rtn", ["--scheme", "int4", "--block-size", "32", "--refine-rounds", "2"], "--refine-rounds applies to --method gptq"),
                                   ("gptaq", calibration + ["--gptaq", "--refine-rounds", "2"], "drop one")] {
        let r = try Tools.run("ckpt-quantize", [tinyLlama, scratch.file(name)] + flags)
        #expect(r.status == 64 && r.stderr.contains(message), "\(name): \(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: scratch.file(name)))
    }
}

@Test("ckpt-quantize --format gptq --act-order refines codes across a permuted g_idx: the file verifies, reads back as GPTQ and scores the text as closely as unrefined GPTQ")
func gptqRefinementWithPermutedGroups() throws {
    let scratch = ScratchDirectory()
    let calibration = ["--scheme", "int4", "--block-size", "32", "--format", "gptq", "--method", "gptq", "--act-order",
                       "--calibration-text", Tools.fixture("text/eval.txt"), "--calibration-tokens", "1024", "--ctx", "128", "--quiet"]
    var divergence: [String: Double] = [:]
    for (name, rounds) in [("plain", "0"), ("refined", "2")] {
        let r = try Tools.run("ckpt-quantize", [tinyLlama, scratch.file(name)] + calibration + ["--refine-rounds", rounds])
        #expect(r.status == 0, "\(name): \(r.stderr)")
        let verify = try Tools.run("ckpt-inspect", [scratch.file(name), "--verify", "--json"])
        #expect(verify.status == 0, "\(name): \(verify.stderr)")
        #expect(try parseJSONObject(verify.stdout)["quantization"] as? String == "gptq v1 4-bit", "\(name)")
        let compare = try Tools.run("ckpt-compare", [tinyLlama, scratch.file(name), "--text", Tools.fixture("text/eval.txt"), "--ctx", "128",
                                                     "--chunks", "8", "--json", "--quiet"])
        #expect(compare.status == 0, "\(name): \(compare.stderr)")
        divergence[name] = try #require((try parseJSONObject(compare.stdout)["kld"] as? [String: Any])?["mean"] as? Double)
    }
    let weights = { (name: String) in FileManager.default.contents(atPath: scratch.file(name + "/model.safetensors")) }
    #expect(weights("plain") != weights("refined"), "the rounds moved no code")
    // Codes or scales stored against the wrong group would score far worse than GPTQ's own (0.018 here).
    let plain = try #require(divergence["plain"]), refined = try #require(divergence["refined"])
    #expect(refined < plain * 1.25, "KLD \(refined) refined against \(plain) plain")
}

@Test("ckpt-quantize --method gptq measures each product's first-token weight unless told, says so in a note; a number fixes it; the AWQ methods count it once and refuse auto")
func gptqFirstTokenWeightDefault() throws {
    let scratch = ScratchDirectory()
    let calibration = ["--scheme", "int4", "--block-size", "32", "--calibration-text", Tools.fixture("text/eval.txt"), "--calibration-tokens", "256",
                       "--ctx", "128", "--json"]
    let measured = "first-token weights measured per product from the loss's gradients on 2 chunks"
    for (name, flags, note, measures) in [("gptq", ["--method", "gptq"], nil, true),
                                          ("gptq-auto", ["--method", "gptq", "--first-token-weight", "AUTO"], nil, true),
                                          ("gptq-8", ["--method", "gptq", "--first-token-weight", "8"], "8.0", false),
                                          ("gptq-1", ["--method", "gptq", "--first-token-weight", "1"], nil, false),
                                          ("awq", ["--method", "awq"], nil, false), ("awq+gptq", ["--method", "awq+gptq"], nil, false)]
        as [(String, [String], String?, Bool)] {
        let r = try Tools.run("ckpt-quantize", [tinyLlama, scratch.file(name)] + calibration + flags)
        #expect(r.status == 0, "\(name): \(r.stderr)")
        let notes = try #require(try parseJSONObject(r.stdout)["notes"] as? [String])
        let weighted = notes.filter { $0.hasPrefix("each chunk's first token counted") }
        #expect(weighted == (note.map { ["each chunk's first token counted \($0) times in the Hessians"] } ?? []), "\(name): \(notes)")
        #expect(notes.contains { $0.hasPrefix(measured) } == measures, "\(name): \(notes)")
    }
    // The weights change the Hessians, so the codes: the measured default's file differs from weight 8's, and `auto` is the default.
    let file = { (name: String) in FileManager.default.contents(atPath: scratch.file(name + "/model.safetensors")) }
    #expect(file("gptq") != file("gptq-8"))
    #expect(file("gptq") == file("gptq-auto"))
    for bad in ["-1", "often"] {
        let r = try Tools.run("ckpt-quantize", [tinyLlama, scratch.file("bad")] + calibration + ["--method", "gptq", "--first-token-weight", bad])
        #expect(r.status != 0 && r.stderr.contains("first-token-weight"), "\(bad): \(r.stderr)")
    }
    // AWQ's scale search reads one Hessian per scaling group: measured per-product weights are refused there.
    for method in ["awq", "awq+gptq"] {
        let r = try Tools.run("ckpt-quantize", [tinyLlama, scratch.file("bad")] + calibration + ["--method", method, "--first-token-weight", "auto"])
        #expect(r.status == 64 && r.stderr.contains("--first-token-weight auto applies to --method gptq"), "\(method): \(r.stderr)")
    }
}

@Test("ckpt-quantize --method gptq on a model whose blocks the backward pass does not cover keeps the fixed weight 8 and says why")
func gptqFirstTokenWeightFallsBack() throws {
    let scratch = ScratchDirectory()
    let r = try Tools.run("ckpt-quantize", [Tools.fixture("architectures/qwen3"), scratch.file("q"), "--scheme", "int4", "--block-size", "16",
                                            "--method", "gptq", "--calibration-text", Tools.fixture("text/eval.txt"),
                                            "--calibration-tokens", "128", "--ctx", "64", "--json"])
    #expect(r.status == 0, "\(r.stderr)")
    let notes = try #require(try parseJSONObject(r.stdout)["notes"] as? [String])
    #expect(notes.contains { $0.hasPrefix("first-token weights not measured: the backward pass does not cover its query and key norms") }, "\(notes)")
    #expect(notes.contains("each chunk's first token counted 8.0 times in the Hessians"), "\(notes)")
    // Chunks of two tokens hold no position between the first and the last (which has no next token): nothing to measure.
    for ctx in ["2"] {
        let short = try Tools.run("ckpt-quantize", [tinyLlama, scratch.file("short-" + ctx), "--scheme", "int4", "--block-size", "32", "--method", "gptq",
                                                    "--calibration-text", Tools.fixture("text/eval.txt"), "--calibration-tokens", "64", "--ctx", ctx, "--json"])
        #expect(short.status == 0, "ctx \(ctx): \(short.stderr)")
        let shortNotes = try #require(try parseJSONObject(short.stdout)["notes"] as? [String])
        #expect(shortNotes.contains { $0.hasPrefix("first-token weights not measured: no product's gradients reached") }, "ctx \(ctx): \(shortNotes)")
        #expect(shortNotes.contains("each chunk's first token counted 8.0 times in the Hessians"), "ctx \(ctx): \(shortNotes)")
    }
}
