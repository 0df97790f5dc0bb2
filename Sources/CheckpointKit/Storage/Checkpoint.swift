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

    public var description: String {
        switch self {
        case let .notFound(path):
            return "\(path): no such file or folder"
        case let .noWeights(path, found):
            let extra = found.isEmpty ? "" : "; found \(found.joined(separator: ", ")), which ckpt does not read yet"
            return "\(path): no weights found (expected model.safetensors, a *.safetensors.index.json or *.safetensors files\(extra))"
        case let .indexMalformed(file, reason):
            return "\(file): malformed shard index: \(reason) (expected {\"metadata\": {...}, \"weight_map\": {tensor: file}})"
        case let .shardPathEscapes(file, shard):
            return "\(file): shard '\(shard)' points outside the checkpoint folder (expected a file name beside the index)"
        case let .missingShard(file, shard):
            return "\(file): shard '\(shard)' named by the index is missing (expected it beside the index)"
        case let .tensorNotInShard(file, tensor, shard):
            return "\(file): tensor '\(tensor)': not in shard '\(shard)' where the index places it"
        case let .tensorMissingFromIndex(file, tensor, shard):
            return "\(file): tensor '\(tensor)': present in shard '\(shard)' but not listed in the index"
        case let .duplicateTensor(tensor, firstFile, secondFile):
            return "\(secondFile): tensor '\(tensor)': also present in \(firstFile) (expected each tensor once)"
        case let .jsonMalformed(file, reason):
            return "\(file): malformed JSON file: \(reason)"
        }
    }
}

/// A model checkpoint: one safetensors file, a sharded set with its index, or a model folder,
/// with config.json and the folder's other files (tokenizer and the like) carried along.
///
/// Opening reads headers only; tensor data stays mapped and untouched until it is asked for.
public final class Checkpoint: Sendable {
    public enum Layout: Equatable, Sendable {
        /// A single .safetensors file given directly.
        case file
        /// A folder holding one model.safetensors (or other lone *.safetensors files).
        case folder
        /// Shards listed by a `*.safetensors.index.json`.
        case sharded(indexName: String)
    }

    /// Where a tensor lives: which shard and what the header says of it.
    public struct Entry: Sendable {
        public let info: TensorInfo
        public let fileIndex: Int
    }

    public let path: String
    public let layout: Layout
    /// The folder the checkpoint lives in (its config and other files), nil for a lone file.
    public let directory: String?
    /// Shards in order (a single element unless sharded).
    public let files: [SafetensorsFile]
    /// All tensors: by shard, then by data offset.
    public let entries: [Entry]
    private let entryByName: [String: Int]
    /// config.json, when the folder has one.
    public let config: JSONValue?
    /// The index's "metadata" object, when sharded.
    public let indexMetadata: JSONValue?
    /// Other files of the folder (tokenizer.json, generation_config.json…) by name, to copy along.
    public let otherFiles: [String]

    public init(path: String) throws {
        var path = path
        while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
        self.path = path
        guard FileSystem.exists(path) else { throw CheckpointError.notFound(path: path) }

        var layout: Layout
        var directory: String?
        var shardNames: [String]
        var weightMap: [(String, String)]? = nil
        var indexMetadata: JSONValue? = nil
        var indexPath: String? = nil

        if FileSystem.isDirectory(path) {
            directory = path
            let names = FileSystem.list(path)
            if names.contains("model.safetensors") {
                layout = .folder
                shardNames = ["model.safetensors"]
            } else if let indexName = names.first(where: { $0.hasSuffix(".safetensors.index.json") }) {
                layout = .sharded(indexName: indexName)
                indexPath = FileSystem.join(path, indexName)
                (shardNames, weightMap, indexMetadata) = try Self.readIndex(indexPath!)
            } else {
                shardNames = names.filter { $0.hasSuffix(".safetensors") }
                layout = .folder
                if shardNames.isEmpty {
                    let foreign = names.filter { $0.hasSuffix(".bin") || $0.hasSuffix(".gguf") || $0.hasSuffix(".pt") || $0.hasSuffix(".pth") }
                    throw CheckpointError.noWeights(path: path, found: foreign)
                }
            }
        } else if path.hasSuffix(".index.json") {
            let (folder, indexName) = FileSystem.split(path)
            directory = folder
            layout = .sharded(indexName: indexName)
            indexPath = path
            (shardNames, weightMap, indexMetadata) = try Self.readIndex(path)
        } else {
            directory = nil
            layout = .file
            shardNames = [path]
        }

        var files: [SafetensorsFile] = []
        for name in shardNames {
            let shardPath = directory.map { FileSystem.join($0, name) } ?? name
            if let indexPath, !FileSystem.exists(shardPath) {
                throw CheckpointError.missingShard(file: indexPath, shard: name)
            }
            files.append(try SafetensorsFile(path: shardPath))
        }

        var entries: [Entry] = []
        var entryByName: [String: Int] = [:]
        for (fileIndex, file) in files.enumerated() {
            for info in file.tensors {
                if let previous = entryByName[info.name] {
                    throw CheckpointError.duplicateTensor(tensor: info.name, firstFile: files[entries[previous].fileIndex].path,
                                                          secondFile: file.path)
                }
                entryByName[info.name] = entries.count
                entries.append(Entry(info: info, fileIndex: fileIndex))
            }
        }

        if let weightMap, let indexPath {
            var listed = Set<String>()
            for (tensor, shard) in weightMap {
                listed.insert(tensor)
                guard let i = entryByName[tensor], shardNames[entries[i].fileIndex] == shard else {
                    throw CheckpointError.tensorNotInShard(file: indexPath, tensor: tensor, shard: shard)
                }
            }
            for entry in entries where !listed.contains(entry.info.name) {
                throw CheckpointError.tensorMissingFromIndex(file: indexPath, tensor: entry.info.name,
                                                             shard: shardNames[entry.fileIndex])
            }
        }

        var config: JSONValue? = nil
        var otherFiles: [String] = []
        if let directory {
            let configPath = FileSystem.join(directory, "config.json")
            if FileSystem.isRegularFile(configPath) {
                config = try Self.readJSONObject(configPath)
            }
            let weightNames = Set(shardNames)
            let indexName: String? = if case .sharded(let name) = layout { name } else { nil }
            for name in FileSystem.list(directory) where !weightNames.contains(name) && name != indexName
                && name != "config.json" && !name.hasPrefix(".") && FileSystem.isRegularFile(FileSystem.join(directory, name))
                && !name.hasSuffix(".safetensors") && !name.hasSuffix(".safetensors.index.json")
            {
                otherFiles.append(name)
            }
        }

        self.layout = layout
        self.directory = directory
        self.files = files
        self.entries = entries
        self.entryByName = entryByName
        self.config = config
        self.indexMetadata = indexMetadata
        self.otherFiles = otherFiles
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

    public func entry(named name: String) -> Entry? {
        entryByName[name].map { entries[$0] }
    }

    public func view(_ entry: Entry) -> TensorView {
        files[entry.fileIndex].view(entry.info)
    }

    public func view(named name: String) -> TensorView? {
        entry(named: name).map(view)
    }

    /// Lets the kernel drop a tensor's mapped pages once read, so resident memory stays near one
    /// tensor however large the checkpoint.
    public func releasePages(_ entry: Entry) {
        let file = files[entry.fileIndex]
        file.mapped.adviseDone((file.dataStart + entry.info.dataOffsets.lowerBound)..<(file.dataStart + entry.info.dataOffsets.upperBound))
    }

    /// Total elements over all tensors.
    public var parameterCount: Int { entries.reduce(0) { $0 + $1.info.elementCount } }
    /// Total bytes of tensor data (the index's `total_size`).
    public var tensorBytes: Int { entries.reduce(0) { $0 + $1.info.byteCount } }

    /// Output shards mirroring this checkpoint's files: the same names (`model.safetensors` for a
    /// lone file), each file's metadata, no tensors yet.
    public var mirroredShards: [ShardPlan] {
        let names = layout == .file ? ["model.safetensors"] : fileNames
        return files.enumerated().map { ShardPlan(fileName: names[$0.offset], tensors: [], metadata: $0.element.metadata) }
    }

    /// Shard file names as they appear on disk (the path itself for a lone file).
    public var fileNames: [String] { files.map { directory == nil ? $0.path : FileSystem.split($0.path).name } }
}
