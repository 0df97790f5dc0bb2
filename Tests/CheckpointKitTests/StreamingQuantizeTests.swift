@testable import CheckpointKit
import Foundation
import TestSupport
import Testing

/// The schemes `ckpt-quantize` writes, by a short label the arguments below use.
private func scheme(_ label: String) -> any QuantizationScheme {
    switch label {
    case "nf4": return FourBitScheme(type: .nf4)
    case "fp4-128": return FourBitScheme(type: .fp4, blockSize: 128)
    case "nf4-dq": return FourBitScheme(type: .nf4, doubleQuant: true)
    case "int8": return Int8Scheme()
    case "int8-32-bf16": return Int8Scheme(groupSize: 32, scaleType: .bf16)
    case "int4": return IntegerScheme(bits: 4, groupSize: 32)
    case "int4-asym": return IntegerScheme(bits: 4, groupSize: 32, symmetric: false)
    case "int8-channel": return IntegerScheme(bits: 8, groupSize: nil)
    case "int4-channel-asym": return IntegerScheme(bits: 4, groupSize: nil, symmetric: false)
    case "int4-gptq": return IntegerScheme(bits: 4, groupSize: 32, format: .gptq)
    default: fatalError("unknown scheme \(label)")
    }
}

/// Seeded values in [-1, 1), with an all-zero block to take the zero path.
private func seededValues(_ count: Int, seed: UInt64) -> [Float] {
    var state = seed
    return (0..<count).map { i in
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return i < 64 ? 0 : Float(Int64(bitPattern: state >> 11) % 1000) / 1000
    }
}

@Test("Each scheme's parts, planned from name, shape and dtype alone, are exactly the parts encode produces",
      arguments: ["nf4", "fp4-128", "int8", "int8-32-bf16", "int4", "int4-asym", "int8-channel", "int4-channel-asym"])
func partSpecsMatchEncode(label: String) throws {
    let scheme = scheme(label)
    for shape in [[1, 1], [3, 5], [7, 64], [17, 130], [64, 33], [9, 96], [33, 256]] {
        for originalType in [DType.bf16, .f16, .f32] {
            let values = seededValues(shape[0] * shape[1], seed: UInt64(shape[0] * 1000 + shape[1]))
            let encoded = values.withUnsafeBufferPointer {
                scheme.encode(name: "model.layers.0.mlp.up_proj.weight", shape: shape, originalType: originalType, values: $0,
                              optimizeScales: false, threads: .single).encoded
            }
            let planned = try #require(scheme.partSpecs(name: "model.layers.0.mlp.up_proj.weight", shape: shape, originalType: originalType))
            #expect(planned == encoded.parts.map(\.spec), "\(label) \(shape) \(originalType)")
            #expect(zip(planned, encoded.parts).allSatisfy { $0.0.byteCount == $0.1.bytes.count }, "\(label) \(shape) \(originalType)")
        }
    }
}

@Test("Schemes whose parts depend on the values plan none from shapes alone: double quantization's offset, GPTQ's layout")
func partSpecsUnknown() {
    #expect(scheme("nf4-dq").partSpecs(name: "w.weight", shape: [4, 64], originalType: .bf16) == nil)
    #expect(scheme("int4-gptq").partSpecs(name: "w.weight", shape: [32, 64], originalType: .bf16) == nil)
    #expect(scheme("int4-gptq").partSpecs(name: "w.weight", shape: [32, 64], originalType: .bf16, reading: { [Float](repeating: 1, count: 32 * 64) }) == nil)
}

@Test("Double quantization plans its parts from a first read of the values: exactly the parts encode produces, quant_state length included",
      arguments: ["nf4-dq", "fp4-dq-128"])
func doubleQuantPartSpecsFromValues(label: String) throws {
    let scheme: any QuantizationScheme = label == "nf4-dq" ? FourBitScheme(type: .nf4, doubleQuant: true)
        : FourBitScheme(type: .fp4, blockSize: 128, doubleQuant: true)
    // Shapes with a partial last block, fewer blocks than one nested block of 256, and several nested blocks.
    for shape in [[1, 1], [3, 5], [7, 64], [17, 130], [64, 33], [300, 576], [5, 1000]] {
        for originalType in [DType.bf16, .f16, .f32] {
            let values = seededValues(shape[0] * shape[1], seed: UInt64(shape[0] * 31 + shape[1]))
            let encoded = values.withUnsafeBufferPointer {
                scheme.encode(name: "m.weight", shape: shape, originalType: originalType, values: $0, optimizeScales: false, threads: .single).encoded
            }
            var reads = 0
            let planned = try #require(scheme.partSpecs(name: "m.weight", shape: shape, originalType: originalType, reading: { reads += 1; return values }))
            #expect(reads == 1)
            #expect(planned == encoded.parts.map(\.spec), "\(label) \(shape) \(originalType)")
        }
    }
}

@Test("The absmax planned without encoding is the absmax the 4-bit kernel stores, partial last block included",
      arguments: [1, 63, 64, 65, 4097, 70_001])
func blockAbsmaxMatchesQuantize(count: Int) {
    let values = seededValues(count, seed: UInt64(count))
    for blockSize in [64, 128, 4096] {
        var packed = [UInt8](repeating: 0, count: FourBitQuantizer.packedByteCount(count))
        var absmax = [Float](repeating: 0, count: FourBitQuantizer.blockCount(count, blockSize: blockSize))
        values.withUnsafeBufferPointer { x in
            packed.withUnsafeMutableBufferPointer { p in
                absmax.withUnsafeMutableBufferPointer { a in FourBitQuantizer.quantize(x, blockSize: blockSize, type: .nf4, packed: p, absmax: a, threads: .single) }
            }
        }
        for threads in [ThreadBudget.single, ThreadBudget(2)] {
            let planned = values.withUnsafeBufferPointer { FourBitQuantizer.blockAbsmax($0, blockSize: blockSize, threads: threads) }
            #expect(planned.map(\.bitPattern) == absmax.map(\.bitPattern), "\(count) in blocks of \(blockSize), \(threads.count) threads")
        }
    }
}

@Test("The planned quant_state blob of NF4 is bitsandbytes' JSON, byte for byte")
func plannedQuantStateLength() throws {
    let specs = try #require(FourBitScheme(type: .nf4).partSpecs(name: "p.weight", shape: [576, 1536], originalType: .bf16))
    let blob = #"{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [576, 1536]}"#
    #expect(specs.map(\.name) == ["p.weight", "p.weight.absmax", "p.weight.quant_map", "p.weight.quant_state.bitsandbytes__nf4"])
    #expect(specs[3].shape == [blob.utf8.count])
    #expect(specs[0].shape == [442_368, 1] && specs[1].shape == [13_824])
}

/// Today's writer before streaming (commit 00c4a7b): every selected weight of every shard
/// encoded and held, then each shard written in file order by `CheckpointWriter.write(from:)`.
/// Kept as the reference the streaming path must reproduce byte for byte.
private func quantizeBuffered(_ checkpoint: Checkpoint, to output: String, options: QuantizationOptions) throws {
    let (selected, _) = try CheckpointQuantizer.preflight(checkpoint, to: output, options: options)
    var encoded: [String: [UInt8]] = [:]
    var shards = checkpoint.mirroredShards
    for fileIndex in checkpoint.files.indices {
        var specs: [TensorSpec] = []
        for entry in checkpoint.entries where entry.fileIndex == fileIndex {
            let info = entry.info
            guard selected.contains(info.name) else {
                specs.append(TensorSpec(name: info.name, dtype: info.dtype, shape: info.shape))
                continue
            }
            let (tensor, _) = try CheckpointQuantizer.encode(checkpoint, entry, options: options)
            for part in tensor.parts {
                specs.append(part.spec)
                encoded[part.spec.name] = part.bytes
            }
        }
        shards[fileIndex].tensors = specs
    }
    let config = checkpoint.config.map {
        CheckpointQuantizer.quantizedConfig($0, scheme: options.scheme, checkpoint: checkpoint, selected: selected)
    }
    _ = try CheckpointWriter.write(from: checkpoint, to: output, shards: shards, config: config, overwrite: false) { info, out in
        if let bytes = encoded.removeValue(forKey: info.name) {
            try out.write(bytes)
        } else {
            try checkpoint.view(checkpoint.entry(named: info.name)!).withBytes { try out.write($0) }
        }
    }
}

/// Every file under `path` (a folder or one file), by name, with its bytes.
private func filesUnder(_ path: String) -> [String: [UInt8]] {
    guard FileSystem.isDirectory(path) else { return [(path as NSString).lastPathComponent: readBytes(path)] }
    return Dictionary(uniqueKeysWithValues: FileSystem.list(path).map { ($0, readBytes(path + "/" + $0)) })
}

@Test("Streamed quantization writes every file byte for byte as the buffered writer did, one file, one folder or three shards",
      arguments: ["nf4", "fp4-128", "nf4-dq", "int8", "int8-32-bf16", "int4", "int4-asym", "int8-channel"])
func streamingMatchesBuffered(label: String) throws {
    let scratch = ScratchDirectory()
    let lone = scratch.file("model.safetensors")
    try FileManager.default.copyItem(atPath: Paths.fixture("models/tiny-llama/model.safetensors"), toPath: lone)
    for (name, input) in [("folder", Paths.fixture("models/tiny-llama")), ("sharded", Paths.fixture("models/tiny-llama-sharded")),
                          ("lone.safetensors", lone)] {
        let checkpoint = try Checkpoint(path: input)
        var options = QuantizationOptions(scheme: scheme(label), threads: ThreadBudget(2))
        options.optimizeScales = label == "int8"  // the searched scales' path too
        try quantizeBuffered(checkpoint, to: scratch.file("buffered-" + name), options: options)
        _ = try CheckpointQuantizer.quantize(checkpoint, to: scratch.file("streamed-" + name), options: options)
        let (buffered, streamed) = (filesUnder(scratch.file("buffered-" + name)), filesUnder(scratch.file("streamed-" + name)))
        #expect(streamed.keys.sorted() == buffered.keys.sorted().map { $0.replacingOccurrences(of: "buffered-", with: "streamed-") },
                "\(label) \(name)")
        for (file, bytes) in buffered {
            #expect(streamed[file.replacingOccurrences(of: "buffered-", with: "streamed-")] == bytes, "\(label) \(name) \(file)")
        }
    }
}

@Test("Quantized bytes are the same with one thread and with two, on the streamed path", arguments: ["nf4", "int4-asym"])
func streamingThreadInvariance(label: String) throws {
    let scratch = ScratchDirectory()
    let checkpoint = try Checkpoint(path: Paths.fixture("models/tiny-llama-sharded"))
    for threads in [1, 2] {
        _ = try CheckpointQuantizer.quantize(checkpoint, to: scratch.file("\(threads)"),
                                             options: QuantizationOptions(scheme: scheme(label), threads: ThreadBudget(threads)))
    }
    #expect(filesUnder(scratch.file("1")) == filesUnder(scratch.file("2")))
}

@Test("Tensors handed to the stream writer in any order land where the layout puts them: the sequential writer's bytes")
func streamWriterAnyOrder() throws {
    let scratch = ScratchDirectory()
    let specs = [TensorSpec(name: "b", dtype: .u8, shape: [3]), TensorSpec(name: "a", dtype: .f32, shape: [2, 2]),
                 TensorSpec(name: "c", dtype: .bf16, shape: [5])]
    let payload = Dictionary(uniqueKeysWithValues: specs.map { spec in (spec.name, (0..<spec.byteCount).map { UInt8($0 * 7 + spec.name.count) }) })
    let layout = SafetensorsLayout(specs, metadata: [("k", "v")])
    try layout.write(to: scratch.file("sequential")) { info, out in try out.write(payload[info.name]!) }
    let writer = try SafetensorsStreamWriter(layout, path: scratch.file("streamed"), window: 1)
    try writer.write([(specs[2], payload["c"]!)])
    try writer.write([(specs[0], payload["b"]!), (specs[1], payload["a"]!)])
    try writer.finish()
    #expect(readBytes(scratch.file("streamed")) == readBytes(scratch.file("sequential")))
}

@Test("The stream writer names a tensor outside its layout, a wrong dtype, a wrong byte count, a repeat and one never written")
func streamWriterRefusals() throws {
    let scratch = ScratchDirectory()
    let spec = TensorSpec(name: "w", dtype: .f32, shape: [2])
    let layout = SafetensorsLayout([spec, TensorSpec(name: "v", dtype: .u8, shape: [1])])
    let path = scratch.file("x")
    let writer = try SafetensorsStreamWriter(layout, path: path)
    #expect(throws: SafetensorsWriteError.unplannedTensor(file: path, tensor: "z")) {
        try writer.write([(TensorSpec(name: "z", dtype: .f32, shape: [2]), [UInt8](repeating: 0, count: 8))])
    }
    #expect(throws: SafetensorsWriteError.differsFromPlan(file: path, tensor: "w", expected: "F32 [2]", actual: "I32 [2]")) {
        try writer.write([(TensorSpec(name: "w", dtype: .i32, shape: [2]), [UInt8](repeating: 0, count: 8))])
    }
    #expect(throws: SafetensorsWriteError.wrongByteCount(file: path, tensor: "w", expected: 8, actual: 4)) {
        try writer.write([(spec, [1, 2, 3, 4])])
    }
    try writer.write([(spec, [UInt8](repeating: 1, count: 8))])
    #expect(throws: SafetensorsWriteError.duplicateTensor(file: path, tensor: "w")) {
        try writer.write([(spec, [UInt8](repeating: 1, count: 8))])
    }
    #expect(throws: SafetensorsWriteError.notWritten(file: path, tensor: "v")) { try writer.finish() }
}

@Test("A weight that fails mid-stream (NaN in the second of two shards) leaves no output and no temporary")
func streamingFailureLeavesNothing() throws {
    let scratch = ScratchDirectory()
    let input = scratch.file("in")
    try FileManager.default.copyItem(atPath: Paths.fixture("models/tiny-llama-sharded"), toPath: input)
    // Poison one weight of the last shard: its first value becomes a bf16 NaN.
    let last = try #require(FileSystem.list(input).last { $0.hasSuffix(".safetensors") })
    let file = try SafetensorsFile(path: input + "/" + last)
    let victim = try #require(file.tensors.first { $0.name.hasSuffix("proj.weight") })
    var bytes = readBytes(input + "/" + last)
    let at = file.dataStart + victim.dataOffsets.lowerBound
    (bytes[at], bytes[at + 1]) = (0xC0, 0x7F)
    scratch.write("in/" + last, bytes)
    #expect(throws: QuantizationError.self) {
        try CheckpointQuantizer.quantize(try Checkpoint(path: input), to: scratch.file("out"), options: QuantizationOptions(scheme: scheme("nf4")))
    }
    #expect(scratch.contents == ["in"])
}

@Test("The non-finite scan names the first NaN or infinity, as a plain search does, on one thread or two",
      arguments: [0, 65_535, 65_536, 131_073, 199_999])
func firstNonFiniteMatchesPlainSearch(position: Int) {
    var values = seededValues(200_000, seed: 7)
    values[position] = position % 2 == 0 ? .nan : -.infinity
    values[min(199_999, position + 70_000)] = .infinity  // a later one, in another piece, must not win
    for threads in [1, 2] {
        let found = QuantizationError.firstNonFinite(values, file: "f", tensor: "t", threads: ThreadBudget(threads))
        #expect(found == .nonFinite(file: "f", tensor: "t", index: position, value: "\(values[position])"), "threads \(threads)")
    }
    #expect(QuantizationError.firstNonFinite(seededValues(200_000, seed: 7), file: "f", tensor: "t", threads: ThreadBudget(2)) == nil)
}
