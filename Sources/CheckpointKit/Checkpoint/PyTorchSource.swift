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
        var parts = try Checkpoint.Parts.locate(path, format: .pytorch, indexSuffix: ".bin.index.json", preferred: nil, isWeight: isWeightsName)
        try parts.openShards { shardPath in
            let file = try PyTorchCheckpoint(path: shardPath)
            return (.pytorch(file), Checkpoint.File(path: file.path, byteCount: file.byteCount, tensorCount: file.tensors.count, metadata: []),
                    file.tensors.indices.map { file.view($0).info })
        }
        return parts
    }
}
