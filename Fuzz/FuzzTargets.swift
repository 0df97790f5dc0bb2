#if canImport(Glibc)
import Glibc
#endif

/// libFuzzer entry for every parser, one binary: `CKPT_FUZZ_TARGET` names the parser each run
/// feeds (`make fuzz` sets it; see `FuzzTargets.all`). Every input must end in a thrown error or
/// a result, never a trap, a hang or an allocation sized by an unchecked number.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    FuzzTargets.selected(data, size)
    return 0
}

enum FuzzTargets {
    /// Name → what it parses.
    static let all: [String: (UnsafePointer<UInt8>, Int) -> Void] = [
        "safetensors": { data, size in
            let path = FuzzScratch.write(data, size, name: "model.safetensors")
            if let file = try? SafetensorsFile(path: path) { for info in file.tensors { _ = file.view(info).byteArray.count } }
        },
        "shard-index": { data, size in
            _ = FuzzScratch.write(data, size, name: "model.safetensors.index.json")
            _ = try? Checkpoint(path: FuzzScratch.folder)
        },
        "gguf": { data, size in
            let path = FuzzScratch.write(data, size, name: "model.gguf")
            if let checkpoint = try? Checkpoint(path: path) {
                for entry in checkpoint.entries.prefix(64) where entry.info.byteCount < 1 << 24 {
                    let whole = FloatValues.array(checkpoint.view(entry))
                    // The forward pass's row reader must give exactly what the whole-tensor read gives.
                    FuzzChecks.rowsMatch(checkpoint.storedRows(entry), whole, entry.info.name)
                }
                if let (json, config, file) = try? checkpoint.tokenizerDocuments() {
                    if let tokenizer = try? Tokenizer(json: json, file: file, config: config) { _ = tokenizer.encode("Hello world, 1234 ▁x") }
                }
            }
            // Requantizing any architecture's GGUF (metadata written back as read, every tensor retyped by the preset's rules).
            if let file = try? GGUFFile(path: path), file.tensors.reduce(0, { $0 + $1.elementCount }) < 1 << 18 {
                var options = GGUFExport.Options()
                options.threads = ThreadBudget(1)
                options.overwrite = true
                let out = FuzzScratch.folder + "/requantized.gguf"
                if (try? GGUFExport.requantize(file, to: out, preset: .q4_k_m, options: options)) != nil {
                    // What ckpt writes, it reads back.
                    precondition((try? GGUFFile(path: out)) != nil, "a requantized GGUF must parse")
                }
            }
        },
        "pytorch": { data, size in
            let path = FuzzScratch.write(data, size, name: "pytorch_model.bin")
            _ = try? PyTorchCheckpoint(path: path)
        },
        "tokenizer": { data, size in
            let bytes = Array(UnsafeBufferPointer(start: data, count: size))
            if let json = try? JSONParser.parse(bytes), let tokenizer = try? Tokenizer(json: json, file: "tokenizer.json") {
                let ids = tokenizer.encode("Hello world! ▁a b\\n\\t 12345 héllo 🦙", addSpecialTokens: true)
                _ = tokenizer.decode(ids + [0, 1, 999_999, -1])
            }
        },
        "config": { data, size in
            let bytes = Array(UnsafeBufferPointer(start: data, count: size))
            if let json = try? JSONParser.parse(bytes), let config = try? TransformerConfig(parsing: json, file: "config.json") {
                // The RoPE tables of every kind the config names, at a short and a long chunk (dynamic and longrope switch on length).
                for rope in [config.rope, config.localRope].compactMap({ $0 }) where rope.rotaryDimensions <= 1 << 12 {
                    _ = rope.tables(positions: 3)
                    _ = rope.inverseFrequencies(length: 1 << 20)
                }
                _ = ArchitectureDescription.of(config.family)
                // The GGUF hyperparameters and computed RoPE tensors the converter would write from it.
                if let architecture = GGUFArchitecture.of(config.family) {
                    var parameters = GGUFParameters(config: json, file: "config.json", architecture: architecture.name, fileType: 15,
                                                    family: config.family)
                    if (try? architecture.parameters(&parameters)) != nil { _ = GGUFExport.headerBytes(parameters.keyValues, tensors: []) }
                    _ = try? architecture.extraTensors(parameters)
                }
            }
        },
        "adapter-config": { data, size in
            _ = FuzzScratch.write(data, size, name: "adapter_config.json")
            _ = try? LoRAAdapter(folder: FuzzScratch.folder)
        },
        "adapter-weights": { data, size in
            // Adapter tensors of any shape and naming (wrapped modules_to_save, base layers, added
            // vocabulary rows) planned against the tiny llama, then written as a LoRA GGUF.
            _ = FuzzScratch.write(Array(#"{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "modules_to_save": ["embed_tokens", "lm_head"]}"#.utf8),
                                  name: "adapter_config.json")
            _ = FuzzScratch.write(data, size, name: "adapter_model.safetensors")
            _ = FuzzScratch.write([UInt8](), name: "tokenizer.json")
            guard let adapter = try? LoRAAdapter(folder: FuzzScratch.folder), let base = FuzzBase.tinyLlama,
                  (try? LoRAPlanner.plan(base: base.logical, adapters: [(adapter, 1)])) != nil else { return }
            _ = try? AdapterGGUFWriter.write(adapter, base: base.checkpoint, to: FuzzScratch.folder + "/lora.gguf", type: .f16, overwrite: true,
                                             threads: ThreadBudget(1))
        },
        "quantized": { data, size in
            FuzzChecks.decodeLogicalTensors(FuzzScratch.write(data, size, name: "model.safetensors"))
        },
        "quantized-folder": { data, size in
            // [u32 LE length][config.json][model.safetensors]: the layouts a quantization_config selects
            // (pack-quantized, GPTQ v1/v2, AWQ), read whole and by row tiles, which must agree.
            guard size >= 4 else { return }
            let length = Int(UInt32(littleEndian: UnsafeRawPointer(data).loadUnaligned(as: UInt32.self)))
            guard length <= size - 4 else { return }
            _ = FuzzScratch.write(data + 4, length, name: "config.json")
            _ = FuzzScratch.write(data + 4 + length, size - 4 - length, name: "model.safetensors")
            FuzzChecks.decodeLogicalTensors(FuzzScratch.folder)
        },
        "imatrix": { data, size in
            let path = FuzzScratch.write(data, size, name: "imatrix.gguf")
            if let matrix = try? ImportanceMatrix(reading: path) {
                for name in matrix.entries.keys.prefix(64) { _ = matrix.weights(for: name) }
                _ = try? matrix.check(against: [("blk.0.attn_q.weight", [64, 64]), ("blk.0.ffn_gate_exps.weight", [64, 32, 4])])
                _ = try? ImportanceMatrix.combine([matrix, matrix])
                // What ckpt writes must read back the same: the sums exactly, the counts as the GGUF format's
                // F32 holds them (a legacy .dat count above 2^24 rounds, in llama-imatrix's files too).
                let again = FuzzScratch.write(matrix.ggufBytes(), name: "again.gguf")
                func stored(_ m: ImportanceMatrix) -> [String: [[Float]]] { m.entries.mapValues { [$0.sums, $0.counts.map(Float.init)] } }
                if let back = try? ImportanceMatrix(reading: again), stored(back) != stored(matrix) {
                    fatalError("imatrix round trip changed the entries")
                }
            }
        },
        "ggml-quantize": { data, size in
            // The input's bytes as f32 values (NaN, infinities, subnormals included) through every quantizer, with and without importance.
            let count = min(size / 4, 2048) / 32 * 32  // a few rows: every type's search on hostile values, fast enough to fuzz
            guard count >= 32 else { return }
            let raw = UnsafeRawBufferPointer(start: data, count: size)
            let values = (0..<count).map { raw.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) }
            let rowLength = count % 256 == 0 ? 256 : 32
            let importance = (0..<rowLength).map { abs(values[$0 % values.count]) }
            for type in GGMLType.all where type.isEncodable && rowLength % type.blockSize == 0 {
                for weights in [nil, importance] {
                    guard let bytes = values.withUnsafeBufferPointer({ type.encode($0, rowLength: rowLength, importance: weights, threads: .single) })
                    else { continue }
                    if bytes.count != type.byteCount(elements: count) { fatalError("\(type): \(bytes.count) bytes for \(count) values") }
                    _ = bytes.withUnsafeBytes { type.decode($0, count: count) }
                }
            }
        },
        "base-logprobs": { data, size in
            let path = FuzzScratch.write(data, size, name: "base.safetensors")
            _ = try? BaseLogProbabilities.load(path)
        },
    ]

    nonisolated(unsafe) static var chosen: ((UnsafePointer<UInt8>, Int) -> Void)?

    static func selected(_ data: UnsafePointer<UInt8>, _ size: Int) {
        if chosen == nil {
            let name = getenv("CKPT_FUZZ_TARGET").map { String(cString: $0) } ?? ""
            guard let target = all[name] else {
                fputs("CKPT_FUZZ_TARGET must be one of: \(all.keys.sorted().joined(separator: ", "))\n", stderr)
                exit(64)
            }
            chosen = target
        }
        chosen!(data, size)
    }
}

/// Differential checks: a disagreement between two readers of the same bytes is a bug, so it traps.
enum FuzzChecks {
    /// Reads the checkpoint at `path` as logical tensors and decodes the first 16 (below 4 M elements) whole and by rows, which must agree.
    static func decodeLogicalTensors(_ path: String) {
        guard let checkpoint = try? Checkpoint(path: path), let logical = try? LogicalCheckpoint(checkpoint) else { return }
        for tensor in logical.tensors.prefix(16) where tensor.elementCount < 1 << 22 {
            rowsMatch(logical.storedRows(tensor, threads: .single), logical.float32(tensor, threads: .single), tensor.name)
        }
    }

    /// The first and last rows `rows` widens equal those rows of the whole-tensor decode, bit for bit.
    static func rowsMatch(_ rows: StoredRows, _ whole: [Float], _ name: String) {
        guard rows.rows > 0, rows.columns > 0, rows.rows * rows.columns == whole.count else { return }
        var row = [Float](repeating: 0, count: rows.columns)
        for r in Set([0, rows.rows - 1]) {
            row.withUnsafeMutableBufferPointer { rows.widen(r..<(r + 1), into: $0.baseAddress!) }
            let expected = whole[(r * rows.columns)..<((r + 1) * rows.columns)]
            precondition(row.elementsEqual(expected) { $0.bitPattern == $1.bitPattern }, "\(name): row \(r) differs from the whole decode")
        }
    }
}

/// One scratch folder per fuzzing process; each input is written to a file named as its parser expects.
/// The committed tiny llama (make fuzz runs from the repository), opened once.
enum FuzzBase {
    nonisolated(unsafe) static let tinyLlama: (checkpoint: Checkpoint, logical: LogicalCheckpoint)? = {
        guard let checkpoint = try? Checkpoint(path: "fixtures/models/tiny-llama"), let logical = try? LogicalCheckpoint(checkpoint) else { return nil }
        return (checkpoint, logical)
    }()
}

enum FuzzScratch {
    nonisolated(unsafe) static var created = false
    static let folder = "/tmp/ckpt-fuzz-\(getpid())"

    static func write(_ bytes: [UInt8], name: String) -> String {
        bytes.withUnsafeBufferPointer { write($0.baseAddress ?? UnsafePointer(bitPattern: 1)!, $0.count, name: name) }
    }

    static func write(_ data: UnsafePointer<UInt8>, _ size: Int, name: String) -> String {
        if !created {
            mkdir(folder, 0o700)
            created = true
        }
        let path = folder + "/" + name
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        var written = 0
        while fd >= 0 && written < size {
            let n = Glibc.write(fd, data + written, size - written)
            if n <= 0 { break }
            written += n
        }
        if fd >= 0 { close(fd) }
        return path
    }
}
