/// Failures assembling a checkpoint from a folder, an index and its shards.
public enum CheckpointError: Error, Equatable, Sendable, CustomStringConvertible {
    case notFound(path: String)
    case noWeights(path: String, found: [String])
    case indexMalformed(file: String, reason: String)
    case shardPathEscapes(file: String, shard: String)
    case missingShard(file: String, shard: String)
    case tensorNotInShard(file: String, tensor: String, shard: String)
    case tensorMissingFromIndex(file: String, tensor: String, shard: String)
    case duplicateTensor(tensor: String, firstFile: String, secondFile: String)
    case jsonMalformed(file: String, reason: String)
    case notRegularFile(path: String)
    case tokenizerUnavailable(path: String, reason: String)

    /// The one-line message: the path, file or tensor at fault, what is wrong and what was expected.
    public var description: String {
        switch self {
        case let .notFound(path):
            return "\(path): no such file or folder"
        case let .noWeights(path, found):
            let extra = found.isEmpty ? "" : "; found \(found.joined(separator: ", "))"
            return "\(path): no weights found (expected *.safetensors, *.gguf or PyTorch *.bin/*.pt/*.pth files, or a shard index\(extra))"
        case let .indexMalformed(file, reason):
            return "\(file): malformed shard index: \(reason) (expected {\"metadata\": {...}, \"weight_map\": {tensor: file}})"
        case let .shardPathEscapes(file, shard):
            return "\(file): shard '\(shard)' points outside the checkpoint folder (expected a file name beside the index)"
        case let .missingShard(file, shard):
            return "\(file): shard '\(shard)' named by the index is missing (expected it beside the index)"
        case let .tensorNotInShard(file, tensor, shard):
            return "\(faultLocation(file, tensor: tensor)): not in shard '\(shard)' where the index places it"
        case let .tensorMissingFromIndex(file, tensor, shard):
            return "\(faultLocation(file, tensor: tensor)): present in shard '\(shard)' but not listed in the index"
        case let .duplicateTensor(tensor, firstFile, secondFile):
            return "\(faultLocation(secondFile, tensor: tensor)): also present in \(firstFile) (expected each tensor once)"
        case let .jsonMalformed(file, reason):
            return "\(file): malformed JSON file: \(reason)"
        case let .tokenizerUnavailable(_, reason):
            return reason
        case let .notRegularFile(path):
            return "\(path): not a regular file or folder (expected a checkpoint file, a shard index or a model folder)"
        }
    }
}

/// A model checkpoint in any container ckpt reads: safetensors (a file, a shard index or a
/// folder), GGUF (one file) or PyTorch (`.bin`/`.pt`/`.pth`: a file, a shard index or a folder),
/// with config.json, the tokenizer and the folder's other files carried along.
///
/// Every source is seen the same way: tensors under their Hugging Face names and shapes, each
/// readable as a `TensorView` in a safetensors dtype. A GGUF's tensors are renamed, their Q/K
/// rows un-permuted and their GGML blocks decoded to f32 when read; its config.json and
/// tokenizer files are synthesized from the metadata. Opening reads headers only; tensor data
/// stays mapped and untouched until it is asked for.
public final class Checkpoint: Sendable {
    /// The container a checkpoint was read from.
    public enum Format: String, Sendable {
        case safetensors, gguf, pytorch
    }

    /// How the weights are spread over files.
    public enum Layout: Equatable, Sendable {
        /// A single weights file given directly.
        case file
        /// A folder holding its weights file(s), without an index.
        case folder
        /// Shards listed by an index (`*.safetensors.index.json`, `*.bin.index.json`).
        case sharded(indexName: String)
    }

    /// Where a tensor lives: which file, and what the source says of it.
    public struct Entry: Sendable {
        /// Name, dtype and shape as the tensor reads (`view`); offsets within its file's data.
        public let info: TensorInfo
        /// Index into `files` of the file holding the tensor.
        public let fileIndex: Int
        /// Bytes the tensor takes in its file (differs from `info.byteCount` for GGML blocks).
        public let storedBytes: Int
        /// The stored encoding when it is not `info.dtype` itself, e.g. "Q4_K" for a GGUF tensor.
        public let storedType: String?
        /// The tensor's index in its container's own list.
        let locator: Int

        init(info: TensorInfo, fileIndex: Int, storedBytes: Int? = nil, storedType: String? = nil, locator: Int) {
            self.info = info
            self.fileIndex = fileIndex
            self.storedBytes = storedBytes ?? info.byteCount
            self.storedType = storedType
            self.locator = locator
        }
    }

    /// One file holding weights.
    public struct File: Sendable {
        /// The file's path, openable as is and named in messages.
        public let path: String
        /// The whole file's size in bytes (what a verification expects to read).
        public let byteCount: Int
        /// Number of tensors stored in the file.
        public let tensorCount: Int
        /// The file's own string metadata (safetensors `__metadata__`).
        public let metadata: [(String, String)]
    }

    /// A file ckpt synthesizes for the checkpoint (a GGUF's tokenizer.json), written beside the
    /// weights wherever the folder's own files would be copied.
    public struct GeneratedFile: Sendable {
        /// File name to write beside the weights (tokenizer.json, tokenizer_config.json).
        public let name: String
        /// The JSON document the file holds.
        public let contents: JSONValue
        /// Whether the JSON is written with object keys sorted.
        public let sortKeys: Bool
    }

    /// The opened container behind each file.
    enum Container: Sendable {
        case safetensors(SafetensorsFile)
        case gguf(GGUFSource)
        case pytorch(PyTorchCheckpoint)
    }

    /// The path opened, trailing slashes removed: a weights file, a shard index or a folder.
    public let path: String
    /// The container the weights are read from.
    public let format: Format
    /// How the weights are spread over `files`.
    public let layout: Layout
    /// The folder the checkpoint lives in (its config and other files), nil for a lone file.
    public let directory: String?
    /// Weight files in order (a single element unless sharded).
    public let files: [File]
    /// All tensors: by file, then in the file's order.
    public let entries: [Entry]
    private let entryByName: [String: Int]
    let containers: [Container]
    /// config.json: the folder's, or synthesized from a GGUF's metadata.
    public let config: JSONValue?
    /// Where `config` came from, for messages (`<folder>/config.json`, or the GGUF file).
    public let configSource: String
    /// The index's "metadata" object, when sharded.
    public let indexMetadata: JSONValue?
    /// Other files of the folder (tokenizer.json, generation_config.json…) by name, to copy along.
    public let otherFiles: [String]
    /// Files synthesized from the source's metadata (a GGUF's tokenizer.json and tokenizer_config.json).
    public let generatedFiles: [GeneratedFile]
    /// Why the source's vocabulary could not become a tokenizer (an unknown GGUF tokenizer model).
    public let tokenizerFailure: String?
    /// The container's own key/values, summarized for display (a GGUF's metadata; arrays as their length).
    public let formatMetadata: [(String, String)]

    /// Everything a source assembles; the initializer checks names and the index.
    struct Parts {
        var format: Format
        var layout: Layout
        var directory: String?
        var containers: [Container] = []
        var files: [File] = []
        var entries: [Entry] = []
        var weightMap: [(String, String)]? = nil
        var indexPath: String? = nil
        var shardNames: [String] = []
        var indexMetadata: JSONValue? = nil
        var config: JSONValue? = nil
        var configSource: String? = nil
        var generatedFiles: [GeneratedFile] = []
        var formatMetadata: [(String, String)] = []
        /// Why the source's tokenizer could not be built, when it could not.
        var tokenizerFailure: String? = nil
        /// Names in the folder that are weights or their index (never copied along).
        var weightFileNames: Set<String> = []
    }

    /// Opens the checkpoint at `path`, whatever its container.
    public convenience init(path: String) throws {
        var path = path
        while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
        guard FileSystem.exists(path) else { throw CheckpointError.notFound(path: path) }
        let parts: Parts
        if FileSystem.isDirectory(path) {
            let names = FileSystem.list(path)
            if SafetensorsSource.claims(folder: names) {
                parts = try SafetensorsSource.open(path)
            } else if PyTorchSource.claims(folder: names) {
                parts = try PyTorchSource.open(path)
            } else if let gguf = GGUFSource.soleFile(in: names) {
                parts = try GGUFSource.open(FileSystem.join(path, gguf), folder: path)
            } else {
                throw CheckpointError.noWeights(path: path, found: names.filter(Self.isWeightsFileName))
            }
        } else {
            guard FileSystem.isRegularFile(path) else { throw CheckpointError.notRegularFile(path: path) }
            switch Self.fileFormat(path) {
            case .gguf: parts = try GGUFSource.open(path, folder: nil)
            case .pytorch: parts = try PyTorchSource.open(path)
            case .safetensors: parts = try SafetensorsSource.open(path)
            }
        }
        try self.init(path: path, parts: parts)
    }

    /// The container of a weights file or index: by its first bytes, else by its name.
    static func fileFormat(_ path: String) -> Format {
        if path.hasSuffix(".index.json") {
            return PyTorchSource.isWeightsName(String(path.dropLast(".index.json".count))) ? .pytorch : .safetensors
        }
        if let head = try? FileSystem.readPrefix(path, count: 4), head.count == 4 {
            if head == Array("GGUF".utf8) { return .gguf }
            if head == [0x50, 0x4B, 0x03, 0x04] { return .pytorch }  // a zip: torch.save's format
        }
        if path.hasSuffix(".gguf") { return .gguf }
        if PyTorchSource.isWeightsName(path) { return .pytorch }
        return .safetensors
    }

    init(path: String, parts: Parts) throws {
        var entryByName: [String: Int] = [:]
        for (i, entry) in parts.entries.enumerated() {
            if let previous = entryByName[entry.info.name] {
                throw CheckpointError.duplicateTensor(tensor: entry.info.name, firstFile: parts.files[parts.entries[previous].fileIndex].path,
                                                      secondFile: parts.files[entry.fileIndex].path)
            }
            entryByName[entry.info.name] = i
        }
        if let weightMap = parts.weightMap, let indexPath = parts.indexPath {
            var listed = Set<String>()
            for (tensor, shard) in weightMap {
                listed.insert(tensor)
                guard let i = entryByName[tensor], parts.shardNames[parts.entries[i].fileIndex] == shard else {
                    throw CheckpointError.tensorNotInShard(file: indexPath, tensor: tensor, shard: shard)
                }
            }
            for entry in parts.entries where !listed.contains(entry.info.name) {
                throw CheckpointError.tensorMissingFromIndex(file: indexPath, tensor: entry.info.name, shard: parts.shardNames[entry.fileIndex])
            }
        }

        var config = parts.config
        var configSource = parts.configSource ?? path
        var otherFiles: [String] = []
        if let directory = parts.directory {
            let configPath = FileSystem.join(directory, "config.json")
            if config == nil && FileSystem.isRegularFile(configPath) {
                config = try Self.readJSONObject(configPath)
                configSource = configPath
            }
            let generated = Set(parts.generatedFiles.map(\.name))
            for name in FileSystem.list(directory) where !parts.weightFileNames.contains(name) && name != "config.json"
                && !generated.contains(name) && !name.hasPrefix(".") && FileSystem.isRegularFile(FileSystem.join(directory, name))
                && !Self.isWeightsFileName(name)
            {
                otherFiles.append(name)
            }
        }

        self.path = path
        self.format = parts.format
        self.layout = parts.layout
        self.directory = parts.directory
        self.files = parts.files
        self.entries = parts.entries
        self.entryByName = entryByName
        self.containers = parts.containers
        self.config = config
        self.configSource = configSource
        self.indexMetadata = parts.indexMetadata
        self.otherFiles = otherFiles
        self.generatedFiles = parts.generatedFiles
        self.formatMetadata = parts.formatMetadata
        self.tokenizerFailure = parts.tokenizerFailure
    }

    /// Weights and indexes of every container: never copied along as "other files".
    static func isWeightsFileName(_ name: String) -> Bool {
        name.hasSuffix(".safetensors") || name.hasSuffix(".index.json") || name.hasSuffix(".gguf") || PyTorchSource.isWeightsName(name)
    }

    /// Reads `{"metadata": {...}, "weight_map": {tensor: shard}}`: shard names in first-seen
    /// order (sorted, so model-00001… comes first), the map, and the metadata object.
    static func readIndex(_ path: String) throws -> ([String], [(String, String)], JSONValue?) {
        let mapped = try MappedFile(path: path)
        if GitLFSPointer(bytes: mapped.bytes) != nil || mapped.count > 100_000_000 {
            throw CheckpointError.indexMalformed(file: path, reason: mapped.count > 100_000_000 ? "larger than 100 MB" : "a Git LFS pointer")
        }
        if let bad = firstInvalidUTF8Offset(mapped.bytes) {
            throw CheckpointError.indexMalformed(file: path, reason: "invalid UTF-8 at byte \(bad)")
        }
        let root: JSONValue
        do { root = try JSONParser.parse(mapped.bytes) } catch {
            throw CheckpointError.indexMalformed(file: path, reason: error.description)
        }
        guard case .object = root, let weightMap = root["weight_map"]?.objectMembers else {
            throw CheckpointError.indexMalformed(file: path, reason: "no \"weight_map\" object")
        }
        var pairs: [(String, String)] = []
        var seen = Set<String>()
        var shards = Set<String>()
        for (tensor, value) in weightMap {
            guard let shard = value.stringValue else {
                throw CheckpointError.indexMalformed(file: path, reason: "tensor '\(tensor)' maps to a non-string")
            }
            guard seen.insert(tensor).inserted else {
                throw CheckpointError.indexMalformed(file: path, reason: "tensor '\(tensor)' listed twice")
            }
            guard !shard.isEmpty, !shard.contains("/"), shard != "..", shard != "." else {
                throw CheckpointError.shardPathEscapes(file: path, shard: shard)
            }
            shards.insert(shard)
            pairs.append((tensor, shard))
        }
        return (shards.sorted(), pairs, root["metadata"])
    }

    /// A JSON object from a file that is not weights (config.json, tokenizer files), read with a
    /// size bound so a hostile file cannot make us allocate without limit.
    static func readJSONObject(_ path: String, maximumBytes: Int = 16 << 20) throws -> JSONValue {
        let mapped = try MappedFile(path: path)
        guard mapped.count <= maximumBytes else {
            throw CheckpointError.jsonMalformed(file: path, reason: "larger than \(maximumBytes >> 20) MB")
        }
        if firstInvalidUTF8Offset(mapped.bytes) != nil {
            throw CheckpointError.jsonMalformed(file: path, reason: "not UTF-8")
        }
        let root: JSONValue
        do { root = try JSONParser.parse(mapped.bytes) } catch {
            throw CheckpointError.jsonMalformed(file: path, reason: error.description)
        }
        guard case .object = root else { throw CheckpointError.jsonMalformed(file: path, reason: "not a JSON object") }
        return root
    }

    /// The entry named `name`, if any.
    public func entry(named name: String) -> Entry? {
        entryByName[name].map { entries[$0] }
    }

    /// The tensor's values in `entry.info.dtype`: the mapped bytes where they can be used as they
    /// are, else a decoded copy (GGML blocks, un-permuted GGUF Q/K rows).
    public func view(_ entry: Entry) -> TensorView {
        switch containers[entry.fileIndex] {
        case .safetensors(let file): return file.view(entry.info)
        case .pytorch(let file): return file.view(entry.locator)
        case .gguf(let source): return source.view(entry)
        }
    }

    /// The GGUF file behind a checkpoint read from one, else nil.
    public var ggufFile: GGUFFile? {
        if case .gguf(let source)? = containers.first { return source.file }
        return nil
    }

    /// For a tensor of a GGUF checkpoint: its tensor info in the file and the heads its rows are
    /// permuted over (llama's Q and K), else nil.
    public func ggufTensor(_ entry: Entry) -> (info: GGUFTensorInfo, permutedHeads: Int?)? {
        guard case .gguf(let source) = containers[entry.fileIndex] else { return nil }
        let plan = source.plans[entry.locator]
        return (plan.info, plan.permutedHeads)
    }

    /// The view of the tensor named `name`, if any.
    public func view(named name: String) -> TensorView? {
        entry(named: name).map(view)
    }

    /// Lets the kernel drop a tensor's mapped pages once read, so resident memory stays near one
    /// tensor however large the checkpoint.
    public func releasePages(_ entry: Entry) {
        switch containers[entry.fileIndex] {
        case .safetensors(let file):
            file.mapped.adviseDone((file.dataStart + entry.info.dataOffsets.lowerBound)..<(file.dataStart + entry.info.dataOffsets.upperBound))
        case .gguf(let source): source.releasePages(entry)
        case .pytorch: break
        }
    }

    /// Total elements over all tensors.
    public var parameterCount: Int { entries.reduce(0) { $0 + $1.info.elementCount } }
    /// Total bytes of tensor data as stored.
    public var tensorBytes: Int { entries.reduce(0) { $0 + $1.storedBytes } }

    /// Output shards mirroring this checkpoint's files: the same names for safetensors
    /// (`model.safetensors` for a lone file), transformers' names otherwise, each file's
    /// metadata, no tensors yet.
    public var mirroredShards: [ShardPlan] {
        let names = format == .safetensors && layout != .file
            ? fileNames : files.indices.map { ShardPlan.shardFileName($0, of: files.count) }
        return files.enumerated().map { ShardPlan(fileName: names[$0.offset], tensors: [], metadata: $0.element.metadata) }
    }

    /// Weight file names as they appear on disk (the path itself for a lone file).
    public var fileNames: [String] { files.map { directory == nil ? $0.path : FileSystem.split($0.path).name } }

    /// The tokenizer files the source synthesized (a GGUF's), or nil: a folder's own tokenizer.json
    /// is read from disk by its users. Throws when the source's vocabulary could not be rebuilt.
    public func tokenizerDocuments() throws -> (tokenizer: JSONValue, config: JSONValue?, file: String)? {
        if let tokenizerFailure { throw CheckpointError.tokenizerUnavailable(path: path, reason: tokenizerFailure) }
        if let generated = generatedFiles.first(where: { $0.name == "tokenizer.json" }) {
            return (generated.contents, generatedFiles.first { $0.name == "tokenizer_config.json" }?.contents, path)
        }
        return nil
    }
}
