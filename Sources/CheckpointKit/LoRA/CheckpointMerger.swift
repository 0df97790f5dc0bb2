/// What `ckpt-merge-lora` is asked to do.
public struct MergeOptions: Sendable {
    /// nil keeps the base's dtype (a quantized base: its weights' original dtype).
    public var dtype: DType?
    /// Re-quantize changed weights of a quantized base into its own scheme.
    public var requantize: Bool
    /// Plan and report only; write nothing.
    public var dryRun: Bool
    /// Threads for conversion, the merge arithmetic and OpenBLAS.
    public var threads: ThreadBudget
    /// Replace an existing output instead of refusing it.
    public var overwrite: Bool

    /// Defaults: keep dtypes, no re-quantization, write, all cores, refuse an existing output.
    public init(dtype: DType? = nil, requantize: Bool = false, dryRun: Bool = false, threads: ThreadBudget = .allCores,
                overwrite: Bool = false) {
        self.dtype = dtype
        self.requantize = requantize
        self.dryRun = dryRun
        self.threads = threads
        self.overwrite = overwrite
    }
}

/// What a merge did (or, for a dry run, would do).
public struct MergeReport: Sendable {
    /// One changed tensor.
    public struct Row: Sendable {
        /// The base tensor's name.
        public var tensor: String
        /// The base tensor's shape.
        public var shape: [Int]
        /// "lora", "dora", "embedding", "modules_to_save", "bias".
        public var kind: String
        /// Each contribution: adapter key, rank (0 for a bias or a replacement), scaling and the user's weight.
        public var adapters: [(key: String, rank: Int, scaling: Double, weight: Double)]
        /// Relative change ‖W' − W‖ / ‖W‖ (nil in a dry run).
        public var relativeChange: Double?
        /// Re-quantization error of the merged weight (with --requantize).
        public var requantization: ErrorMetrics?
        /// Root mean square of the change W' − W (nil in a dry run).
        public var updateRMS: Double?
        /// For a quantized base: the RMS error its format adds to this tensor, measured by encoding
        /// the merged weight in it. An update smaller than this is mostly lost when re-quantized.
        public var baseQuantizationRMSE: Double?
    }

    /// The output path asked for.
    public var output: String
    /// Changed tensors, in planning order.
    public var rows: [Row]
    /// Warnings for the user (an ignored --requantize, a base that looks like another model).
    public var notes: [String]
    /// Safetensors files written: the output itself for a lone file, else shard names (and the index) in the folder.
    public var files: [String]
    /// Whether this was a dry run (nothing written, `files` empty).
    public var dryRun: Bool
    /// Wall-clock duration of the merge.
    public var seconds: Double
}

/// Merges adapters into a base checkpoint, streaming tensor by tensor from the mapped base: only
/// the tensor being merged is held in f32 (plus its delta), so memory stays near one tensor, and
/// each tensor is written by the stream writer while the next one is merged.
public enum CheckpointMerger {
    /// Plans, checks and writes `checkpoint` with each adapter (times its weight) merged in, atomically to `output`.
    public static func merge(base checkpoint: Checkpoint, adapters: [(adapter: LoRAAdapter, weight: Double)], to output: String,
                             options: MergeOptions) throws -> MergeReport {
        try merge(base: checkpoint, adapters: adapters, to: output, options: options, writing: .streamed)
    }

    /// `merge`, writing safetensors through `writing`: `.sequential` is the plain twin the tests hold the streamed path to.
    static func merge(base checkpoint: Checkpoint, adapters: [(adapter: LoRAAdapter, weight: Double)], to output: String,
                      options: MergeOptions, writing: TensorWriting) throws -> MergeReport {
        // A dry run names no output (or one it will not write): nothing to keep apart from the inputs.
        if !options.dryRun || !output.isEmpty {
            try FileSystem.refuseOverlap(output: output, inputs: [checkpoint.path] + adapters.map(\.adapter.folder))
        }
        let clock = Stopwatch()
        MatrixMultiply.setThreads(options.threads)
        let base = try LogicalCheckpoint(checkpoint)
        let plan = try LoRAPlanner.plan(base: base, adapters: adapters)
        let byName = LoRAPlanner.baseTensors(base)
        // The shape a tensor is written with: grown when the adapters add tokens.
        func outputShape(_ name: String, _ shape: [Int]) -> [Int] { plan.vocabulary?.shape(of: name, shape) ?? shape }
        var report = MergeReport(output: output, rows: [], notes: plan.notes, files: [], dryRun: options.dryRun, seconds: 0)
        let requantize = options.requantize && base.scheme != nil
        if options.requantize && base.scheme == nil && checkpoint.ggufFile == nil {
            report.notes.append("--requantize ignored: the base is not quantized")
        }
        var rowIndex: [String: Int] = [:]
        for name in plan.order {
            let change = plan.changes[name]!
            let tensor = byName[name]!
            var kind = change.replacement != nil ? "modules_to_save" : (change.biasAdditions.isEmpty ? "lora" : "bias")
            if change.contributions.contains(where: { $0.magnitude != nil }) { kind = "dora" }
            if change.contributions.contains(where: { if case .embedding = $0.operation { return true } else { return false } }) { kind = "embedding" }
            var adaptersUsed = change.contributions.map { ($0.keys.first ?? $0.module, $0.rank, $0.scaling, $0.weight) }
            adaptersUsed += change.biasAdditions.map { ($0.key, 0, $0.scaling, $0.weight) }
            if let r = change.replacement { adaptersUsed.append((r.key, 0, 1.0, 1.0)) }
            adaptersUsed += change.tokenRows.map { ($0.key, 0, 1.0, 1.0) }
            rowIndex[name] = report.rows.count
            if !change.tokenRows.isEmpty { kind = "trainable_tokens" }
            if change.contributions.isEmpty && change.replacement == nil && change.biasAdditions.isEmpty && change.tokenRows.isEmpty { kind = "resize" }
            report.rows.append(.init(tensor: name, shape: outputShape(name, tensor.shape), kind: kind, adapters: adaptersUsed, relativeChange: nil, requantization: nil,
                                     updateRMS: nil, baseQuantizationRMSE: nil))
        }
        if options.dryRun {
            report.seconds = clock.seconds
            return report
        }
        if options.requantize, let file = checkpoint.ggufFile {
            report.notes.removeAll { $0.hasPrefix("--requantize ignored") }
            try mergeKeepingGGUFTypes(file, checkpoint: checkpoint, base: base, plan: plan, to: output, options: options, report: &report, rowIndex: rowIndex)
            report.files = [output]
            report.seconds = clock.seconds
            return report
        }

        // The output's tensors, shard by shard: changed ones as floats (or re-encoded), unchanged
        // quantized ones dequantized (or copied as they are when re-quantizing), the rest copied.
        enum Source { case copy(Checkpoint.Entry), float(LogicalTensor, DType), encoded(EncodedTensor) }
        var sources: [String: Source] = [:]
        var encodedParts: [String: [UInt8]] = [:]
        var shards = checkpoint.mirroredShards
        var logicalTensors = base.tensors
        if let (head, embedding) = plan.untieHead, !base.tensors.contains(where: { $0.name == head }), var virtual = byName[head] {
            virtual.name = head
            logicalTensors.insert(virtual, at: logicalTensors.firstIndex { $0.name == embedding }! + 1)
        }
        for tensor in logicalTensors {
            let changed = plan.changes[tensor.name] != nil
            let floatType = options.dtype ?? tensor.dtype
            switch tensor.storage {
            case .plain(let entry):
                if changed || (options.dtype != nil && FloatConversion.canConvert(from: entry.info.dtype, to: floatType) && entry.info.dtype != floatType) {
                    sources[tensor.name] = .float(tensor, entry.info.dtype.isFloatingPoint ? floatType : entry.info.dtype)
                    shards[tensor.fileIndex].tensors.append(TensorSpec(name: tensor.name, dtype: entry.info.dtype.isFloatingPoint ? floatType : entry.info.dtype,
                                                                       shape: outputShape(tensor.name, tensor.shape)))
                } else {
                    sources[tensor.name] = .copy(entry)
                    shards[tensor.fileIndex].tensors.append(TensorSpec(name: tensor.name, dtype: entry.info.dtype, shape: tensor.shape))
                }
            case .quantized:
                if outputShape(tensor.name, tensor.shape) != tensor.shape {
                    throw LoRAError.shapeMismatch(file: checkpoint.path, key: tensor.name, baseTensor: tensor.name, expected: tensor.shape,
                                                  actual: outputShape(tensor.name, tensor.shape))
                }
                if requantize {
                    if changed {
                        // Encoded below, once merged; sizes depend only on the shape and scheme.
                        sources[tensor.name] = .float(tensor, tensor.dtype)
                    }
                    for part in base.parts(of: tensor) where !changed {
                        sources[part.info.name] = .copy(part)
                        shards[tensor.fileIndex].tensors.append(TensorSpec(name: part.info.name, dtype: part.info.dtype, shape: part.info.shape))
                    }
                    if changed {
                        let original = base.float32(tensor, threads: options.threads)
                        let values = mergedValues(tensor, plan: plan, base: base, storage: .f32, threads: options.threads, original: original)
                        try requireRepresentable(values, as: .f32, file: checkpoint.path, tensor: tensor.name)
                        let encoded = reencode(tensor, values: values, threads: options.threads)
                        for part in encoded.parts {
                            encodedParts[part.spec.name] = part.bytes
                            shards[tensor.fileIndex].tensors.append(part.spec)
                        }
                        let metrics = values.withUnsafeBufferPointer { encoded.error(against: $0, threads: options.threads) }
                        if let i = rowIndex[tensor.name] {
                            report.rows[i].requantization = metrics
                            report.rows[i].baseQuantizationRMSE = metrics.rmse
                            let change = update(original, values)
                            (report.rows[i].updateRMS, report.rows[i].relativeChange) = (change.rms, change.relative)
                        }
                        sources[tensor.name] = .encoded(encoded)
                    }
                } else {
                    sources[tensor.name] = .float(tensor, floatType)
                    shards[tensor.fileIndex].tensors.append(TensorSpec(name: tensor.name, dtype: floatType, shape: tensor.shape))
                }
            }
        }

        var config = checkpoint.config
        if case .object(var members)? = config {
            if !requantize { members.removeAll { $0.0 == "quantization_config" } }
            if let vocabulary = plan.vocabulary, let i = members.firstIndex(where: { $0.0 == "vocab_size" }) { members[i].1 = JSONValue(vocabulary.to) }
            if plan.untieHead != nil {
                members.removeAll { $0.0 == "tie_word_embeddings" }
                members.append(("tie_word_embeddings", false))
            }
            config = .object(members)
            if let dtype = options.dtype { config = CheckpointConverter.updatingDType(config!, to: dtype) }
        }

        // A grown vocabulary brings its tokenizer: the adapter's files replace every tokenizer file of the base.
        let tokenizer = plan.vocabulary.map { v in v.tokenizerFiles.map { (name: $0, path: FileSystem.join(v.tokenizerFolder, $0)) } } ?? []
        let written = try CheckpointWriter.write(from: checkpoint, to: output, shards: shards.filter { !$0.tensors.isEmpty }, config: config,
                                                 overwrite: options.overwrite,
                                                 replacingFiles: plan.vocabulary == nil ? [] : VocabularyResize.tokenizerFileNames, extraFiles: tokenizer,
                                                 writing: writing) { info, out in
            if let bytes = encodedParts.removeValue(forKey: info.name) {
                try out.write(bytes)
                return
            }
            switch sources[info.name] {
            case .copy(let entry)?:
                try out.copy(checkpoint.view(entry))
                checkpoint.releasePages(entry)
            case .float(let tensor, let dtype)?:
                // The base tensor is widened once, then its mapped pages are let go: resident
                // memory stays near one tensor whatever the model's size.
                var original = base.float32(tensor, threads: options.threads)
                base.releasePages(tensor)
                var grown = tensor
                grown.shape = outputShape(tensor.name, tensor.shape)
                if grown.shape != tensor.shape, let vocabulary = plan.vocabulary { original = vocabulary.grow(original, columns: tensor.shape[1]) }
                let changed = plan.changes[tensor.name] != nil
                let values = changed
                    ? mergedValues(grown, plan: plan, base: base, storage: dtype, threads: options.threads, original: original)
                    : original
                if changed { try requireRepresentable(values, as: dtype, file: checkpoint.path, tensor: tensor.name) }
                if changed, let i = rowIndex[tensor.name] {
                    let change = update(original, values)
                    (report.rows[i].updateRMS, report.rows[i].relativeChange) = (change.rms, change.relative)
                    report.rows[i].baseQuantizationRMSE = baseQuantizationError(tensor, checkpoint: checkpoint, values: values, threads: options.threads)?.rmse
                }
                // Written in pieces while the next tensor is widened and merged.
                try values.withUnsafeBufferPointer { try out.convert($0, threads: options.threads) }
            case .encoded?, nil:
                preconditionFailure("no source for \(info.name)")
            }
        }
        report.files = written.files
        report.notes += lostUpdateNotes(report.rows)
        report.seconds = clock.seconds
        return report
    }

    /// The change `merged − original`: its RMS and its size relative to the original, ‖ΔW‖ / ‖W‖.
    static func update(_ original: [Float], _ merged: [Float]) -> (rms: Double, relative: Double) {
        let m = original.withUnsafeBufferPointer { o in merged.withUnsafeBufferPointer { ErrorMetrics.compare(reference: o, candidate: $0) } }
        return (m.rmse, m.sumSquaredReference > 0 ? (m.sumSquaredError / m.sumSquaredReference).squareRoot() : 0)
    }

    /// The error the base's own format adds to `values` (the merged weight): encoded as the base
    /// stores this tensor (its scheme, or its GGML type in a GGUF) and decoded again; nil for a
    /// tensor stored as floats.
    static func baseQuantizationError(_ tensor: LogicalTensor, checkpoint: Checkpoint, values: [Float], threads: ThreadBudget) -> ErrorMetrics? {
        if tensor.scheme != nil {
            let encoded = reencode(tensor, values: values, threads: threads)
            return values.withUnsafeBufferPointer { encoded.error(against: $0, threads: threads) }
        }
        // A GGUF tensor's blocks lie within rows, so encoding in Hugging Face row order costs what the permuted order does.
        guard case .plain(let entry) = tensor.storage, let stored = checkpoint.ggufTensor(entry), stored.info.type.floatDType == nil,
              values.count == stored.info.elementCount else { return nil }
        return try? GGUFExport.encodeMeasured(values, as: stored.info.type, dims: stored.info.dimensions, threads: threads).error
    }

    /// One note naming the tensors whose update is smaller than the base's quantization error.
    static func lostUpdateNotes(_ rows: [MergeReport.Row]) -> [String] {
        let lost = rows.filter { row in
            guard let update = row.updateRMS, let floor = row.baseQuantizationRMSE else { return false }
            return update < floor
        }
        guard !lost.isEmpty else { return [] }
        let names = lost.prefix(4).map(\.tensor).joined(separator: ", ") + (lost.count > 4 ? ", …" : "")
        return ["\(lost.count) of \(rows.count) merged tensors change by less than the base's quantization error (\(names)): "
                + "re-quantized, most of that update is lost"]
    }

    /// Merges into a GGUF base and writes a GGUF again: every tensor keeps its stored GGML type;
    /// changed ones are decoded, merged in Hugging Face layout, permuted back and encoded anew.
    static func mergeKeepingGGUFTypes(_ file: GGUFFile, checkpoint: Checkpoint, base: LogicalCheckpoint, plan: MergePlan, to output: String,
                                      options: MergeOptions, report: inout MergeReport, rowIndex: [String: Int]) throws {
        if let (head, _) = plan.untieHead {
            throw LoRAError.cannotKeepGGUFTypes(file: file.path, tensor: head, reason: "the GGUF ties it to the embedding and has no tensor for it")
        }
        if let vocabulary = plan.vocabulary {
            throw LoRAError.cannotKeepGGUFTypes(file: file.path, tensor: vocabulary.tensors[0],
                                                reason: "the adapter grows the vocabulary from \(vocabulary.from) to \(vocabulary.to) tokens")
        }
        var changedByStoredName: [String: (LogicalTensor, Int?)] = [:]
        for tensor in base.tensors where plan.changes[tensor.name] != nil {
            guard case .plain(let entry) = tensor.storage, let stored = checkpoint.ggufTensor(entry) else { continue }
            if let replacement = plan.changes[tensor.name]?.replacement, replacement.view.info.shape != tensor.shape {
                throw LoRAError.cannotKeepGGUFTypes(file: file.path, tensor: tensor.name,
                                                    reason: "the adapter's copy has shape \(replacement.view.info.shape), the GGUF's \(tensor.shape)")
            }
            guard stored.info.type.isEncodable || stored.info.type.floatDType != nil else {
                throw LoRAError.cannotKeepGGUFTypes(file: file.path, tensor: tensor.name,
                                                    reason: "it is stored as \(stored.info.type.name), which ckpt reads but does not write")
            }
            changedByStoredName[stored.info.name] = (tensor, stored.permutedHeads)
        }
        var updates: [String: (rms: Double, relative: Double)] = [:]
        let errors = try GGUFExport.rewrite(file, to: output, overwrite: options.overwrite, threads: options.threads) { info in
            guard let (tensor, heads) = changedByStoredName[info.name] else { return nil }
            let original = base.float32(tensor, threads: options.threads)
            let merged = mergedValues(tensor, plan: plan, base: base, storage: .f32, threads: options.threads, original: original)
            try requireRepresentable(merged, as: .f32, file: checkpoint.path, tensor: tensor.name)
            updates[tensor.name] = update(original, merged)
            guard let heads else { return merged }
            return GGUFLlamaNames.permuteRows(merged, rows: tensor.shape[0], columns: tensor.shape.count > 1 ? tensor.shape[1] : 1, heads: heads, toGGUF: true)
        }
        for (storedName, (tensor, _)) in changedByStoredName {
            guard let i = rowIndex[tensor.name] else { continue }
            report.rows[i].requantization = errors[storedName]
            report.rows[i].baseQuantizationRMSE = file.info(named: storedName)?.type.floatDType == nil ? errors[storedName]?.rmse : nil
            (report.rows[i].updateRMS, report.rows[i].relativeChange) = (updates[tensor.name]?.rms, updates[tensor.name]?.relative)
        }
        report.notes += lostUpdateNotes(report.rows)
    }

    /// The base tensor's values with every planned change applied, rounded as `storage` stores them.
    static func mergedValues(_ tensor: LogicalTensor, plan: MergePlan, base: LogicalCheckpoint, storage: DType, threads: ThreadBudget,
                             original: [Float]? = nil) -> [Float] {
        let change = plan.changes[tensor.name]!
        // A saved copy of the module (modules_to_save, or an adapted layer's base_layer) stands in
        // for the base tensor; deltas, if any, are added to it.
        var values = change.replacement.map { FloatValues.array($0.view) } ?? original ?? base.float32(tensor, threads: threads)
        // Trained token rows replace theirs, as PEFT's index_copy does.
        let columns = tensor.shape.count == 2 ? tensor.shape[1] : 0
        for rows in change.tokenRows {
            let trained = FloatValues.array(rows.view)
            for (k, row) in rows.indices.enumerated() {
                for c in 0..<columns { values[row * columns + c] = trained[k * columns + c] }
            }
        }
        if change.contributions.isEmpty && change.biasAdditions.isEmpty {
            LoRAMath.roundInPlace(&values, to: storage)
            return values
        }
        if !change.contributions.isEmpty {
            LoRAMath.apply(change.contributions, to: &values, shape: tensor.shape, storage: storage)
        }
        // A LoRA bias: base bias + lora_B.bias · scaling (· weight), in f32, rounded once.
        for addition in change.biasAdditions {
            let bias = FloatValues.array(addition.view)
            let factor = Float(addition.scaling)
            for i in values.indices { values[i] += bias[i] * factor * Float(addition.weight) }
        }
        if !change.biasAdditions.isEmpty { LoRAMath.roundInPlace(&values, to: storage) }
        return values
    }

    /// Merged values must be finite and fit the dtype they are written in (f16 tops out at 65504):
    /// an overflowing adapter is an error, never an Inf in the output.
    static func requireRepresentable(_ values: [Float], as dtype: DType, file: String, tensor: String) throws {
        let limit: Float = dtype == .f16 ? 65504 : .greatestFiniteMagnitude
        if let i = values.firstIndex(where: { !($0.magnitude <= limit) }) {
            throw LoRAError.mergedOutOfRange(file: file, tensor: tensor, index: i, value: values[i], dtype: dtype.rawValue)
        }
    }

    static func reencode(_ tensor: LogicalTensor, values: [Float], threads: ThreadBudget) -> EncodedTensor {
        values.withUnsafeBufferPointer { x in
            tensor.scheme!.encode(name: tensor.name, shape: tensor.shape, originalType: tensor.dtype, values: x, optimizeScales: false,
                                  threads: threads).encoded
        }
    }
}
