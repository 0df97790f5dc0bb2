@testable import CheckpointKit
import Foundation
import TestSupport
import Testing

/// Goldens from llama.cpp itself for the tiny model of every architecture (fixtures/architectures/):
/// convert_hf_to_gguf.py --outtype bf16, then llama-quantize per preset (pinned 0c1e570), made by
/// tools/make_gguf_arch_goldens.py into fixtures/gguf-architectures/goldens.json.
private let goldens: JSONValue = try! readJSON(Paths.fixture("gguf-architectures/goldens.json"))

private extension Array {
    subscript(safe index: Int) -> Element? { indices.contains(index) ? self[index] : nil }
}

private var cases: [String] { (goldens["cases"]?.objectMembers ?? []).map(\.0).sorted() }

/// The model folder a golden case was made from.
private func folder(_ name: String) -> String {
    if name == "gpt2" { return Paths.fixture("models/tiny-gpt2") }  // the converter's copy only adds n_ctx = n_positions
    let own = Paths.fixture("gguf-architectures/\(name)")
    return FileManager.default.fileExists(atPath: own) ? own : Paths.fixture("architectures/\(name)")
}

/// Metadata the test compares: every key but the tokenizer's and general.* descriptions the converter derives from names.
private func comparedKey(_ key: String) -> Bool {
    !key.hasPrefix("tokenizer.") && (!key.hasPrefix("general.") || ["general.architecture", "general.file_type", "general.quantization_version"].contains(key))
}

/// Whether our metadata value equals the golden [key, type, value] (floats compared as f32).
private func matches(_ ours: GGUFValue, type: String, _ golden: JSONValue) -> Bool {
    switch (ours, type) {
    case (.string(let s), "STRING"): return s == golden.stringValue
    case (.uint(let v, 4), "UINT32"): return Int(v) == golden.intValue
    case (.float(let v, 6), "FLOAT32"): return golden.doubleValue.map { Float($0) == Float(v) } ?? false
    case (.bool(let b), "BOOL"): return b == golden.boolValue
    case (.array(let values, _), "ARRAY"):
        guard let expected = golden.arrayValue, expected.count == values.count else { return false }
        return zip(values, expected).allSatisfy { a, b in
            if let x = a.boolValue { return x == b.boolValue }
            return a.doubleValue.map { Float($0) } == b.doubleValue.map { Float($0) }
        }
    default: return false
    }
}

@Test("Every architecture's GGUF holds the converter's and llama-quantize's tensors, names, types, bytes and hyperparameters, large matrices encoded a few rows at a time",
      arguments: cases)
func architectureMatchesLlamaCpp(name: String) throws {
    let golden = try #require(goldens["cases"]?[name])
    let checkpoint = try Checkpoint(path: folder(name))
    let scratch = ScratchDirectory()
    if let refusal = golden["convert_refused"]?.stringValue {
        // The converter cannot map the file (Qwen3-MoE with dense mlp_only_layers): neither do we, by name.
        #expect(throws: GGUFExport.Failure.self, "convert_hf_to_gguf.py: \(refusal)") {
            var options = GGUFExport.Options()
            options.threads = ThreadBudget(2)
            _ = try GGUFExport.convert(checkpoint, to: scratch.file("x.gguf"), preset: .bf16, options: options)
        }
        #expect(!FileManager.default.fileExists(atPath: scratch.file("x.gguf")))
        return
    }
    let withImportance = (golden.objectMembers ?? []).map(\.0).filter { $0.hasSuffix("+imatrix") }
    let outputs = ["bf16"] + (goldens["presets"]?.arrayValue ?? []).compactMap(\.stringValue) + withImportance
    #expect(outputs.count >= 6)
    for output in outputs {
        let expected = try #require(golden[output]?.objectMembers, "\(name) \(output)")
        var options = GGUFExport.Options()
        options.threads = ThreadBudget(2)
        // Every plain matrix read and encoded in pieces of a few rows: the bytes must still be llama.cpp's.
        options.pieceBytes = output == "bf16" ? GGUFExport.Options().pieceBytes : 4096
        if output.hasSuffix("+imatrix") {
            options.importance = try ImportanceMatrix(reading: Paths.fixture("gguf-architectures/\(name).imatrix.gguf"))
        }
        let path = scratch.file("\(output).gguf")
        let preset = try #require(GGUFPreset(name: output.replacingOccurrences(of: "+imatrix", with: "")))
        _ = try GGUFExport.convert(checkpoint, to: path, preset: preset, options: options)
        let file = try GGUFFile(path: path)
        #expect(Set(file.tensors.map(\.name)) == Set(expected.map(\.0)), "\(name) \(output)")
        for (tensor, fact) in expected {
            guard let info = file.info(named: tensor) else { continue }
            #expect(info.type.name == fact.arrayValue?[safe: 0]?.stringValue, "\(name) \(output) \(tensor): \(info.type.name)")
            #expect(sha256Hex(Array(file.bytes(info))) == fact.arrayValue?[safe: 1]?.stringValue, "\(name) \(output) \(tensor) bytes")
            if let dims = fact.arrayValue?[safe: 2]?.arrayValue?.compactMap(\.intValue) { #expect(info.dimensions == dims, "\(name) \(tensor) ne") }
        }
        if output == "bf16" {
            let metadata = try #require(golden["metadata"]?.arrayValue)
            let goldenKeys = metadata.compactMap { $0.arrayValue?[safe: 0]?.stringValue }.filter(comparedKey)
            #expect(file.metadata.map(\.0).filter(comparedKey).sorted() == goldenKeys.sorted(), "\(name) metadata keys")
            for entry in metadata {
                guard let key = entry.arrayValue?[safe: 0]?.stringValue, comparedKey(key), let type = entry.arrayValue?[safe: 1]?.stringValue, let value = entry.arrayValue?[safe: 2] else { continue }
                let ours = try #require(file.value(key), "\(name) \(key)")
                #expect(matches(ours, type: type, value), "\(name) \(key): \(ours) (expected \(value))")
            }
        }
    }
}

@Test("The converter's transforms are each exercised: Q/K permuted, Gemma norms stored as 1 + w, experts stacked, RoPE factors computed")
func architectureGoldensCoverEveryTransform() throws {
    var transforms = Set<String>()
    for name in cases {
        for (_, kind) in goldens["cases"]?[name]?["transforms"]?.objectMembers ?? [] { if let k = kind.stringValue { transforms.insert(k) } }
    }
    for kind in ["identity", "permute", "plus_one", "stacked", "transposed"] { #expect(transforms.contains(kind), "\(transforms.sorted())") }
    let generated = cases.flatMap { (goldens["cases"]?[$0]?["generated"]?.objectMembers ?? []).map(\.0) }
    #expect(generated.contains { $0.hasPrefix("rope_freqs") } && generated.contains { $0.hasPrefix("rope_factors_long") })
}

@Test("A GGUF of any architecture requantizes as llama-quantize --allow-requantize does: its tensors, metadata kept",
      arguments: ["gemma2", "phi3", "mixtral"])
func requantizingKeepsEveryArchitecture(name: String) throws {
    let golden = try #require(goldens["cases"]?[name]?["Q4_K_M"]?.objectMembers)
    let scratch = ScratchDirectory()
    var options = GGUFExport.Options()
    options.threads = ThreadBudget(2)
    _ = try GGUFExport.convert(try Checkpoint(path: folder(name)), to: scratch.file("bf16.gguf"), preset: .bf16, options: options)
    let source = try GGUFFile(path: scratch.file("bf16.gguf"))
    let report = try GGUFExport.requantize(source, to: scratch.file("q.gguf"), preset: .q4_k_m, options: options)
    #expect(report.tensors.count == golden.count)
    let file = try GGUFFile(path: scratch.file("q.gguf"))
    for (tensor, fact) in golden {
        let info = try #require(file.info(named: tensor), "\(name) \(tensor)")
        #expect(info.type.name == fact.arrayValue?[safe: 0]?.stringValue && sha256Hex(Array(file.bytes(info))) == fact.arrayValue?[safe: 1]?.stringValue, "\(name) \(tensor)")
    }
    for (key, value) in source.metadata where key != "general.file_type" {
        #expect(file.value(key) == value, "\(name) \(key)")
    }
    #expect(file.value("general.file_type")?.intValue == 15)
}

@Test("ckpt-imatrix keeps a MoE model's statistics per expert as llama-imatrix does: same entries, same token counts per expert, sums within 2e-2")
func expertImportanceMatchesLlamaImatrix() throws {
    let text = Paths.sharedAssets + "/corpora/tinyshakespeare_input.txt"
    guard FileManager.default.fileExists(atPath: text) else {
        print("skipped: \(text) is absent (the shared assets are not here)")
        return
    }
    let reference = try ImportanceMatrix(reading: Paths.fixture("gguf-architectures/qwen3-moe-sparse.imatrix.gguf"))
    let checkpoint = try Checkpoint(path: folder("qwen3-moe-sparse"))
    let network = try TransformerModel(checkpoint: checkpoint, threads: ThreadBudget(2), emulatingLlamaCpp: true)
    let tokenizer = try Tokenizer(checkpoint: checkpoint)
    let tokens = tokenizer.encode(String(decoding: readBytes(text).prefix(20_000), as: UTF8.self))
    let plan = try ChunkPlan(tokens: tokens.count, context: 64, chunks: 8, bos: tokenizer.addsBOS ? tokenizer.bosTokenID : nil, file: text)
    let collector = ImportanceCollector(model: network, includeOutput: false)
    collector.collect(network, tokens: tokens, plan: plan)
    let ours = collector.matrix(architecture: try #require(GGUFArchitecture.of(network.config.family)), datasets: [text], chunkSize: 64, chunks: 8)
    #expect(Set(ours.entries.keys) == Set(reference.entries.keys))
    #expect(ours.entries["blk.1.ffn_up_exps.weight"]?.counts.count == 4)
    var relative: [Float] = []
    for (name, theirs) in reference.entries {
        let mine = try #require(ours.entries[name])
        #expect(mine.counts == theirs.counts, "\(name): \(mine.counts) tokens per expert (expected \(theirs.counts))")
        for (a, b) in zip(mine.sums, theirs.sums) { relative.append(abs(a - b) / max(abs(b), 1e-30)) }
    }
    relative.sort()
    print("expert imatrix vs llama-imatrix: median relative difference \(relative[relative.count / 2]), worst \(relative.last ?? .infinity)")
    #expect(relative[relative.count / 2] < 1e-3 && (relative.last ?? .infinity) < 2e-2)
}

@Test("Requantizing a GGUF with every metadata type and tensor type (64-byte alignment) writes a GGUF that reads back, values kept")
func requantizingKeepsEveryMetadataType() throws {
    let source = try GGUFFile(path: Paths.fixture("convert/gguf_reader/all_types.gguf"))
    let scratch = ScratchDirectory()
    var options = GGUFExport.Options()
    options.threads = ThreadBudget(2)
    _ = try GGUFExport.requantize(source, to: scratch.file("q.gguf"), preset: .q8_0, options: options)
    let file = try GGUFFile(path: scratch.file("q.gguf"))
    for (key, value) in source.metadata where !["general.file_type", "general.alignment"].contains(key) {
        #expect(file.value(key) == value, "\(key)")
    }
    #expect(file.tensors.map(\.name).sorted() == source.tensors.map(\.name).sorted())
}

@Test("Requantizing a GGUF whose weight holds a NaN is refused naming the tensor and index, and nothing is written")
func requantizingRefusesNaN() throws {
    let scratch = ScratchDirectory()
    // One F32 [64, 2] weight of a llama block, the NaN at index 70; the next tensor is prepared ahead while it fails.
    var values = (0..<128).map { Float($0) / 64 }
    values[70] = .nan
    let tensors: [(name: String, dims: [Int], type: GGMLType, offset: Int)] = [
        ("blk.0.attn_q.weight", [64, 2], .f32, 0), ("blk.0.attn_k.weight", [64, 2], .f32, 512),
    ]
    var bytes = GGUFExport.headerBytes([("general.architecture", .string("llama"))], tensors: tensors)
    for _ in 0..<2 { values.withUnsafeBytes { bytes += $0 } }
    FileManager.default.createFile(atPath: scratch.file("nan.gguf"), contents: Data(bytes))
    var options = GGUFExport.Options()
    options.threads = ThreadBudget(2)
    options.plan.pure = true
    #expect(throws: QuantizationError.nonFinite(file: scratch.file("nan.gguf"), tensor: "blk.0.attn_k.weight", index: 70, value: "nan")) {
        _ = try GGUFExport.requantize(try GGUFFile(path: scratch.file("nan.gguf")), to: scratch.file("q.gguf"), preset: .q8_0, options: options)
    }
    #expect(!FileManager.default.fileExists(atPath: scratch.file("q.gguf")))
}

@Test("A NaN in a matrix exported a few rows at a time is named at its flat index in the whole tensor, and nothing is written")
func exportPieceNaNNamedByFlatIndex() throws {
    let scratch = ScratchDirectory()
    // Element 3000 of [512, 64] bf16: the third piece of 16 rows (1024 elements) when pieces are 4 KB of f32.
    let folder = try tinyLlama(in: scratch, withNaNIn: "model.embed_tokens.weight", at: [3000])
    var options = GGUFExport.Options()
    options.threads = ThreadBudget(2)
    options.pieceBytes = 4096
    let checkpoint = try Checkpoint(path: folder)
    #expect(throws: QuantizationError.nonFinite(file: checkpoint.path, tensor: "model.embed_tokens.weight", index: 3000, value: "nan")) {
        _ = try GGUFExport.convert(checkpoint, to: scratch.file("q.gguf"), preset: .q8_0, options: options)
    }
    #expect(!FileManager.default.fileExists(atPath: scratch.file("q.gguf")))
}

@Test("A NaN in llama's query matrix, whose rows GGUF interleaves within each head, is named at its flat index in the source tensor")
func exportPermutedNaNNamedBySourceIndex() throws {
    let scratch = ScratchDirectory()
    // [64, 64], heads of 16 rows: source row 8 is written as row 1, source row 1 as row 2. The NaN
    // at 8·64 is the first one written (at written index 64), the one at 1·64 + 5 = 69 the second.
    let folder = try tinyLlama(in: scratch, withNaNIn: "model.layers.0.self_attn.q_proj.weight", at: [8 * 64, 69])
    let checkpoint = try Checkpoint(path: folder)
    // One row a piece, four rows, the whole matrix; one thread and two.
    for (pieceBytes, threads) in [(256, 1), (1024, 2), (Int.max / 8, 2)] {
        var options = GGUFExport.Options()
        options.threads = ThreadBudget(threads)
        options.pieceBytes = pieceBytes
        #expect(throws: QuantizationError.nonFinite(file: checkpoint.path, tensor: "model.layers.0.self_attn.q_proj.weight", index: 512, value: "nan")) {
            _ = try GGUFExport.convert(checkpoint, to: scratch.file("q.gguf"), preset: .q8_0, options: options)
        }
        #expect(!FileManager.default.fileExists(atPath: scratch.file("q.gguf")))
    }
}

/// A copy of the tiny-llama fixture in `scratch` whose bf16 `tensor` holds a NaN at each flat index of `indices`.
private func tinyLlama(in scratch: ScratchDirectory, withNaNIn tensor: String, at indices: [Int]) throws -> String {
    let folder = scratch.file("tiny-llama")
    try FileManager.default.copyItem(atPath: Paths.fixture("models/tiny-llama"), toPath: folder)
    let weights = folder + "/model.safetensors"
    let file = try SafetensorsFile(path: weights)
    let info = try #require(file.info(named: tensor))
    var bytes = try Data(contentsOf: URL(fileURLWithPath: weights))
    for index in indices {
        let offset = file.dataStart + info.dataOffsets.lowerBound + index * 2
        (bytes[offset], bytes[offset + 1]) = (0xC0, 0x7F)
    }
    try bytes.write(to: URL(fileURLWithPath: weights))
    return folder
}
