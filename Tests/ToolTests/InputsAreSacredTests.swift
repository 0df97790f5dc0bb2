import CheckpointKit
import Foundation
import Testing
import TestSupport

/// No output path may equal, contain or lie inside an input path, `--force` or not (after
/// resolving symlinks); the input folder is left byte for byte as it was.
private func snapshot(_ folder: String) throws -> [String: Data] {
    var files: [String: Data] = [:]
    for name in try FileManager.default.subpathsOfDirectory(atPath: folder) {
        let path = folder + "/" + name
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue {
            files[name] = try Data(contentsOf: URL(fileURLWithPath: path))
        }
    }
    return files
}

@Test("An output that is, holds or lies inside an input is refused with exit 1, --force or not, and the input is untouched")
func outputsNeverReplaceInputs() throws {
    let scratch = ScratchDirectory()
    let model = scratch.file("model")
    try FileManager.default.copyItem(atPath: Tools.fixture("models/tiny-llama"), toPath: model)
    let adapter = scratch.file("adapter")
    try FileManager.default.copyItem(atPath: Tools.fixture("lora/adapters/llama-lora-all-linear"), toPath: adapter)
    try FileManager.default.createSymbolicLink(atPath: scratch.file("link"), withDestinationPath: model)
    let before = try snapshot(scratch.path)
    let cases: [(String, [String])] = [
        ("ckpt-convert", [model, model, "--type", "f32", "--force"]),
        ("ckpt-convert", [model + "/model.safetensors", model, "--force"]),
        ("ckpt-convert", [scratch.file("link"), model, "--force"]),
        ("ckpt-convert", [model, scratch.file("link") + "/inside", "--force"]),
        ("ckpt-quantize", [model, model + "/nf4", "--scheme", "nf4"]),
        ("ckpt-quantize", [model, scratch.path, "--scheme", "nf4", "--force"]),
        ("ckpt-convert", [model, model + "/tiny.gguf", "--to", "gguf"]),
        ("ckpt-merge-lora", [model, adapter, adapter + "/merged"]),
        ("ckpt-merge-lora", [model, adapter, adapter, "--force"]),
    ]
    for (tool, arguments) in cases {
        let run = try Tools.run(tool, arguments)
        #expect(run.status == 1, "\(tool) \(arguments): \(run.stderr)")
        #expect(run.stderr.contains("lies inside the input") && run.stderr.split(separator: "\n").count == 1, "\(tool): \(run.stderr)")
    }
    #expect(try snapshot(scratch.path) == before)
}

@Test("A FIFO given as the model, as a shard inside a folder, or as --text is refused at once, exit 1")
func fifosAreRefused() throws {
    let scratch = ScratchDirectory()
    #expect(mkfifo(scratch.file("pipe.safetensors"), 0o600) == 0)
    try FileManager.default.createDirectory(atPath: scratch.file("folder"), withIntermediateDirectories: false)
    #expect(mkfifo(scratch.file("folder/model.safetensors"), 0o600) == 0)
    for (tool, arguments) in [("ckpt-inspect", [scratch.file("pipe.safetensors")]), ("ckpt-inspect", [scratch.file("folder")]),
                              ("ckpt-perplexity", [Tools.fixture("models/tiny-llama"), "--text", scratch.file("pipe.safetensors")])] {
        let run = try Tools.run(tool, arguments)
        #expect(run.status == 1, "\(tool) \(arguments): \(run.stderr)")
        #expect(run.stderr.contains("not a regular file"), "\(tool): \(run.stderr)")
    }
}

@Test("A merge that overflows (lora_alpha 1e300, or --weight 1e308) is refused naming the tensor, and nothing is written")
func overflowingMerges() throws {
    let scratch = ScratchDirectory()
    let adapter = scratch.file("adapter")
    try FileManager.default.copyItem(atPath: Tools.fixture("lora/adapters/llama-lora-all-linear"), toPath: adapter)
    let configPath = adapter + "/adapter_config.json"
    let config = try String(contentsOfFile: configPath, encoding: .utf8).replacingOccurrences(of: "\"lora_alpha\": 16", with: "\"lora_alpha\": 1e300")
    try config.write(toFile: configPath, atomically: true, encoding: .utf8)
    let huge = try Tools.run("ckpt-merge-lora", [Tools.fixture("models/tiny-llama"), adapter, scratch.file("out")])
    #expect(huge.status == 1, "\(huge.stderr)")
    #expect(huge.stderr.contains("the merge gives") && huge.stderr.contains("tensor 'model.layers."), "\(huge.stderr)")
    let weighted = try Tools.run("ckpt-merge-lora", [Tools.fixture("models/tiny-llama"), Tools.fixture("lora/adapters/llama-lora-all-linear"),
                                                     scratch.file("out2"), "--weight", "1e308"])
    #expect(weighted.status == 1, "\(weighted.stderr)")
    #expect(scratch.contents == ["adapter"])
}

@Test("A temporary left by a process that no longer runs is removed on the next run into that folder, and the program says so")
func staleTemporariesRemoved() throws {
    let scratch = ScratchDirectory()
    // Above Linux's largest pid (2²²): no process can have it.
    let stale = scratch.file(".out.tmp-ckpt-4194999")
    try FileManager.default.createDirectory(atPath: stale, withIntermediateDirectories: false)
    _ = scratch.write(".out.tmp-ckpt-4194999/model.safetensors", [1, 2, 3])
    let run = try Tools.run("ckpt-convert", [Tools.fixture("models/tiny-llama"), scratch.file("out")])
    #expect(run.status == 0, "\(run.stderr)")
    #expect(run.stderr.contains("note: removed \(stale), left by process 4194999 that no longer runs"), "\(run.stderr)")
    #expect(scratch.contents == ["out"])
}

@Test("SIGHUP (the terminal closed) mid-write stops like SIGINT: exit 129 (128 + SIGHUP) and no partial output")
func hangupStopsCleanly() throws {
    let scratch = ScratchDirectory()
    try writeSparseBF16(scratch.file("big.safetensors"), shape: [1 << 28])
    let running = try Tools.start("ckpt-convert", [scratch.file("big.safetensors"), scratch.file("out"), "--type", "f32", "--threads", "1"])
    #expect(waitForTemporary(in: scratch))
    running.send(SIGHUP)
    let result = running.wait()
    #expect(result.status == 129)
    #expect(result.stderr.contains("interrupted; nothing was written"))
    #expect(scratch.contents == ["big.safetensors"])
}

@Test("An output whose name is 250 bytes long is written: the temporary beside it shortens its own name")
func longOutputNames() throws {
    let scratch = ScratchDirectory()
    let name = String(repeating: "n", count: 240) + ".safetensors"[...].prefix(10)
    let run = try Tools.run("ckpt-convert", [Tools.fixture("models/tiny-llama"), scratch.file(String(name))])
    #expect(run.status == 0, "\(run.stderr)")
    #expect(scratch.contents == [String(name)])
}

@Test("An input truncated while it is being read gives one line and exit 1, not a crash (SIGBUS)")
func truncatedWhileReading() throws {
    let scratch = ScratchDirectory()
    let input = scratch.file("big.safetensors")
    try writeSparseBF16(input, shape: [1 << 28])
    let running = try Tools.start("ckpt-convert", [input, scratch.file("out"), "--type", "f32", "--threads", "1"])
    #expect(waitForTemporary(in: scratch))
    #expect(truncate(input, 4096) == 0)
    let result = running.wait()
    #expect(result.status == 1, "\(result.stderr)")
    #expect(result.stderr == "error: an input file shrank while being read (SIGBUS); the output was not written\n", "\(result.stderr)")
}

@Test("Under a 1.5 GB address-space limit, every hostile fixture gives exit 0 or 1 from inspect, verify and convert, never a crash",
      .disabled(if: Tools.sanitizer != nil, "resource limits (ulimit) cannot hold a sanitized program"))
func hostileFilesInBoundedMemory() throws {
    let scratch = ScratchDirectory()
    var files: [String] = []
    for folder in ["convert/gguf_bad", "safetensors/bad", "convert/pickles_bad"] {
        let path = Tools.fixture(folder)
        files += try FileManager.default.contentsOfDirectory(atPath: path).filter { !$0.hasSuffix(".json") }.sorted().map { path + "/" + $0 }
    }
    #expect(files.count > 60)
    for (k, file) in files.enumerated() {
        for (tool, extra) in [("ckpt-inspect", ["--verify"]), ("ckpt-convert", [scratch.file("out\(k)"), "--type", "bf16"])] {
            let run = try Tools.start(tool, [file] + extra, shellPrefix: "ulimit -v 1500000").wait()
            #expect(run.status == 0 || run.status == 1, "\(tool) \(file): exit \(run.status) \(run.stderr.prefix(300))")
            #expect(run.stderr.split(separator: "\n").count <= 1 || run.status == 0, "\(tool) \(file): \(run.stderr.prefix(300))")
        }
    }
}
