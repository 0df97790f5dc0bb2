/// PyTorch checkpoints (`pytorch_model.bin`, its sharded index, or a folder holding them) →
/// safetensors, tensor names and dtypes kept (or floats converted to `--type`).
public enum PyTorchToSafetensors {
    /// The .bin files of `path` in shard order, and the folder they live in (nil for a lone file).
    public static func sources(_ path: String) throws -> (files: [String], directory: String?) {
        var path = path
        while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
        guard FileSystem.exists(path) else { throw CheckpointError.notFound(path: path) }
        if !FileSystem.isDirectory(path) {
            if path.hasSuffix(".index.json") {
                let folder = FileSystem.split(path).directory
                let (shards, _, _) = try Checkpoint.readIndex(path)
                return (shards.map { FileSystem.join(folder, $0) }, folder)
            }
            return ([path], nil)
        }
        let names = FileSystem.list(path)
        if let index = names.first(where: { $0.hasSuffix(".bin.index.json") }) {
            let (shards, _, _) = try Checkpoint.readIndex(FileSystem.join(path, index))
            for shard in shards where !names.contains(shard) {
                throw CheckpointError.missingShard(file: FileSystem.join(path, index), shard: shard)
            }
            return (shards.map { FileSystem.join(path, $0) }, path)
        }
        let bins = names.filter { $0.hasSuffix(".bin") || $0.hasSuffix(".pt") || $0.hasSuffix(".pth") }
        guard !bins.isEmpty else { throw CheckpointError.noWeights(path: path, found: []) }
        return (bins.map { FileSystem.join(path, $0) }, path)
    }

    public static func isPyTorch(_ path: String) -> Bool {
        if FileSystem.isDirectory(path) {
            let names = FileSystem.list(path)
            return !names.contains { $0.hasSuffix(".safetensors") || $0.hasSuffix(".safetensors.index.json") }
                && names.contains { $0.hasSuffix(".bin") || $0.hasSuffix(".bin.index.json") }
        }
        return path.hasSuffix(".bin") || path.hasSuffix(".pt") || path.hasSuffix(".pth") || path.hasSuffix(".bin.index.json")
    }

    public static func convert(_ path: String, to output: String, dtype: DType?, shardSize: Int?, overwrite: Bool,
                               threads: ThreadBudget = .allCores) throws -> (files: [String], tensors: Int, seconds: Double) {
        let clock = Stopwatch()
        let (files, directory) = try sources(path)
        let checkpoints = try files.map { try PyTorchCheckpoint(path: $0) }
        var shards: [ShardPlan] = []
        var views: [String: PyTorchCheckpoint.Tensor] = [:]
        for (i, checkpoint) in checkpoints.enumerated() {
            var specs: [TensorSpec] = []
            for t in checkpoint.tensors {
                guard views[t.name] == nil else {
                    throw CheckpointError.duplicateTensor(tensor: t.name, firstFile: files[0], secondFile: checkpoint.path)
                }
                views[t.name] = t
                let target = dtype.flatMap { FloatConversion.canConvert(from: t.dtype, to: $0) ? $0 : nil } ?? t.dtype
                specs.append(TensorSpec(name: t.name, dtype: target, shape: t.shape))
            }
            shards.append(ShardPlan(fileName: ShardPlan.shardFileName(i, of: checkpoints.count), tensors: specs))
        }
        if let shardSize { shards = ShardPlan.split(shards.flatMap(\.tensors), maxBytes: shardSize) }
        let writer = try CheckpointWriter(folder: output, overwrite: overwrite)
        try writer.output.translatingErrors {
            try writer.writeShards(shards) { info, out in
                let t = views[info.name]!
                let view = TensorView(info: TensorInfo(name: t.name, dtype: t.dtype, shape: t.shape, dataOffsets: 0..<t.bytes.count),
                                      owner: t.owner, bytes: t.bytes)
                try CheckpointConverter.streamConverted(view, to: info.dtype, into: out, threads: threads)
            }
            if let directory {
                for name in FileSystem.list(directory) where !name.hasPrefix(".") && !name.hasSuffix(".bin") && !name.hasSuffix(".bin.index.json")
                    && !name.hasSuffix(".pt") && !name.hasSuffix(".pth") && FileSystem.isRegularFile(FileSystem.join(directory, name))
                {
                    if name == "config.json" {
                        var config = try Checkpoint.readJSONObject(FileSystem.join(directory, name))
                        if let dtype { config = CheckpointConverter.updatingDType(config, to: dtype) }
                        try writer.writeJSON(config, named: name, sortKeys: true)
                    } else {
                        try writer.copyFile(from: FileSystem.join(directory, name), named: name)
                    }
                }
            }
            try writer.commit()
        }
        return (shards.map(\.fileName) + (shards.count > 1 ? ["model.safetensors.index.json"] : []), views.count, clock.seconds)
    }
}
