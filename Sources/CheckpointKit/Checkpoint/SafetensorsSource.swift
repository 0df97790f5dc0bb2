/// safetensors checkpoints: one file, a `*.safetensors.index.json` with its shards, or a folder
/// holding `model.safetensors` (or other lone `*.safetensors` files). Tensors are the files' own,
/// zero-copy.
enum SafetensorsSource {
    /// Whether a folder's weights are safetensors (they win over any other format beside them).
    static func claims(folder names: [String]) -> Bool {
        names.contains { $0.hasSuffix(".safetensors") || $0.hasSuffix(".safetensors.index.json") }
    }

    /// Reads the headers of the file, index or folder at `path`.
    static func open(_ path: String) throws -> Checkpoint.Parts {
        var parts: Checkpoint.Parts
        if FileSystem.isDirectory(path) {
            let names = FileSystem.list(path)
            if names.contains("model.safetensors") {
                parts = Checkpoint.Parts(format: .safetensors, layout: .folder, directory: path)
                parts.shardNames = ["model.safetensors"]
            } else if let indexName = names.first(where: { $0.hasSuffix(".safetensors.index.json") }) {
                parts = Checkpoint.Parts(format: .safetensors, layout: .sharded(indexName: indexName), directory: path)
                try parts.readIndex(FileSystem.join(path, indexName))
            } else {
                parts = Checkpoint.Parts(format: .safetensors, layout: .folder, directory: path)
                parts.shardNames = names.filter { $0.hasSuffix(".safetensors") }
            }
        } else if path.hasSuffix(".index.json") {
            let (folder, indexName) = FileSystem.split(path)
            parts = Checkpoint.Parts(format: .safetensors, layout: .sharded(indexName: indexName), directory: folder)
            try parts.readIndex(path)
        } else {
            parts = Checkpoint.Parts(format: .safetensors, layout: .file, directory: nil)
            parts.shardNames = [path]
        }
        parts.weightFileNames.formUnion(parts.shardNames)
        for name in parts.shardNames {
            let shardPath = parts.directory.map { FileSystem.join($0, name) } ?? name
            if let indexPath = parts.indexPath, !FileSystem.exists(shardPath) {
                throw CheckpointError.missingShard(file: indexPath, shard: name)
            }
            let file = try SafetensorsFile(path: shardPath)
            let fileIndex = parts.files.count
            for (i, info) in file.tensors.enumerated() { parts.entries.append(Checkpoint.Entry(info: info, fileIndex: fileIndex, locator: i)) }
            parts.containers.append(.safetensors(file))
            parts.files.append(Checkpoint.File(path: file.path, byteCount: file.mapped.count, tensorCount: file.tensors.count,
                                               metadata: file.metadata))
        }
        return parts
    }
}

extension Checkpoint.Parts {
    init(format: Checkpoint.Format, layout: Checkpoint.Layout, directory: String?) {
        self.format = format
        self.layout = layout
        self.directory = directory
    }

    /// Takes the shard names, the weight map and the metadata of the index at `path`.
    mutating func readIndex(_ path: String) throws {
        indexPath = path
        (shardNames, weightMap, indexMetadata) = try Checkpoint.readIndex(path)
        weightFileNames.insert(FileSystem.split(path).name)
    }
}
