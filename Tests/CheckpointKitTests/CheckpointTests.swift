@testable import CheckpointKit
import Foundation
import TestSupport
import Testing

private func fixtureExists(_ relative: String) -> Bool {
    if FileManager.default.fileExists(atPath: Paths.fixture(relative)) { return true }
    Issue.record("missing fixtures/\(relative): run `make fixtures`")
    return false
}

@Test("The sharded fixture holds exactly the tensors and bytes of the single-file model")
func shardedMatchesSingle() throws {
    guard fixtureExists("models/tiny-llama-sharded"), fixtureExists("models/tiny-llama") else { return }
    let single = try Checkpoint(path: Paths.fixture("models/tiny-llama"))
    let sharded = try Checkpoint(path: Paths.fixture("models/tiny-llama-sharded"))
    #expect(sharded.files.count == 3)
    #expect(sharded.layout == .sharded(indexName: "model.safetensors.index.json"))
    #expect(Set(sharded.entries.map(\.info.name)) == Set(single.entries.map(\.info.name)))
    for entry in single.entries {
        let other = try #require(sharded.view(named: entry.info.name))
        #expect(other.byteArray == single.view(entry).byteArray, "\(entry.info.name)")
    }
    #expect(sharded.config?["model_type"]?.stringValue == "llama")
    #expect(sharded.otherFiles.contains("tokenizer.json"))
    #expect(!sharded.otherFiles.contains("model.safetensors.index.json"))
    // The index file given directly opens the same set.
    let viaIndex = try Checkpoint(path: Paths.fixture("models/tiny-llama-sharded/model.safetensors.index.json"))
    #expect(viaIndex.parameterCount == single.parameterCount)
}

@Test("Every bad model folder gives the error its manifest names")
func badModelFolders() throws {
    guard fixtureExists("models/bad/manifest.json") else { return }
    let root = try readJSON(Paths.fixture("models/bad/manifest.json"))
    let cases = try #require(root["cases"]?.arrayValue ?? root.arrayValue)
    #expect(cases.count >= 4)
    for entry in cases {
        let folder = try #require(entry["folder"]?.stringValue ?? entry["file"]?.stringValue)
        let expected = try #require(entry["case"]?.stringValue)
        do {
            _ = try Checkpoint(path: Paths.fixture("models/bad/" + folder))
            Issue.record("\(folder) opened; expected \(expected)")
        } catch let error as CheckpointError {
            let name = String(describing: error).isEmpty ? "" : String(Mirror(reflecting: error).children.first?.label ?? "")
            #expect(name == expected, "\(folder): \(error)")
        } catch let error as SafetensorsError {
            #expect(error.caseName == expected, "\(folder): \(error)")
        }
    }
}

@Test("A folder without weights says so, and a .bin that is not torch.save's zip is named")
func noWeights() throws {
    let scratch = ScratchDirectory()
    _ = scratch.write("notes.txt", [1, 2, 3])
    #expect(throws: CheckpointError.noWeights(path: scratch.path, found: [])) { try Checkpoint(path: scratch.path) }
    _ = scratch.write("pytorch_model.bin", [1, 2, 3])
    #expect(throws: ZipError.notAZip(file: scratch.file("pytorch_model.bin"))) { try Checkpoint(path: scratch.path) }
}

@Test("Two GGUF files in one folder are not guessed between: the error lists both")
func twoGGUFs() throws {
    let scratch = ScratchDirectory()
    _ = scratch.write("a.gguf", [1])
    _ = scratch.write("b.gguf", [1])
    #expect(throws: CheckpointError.noWeights(path: scratch.path, found: ["a.gguf", "b.gguf"])) { try Checkpoint(path: scratch.path) }
}

@Test("An index that points outside its folder is refused")
func indexEscapes() throws {
    let scratch = ScratchDirectory()
    _ = scratch.write("model.safetensors.index.json", Array(#"{"metadata":{},"weight_map":{"w":"../secret.safetensors"}}"#.utf8))
    #expect(throws: CheckpointError.shardPathEscapes(file: scratch.file("model.safetensors.index.json"), shard: "../secret.safetensors")) {
        try Checkpoint(path: scratch.path)
    }
}

@Test("Statistics equal a plain double-precision computation and do not depend on threads")
func statistics() throws {
    var rng = SeededGenerator(seed: 3)
    var values = (0..<200_003).map { _ in Float.random(in: -3...5, using: &rng) }
    values[17] = .nan
    values[99_999] = .infinity
    let scratch = ScratchDirectory()
    let layout = SafetensorsLayout([TensorSpec(name: "w", dtype: .f32, shape: [values.count])])
    try layout.write(to: scratch.file("s.safetensors")) { _, out in try values.withUnsafeBytes { try out.write($0) } }
    let view = try #require(try SafetensorsFile(path: scratch.file("s.safetensors")).view(named: "w"))
    let one = TensorStatistics.compute(view, threads: .single)
    let two = TensorStatistics.compute(view, threads: ThreadBudget(2))
    #expect(one == two)
    let finite = values.filter(\.isFinite).map(Double.init)
    let mean = finite.reduce(0, +) / Double(finite.count)
    let std = (finite.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(finite.count)).squareRoot()
    #expect(abs(one.mean - mean) < 1e-12)
    #expect(abs(one.std - std) < 1e-12)
    #expect(one.min == finite.min() && one.max == finite.max())
    #expect(one.nanCount == 1 && one.infCount == 1 && one.count == values.count)
}

@Test("A GGUF that is a Git LFS pointer, or whose alignment is not a power of two, gets its own GGUF error")
func ggufPointerAndAlignment() throws {
    let scratch = ScratchDirectory()
    let pointer = "version https://git-lfs.github.com/spec/v1\noid sha256:\(String(repeating: "cd", count: 32))\nsize 145000000\n"
    let path = scratch.write("model.gguf", Array(pointer.utf8))
    #expect(throws: GGUFError.gitLFSPointer(file: path, claimedSize: 145_000_000)) { try Checkpoint(path: path) }
    #expect(GGUFError.gitLFSPointer(file: "m.gguf", claimedSize: 1).description.contains("git lfs pull"))
    #expect(throws: GGUFError.badAlignment(file: Paths.fixture("convert/gguf_bad/zero_alignment.gguf"), found: "0")) {
        try GGUFFile(path: Paths.fixture("convert/gguf_bad/zero_alignment.gguf"))
    }
}

/// Runs the restricted unpickler over hand-made opcodes.
private func unpickle(_ opcodes: [UInt8]) throws -> Unpickler.Value {
    try opcodes.withUnsafeBytes { raw in
        var machine = Unpickler(bytes: raw, file: "data.pkl")
        return try machine.run()
    }
}

@Test("A pickle nested 100,000 deep is refused at depth 64 instead of overflowing the stack")
func deepPickle() {
    let opcodes: [UInt8] = [0x80, 0x02, UInt8(ascii: "N")] + [UInt8](repeating: 0x85, count: 100_000) + [UInt8(ascii: ".")]
    #expect(throws: PickleError.self) { try unpickle(opcodes) }
    var shallow: [UInt8] = [0x80, 0x02, UInt8(ascii: "N")] + [UInt8](repeating: 0x85, count: 10)
    shallow.append(UInt8(ascii: "."))
    #expect((try? unpickle(shallow)) != nil)
}

@Test("A memoized list appended to 200,000 times (copy-on-write makes that quadratic) is refused, in bounded work")
func quadraticPickle() {
    var opcodes: [UInt8] = [0x80, 0x02, UInt8(ascii: "]"), 0x94]
    for _ in 0..<200_000 { opcodes += [UInt8(ascii: "N"), UInt8(ascii: "a")] }
    opcodes.append(UInt8(ascii: "."))
    do {
        _ = try unpickle(opcodes)
        Issue.record("accepted")
    } catch let error as PickleError {
        #expect("\(error)".contains("more work than"), "\(error)")
    } catch {
        Issue.record("\(error)")
    }
}

/// Little-endian bytes of `value`.
private func le<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }

/// A zip of one central-directory entry (no local header) and its end record.
private func handMadeZip(method: UInt16, compressed: UInt32, size: UInt32, localOffset: UInt32, zip64: [UInt64]) -> [UInt8] {
    let extra: [UInt8] = zip64.isEmpty ? [] : le(UInt16(1)) + le(UInt16(zip64.count * 8)) + zip64.flatMap { le($0) }
    var entry = le(UInt32(0x0201_4b50)) + [UInt8](repeating: 0, count: 6) + le(method) + [UInt8](repeating: 0, count: 4)
    entry += le(UInt32(0)) + le(compressed) + le(size) + le(UInt16(1)) + le(UInt16(extra.count)) + le(UInt16(0))
    entry += [UInt8](repeating: 0, count: 8) + le(localOffset) + Array("a".utf8) + extra
    let end = le(UInt32(0x0605_4b50)) + [0, 0, 0, 0] + le(UInt16(1)) + le(UInt16(1)) + le(UInt32(entry.count)) + le(UInt32(0)) + [0, 0]
    return entry + end
}

/// A zip whose one deflated member, 16 bytes stored, claims `size` bytes once inflated.
private func zipClaiming(size: UInt64) -> [UInt8] {
    let local = le(UInt32(0x0403_4b50)) + [UInt8](repeating: 0, count: 22) + le(UInt16(1)) + le(UInt16(0)) + Array("a".utf8)
    let data = [UInt8](repeating: 0, count: 16)
    let extra = le(UInt16(1)) + le(UInt16(8)) + le(size)
    var entry = le(UInt32(0x0201_4b50)) + [UInt8](repeating: 0, count: 6) + le(UInt16(8)) + [UInt8](repeating: 0, count: 4)
    entry += le(UInt32(0)) + le(UInt32(16)) + le(UInt32(0xFFFF_FFFF)) + le(UInt16(1)) + le(UInt16(extra.count)) + le(UInt16(0))
    entry += [UInt8](repeating: 0, count: 8) + le(UInt32(0)) + Array("a".utf8) + extra
    let directoryOffset = UInt32(local.count + data.count)
    let end = le(UInt32(0x0605_4b50)) + [0, 0, 0, 0] + le(UInt16(1)) + le(UInt16(1)) + le(UInt32(entry.count)) + le(directoryOffset) + [0, 0]
    return local + data + entry + end
}

@Test("Hostile zip numbers are refused, never trapped on or allocated from: a 42-byte zip64 locator, an offset of 2⁶⁴−1, a 32 GiB claim")
func hostileZips() {
    let scratch = ScratchDirectory()
    let locator = le(UInt32(0x0706_4b50)) + le(UInt32(0)) + le(UInt64(0)) + le(UInt32(1))
    let end = le(UInt32(0x0605_4b50)) + [UInt8](repeating: 0, count: 18)
    let cases: [(String, [UInt8])] = [
        ("locator", locator + end),
        ("offset", handMadeZip(method: 0, compressed: 0, size: 0, localOffset: 0xFFFF_FFFF, zip64: [.max])),
        ("claim", zipClaiming(size: 32 << 30)),
    ]
    #expect(cases[0].1.count == 42)
    for (name, bytes) in cases {
        let path = scratch.write(name + ".bin", bytes)
        #expect(throws: ZipError.self, "\(name)") { try ZipArchive(path: path) }
    }
    #expect(throws: ZipError.tooLarge(file: scratch.file("claim.bin"), member: "a", size: 32 << 30)) { try ZipArchive(path: scratch.file("claim.bin")) }
    #expect((try? ZipArchive(path: scratch.write("fine.bin", zipClaiming(size: 64))))?.members.first?.size == 64)
}
