import Foundation
import TestSupport
import Testing

/// A safetensors file with one BF16 tensor whose data is a sparse hole (zeros), so a big input
/// costs no disk.
func writeSparseBF16(_ path: String, name: String = "w", shape: [Int]) throws {
    let bytes = shape.reduce(1, *) * 2
    let header = #"{"__metadata__":{"format":"pt"},"\#(name)":{"dtype":"BF16","shape":[\#(shape.map(String.init).joined(separator: ","))],"data_offsets":[0,\#(bytes)]}}"#
    var json = Array(header.utf8)
    while json.count % 8 != 0 { json.append(0x20) }
    var prefix: [UInt8] = []
    withUnsafeBytes(of: UInt64(json.count).littleEndian) { prefix.append(contentsOf: $0) }
    FileManager.default.createFile(atPath: path, contents: Data(prefix + json))
    let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
    try handle.truncate(atOffset: UInt64(prefix.count + json.count + bytes))
    try handle.close()
}

@Test("ckpt-convert --type bf16 writes a folder that ckpt-inspect reads back, and --json reports each tensor")
func convertAndInspect() throws {
    let scratch = ScratchDirectory()
    writeSmallSafetensors(scratch.file("small.safetensors"))
    let result = try Tools.run("ckpt-convert", [scratch.file("small.safetensors"), scratch.file("out"), "--type", "bf16", "--json"])
    #expect(result.status == 0, "\(result.stderr)")
    let doc = try parseJSONObject(result.stdout)
    #expect(doc["bytes_in"] as? Int == 32)
    #expect(doc["bytes_out"] as? Int == 16)
    #expect(doc["files"] as? [String] == ["model.safetensors"])
    let inspect = try Tools.run("ckpt-inspect", [scratch.file("out"), "--json", "--stats"])
    let tensors = try #require(try parseJSONObject(inspect.stdout)["tensors"] as? [[String: Any]])
    #expect(tensors.map { $0["dtype"] as? String } == ["BF16", "BF16"])
    #expect((tensors[1]["stats"] as? [String: Any])?["min"] as? Double == -2)
}

@Test("An existing output is refused without --force and left as it was")
func convertRefusesExisting() throws {
    let scratch = ScratchDirectory()
    writeSmallSafetensors(scratch.file("small.safetensors"))
    try FileManager.default.createDirectory(atPath: scratch.file("out"), withIntermediateDirectories: false)
    FileManager.default.createFile(atPath: scratch.file("out/mine.txt"), contents: Data("keep".utf8))
    let refused = try Tools.run("ckpt-convert", [scratch.file("small.safetensors"), scratch.file("out")])
    #expect(refused.status == 1)
    #expect(refused.stderr == "error: \(scratch.file("out")): output exists (pass --force to replace it)\n")
    #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.file("out")) == ["mine.txt"])
    let forced = try Tools.run("ckpt-convert", [scratch.file("small.safetensors"), scratch.file("out"), "--force"])
    #expect(forced.status == 0)
    #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.file("out")) == ["model.safetensors"])
    #expect(scratch.contents == ["out", "small.safetensors"])
}

@Test("An unknown --type is a usage error (exit 64) naming the accepted types")
func convertBadType() throws {
    let result = try Tools.run("ckpt-convert", ["in", "out", "--type", "q3"])
    #expect(result.status == 64)
    #expect(result.stderr.contains("expected f32, f16 or bf16"))
}

@Test("A truncated input names the tensor and writes nothing")
func convertTruncated() throws {
    let scratch = ScratchDirectory()
    writeSmallSafetensors(scratch.file("small.safetensors"))
    let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: scratch.file("small.safetensors")))
    try handle.truncate(atOffset: UInt64(FileManager.default.attributesOfItem(atPath: scratch.file("small.safetensors"))[.size] as! Int - 3))
    try handle.close()
    let result = try Tools.run("ckpt-convert", [scratch.file("small.safetensors"), scratch.file("out")])
    #expect(result.status == 1)
    #expect(result.stderr.hasPrefix("error: \(scratch.file("small.safetensors")): tensor 'b': file is truncated"))
    #expect(scratch.contents == ["small.safetensors"])
}

@Test("A Git LFS pointer is named as one, with the size it claims")
func lfsPointerIsNamed() throws {
    let scratch = ScratchDirectory()
    let pointer = "version https://git-lfs.github.com/spec/v1\noid sha256:\(String(repeating: "0f", count: 32))\nsize 538968064\n"
    FileManager.default.createFile(atPath: scratch.file("model.safetensors"), contents: Data(pointer.utf8))
    let result = try Tools.run("ckpt-inspect", [scratch.file("model.safetensors")])
    #expect(result.status == 1)
    #expect(result.stderr.contains("Git LFS pointer"))
    #expect(result.stderr.contains("538968064 bytes"))
}

@Test("A full disk mid-write gives a clear error, exit 1, and leaves nothing behind",
      .disabled(if: Tools.sanitizer != nil, "resource limits (ulimit) cannot hold a sanitized program"))
func convertFullDisk() throws {
    let scratch = ScratchDirectory()
    try writeSparseBF16(scratch.file("big.safetensors"), shape: [1 << 20])
    // The shell's file-size limit (512-byte blocks for dash) makes write(2) fail with EFBIG
    // after 256 KB, as a full disk would fail it with ENOSPC.
    let result = try Tools.start("ckpt-convert", [scratch.file("big.safetensors"), scratch.file("out"), "--type", "f32"],
                                 shellPrefix: "ulimit -f 512").wait()
    #expect(result.status == 1)
    #expect(result.stderr.hasPrefix("error: "))
    #expect(result.stderr.contains("cannot write (File too large)"))
    #expect(result.stderr.split(separator: "\n").count == 1)
    #expect(scratch.contents == ["big.safetensors"])
}

@Test("SIGINT mid-write stops with exit 130 (128 + SIGINT, as shells expect), says so, and leaves no partial output")
func convertInterrupted() throws {
    let scratch = ScratchDirectory()
    try writeSparseBF16(scratch.file("big.safetensors"), shape: [1 << 28])  // 512 MB in, 1 GB out
    let running = try Tools.start("ckpt-convert", [scratch.file("big.safetensors"), scratch.file("out"), "--type", "f32",
                                                   "--threads", "1"])
    // Interrupt once the temporary output exists: the write is under way.
    #expect(waitForTemporary(in: scratch))
    running.interrupt()
    let result = running.wait()
    #expect(result.status == 130)
    #expect(result.stderr.contains("interrupted; nothing was written"))
    #expect(scratch.contents == ["big.safetensors"])
}
