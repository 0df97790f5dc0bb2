import CheckpointKit
import Foundation
import TestSupport
import Testing

/// The bytes convert, dequantize and merge-lora wrote before their writers streamed (main at
/// c28c50d, one tensor after another on one thread): the streamed writers must write the same
/// files. Recorded with that commit's release binaries: the program with these arguments (OUT a
/// fresh folder or file), then `sha256sum` of each file.
private let streamedCommandHashes: [(program: String, arguments: [String], hashes: [String: String])] = [
    ("ckpt-convert", ["fixtures/models/tiny-llama-sharded", "OUT", "--type", "f16"], ["config.json": "9a0a5b7400e7a783d4f3fe7b9c2e070d6439d4464f1bbe9125b5718e50db2f23", "generation_config.json": "3754e09d0cf6116606def313715836f6ea452063c8fa2e6370cc11e7c15d4aab", "model-00001-of-00003.safetensors": "ef182452560f11a24accde937aef521ab0b0b373159f2f04022ac730eb1a6409", "model-00002-of-00003.safetensors": "7aea26f0d95853c1364d7c7244ff5417bc64cec0d0b2bef3c309b698947c9ee6", "model-00003-of-00003.safetensors": "d83e3e868b78f0f40f5305d562e5cb21f82ee3f315beede4a05207b3bacba462", "model.safetensors.index.json": "ee355291a1bcee8942577328a3aea2d7e117ad2a11529c41837468d2efa4f011", "special_tokens_map.json": "79c4e18958fe6f1735777028383d8aaa066a7aa7eb198de03d4f02060e191e72", "tokenizer.json": "ca60416b6106b93a871f4dd086a48956a1b1789eb14f334e7c4112ae7b320d70", "tokenizer_config.json": "9684e9bc8a37b40e7a4148c5e010e8443f2f1705b5cba3373f1b3ac8f5c150be"]),
    ("ckpt-convert", ["fixtures/models/tiny-llama", "OUT", "--type", "f32", "--shard-size", "300KB"], ["config.json": "1cbb30e2349e432f220713b1ad7710417a13f3e96cb0d11c58e9c0a62fe9a4b6", "generation_config.json": "3754e09d0cf6116606def313715836f6ea452063c8fa2e6370cc11e7c15d4aab", "model-00001-of-00004.safetensors": "8eb6e0daba9c6aeec66bc56952bce573a752a61623f8b12fe57c648af3ff7bb0", "model-00002-of-00004.safetensors": "930be98157eac606a9fa8c7589ba56766ef1253d458767d6019e0cf97baf359d", "model-00003-of-00004.safetensors": "b5f094b5601d66a8c33c5fc9d58b1c45b32d3e39758ead46988b3b08f352bec2", "model-00004-of-00004.safetensors": "ab269ba518dd9638ae93ffb81e3336ff20c5c53bc4d5e140eec01c5220c9e867", "model.safetensors.index.json": "5c8c62db4eaf40be96ad07ee9b1e25f2bfba6e135bd671552ae59b4ca7ea28ed", "special_tokens_map.json": "79c4e18958fe6f1735777028383d8aaa066a7aa7eb198de03d4f02060e191e72", "tokenizer.json": "ca60416b6106b93a871f4dd086a48956a1b1789eb14f334e7c4112ae7b320d70", "tokenizer_config.json": "9684e9bc8a37b40e7a4148c5e010e8443f2f1705b5cba3373f1b3ac8f5c150be"]),
    ("ckpt-dequantize", ["fixtures/models/tiny-llama-bnb-nf4", "OUT"], ["config.json": "6f8927ed037e3ce18aeeb79a008cbc203da34a9f6a08021b644bd5b966c78845", "generation_config.json": "3754e09d0cf6116606def313715836f6ea452063c8fa2e6370cc11e7c15d4aab", "model.safetensors": "94e1cff0c6aeb8e2e99690696f69f8e4532428eefce30eb2cb1b29daddf381fe", "special_tokens_map.json": "79c4e18958fe6f1735777028383d8aaa066a7aa7eb198de03d4f02060e191e72", "tokenizer.json": "ca60416b6106b93a871f4dd086a48956a1b1789eb14f334e7c4112ae7b320d70", "tokenizer_config.json": "9684e9bc8a37b40e7a4148c5e010e8443f2f1705b5cba3373f1b3ac8f5c150be"]),
    ("ckpt-dequantize", ["fixtures/models/tiny-llama-ct-int8", "OUT", "--dtype", "f16"], ["config.json": "9a0a5b7400e7a783d4f3fe7b9c2e070d6439d4464f1bbe9125b5718e50db2f23", "generation_config.json": "3754e09d0cf6116606def313715836f6ea452063c8fa2e6370cc11e7c15d4aab", "model.safetensors": "c680d8cd85f19f88e3c99e4299c95bdfaa77de6c9846dca78fc42d212f948066", "special_tokens_map.json": "79c4e18958fe6f1735777028383d8aaa066a7aa7eb198de03d4f02060e191e72", "tokenizer.json": "ca60416b6106b93a871f4dd086a48956a1b1789eb14f334e7c4112ae7b320d70", "tokenizer_config.json": "9684e9bc8a37b40e7a4148c5e010e8443f2f1705b5cba3373f1b3ac8f5c150be"]),
    ("ckpt-merge-lora", ["fixtures/models/tiny-llama-sharded", "fixtures/lora/adapters/llama-lora-all-linear", "OUT"], ["config.json": "6f8927ed037e3ce18aeeb79a008cbc203da34a9f6a08021b644bd5b966c78845", "generation_config.json": "3754e09d0cf6116606def313715836f6ea452063c8fa2e6370cc11e7c15d4aab", "model-00001-of-00003.safetensors": "1ca04c674599137aa611b1c582dbc6256f6fc9cf353c61bd63e1ae3902da192a", "model-00002-of-00003.safetensors": "78c8528d0b007edb52a153030f4745b5956b3ecbc0f1e2b58476422c38a1d9a2", "model-00003-of-00003.safetensors": "40e738047d0b463351c5ffa0b4c99ec7efc413aba63a5bdde3fb0cee01be9afa", "model.safetensors.index.json": "ee355291a1bcee8942577328a3aea2d7e117ad2a11529c41837468d2efa4f011", "special_tokens_map.json": "79c4e18958fe6f1735777028383d8aaa066a7aa7eb198de03d4f02060e191e72", "tokenizer.json": "ca60416b6106b93a871f4dd086a48956a1b1789eb14f334e7c4112ae7b320d70", "tokenizer_config.json": "9684e9bc8a37b40e7a4148c5e010e8443f2f1705b5cba3373f1b3ac8f5c150be"]),
    ("ckpt-merge-lora", ["fixtures/models/tiny-llama", "fixtures/lora/adapters/llama-dora", "OUT", "--dtype", "f32"], ["config.json": "1cbb30e2349e432f220713b1ad7710417a13f3e96cb0d11c58e9c0a62fe9a4b6", "generation_config.json": "3754e09d0cf6116606def313715836f6ea452063c8fa2e6370cc11e7c15d4aab", "model.safetensors": "6c70f45d8af7cb2baf8d8c38f1e400b1b54d2fedcbf1f1007b06f6dcc140db1c", "special_tokens_map.json": "79c4e18958fe6f1735777028383d8aaa066a7aa7eb198de03d4f02060e191e72", "tokenizer.json": "ca60416b6106b93a871f4dd086a48956a1b1789eb14f334e7c4112ae7b320d70", "tokenizer_config.json": "9684e9bc8a37b40e7a4148c5e010e8443f2f1705b5cba3373f1b3ac8f5c150be"]),
    ("ckpt-convert", ["fixtures/models/tiny-llama", "OUT", "--to", "gguf", "--type", "f16"], ["": "73bb1df0471535272e7c30a8f381b24bb9fd8e7465b9e41b75501dc5498e7bd6"]),
    ("ckpt-convert", ["fixtures/models/tiny-llama", "OUT", "--to", "gguf", "--type", "q4_k_m"], ["": "4c207d44cc22b66a5f91fc8d43c18069fb9e8b96880f1f80c285020e5439c9a4"]),
]

/// The DoRA merge (index 5) stays in f32, so its weights carry the last bits of OpenBLAS's products, which
/// OpenBLAS's kernels decide (their order of fused multiply-adds): its bytes as recorded under each kernel,
/// SkylakeX (c28c50d's binaries) and Cooperlake (the same sgemm kernels), and Haswell (2fcc340's, on a
/// host whose environment sets OPENBLAS_CORETYPE=Haswell). Under any other kernel the run is held to its own bytes across thread counts.
private let kernelDependentHashes: [Int: [String: [String: String]]] = [
    5: ["model.safetensors": ["SkylakeX": "6c70f45d8af7cb2baf8d8c38f1e400b1b54d2fedcbf1f1007b06f6dcc140db1c",
                              "Cooperlake": "6c70f45d8af7cb2baf8d8c38f1e400b1b54d2fedcbf1f1007b06f6dcc140db1c",
                              "Haswell": "8b40279c14f25a9b931d6dba38906d678db2b3544253b0f1d8244147304e285f"]],
]

@Test("convert, dequantize, merge-lora and GGUF export write byte for byte what they wrote before streaming, with one thread or two",
      arguments: streamedCommandHashes.indices)
func streamedCommandsMatchBeforeStreaming(index: Int) throws {
    let (program, arguments, hashes) = streamedCommandHashes[index]
    let scratch = ScratchDirectory()
    var firstRun: [String: String] = [:]
    for threads in ["1", "2"] {
        let output = scratch.file(threads + (arguments.contains("gguf") ? ".gguf" : ""))
        let resolved = arguments.map { $0 == "OUT" ? output : ($0.hasPrefix("fixtures/") ? Tools.repository + "/" + $0 : $0) }
        let result = try Tools.run(program, resolved + ["--threads", threads, "--quiet"])
        #expect(result.status == 0, "\(result.stderr)")
        for (name, recorded) in hashes {
            let path = name.isEmpty ? output : output + "/" + name
            let bytes = try #require(FileManager.default.contents(atPath: path), "\(name)")
            let hash = sha256Hex([UInt8](bytes))
            // The same bytes on one thread and two, whatever the kernel.
            if let first = firstRun[name] { #expect(hash == first, "\(program) \(arguments): \(name) differs between 1 and 2 threads") }
            firstRun[name] = hash
            var expected: String? = recorded
            if let perKernel = kernelDependentHashes[index]?[name] { expected = perKernel[MatrixMultiply.kernels] }
            if let expected { #expect(hash == expected, "\(program) \(arguments) --threads \(threads): \(name) (OpenBLAS \(MatrixMultiply.kernels))") }
        }
    }
}

@Test("A full disk while merging or dequantizing (streamed writers) gives one clear error line, exit 1, and leaves nothing",
      .disabled(if: Tools.sanitizer != nil, "resource limits (ulimit) cannot hold a sanitized program"))
func streamedFullDisk() throws {
    let runs: [(String, [String])] = [
        ("ckpt-merge-lora", [Tools.fixture("models/tiny-llama"), Tools.fixture("lora/adapters/llama-lora-all-linear"), "OUT", "--dtype", "f32"]),
        ("ckpt-dequantize", [Tools.fixture("models/tiny-llama-bnb-nf4"), "OUT", "--dtype", "f32"]),
        ("ckpt-convert", [Tools.fixture("models/tiny-llama"), "OUT.gguf", "--to", "gguf", "--type", "f32"]),
    ]
    for (program, arguments) in runs {
        let scratch = ScratchDirectory()
        // The shell's file-size limit (512-byte blocks for dash) makes the writes past 256 KB fail
        // with EFBIG, as a full disk fails them with ENOSPC; every output here is larger.
        let resolved = arguments.map { $0.hasPrefix("OUT") ? scratch.file($0) : $0 }
        let result = try Tools.start(program, resolved, shellPrefix: "ulimit -f 512").wait()
        #expect(result.status == 1, "\(program): \(result.stderr)")
        #expect(result.stderr.hasPrefix("error: "), "\(program)")
        #expect(result.stderr.contains("cannot write (File too large)"), "\(program): \(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1, "\(program): \(result.stderr)")
        #expect(scratch.contents.isEmpty, "\(program)")
    }
}
