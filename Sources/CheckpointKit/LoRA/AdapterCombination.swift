import COpenBLAS
import Glibc

/// PEFT's `add_weighted_adapter` combination types.
public enum CombinationMethod: String, Sendable, CaseIterable {
    case linear, cat, svd, ties
    case tiesSVD = "ties_svd"
    case dareLinear = "dare_linear"
    case dareTies = "dare_ties"
    case dareLinearSVD = "dare_linear_svd"
    case dareTiesSVD = "dare_ties_svd"
    case magnitudePrune = "magnitude_prune"
    case magnitudePruneSVD = "magnitude_prune_svd"

    /// Whether the result is the SVD of the combined deltas (rank `--svd-rank`).
    public var usesSVD: Bool { rawValue.hasSuffix("svd") }
    /// Whether every adapter must have the same rank (PEFT combines their A and B matrices element by element).
    public var needsEqualRanks: Bool { [.linear, .ties, .dareLinear, .dareTies, .magnitudePrune].contains(self) }
    /// Whether the method prunes, and so needs a density.
    public var needsDensity: Bool { rule != .taskArithmetic }
    /// The `merge_utils` rule applied to A and B (or to the deltas, for the SVD methods); `cat` has none.
    public var rule: TaskMerging.Rule {
        switch self {
        case .linear, .cat, .svd: return .taskArithmetic
        case .ties, .tiesSVD: return .ties
        case .dareLinear, .dareLinearSVD: return .dareLinear
        case .dareTies, .dareTiesSVD: return .dareTies
        case .magnitudePrune, .magnitudePruneSVD: return .magnitudePrune
        }
    }
}

/// How adapters are combined (the arguments of PEFT's `add_weighted_adapter`).
public struct CombinationOptions: Sendable {
    /// The combination type.
    public var method: CombinationMethod
    /// Fraction of values kept by the pruning methods, in (0, 1].
    public var density: Double?
    /// TIES' sign election.
    public var majoritySign: TaskMerging.MajoritySign = .total
    /// Rank of the SVD methods' result; nil for the largest rank of the adapters.
    public var svdRank: Int?
    /// Quantile in (0, 1] at which the SVD factors are clamped (`svd_clamp`); nil for none.
    public var svdClamp: Double?
    /// Seed of the DARE masks.
    public var seed: UInt64 = 0
    /// Threads over which modules are combined (each module on its own: the result is the same for any count).
    public var threads: ThreadBudget = .allCores
    /// Masks recorded elsewhere (PEFT's, in tests), by `maskKey`, at least as long as the matrix (a
    /// longer one, padded to whole bytes, is cut); drawn from `seed` when absent.
    public var recordedMasks: [String: [Bool]] = [:]
    /// Signs of the singular pairs recorded elsewhere (PEFT's, in tests) by module: the sign of each
    /// pair's largest |U[i, c]|; LAPACK's own choice when absent.
    public var recordedSVDSigns: [String: [Float]] = [:]

    /// Options for `method`, PEFT's defaults otherwise.
    public init(method: CombinationMethod, density: Double? = nil) {
        self.method = method
        self.density = density
    }

    /// The key of one DARE mask: module, the matrix it prunes ("lora_A", "lora_B" or "delta") and the adapter's position.
    public static func maskKey(module: String, matrix: String, adapter: Int) -> String { "\(module)|\(matrix)|\(adapter)" }
}

/// Failures of combining adapters, before anything is written.
public enum CombinationError: Error, Equatable, Sendable, CustomStringConvertible {
    case unequalRanks(method: String, ranks: [String])
    case missingDensity(method: String)
    case densityOutOfRange(density: Double)
    case svdClampOutOfRange(clamp: Double)
    case svdRankTooLarge(module: String, rank: Int, limit: Int)
    case badSVDRank(rank: Int)
    case shapesDiffer(module: String, first: String, firstShape: [Int], other: String, otherShape: [Int])
    case unsupported(adapter: String, reason: String)
    case svdFailed(module: String, info: Int)

    /// The one-line message.
    public var description: String {
        switch self {
        case let .unequalRanks(method, ranks):
            return "--combination \(method) combines A and B element by element, so every adapter needs the same rank; got \(ranks.joined(separator: ", ")) (cat and the *_svd methods take any ranks)"
        case let .missingDensity(method):
            return "--combination \(method) prunes: give --density in (0, 1]"
        case let .densityOutOfRange(density):
            return "--density \(density): expected a fraction in (0, 1]"
        case let .svdClampOutOfRange(clamp):
            return "--svd-clamp \(clamp): expected a quantile in (0, 1]"
        case let .svdRankTooLarge(module, rank, limit):
            return "module '\(module)': --svd-rank \(rank) exceeds its largest possible rank min(out, in) = \(limit)"
        case let .badSVDRank(rank):
            return "--svd-rank \(rank): expected a positive integer"
        case let .shapesDiffer(module, first, firstShape, other, otherShape):
            return "module '\(module)': \(escapedName(first)) has \(firstShape) but \(escapedName(other)) has \(otherShape) (adapters of different bases, or per-module ranks that differ)"
        case let .unsupported(adapter, reason):
            return "\(escapedName(adapter)): \(reason)"
        case let .svdFailed(module, info):
            return "module '\(module)': the SVD did not converge (LAPACK sgesdd info \(info))"
        }
    }
}

/// One module of a combined adapter, in f32.
public struct CombinedModule: Sendable {
    /// Module name without `base_model.model.`.
    public var name: String
    /// Linear (lora_A/B) or embedding (lora_embedding_A/B).
    public var kind: LoRAAdapter.Module.Kind
    /// A [r, in] (or [r, vocab]), row-major.
    public var a: [Float]
    /// B [out, r] (or [dim, r]), row-major.
    public var b: [Float]
    /// The rank r: rows of A, columns of B.
    public var rank: Int
    /// Columns of A (in, or vocab).
    public var inputs: Int
    /// Rows of B (out, or dim).
    public var outputs: Int
}

/// The adapter `add_weighted_adapter` makes: rank, `lora_alpha` = rank, the union of the targets,
/// the first adapter's other settings.
public struct CombinedAdapter: Sendable {
    /// The first adapter's `adapter_config.json` with r, lora_alpha, target_modules and the patterns replaced.
    public var config: JSONValue
    /// The new rank (PEFT's `new_rank`).
    public var rank: Int
    /// Scaling of the new adapter: 1, or √rank with rsLoRA (lora_alpha = rank).
    public var scaling: Double
    /// Whether the first adapter (and so the result) stores Conv1D-style weights.
    public var fanInFanOut: Bool
    /// The modules, in the first adapter's order then the others'.
    public var modules: [CombinedModule]
    /// dtype the tensors are written in (the first adapter's lora_A dtype; f32 for `cat`, as PEFT's new parameters are).
    public var dtype: DType
    /// What the combination chose or measured, for the report.
    public var notes: [String]
}

/// Combines PEFT adapters as `LoraModel.add_weighted_adapter` does (peft 0.21.2, `tuners/lora/model.py`):
/// `linear`, `ties`, `dare_*`, `magnitude_prune` combine the A matrices and the B matrices separately
/// with weights √|w·s| (the sign on A); `cat` stacks A·w·s and B; the `*_svd` methods combine the full
/// deltas s·B·A with weights w and factor the result by SVD at the new rank.
public enum AdapterCombiner {
    /// The combined adapter of `adapters` (each with its weight); adapters are checked, nothing is written.
    public static func combine(_ adapters: [(adapter: LoRAAdapter, weight: Double)], options: CombinationOptions) throws -> CombinedAdapter {
        precondition(!adapters.isEmpty, "at least one adapter")
        var method = options.method
        var notes: [String] = []
        // PEFT: "if there is only one adapter, we can only use linear merging".
        if adapters.count == 1 && method != .linear {
            notes.append("one adapter: combined as 'linear', as PEFT does")
            method = .linear
        }
        if method.needsDensity {
            guard let density = options.density else { throw CombinationError.missingDensity(method: method.rawValue) }
            guard density > 0 && density <= 1 else { throw CombinationError.densityOutOfRange(density: density) }
        }
        if let clamp = options.svdClamp, !(clamp > 0 && clamp <= 1) { throw CombinationError.svdClampOutOfRange(clamp: clamp) }
        if let rank = options.svdRank, rank <= 0 { throw CombinationError.badSVDRank(rank: rank) }
        for (adapter, _) in adapters {
            let config = adapter.config
            if config.useDoRA { throw CombinationError.unsupported(adapter: adapter.folder, reason: "DoRA magnitudes cannot be combined (PEFT's add_weighted_adapter leaves them at the base's norms); merge it alone") }
            if let rows = adapter.tokenRows.first {
                throw CombinationError.unsupported(adapter: adapter.folder, reason: "trained token rows ('\(rows.key)') are not combined; merge that adapter on its own")
            }
            if !adapter.replacements.isEmpty {
                throw CombinationError.unsupported(adapter: adapter.folder, reason: "modules_to_save / saved layers ('\(adapter.replacements[0].name)') are not combined; merge that adapter on its own")
            }
            if adapter.modules.contains(where: { $0.bias != nil }) {
                throw CombinationError.unsupported(adapter: adapter.folder, reason: "lora_bias is not combined by add_weighted_adapter")
            }
            if config.fanInFanOut != adapters[0].adapter.config.fanInFanOut {
                throw CombinationError.unsupported(adapter: adapter.folder, reason: "fan_in_fan_out differs from the first adapter's (adapters of different bases)")
            }
        }
        // PEFT's ranks: an adapter's largest, r or any rank_pattern value.
        let ranks = adapters.map { a in ([a.adapter.config.rank] + a.adapter.config.rankPattern.map(\.1)).max()! }
        let newRank: Int
        if method.needsEqualRanks {
            guard Set(ranks).count == 1 else {
                throw CombinationError.unequalRanks(method: method.rawValue,
                                                    ranks: zip(adapters, ranks).map { "\(escapedName($0.0.adapter.folder)) r=\($0.1)" })
            }
            newRank = ranks[0]
        } else if method == .cat {
            newRank = ranks.reduce(0, +)
        } else {
            newRank = options.svdRank ?? ranks.max()!
        }

        // Modules in the first adapter's order, then new ones as the others add them.
        var order: [String] = []
        var members: [String: [(index: Int, module: LoRAAdapter.Module)]] = [:]
        for (index, (adapter, _)) in adapters.enumerated() {
            for module in adapter.modules {
                if members[module.name] == nil { order.append(module.name) }
                members[module.name, default: []].append((index, module))
            }
        }
        // Each module is combined on its own, so they spread over threads; the first failure in module order is thrown.
        let results = LockedValue<[Int: Result<CombinedModule, Error>]>([:])
        var effective = options
        effective.method = method
        let shared = UncheckedSendable((order, members, adapters, effective))
        options.threads.forEachChunk(order.count) { k in
            let (order, members, adapters, options) = shared.value
            let result = Result { try combineModule(order[k], present: members[order[k]]!, adapters: adapters, options: options, newRank: newRank) }
            results.withLock { $0[k] = result }
        }
        // An interruption skips the remaining modules: nothing partial is returned.
        if Interruption.isRequested { throw FileAccessError.interrupted(file: adapters[0].adapter.folder) }
        let modules = try results.withLock { done in try order.indices.map { try done[$0]!.get() } }

        let firstConfig = adapters[0].adapter.config
        let config = replacing(adapters[0].adapter.configJSON, with: [
            ("r", JSONValue(newRank)), ("lora_alpha", JSONValue(newRank)), ("target_modules", targetUnion(adapters.map(\.adapter))),
            ("alpha_pattern", .object([])), ("rank_pattern", .object([])),
        ])
        let firstDType = adapters[0].adapter.modules.first?.a.dtype ?? .f32
        return CombinedAdapter(config: config, rank: newRank,
                               scaling: firstConfig.useRSLoRA ? Double(newRank) / Double(newRank).squareRoot() : 1,
                               fanInFanOut: firstConfig.fanInFanOut, modules: modules,
                               dtype: method == .cat || !firstDType.isFloatingPoint ? .f32 : firstDType, notes: notes)
    }

    /// One module of the combination: the adapters' pairs for it (`present`, in adapter order) made into one.
    static func combineModule(_ name: String, present: [(index: Int, module: LoRAAdapter.Module)], adapters: [(adapter: LoRAAdapter, weight: Double)],
                              options: CombinationOptions, newRank: Int) throws -> CombinedModule {
        let method = options.method
        let first = present[0]
        for other in present.dropFirst() where other.module.kind != first.module.kind
            || other.module.a.shape.last != first.module.a.shape.last || other.module.b.shape.first != first.module.b.shape.first {
            throw CombinationError.shapesDiffer(module: name, first: adapters[first.index].adapter.weightsPath, firstShape: first.module.b.shape.prefix(1) + first.module.a.shape.suffix(1),
                                                other: adapters[other.index].adapter.weightsPath, otherShape: other.module.b.shape.prefix(1) + other.module.a.shape.suffix(1))
        }
        let parts = present.map { entry -> (a: [Float], b: [Float], rank: Int, scaling: Double, weight: Double, index: Int) in
            let adapter = adapters[entry.index]
            return (FloatValues.array(entry.module.a), FloatValues.array(entry.module.b), entry.module.a.shape[0],
                    adapter.adapter.config.rankAndScaling(module: name).scaling, adapter.weight, entry.index)
        }
        let inputs = first.module.a.shape[1], outputs = first.module.b.shape[0]
        var module = CombinedModule(name: name, kind: first.module.kind, a: [], b: [], rank: newRank, inputs: inputs, outputs: outputs)
        switch method {
        case .cat:
            // A rows: A·w·s (torch: (A * w) * s in f32), B columns as they are; rows past the adapters' ranks stay zero.
            module.a = [Float](repeating: 0, count: newRank * inputs)
            module.b = [Float](repeating: 0, count: outputs * newRank)
            var row = 0
            for part in parts {
                let (w, s) = (Float(part.weight), Float(part.scaling))
                for r in 0..<part.rank {
                    for j in 0..<inputs { module.a[(row + r) * inputs + j] = part.a[r * inputs + j] * w * s }
                    for i in 0..<outputs { module.b[i * newRank + row + r] = part.b[i * part.rank + r] }
                }
                row += part.rank
            }
        case _ where method.usesSVD:
            let deltas = parts.map { delta(a: $0.a, b: $0.b, rank: $0.rank, inputs: inputs, outputs: outputs, scaling: $0.scaling) }
            // PEFT prunes the delta as get_delta_weight returns it: [in, out] for Conv1D and embeddings.
            let transposed = first.module.kind == .embedding || adapters[0].adapter.config.fanInFanOut
            let masks = method.rule.isRandom
                ? parts.map { part -> [Bool] in
                    let drawn = mask(options, module: name, matrix: "delta", adapter: part.index, count: outputs * inputs)
                    return transposed ? PackedIntegerRows.transposed(drawn, rows: inputs, columns: outputs) : drawn
                } : []
            let combined = TaskMerging.combine(deltas, weights: parts.map { Float($0.weight) }, rule: method.rule,
                                               density: options.density ?? 1, majoritySign: options.majoritySign, masks: masks)
            let limit = Swift.min(outputs, inputs)
            guard newRank <= limit else { throw CombinationError.svdRankTooLarge(module: name, rank: newRank, limit: limit) }
            (module.a, module.b) = try lowRank(combined, outputs: outputs, inputs: inputs, rank: newRank, clamp: options.svdClamp, module: name,
                                         signs: options.recordedSVDSigns[name])
        default:
            for part in parts where part.rank != newRank {
                throw CombinationError.shapesDiffer(module: name, first: adapters[parts[0].index].adapter.weightsPath, firstShape: [parts[0].rank, inputs],
                                                    other: adapters[part.index].adapter.weightsPath, otherShape: [part.rank, inputs])
            }
            // √|w·s| on both sides, the sign on A only (computed in f64, then rounded to f32 by torch.tensor).
            let scaled = parts.map { $0.weight * $0.scaling }
            let weightsA = scaled.map { Float(abs($0).squareRoot() * ($0 >= 0 ? 1 : -1)) }
            let weightsB = scaled.map { Float(abs($0).squareRoot()) }
            let masksA = method.rule.isRandom ? parts.map { mask(options, module: name, matrix: "lora_A", adapter: $0.index, count: $0.a.count) } : []
            let masksB = method.rule.isRandom ? parts.map { mask(options, module: name, matrix: "lora_B", adapter: $0.index, count: $0.b.count) } : []
            let density = options.density ?? 1
            module.a = TaskMerging.combine(parts.map(\.a), weights: weightsA, rule: method.rule, density: density,
                                           majoritySign: options.majoritySign, masks: masksA)
            module.b = TaskMerging.combine(parts.map(\.b), weights: weightsB, rule: method.rule, density: density,
                                           majoritySign: options.majoritySign, masks: masksB)
        }
        return module
    }

    /// A DARE mask: the recorded one when given, else drawn from the seed and the key.
    static func mask(_ options: CombinationOptions, module: String, matrix: String, adapter: Int, count: Int) -> [Bool] {
        let key = CombinationOptions.maskKey(module: module, matrix: matrix, adapter: adapter)
        if let recorded = options.recordedMasks[key], recorded.count >= count { return Array(recorded.prefix(count)) }
        return TaskMerging.randomMask(count: count, density: options.density ?? 1, seed: options.seed ^ fnv1a64(key.utf8))
    }

    /// s·B·A [out, in] in f32 (`get_delta_weight`: the product, then times the scaling).
    static func delta(a: [Float], b: [Float], rank: Int, inputs: Int, outputs: Int, scaling: Double) -> [Float] {
        var product = [Float](repeating: 0, count: outputs * inputs)
        b.withUnsafeBufferPointer { bp in
            a.withUnsafeBufferPointer { ap in
                product.withUnsafeMutableBufferPointer { out in
                    MatrixMultiply.multiply(bp.baseAddress!, ap.baseAddress!, into: out.baseAddress!, m: outputs, n: inputs, k: rank,
                                            alpha: 1, beta: 0, lda: rank, ldb: inputs, ldc: inputs)
                }
            }
        }
        let s = Float(scaling)
        return product.map { $0 * s }
    }

    /// PEFT's SVD step: D = U S Vh, B = U[:, :r]·diag(S[:r]), A = Vh[:r, :], both clamped to ±(the
    /// `clamp` quantile of their values) when asked. Returns (A [r, in], B [out, r]).
    static func lowRank(_ d: [Float], outputs m: Int, inputs n: Int, rank r: Int, clamp: Double?, module: String,
                         signs: [Float]? = nil) throws -> (a: [Float], b: [Float]) {
        let k = Swift.min(m, n)
        // LAPACK factors D itself (column-major, as torch hands it over): factoring Dᵀ instead would
        // give the same product but may flip the sign of singular pairs, which `clamp` can see.
        var work = PackedIntegerRows.transposed(d, rows: m, columns: n)
        var s = [Float](repeating: 0, count: k)
        var u = [Float](repeating: 0, count: m * k), vt = [Float](repeating: 0, count: k * n)
        var jobz = Int8(UInt8(ascii: "S")), rows = Int32(m), columns = Int32(n), lda = Int32(m), ldu = Int32(m), ldvt = Int32(k)
        var info: Int32 = 0, query: Float = 0, lwork: Int32 = -1
        var iwork = [Int32](repeating: 0, count: 8 * k)
        sgesdd_(&jobz, &rows, &columns, &work, &lda, &s, &u, &ldu, &vt, &ldvt, &query, &lwork, &iwork, &info)
        guard info == 0 else { throw CombinationError.svdFailed(module: module, info: Int(info)) }
        lwork = Int32(query)
        var scratch = [Float](repeating: 0, count: Swift.max(Int(lwork), 1))
        sgesdd_(&jobz, &rows, &columns, &work, &lda, &s, &u, &ldu, &vt, &ldvt, &scratch, &lwork, &iwork, &info)
        guard info == 0 else { throw CombinationError.svdFailed(module: module, info: Int(info)) }
        if let signs, signs.count >= r {
            for c in 0..<r {
                var top = 0
                for i in 0..<m where abs(u[i + c * m]) > abs(u[top + c * m]) { top = i }
                guard (u[top + c * m] < 0) != (signs[c] < 0) else { continue }
                for i in 0..<m { u[i + c * m] = -u[i + c * m] }
                for j in 0..<n { vt[c + j * k] = -vt[c + j * k] }
            }
        }
        var b = [Float](repeating: 0, count: m * r), a = [Float](repeating: 0, count: r * n)
        for i in 0..<m { for c in 0..<r { b[i * r + c] = u[i + c * m] * s[c] } }
        for c in 0..<r { for j in 0..<n { a[c * n + j] = vt[c + j * k] } }
        if let clamp {
            let high = quantile(b + a, clamp), low = -high
            b = b.map { Swift.min(Swift.max($0, low), high) }
            a = a.map { Swift.min(Swift.max($0, low), high) }
        }
        return (a, b)
    }

    /// `torch.quantile(x, q)` (linear interpolation between the two nearest ranks), in f32.
    static func quantile(_ x: [Float], _ q: Double) -> Float {
        let sorted = x.sorted()
        let position = Float(q) * Float(sorted.count - 1)
        let below = Int(position.rounded(.down)), above = Swift.min(below + 1, sorted.count - 1)
        let fraction = position - Float(below)
        // torch's lerp: a + w·(b − a) for w < 0.5, else b − (b − a)·(1 − w).
        let (lo, hi) = (sorted[below], sorted[above])
        return fraction < 0.5 ? lo + fraction * (hi - lo) : hi - (hi - lo) * (1 - fraction)
    }

    /// `json` with each member in `replacements` set (kept in place when present, appended otherwise).
    static func replacing(_ json: JSONValue, with replacements: [(String, JSONValue)]) -> JSONValue {
        var members = json.objectMembers ?? []
        for (key, value) in replacements {
            if let i = members.firstIndex(where: { $0.0 == key }) { members[i].1 = value } else { members.append((key, value)) }
        }
        return .object(members)
    }

    /// PEFT's new `target_modules`: the union of the lists (sorted here: PEFT's is a set), or the regexes joined as `(a)|(b)`.
    static func targetUnion(_ adapters: [LoRAAdapter]) -> JSONValue {
        let targets = adapters.map { $0.config.targetModules }
        if let regexes = targets.map({ $0?.stringValue }) as? [String] {
            return .string(regexes.map { "(\($0))" }.joined(separator: "|"))
        }
        var names = Set<String>()
        for case let list? in targets.map({ $0?.arrayValue }) { names.formUnion(list.compactMap(\.stringValue)) }
        if names.isEmpty { names = Set(adapters.flatMap { $0.modules.map { String($0.name.split(separator: ".").last ?? "") } }) }
        return .array(names.sorted().map { .string($0) })
    }
}

extension CombinedAdapter {
    /// Writes the adapter as PEFT saves one: `adapter_config.json` and `adapter_model.safetensors`
    /// (`base_model.model.<module>.lora_A.weight` …), atomically into the folder `output`.
    public func write(to output: String, overwrite: Bool) throws {
        let atomic = try AtomicOutput(target: output, isDirectory: true, overwrite: overwrite)
        do {
            try writeFiles(into: atomic.temporary)
            try atomic.commit()
        } catch {
            atomic.discard()
            throw error
        }
    }

    /// Writes the two files into an existing folder.
    func writeFiles(into folder: String) throws {
        var tensors: [(spec: TensorSpec, values: [Float])] = []
        for module in modules {
            let prefix = "base_model.model." + module.name
            let (aKey, bKey) = module.kind == .embedding ? (prefix + ".lora_embedding_A", prefix + ".lora_embedding_B")
                : (prefix + ".lora_A.weight", prefix + ".lora_B.weight")
            tensors.append((TensorSpec(name: aKey, dtype: dtype, shape: [module.rank, module.inputs]), module.a))
            tensors.append((TensorSpec(name: bKey, dtype: dtype, shape: [module.outputs, module.rank]), module.b))
        }
        tensors.sort { $0.spec.name < $1.spec.name }
        let byName = Dictionary(tensors.map { ($0.spec.name, $0.values) }, uniquingKeysWith: { a, _ in a })
        let layout = SafetensorsLayout(tensors.map(\.spec), metadata: [("format", "pt")])
        try layout.write(to: FileSystem.join(folder, "adapter_model.safetensors")) { info, out in
            try out.write(FloatValues.bytes(byName[info.name]!, as: info.dtype))
        }
        try FileSystem.writeFile(FileSystem.join(folder, "adapter_config.json"), Array((config.serialized(style: .pretty, sortKeys: true) + "\n").utf8))
    }
}

extension CheckpointMerger {
    /// Merges a combined adapter into `checkpoint`: the adapter is written to a temporary folder beside
    /// `output` (removed afterwards), loaded back as any PEFT adapter and merged with weight 1.
    public static func merge(base checkpoint: Checkpoint, combined: CombinedAdapter, sources: [LoRAAdapter], to output: String,
                             options: MergeOptions) throws -> MergeReport {
        if !output.isEmpty { try FileSystem.refuseOverlap(output: output, inputs: [checkpoint.path] + sources.map(\.folder)) }
        // A dry run may name no output: the adapter is then staged in the temporary folder.
        let scratch = getenv("TMPDIR").map { String(cString: $0) }.flatMap { FileSystem.isDirectory($0) ? $0 : nil } ?? "/tmp"
        let staging = try AtomicOutput(target: output.isEmpty ? FileSystem.join(scratch, "ckpt-combined-adapter") : output + ".combined-adapter",
                                       isDirectory: true, overwrite: true)
        defer { staging.discard() }
        try combined.writeFiles(into: staging.temporary)
        let adapter = try LoRAAdapter(folder: staging.temporary)
        var report = try merge(base: checkpoint, adapters: [(adapter, 1)], to: output, options: options)
        report.notes = combined.notes + report.notes
        return report
    }
}
