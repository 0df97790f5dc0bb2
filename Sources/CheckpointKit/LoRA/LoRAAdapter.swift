/// Everything that can be wrong with an adapter or its fit to a base, each naming the file and
/// the key, with what was expected.
public enum LoRAError: Error, Equatable, Sendable, CustomStringConvertible {
    case missingConfig(folder: String)
    case malformedConfig(file: String, reason: String)
    case unsupportedPEFTType(file: String, type: String)
    case missingWeights(folder: String)
    case unrecognizedKey(file: String, key: String)
    case unmatchedKeys(file: String, keys: [String], candidates: [String])
    case incompletePair(file: String, module: String, missing: String)
    case shapeMismatch(file: String, key: String, baseTensor: String, expected: [Int], actual: [Int])
    case rankMismatch(file: String, key: String, expected: Int, actual: Int)
    case nonFinite(file: String, key: String, index: Int)
    case baseHasNoBias(file: String, key: String, baseTensor: String)
    case doraCombined(module: String)
    case duplicateAdapter(folder: String)
    case mergedOutOfRange(file: String, tensor: String, index: Int, value: Float, dtype: String)
    case cannotKeepGGUFTypes(file: String, tensor: String, reason: String)
    case resizedVocabularyWithoutTokenizer(folder: String, key: String, from: Int, to: Int)
    case tokenIndices(file: String, key: String, reason: String)

    /// One line: the file (and tensor or key) at fault, what is wrong, and what was expected.
    public var description: String {
        switch self {
        case let .missingConfig(folder):
            return "\(folder): no adapter_config.json (expected a PEFT adapter folder)"
        case let .malformedConfig(file, reason):
            return "\(file): malformed adapter config: \(reason)"
        case let .unsupportedPEFTType(file, type):
            return "\(file): peft_type \(type) is not supported (expected LORA; IA3, LoHa, LoKr, AdaLoRA and prompt methods are not merged by ckpt)"
        case let .missingWeights(folder):
            return "\(folder): no adapter_model.safetensors (expected the adapter's weights beside its config)"
        case let .unrecognizedKey(file, key):
            return "\(faultLocation(file, tensor: key)): not a LoRA key and not in modules_to_save (expected lora_A/lora_B/lora_embedding_A/lora_embedding_B/lora_magnitude_vector)"
        case let .unmatchedKeys(file, keys, candidates):
            let shown = keys.prefix(5).joined(separator: ", ") + (keys.count > 5 ? ", … (\(keys.count) in all)" : "")
            let tried = candidates.isEmpty ? "" : "; tried base tensors such as \(candidates.prefix(3).joined(separator: ", "))"
            return "\(file): \(keys.count) adapter key(s) match no base tensor: \(shown)\(tried)"
        case let .incompletePair(file, module, missing):
            return "\(file): module '\(module)': has no \(missing) (expected both halves of each LoRA pair)"
        case let .shapeMismatch(file, key, baseTensor, expected, actual):
            return "\(faultLocation(file, tensor: key)): does not fit base tensor '\(baseTensor)' (expected shape \(expected), got \(actual))"
        case let .rankMismatch(file, key, expected, actual):
            return "\(faultLocation(file, tensor: key)): rank disagrees with adapter_config.json (expected r = \(expected), got \(actual))"
        case let .nonFinite(file, key, index):
            return "\(faultLocation(file, tensor: key)): NaN or Inf at flat index \(index) (expected finite adapter weights)"
        case let .mergedOutOfRange(file, tensor, index, value, dtype):
            return "\(faultLocation(file, tensor: tensor)): the merge gives \(value) at flat index \(index) (expected a finite value \(dtype) can hold; check lora_alpha and --weight)"
        case let .cannotKeepGGUFTypes(file, tensor, reason):
            return "\(faultLocation(file, tensor: tensor)): cannot be merged into the GGUF in place: \(reason) (expected a change to a tensor the GGUF stores; merge without --requantize to write floats)"
        case let .tokenIndices(file, key, reason):
            return "\(faultLocation(file, tensor: key)): \(reason)"
        case let .resizedVocabularyWithoutTokenizer(folder, key, from, to):
            return "\(folder): '\(key)' grows the vocabulary from \(from) to \(to) tokens, but the folder has no tokenizer "
                + "(expected the tokenizer saved with the adapter: tokenizer.json, tokenizer.model or vocab.json)"
        case let .baseHasNoBias(file, key, baseTensor):
            return "\(faultLocation(file, tensor: key)): the base has no '\(baseTensor)' to add the LoRA bias to"
        case let .doraCombined(module):
            return "module '\(module)': a DoRA adapter cannot be combined with other adapters on the same module (merge them one at a time)"
        case let .duplicateAdapter(folder):
            return "\(folder): the same adapter is given twice"
        }
    }
}

/// The fields of `adapter_config.json` that change the merge.
public struct AdapterConfig: Sendable {
    /// `peft_type` (LORA when absent); anything else is refused.
    public var peftType: String
    /// `r`: the default rank, positive.
    public var rank: Int
    /// `lora_alpha`; `r` when absent.
    public var alpha: Double
    /// `use_rslora`: scale by alpha/√r instead of alpha/r.
    public var useRSLoRA: Bool
    /// `rank_pattern`: per-module rank overrides keyed by regular expression, in file order.
    public var rankPattern: [(String, Int)]
    /// `alpha_pattern`: per-module alpha overrides, looked up as `rankPattern` is.
    public var alphaPattern: [(String, Double)]
    /// `fan_in_fan_out`: the base stores the weight as [in, out] (GPT-2's Conv1D).
    public var fanInFanOut: Bool
    /// `use_dora`: modules carry a magnitude vector.
    public var useDoRA: Bool
    /// `target_modules` as written (a list or a regex); kept, not used for matching keys.
    public var targetModules: JSONValue?
    /// `modules_to_save`: modules whose full tensors the adapter stores to replace the base's.
    public var modulesToSave: [String]
    /// `bias` as written ("none" when absent).
    public var bias: String
    /// `lora_bias`: lora_B carries a bias added to the module's bias.
    public var loraBias: Bool
    /// `base_model_name_or_path`, used only to warn when the base looks like another model.
    public var baseModelNameOrPath: String?
    /// `trainable_token_indices`: token rows the adapter trains, for the embedding (a list) or per module (an object).
    public var trainableTokenIndices: [(module: String?, indices: [Int])]

    /// Reads the fields from a parsed `adapter_config.json`; throws `LoRAError` naming `file`.
    public init(parsing json: JSONValue, file: String) throws {
        func bad(_ reason: String) -> LoRAError { .malformedConfig(file: file, reason: reason) }
        guard case .object = json else { throw bad("not a JSON object") }
        peftType = json["peft_type"]?.stringValue ?? "LORA"
        guard peftType.uppercased() == "LORA" else { throw LoRAError.unsupportedPEFTType(file: file, type: peftType) }
        guard let r = json["r"]?.intValue, r > 0 else { throw bad("\"r\" is \(json["r"]?.serialized() ?? "missing") (expected a positive integer)") }
        rank = r
        guard let a = json["lora_alpha"]?.doubleValue ?? (json["lora_alpha"] == nil ? Double(r) : nil) else {
            throw bad("\"lora_alpha\" is not a number")
        }
        alpha = a
        useRSLoRA = json["use_rslora"]?.boolValue ?? false
        rankPattern = try (json["rank_pattern"]?.objectMembers ?? []).map { key, value in
            guard let v = value.intValue, v > 0 else { throw bad("rank_pattern['\(key)'] is not a positive integer") }
            return (key, v)
        }
        alphaPattern = try (json["alpha_pattern"]?.objectMembers ?? []).map { key, value in
            guard let v = value.doubleValue else { throw bad("alpha_pattern['\(key)'] is not a number") }
            return (key, v)
        }
        fanInFanOut = json["fan_in_fan_out"]?.boolValue ?? false
        useDoRA = json["use_dora"]?.boolValue ?? false
        targetModules = json["target_modules"]
        modulesToSave = json["modules_to_save"]?.arrayValue?.compactMap(\.stringValue) ?? []
        bias = json["bias"]?.stringValue ?? "none"
        loraBias = json["lora_bias"]?.boolValue ?? false
        baseModelNameOrPath = json["base_model_name_or_path"]?.stringValue
        func indices(_ value: JSONValue, _ what: String) throws -> [Int] {
            guard let list = value.arrayValue, list.count <= 1 << 24 else { throw bad("\(what) is not a list of token ids") }
            return try list.map { item in
                guard let id = item.intValue, id >= 0 else { throw bad("\(what) holds \(item.serialized()) (expected token ids ≥ 0)") }
                return id
            }
        }
        switch json["trainable_token_indices"] {
        case nil, .null?: trainableTokenIndices = []
        case .array?: trainableTokenIndices = [(nil, try indices(json["trainable_token_indices"]!, "trainable_token_indices"))]
        case .object(let members)?:
            trainableTokenIndices = try members.map { ($0.0, try indices($0.1, "trainable_token_indices['\($0.0)']")) }
        default: throw bad("trainable_token_indices is neither a list nor an object")
        }
    }

    /// PEFT's pattern lookup (`get_pattern_key`): the first key `K` for which the module name
    /// matches `(.*\.)?(K)$` (keys are regular expressions, so `layers.1.mlp.down_proj` and
    /// `q_proj` both work).
    static func patternValue<T>(_ patterns: [(String, T)], module: String) -> T? {
        for (key, value) in patterns {
            if let regex = try? Regex("(.*\\.)?(\(key))$"), (try? regex.wholeMatch(in: module)) != nil { return value }
        }
        return nil
    }

    /// (rank, scaling) for a module: alpha / r, or alpha / √r with rsLoRA, after the patterns.
    public func rankAndScaling(module: String) -> (rank: Int, scaling: Double) {
        let r = Self.patternValue(rankPattern, module: module) ?? rank
        let a = Self.patternValue(alphaPattern, module: module) ?? alpha
        return (r, useRSLoRA ? a / Double(r).squareRoot() : a / Double(r))
    }
}

/// A loaded PEFT adapter: its config and its tensors grouped by the module they change.
public final class LoRAAdapter: Sendable {
    /// One adapted module.
    public struct Module: Sendable {
        /// The PEFT layer the module comes from: a linear (lora_A/B) or an embedding (lora_embedding_A/B).
        public enum Kind: Sendable { case linear, embedding }
        /// Module name without `base_model.model.` or `.default`, e.g. `model.layers.0.self_attn.q_proj`.
        public var name: String
        /// Decides how B·A is laid onto the base tensor.
        public var kind: Kind
        /// lora_A [r, in], or lora_embedding_A [r, vocab].
        public var a: TensorView
        /// lora_B [out, r], or lora_embedding_B [dim, r].
        public var b: TensorView
        /// DoRA's lora_magnitude_vector [out], when present.
        public var magnitude: TensorView?
        /// lora_B.bias [out], added to the base module's bias, when present.
        public var bias: TensorView?
        /// The adapter keys this module consumes.
        public var keys: [String]
    }

    /// The adapter folder, without trailing slashes.
    public let folder: String
    /// `<folder>/adapter_config.json`.
    public let configPath: String
    /// `<folder>/adapter_model.safetensors`.
    public let weightsPath: String
    /// The merge-relevant fields of adapter_config.json.
    public let config: AdapterConfig
    /// adapter_config.json as parsed, every field kept (a combined adapter starts from it).
    public let configJSON: JSONValue
    /// The weights file, mapped; module and replacement views point into it.
    public let file: SafetensorsFile
    /// Adapted modules by name (without the `base_model.model.` prefix).
    public let modules: [Module]
    /// modules_to_save tensors: full replacements, by tensor name (prefix removed).
    public let replacements: [(name: String, key: String, view: TensorView)]
    /// Trained token rows (`trainable_token_indices`): the module, the key and its rows `[indices, dim]`.
    public let tokenRows: [(module: String, key: String, view: TensorView)]

    /// Loads a PEFT adapter folder, sorting every key into a module or a replacement; an unknown key throws `LoRAError`.
    public init(folder: String) throws {
        var folder = folder
        while folder.count > 1 && folder.hasSuffix("/") { folder.removeLast() }
        self.folder = folder
        let configPath = FileSystem.join(folder, "adapter_config.json")
        let weightsPath = FileSystem.join(folder, "adapter_model.safetensors")
        self.configPath = configPath
        self.weightsPath = weightsPath
        guard FileSystem.isRegularFile(configPath) else {
            if !FileSystem.exists(folder) { throw CheckpointError.notFound(path: folder) }
            throw LoRAError.missingConfig(folder: folder)
        }
        let configFile = try MappedFile(path: configPath)
        guard configFile.count < 1 << 24, firstInvalidUTF8Offset(configFile.bytes) == nil else {
            throw LoRAError.malformedConfig(file: configPath, reason: "not a small UTF-8 JSON file")
        }
        let json: JSONValue
        do { json = try JSONParser.parse(configFile.bytes) } catch {
            throw LoRAError.malformedConfig(file: configPath, reason: error.description)
        }
        configJSON = json
        let config = try AdapterConfig(parsing: json, file: configPath)
        self.config = config
        guard FileSystem.isRegularFile(weightsPath) else {
            if FileSystem.isRegularFile(FileSystem.join(folder, "adapter_model.bin")) {
                throw LoRAError.malformedConfig(file: FileSystem.join(folder, "adapter_model.bin"),
                                                reason: "PyTorch .bin adapters are not read yet (expected adapter_model.safetensors)")
            }
            throw LoRAError.missingWeights(folder: folder)
        }
        file = try SafetensorsFile(path: weightsPath)

        struct Parts {
            var a: TensorView?, b: TensorView?, magnitude: TensorView?, bias: TensorView?
            var embedding = false
            var keys: [String] = []
        }
        var parts: [String: Parts] = [:]
        var order: [String] = []
        var replacements: [(String, String, TensorView, Int)] = []
        var tokenRows: [(module: String, key: String, view: TensorView)] = []
        for info in file.tensors {
            let key = info.name
            var name = key.hasPrefix("base_model.model.") ? String(key.dropFirst("base_model.model.".count)) : key
            // Keys saved with the adapter name left in ("…lora_A.default.weight") mean the same.
            name = name.replacingOccurrences(of: ".default.", with: ".")
            if name.hasSuffix(".default") { name = String(name.dropLast(".default".count)) }
            let view = file.view(info)
            let roles: [(String, WritableKeyPath<Parts, TensorView?>, Bool)] = [
                (".lora_A.weight", \.a, false), (".lora_B.weight", \.b, false), (".lora_B.bias", \.bias, false),
                (".lora_embedding_A", \.a, true), (".lora_embedding_B", \.b, true),
                (".lora_magnitude_vector.weight", \.magnitude, false), (".lora_magnitude_vector", \.magnitude, false),
            ]
            if let (suffix, path, embedding) = roles.first(where: { name.hasSuffix($0.0) }) {
                let module = String(name.dropLast(suffix.count))
                if parts[module] == nil { order.append(module) }
                parts[module, default: Parts()][keyPath: path] = view
                parts[module]!.embedding = parts[module]!.embedding || embedding
                parts[module]!.keys.append(key)
                continue
            }
            if name.hasSuffix(".token_adapter.trainable_tokens_delta") {
                tokenRows.append((String(name.dropLast(".token_adapter.trainable_tokens_delta".count)), key, view))
                continue
            }
            // PEFT also saves the base layer of an adapted embedding (`….base_layer.weight`); on
            // load it replaces the base tensor, and the delta is added to it.
            if name.hasSuffix(".base_layer.weight") || name.hasSuffix(".base_layer.bias") {
                replacements.append((name.replacingOccurrences(of: ".base_layer.", with: "."), key, view, 1))
                continue
            }
            // A modules_to_save wrapper saved whole (PEFT ≥ 0.15 with save_embedding_layers): the
            // trained copy (`….modules_to_save.weight`) is what merge_and_unload keeps; the wrapped
            // original (`….original_module.weight`) and a plain copy stand behind it.
            var rank = 1
            for (marker, markerRank) in [(".modules_to_save.", 2), (".original_module.", 0)] where name.contains(marker) {
                name = name.replacingOccurrences(of: marker, with: ".")
                rank = markerRank
            }
            let module = name.split(separator: ".").dropLast().joined(separator: ".")
            let saved = config.modulesToSave.contains { module == $0 || module.hasSuffix("." + $0) }
            guard saved else { throw LoRAError.unrecognizedKey(file: weightsPath, key: key) }
            replacements.append((name, key, view, rank))
        }
        // One replacement per tensor: the highest-ranked copy; the others are used up by it.
        var best: [String: Int] = [:]
        for (i, r) in replacements.enumerated() where best[r.0].map({ replacements[$0].3 < r.3 }) ?? true { best[r.0] = i }
        replacements = replacements.enumerated().filter { best[$0.element.0] == $0.offset }.map(\.element)
        modules = try order.map { name in
            let p = parts[name]!
            guard let a = p.a else { throw LoRAError.incompletePair(file: weightsPath, module: name, missing: p.embedding ? "lora_embedding_A" : "lora_A") }
            guard let b = p.b else { throw LoRAError.incompletePair(file: weightsPath, module: name, missing: p.embedding ? "lora_embedding_B" : "lora_B") }
            return Module(name: name, kind: p.embedding ? .embedding : .linear, a: a, b: b, magnitude: p.magnitude, bias: p.bias, keys: p.keys)
        }
        self.replacements = replacements.map { (name: $0.0, key: $0.1, view: $0.2) }
        self.tokenRows = tokenRows
    }
}

extension String {
    /// Plain substring replacement (no Foundation).
    func replacingOccurrences(of target: String, with replacement: String) -> String {
        guard !target.isEmpty, contains(target) else { return self }
        var result = ""
        var rest = self[...]
        while let range = rest.firstRange(of: target) {
            result += rest[..<range.lowerBound]
            result += replacement
            rest = rest[range.upperBound...]
        }
        return result + rest
    }
}
