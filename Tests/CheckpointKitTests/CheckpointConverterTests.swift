@testable import CheckpointKit
import Foundation
import TestSupport
import Testing

/// A small model folder: bf16 weights, an int64 buffer, config.json and a tokenizer file.
private func makeModelFolder(in scratch: ScratchDirectory, seed: UInt64 = 1) throws -> String {
    let folder = scratch.file("model")
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    var rng = SeededGenerator(seed: seed)
    let specs = [TensorSpec(name: "model.embed_tokens.weight", dtype: .bf16, shape: [64, 32]),
                 TensorSpec(name: "model.layers.0.mlp.up_proj.weight", dtype: .bf16, shape: [48, 32]),
                 TensorSpec(name: "model.norm.weight", dtype: .f32, shape: [32]),
                 TensorSpec(name: "position_ids", dtype: .i64, shape: [1, 16])]
    try SafetensorsLayout(specs).write(to: folder + "/model.safetensors") { info, out in
        try out.write((0..<info.byteCount).map { i in
            // bf16 bytes: keep exponents moderate so values are ordinary numbers.
            info.dtype == .bf16 && i % 2 == 1 ? UInt8(0x3C + rng.next() % 6) : UInt8(truncatingIfNeeded: rng.next())
        })
    }
    try Array(#"{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "torch_dtype": "bfloat16", "hidden_size": 32}"#.utf8)
        .withUnsafeBytes { FileManager.default.createFile(atPath: folder + "/config.json", contents: Data($0)) }
    FileManager.default.createFile(atPath: folder + "/tokenizer.json", contents: Data("{}".utf8))
    return folder
}

@Test("Converting to f32 and back to bf16 gives the original bytes, config and files carried along")
func bf16RoundTrip() throws {
    let scratch = ScratchDirectory()
    let input = try Checkpoint(path: try makeModelFolder(in: scratch))
    let f32Report = try CheckpointConverter.convert(input, to: scratch.file("f32"), options: .init(targetType: .f32))
    #expect(f32Report.copiedFiles == ["tokenizer.json"])
    let f32 = try Checkpoint(path: scratch.file("f32"))
    #expect(f32.entry(named: "model.embed_tokens.weight")?.info.dtype == .f32)
    #expect(f32.entry(named: "position_ids")?.info.dtype == .i64)  // integers keep their type
    #expect(f32.config?["torch_dtype"]?.stringValue == "float32")
    _ = try CheckpointConverter.convert(f32, to: scratch.file("back"), options: .init(targetType: .bf16))
    let back = try Checkpoint(path: scratch.file("back"))
    for entry in input.entries where entry.info.dtype == .bf16 {
        #expect(back.view(named: entry.info.name)!.byteArray == input.view(entry).byteArray)
    }
    #expect(readBytes(scratch.file("back/tokenizer.json")) == Array("{}".utf8))
}

@Test("Output bytes are identical with 1 and 2 threads")
func threadInvariance() throws {
    let scratch = ScratchDirectory()
    let input = try Checkpoint(path: try makeModelFolder(in: scratch))
    _ = try CheckpointConverter.convert(input, to: scratch.file("one"), options: .init(targetType: .f16, threads: .single))
    _ = try CheckpointConverter.convert(input, to: scratch.file("two"), options: .init(targetType: .f16, threads: ThreadBudget(2)))
    #expect(readBytes(scratch.file("one/model.safetensors")) == readBytes(scratch.file("two/model.safetensors")))
}

@Test("Resharding writes transformers' names and an index whose map and total size are right")
func resharding() throws {
    let scratch = ScratchDirectory()
    let input = try Checkpoint(path: try makeModelFolder(in: scratch))
    let report = try CheckpointConverter.convert(input, to: scratch.file("sharded"), options: .init(shardSize: 4096))
    // File order is I64 (128 B), F32 (128 B), BF16 4096 B, BF16 3072 B: the embedding would
    // overflow the first shard and sits alone, then the projection.
    #expect(report.files == ["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                             "model-00003-of-00003.safetensors", "model.safetensors.index.json"])
    let sharded = try Checkpoint(path: scratch.file("sharded"))
    #expect(sharded.files.indices.map { i in sharded.entries.filter { $0.fileIndex == i }.map(\.info.name) } == [["position_ids", "model.norm.weight"],
                                                             ["model.embed_tokens.weight"], ["model.layers.0.mlp.up_proj.weight"]])
    #expect(sharded.indexMetadata?["total_size"]?.intValue == input.tensorBytes)
    for entry in input.entries {
        #expect(sharded.view(named: entry.info.name)!.byteArray == input.view(entry).byteArray)
    }
    // And back into one file.
    _ = try CheckpointConverter.convert(sharded, to: scratch.file("single"), options: .init(shardSize: 1 << 30))
    #expect(FileSystem.list(scratch.file("single")) == ["config.json", "model.safetensors", "tokenizer.json"])
}

@Test("An existing output is refused without overwrite and left untouched")
func existingOutput() throws {
    let scratch = ScratchDirectory()
    let input = try Checkpoint(path: try makeModelFolder(in: scratch))
    try FileManager.default.createDirectory(atPath: scratch.file("out"), withIntermediateDirectories: false)
    FileManager.default.createFile(atPath: scratch.file("out/keep"), contents: Data("x".utf8))
    #expect(throws: FileAccessError.outputExists(file: scratch.file("out"))) {
        try CheckpointConverter.convert(input, to: scratch.file("out"), options: .init())
    }
    #expect(FileSystem.list(scratch.file("out")) == ["keep"])
    _ = try CheckpointConverter.convert(input, to: scratch.file("out"), options: .init(overwrite: true))
    #expect(FileSystem.list(scratch.file("out")).contains("model.safetensors"))
    #expect(!FileSystem.list(scratch.path).contains { $0.contains("tmp-ckpt") })
}

@Test("config.json's dtype field is updated under whichever name the file uses")
func configDTypeField() throws {
    let newStyle: JSONValue = ["dtype": "bfloat16", "hidden_size": 8]
    #expect(CheckpointConverter.updatingDType(newStyle, to: .f16)["dtype"] == "float16")
    #expect(CheckpointConverter.updatingDType(newStyle, to: .f16)["torch_dtype"] == nil)
    let oldStyle: JSONValue = ["torch_dtype": "float32"]
    #expect(CheckpointConverter.updatingDType(oldStyle, to: .bf16)["torch_dtype"] == "bfloat16")
}
