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
        var parts = try Checkpoint.Parts.locate(path, format: .safetensors, indexSuffix: ".safetensors.index.json",
                                                preferred: "model.safetensors") { $0.hasSuffix(".safetensors") }
        try parts.openShards { shardPath in
            let file = try SafetensorsFile(path: shardPath)
            return (.safetensors(file), Checkpoint.File(path: file.path, byteCount: file.mapped.count, tensorCount: file.tensors.count,
                                                        metadata: file.metadata), file.tensors)
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

    /// Where the weights of `path` are: a lone file, an index (`…indexSuffix`) with its shards, or a
    /// folder holding an index, the `preferred` file, or every file `isWeight` accepts.
    static func locate(_ path: String, format: Checkpoint.Format, indexSuffix: String, preferred: String?,
                       isWeight: (String) -> Bool) throws -> Checkpoint.Parts {
        var parts: Checkpoint.Parts
        if FileSystem.isDirectory(path) {
            let names = FileSystem.list(path)
            if let preferred, names.contains(preferred) {
                parts = Checkpoint.Parts(format: format, layout: .folder, directory: path)
                parts.shardNames = [preferred]
            } else if let indexName = names.first(where: { $0.hasSuffix(indexSuffix) }) {
                parts = Checkpoint.Parts(format: format, layout: .sharded(indexName: indexName), directory: path)
                try parts.readIndex(FileSystem.join(path, indexName))
            } else {
                parts = Checkpoint.Parts(format: format, layout: .folder, directory: path)
                parts.shardNames = names.filter(isWeight)
            }
        } else if path.hasSuffix(".index.json") {
            let (folder, indexName) = FileSystem.split(path)
            parts = Checkpoint.Parts(format: format, layout: .sharded(indexName: indexName), directory: folder)
            try parts.readIndex(path)
        } else {
            parts = Checkpoint.Parts(format: format, layout: .file, directory: nil)
            parts.shardNames = [path]
        }
        parts.weightFileNames.formUnion(parts.shardNames)
        return parts
    }

    /// Opens every shard with `open` (container, file, tensors), in order; a shard the index names
    /// must exist.
    mutating func openShards(_ open: (String) throws -> (Checkpoint.Container, Checkpoint.File, [TensorInfo])) throws {
        for name in shardNames {
            let shardPath = directory.map { FileSystem.join($0, name) } ?? name
            if let indexPath, !FileSystem.exists(shardPath) {
                throw CheckpointError.missingShard(file: indexPath, shard: name)
            }
            let (container, file, tensors) = try open(shardPath)
            let fileIndex = files.count
            for (i, info) in tensors.enumerated() { entries.append(Checkpoint.Entry(info: info, fileIndex: fileIndex, locator: i)) }
            containers.append(container)
            files.append(file)
        }
    }
}
