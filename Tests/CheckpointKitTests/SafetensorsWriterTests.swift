@testable import CheckpointKit
import Foundation
import TestSupport
import Testing

private struct ManifestFile {
    var file: String
    var metadata: [(String, String)]
    var tensors: [(name: String, dtype: String, shape: [Int], offsets: [Int], hex: String)]
}

/// Reads fixtures/safetensors/dtypes/manifest.json (written by tools/make_fixtures.py from the
/// Python safetensors library's own files).
private func dtypeManifest() throws -> [ManifestFile]? {
    let path = Paths.fixture("safetensors/dtypes/manifest.json")
    guard FileManager.default.fileExists(atPath: path) else {
        Issue.record("missing \(path): run `make fixtures`")
        return nil
    }
    let files = try #require(try readJSON(path)["files"]?.arrayValue)
    return try files.map { f in
        ManifestFile(
            file: try #require(f["file"]?.stringValue),
            metadata: (f["metadata"]?.objectMembers ?? []).map { ($0.0, $0.1.stringValue ?? "") },
            tensors: try #require(f["tensors"]?.arrayValue).map { t in
                (try #require(t["name"]?.stringValue), try #require(t["dtype"]?.stringValue),
                 try #require(t["shape"]?.arrayValue).map { $0.intValue ?? -1 },
                 try #require(t["data_offsets"]?.arrayValue).map { $0.intValue ?? -1 }, try #require(t["hex"]?.stringValue))
            })
    }
}

@Test("Files written by the Python safetensors library read back with every dtype, shape and byte")
func readsReferenceFiles() throws {
    guard let manifest = try dtypeManifest() else { return }
    #expect(manifest.count >= 17)
    for entry in manifest {
        let file = try SafetensorsFile(path: Paths.fixture("safetensors/dtypes/" + entry.file))
        #expect(file.metadata.elementsEqual(entry.metadata, by: ==), "\(entry.file)")
        #expect(file.tensors.map(\.name) == entry.tensors.map(\.name), "\(entry.file)")
        for (info, expected) in zip(file.tensors, entry.tensors) {
            #expect(info.dtype.rawValue == expected.dtype)
            #expect(info.shape == expected.shape)
            #expect([info.dataOffsets.lowerBound, info.dataOffsets.upperBound] == expected.offsets)
            #expect(file.view(info).byteArray == bytes(hex: expected.hex), "\(entry.file): \(info.name)")
        }
    }
}

/// Rewrites every tensor of `file` with our writer and returns the new file's bytes.
private func rewrite(_ file: SafetensorsFile, into scratch: ScratchDirectory) throws -> [UInt8] {
    let layout = SafetensorsLayout(file.tensors.map { TensorSpec(name: $0.name, dtype: $0.dtype, shape: $0.shape) },
                                   metadata: file.metadata)
    let out = scratch.file("rewritten.safetensors")
    try? FileManager.default.removeItem(atPath: out)
    try layout.write(to: out) { info, output in try file.view(named: info.name)!.withBytes { try output.write($0) } }
    return readBytes(out)
}

@Test("Our writer reproduces the Python library's files byte for byte")
func writerIsByteIdentical() throws {
    guard let manifest = try dtypeManifest() else { return }
    let scratch = ScratchDirectory()
    for entry in manifest {
        let path = Paths.fixture("safetensors/dtypes/" + entry.file)
        let rewritten = try rewrite(try SafetensorsFile(path: path), into: scratch)
        #expect(rewritten == readBytes(path), "\(entry.file)")
    }
}

@Test("Our writer reproduces transformers' save_pretrained file of the tiny Llama byte for byte")
func writerMatchesTransformers() throws {
    let path = Paths.fixture("models/tiny-llama/model.safetensors")
    guard FileManager.default.fileExists(atPath: path) else {
        Issue.record("missing \(path): run `make fixtures`")
        return
    }
    let scratch = ScratchDirectory()
    #expect(try rewrite(try SafetensorsFile(path: path), into: scratch) == readBytes(path))
}

@Test("Seeded round trip: every dtype written, read back identical, header 8-aligned")
func roundTripEveryDType() throws {
    var rng = SeededGenerator(seed: 7)
    var specs: [TensorSpec] = []
    var payloads: [String: [UInt8]] = [:]
    for dtype in DType.allCases {
        for (i, shape) in [[], [0], [3], [2, 5], [1, 2, 3]].enumerated() {
            let spec = TensorSpec(name: "\(dtype.rawValue.lowercased()).t\(i)", dtype: dtype, shape: shape)
            specs.append(spec)
            payloads[spec.name] = (0..<spec.byteCount).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        }
    }
    let layout = SafetensorsLayout(specs.shuffled(using: &rng), metadata: [("format", "pt"), ("note", "round trip")])
    let scratch = ScratchDirectory()
    let path = scratch.file("round.safetensors")
    try layout.write(to: path) { info, out in try out.write(payloads[info.name]!) }
    let file = try SafetensorsFile(path: path)
    #expect(file.headerLength % 8 == 0)
    #expect(file.metadata.map(\.1) == ["pt", "round trip"])
    #expect(file.tensors.count == specs.count)
    // Largest dtypes first, then names in byte order: the reference library's order.
    #expect(file.tensors.map(\.dtype.writerRank) == file.tensors.map(\.dtype.writerRank).sorted(by: >))
    for info in file.tensors {
        #expect(file.view(info).byteArray == payloads[info.name]!, "\(info.name)")
    }
}

@Test("A file always carries format=pt, added first when the caller gives none")
func formatMetadataAdded() {
    let layout = SafetensorsLayout([TensorSpec(name: "w", dtype: .f32, shape: [1])])
    let text = String(decoding: layout.header[8...], as: UTF8.self)
    #expect(text == #"{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"# + "   ")
}

@Test("A producer that writes the wrong byte count is caught and named")
func wrongByteCount() throws {
    let scratch = ScratchDirectory()
    let layout = SafetensorsLayout([TensorSpec(name: "w", dtype: .f32, shape: [2])])
    #expect(throws: SafetensorsWriteError.wrongByteCount(file: scratch.file("x"), tensor: "w", expected: 8, actual: 4)) {
        try layout.write(to: scratch.file("x")) { _, out in try out.write([1, 2, 3, 4]) }
    }
}

@Test("Shards are cut as transformers cuts them: overflow starts a new shard, giants sit alone")
func shardSplitting() {
    let specs = [4, 4, 4, 20, 4].enumerated().map { TensorSpec(name: "t\($0.offset)", dtype: .u8, shape: [$0.element]) }
    let shards = ShardPlan.split(specs, maxBytes: 10)
    #expect(shards.map { $0.tensors.map(\.name) } == [["t0", "t1"], ["t2"], ["t3"], ["t4"]])
    #expect(shards.map(\.fileName) == (1...4).map { "model-0000\($0)-of-00004.safetensors" })
    #expect(ShardPlan.split(specs, maxBytes: 1000).map(\.fileName) == ["model.safetensors"])
}
