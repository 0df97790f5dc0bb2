import CheckpointKit
import Foundation
import Testing
import TestSupport

/// Corrupt quantized folders: every companion part's dtype and length is checked when the layout
/// is read, so no kernel ever indexes past a short part (fixtures/models/tiny-llama-bnb-nf4 is
/// transformers + bitsandbytes' own double-quant save; tiny-llama-ct-int8 compressed-tensors').
private let q = "model.layers.0.self_attn.q_proj.weight"

/// A copy of `fixture` whose tensor `name` is replaced by `replacement` (dtype, shape, bytes).
private func corrupted(_ scratch: ScratchDirectory, fixture: String, name: String, replacement: (DType, [Int], [UInt8])?,
                       config: ((inout [String: Any]) -> Void)? = nil) throws -> String {
    let folder = scratch.file("model")
    try FileManager.default.copyItem(atPath: Tools.fixture(fixture), toPath: folder)
    let source = try SafetensorsFile(path: Tools.fixture(fixture + "/model.safetensors"))
    var specs = source.tensors.map { TensorSpec(name: $0.name, dtype: $0.dtype, shape: $0.shape) }
    if let (dtype, shape, _) = replacement, let i = specs.firstIndex(where: { $0.name == name }) {
        specs[i] = TensorSpec(name: name, dtype: dtype, shape: shape)
    }
    try FileManager.default.removeItem(atPath: folder + "/model.safetensors")
    try SafetensorsLayout(specs, metadata: source.metadata).write(to: folder + "/model.safetensors") { info, out in
        if info.name == name, let (_, _, bytes) = replacement { try out.write(bytes) } else { try out.write(source.view(named: info.name)!.byteArray) }
    }
    if let config {
        let path = folder + "/config.json"
        var json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        config(&json)
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: path))
    }
    return folder
}

@Test("Short, empty or mistyped bitsandbytes parts and a zero or mistyped int8 group are refused by name in every reader, exit 1",
      arguments: [
        ("tiny-llama-bnb-nf4", "\(q).nested_absmax", DType.f32, [2]),
        ("tiny-llama-bnb-nf4", "\(q).nested_absmax", DType.f32, [0]),
        ("tiny-llama-bnb-nf4", "\(q).nested_quant_map", DType.f32, [4]),
        ("tiny-llama-bnb-nf4", "\(q).absmax", DType.f16, [64]),
        ("tiny-llama-bnb-nf4", "\(q).quant_map", DType.f32, [3]),
        ("tiny-llama-ct-int8", "model.layers.0.self_attn.q_proj.weight_scale", DType.u8, [64, 1]),
      ])
func corruptQuantizedParts(fixture: String, name: String, dtype: DType, shape: [Int]) throws {
    let scratch = ScratchDirectory()
    let bytes = [UInt8](repeating: 0x3C, count: shape.reduce(1, *) * dtype.size)
    let folder = try corrupted(scratch, fixture: "models/" + fixture, name: name, replacement: (dtype, shape, bytes))
    for (tool, arguments) in [("ckpt-dequantize", [folder, scratch.file("out")]), ("ckpt-diff", [folder, Tools.fixture("models/tiny-llama")]),
                              ("ckpt-perplexity", [folder, "--text", Tools.fixture("text/eval.txt"), "--ctx", "16", "--chunks", "1"])] {
        let run = try Tools.run(tool, arguments)
        #expect(run.status == 1, "\(tool) \(name): \(run.stderr)")
        #expect(run.stderr.contains(name) && run.stderr.contains("expected"), "\(tool): \(run.stderr)")
    }
    #expect(scratch.contents == ["model"])
}

@Test("An int8 folder whose quantization_config names group_size 0 is refused, not divided by")
func zeroGroupSize() throws {
    let scratch = ScratchDirectory()
    let folder = try corrupted(scratch, fixture: "models/tiny-llama-ct-int8", name: "", replacement: nil) { json in
        var q = json["quantization_config"] as! [String: Any]
        var groups = q["config_groups"] as! [String: Any]
        var group = groups["group_0"] as! [String: Any]
        var weights = group["weights"] as! [String: Any]
        weights["group_size"] = 0
        group["weights"] = weights
        groups["group_0"] = group
        q["config_groups"] = groups
        json["quantization_config"] = q
    }
    let run = try Tools.run("ckpt-dequantize", [folder, scratch.file("out")])
    #expect(run.status == 1, "\(run.stderr)")
    #expect(run.stderr.contains("a positive group_size"), "\(run.stderr)")
}

@Test("config.json sizes that are zero, negative or absurd are refused naming the key, in evaluation and GGUF export",
      arguments: [("num_key_value_heads", 0.0), ("num_key_value_heads", -2), ("hidden_size", 1e12), ("max_position_embeddings", 1e12),
                  ("head_dim", 0)])
func absurdConfigSizes(key: String, value: Double) throws {
    let scratch = ScratchDirectory()
    let folder = try corrupted(scratch, fixture: "models/tiny-llama", name: "", replacement: nil) { $0[key] = value == value.rounded() ? Int(value) : value }
    for (tool, arguments) in [("ckpt-perplexity", [folder, "--text", Tools.fixture("text/eval.txt"), "--ctx", "16", "--chunks", "1"]),
                              ("ckpt-convert", [folder, scratch.file("out.gguf"), "--to", "gguf"])] {
        let run = try Tools.run(tool, arguments)
        #expect(run.status == 1, "\(tool) \(key)=\(value): \(run.stderr)")
        #expect(run.stderr.contains(key), "\(tool): \(run.stderr)")
    }
    #expect(scratch.contents == ["model"])
}

@Test("ckpt-inspect lists a file's 100,000 metadata keys (merging shard metadata is linear in the keys)")
func manyMetadataKeys() throws {
    let scratch = ScratchDirectory()
    var members = (0..<100_000).map { "\"k\($0)\":\"v\"" }.joined(separator: ",")
    members = "{\"__metadata__\":{\(members)},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}"
    var header = Array(members.utf8)
    while header.count % 8 != 0 { header.append(0x20) }
    var bytes: [UInt8] = []
    withUnsafeBytes(of: UInt64(header.count).littleEndian) { bytes.append(contentsOf: $0) }
    let path = scratch.write("meta.safetensors", bytes + header + [0, 0, 0, 0])
    let run = try Tools.run("ckpt-inspect", [path, "--json"])
    #expect(run.status == 0, "\(run.stderr)")
    #expect((try parseJSONObject(run.stdout)["metadata"] as? [String: Any])?.count == 100_000)
}

@Test("--threads and --ctx beyond any real use are usage errors (exit 64), not allocations",
      arguments: [("ckpt-merge-lora", ["--threads", "9223372036854775807"]), ("ckpt-perplexity", ["--ctx", "4611686018427387904"])])
func absurdArguments(tool: String, extra: [String]) throws {
    let arguments = tool == "ckpt-merge-lora"
        ? [Tools.fixture("models/tiny-llama"), Tools.fixture("lora/adapters/llama-lora-all-linear"), "/nonexistent/out"] + extra
        : [Tools.fixture("models/tiny-llama"), "--text", Tools.fixture("text/eval.txt")] + extra
    let run = try Tools.run(tool, arguments)
    #expect(run.status == 64, "\(run.stderr)")
    #expect(run.stderr.contains(extra[0]), "\(run.stderr)")
}

@Test("A --base file whose numbers lie (ctx, chunks, top_k near 2^62, tokens outside the vocabulary) is refused, not trusted")
func lyingBaseFiles() throws {
    let scratch = ScratchDirectory()
    let good = scratch.file("base.safetensors")
    let save = try Tools.run("ckpt-compare", [Tools.fixture("models/tiny-llama"), "--text", Tools.fixture("text/eval.txt"), "--ctx", "16",
                                              "--chunks", "2", "--save-base", good])
    #expect(save.status == 0, "\(save.stderr)")
    let source = try SafetensorsFile(path: good)
    for (key, value) in [("ctx", "4611686018427387904"), ("chunks", "4611686018427387904"), ("top_k", "4611686018427387904"),
                         ("vocab_size", "3"), ("bos", "99999")] {
        let path = scratch.file("lying-\(key).safetensors")
        let metadata = source.metadata.map { $0.0 == key ? ($0.0, value) : $0 }
        try SafetensorsLayout(source.tensors.map { TensorSpec(name: $0.name, dtype: $0.dtype, shape: $0.shape) }, metadata: metadata)
            .write(to: path) { info, out in try out.write(source.view(named: info.name)!.byteArray) }
        let run = try Tools.run("ckpt-compare", [Tools.fixture("models/tiny-llama"), "--base", path])
        #expect(run.status == 1, "\(key): \(run.stderr)")
        #expect(run.stderr.contains("unusable saved base log-probabilities"), "\(key): \(run.stderr)")
    }
}

@Test("Writing GGUF from a config whose vocab_size disagrees with the embedding is refused before any token list is sized")
func ggufVocabularyMustMatchEmbedding() throws {
    let scratch = ScratchDirectory()
    let folder = try corrupted(scratch, fixture: "models/tiny-llama", name: "", replacement: nil) { $0["vocab_size"] = 16_000_000 }
    let run = try Tools.run("ckpt-convert", [folder, scratch.file("out.gguf"), "--to", "gguf"])
    #expect(run.status == 1, "\(run.stderr)")
    #expect(run.stderr.contains("vocab_size: 16000000 differs from the embedding's 512 rows"), "\(run.stderr)")
}
