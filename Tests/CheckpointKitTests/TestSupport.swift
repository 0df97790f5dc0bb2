import CheckpointKit
import Foundation
import TestSupport
import Testing

/// Paths the tests read: committed fixtures (made by `tools/make_fixtures.py`) and the shared
/// public assets (absent on a user's fresh clone: tests that need them skip, saying why).
enum Paths {
    static let repository: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    static func fixture(_ relative: String) -> String { repository + "/fixtures/" + relative }

    static let sharedAssets = repository + "/../shared/assets"
}

func readBytes(_ path: String) -> [UInt8] {
    [UInt8](FileManager.default.contents(atPath: path) ?? Data())
}

func readJSON(_ path: String) throws -> JSONValue {
    try JSONParser.parse(readBytes(path))
}

/// Bytes from a lower-case hex string.
func bytes(hex: String) -> [UInt8] {
    var out: [UInt8] = []
    var it = hex.utf8.makeIterator()
    func nibble(_ c: UInt8) -> UInt8 { c <= 57 ? c - 48 : (c | 0x20) - 87 }
    while let hi = it.next(), let lo = it.next() { out.append(nibble(hi) << 4 | nibble(lo)) }
    return out
}

/// A safetensors file assembled by hand from a header object and raw data.
func handMadeSafetensors(header: String, data: [UInt8] = [], declaredLength: UInt64? = nil) -> [UInt8] {
    let json = Array(header.utf8)
    var out: [UInt8] = []
    withUnsafeBytes(of: (declaredLength ?? UInt64(json.count)).littleEndian) { out.append(contentsOf: $0) }
    return out + json + data
}

/// Deterministic pseudo-random numbers (SplitMix64) for seeded round trips.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Writes a safetensors file of f32 tensors (seeded values) and returns the path.
func writeF32(_ path: String, _ tensors: [(String, [Int])], seed: UInt64, dtype: DType = .f32,
                      overrides: [String: [Float]] = [:]) throws {
    var rng = SeededGenerator(seed: seed)
    var values: [String: [Float]] = [:]
    for (name, shape) in tensors {
        values[name] = overrides[name] ?? (0..<shape.reduce(1, *)).map { _ in Float.random(in: -0.1...0.1, using: &rng) }
    }
    try SafetensorsLayout(tensors.map { TensorSpec(name: $0.0, dtype: dtype, shape: $0.1) }).write(to: path) { info, out in
        let v = values[info.name]!
        var bytes = [UInt8](repeating: 0, count: info.byteCount)
        v.withUnsafeBytes { src in bytes.withUnsafeMutableBytes { FloatConversion.convert(src, from: .f32, to: dtype, into: $0) } }
        try out.write(bytes)
    }
}

/// An adapter folder `name` in `scratch`: the config as given, seeded f32 tensors.
func makeAdapter(_ scratch: ScratchDirectory, name: String, config: String, tensors: [(String, [Int])], seed: UInt64,
                         overrides: [String: [Float]] = [:]) throws -> String {
    let folder = scratch.file(name)
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    FileManager.default.createFile(atPath: folder + "/adapter_config.json", contents: Data(config.utf8))
    try writeF32(folder + "/adapter_model.safetensors", tensors, seed: seed, overrides: overrides)
    return folder
}

