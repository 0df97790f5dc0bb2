import Foundation
import TestSupport
import Testing

/// A small valid file: two F32 tensors, metadata {"format": "pt"}.
func writeSmallSafetensors(_ path: String) {
    let header = #"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"b":{"dtype":"F32","shape":[2],"data_offsets":[24,32]}}"#
    var json = Array(header.utf8)
    while json.count % 8 != 0 { json.append(0x20) }
    var bytes: [UInt8] = []
    withUnsafeBytes(of: UInt64(json.count).littleEndian) { bytes.append(contentsOf: $0) }
    bytes += json
    for v in [0, 1, 2, 3, 4, 5, 1.5, -2] as [Float] { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes.append(contentsOf: $0) } }
    FileManager.default.createFile(atPath: path, contents: Data(bytes))
}

@Test("ckpt-inspect prints a table of tensors with dtype, shape and bytes")
func inspectTable() throws {
    let scratch = ScratchDirectory()
    writeSmallSafetensors(scratch.file("small.safetensors"))
    let result = try Tools.run("ckpt-inspect", [scratch.file("small.safetensors")])
    #expect(result.status == 0)
    #expect(result.stdout.contains("2 tensors, 8 parameters\nsize: 184 bytes in 1 file (184 B, 32 B of tensor data; 1 KB = 1000 bytes)"))
    #expect(result.stdout.contains("a       F32    2×3       24"))
    #expect(result.stderr.isEmpty)
}

@Test("ckpt-inspect --json prints one document with files, parameters, bytes, metadata and tensors")
func inspectJSON() throws {
    let scratch = ScratchDirectory()
    writeSmallSafetensors(scratch.file("small.safetensors"))
    let result = try Tools.run("ckpt-inspect", [scratch.file("small.safetensors"), "--json", "--stats"])
    #expect(result.status == 0)
    let doc = try parseJSONObject(result.stdout)
    #expect(doc["parameters"] as? Int == 8)
    #expect(doc["bytes"] as? Int == 32)
    #expect((doc["metadata"] as? [String: String]) == ["format": "pt"])
    let tensors = try #require(doc["tensors"] as? [[String: Any]])
    #expect(tensors.map { $0["name"] as? String } == ["a", "b"])
    #expect(tensors[0]["shape"] as? [Int] == [2, 3])
    let stats = try #require(tensors[1]["stats"] as? [String: Any])
    #expect(stats["min"] as? Double == -2)
    #expect(stats["mean"] as? Double == -0.25)
    #expect(stats["nan"] as? Int == 0)
}

@Test("A missing path is a one-line error with exit code 1")
func inspectMissing() throws {
    let result = try Tools.run("ckpt-inspect", ["/nonexistent/model"])
    #expect(result.status == 1)
    #expect(result.stderr == "error: /nonexistent/model: no such file or folder\n")
    #expect(result.stdout.isEmpty)
}

@Test("A usage error exits 64")
func inspectUsage() throws {
    let result = try Tools.run("ckpt-inspect", ["--no-such-flag"])
    #expect(result.status == 64)
}

@Test("ckpt-inspect lists a quantized model's logical tensors (original shapes, parts' bytes summed), and --storage the stored ones")
func inspectLogicalView() throws {
    let folder = Tools.fixture("models/tiny-llama-bnb-nf4")
    let logical = try parseJSONObject(try Tools.run("ckpt-inspect", [folder, "--json"]).stdout)
    let storage = try parseJSONObject(try Tools.run("ckpt-inspect", [folder, "--json", "--storage"]).stdout)
    #expect(logical["view"] as? String == "logical" && storage["view"] as? String == "storage")
    let plain = try parseJSONObject(try Tools.run("ckpt-inspect", [Tools.fixture("models/tiny-llama"), "--json"]).stdout)
    // The model's parameters and tensors, as the unquantized original has them.
    #expect(logical["parameters"] as? Int == plain["parameters"] as? Int)
    let logicalTensors = try #require(logical["tensors"] as? [[String: Any]])
    #expect(logicalTensors.count == (plain["tensors"] as? [Any])?.count)
    let down = try #require(logicalTensors.first { $0["name"] as? String == "model.layers.0.mlp.down_proj.weight" })
    #expect(down["shape"] as? [Int] == [64, 192] && down["dtype"] as? String == "nf4")
    // Stored bytes are the same either way; the storage view lists every part.
    #expect(logical["bytes"] as? Int == storage["bytes"] as? Int)
    #expect(((storage["tensors"] as? [Any])?.count ?? 0) > logicalTensors.count)
    #expect(storage["parameters"] as? Int != logical["parameters"] as? Int)
}
