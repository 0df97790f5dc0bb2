@testable import CheckpointKit
import Foundation
import TestSupport
import Testing

/// Goldens from PEFT 0.21.2 `merge_and_unload`, made by tools/make_lora_goldens.py
/// (fixtures/lora/goldens/manifest.json; adapters in fixtures/lora/adapters).
private func loraManifest() throws -> JSONValue { try readJSON(Paths.fixture("lora/goldens/manifest.json")) }

private func caseNames() -> [String] {
    ((try? loraManifest())?["cases"]?.arrayValue ?? []).compactMap { $0["case"]?.stringValue }
}

/// bf16 merges may differ from PEFT in elements the golden script marks fragile (their f32 sum
/// lies within 2 ulps of a bf16 rounding boundary, so summation order decides): one bf16 step at most.
@Test("Merged weights equal PEFT's: identical after bf16 rounding, within 1e-5 relative for f32", arguments: caseNames())
func peftGolden(name: String) throws {
    let entry = try #require(try loraManifest()["cases"]?.arrayValue?.first { $0["case"]?.stringValue == name })
    let scratch = ScratchDirectory()
    var base = Paths.fixture(try #require(entry["base"]?.stringValue))
    if entry["base_widened_to_f32"]?.boolValue == true {
        _ = try CheckpointConverter.convert(try Checkpoint(path: base), to: scratch.file("f32"), options: .init(targetType: .f32))
        let expected = try loraManifest()["f32_base"]?["sha256_of_widened_model_safetensors"]?.stringValue
        #expect(sha256Hex(readBytes(scratch.file("f32/model.safetensors"))) == expected, "widened base differs from the golden script's")
        base = scratch.file("f32")
    }
    let adapters = try #require(entry["adapters"]?.arrayValue).map { a in
        (adapter: try LoRAAdapter(folder: Paths.fixture(a["path"]!.stringValue!)), weight: a["weight"]!.doubleValue!)
    }
    _ = try CheckpointMerger.merge(base: try Checkpoint(path: base), adapters: adapters, to: scratch.file("out"), options: .init())
    let merged = try Checkpoint(path: scratch.file("out"))
    let golden = try SafetensorsFile(path: Paths.fixture(try #require(entry["golden"]?.stringValue)))
    let fragile = entry["bf16_fragile"]?["by_tensor"]
    for info in golden.tensors {
        let ours = try #require(merged.view(named: info.name), "\(info.name) missing from the merge")
        #expect(ours.dtype == info.dtype && ours.shape == info.shape, "\(info.name)")
        let a = FloatValues.array(ours), b = FloatValues.array(golden.view(info))
        if info.dtype == .bf16 {
            // OpenBLAS picks its sgemm kernel by CPU (AVX2 here, AVX-512 there), so summation order, and with
            // it the rounding of a sum near a bf16 boundary, differs by machine: beyond the golden's fragile
            // elements, a few one-step differences (at most 1 in 1,000) are summation order, not a bug.
            let allowed = Set(fragile?[info.name]?["indices"]?.arrayValue?.compactMap(\.intValue) ?? [])
            var unmarked = 0
            for i in a.indices where a[i] != b[i] {
                let steps = abs(Int(a[i].bitPattern >> 16) - Int(b[i].bitPattern >> 16))
                #expect(steps == 1, "\(name): \(info.name)[\(i)] = \(a[i]), PEFT \(b[i])")
                if !allowed.contains(i) { unmarked += 1 }
            }
            #expect(unmarked * 1000 <= a.count, "\(name): \(info.name): \(unmarked) one-step differences outside the fragile set")
        } else {
            // Relative to the element, floored at 1e-2 of unit scale: sums that cancel to near zero keep
            // the absolute error of their terms, whatever order sgemm adds them in.
            for i in a.indices {
                #expect(abs(a[i] - b[i]) <= 1e-5 * max(abs(b[i]), 1e-2), "\(name): \(info.name)[\(i)] = \(a[i]), PEFT \(b[i])")
            }
        }
    }
    // Nothing else changed.
    let base0 = try Checkpoint(path: base)
    for entry in base0.entries where golden.info(named: entry.info.name) == nil {
        #expect(merged.view(named: entry.info.name)?.byteArray == base0.view(entry).byteArray, "\(name): \(entry.info.name) changed")
    }
}

/// The golden script's deterministic base generator (fixtures/lora/README.md, splitmix64-fnv1a64-v1).
func generatedBaseValues(name: String, count: Int) -> [Float] {
    var seed: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in name.utf8 { seed = (seed ^ UInt64(b)) &* 0x100_0000_01b3 }
    return (0..<count).map { k in
        var z = seed &+ UInt64(k + 1) &* 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return Float((Double(z >> 40) / 16_777_216.0 - 0.5) * 0.1)
    }
}

@Test("The base generator reproduces the golden script's check values")
func generatorCheck() {
    #expect(generatedBaseValues(name: "transformer.h.0.attn.c_attn.weight", count: 4)
        == [0.011219930835068226, -0.046005021780729294, -0.02654176950454712, 0.010375762358307838])
}

@Test("The real GPT-2 (Conv1D) and OPT-125m (bf16) adapters merge as PEFT merges them", arguments: ["gpt2-tigrinya-lora", "opt125m-dpo-lora"])
func realAdapters(name: String) throws {
    let folder = Paths.sharedAssets + "/lora/" + name
    guard FileManager.default.fileExists(atPath: folder) else {
        print("skipped: \(folder) is absent (the shared assets are not on this machine)")
        return
    }
    let entry = try #require(try loraManifest()["real_adapters"]?[name])
    let tensors = try #require(entry["tensors"]?.arrayValue)
    let dtype: DType = entry["base_dtype"]?.stringValue == "bfloat16" ? .bf16 : .f32
    let scratch = ScratchDirectory()
    try FileManager.default.createDirectory(atPath: scratch.file("base"), withIntermediateDirectories: true)
    let specs = tensors.map { TensorSpec(name: $0["tensor"]!.stringValue!, dtype: dtype, shape: $0["shape"]!.arrayValue!.map { $0.intValue! }) }
    try SafetensorsLayout(specs).write(to: scratch.file("base/model.safetensors")) { info, out in
        let values = generatedBaseValues(name: info.name, count: info.elementCount)
        var bytes = [UInt8](repeating: 0, count: info.byteCount)
        values.withUnsafeBytes { src in bytes.withUnsafeMutableBytes { FloatConversion.convert(src, from: .f32, to: dtype, into: $0) } }
        try out.write(bytes)
    }
    let base = try Checkpoint(path: scratch.file("base"))
    for t in tensors {
        let tensorName = t["tensor"]!.stringValue!
        #expect(sha256Hex(base.view(named: tensorName)!.byteArray) == t["sha256"]?.stringValue, "generated \(tensorName)")
    }
    _ = try CheckpointMerger.merge(base: base, adapters: [(try LoRAAdapter(folder: folder), 1)], to: scratch.file("out"), options: .init())
    let merged = try Checkpoint(path: scratch.file("out"))
    let samples = try SafetensorsFile(path: Paths.fixture("lora/goldens/real-\(name).safetensors"))
    for t in tensors {
        let tensorName = t["tensor"]!.stringValue!
        let values = FloatValues.array(try #require(merged.view(named: tensorName)))
        let n = values.count
        let expected = FloatValues.array(try #require(samples.view(named: tensorName)))
        for j in 0..<256 {
            let ours = values[((2 * j + 1) * n) / 512], theirs = expected[j]
            if dtype == .bf16 {
                #expect(abs(Int(ours.bitPattern >> 16) - Int(theirs.bitPattern >> 16)) <= 1, "\(tensorName) sample \(j)")
            } else {
                #expect(abs(ours - theirs) <= 1e-5 * max(abs(theirs), 1e-3), "\(tensorName) sample \(j)")
            }
        }
        let sum = values.reduce(0.0) { $0 + Double($1) }, squares = values.reduce(0.0) { $0 + Double($1) * Double($1) }
        #expect(abs(sum - t["merged_sum"]!.doubleValue!) <= 1e-4 * max(1, abs(t["merged_sum"]!.doubleValue!)), "\(tensorName) sum")
        #expect(abs(squares / t["merged_sum_of_squares"]!.doubleValue! - 1) < 1e-6, "\(tensorName) sum of squares")
    }
}
