/// PyTorch checkpoints (`torch.save`'s zip format): a `pytorch_model.bin`/`.pt`/`.pth` file, its
/// `*.bin.index.json` with the shards, or a folder holding them. Tensors keep their names and
/// dtypes; contiguous ones are views of the archive, strided ones gathered copies.
enum PyTorchSource {
    /// The suffixes of PyTorch weight files: the one list.
    static let suffixes = [".bin", ".pt", ".pth"]

    /// Whether `name` is a PyTorch weights file.
    static func isWeightsName(_ name: String) -> Bool { suffixes.contains { name.hasSuffix($0) } }

    /// Whether a folder's weights are PyTorch files (and no safetensors, which would win).
    static func claims(folder names: [String]) -> Bool {
        names.contains { isWeightsName($0) || $0.hasSuffix(".bin.index.json") }
    }

    /// Unpickles the file, index or folder at `path` (restricted: no code runs).
    static func open(_ path: String) throws -> Checkpoint.Parts {
        var parts: Checkpoint.Parts
        if FileSystem.isDirectory(path) {
            let names = FileSystem.list(path)
            if let indexName = names.first(where: { $0.hasSuffix(".bin.index.json") }) {
                parts = Checkpoint.Parts(format: .pytorch, layout: .sharded(indexName: indexName), directory: path)
                try parts.readIndex(FileSystem.join(path, indexName))
            } else {
                parts = Checkpoint.Parts(format: .pytorch, layout: .folder, directory: path)
                parts.shardNames = names.filter(isWeightsName)
            }
        } else if path.hasSuffix(".index.json") {
            let (folder, indexName) = FileSystem.split(path)
            parts = Checkpoint.Parts(format: .pytorch, layout: .sharded(indexName: indexName), directory: folder)
            try parts.readIndex(path)
        } else {
            parts = Checkpoint.Parts(format: .pytorch, layout: .file, directory: nil)
            parts.shardNames = [path]
        }
        parts.weightFileNames.formUnion(parts.shardNames)
        for name in parts.shardNames {
            let shardPath = parts.directory.map { FileSystem.join($0, name) } ?? name
            if let indexPath = parts.indexPath, !FileSystem.exists(shardPath) {
                throw CheckpointError.missingShard(file: indexPath, shard: name)
            }
            let file = try PyTorchCheckpoint(path: shardPath)
            let fileIndex = parts.files.count
            for i in file.tensors.indices { parts.entries.append(Checkpoint.Entry(info: file.view(i).info, fileIndex: fileIndex, locator: i)) }
            parts.containers.append(.pytorch(file))
            parts.files.append(Checkpoint.File(path: file.path, byteCount: file.byteCount, tensorCount: file.tensors.count, metadata: []))
        }
        return parts
    }
}
