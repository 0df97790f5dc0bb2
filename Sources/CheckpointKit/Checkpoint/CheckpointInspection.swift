/// What `ckpt-inspect` reports about a checkpoint: files, tensors, totals, metadata, config and
/// any quantization found; with statistics when asked. Built from headers alone unless
/// statistics are requested.
///
/// By default the tensors are the model's logical ones (a quantized weight listed once, with its
/// original shape, its parts' bytes summed); the storage view lists every stored tensor.
public struct CheckpointInspection: Sendable {
    /// One tensor as listed: name, dtype, shape, stored size and file.
    public struct TensorRow: Sendable {
        /// The tensor's name as the checkpoint presents it (Hugging Face names, for a GGUF too).
        public var name: String
        /// The dtype the tensor reads as (F32 for a GGML block type; the original float dtype of
        /// a quantized weight).
        public var dtype: DType
        /// The stored encoding when it differs from `dtype` (a GGUF tensor's GGML type, a
        /// quantized weight's scheme: nf4, int8…).
        public var storedType: String?
        /// The tensor's shape as it reads, row-major (a quantized weight's original shape).
        public var shape: [Int]
        /// Bytes the tensor takes in its files (GGML blocks as stored; all parts of a quantized weight).
        public var bytes: Int
        /// The file holding the tensor, named as `Checkpoint.fileNames` names it.
        public var file: String
        /// Min, max, mean, std and NaN/Inf counts; nil unless statistics were asked for.
        public var statistics: TensorStatistics?
    }

    /// The checkpoint's path as opened.
    public var path: String
    /// Whether `tensors` lists stored tensors (true) or logical ones (false, the default).
    public var storageView: Bool
    /// safetensors, gguf or pytorch.
    public var format: String
    /// How the weights are spread: file, folder or sharded.
    public var layout: String
    /// Each weight file: its name, size in bytes and tensor count.
    public var files: [(name: String, bytes: Int, tensors: Int)]
    /// Every stored tensor, by file, then in the file's order.
    public var tensors: [TensorRow]
    /// Every file's string metadata merged (first occurrence of a key kept), then the container's own.
    public var metadata: [(String, String)]
    /// config.json: the folder's, or synthesized from a GGUF's metadata; nil when there is none.
    public var config: JSONValue?
    /// The quantization found (its config or first scheme, or "GGUF Q4_K, …"); nil for plain floats.
    public var quantization: String?

    /// Inspects `checkpoint`, recognising quantized weights with `layouts`; `storage` lists the
    /// stored tensors instead of the logical ones.
    public init(_ checkpoint: Checkpoint, layouts: [any QuantizedLayout.Type], storage: Bool = false, statistics: Bool = false,
                threads: ThreadBudget = .allCores) throws {
        path = checkpoint.path
        format = checkpoint.format.rawValue
        storageView = storage
        switch checkpoint.layout {
        case .file: layout = "file"
        case .folder: layout = "folder"
        case .sharded: layout = "sharded"
        }
        let names = checkpoint.fileNames
        files = checkpoint.files.enumerated().map { (names[$0.offset], $0.element.byteCount, $0.element.tensorCount) }
        let logical = try LogicalCheckpoint(checkpoint, layouts: layouts)
        if storage {
            tensors = checkpoint.entries.map { entry in
                TensorRow(name: entry.info.name, dtype: entry.info.dtype, storedType: entry.storedType, shape: entry.info.shape,
                          bytes: entry.storedBytes, file: names[entry.fileIndex],
                          statistics: statistics ? TensorStatistics.compute(checkpoint.view(entry), threads: threads) : nil)
            }
        } else {
            tensors = logical.tensors.map { tensor in
                let parts = logical.parts(of: tensor)
                var row = TensorRow(name: tensor.name, dtype: tensor.dtype, storedType: tensor.scheme?.schemeName, shape: tensor.shape,
                                    bytes: parts.reduce(0) { $0 + $1.storedBytes }, file: names[tensor.fileIndex], statistics: nil)
                if case .plain(let entry) = tensor.storage { row.storedType = entry.storedType }
                if statistics {
                    switch tensor.storage {
                    case .plain(let entry): row.statistics = TensorStatistics.compute(checkpoint.view(entry), threads: threads)
                    case .quantized: row.statistics = TensorStatistics.compute(logical.float32(tensor, threads: threads), threads: threads)
                    }
                }
                return row
            }
        }
        // Metadata of all shards merged, first occurrence of a key kept.
        var merged: [(String, String)] = []
        var seen = Set<String>()  // linear in the keys: a file may carry 100,000 of them
        for file in checkpoint.files {
            for (key, value) in file.metadata where seen.insert(key).inserted { merged.append((key, value)) }
        }
        metadata = merged + checkpoint.formatMetadata
        config = checkpoint.config
        quantization = logical.quantizationDescription
            ?? Self.storedTypes(checkpoint).map { "GGUF \($0)" }
    }

    /// The GGML types of a GGUF's tensors, most parameters first ("Q4_K, Q6_K, F32").
    static func storedTypes(_ checkpoint: Checkpoint) -> String? {
        guard checkpoint.format == .gguf, checkpoint.entries.contains(where: { $0.storedType != nil }) else { return nil }
        var counts: [String: Int] = [:]
        for entry in checkpoint.entries { counts[entry.storedType ?? entry.info.dtype.rawValue, default: 0] += entry.info.elementCount }
        return counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.map(\.key).joined(separator: ", ")
    }

    /// Elements summed over the listed tensors' shapes: the model's parameters in the logical
    /// view, the stored elements in the storage view.
    public var parameterCount: Int { tensors.reduce(0) { $0 + $1.shape.reduce(1, *) } }
    /// Bytes of all tensor data as stored (headers excluded; `files` has the files' sizes).
    public var tensorBytes: Int { tensors.reduce(0) { $0 + $1.bytes } }

    /// Parameters per stored type (a dtype, or a GGUF tensor's GGML type), in descending count.
    public var parametersByType: [(String, Int)] {
        var counts: [String: Int] = [:]
        for t in tensors { counts[t.storedType ?? t.dtype.rawValue, default: 0] += t.shape.reduce(1, *) }
        return counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
    }

    /// The `--json` document.
    public var json: JSONValue {
        var tensorList: [JSONValue] = []
        for t in tensors {
            var members: [(String, JSONValue)] = [
                ("name", .string(t.name)), ("dtype", .string(t.storedType ?? t.dtype.rawValue)),
                ("shape", .array(t.shape.map { JSONValue($0) })), ("bytes", JSONValue(t.bytes)), ("file", .string(t.file)),
            ]
            if let s = t.statistics {
                members.append(("stats", [
                    "min": statValue(s.min), "max": statValue(s.max), "mean": statValue(s.mean), "std": statValue(s.std),
                    "nan": JSONValue(s.nanCount), "inf": JSONValue(s.infCount),
                ]))
            }
            tensorList.append(.object(members))
        }
        return [
            "path": .string(path),
            "view": .string(storageView ? "storage" : "logical"),
            "file_bytes": JSONValue(files.reduce(0) { $0 + $1.bytes }),
            "format": .string(format),
            "layout": .string(layout),
            "files": .array(files.map { ["name": .string($0.name), "bytes": JSONValue($0.bytes), "tensors": JSONValue($0.tensors)] }),
            "parameters": JSONValue(parameterCount),
            "bytes": JSONValue(tensorBytes),
            "metadata": .object(metadata.map { ($0.0, .string($0.1)) }),
            "config": config ?? .null,
            "quantization": quantization.map { .string($0) } ?? .null,
            "tensors": .array(tensorList),
        ]
    }

    private func statValue(_ d: Double) -> JSONValue { d.isFinite ? .double(d) : .null }
}
