/// An importance matrix as llama.cpp's `llama-imatrix` writes it: per weight matrix, the sums of
/// squared input activations per input column (per expert for MoE), and how many tokens each
/// sum covers. Read from its GGUF format or the legacy `.dat`, combined, written as GGUF.
public struct ImportanceMatrix: Sendable {
    /// One weight matrix's statistics: `sums` has `columns × counts.count` values (expert-major).
    public struct Entry: Sendable, Equatable {
        /// Σx² per input column, expert after expert.
        public var sums: [Float]
        /// Tokens seen, per expert (one value for a dense weight).
        public var counts: [Int64]

        /// An entry of sums and counts.
        public init(sums: [Float], counts: [Int64]) { self.sums = sums; self.counts = counts }
    }

    /// Entries by GGUF weight name (`blk.0.attn_q.weight`).
    public var entries: [String: Entry]
    /// The texts the statistics came from (`imatrix.datasets`).
    public var datasets: [String]
    /// Chunks processed and tokens per chunk (`imatrix.chunk_count`, `imatrix.chunk_size`).
    public var chunkCount: Int, chunkSize: Int
    /// Where it was read from ("" for one computed here).
    public var file: String

    /// Every way an importance matrix can be refused, naming the file and tensor.
    public enum Failure: Error, Equatable, Sendable, CustomStringConvertible {
        case malformed(file: String, reason: String)
        case nonFinite(file: String, tensor: String)
        case unknownTensor(file: String, tensor: String)
        case widthMismatch(file: String, tensor: String, expected: Int, actual: Int)
        case noMatch(file: String)

        /// The one-line message.
        public var description: String {
            switch self {
            case let .malformed(file, reason): return "\(file): \(reason) (expected an imatrix GGUF or legacy .dat from llama-imatrix or ckpt-imatrix)"
            case let .nonFinite(file, tensor): return "\(file): \(tensor) has a non-finite sum (expected finite values)"
            case let .unknownTensor(file, tensor):
                return "\(file): \(tensor) is not a weight of this model (expected an imatrix computed on the same model)"
            case let .widthMismatch(file, tensor, expected, actual):
                return "\(file): \(tensor) has \(actual) values, the model's weight needs \(expected) (expected an imatrix computed on the same model)"
            case .noMatch(let file): return "\(file): names none of this model's weights (expected an imatrix computed on the same model)"
            }
        }
    }

    /// An importance matrix of these entries.
    public init(entries: [String: Entry], datasets: [String], chunkCount: Int, chunkSize: Int, file: String = "") {
        self.entries = entries; self.datasets = datasets; self.chunkCount = chunkCount; self.chunkSize = chunkSize; self.file = file
    }

    /// Reads `path`: a GGUF imatrix (pairs of `NAME.in_sum2` and `NAME.counts`), else the legacy `.dat`.
    public init(reading path: String) throws {
        let mapped = try MappedFile(path: path)
        let bytes = mapped.bytes
        if bytes.count >= 4 && bytes.loadUnaligned(as: UInt32.self) == GGUFFile.magic {
            self = try Self.readGGUF(try GGUFFile(mapped: mapped), path: path)
        } else {
            self = try Self.readLegacy(bytes, path: path)
        }
        for (name, entry) in entries where entry.sums.contains(where: { !$0.isFinite }) {
            throw Failure.nonFinite(file: path, tensor: name)
        }
    }

    static func readGGUF(_ file: GGUFFile, path: String) throws -> ImportanceMatrix {
        var sums: [String: GGUFTensorInfo] = [:], counts: [String: GGUFTensorInfo] = [:]
        for info in file.tensors {
            if info.name.hasSuffix(".in_sum2") { sums[String(info.name.dropLast(8))] = info } else if info.name.hasSuffix(".counts") {
                counts[String(info.name.dropLast(7))] = info
            }
        }
        guard !file.tensors.isEmpty else { throw Failure.malformed(file: path, reason: "no tensors") }
        var entries: [String: Entry] = [:]
        for (name, sumInfo) in sums {
            guard let countInfo = counts[name] else { throw Failure.malformed(file: path, reason: "\(name).in_sum2 has no \(name).counts") }
            guard sumInfo.type == .f32, countInfo.type == .f32 else {
                throw Failure.malformed(file: path, reason: "\(name): sums and counts must be F32")
            }
            let matrices = countInfo.elementCount
            guard matrices > 0, sumInfo.elementCount % matrices == 0 else {
                throw Failure.malformed(file: path, reason: "\(name): \(sumInfo.elementCount) sums do not split over \(matrices) counts")
            }
            let rawCounts = file.float32(countInfo)
            guard rawCounts.allSatisfy({ $0.isFinite && $0 >= 0 && $0 < 9e18 }) else {
                throw Failure.malformed(file: path, reason: "\(name): counts must be finite and non-negative")
            }
            entries[name] = Entry(sums: file.float32(sumInfo), counts: rawCounts.map { Int64($0.rounded(.toNearestOrAwayFromZero)) })
        }
        if let orphan = counts.keys.first(where: { sums[$0] == nil }) {
            throw Failure.malformed(file: path, reason: "\(orphan).counts has no \(orphan).in_sum2")
        }
        let datasets = file.value("imatrix.datasets")?.arrayValue?.compactMap(\.stringValue) ?? []
        return ImportanceMatrix(entries: entries, datasets: datasets, chunkCount: file.value("imatrix.chunk_count")?.intValue ?? 0,
                                chunkSize: file.value("imatrix.chunk_size")?.intValue ?? 0, file: path)
    }

    /// The legacy format: i32 entries, then per entry a name, the call count and the values
    /// (stored as mean × calls), then optionally the chunk count and the dataset name.
    static func readLegacy(_ bytes: UnsafeRawBufferPointer, path: String) throws -> ImportanceMatrix {
        var offset = 0
        func i32(_ what: String) throws -> Int {
            guard offset + 4 <= bytes.count else { throw Failure.malformed(file: path, reason: "truncated at byte \(offset) reading \(what)") }
            defer { offset += 4 }
            return Int(Int32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: Int32.self)))
        }
        func string(_ what: String) throws -> String {
            let length = try i32(what + " length")
            guard length >= 0, length <= bytes.count - offset else { throw Failure.malformed(file: path, reason: "\(what) length \(length) beyond the file") }
            defer { offset += length }
            return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + length)]), as: UTF8.self)
        }
        let count = try i32("entry count")
        // Each entry takes at least 12 bytes: a count the file cannot hold is refused before any allocation.
        guard count > 0, count <= bytes.count / 12 else { throw Failure.malformed(file: path, reason: "entry count \(count) for a \(bytes.count)-byte file") }
        var entries: [String: Entry] = [:]
        var largestCalls = 0
        for _ in 0..<count {
            let name = try string("entry name")
            let calls = try i32("\(name) call count")
            let values = try i32("\(name) value count")
            guard calls >= 0, values > 0, values <= (bytes.count - offset) / 4 else {
                throw Failure.malformed(file: path, reason: "\(name): \(values) values and \(calls) calls do not fit the file")
            }
            var sums = [Float](repeating: 0, count: values)
            for i in 0..<values { sums[i] = bytes.loadUnaligned(fromByteOffset: offset + 4 * i, as: Float.self) }
            offset += 4 * values
            guard entries[name] == nil else { throw Failure.malformed(file: path, reason: "\(name) appears twice") }
            entries[name] = Entry(sums: sums, counts: [Int64(calls)])
            largestCalls = max(largestCalls, calls)
        }
        var chunks = 0, datasets: [String] = []
        if offset + 4 <= bytes.count {
            chunks = try i32("chunk count")
            if offset < bytes.count { datasets = [try string("dataset")] }
        }
        // Legacy sums are means × calls: llama-quantize divides by the calls alone (chunk size 1).
        return ImportanceMatrix(entries: entries, datasets: datasets, chunkCount: max(chunks, 0), chunkSize: 1, file: path)
    }

    /// The weights llama-quantize hands the quantizer for `tensor`: per expert, each column's sum
    /// over its count (1 everywhere for an expert that saw no token); nil when the matrix has no entry.
    public func weights(for tensor: String) -> [Float]? {
        guard let entry = entries[tensor] else { return nil }
        let matrices = entry.counts.count, columns = entry.sums.count / max(1, matrices)
        var out = [Float](repeating: 1, count: entry.sums.count)
        for m in 0..<matrices where entry.counts[m] > 0 {
            let count = Float(entry.counts[m])
            for i in 0..<columns { out[m * columns + i] = entry.sums[m * columns + i] / count }
        }
        return out
    }

    /// The weights for the Hugging Face weight `hfName` of a model laid out as `layout` says: its
    /// own entry, or its expert's slice of the stacked experts' entry; nil when the matrix has none.
    public func weights(for hfName: String, layout: GGUFArchitecture) -> [Float]? {
        switch layout.mapping(of: hfName) {
        case .tensor(let name)?: return weights(for: name)
        case let .expert(name, expert)?:
            guard let all = weights(for: name), let entry = entries[name], expert < entry.counts.count else { return nil }
            let columns = all.count / max(1, entry.counts.count)
            return Array(all[(expert * columns)..<((expert + 1) * columns)])
        default: return nil
        }
    }

    /// Checks the matrix against a model's weights (GGUF name, `ne`): every entry names one of
    /// them and has `ne[0] × ne[2]` values, and at least one entry exists.
    public func check(against tensors: [(name: String, dims: [Int])]) throws {
        let byName = Dictionary(tensors.map { ($0.name, $0.dims) }, uniquingKeysWith: { a, _ in a })
        for name in entries.keys.sorted() {
            guard let dims = byName[name], !dims.isEmpty else { throw Failure.unknownTensor(file: file, tensor: name) }
            let expected = dims[0] * (dims.count > 2 ? dims[2] : 1)
            if entries[name]!.sums.count != expected {
                throw Failure.widthMismatch(file: file, tensor: name, expected: expected, actual: entries[name]!.sums.count)
            }
        }
        guard !entries.isEmpty else { throw Failure.noMatch(file: file) }
    }

    /// Several matrices summed as `llama-imatrix --in-file a --in-file b` does: sums and counts
    /// added (legacy ones scaled by their chunk size), datasets concatenated.
    public static func combine(_ parts: [ImportanceMatrix]) throws -> ImportanceMatrix {
        var entries: [String: Entry] = [:]
        var datasets: [String] = []
        let chunkSize = parts.map(\.chunkSize).max() ?? 0
        for part in parts {
            datasets += part.datasets
            for (name, entry) in part.entries {
                guard var total = entries[name] else { entries[name] = entry; continue }
                guard total.sums.count == entry.sums.count else {
                    throw Failure.widthMismatch(file: part.file, tensor: name, expected: total.sums.count, actual: entry.sums.count)
                }
                for i in total.sums.indices { total.sums[i] += entry.sums[i] }
                func add(_ i: Int, _ count: Int64) throws {
                    let (sum, overflow) = total.counts[i].addingReportingOverflow(count)
                    guard !overflow else { throw Failure.malformed(file: part.file, reason: "\(name): token counts overflow when added") }
                    total.counts[i] = sum
                }
                if total.counts.count == entry.counts.count {
                    for i in total.counts.indices { try add(i, entry.counts[i]) }
                } else if entry.counts.count == 1 {
                    for i in total.counts.indices { try add(i, entry.counts[0]) }
                } else {
                    throw Failure.widthMismatch(file: part.file, tensor: name + " (experts)", expected: total.counts.count, actual: entry.counts.count)
                }
                entries[name] = total
            }
        }
        let largest = entries.values.flatMap(\.counts).max() ?? 0
        return ImportanceMatrix(entries: entries, datasets: datasets, chunkCount: chunkSize > 0 ? Int(largest) / chunkSize : 0,
                                chunkSize: chunkSize, file: parts.map(\.file).joined(separator: "+"))
    }

    /// Writes `ggufBytes()` to `path`, atomically (nothing is left on failure).
    public func write(to path: String, overwrite: Bool) throws {
        try FileSystem.refuseOverlap(output: path, inputs: file.isEmpty ? [] : file.split(separator: "+").map(String.init))
        let atomic = try AtomicOutput(target: path, isDirectory: false, overwrite: overwrite)
        try atomic.translatingErrors {
            let out = try OutputFile(creating: atomic.temporary)
            try out.write(ggufBytes())
            try out.finish()
            try atomic.commit()
        }
    }

    /// The GGUF bytes llama-imatrix writes: `general.type`, the datasets and chunk keys, then per
    /// entry (names sorted) `NAME.in_sum2` [columns, matrices] and `NAME.counts` [1, matrices], F32.
    public func ggufBytes() -> [UInt8] {
        let kv: [(String, GGUFExport.Value)] = [
            ("general.type", .string("imatrix")), ("imatrix.datasets", .strings(datasets)),
            ("imatrix.chunk_count", .u32(UInt32(clamping: chunkCount))), ("imatrix.chunk_size", .u32(UInt32(clamping: chunkSize))),
        ]
        let names = entries.keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        var data: [UInt8] = []
        var infos: [(name: String, dims: [Int], type: GGMLType, offset: Int)] = []
        func append(_ values: [Float]) -> Int {
            let offset = data.count
            for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
            data += [UInt8](repeating: 0, count: GGUFExport.aligned(data.count) - data.count)
            return offset
        }
        for name in names {
            let entry = entries[name]!
            let matrices = entry.counts.count
            infos.append((name + ".in_sum2", [entry.sums.count / max(1, matrices), matrices], .f32, append(entry.sums)))
            infos.append((name + ".counts", [1, matrices], .f32, append(entry.counts.map { Float($0) })))
        }
        return GGUFExport.headerBytes(kv, tensors: infos) + data
    }
}
