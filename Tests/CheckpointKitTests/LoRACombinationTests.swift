@testable import CheckpointKit
import Foundation
import TestSupport
import Testing

/// Goldens from PEFT 0.21.2 `add_weighted_adapter`, made by tools/make_lora_combination_goldens.py
/// (fixtures/lora/combination/manifest.json and goldens.safetensors).
private func combinationManifest() throws -> JSONValue { try readJSON(Paths.fixture("lora/combination/manifest.json")) }

private func combinationCases() -> [String] {
    ((try? combinationManifest())?["cases"]?.arrayValue ?? []).compactMap { entry in
        guard let c = entry["case"]?.stringValue, let m = entry["label"]?.stringValue else { return nil }
        return c + " " + m
    }
}

/// The adapter folder a manifest reference names, or nil when it is a shared asset that is absent.
private func adapterFolder(_ reference: String) -> String? {
    if reference.hasPrefix("shared:") {
        let folder = Paths.sharedAssets + "/lora/" + reference.dropFirst("shared:".count)
        return FileManager.default.fileExists(atPath: folder) ? folder : nil
    }
    return Paths.fixture(reference)
}

/// The sampled positions of the golden script: ((2j+1)·n) / (2m), m = min(n, 32).
private func samplePositions(_ n: Int) -> [Int] {
    let m = min(n, 32)
    return (0..<m).map { j in ((2 * j + 1) * n) / (2 * m) }
}

/// PEFT's masks for one case and method, unpacked (little-endian bits).
private func recordedMasks(_ golden: SafetensorsFile, case name: String, method: String) -> [String: [Bool]] {
    let prefix = "mask/\(name)/\(method)/"
    var masks: [String: [Bool]] = [:]
    for info in golden.tensors where info.name.hasPrefix(prefix) {
        let bytes = golden.view(info).byteArray
        var bits = [Bool](repeating: false, count: bytes.count * 8)
        for i in bits.indices { bits[i] = (bytes[i / 8] >> UInt8(i % 8)) & 1 == 1 }
        masks[String(info.name.dropFirst(prefix.count))] = bits
    }
    return masks
}

@Test("Combined adapters equal PEFT's add_weighted_adapter for every method (DARE on PEFT's own masks)", arguments: combinationCases())
func combinationMatchesPEFT(label: String) throws {
    let parts = label.split(separator: " ").map(String.init)
    let entry = try #require(try combinationManifest()["cases"]?.arrayValue?.first {
        $0["case"]?.stringValue == parts[0] && $0["label"]?.stringValue == parts[1]
    })
    // `svd@clamp`: clamped at a quantile of the factors' values, which sees the signs of the singular
    // pairs: LAPACK's choice (MKL's in torch, OpenBLAS's here), so the test feeds PEFT's signs to ckpt.
    let clamped = parts[1].hasSuffix("@clamp")
    let references = try #require(entry["adapters"]?.arrayValue?.compactMap { $0.stringValue })
    let folders = references.map(adapterFolder)
    guard folders.allSatisfy({ $0 != nil }) else {
        print("skipped: \(label): ../shared/assets/lora is absent (the shared assets are not on this machine)")
        return
    }
    let weights = try #require(entry["weights"]?.arrayValue?.compactMap { $0.doubleValue })
    let adapters = try zip(folders, weights).map { (adapter: try LoRAAdapter(folder: $0!), weight: $1) }
    let method = try #require(CombinationMethod(rawValue: entry["method"]?.stringValue ?? ""))
    var options = CombinationOptions(method: method, density: entry["density"]?.doubleValue)
    options.majoritySign = try #require(TaskMerging.MajoritySign(rawValue: entry["majority_sign_method"]?.stringValue ?? ""))
    options.svdRank = entry["svd_rank"]?.intValue
    options.svdClamp = entry["svd_clamp"]?.doubleValue
    let golden = try SafetensorsFile(path: Paths.fixture("lora/combination/goldens.safetensors"))
    options.recordedMasks = recordedMasks(golden, case: parts[0], method: parts[1])
    let signPrefix = "svdsign/\(parts[0])/\(parts[1])/"
    for info in golden.tensors where info.name.hasPrefix(signPrefix) {
        options.recordedSVDSigns[String(info.name.dropFirst(signPrefix.count))] = FloatValues.array(golden.view(info))
    }

    if entry["peft_error"] != nil {
        #expect(throws: CombinationError.self, "PEFT refuses \(label); so must ckpt") { try AdapterCombiner.combine(adapters, options: options) }
        return
    }
    let combined = try AdapterCombiner.combine(adapters, options: options)
    #expect(combined.rank == entry["new_rank"]?.intValue)
    #expect(combined.config["lora_alpha"]?.intValue == entry["lora_alpha"]?.intValue)
    #expect(combined.config["target_modules"] == entry["target_modules"], "target_modules")
    let expectedModules = try #require(entry["modules"]?.arrayValue?.compactMap { $0.stringValue })
    #expect(combined.modules.map(\.name).sorted() == expectedModules)

    for module in combined.modules {
        let prefix = "\(parts[0])/\(parts[1])/\(module.name)"
        if method.usesSVD {
            // B·A at the sampled positions (an SVD's signs are LAPACK's choice; the product is not).
            let info = try #require(golden.info(named: prefix + "/delta"))
            let expected = FloatValues.array(golden.view(info))
            let positions = samplePositions(module.outputs * module.inputs)
            // An f32 SVD's errors scale with the largest singular value σ₁ (B's largest column norm), not with each entry.
            var sigma: Float = 0
            for c in 0..<module.rank {
                var norm: Float = 0
                for i in 0..<module.outputs { norm += module.b[i * module.rank + c] * module.b[i * module.rank + c] }
                sigma = max(sigma, norm.squareRoot())
            }
            var worst: (excess: Float, position: Int, got: Float, want: Float) = (0, -1, 0, 0)
            for (p, want) in zip(positions, expected) {
                let (i, j) = (p / module.inputs, p % module.inputs)
                var got = 0.0
                for r in 0..<module.rank { got += Double(module.b[i * module.rank + r]) * Double(module.a[r * module.inputs + j]) }
                let tolerance = max(1e-5 * abs(want), (clamped ? 1e-5 : 1e-6) * sigma)
                let excess = abs(Float(got) - want) / tolerance
                if excess > worst.excess { worst = (excess, p, Float(got), want) }
            }
            #expect(worst.excess <= 1, "\(label): \(module.name) B·A[\(worst.position)] = \(worst.got), PEFT \(worst.want), σ₁ \(sigma)")
        } else {
            for (part, values) in [("A", module.a), ("B", module.b)] {
                let info = try #require(golden.info(named: prefix + "/" + part))
                let expected = FloatValues.array(golden.view(info))
                for (p, want) in zip(samplePositions(values.count), expected) {
                    #expect(abs(values[p] - want) <= 1e-5 * max(abs(want), 1e-3), "\(label): \(module.name) \(part)[\(p)] = \(values[p]), PEFT \(want)")
                }
            }
        }
    }
}

/// Two same-rank fixture adapters (r = 8).
private func equalRankAdapters() throws -> [(adapter: LoRAAdapter, weight: Double)] {
    [(try LoRAAdapter(folder: Paths.fixture("lora/adapters/llama-lora-all-linear")), 0.7),
     (try LoRAAdapter(folder: Paths.fixture("lora/combination/adapters/llama-lora-third")), 0.4)]
}

@Test("A combined adapter written to a folder reads back as a PEFT adapter with the same values")
func combinedAdapterRoundTrips() throws {
    let combined = try AdapterCombiner.combine(try equalRankAdapters(), options: .init(method: .ties, density: 0.5))
    let scratch = ScratchDirectory()
    try combined.write(to: scratch.file("ties"), overwrite: false)
    let loaded = try LoRAAdapter(folder: scratch.file("ties"))
    #expect(loaded.config.rank == 8 && loaded.config.alpha == 8)
    #expect(loaded.modules.count == combined.modules.count)
    for module in combined.modules {
        let read = try #require(loaded.modules.first { $0.name == module.name })
        #expect(FloatValues.array(read.a) == module.a && FloatValues.array(read.b) == module.b, "\(module.name)")
        #expect(read.a.shape == [module.rank, module.inputs] && read.b.shape == [module.outputs, module.rank])
    }
    // The first adapter's other settings are kept; the patterns are emptied.
    let config = try readJSON(scratch.file("ties/adapter_config.json"))
    #expect(config["task_type"]?.stringValue == "CAUSAL_LM" && config["rank_pattern"] == .object([]))
}

@Test("Merging a combination equals the base plus the combined adapter's B·A")
func mergingACombinationAddsItsDelta() throws {
    let combined = try AdapterCombiner.combine(try equalRankAdapters(), options: .init(method: .cat))
    let scratch = ScratchDirectory()
    let base = try Checkpoint(path: Paths.fixture("models/tiny-llama"))
    let report = try CheckpointMerger.merge(base: base, combined: combined, sources: try equalRankAdapters().map(\.adapter),
                                            to: scratch.file("merged"), options: .init(dtype: .f32))
    #expect(report.rows.count == combined.modules.count)
    let merged = try Checkpoint(path: scratch.file("merged"))
    let module = try #require(combined.modules.first { $0.name == "model.layers.1.mlp.down_proj" })
    let before = FloatValues.array(try #require(base.view(named: module.name + ".weight")))
    let after = FloatValues.array(try #require(merged.view(named: module.name + ".weight")))
    let delta = AdapterCombiner.delta(a: module.a, b: module.b, rank: module.rank, inputs: module.inputs, outputs: module.outputs,
                                      scaling: combined.scaling)
    for i in before.indices { #expect(abs(after[i] - (before[i] + delta[i])) <= 1e-6 * max(1, abs(after[i])), "[\(i)]") }
    // Nothing is left beside the output.
    #expect(FileManager.default.fileExists(atPath: scratch.file("merged")))
    #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.path).filter { $0.contains("combined") }.isEmpty)
}

@Test("DARE masks follow --seed: the same seed gives the same adapter, another seed another one")
func dareFollowsTheSeed() throws {
    var options = CombinationOptions(method: .dareTies, density: 0.5)
    options.seed = 7
    let first = try AdapterCombiner.combine(try equalRankAdapters(), options: options)
    let again = try AdapterCombiner.combine(try equalRankAdapters(), options: options)
    options.seed = 8
    let other = try AdapterCombiner.combine(try equalRankAdapters(), options: options)
    #expect(first.modules.map(\.a) == again.modules.map(\.a))
    #expect(first.modules.map(\.a) != other.modules.map(\.a))
    // About half the values survive each mask.
    let mask = TaskMerging.randomMask(count: 100_000, density: 0.3, seed: 1)
    #expect(abs(Double(mask.filter { $0 }.count) / 100_000 - 0.3) < 0.01)
}

@Test("Magnitude pruning keeps the ⌊density·n⌋ largest magnitudes, equal ones as torch.topk picks them")
func magnitudePruningKeepsTheLargest() {
    #expect(TaskMerging.keepLargest([1, -5, 3, -3, 0.5], density: 0.6) == [0, -5, 3, -3, 0])
    // torch.topk(tensor([2., 2., 2., 1.]), 2).indices is [1, 2] (pinned torch 2.15).
    #expect(TaskMerging.keepLargest([2, -2, 2, 1], density: 0.5) == [0, -2, 2, 0])
    #expect(TaskMerging.keepLargest([1, 2, 3], density: 0.2) == [0, 0, 0])
    #expect(TaskMerging.keepLargest([1, 2, 3], density: 1) == [1, 2, 3])
}

@Test("The clamp quantile interpolates between ranks as torch.quantile does")
func quantileInterpolates() {
    // torch.quantile(tensor([4., 1., 3., 2.]), 0.3) = 1.9; q = 1 is the largest value.
    #expect(abs(AdapterCombiner.quantile([4, 1, 3, 2], 0.3) - 1.9) < 1e-6)
    #expect(AdapterCombiner.quantile([4, 1, 3, 2], 1) == 4)
    #expect(AdapterCombiner.quantile([-2, 5], 0.5) == 1.5)
}

@Test("TIES elects the sign and averages only the agreeing values")
func tiesAveragesAgreeingValues() {
    let merged = TaskMerging.combine([[1, -4, 2], [3, 1, -1]], weights: [1, 1], rule: .ties, density: 1)
    // Column 0: both positive → (1 + 3) / 2; column 1: total −3 → only −4; column 2: total +1 → only 2.
    #expect(merged == [2, -4, 2])
    let byCount = TaskMerging.combine([[1, -4, 2], [3, 1, -1]], weights: [1, 1], rule: .ties, density: 1, majoritySign: .frequency)
    // Column 1 by frequency: one each → ties to +1 → only 1.
    #expect(byCount == [2, 1, 2])
}

@Test("Combinations refuse what PEFT cannot do, by name", arguments: [
    ("ties without a density", CombinationOptions(method: .ties)),
    ("a density above 1", CombinationOptions(method: .dareLinear, density: 1.5)),
    ("a density of 0", CombinationOptions(method: .magnitudePrune, density: 0)),
])
func refusesBadOptions(label: String, options: CombinationOptions) throws {
    #expect(throws: CombinationError.self, "\(label)") { try AdapterCombiner.combine(try equalRankAdapters(), options: options) }
}

@Test("Unequal ranks, DoRA, modules_to_save and an SVD rank past a module's size are refused with the adapter named")
func refusesIncompatibleAdapters() throws {
    let second = try LoRAAdapter(folder: Paths.fixture("lora/adapters/llama-lora-second"))
    let first = try LoRAAdapter(folder: Paths.fixture("lora/adapters/llama-lora-all-linear"))
    do {
        _ = try AdapterCombiner.combine([(first, 1), (second, 1)], options: .init(method: .ties, density: 0.5))
        Issue.record("unequal ranks were combined")
    } catch let error as CombinationError {
        #expect(error.description.contains("r=8") && error.description.contains("r=4") && error.description.contains("llama-lora-second"))
    }
    // cat and svd take any ranks.
    #expect(try AdapterCombiner.combine([(first, 1), (second, 1)], options: .init(method: .cat)).rank == 12)
    for name in ["llama-dora", "llama-embedding-lora"] {
        let other = try LoRAAdapter(folder: Paths.fixture("lora/adapters/" + name))
        #expect(throws: CombinationError.self, "\(name)") { try AdapterCombiner.combine([(first, 1), (other, 1)], options: .init(method: .svd)) }
    }
    var big = CombinationOptions(method: .svd)
    big.svdRank = 65
    do {
        _ = try AdapterCombiner.combine([(first, 1), (second, 1)], options: big)
        Issue.record("an SVD rank of 65 on 64-wide modules was accepted")
    } catch let error as CombinationError {
        #expect(error.description.contains("--svd-rank 65"))
    }
}

@Test("One adapter is combined as 'linear', as PEFT does, and says so")
func oneAdapterIsLinear() throws {
    let combined = try AdapterCombiner.combine([(try equalRankAdapters()[0].adapter, 0.5)], options: .init(method: .ties, density: 0.5))
    #expect(combined.notes.contains { $0.contains("linear") })
    // linear with one adapter: A·√(w·s), B·√(w·s), so B·A·1 = w·s·B·A.
    let adapter = try equalRankAdapters()[0].adapter
    let module = adapter.modules[0]
    let a = FloatValues.array(module.a)
    let factor = Float((0.5 * adapter.config.rankAndScaling(module: module.name).scaling).squareRoot())
    #expect(combined.modules[0].a == a.map { $0 * factor })
}

/// torch.topk's choices among ties: fixtures/lora/topk/goldens.json, made by tools/make_topk_goldens.py.
private let topkCases: [JSONValue] = (try? readJSON(Paths.fixture("lora/topk/goldens.json")))?["cases"]?.arrayValue ?? []

@Test("Among equal magnitudes, magnitude pruning keeps the elements torch.topk keeps", arguments: topkCases.indices)
func topkTieBreakingMatchesTorch(index: Int) throws {
    let golden = topkCases[index]
    let values = golden["values"]!.arrayValue!.map { Float($0.intValue!) }
    let k = golden["k"]!.intValue!
    let kept = golden["kept"]!.arrayValue!.map { $0.intValue! }
    #expect(TorchTopK.largest(values, k: k).sorted() == kept, "n \(values.count), k \(k)")
    // Through the pruning itself: density k/n keeps exactly those positions.
    let pruned = TaskMerging.keepLargest(values.map { $0 + 1 }, density: Double(k) / Double(values.count))
    #expect(pruned.indices.filter { pruned[$0] != 0 } == kept)
}

@Test("Modules combine on any number of threads to the same values")
func combinationIsThreadCountInvariant() throws {
    var one = CombinationOptions(method: .ties, density: 0.5)
    one.threads = .single
    var two = one
    two.threads = ThreadBudget(2)
    let a = try AdapterCombiner.combine(try equalRankAdapters(), options: one), b = try AdapterCombiner.combine(try equalRankAdapters(), options: two)
    #expect(a.modules.map(\.name) == b.modules.map(\.name))
    #expect(zip(a.modules, b.modules).allSatisfy { $0.a == $1.a && $0.b == $1.b })
}
