@testable import CheckpointKit
import Foundation
import TestSupport
import Testing

/// Goldens from gguf-py 0.19 and torch 2.15, made by tools/make_conversion_goldens.py (fixtures/convert).
private func json(_ relative: String) throws -> JSONValue { try readJSON(Paths.fixture("convert/" + relative)) }

private func caseName(_ error: Error) -> String { Mirror(reflecting: error).children.first?.label ?? "\(error)" }

@Test("GGML dequantization is bit-exact with gguf-py for every type, on chosen and random blocks")
func ggmlDequantization() throws {
    let file = try SafetensorsFile(path: Paths.fixture("convert/quants.safetensors"))
    let types = try #require(try json("quants.json")["types"]?.objectMembers)
    var checked = 0
    var typesChecked = Set<String>()
    for (name, _) in types {
        guard let type = GGMLType.all.first(where: { $0.name == name }) else { continue }  // K-quants: not dequantized
        for (raw, expected) in [(".quantized", ".dequantized"), (".random_raw", ".random_dequantized")] {
            guard let bytes = file.view(named: name + raw), let golden = file.view(named: name + expected) else { continue }
            let ours = bytes.withBytes { type.decode($0, count: golden.elementCount) }
            #expect(ours.map(\.bitPattern) == FloatValues.array(golden).map(\.bitPattern), "\(name)\(raw)")
            checked += 1
            typesChecked.insert(name)
        }
    }
    #expect(checked >= 14)
    #expect(typesChecked.isSuperset(of: ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "F16", "BF16", "Q4_K", "Q5_K", "Q6_K"]))
}

@Test("Q8_0 and Q4_0 quantization is byte-identical to gguf-py's", arguments: [GGMLType.q8_0, .q4_0])
func ggmlQuantization(type: GGMLType) throws {
    let file = try SafetensorsFile(path: Paths.fixture("convert/quants.safetensors"))
    let input = FloatValues.array(try #require(file.view(named: type.name + ".input")))
    let expected = try #require(file.view(named: type.name + ".quantized")).byteArray
    let ours = input.withUnsafeBufferPointer { type == .q8_0 ? Q8_0Codec.quantize($0) : Q4_0Codec.quantize($0) }
    #expect(ours == expected)
}

@Test("Every hostile GGUF file gives the error case its manifest names")
func hostileGGUF() throws {
    let cases = try #require(try json("gguf_bad/manifest.json")["cases"]?.arrayValue)
    #expect(cases.count >= 25)
    // Names of ckpt's cases where the manifest groups several under one.
    let accepted = ["misalignedData": ["misalignedData", "overlappingData", "badAlignment"]]
    for c in cases {
        let file = try #require(c["file"]?.stringValue), expected = try #require(c["case"]?.stringValue)
        do {
            _ = try GGUFFile(path: Paths.fixture("convert/gguf_bad/" + file))
            Issue.record("\(file) was accepted; expected \(expected)")
        } catch {
            #expect((accepted[expected] ?? [expected]).contains(caseName(error)), "\(file): \(error)")
        }
    }
    #expect(try GGUFFile(path: Paths.fixture("convert/gguf_bad/good.gguf")).tensors.count > 0)
}

@Test("GGUF v2 and v3 files with every metadata type and tensor type read as gguf-py reads them")
func ggufReader() throws {
    let files = try #require(try json("gguf_reader/manifest.json")["files"]?.arrayValue)
    for f in files {
        let name = try #require(f["file"]?.stringValue)
        let gguf = try GGUFFile(path: Paths.fixture("convert/gguf_reader/" + name))
        #expect(Int(gguf.version) == f["version"]?.intValue, "\(name)")
        if let alignment = f["alignment"]?.intValue { #expect(gguf.alignment == alignment && gguf.dataStart == f["data_start"]?.intValue, "\(name)") }
        if let keys = f["metadata"]?.arrayValue?.compactMap({ $0["key"]?.stringValue }) { #expect(gguf.metadata.map(\.0) == keys, "\(name) keys") }
        for t in f["tensors"]?.arrayValue ?? [] {
            let info = try #require(gguf.info(named: t["name"]!.stringValue!))
            if let values = t["values"]?.arrayValue?.compactMap(\.doubleValue) {
                #expect(gguf.float32(info).map(Double.init) == values, "\(name) \(info.name)")
                continue
            }
            guard t["sha256"] != nil else { continue }
            #expect(info.type.rawValue == UInt32(t["type_id"]?.intValue ?? -1) && info.dimensions == t["ne"]!.arrayValue!.map { $0.intValue! })
            #expect(sha256Hex(gguf.bytes(info).map { $0 }) == t["sha256"]?.stringValue, "\(name) \(info.name) bytes")
            guard let expected = t["dequantized_f32_sha256"]?.stringValue else { continue }  // gguf-py recorded no dequantization
            let values = gguf.float32(info)
            #expect(sha256Hex(values.withUnsafeBytes { Array($0) }) == expected, "\(name) \(info.name)")
        }
    }
}

@Test("The tiny Llama GGUF (every GGML type) converts to the tensors transformers loads from it")
func ggufToHuggingFace() throws {
    let golden = try #require(try json("gguf.json")["tiny-llama.gguf"])
    let scratch = ScratchDirectory()
    let gguf = try GGUFFile(path: Paths.fixture("convert/tiny-llama.gguf"))
    _ = try CheckpointConverter.convert(try Checkpoint(path: gguf.path), to: scratch.file("hf"), options: .init(targetType: .f32))
    let converted = try Checkpoint(path: scratch.file("hf"))
    let tensors = try #require(golden["tensors"]?.arrayValue)
    #expect(tensors.count == 39)
    for t in tensors {
        let hf = try #require(t["hf_name"]?.stringValue)
        let view = try #require(converted.view(named: hf), "\(hf) missing")
        #expect(sha256Hex(view.byteArray) == t["hf_f32_sha256"]?.stringValue, "\(hf)")
    }
    let config = try #require(converted.config)
    for key in ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "vocab_size"] {
        #expect(config[key]?.intValue == golden["expected_config"]?[key]?.intValue, "\(key)")
    }
    let tokenizer = try Tokenizer(path: scratch.file("hf/tokenizer.json"))
    let expected = golden["tokenizer"]?["with_special_tokens_hello_world"]?.arrayValue?.compactMap(\.intValue)
    #expect(tokenizer.encode("Hello world") == expected || expected == nil)
    let original = try Tokenizer(path: Paths.fixture("models/tiny-llama/tokenizer.json"))
    let text = try String(contentsOfFile: Paths.fixture("text/eval.txt"), encoding: .utf8)
    #expect(tokenizer.encode(text) == original.encode(text))
}

@Test("PyTorch checkpoints read with torch.load's tensors: every dtype, views, shared storages, shards")
func pytorchGoldens() throws {
    let files = try #require(try json("pytorch/manifest.json")["files"]?.objectMembers)
    for (name, golden) in files {
        let checkpoint = try PyTorchCheckpoint(path: Paths.fixture("convert/pytorch/" + name))
        let expected = try #require(golden["tensors"]?.arrayValue)
        #expect(checkpoint.tensors.map(\.name) == expected.compactMap { $0["name"]?.stringValue }, "\(name)")
        for (ours, t) in zip(checkpoint.tensors, expected) {
            #expect(ours.shape == t["shape"]?.arrayValue?.compactMap(\.intValue), "\(name) \(ours.name) shape")
            #expect(withExtendedLifetime(checkpoint) { sha256Hex(Array(ours.bytes)) } == t["contiguous_sha256"]?.stringValue, "\(name) \(ours.name)")
        }
    }
}

@Test("A pickle that calls anything outside a state dict's needs is refused by name, nothing executed")
func hostilePickles() throws {
    let manifest = try json("pickles_bad/manifest.json")
    for c in try #require(manifest["cases"]?.arrayValue) {
        let file = try #require(c["file"]?.stringValue), expected = try #require(c["case"]?.stringValue)
        do {
            let loaded = try PyTorchCheckpoint(path: Paths.fixture("convert/pickles_bad/" + file))
            #expect(expected == "deflatedMember", "\(file) was accepted; expected \(expected)")
            #expect(!loaded.tensors.isEmpty)
        } catch let error as PickleError {
            if case .forbiddenGlobal(_, let name) = error { #expect(name == c["global"]?.stringValue, "\(file)") }
            #expect(caseName(error) == expected, "\(file): \(error)")
        } catch let error as ZipError {
            let names = ["truncatedZip": ["notAZip", "truncated"], "badCRC": ["badCRC"]][expected] ?? []
            #expect(names.contains(caseName(error)), "\(file): \(error)")
        }
    }
}

@Test("The SIMD Q8_0 quantizer (Swift, and its AVX-512 twin where the CPU has it) equals its scalar reference on awkward blocks, at 1 and 2 threads")
func q8FastMatchesReference() {
    var rng = SeededGenerator(seed: 77)
    var x = (0..<(32 * 300)).map { _ in Float.random(in: -2...2, using: &rng) }
    for i in 0..<32 { x[32 + i] = 0 }  // a zero block
    for i in 0..<32 { x[64 + i] = Float(i) - 15.5 }  // exact halves after scaling
    for i in 0..<32 { x[96 + i] = 1e-30 * (Float(i) - 15.5) }  // tiny values
    for i in 0..<32 { x[160 + i] = 1e-40 * (Float(i) - 15.5) }  // subnormals: 1/d overflows, every code 0 as in llama.cpp on x86
    for i in 0..<32 { x[128 + i] = i == 0 ? 127 : Float(i) * (i % 2 == 0 ? 0.5 : -0.5) }  // scale 1: ties at ±k.5
    x[200] = 1e30
    x[300] = -1e-30
    let reference = x.withUnsafeBufferPointer { Q8_0Codec.quantizeReference($0) }
    #expect(reference[(5 * 34 + 2)..<(6 * 34)].allSatisfy { $0 == 0 }, "the subnormal block")
    for threads in [1, 2] {
        #expect(x.withUnsafeBufferPointer { Q8_0Codec.quantize($0, threads: ThreadBudget(threads)) } == reference)
        for wide in avx512Available ? [false, true] : [false] {
            #expect(x.withUnsafeBufferPointer { Q8_0Codec.quantize($0, threads: ThreadBudget(threads), wide: wide) } == reference, "AVX-512 \(wide)")
        }
    }
}

@Test("The SIMD Q4_0 quantizer equals its scalar reference on awkward blocks, at 1 and 2 threads")
func q4FastMatchesReference() {
    var rng = SeededGenerator(seed: 78)
    var x = (0..<(32 * 300)).map { _ in Float.random(in: -2...2, using: &rng) }
    for i in 0..<32 { x[32 + i] = 0 }  // a zero block: d = −0
    for i in 0..<32 { x[64 + i] = -0.0 }  // and its negative: d = +0
    for i in 0..<32 { x[96 + i] = (Float(i) - 15.5) / 2 }  // codes landing on exact halves and integers
    x[128] = 1.5; x[140] = -1.5  // both signs at the largest magnitude: the first decides
    x[160] = -1.5; x[170] = 1.5
    for i in 0..<32 { x[192 + i] = Float(i % 17) * 0.125 - 1 }
    x[230] = 1e30  // a huge value
    x[260] = -1e-30
    x[300] = .nan  // non-finite blocks go through the reference
    x[333] = .infinity
    x[380] = -.infinity
    for i in 0..<32 { x[416 + i] = 1e-40 * Float(i) }  // subnormals
    let reference = x.withUnsafeBufferPointer { Q4_0Codec.quantizeReference($0) }
    for threads in [1, 2] {
        #expect(x.withUnsafeBufferPointer { Q4_0Codec.quantize($0, threads: ThreadBudget(threads)) } == reference)
    }
    // Both block kernels, whichever the CPU picks: the Swift SIMD one and the AVX-512 twin.
    for wide in avx512Available ? [false, true] : [false] {
        var blocks = [UInt8](repeating: 0, count: reference.count)
        x.withUnsafeBufferPointer { p in blocks.withUnsafeMutableBytes { Q4_0Codec.quantizeBlocks(p.baseAddress!, blocks: p.count / 32, into: $0.baseAddress!, wide: wide) } }
        #expect(blocks == reference, "AVX-512 \(wide)")
    }
    var rows = [UInt8](repeating: 0, count: reference.count)
    x.withUnsafeBufferPointer { p in rows.withUnsafeMutableBytes { KQuantizers.q4_0(p.baseAddress!, p.count, nil, $0.baseAddress!) } }
    #expect(rows == reference)
}

