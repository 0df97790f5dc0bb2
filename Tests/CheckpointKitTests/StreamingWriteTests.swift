@testable import CheckpointKit
import Foundation
import TestSupport
import Testing

/// Every file under `path` (a folder or one file), by name, with its bytes.
private func outputFiles(_ path: String) -> [String: [UInt8]] {
    guard FileSystem.isDirectory(path) else { return ["": readBytes(path)] }
    return Dictionary(uniqueKeysWithValues: FileSystem.list(path).map { ($0, readBytes(path + "/" + $0)) })
}

/// The streamed ways each command is run below: the default pieces (whole tensors at this size),
/// and pieces far smaller than a tensor and of an odd length, so every tensor crosses many piece
/// boundaries (pieces of a mapped tensor, of a conversion, of values written from f32); and small
/// pieces written around the page cache, whose pages held in part are then filled from both sides.
private let streamedWritings: [TensorWriting] = [.streamed, .streamed(pieceBytes: 1000), .streamed(pieceBytes: 40_001),
                                                 .streamed(pieceBytes: 1000, direct: true)]

/// The three input layouts of the tiny Llama: a folder, three shards, and a lone file (written as a lone file).
private func tinyLlamaInputs(_ scratch: ScratchDirectory) throws -> [(name: String, path: String)] {
    let lone = scratch.file("lone.safetensors")
    if !FileManager.default.fileExists(atPath: lone) {
        try FileManager.default.copyItem(atPath: Paths.fixture("models/tiny-llama/model.safetensors"), toPath: lone)
    }
    return [("folder", Paths.fixture("models/tiny-llama")), ("sharded", Paths.fixture("models/tiny-llama-sharded")), ("lone.safetensors", lone)]
}

/// Runs `write(output, writing)` sequentially and in every streamed way, and expects each streamed
/// output to hold the same files with the same bytes as the sequential one.
private func expectStreamedEqualsSequential(_ scratch: ScratchDirectory, _ label: String,
                                            _ write: (_ output: String, _ writing: TensorWriting) throws -> Void) throws {
    let reference = scratch.file("sequential-" + label)
    try write(reference, .sequential)
    let expected = outputFiles(reference)
    #expect(!expected.isEmpty, "\(label)")
    for (k, writing) in streamedWritings.enumerated() {
        let streamed = scratch.file("streamed-\(k)-" + label)
        try write(streamed, writing)
        let got = outputFiles(streamed)
        #expect(got.keys.sorted() == expected.keys.sorted(), "\(label) pieces \(writing.pieceBytes)")
        for (name, bytes) in expected {
            #expect(got[name] == bytes, "\(label) pieces \(writing.pieceBytes): \(name)")
        }
    }
}

// MARK: - The stream writer's pieces

@Test("Pieces of several tensors, interleaved, land where the layout puts them: the sequential writer's bytes")
func streamWriterPieces() throws {
    let scratch = ScratchDirectory()
    let specs = [TensorSpec(name: "b", dtype: .u8, shape: [10]), TensorSpec(name: "a", dtype: .f32, shape: [3, 2]),
                 TensorSpec(name: "e", dtype: .f16, shape: [0]), TensorSpec(name: "c", dtype: .bf16, shape: [5])]
    let payload = Dictionary(uniqueKeysWithValues: specs.map { spec in (spec.name, (0..<spec.byteCount).map { UInt8(($0 * 13 + spec.name.count) & 255) }) })
    let layout = SafetensorsLayout(specs)
    try layout.write(to: scratch.file("sequential")) { info, out in try out.write(payload[info.name]!) }
    let writer = try SafetensorsStreamWriter(layout, path: scratch.file("streamed"), window: 1)
    let a = payload["a"]!, b = payload["b"]!
    try writer.write(piece: Array(a[0..<7]), of: specs[1], at: 0)
    try writer.write(piece: Array(b[0..<4]), of: specs[0], at: 0)
    try writer.write([(specs[3], payload["c"]!)])
    try writer.write(piece: Array(a[7..<24]), of: specs[1], at: 7)
    try writer.write(piece: Array(b[4..<10]), of: specs[0], at: 4)
    try writer.write([(specs[2], [])])
    #expect(writer.bytesSubmitted("a") == 24 && writer.bytesSubmitted("b") == 10)
    try writer.finish()
    #expect(readBytes(scratch.file("streamed")) == readBytes(scratch.file("sequential")))
}

@Test("The stream writer refuses a piece that skips ahead, runs past its tensor or repeats a finished one, and names a tensor left half-written")
func streamWriterPieceRefusals() throws {
    let scratch = ScratchDirectory()
    let spec = TensorSpec(name: "w", dtype: .f32, shape: [4])
    let path = scratch.file("x")
    let writer = try SafetensorsStreamWriter(SafetensorsLayout([spec, TensorSpec(name: "v", dtype: .u8, shape: [3])]), path: path)
    try writer.write(piece: [1, 2, 3, 4, 5], of: spec, at: 0)
    #expect(throws: SafetensorsWriteError.pieceOutOfOrder(file: path, tensor: "w", expectedOffset: 5, offset: 8)) {
        try writer.write(piece: [1, 2], of: spec, at: 8)
    }
    #expect(throws: SafetensorsWriteError.wrongByteCount(file: path, tensor: "w", expected: 16, actual: 17)) {
        try writer.write(piece: [UInt8](repeating: 0, count: 12), of: spec, at: 5)
    }
    // A whole write of a tensor already begun is a piece at 0 where byte 5 was expected.
    #expect(throws: SafetensorsWriteError.pieceOutOfOrder(file: path, tensor: "w", expectedOffset: 5, offset: 0)) {
        try writer.write([(spec, [UInt8](repeating: 0, count: 16))])
    }
    try writer.write(piece: [UInt8](repeating: 9, count: 11), of: spec, at: 5)
    #expect(throws: SafetensorsWriteError.duplicateTensor(file: path, tensor: "w")) {
        try writer.write(piece: [1], of: spec, at: 16)
    }
    try writer.write(piece: [1, 2], of: TensorSpec(name: "v", dtype: .u8, shape: [3]), at: 0)
    #expect(throws: SafetensorsWriteError.wrongByteCount(file: path, tensor: "v", expected: 3, actual: 2)) { try writer.finish() }
    #expect(SafetensorsWriteError.pieceOutOfOrder(file: "f", tensor: "w", expectedOffset: 5, offset: 8).description
        == "f: tensor 'w': a piece starts at byte 8 of the tensor (expected 5, where the last one ended)")
}

@Test("A mapped tensor written in pieces has each piece's pages let go, and its bytes are the input's")
func viewWrittenInPieces() throws {
    let scratch = ScratchDirectory()
    let file = try SafetensorsFile(path: Paths.fixture("models/tiny-llama/model.safetensors"))
    let info = try #require(file.tensors.max { $0.byteCount < $1.byteCount })
    let view = file.view(info)
    let spec = TensorSpec(name: info.name, dtype: info.dtype, shape: info.shape)
    let writer = try SafetensorsStreamWriter(SafetensorsLayout([spec]), path: scratch.file("out"), pieceBytes: 4099)
    try writer.write(view, as: info.name)
    try writer.finish()
    let written = try SafetensorsFile(path: scratch.file("out"))
    #expect(written.view(named: info.name)?.byteArray == view.byteArray)
}

// MARK: - The three commands, streamed against their sequential twins

@Test("Streamed conversion writes every file byte for byte as the sequential writer did: folder, shards, lone file, resharded, one thread or two",
      arguments: [nil, DType.f16, .f32, .bf16])
func convertStreamedEqualsSequential(target: DType?) throws {
    let scratch = ScratchDirectory()
    for (name, input) in try tinyLlamaInputs(scratch) {
        let checkpoint = try Checkpoint(path: input)
        for threads in [1, 2] {
            for shardSize in [nil, 150_000] {
                let options = ConversionOptions(targetType: target, shardSize: shardSize, threads: ThreadBudget(threads))
                var rows: [[String]] = []
                try expectStreamedEqualsSequential(scratch, "\(target?.rawValue ?? "keep")-\(threads)-\(shardSize ?? 0)-\(name)") { output, writing in
                    let report = try CheckpointConverter.convert(checkpoint, to: output, options: options, writing: writing)
                    rows.append(report.tensors.map { "\($0.name) \($0.toType.rawValue) \($0.bytesOut)" })
                }
                // The report lists the same tensors in the same order whichever way the bytes went.
                #expect(Set(rows.map { $0 }).count == 1, "\(name) \(threads)")
            }
        }
    }
}

@Test("Streamed dequantization writes every file byte for byte as the sequential writer did, for each layout, dtype and thread count",
      arguments: ["nf4", "int8", "int4"])
func dequantizeStreamedEqualsSequential(label: String) throws {
    let scratch = ScratchDirectory()
    let schemes: [String: any QuantizationScheme] = ["nf4": FourBitScheme(type: .nf4, doubleQuant: true), "int8": Int8Scheme(),
                                                     "int4": IntegerScheme(bits: 4, groupSize: 32, symmetric: false)]
    let scheme = try #require(schemes[label])
    for (name, input) in try tinyLlamaInputs(scratch) {
        let quantized = scratch.file("q-\(label)-" + name)
        _ = try CheckpointQuantizer.quantize(try Checkpoint(path: input), to: quantized, options: QuantizationOptions(scheme: scheme, threads: ThreadBudget(2)))
        let checkpoint = try Checkpoint(path: quantized)
        for dtype in [nil, DType.f32, .f16] {
            for threads in [1, 2] {
                try expectStreamedEqualsSequential(scratch, "dq-\(label)-\(dtype?.rawValue ?? "keep")-\(threads)-\(name)") { output, writing in
                    _ = try CheckpointDequantizer.dequantize(checkpoint, to: output, dtype: dtype, threads: ThreadBudget(threads), overwrite: false,
                                                             writing: writing)
                }
            }
        }
    }
}

@Test("Streamed dequantization of the reference libraries' own quantized fixtures equals the sequential writer's",
      arguments: ["tiny-llama-bnb-nf4", "tiny-llama-ct-int8", "tiny-llama-ct-w4a16-asym", "tiny-llama-gptq"])
func dequantizeFixturesStreamedEqualsSequential(fixture: String) throws {
    let scratch = ScratchDirectory()
    let checkpoint = try Checkpoint(path: Paths.fixture("models/" + fixture))
    try expectStreamedEqualsSequential(scratch, fixture) { output, writing in
        _ = try CheckpointDequantizer.dequantize(checkpoint, to: output, dtype: nil, threads: ThreadBudget(2), overwrite: false, writing: writing)
    }
}

@Test("Streamed LoRA merges write every file byte for byte as the sequential writer did: adapters, dtypes, shards, a quantized base, one thread or two",
      arguments: ["adapters/llama-lora-all-linear", "adapters/llama-dora", "adapters/llama-embedding-lora", "adapters/llama-rslora-patterns",
                  "vocab/adapters/llama-added-tokens-embedding-lora"])
func mergeStreamedEqualsSequential(adapterPath: String) throws {
    let scratch = ScratchDirectory()
    let adapter = try LoRAAdapter(folder: Paths.fixture("lora/" + adapterPath))
    let adapterName = FileSystem.split(adapterPath).name
    let nf4 = scratch.file("nf4")
    _ = try CheckpointQuantizer.quantize(try Checkpoint(path: Paths.fixture("models/tiny-llama-sharded")), to: nf4,
                                         options: QuantizationOptions(scheme: FourBitScheme(type: .nf4)))
    var bases = try tinyLlamaInputs(scratch)
    bases.append(("nf4", nf4))
    for (name, input) in bases {
        let checkpoint = try Checkpoint(path: input)
        for dtype in [nil, DType.f16, .f32] {
            for threads in [1, 2] {
                for requantize in name == "nf4" ? [false, true] : [false] {
                    let options = MergeOptions(dtype: requantize ? nil : dtype, requantize: requantize, threads: ThreadBudget(threads))
                    try expectStreamedEqualsSequential(scratch, "\(adapterName)-\(dtype?.rawValue ?? "keep")-\(threads)-\(requantize)-\(name)") { output, writing in
                        _ = try CheckpointMerger.merge(base: checkpoint, adapters: [(adapter, 0.8)], to: output, options: options, writing: writing)
                    }
                }
            }
        }
    }
}

// MARK: - Nothing half-written

@Test("A merge that fails mid-stream (an update overflowing f16, in the last of three shards) leaves no output and no temporary")
func streamedMergeFailureLeavesNothing() throws {
    let scratch = ScratchDirectory()
    let checkpoint = try Checkpoint(path: Paths.fixture("models/tiny-llama-sharded"))
    // The all-linear adapter cut to layer 3, which lives in the last shard: the first two shards
    // are complete and fsynced when the merge fails.
    let source = Paths.fixture("lora/adapters/llama-lora-all-linear")
    let adapterFile = try SafetensorsFile(path: source + "/adapter_model.safetensors")
    let kept = adapterFile.tensors.filter { $0.name.contains("layers.3.") }
    #expect(!kept.isEmpty && checkpoint.entries.filter { $0.info.name.contains("layers.3.") }.allSatisfy { $0.fileIndex == 2 })
    try FileManager.default.createDirectory(atPath: scratch.file("adapter"), withIntermediateDirectories: false)
    try FileManager.default.copyItem(atPath: source + "/adapter_config.json", toPath: scratch.file("adapter/adapter_config.json"))
    try SafetensorsLayout(kept.map { TensorSpec(name: $0.name, dtype: $0.dtype, shape: $0.shape) })
        .write(to: scratch.file("adapter/adapter_model.safetensors")) { info, out in try out.write(adapterFile.view(named: info.name)!.byteArray) }
    let adapter = try LoRAAdapter(folder: scratch.file("adapter"))
    #expect(throws: LoRAError.self) {
        try CheckpointMerger.merge(base: checkpoint, adapters: [(adapter, 1e12)], to: scratch.file("out"), options: MergeOptions(dtype: .f16))
    }
    #expect(scratch.contents == ["adapter"])
}

@Test("A producer that fails, or writes a tensor short, in the last shard of a streamed write leaves no output and no temporary")
func streamedProducerFailureLeavesNothing() throws {
    struct Refused: Error {}
    let scratch = ScratchDirectory()
    let checkpoint = try Checkpoint(path: Paths.fixture("models/tiny-llama-sharded"))
    var shards = checkpoint.mirroredShards
    for entry in checkpoint.entries {
        shards[entry.fileIndex].tensors.append(TensorSpec(name: entry.info.name, dtype: entry.info.dtype, shape: entry.info.shape))
    }
    let victim = try #require(shards.last?.tensors.last?.name)
    #expect(throws: Refused.self) {
        _ = try CheckpointWriter.write(from: checkpoint, to: scratch.file("out"), shards: shards, config: checkpoint.config, overwrite: false,
                                       writing: .streamed(pieceBytes: 1000)) { info, out in
            if info.name == victim { throw Refused() }
            try out.copy(checkpoint.view(checkpoint.entry(named: info.name)!))
        }
    }
    #expect(scratch.contents.isEmpty)
    do {
        _ = try CheckpointWriter.write(from: checkpoint, to: scratch.file("out"), shards: shards, config: checkpoint.config, overwrite: false,
                                       writing: .streamed(pieceBytes: 1000)) { info, out in
            let bytes = checkpoint.view(checkpoint.entry(named: info.name)!).byteArray
            try out.write(info.name == victim ? Array(bytes.dropLast(2)) : bytes)
        }
        Issue.record("a short tensor was accepted")
    } catch let SafetensorsWriteError.wrongByteCount(_, tensor, expected, actual) {
        #expect(tensor == victim && actual == expected - 2)
    }
    #expect(scratch.contents.isEmpty)
}

// MARK: - GGUF export in groups of rows

@Test("GGUF export reading and encoding large matrices a few rows at a time writes the bytes of encoding them whole, float and quantized presets",
      arguments: [GGUFPreset.f16, .q8_0, .q4_k_m])
func ggufRowGroupsEqualWhole(preset: GGUFPreset) throws {
    let scratch = ScratchDirectory()
    try SeededModels.write("untied", to: scratch.file("untied"), tokenizerFolder: Paths.fixture("models/tiny-llama"))
    let checkpoint = try Checkpoint(path: scratch.file("untied"))
    var whole = GGUFExport.Options(), grouped = GGUFExport.Options()
    whole.pieceBytes = Int.max / 8  // no tensor is this large: every one is prepared whole
    grouped.pieceBytes = 1000  // a few rows per group, the last group short
    // With importance weights too, where they change the encoding (K- and I-quants).
    let weighted = preset == .q4_k_m
    for options in [whole, grouped] where weighted {
        var withImportance = options
        withImportance.importance = try ImportanceMatrix(reading: Paths.fixture("gguf-presets/untied.imatrix.gguf"))
        _ = try GGUFExport.convert(checkpoint, to: scratch.file("imatrix-\(options.pieceBytes).gguf"), preset: preset, options: withImportance)
    }
    for (name, options) in [("whole", whole), ("grouped", grouped)] {
        _ = try GGUFExport.convert(checkpoint, to: scratch.file("\(name).gguf"), preset: preset, options: options)
    }
    #expect(readBytes(scratch.file("grouped.gguf")) == readBytes(scratch.file("whole.gguf")), "\(preset)")
    if weighted {
        #expect(readBytes(scratch.file("imatrix-1000.gguf")) == readBytes(scratch.file("imatrix-\(Int.max / 8).gguf")), "\(preset) imatrix")
    }
}

@Test("A NaN deep inside a matrix exported in groups of rows is named at the flat index the whole tensor gives")
func ggufRowGroupsNameTheFirstNaN() throws {
    let scratch = ScratchDirectory()
    let input = scratch.file("in")
    try FileManager.default.copyItem(atPath: Paths.fixture("models/tiny-llama"), toPath: input)
    let file = try SafetensorsFile(path: input + "/model.safetensors")
    let victim = try #require(file.tensors.first { $0.name == "model.layers.1.mlp.up_proj.weight" })
    var bytes = readBytes(input + "/model.safetensors")
    let index = victim.elementCount - 70  // in the last group of rows
    let at = file.dataStart + victim.dataOffsets.lowerBound + index * 2
    (bytes[at], bytes[at + 1]) = (0xC0, 0x7F)
    scratch.write("in/model.safetensors", bytes)
    let checkpoint = try Checkpoint(path: input)
    var errors: [String] = []
    for pieceBytes in [Int.max / 8, 1000] {
        var options = GGUFExport.Options()
        options.pieceBytes = pieceBytes
        do {
            _ = try GGUFExport.convert(checkpoint, to: scratch.file("out-\(pieceBytes).gguf"), preset: .q8_0, options: options)
            Issue.record("a NaN was encoded")
        } catch let error as QuantizationError {
            errors.append(error.description)
        }
    }
    #expect(errors.count == 2 && errors[0] == errors[1], "\(errors)")
    #expect(errors.first?.contains("at flat index \(index)") == true, "\(errors)")
    #expect(scratch.contents == ["in"])
}
