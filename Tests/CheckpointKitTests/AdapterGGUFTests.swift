@testable import CheckpointKit
import Foundation
import TestSupport
import Testing

/// Goldens from llama.cpp's convert_lora_to_gguf.py (llama-cpp-python 0.3.36's vendored copy):
/// fixtures/lora/gguf/goldens.json, made by tools/make_lora_gguf_goldens.py.
private let goldens: JSONValue = try! readJSON(Paths.fixture("lora/gguf/goldens.json"))

private func cases() -> [String] {
    (goldens["cases"]?.arrayValue ?? []).map { "\($0["adapter"]!.stringValue!) \($0["outtype"]!.stringValue!)" }
}

@Test("The LoRA GGUF ckpt writes holds convert_lora_to_gguf.py's tensors, byte for byte", arguments: cases())
func adapterGGUFMatchesConverter(label: String) throws {
    let golden = goldens["cases"]!.arrayValue!.first { "\($0["adapter"]!.stringValue!) \($0["outtype"]!.stringValue!)" == label }!
    let scratch = ScratchDirectory()
    let adapter = try LoRAAdapter(folder: Paths.fixture("lora/adapters/" + golden["adapter"]!.stringValue!))
    let base = try Checkpoint(path: Paths.fixture(golden["base"]!.stringValue!))
    let report = try AdapterGGUFWriter.write(adapter, base: base, to: scratch.file("lora.gguf"),
                                             type: AdapterGGUFWriter.outputType(golden["outtype"]!.stringValue!)!, overwrite: false, threads: .single)
    let file = try GGUFFile(path: scratch.file("lora.gguf"))
    for key in ["general.architecture", "general.type", "adapter.type"] {
        #expect(file.value(key)?.stringValue == golden["metadata"]?[key]?.stringValue, "\(key)")
    }
    #expect(file.value("adapter.lora.alpha")?.doubleValue == golden["metadata"]?["adapter.lora.alpha"]?.doubleValue)
    let expected = golden["tensors"]!.objectMembers!
    #expect(Set(file.tensors.map(\.name)) == Set(expected.map(\.0)))
    let folded = Set(report.pairs.filter { $0.foldedIntoB != 1 }.map { $0.tensor + ".lora_b" })
    for (name, want) in expected {
        guard let info = file.info(named: name) else { continue }
        #expect(info.type.name == want["type"]?.stringValue, "\(name) type")
        #expect(info.dimensions == want["ne"]?.arrayValue?.compactMap(\.intValue), "\(name) ne")
        // A folded lora_b carries PEFT's true scaling, which the converter drops (checked below instead).
        if folded.contains(name) { continue }
        #expect(sha256Hex(Array(file.bytes(info))) == want["sha256"]?.stringValue, "\(name) bytes")
    }
}

@Test("rsLoRA and per-module patterns: alpha/r times the written pair is PEFT's scaling times B·A")
func foldedScalingIsPEFTs() throws {
    let scratch = ScratchDirectory()
    let adapter = try LoRAAdapter(folder: Paths.fixture("lora/adapters/llama-rslora-patterns"))
    let report = try AdapterGGUFWriter.write(adapter, base: try Checkpoint(path: Paths.fixture("models/tiny-llama")), to: scratch.file("lora.gguf"),
                                             type: .f32, overwrite: false, threads: .single)
    let file = try GGUFFile(path: scratch.file("lora.gguf"))
    let alpha = Double(file.value("adapter.lora.alpha")!.doubleValue!)
    #expect(report.pairs.contains { $0.foldedIntoB != 1 })
    for pair in report.pairs {
        let hf = GGUFLlamaNames.hfName(pair.tensor)!
        let module = "base_model.model." + hf.dropLast(".weight".count)
        let (_, scaling) = adapter.config.rankAndScaling(module: String(hf.dropLast(".weight".count)))
        var b = FloatValues.array(adapter.file.view(named: module + ".lora_B.weight")!)
        let rows = b.count / pair.rank
        if let heads = pair.tensor.contains("attn_q") ? 4 : pair.tensor.contains("attn_k") ? 2 : nil {
            b = GGUFLlamaNames.permuteRows(b, rows: rows, columns: pair.rank, heads: heads, toGGUF: true)
        }
        let written = file.float32(file.info(named: pair.tensor + ".lora_b")!)
        let factor = scaling * Double(pair.rank) / alpha
        #expect(zip(written, b).allSatisfy { $0 == Float(Double($1) * factor) }, "\(pair.tensor): lora_b × alpha/r = B × PEFT's scaling")
    }
}

@Test("Adapters a LoRA GGUF cannot hold are refused by name, and nothing is written: DoRA, modules_to_save, a block type")
func adapterGGUFRefusals() throws {
    let scratch = ScratchDirectory()
    let llama = try Checkpoint(path: Paths.fixture("models/tiny-llama"))
    #expect(throws: AdapterGGUFError.self) {
        try AdapterGGUFWriter.write(try LoRAAdapter(folder: Paths.fixture("lora/adapters/llama-dora")), base: llama, to: scratch.file("a.gguf"),
                                    type: .f32, overwrite: false)
    }
    do {
        _ = try AdapterGGUFWriter.write(try LoRAAdapter(folder: Paths.fixture("lora/adapters/llama-embedding-lora")), base: llama,
                                        to: scratch.file("b.gguf"), type: .f32, overwrite: false)
        Issue.record("modules_to_save was written")
    } catch let error as AdapterGGUFError {
        #expect("\(error)".contains("modules_to_save stores a whole tensor"))
    }
    #expect(throws: AdapterGGUFError.unsupportedType("Q4_K")) {
        try AdapterGGUFWriter.write(try LoRAAdapter(folder: Paths.fixture("lora/adapters/llama-lora-second")), base: llama, to: scratch.file("c.gguf"),
                                    type: .q4_K, overwrite: false)
    }
    #expect(!FileManager.default.fileExists(atPath: scratch.file("a.gguf")) && !FileManager.default.fileExists(atPath: scratch.file("b.gguf")))
}
