/// One output shard: its file name and the tensors it holds (in any order; the layout sorts).
public struct ShardPlan: Equatable, Sendable {
    /// The shard's file name in the output folder (`model-00001-of-00002.safetensors`).
    public var fileName: String
    /// The tensors the shard holds, in any order (`SafetensorsLayout` sorts them).
    public var tensors: [TensorSpec]
    /// The shard's `__metadata__` string pairs, in order.
    public var metadata: [(String, String)]

    /// A shard named `fileName` holding `tensors`, with no metadata unless given.
    public init(fileName: String, tensors: [TensorSpec], metadata: [(String, String)] = []) {
        self.fileName = fileName
        self.tensors = tensors
        self.metadata = metadata
    }

    /// Equal when names, tensors and metadata pairs (in order) match; the tuple array keeps this from being synthesized.
    public static func == (a: ShardPlan, b: ShardPlan) -> Bool {
        a.fileName == b.fileName && a.tensors == b.tensors && a.metadata.elementsEqual(b.metadata, by: ==)
    }

    /// Tensor data bytes of the shard (header excluded).
    public var byteCount: Int { tensors.reduce(0) { $0 + $1.byteCount } }

    /// The transformers file name of shard `index` (0-based) of `count`.
    public static func shardFileName(_ index: Int, of count: Int) -> String {
        count == 1 ? "model.safetensors" : "model-\(pad5(index + 1))-of-\(pad5(count)).safetensors"
    }

    private static func pad5(_ n: Int) -> String {
        let digits = String(n)
        return String(repeating: "0", count: max(0, 5 - digits.count)) + digits
    }

    /// Cuts `tensors` (in the given order) into shards of at most `maxBytes`, as transformers'
    /// `save_pretrained(max_shard_size=)` does: a tensor that would overflow the current shard
    /// starts the next one; a tensor larger than the limit sits alone.
    public static func split(_ tensors: [TensorSpec], maxBytes: Int) -> [ShardPlan] {
        var groups: [[TensorSpec]] = []
        var current: [TensorSpec] = []
        var currentBytes = 0
        for spec in tensors {
            if !current.isEmpty && currentBytes + spec.byteCount > maxBytes {
                groups.append(current)
                current = []
                currentBytes = 0
            }
            current.append(spec)
            currentBytes += spec.byteCount
        }
        if !current.isEmpty || groups.isEmpty { groups.append(current) }
        return groups.enumerated().map { ShardPlan(fileName: shardFileName($0.offset, of: groups.count), tensors: $0.element) }
    }
}

/// Writes a model folder atomically: shards, the shard index when there is more than one,
/// config.json and copied files, all under a temporary name renamed into place by `commit()`.
/// Dropping the writer without committing removes everything it wrote.
public final class CheckpointWriter {
    /// The atomic output everything is written into: its temporary folder until `commit()`.
    public let output: AtomicOutput

    /// Starts a writer for `folder`, refusing an existing one unless `overwrite`; writes go to a temporary folder.
    public init(folder: String, overwrite: Bool) throws {
        output = try AtomicOutput(target: folder, isDirectory: true, overwrite: overwrite)
    }

    /// The folder path `commit()` renames the output to.
    public var target: String { output.target }

    /// Writes every shard and, for several shards, `model.safetensors.index.json`.
    /// `produce` streams each tensor's bytes; `indexMetadata` carries extra index keys.
    public func writeShards(_ shards: [ShardPlan], indexMetadata: [(String, JSONValue)] = [],
                            produce: (TensorInfo, OutputFile) throws -> Void) throws {
        var weightMap: [(String, JSONValue)] = []
        var totalSize = 0
        for shard in shards {
            let layout = SafetensorsLayout(shard.tensors, metadata: shard.metadata)
            try layout.write(to: output.path(shard.fileName), produce: produce)
            for info in layout.tensors {
                weightMap.append((info.name, .string(shard.fileName)))
                totalSize += info.byteCount
            }
        }
        if shards.count > 1 {
            var metadata = indexMetadata.filter { $0.0 != "total_size" }
            metadata.append(("total_size", JSONValue(totalSize)))
            let index: JSONValue = .object([("metadata", .object(metadata)), ("weight_map", .object(weightMap))])
            try writeJSON(index, named: "model.safetensors.index.json", sortKeys: true)
        }
    }

    /// Writes a JSON file as transformers does (`json.dumps(indent=2)` plus a newline).
    public func writeJSON(_ value: JSONValue, named name: String, sortKeys: Bool = false) throws {
        try FileSystem.writeFile(output.path(name), Array((value.serialized(style: .pretty, sortKeys: sortKeys) + "\n").utf8))
    }

    /// Copies the file at `source` into the output folder as `name`.
    public func copyFile(from source: String, named name: String) throws {
        try FileSystem.copyFile(from: source, to: output.path(name))
    }

    /// Renames the temporary folder into place at `target`; until then nothing written is visible there.
    public func commit() throws { try output.commit() }

    /// Writes a whole checkpoint derived from `input`: a lone `.safetensors` file when the input
    /// is one file and `output` ends in `.safetensors`, else a folder with the shards, the index
    /// (input's index metadata kept, `total_size` recomputed), `config` and the input folder's
    /// other files (those named in `replacingFiles` left out, `extraFiles` copied from where they
    /// are). Atomic: all or nothing. Error messages name `output`, not the temporary.
    public static func write(from input: Checkpoint, to output: String, shards: [ShardPlan], config: JSONValue?,
                             overwrite: Bool, replacingFiles: [String] = [], extraFiles: [(name: String, path: String)] = [],
                             produce: (TensorInfo, OutputFile) throws -> Void) throws
        -> (files: [String], copiedFiles: [String])
    {
        try FileSystem.refuseOverlap(output: output, inputs: [input.path])
        // Each tensor written is reported (WorkProgress), whoever produces it.
        let total = shards.reduce(0) { $0 + $1.tensors.count }
        var written = 0
        func progressed(_ info: TensorInfo) {
            written += 1
            WorkProgress.report("writing", done: written, total: total, item: info.name)
        }
        if input.layout == .file && output.hasSuffix(".safetensors") && shards.count == 1 {
            let atomic = try AtomicOutput(target: output, isDirectory: false, overwrite: overwrite)
            let layout = SafetensorsLayout(shards[0].tensors, metadata: shards[0].metadata)
            try atomic.translatingErrors {
                try layout.write(to: atomic.temporary) { info, out in
                    try produce(info, out)
                    progressed(info)
                }
                try atomic.commit()
            }
            return ([output], [])
        }
        let writer = try CheckpointWriter(folder: output, overwrite: overwrite)
        let copied = try writer.output.translatingErrors {
            try writer.writeShards(shards, indexMetadata: input.indexMetadata?.objectMembers ?? []) { info, out in
                try produce(info, out)
                progressed(info)
            }
            return try writer.completeFolder(from: input, config: config, replacingFiles: replacingFiles, extraFiles: extraFiles)
        }
        return (shards.map(\.fileName) + (shards.count > 1 ? ["model.safetensors.index.json"] : []), copied)
    }

    /// Writes a whole checkpoint derived from `input` as `write(from:…produce:)` does (the same
    /// files, the same bytes, atomic), with each tensor's bytes going through a `TensorOutput`:
    /// `.sequential` is that plain path; `.streamed` writes every shard's header first and hands
    /// each tensor (in file order, so the file is still written front to back) to a background
    /// thread that writes it while `produce` computes the next. `produce` must write exactly each
    /// tensor's byte count.
    public static func write(from input: Checkpoint, to output: String, shards: [ShardPlan], config: JSONValue?,
                             overwrite: Bool, replacingFiles: [String] = [], extraFiles: [(name: String, path: String)] = [],
                             writing: TensorWriting, produce: (TensorInfo, TensorOutput) throws -> Void) throws
        -> (files: [String], copiedFiles: [String])
    {
        guard writing.isStreamed else {
            return try write(from: input, to: output, shards: shards, config: config, overwrite: overwrite, replacingFiles: replacingFiles,
                             extraFiles: extraFiles) { info, file in try produce(info, TensorOutput(info, sequential: file)) }
        }
        let total = shards.reduce(0) { $0 + $1.tensors.count }
        var written = 0
        return try writeStreaming(from: input, to: output, shardCount: shards.count, config: config, overwrite: overwrite,
                                  replacingFiles: replacingFiles, extraFiles: extraFiles, pieceBytes: writing.pieceBytes,
                                  direct: writing.isDirect && PositionedOutputFile.directByDefault) { shard, open in
            let writer = try open(shards[shard])
            for info in writer.layout.tensors {
                try produce(info, TensorOutput(info, streamed: writer))
                let submitted = writer.bytesSubmitted(info.name)
                guard submitted == info.byteCount else {
                    throw SafetensorsWriteError.wrongByteCount(file: writer.path, tensor: info.name, expected: info.byteCount, actual: submitted)
                }
                written += 1
                WorkProgress.report("writing", done: written, total: total, item: info.name)
            }
        }
    }

    /// Writes config.json, the input's generated and other files (less `replacingFiles`) and
    /// `extraFiles` beside the shards, then commits; returns the names copied.
    private func completeFolder(from input: Checkpoint, config: JSONValue?, replacingFiles: [String],
                                extraFiles: [(name: String, path: String)]) throws -> [String] {
        var copied: [String] = []
        if let config { try writeJSON(config, named: "config.json", sortKeys: true) }
        for file in input.generatedFiles where !replacingFiles.contains(file.name) {
            try writeJSON(file.contents, named: file.name, sortKeys: file.sortKeys)
            copied.append(file.name)
        }
        for file in extraFiles {
            try copyFile(from: file.path, named: file.name)
            copied.append(file.name)
        }
        if let directory = input.directory {
            for name in input.otherFiles where !replacingFiles.contains(name) {
                try copyFile(from: FileSystem.join(directory, name), named: name)
                copied.append(name)
            }
        }
        try commit()
        return copied
    }

    /// Writes a whole checkpoint derived from `input` as `write(from:)` does (the same files,
    /// the same bytes, atomic), but each shard's tensors may arrive in any order and are written
    /// at their offsets while the caller computes the next: `fill(shard, open)` plans shard
    /// `shard` of `shardCount`, calls `open(plan)` once to create the file with its header, and
    /// hands every planned tensor to the writer it returns. Each shard is finished (every write
    /// done, fsynced) before the next is filled; at most `window` tensors (or pieces) wait to be
    /// written, and tensors viewed in the input are written `pieceBytes` at a time. Files are written
    /// around the page cache when `direct` (and the file system allows it).
    public static func writeStreaming(from input: Checkpoint, to output: String, shardCount: Int, config: JSONValue?,
                                      overwrite: Bool, replacingFiles: [String] = [], extraFiles: [(name: String, path: String)] = [],
                                      window: Int = 2, pieceBytes: Int = SafetensorsStreamWriter.defaultPieceBytes,
                                      direct: Bool = PositionedOutputFile.directByDefault,
                                      fill: (_ shard: Int, _ open: (ShardPlan) throws -> SafetensorsStreamWriter) throws -> Void) throws
        -> (files: [String], copiedFiles: [String])
    {
        try FileSystem.refuseOverlap(output: output, inputs: [input.path])
        // Shard `shard` streamed into `loneFile`, or else into the folder as its plan names it.
        func stream(_ shard: Int, loneFile: String?, folder: CheckpointWriter?) throws -> (ShardPlan, SafetensorsLayout) {
            var planned: ShardPlan?
            var opened: SafetensorsStreamWriter?
            do {
                try fill(shard) { plan in
                    precondition(opened == nil, "writeStreaming: a shard is opened once")
                    let path = loneFile ?? folder!.output.path(plan.fileName)
                    let writer = try SafetensorsStreamWriter(SafetensorsLayout(plan.tensors, metadata: plan.metadata), path: path,
                                                             window: window, pieceBytes: pieceBytes, direct: direct)
                    opened = writer
                    planned = plan
                    return writer
                }
                guard let writer = opened, let plan = planned else { preconditionFailure("writeStreaming: every shard must be opened") }
                try writer.finish()
                return (plan, writer.layout)
            } catch {
                // Nothing more reaches the file once the caller has failed; the atomic output removes it.
                opened?.abandon()
                throw error
            }
        }
        if input.layout == .file && output.hasSuffix(".safetensors") && shardCount == 1 {
            let atomic = try AtomicOutput(target: output, isDirectory: false, overwrite: overwrite)
            try atomic.translatingErrors {
                _ = try stream(0, loneFile: atomic.temporary, folder: nil)
                try atomic.commit()
            }
            return ([output], [])
        }
        let writer = try CheckpointWriter(folder: output, overwrite: overwrite)
        var files: [String] = []
        let copied = try writer.output.translatingErrors {
            var weightMap: [(String, JSONValue)] = []
            var totalSize = 0
            for shard in 0..<shardCount {
                let (plan, layout) = try stream(shard, loneFile: nil, folder: writer)
                files.append(plan.fileName)
                for info in layout.tensors {
                    weightMap.append((info.name, .string(plan.fileName)))
                    totalSize += info.byteCount
                }
            }
            if shardCount > 1 {
                var metadata = (input.indexMetadata?.objectMembers ?? []).filter { $0.0 != "total_size" }
                metadata.append(("total_size", JSONValue(totalSize)))
                let index: JSONValue = .object([("metadata", .object(metadata)), ("weight_map", .object(weightMap))])
                try writer.writeJSON(index, named: "model.safetensors.index.json", sortKeys: true)
                files.append("model.safetensors.index.json")
            }
            return try writer.completeFolder(from: input, config: config, replacingFiles: replacingFiles, extraFiles: extraFiles)
        }
        return (files, copied)
    }
}
