#if canImport(Glibc)
import Glibc
#endif

/// What `CheckpointConverter` is asked to do.
public struct ConversionOptions: Sendable {
    /// Float dtype for floating-point tensors (F32/F16/BF16); nil keeps every dtype.
    public var targetType: DType?
    /// Reshard to at most this many bytes per file; nil keeps the input's shard layout.
    public var shardSize: Int?
    /// Threads for the dtype conversion.
    public var threads: ThreadBudget
    /// Whether an existing output may be replaced; otherwise the write is refused.
    public var overwrite: Bool

    /// Creates options; the defaults keep every dtype and the shard layout, use all cores and refuse to overwrite.
    public init(targetType: DType? = nil, shardSize: Int? = nil, threads: ThreadBudget = .allCores, overwrite: Bool = false) {
        self.targetType = targetType
        self.shardSize = shardSize
        self.threads = threads
        self.overwrite = overwrite
    }
}

/// What a conversion did, tensor by tensor.
public struct ConversionReport: Sendable {
    /// One written tensor: its dtype before and after, and its bytes in and out.
    public struct Tensor: Sendable {
        /// The tensor's (Hugging Face) name.
        public var name: String
        /// The tensor's shape, unchanged by conversion.
        public var shape: [Int]
        /// The dtype the tensor was read in (F32 for a GGUF tensor decoded from GGML blocks).
        public var fromType: DType
        /// The dtype written (F32 for GGUF output in a block type, which `storedType` names).
        public var toType: DType
        /// Bytes the tensor took in the input.
        public var bytesIn: Int
        /// Bytes of the tensor's data in the output (headers excluded).
        public var bytesOut: Int
        /// The GGML type written, for GGUF output ("Q8_0"); nil for safetensors.
        public var storedType: String? = nil
    }

    /// The output path as given: a folder, or a lone .safetensors or .gguf file.
    public var output: String
    /// Weight files written: shard names plus the index when there are several, or the output path for a lone file.
    public var files: [String]
    /// One row per tensor, in the order written.
    public var tensors: [Tensor]
    /// Names of the files written beside the weights: generated tokenizer files and the folder's other files.
    public var copiedFiles: [String]
    /// Wall-clock duration of the whole conversion, in seconds.
    public var seconds: Double
    /// What the user should know per tensor (a GGUF type fallback, a tensor quantized without importance weights).
    public var notes: [String] = []
    /// Input bytes summed over all tensors.
    public var bytesIn: Int { tensors.reduce(0) { $0 + $1.bytesIn } }
    /// Tensor bytes written, summed over all tensors (headers and copied files excluded).
    public var bytesOut: Int { tensors.reduce(0) { $0 + $1.bytesOut } }
}

/// Options a conversion cannot use: an output dtype or a shard size.
public enum ConversionError: Error, Equatable, Sendable, CustomStringConvertible {
    case unsupportedTargetType(String)
    case invalidShardSize(String)

    /// The one-line message: the rejected value and what was expected.
    public var description: String {
        switch self {
        case let .unsupportedTargetType(name):
            return "\(name): unsupported output type (expected f32, f16 or bf16)"
        case let .invalidShardSize(text):
            return "\(text): invalid shard size (expected a positive size such as 500MB or 5GB)"
        }
    }
}

/// Any source → safetensors: dtype change and resharding, streamed tensor by tensor from the
/// mapped input, so memory stays near a few output pieces whatever the model size: each piece
/// is converted on the thread budget while the previous one is written by the stream writer.
public enum CheckpointConverter {
    /// Writes `checkpoint` to `output` atomically: float tensors in `targetType`, shards per `shardSize`, config.json's dtype updated.
    public static func convert(_ checkpoint: Checkpoint, to output: String, options: ConversionOptions) throws -> ConversionReport {
        try convert(checkpoint, to: output, options: options, writing: .streamed)
    }

    /// `convert`, writing through `writing`: `.sequential` is the plain twin the tests hold the streamed path to.
    static func convert(_ checkpoint: Checkpoint, to output: String, options: ConversionOptions, writing: TensorWriting) throws -> ConversionReport {
        if let t = options.targetType, ![.f32, .f16, .bf16].contains(t) {
            throw ConversionError.unsupportedTargetType(t.torchName)
        }
        try FileSystem.refuseOverlap(output: output, inputs: [checkpoint.path])
        let clock = Stopwatch()
        func outputType(_ dtype: DType) -> DType {
            guard let target = options.targetType, FloatConversion.canConvert(from: dtype, to: target) else { return dtype }
            return target
        }

        // Shards: the input's own grouping and names, or a fresh split in input order.
        var shards: [ShardPlan]
        let specs = checkpoint.entries.map { TensorSpec(name: $0.info.name, dtype: outputType($0.info.dtype), shape: $0.info.shape) }
        if let maxBytes = options.shardSize {
            shards = ShardPlan.split(specs, maxBytes: maxBytes)
            let metadata = checkpoint.files.first?.metadata ?? []
            for i in shards.indices { shards[i].metadata = metadata }
        } else {
            shards = checkpoint.mirroredShards
            for (entry, spec) in zip(checkpoint.entries, specs) { shards[entry.fileIndex].tensors.append(spec) }
        }

        var report = ConversionReport(output: output, files: [], tensors: [], copiedFiles: [], seconds: 0)
        let produce: (TensorInfo, TensorOutput) throws -> Void = { info, out in
            let entry = checkpoint.entry(named: info.name)!
            let view = checkpoint.view(entry)
            try out.convert(view, threads: options.threads)
            checkpoint.releasePages(entry)
            report.tensors.append(.init(name: info.name, shape: info.shape, fromType: view.dtype, toType: info.dtype,
                                        bytesIn: entry.storedBytes, bytesOut: info.byteCount))
        }

        var config = checkpoint.config
        if let target = options.targetType, let c = config { config = updatingDType(c, to: target) }
        let written = try CheckpointWriter.write(from: checkpoint, to: output, shards: shards, config: config,
                                                 overwrite: options.overwrite, writing: writing, produce: produce)
        report.files = written.files
        report.copiedFiles = written.copiedFiles
        report.seconds = clock.seconds
        return report
    }

    /// Sets `torch_dtype` or `dtype` (whichever the file uses; `torch_dtype` when neither).
    public static func updatingDType(_ config: JSONValue, to dtype: DType) -> JSONValue {
        guard case .object(var members) = config else { return config }
        let keys = members.map(\.0)
        let key = keys.contains("dtype") && !keys.contains("torch_dtype") ? "dtype" : "torch_dtype"
        if let i = members.firstIndex(where: { $0.0 == key }) {
            members[i].1 = .string(dtype.torchName)
        } else {
            members.append((key, .string(dtype.torchName)))
        }
        if keys.contains("dtype") && keys.contains("torch_dtype"), let i = members.firstIndex(where: { $0.0 == "dtype" }) {
            members[i].1 = .string(dtype.torchName)
        }
        return .object(members)
    }
}

