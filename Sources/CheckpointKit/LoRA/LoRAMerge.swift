/// One adapter's change to one base tensor.
public struct LoRAContribution: Sendable {
    /// How B·A lands on the base tensor.
    public enum Operation: Sendable {
        /// W[out, in] += s·B·A (transposed when fan_in_fan_out: W is [in, out]).
        case linear(transposed: Bool)
        /// W[vocab, dim] += s·(B·A)ᵀ with A [r, vocab], B [dim, r].
        case embedding
    }

    /// Position of the adapter in the merge's list.
    public var adapterIndex: Int
    /// The adapter module's name.
    public var module: String
    /// Linear (possibly transposed) or embedding.
    public var operation: Operation
    /// lora_A [r, in], or [r, vocab] for an embedding.
    public var a: TensorView
    /// lora_B [out, r], or [dim, r] for an embedding.
    public var b: TensorView
    /// r for this module, after `rank_pattern`.
    public var rank: Int
    /// alpha/r (alpha/√r with rsLoRA) for this module, after the patterns.
    public var scaling: Double
    /// The user's --weight for this adapter.
    public var weight: Double
    /// DoRA: the learned magnitude per output feature.
    public var magnitude: TensorView?
    /// A LoRA bias (lora_B.bias) goes into the module's bias tensor.
    public var bias: TensorView?
    /// The adapter keys this contribution consumes.
    public var keys: [String]
}

/// What happens to each base tensor.
public struct MergePlan: Sendable {
    /// Everything that happens to one base tensor.
    public struct Change: Sendable {
        /// The base tensor's name.
        public var tensor: String
        /// LoRA deltas added to it, in adapter order.
        public var contributions: [LoRAContribution]
        /// modules_to_save: the adapter's full tensor replaces the base's.
        public var replacement: (adapterIndex: Int, key: String, view: TensorView)?
        /// A LoRA bias target: (adapter, key, view) pairs added to this (bias) tensor.
        public var biasAdditions: [(adapterIndex: Int, key: String, view: TensorView, scaling: Double, weight: Double)]
        /// Trained token rows (`trainable_token_indices`): these rows of the tensor become the adapter's (PEFT's `index_copy`).
        public var tokenRows: [(adapterIndex: Int, key: String, view: TensorView, indices: [Int])] = []
    }

    /// Changes by base tensor name.
    public var changes: [String: Change]
    /// Order in which changes were planned (for reports).
    public var order: [String]
    /// Warnings for the report (e.g. an adapter recorded against another base model).
    public var notes: [String]
    /// lm_head must be written explicitly (and tying turned off) because only one side changed.
    public var untieHead: (head: String, embedding: String)?
    /// The vocabulary grows: an adapter carries embedding or head rows for tokens the base lacks.
    public var vocabulary: VocabularyResize? = nil
}

/// A vocabulary grown by an adapter trained with added tokens, as transformers'
/// `resize_token_embeddings` grows it before PEFT loads the adapter: the embedding and an untied
/// head get rows for the new tokens, each the mean of the old rows (transformers' default
/// `mean_resizing`; it adds noise of 1e-9 times the rows' covariance, which ckpt leaves out),
/// and the tokenizer comes from the adapter's folder.
public struct VocabularyResize: Sendable {
    /// Rows before and after.
    public var from: Int, to: Int
    /// The base tensors that grow (the embedding, and the head when stored or written untied).
    public var tensors: [String]
    /// The adapter folder whose tokenizer files replace the base's.
    public var tokenizerFolder: String
    /// The tokenizer files found there.
    public var tokenizerFiles: [String]

    /// File names that make up a Hugging Face tokenizer.
    public static let tokenizerFileNames = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                                            "tokenizer.model", "vocab.json", "merges.txt", "vocab.txt", "chat_template.jinja", "chat_template.json"]

    /// The shape `shape` of `tensor` takes once resized.
    public func shape(of tensor: String, _ shape: [Int]) -> [Int] {
        tensors.contains(tensor) && shape.count == 2 ? [to, shape[1]] : shape
    }

    /// `values` (`from` rows of `columns`) with the new rows appended, each the mean of the old ones.
    public func grow(_ values: [Float], columns: Int) -> [Float] {
        precondition(values.count == from * columns, "the base's rows")
        var mean = [Double](repeating: 0, count: columns)
        for r in 0..<from {
            for c in 0..<columns { mean[c] += Double(values[r * columns + c]) }
        }
        let row = mean.map { Float($0 / Double(max(1, from))) }
        var out = values
        out.reserveCapacity(to * columns)
        for _ in from..<to { out += row }
        return out
    }
}

/// Matches adapters to a base checkpoint's tensors and checks that they fit, before anything is computed.
public enum LoRAPlanner {
    /// Candidate base names for an adapter module: as is, and with or without a leading
    /// `model.` / `transformer.` (adapters of a bare model against a *ForCausalLM checkpoint).
    static func candidates(_ module: String, suffix: String) -> [String] {
        var names = [module + suffix]
        for prefix in ["model.", "transformer.", "base_model.", "decoder."] {
            if module.hasPrefix(prefix) { names.append(String(module.dropFirst(prefix.count)) + suffix) }
            names.append(prefix + module + suffix)
        }
        return names
    }

    /// The input embedding of the families ckpt knows.
    static func embeddingName(in tensors: [String: LogicalTensor]) -> String? {
        ["model.embed_tokens.weight", "transformer.wte.weight", "model.decoder.embed_tokens.weight", "embed_tokens.weight", "wte.weight"]
            .first { tensors[$0] != nil }
    }

    /// The base's tensors by name, plus `lm_head.weight` standing for the embedding when the
    /// head is tied (not stored), so an adapter may target it.
    static func baseTensors(_ base: LogicalCheckpoint) -> [String: LogicalTensor] {
        var byName = Dictionary(base.tensors.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        if byName["lm_head.weight"] == nil, base.checkpoint.config?["tie_word_embeddings"]?.boolValue != false,
            let embedding = embeddingName(in: byName)
        {
            var head = byName[embedding]!
            head.name = "lm_head.weight"
            byName["lm_head.weight"] = head
        }
        return byName
    }

    /// Builds the plan, checking every shape, rank and key: every adapter tensor is used exactly
    /// once or the plan fails listing the keys that matched nothing.
    public static func plan(base: LogicalCheckpoint, adapters: [(adapter: LoRAAdapter, weight: Double)]) throws -> MergePlan {
        var byName = baseTensors(base)
        var vocabulary = try vocabularyResize(byName, stored: Set(base.tensors.map(\.name)), adapters: adapters.map(\.adapter))
        if let vocabulary {
            // A tied head stands for the embedding, so it grows with it as a stored one does.
            for name in vocabulary.tensors + ["lm_head.weight"] {
                if let shape = byName[name]?.shape, shape.count == 2 { byName[name]!.shape = [vocabulary.to, shape[1]] }
            }
        }
        var changes: [String: MergePlan.Change] = [:]
        var order: [String] = []
        var notes: [String] = []
        func change(_ name: String) -> MergePlan.Change {
            changes[name] ?? MergePlan.Change(tensor: name, contributions: [], replacement: nil, biasAdditions: [])
        }
        var seenFolders = Set<String>()
        for (index, (adapter, weight)) in adapters.enumerated() {
            guard seenFolders.insert(adapter.folder).inserted else { throw LoRAError.duplicateAdapter(folder: adapter.folder) }
            let file = adapter.weightsPath
            var unmatched: [String] = []
            var tried: [String] = []
            for module in adapter.modules {
                guard let target = candidates(module.name, suffix: ".weight").first(where: { byName[$0] != nil }) else {
                    unmatched += module.keys
                    tried.append(module.name + ".weight")
                    continue
                }
                let w = byName[target]!
                let (rank, scaling) = adapter.config.rankAndScaling(module: module.name)
                let aKey = module.keys.first { $0.contains("lora_A") || $0.contains("lora_embedding_A") } ?? module.name
                let bKey = module.keys.first { $0.contains("lora_B.weight") || $0.contains("lora_embedding_B") } ?? module.name
                guard module.a.shape.count == 2, module.b.shape.count == 2, w.shape.count == 2 else {
                    throw LoRAError.shapeMismatch(file: file, key: aKey, baseTensor: target, expected: [rank, -1], actual: module.a.shape)
                }
                guard module.a.shape[0] == rank else {
                    throw LoRAError.rankMismatch(file: file, key: aKey, expected: rank, actual: module.a.shape[0])
                }
                guard module.b.shape[1] == rank else {
                    throw LoRAError.rankMismatch(file: file, key: bKey, expected: rank, actual: module.b.shape[1])
                }
                let operation: LoRAContribution.Operation
                switch module.kind {
                case .linear:
                    let transposed = adapter.config.fanInFanOut
                    let (out, inner) = transposed ? (w.shape[1], w.shape[0]) : (w.shape[0], w.shape[1])
                    guard module.a.shape[1] == inner else {
                        throw LoRAError.shapeMismatch(file: file, key: aKey, baseTensor: target, expected: [rank, inner], actual: module.a.shape)
                    }
                    guard module.b.shape[0] == out else {
                        throw LoRAError.shapeMismatch(file: file, key: bKey, baseTensor: target, expected: [out, rank], actual: module.b.shape)
                    }
                    operation = .linear(transposed: transposed)
                case .embedding:
                    guard module.a.shape[1] == w.shape[0] else {
                        throw LoRAError.shapeMismatch(file: file, key: aKey, baseTensor: target, expected: [rank, w.shape[0]], actual: module.a.shape)
                    }
                    guard module.b.shape[0] == w.shape[1] else {
                        throw LoRAError.shapeMismatch(file: file, key: bKey, baseTensor: target, expected: [w.shape[1], rank], actual: module.b.shape)
                    }
                    operation = .embedding
                }
                if let m = module.magnitude {
                    let out = adapter.config.fanInFanOut ? w.shape[1] : w.shape[0]
                    guard m.elementCount == out else {
                        throw LoRAError.shapeMismatch(file: file, key: module.keys.first { $0.contains("magnitude") } ?? module.name,
                                                      baseTensor: target, expected: [out], actual: m.shape)
                    }
                }
                for view in [module.a, module.b] + [module.magnitude, module.bias].compactMap({ $0 }) {
                    if let bad = firstNonFinite(view) {
                        throw LoRAError.nonFinite(file: file, key: view.name, index: bad)
                    }
                }
                var c = change(target)
                if c.contributions.isEmpty { order.append(target) }
                c.contributions.append(LoRAContribution(adapterIndex: index, module: module.name, operation: operation, a: module.a, b: module.b,
                                                        rank: rank, scaling: scaling, weight: weight, magnitude: module.magnitude,
                                                        bias: nil, keys: module.keys))
                changes[target] = c
                if let bias = module.bias {
                    let biasName = String(target.dropLast(".weight".count)) + ".bias"
                    guard let baseBias = byName[biasName] else {
                        throw LoRAError.baseHasNoBias(file: file, key: bias.name, baseTensor: biasName)
                    }
                    guard baseBias.elementCount == bias.elementCount else {
                        throw LoRAError.shapeMismatch(file: file, key: bias.name, baseTensor: biasName, expected: baseBias.shape, actual: bias.shape)
                    }
                    var bc = change(biasName)
                    if bc.biasAdditions.isEmpty && bc.contributions.isEmpty { order.append(biasName) }
                    bc.biasAdditions.append((index, bias.name, bias, scaling, weight))
                    changes[biasName] = bc
                }
            }
            for replacement in adapter.replacements {
                let parts = replacement.name.split(separator: ".")
                let suffix = "." + parts.last!
                let module = parts.dropLast().joined(separator: ".")
                guard let target = candidates(module, suffix: suffix).first(where: { byName[$0] != nil }) else {
                    unmatched.append(replacement.key)
                    tried.append(replacement.name)
                    continue
                }
                let w = byName[target]!
                guard w.shape == replacement.view.shape else {
                    throw LoRAError.shapeMismatch(file: file, key: replacement.key, baseTensor: target, expected: w.shape, actual: replacement.view.shape)
                }
                if let bad = firstNonFinite(replacement.view) { throw LoRAError.nonFinite(file: file, key: replacement.key, index: bad) }
                var c = change(target)
                if c.contributions.isEmpty && c.replacement == nil { order.append(target) }
                c.replacement = (index, replacement.key, replacement.view)
                changes[target] = c
            }
            for rows in adapter.tokenRows {
                guard let target = candidates(rows.module, suffix: ".weight").first(where: { byName[$0] != nil }) else {
                    unmatched.append(rows.key)
                    tried.append(rows.module + ".weight")
                    continue
                }
                let w = byName[target]!
                let configured = adapter.config.trainableTokenIndices
                guard let indices = configured.first(where: { entry in entry.module.map { rows.module == $0 || rows.module.hasSuffix("." + $0) } ?? false })?.indices
                        ?? configured.first(where: { $0.module == nil })?.indices else {
                    throw LoRAError.tokenIndices(file: file, key: rows.key, reason: "adapter_config.json gives no trainable_token_indices for it (expected the ids of its rows)")
                }
                guard w.shape.count == 2, rows.view.shape == [indices.count, w.shape[1]] else {
                    throw LoRAError.shapeMismatch(file: file, key: rows.key, baseTensor: target, expected: [indices.count, w.shape.last ?? 0], actual: rows.view.shape)
                }
                if let outside = indices.first(where: { $0 >= w.shape[0] }) {
                    throw LoRAError.tokenIndices(file: file, key: rows.key, reason: "token id \(outside) is beyond the \(w.shape[0]) rows of \(target) (expected ids of the base's vocabulary)")
                }
                if let bad = firstNonFinite(rows.view) { throw LoRAError.nonFinite(file: file, key: rows.key, index: bad) }
                var c = change(target)
                if c.contributions.isEmpty && c.replacement == nil && c.tokenRows.isEmpty { order.append(target) }
                c.tokenRows.append((index, rows.key, rows.view, indices))
                changes[target] = c
            }
            if !unmatched.isEmpty { throw LoRAError.unmatchedKeys(file: file, keys: unmatched, candidates: tried) }
            if let hint = adapter.config.baseModelNameOrPath, let note = baseMismatchNote(hint: hint, base: base.checkpoint) {
                notes.append("\(adapter.configPath): \(note)")
            }
        }
        for (name, c) in changes where c.contributions.count > 1 && c.contributions.contains(where: { $0.magnitude != nil }) {
            throw LoRAError.doraCombined(module: c.contributions[0].module + " (\(name))")
        }
        // Tied embeddings: when one side of a tied pair changes, both are written and the tie is
        // cut; otherwise transformers would re-tie on load and silently discard one of them.
        var untie: (String, String)? = nil
        if let embedding = embeddingName(in: byName) {
            let head = "lm_head.weight"
            let hasHead = base.tensors.contains { $0.name == head }
            let tied = base.checkpoint.config?["tie_word_embeddings"]?.boolValue ?? !hasHead
            let headChanged = changes[head] != nil, embeddingChanged = changes[embedding] != nil
            // A stored-less (tied) head only changes with the embedding when the adapter targets
            // the head itself; a stored head is a separate tensor as soon as either side changes.
            if tied && (headChanged || (hasHead && embeddingChanged)) {
                untie = (head, embedding)
                notes.append("\(headChanged ? "lm_head" : "the embedding") changes but its tied twin does not: both are written and "
                    + "tie_word_embeddings is set to false (loaded tied, one of them would be silently discarded)")
            }
        }
        // A head written apart from the embedding it was tied to grows with it.
        if let (head, _) = untie, vocabulary?.tensors.contains(head) == false { vocabulary?.tensors.append(head) }
        if let vocabulary {
            for name in vocabulary.tensors where changes[name] == nil {
                changes[name] = MergePlan.Change(tensor: name, contributions: [], replacement: nil, biasAdditions: [])
                order.append(name)
            }
            notes.append("the vocabulary grows from \(vocabulary.from) to \(vocabulary.to) tokens (\(vocabulary.tensors.joined(separator: ", "))); "
                + "the tokenizer comes from \(vocabulary.tokenizerFolder)")
        }
        return MergePlan(changes: changes, order: order, notes: notes, untieHead: untie, vocabulary: vocabulary)
    }

    /// The vocabulary the adapters need: more embedding (or head) rows than the base has, in a
    /// saved module (modules_to_save) or an embedding or head LoRA; nil when they fit the base.
    static func vocabularyResize(_ byName: [String: LogicalTensor], stored: Set<String>, adapters: [LoRAAdapter]) throws -> VocabularyResize? {
        guard let embedding = embeddingName(in: byName), let base = byName[embedding], base.shape.count == 2 else { return nil }
        let heads = ["lm_head.weight"]
        var wanted: [(rows: Int, adapter: LoRAAdapter, key: String)] = []
        for adapter in adapters {
            for replacement in adapter.replacements {
                let parts = replacement.name.split(separator: ".")
                let module = parts.dropLast().joined(separator: ".")
                let target = candidates(module, suffix: "." + parts.last!).first { byName[$0] != nil }
                guard let target, target == embedding || heads.contains(target), replacement.view.shape.count == 2,
                      replacement.view.shape[1] == base.shape[1], replacement.view.shape[0] > base.shape[0] else { continue }
                wanted.append((replacement.view.shape[0], adapter, replacement.key))
            }
            for module in adapter.modules {
                let target = candidates(module.name, suffix: ".weight").first { byName[$0] != nil }
                if target == embedding, module.kind == .embedding, module.a.shape.count == 2, module.a.shape[1] > base.shape[0] {
                    wanted.append((module.a.shape[1], adapter, module.keys.first ?? module.name))
                } else if let target, heads.contains(target), module.kind == .linear, module.b.shape.count == 2, module.b.shape[0] > base.shape[0] {
                    wanted.append((module.b.shape[0], adapter, module.keys.first { $0.contains("lora_B") } ?? module.name))
                }
            }
        }
        guard let first = wanted.first else { return nil }
        if let other = wanted.first(where: { $0.rows != first.rows }) {
            throw LoRAError.shapeMismatch(file: other.adapter.weightsPath, key: other.key, baseTensor: embedding,
                                          expected: [first.rows, base.shape[1]], actual: [other.rows, base.shape[1]])
        }
        let folder = first.adapter.folder
        let files = VocabularyResize.tokenizerFileNames.filter { FileSystem.isRegularFile(FileSystem.join(folder, $0)) }
        guard files.contains(where: { ["tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt"].contains($0) }) else {
            throw LoRAError.resizedVocabularyWithoutTokenizer(folder: folder, key: first.key, from: base.shape[0], to: first.rows)
        }
        let resized = [embedding] + heads.filter(stored.contains)
        return VocabularyResize(from: base.shape[0], to: first.rows, tensors: resized, tokenizerFolder: folder, tokenizerFiles: files)
    }

    static func firstNonFinite(_ view: TensorView) -> Int? {
        let i = CheckpointVerifier.firstNonFinite(view)
        return i < 0 ? nil : i
    }

    /// A warning when the adapter's recorded base looks like another family than `base`.
    static func baseMismatchNote(hint: String, base: Checkpoint) -> String? {
        guard let modelType = base.config?["model_type"]?.stringValue?.lowercased() else { return nil }
        let name = hint.lowercased().split(separator: "/").last.map(String.init) ?? hint.lowercased()
        let family = modelType.replacingOccurrences(of: "_", with: "").replacingOccurrences(of: "-", with: "")
        let compact = name.replacingOccurrences(of: "-", with: "").replacingOccurrences(of: "_", with: "")
        if compact.contains(family) || (family == "llama" && (compact.contains("llama") || compact.contains("smollm"))) { return nil }
        if base.config?["_name_or_path"]?.stringValue?.lowercased() == hint.lowercased() { return nil }
        return "adapter was trained on '\(hint)', but the base is a \(modelType) model; check it is the right base"
    }
}

/// The arithmetic of a merge, on one tensor, in float32 with OpenBLAS.
public enum LoRAMath {
    /// Σ weight·scaling·(B·A) as the base tensor's layout wants it ([out, in], or [in, out] when
    /// transposed, or [vocab, dim] for embeddings), in float32.
    public static func delta(_ c: LoRAContribution, shape: [Int]) -> [Float] {
        let a = FloatValues.array(c.a), b = FloatValues.array(c.b)
        let rank = c.rank
        // PEFT rounds the scaling to float32 and multiplies the f32 product by it; a --weight
        // other than 1 multiplies that delta afterwards.
        let alpha = Float(c.scaling)
        var out = [Float](repeating: 0, count: shape[0] * shape[1])
        a.withUnsafeBufferPointer { ap in
            b.withUnsafeBufferPointer { bp in
                out.withUnsafeMutableBufferPointer { op in
                    switch c.operation {
                    case .linear(transposed: false):
                        // [out, r] · [r, in]
                        MatrixMultiply.multiply(bp.baseAddress!, ap.baseAddress!, into: op.baseAddress!, m: shape[0], n: shape[1], k: rank, alpha: alpha)
                    case .linear(transposed: true), .embedding:
                        // (B·A)ᵀ = Aᵀ·Bᵀ: [in, r] · [r, out]
                        MatrixMultiply.multiply(ap.baseAddress!, bp.baseAddress!, into: op.baseAddress!, m: shape[0], n: shape[1], k: rank,
                                                alpha: alpha, transposeA: true, transposeB: true)
                    }
                }
            }
        }
        if c.weight != 1 {
            let w = Float(c.weight)
            for i in out.indices { out[i] *= w }
        }
        return out
    }

    /// Plain loops, the reference the tests hold `delta` to.
    public static func deltaReference(_ c: LoRAContribution, shape: [Int]) -> [Float] {
        let a = FloatValues.array(c.a), b = FloatValues.array(c.b)
        let rank = c.rank
        let transposed: Bool
        switch c.operation {
        case .linear(let t): transposed = t
        case .embedding: transposed = true
        }
        var out = [Float](repeating: 0, count: shape[0] * shape[1])
        for i in 0..<shape[0] {
            for j in 0..<shape[1] {
                let (row, column) = transposed ? (j, i) : (i, j)  // row of B, column of A
                let inner = a.count / rank
                var sum = 0.0
                for p in 0..<rank { sum += Double(b[row * rank + p]) * Double(a[p * inner + column]) }
                out[i * shape[1] + j] = Float(sum) * Float(c.scaling) * Float(c.weight)
            }
        }
        return out
    }

    /// Applies every contribution to `weight` (float32 values of the base tensor, `shape`) and
    /// rounds once to `storage` (the written dtype), as PEFT's `merge_and_unload` does:
    /// linear and Conv1D deltas are added in f32 (`bf16(f32(W) + Δ)`); an embedding's delta is
    /// first rounded to the base dtype (`bf16(W + bf16(Δ))`); DoRA is computed in f32 throughout.
    public static func apply(_ contributions: [LoRAContribution], to weight: inout [Float], shape: [Int], storage: DType) {
        for c in contributions {
            var d = delta(c, shape: shape)
            switch c.operation {
            case .embedding:
                roundInPlace(&d, to: storage)
                for i in weight.indices { weight[i] += d[i] }
            case .linear(let transposed):
                if let magnitude = c.magnitude {
                    applyDoRA(weight: &weight, delta: d, magnitude: FloatValues.array(magnitude), shape: shape, transposed: transposed)
                } else {
                    for i in weight.indices { weight[i] += d[i] }
                }
            }
        }
        roundInPlace(&weight, to: storage)
    }

    /// DoRA: W' = m / ‖W + ΔW‖ · (W + ΔW), the norm over each output feature's inputs, in f32.
    static func applyDoRA(weight: inout [Float], delta: [Float], magnitude: [Float], shape: [Int], transposed: Bool) {
        let combined = zip(weight, delta).map { $0 + $1 }
        let outputs = transposed ? shape[1] : shape[0]
        let inputs = transposed ? shape[0] : shape[1]
        var factor = [Float](repeating: 0, count: outputs)
        for o in 0..<outputs {
            var sum = 0.0
            for i in 0..<inputs {
                let v = Double(transposed ? combined[i * outputs + o] : combined[o * inputs + i])
                sum += v * v
            }
            factor[o] = magnitude[o] / Float(sum.squareRoot())
        }
        for o in 0..<outputs {
            for i in 0..<inputs {
                let index = transposed ? i * outputs + o : o * inputs + i
                weight[index] = factor[o] * combined[index]
            }
        }
    }

    /// Rounds float32 values to `dtype` and back (no-op for F32).
    static func roundInPlace(_ values: inout [Float], to dtype: DType) {
        guard dtype == .bf16 || dtype == .f16 else { return }
        var half = [UInt16](repeating: 0, count: values.count)
        values.withUnsafeBytes { src in half.withUnsafeMutableBytes { FloatConversion.convert(src, from: .f32, to: dtype, into: $0, threads: .single) } }
        half.withUnsafeBytes { src in values.withUnsafeMutableBytes { FloatConversion.convert(src, from: dtype, to: .f32, into: $0, threads: .single) } }
    }
}
