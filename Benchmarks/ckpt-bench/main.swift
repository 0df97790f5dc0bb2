// ckpt-bench: throughput of CheckpointKit's hot kernels, for `make bench` (tools/bench/run.py).
//
// Usage: ckpt-bench SUITE [--elements N] [--runs N] [--threads 1,2]
//        ckpt-bench tokenize --tokenizer tokenizer.json --text FILE [--runs N]
//
// stdout carries one JSON object per measured row and nothing else, so run.py can parse it;
// usage errors go to stderr. Each suite warms its buffers and kernels once (page faults and
// first-touch costs are not what we measure), then reports the best of `runs` timed runs.

import CheckpointKit
import ToolSupport

#if canImport(Glibc)
import Glibc
#endif

// MARK: - Command line

/// A named group of kernel measurements.
struct Suite: Sendable {
    let name: String
    let summary: String
    let run: @Sendable (BenchmarkSettings) -> Void
}

let suites: [Suite] = [
    Suite(name: "conversion", summary: "bf16/f16 ↔ f32 conversion kernels beside memcpy", run: runConversionSuite),
    Suite(name: "quantize", summary: "int8 / NF4 / FP4 block quantize and dequantize of a 4096×4096 f32 matrix",
          run: runQuantizeSuite),
    Suite(name: "tokenize", summary: "Tokenizer.encode of a whole text file, one thread (needs --tokenizer and --text)",
          run: runTokenizeSuite),
    Suite(name: "tokenizer-load", summary: "tokenizer.json parsed, Tokenizer and probe tokenizer built, llama.cpp's probe hash taken, each timed (needs --tokenizer)",
          run: runTokenizerLoadSuite),
    Suite(name: "gptq", summary: "GPTQ of a 1536×576 f32 weight (identity Hessian, groups of 64), with and without the mse range search",
          run: runGPTQSuite),
]

struct BenchmarkSettings: Sendable {
    /// Elements per buffer, when given; each suite has its own default.
    var elements: Int?
    var runs = 5
    var threadCounts = [1, 2]
    /// The tokenize suite's inputs: a tokenizer.json and a text file.
    var tokenizerPath: String?
    var textPath: String?
}

func usage() -> String {
    let names = suites.map { "  \($0.name): \($0.summary)" }.joined(separator: "\n")
    return """
        usage: ckpt-bench SUITE [--elements N] [--runs N] [--threads 1,2]
               ckpt-bench tokenize --tokenizer tokenizer.json --text FILE [--runs N]
        Prints one JSON line per measurement on stdout.
        suites:
        \(names)
        """
}

/// Unbuffered, so each row reaches a pipe as soon as it is measured.
func writeLine(_ text: String, to descriptor: Int32) {
    writeUnbuffered(text + "\n", to: descriptor)
}

func fail(_ message: String) -> Never {
    writeLine("error: \(message)\n\(usage())", to: STDERR_FILENO)
    exit(64)
}

/// Accepts plain counts and K/M/G suffixes (powers of two), e.g. `1M` = 1,048,576.
func parseCount(_ text: String) -> Int? {
    let multipliers: [Character: Int] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30]
    if let last = text.last, let multiplier = multipliers[Character(last.uppercased())] {
        return Int(text.dropLast()).flatMap { $0 > 0 ? $0 * multiplier : nil }
    }
    return Int(text).flatMap { $0 > 0 ? $0 : nil }
}

func parseArguments(_ arguments: [String]) -> (Suite, BenchmarkSettings) {
    var settings = BenchmarkSettings()
    var suiteName: String?
    var remaining = arguments[...]
    while let argument = remaining.popFirst() {
        switch argument {
        case "-h", "--help":
            writeLine(usage(), to: STDOUT_FILENO)
            exit(0)
        case "--elements", "--runs":
            guard let value = remaining.popFirst(), let count = parseCount(value) else {
                fail("\(argument) needs a positive count")
            }
            if argument == "--elements" { settings.elements = count } else { settings.runs = count }
        case "--threads":
            guard let value = remaining.popFirst() else { fail("--threads needs a comma-separated list of counts") }
            let counts = value.split(separator: ",").map { Int($0).flatMap { $0 > 0 ? $0 : nil } }
            guard !counts.isEmpty, counts.allSatisfy({ $0 != nil }) else { fail("--threads \(value): expected counts like 1,2") }
            settings.threadCounts = counts.map { $0! }
        case "--tokenizer", "--text":
            guard let value = remaining.popFirst(), !value.isEmpty else { fail("\(argument) needs a file") }
            if argument == "--tokenizer" { settings.tokenizerPath = value } else { settings.textPath = value }
        default:
            guard suiteName == nil, !argument.hasPrefix("-") else { fail("unexpected argument '\(argument)'") }
            suiteName = argument
        }
    }
    guard let suiteName else { fail("no suite given") }
    guard let suite = suites.first(where: { $0.name == suiteName }) else { fail("unknown suite '\(suiteName)'") }
    return (suite, settings)
}

// MARK: - Measurement

func monotonicSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) * 1e-9
}

/// Runs `body` once untimed, then `runs` times, and returns the fastest run in seconds.
func bestTime(runs: Int, _ body: () -> Void) -> Double {
    body()
    var best = Double.infinity
    for _ in 0..<runs {
        let start = monotonicSeconds()
        body()
        best = min(best, monotonicSeconds() - start)
    }
    return best
}

/// One line of output. Bandwidth counts bytes read plus bytes written, so kernels that shrink or
/// widen their data compare fairly with memcpy.
struct BenchmarkRow {
    let suite: String
    let kernel: String
    let threads: Int
    let elements: Int
    let bytesMoved: Int
    let seconds: Double
    /// The memcpy bandwidth at the same thread count, when the suite measures one.
    let memcpyBytesPerSecond: Double?
    /// More fields, already JSON-encoded (checksums, shapes).
    var extra: [(String, String)] = []

    var bytesPerSecond: Double { Double(bytesMoved) / seconds }

    var json: String {
        var fields = [
            ("suite", quoted(suite)),
            ("kernel", quoted(kernel)),
            ("threads", String(threads)),
            ("elements", String(elements)),
            ("seconds", rounded(seconds, digits: 6)),
            ("gelem_per_s", rounded(Double(elements) / seconds / 1e9, digits: 4)),
            ("gb_per_s", rounded(bytesPerSecond / 1e9, digits: 3)),
        ]
        if let memcpyBytesPerSecond {
            fields.append(("pct_of_memcpy", rounded(100 * bytesPerSecond / memcpyBytesPerSecond, digits: 1)))
        }
        fields += extra
        return "{" + fields.map { "\(quoted($0.0)):\($0.1)" }.joined(separator: ",") + "}"
    }

    func emit() { writeLine(json, to: STDOUT_FILENO) }
}

func quoted(_ text: String) -> String { "\"\(text)\"" }  // names here are plain ASCII identifiers

func rounded(_ value: Double, digits: Int) -> String {
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    return String((value * scale).rounded() / scale)
}

/// A page-aligned buffer of `bytes` that the benchmark owns for its whole run.
final class Buffer {
    let raw: UnsafeMutableRawBufferPointer

    init(bytes: Int) {
        raw = .allocate(byteCount: bytes, alignment: 4096)
        // Touch every page now so that no timed run pays for first-touch faults.
        raw.initializeMemory(as: UInt8.self, repeating: 0)
    }

    deinit { raw.deallocate() }

    var readOnly: UnsafeRawBufferPointer { UnsafeRawBufferPointer(raw) }
}

/// Copies `source` into `destination` with glibc's memcpy, split into one contiguous part per
/// thread, as a parallel kernel would split it.
func parallelMemcpy(_ destination: UnsafeMutableRawBufferPointer, _ source: UnsafeRawBufferPointer, threads: ThreadBudget) {
    let parts = threads.count
    // Parts are multiples of 4 KB so each thread's copy starts on its own page.
    let partBytes = (source.count / parts + 4095) & ~4095
    threads.forEachChunk(parts) { part in
        let start = min(source.count, part * partBytes)
        let end = min(source.count, start + partBytes)
        if end > start {
            memcpy(destination.baseAddress! + start, source.baseAddress! + start, end - start)
        }
    }
}

// MARK: - Suite: conversion

/// Fills `values` with weight-like floats: a deterministic, roughly normal spread of scale 0.02
/// (some of it f16-subnormal), plus every 4096th value an outlier up to ±100,000 (some beyond
/// f16's range). Today's kernels are branch-free, but one with a fast path for common values
/// must not be flattered by data that never leaves it.
func fillWeightLike(_ values: UnsafeMutableBufferPointer<Float>) {
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    for i in values.indices {
        // xorshift64*; the sum of two uniforms is a cheap bell shape, enough for timing.
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        let bits = state &* 0x2545_F491_4F6C_DD1D
        let a = Float(bits >> 40) / Float(1 << 24)
        let b = Float(bits & 0xFF_FFFF) / Float(1 << 24)
        values[i] = i % 4096 == 0 ? 200_000 * (a - 0.5) : 0.02 * (a + b - 1)
    }
}

func runConversionSuite(_ settings: BenchmarkSettings) {
    // 64M elements: a 256 MB f32 buffer, far beyond any cache, as checkpoints are.
    let count = settings.elements ?? 64 << 20
    let f32Source = Buffer(bytes: count * 4)
    let bf16Source = Buffer(bytes: count * 2)
    let f16Source = Buffer(bytes: count * 2)
    let f32Destination = Buffer(bytes: count * 4)
    let halfDestination = Buffer(bytes: count * 2)

    fillWeightLike(f32Source.raw.bindMemory(to: Float.self))
    FloatConversion.f32ToBF16(f32Source.readOnly, bf16Source.raw)
    FloatConversion.f32ToF16(f32Source.readOnly, f16Source.raw)

    typealias Kernel = (UnsafeRawBufferPointer, UnsafeMutableRawBufferPointer, ThreadBudget) -> Void
    let kernels: [(name: String, source: Buffer, destination: Buffer, run: Kernel)] = [
        ("bf16_to_f32", bf16Source, f32Destination, { FloatConversion.bf16ToF32($0, $1, threads: $2) }),
        ("f16_to_f32", f16Source, f32Destination, { FloatConversion.f16ToF32($0, $1, threads: $2) }),
        ("f32_to_bf16", f32Source, halfDestination, { FloatConversion.f32ToBF16($0, $1, threads: $2) }),
        ("f32_to_f16", f32Source, halfDestination, { FloatConversion.f32ToF16($0, $1, threads: $2) }),
        // What `ckpt-convert --type f16` runs on a bf16 checkpoint.
        ("bf16_to_f16", bf16Source, halfDestination, { FloatConversion.bf16ToF16($0, $1, threads: $2) }),
    ]

    for threadCount in settings.threadCounts {
        let threads = ThreadBudget(threadCount)
        // memcpy of the f32 source is the ceiling: the same 64M elements, read once and written once.
        let memcpySeconds = bestTime(runs: settings.runs) {
            parallelMemcpy(f32Destination.raw, f32Source.readOnly, threads: threads)
        }
        let memcpyBytes = 2 * f32Source.raw.count
        let memcpyBytesPerSecond = Double(memcpyBytes) / memcpySeconds
        BenchmarkRow(suite: "conversion", kernel: "memcpy", threads: threadCount, elements: count,
                     bytesMoved: memcpyBytes, seconds: memcpySeconds, memcpyBytesPerSecond: memcpyBytesPerSecond).emit()

        for kernel in kernels {
            let seconds = bestTime(runs: settings.runs) {
                kernel.run(kernel.source.readOnly, kernel.destination.raw, threads)
            }
            BenchmarkRow(suite: "conversion", kernel: kernel.name, threads: threadCount, elements: count,
                         bytesMoved: kernel.source.raw.count + kernel.destination.raw.count,
                         seconds: seconds, memcpyBytesPerSecond: memcpyBytesPerSecond).emit()
        }
    }
}

// MARK: - Suite: quantize

/// The seed of the quantize suite's matrix; tools/bench/run.py regenerates the matrix from it.
let normalMatrixSeed: UInt64 = 0x636B_7074  // "ckpt"

/// splitmix64's output for counter `index`: a stream any language can compute at any position,
/// so numpy regenerates it vectorised instead of replaying a generator value by value.
@inline(__always)
func splitmix64(_ index: UInt64, seed: UInt64) -> UInt64 {
    var z = seed &+ (index &+ 1) &* 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}

/// Fills `values` with N(0, 0.02²) samples, a trained weight's spread, by Box–Muller in double
/// precision rounded once to float32: for pair k, u1 = ((s(2k) >> 11) + 1) / 2⁵³ in (0, 1],
/// u2 = (s(2k+1) >> 11) / 2⁵³, and x[2k], x[2k+1] = 0.02 · √(−2 ln u1) · (cos, sin)(2π u2).
/// run.py's `normal_matrix` is the same formula; the `input` row's checksum tells whether the two
/// agree (libm and numpy may differ in a last double ulp, which float32 rounding almost always hides).
func fillNormal(_ values: UnsafeMutableBufferPointer<Float>, seed: UInt64) {
    var k = 0
    while 2 * k < values.count {
        let u1 = Double((splitmix64(UInt64(2 * k), seed: seed) >> 11) + 1) * 0x1p-53
        let u2 = Double(splitmix64(UInt64(2 * k + 1), seed: seed) >> 11) * 0x1p-53
        let radius = 0.02 * (-2 * log(u1)).squareRoot()
        let angle = 2 * Double.pi * u2
        values[2 * k] = Float(radius * cos(angle))
        if 2 * k + 1 < values.count { values[2 * k + 1] = Float(radius * sin(angle)) }
        k += 1
    }
}

/// Position-weighted wrapping sums, Σ (i + 1) · value[i] mod 2⁶⁴, of a buffer's bytes or 32-bit
/// words: checksums that numpy computes exactly (uint64 arithmetic wraps the same way), to show
/// that ckpt and a peer wrote the same bytes in the same order, and that every thread count did.
func byteChecksum(_ raw: UnsafeRawBufferPointer) -> UInt64 {
    var sum: UInt64 = 0
    for (i, byte) in raw.enumerated() { sum &+= UInt64(i + 1) &* UInt64(byte) }
    return sum
}

func wordChecksum(_ raw: UnsafeRawBufferPointer) -> UInt64 {
    var sum: UInt64 = 0
    for (i, word) in raw.bindMemory(to: UInt32.self).enumerated() { sum &+= UInt64(i + 1) &* UInt64(word) }
    return sum
}

func runQuantizeSuite(_ settings: BenchmarkSettings) {
    // 4096×4096 by default: 64 MB of f32, a large Llama projection, well beyond the caches.
    let columns = 4096
    let rows = max(1, (settings.elements ?? columns * columns) / columns)
    let count = rows * columns
    let blockSize = 64
    let blocks = FourBitQuantizer.blockCount(count, blockSize: blockSize)
    let groups = rows * BlockInt8Quantizer.groupsPerRow(columns: columns, groupSize: blockSize)

    let input = Buffer(bytes: count * 4)
    fillNormal(input.raw.bindMemory(to: Float.self), seed: normalMatrixSeed)
    let x = UnsafeBufferPointer(input.raw.bindMemory(to: Float.self))
    writeLine("{\"suite\":\"quantize\",\"kernel\":\"input\",\"rows\":\(rows),\"columns\":\(columns),"
              + "\"seed\":\(normalMatrixSeed),\"word_checksum\":\(wordChecksum(input.readOnly))}", to: STDOUT_FILENO)

    let nf4Packed = Buffer(bytes: FourBitQuantizer.packedByteCount(count))
    let fp4Packed = Buffer(bytes: FourBitQuantizer.packedByteCount(count))
    let int8Codes = Buffer(bytes: count)
    let int8Scales = Buffer(bytes: groups * 4)
    let decoded = Buffer(bytes: count * 4)
    // Arrays, not Buffers: DoubleQuantizedAbsmax(compressing:) takes the absmax as an array.
    var nf4Absmax = [Float](repeating: 0, count: blocks)
    var fp4Absmax = [Float](repeating: 0, count: blocks)

    func int8Quantize(_ threads: ThreadBudget) {
        BlockInt8Quantizer.quantize(x, rows: rows, columns: columns, groupSize: blockSize, scaleType: .f32,
                                    q: int8Codes.raw.bindMemory(to: Int8.self), scales: int8Scales.raw.bindMemory(to: Float.self),
                                    threads: threads)
    }
    func fourBitQuantize(_ type: FourBitType, _ packed: Buffer, _ absmax: inout [Float], _ threads: ThreadBudget) {
        absmax.withUnsafeMutableBufferPointer { a in
            FourBitQuantizer.quantize(x, blockSize: blockSize, type: type, packed: packed.raw.bindMemory(to: UInt8.self), absmax: a,
                                      threads: threads)
        }
    }

    let fourBitBytes = nf4Packed.raw.count + blocks * 4
    let int8Bytes = int8Codes.raw.count + int8Scales.raw.count
    for threadCount in settings.threadCounts {
        let threads = ThreadBudget(threadCount)
        func emit(_ kernel: String, bytesMoved: Int, seconds: Double, _ checksums: [(String, UInt64)]) {
            var row = BenchmarkRow(suite: "quantize", kernel: kernel, threads: threadCount, elements: count, bytesMoved: bytesMoved,
                                   seconds: seconds, memcpyBytesPerSecond: nil)
            row.extra = [("block_size", String(blockSize))] + checksums.map { ($0.0, String($0.1)) }
            row.emit()
        }

        var seconds = bestTime(runs: settings.runs) { int8Quantize(threads) }
        emit("int8_quantize", bytesMoved: count * 4 + int8Bytes, seconds: seconds,
             [("q_checksum", byteChecksum(int8Codes.readOnly)), ("scale_checksum", wordChecksum(int8Scales.readOnly))])

        seconds = bestTime(runs: settings.runs) {
            BlockInt8Quantizer.dequantize(UnsafeBufferPointer(int8Codes.raw.bindMemory(to: Int8.self)),
                                          scales: UnsafeBufferPointer(int8Scales.raw.bindMemory(to: Float.self)), rows: rows,
                                          columns: columns, groupSize: blockSize, into: decoded.raw.bindMemory(to: Float.self),
                                          threads: threads)
        }
        emit("int8_dequantize", bytesMoved: int8Bytes + count * 4, seconds: seconds, [("out_checksum", wordChecksum(decoded.readOnly))])

        seconds = bestTime(runs: settings.runs) { fourBitQuantize(.nf4, nf4Packed, &nf4Absmax, threads) }
        emit("nf4_quantize", bytesMoved: count * 4 + fourBitBytes, seconds: seconds,
             [("packed_checksum", byteChecksum(nf4Packed.readOnly)), ("absmax_checksum", nf4Absmax.withUnsafeBytes { wordChecksum($0) })])

        // What `--double-quant` adds: the absmax compressed to 8 bits, one float per 256 blocks.
        var compressed = DoubleQuantizedAbsmax(codes: [], nestedAbsmax: [], offset: 0)
        seconds = bestTime(runs: settings.runs) {
            fourBitQuantize(.nf4, nf4Packed, &nf4Absmax, threads)
            compressed = DoubleQuantizedAbsmax(compressing: nf4Absmax)
        }
        emit("nf4_double_quant_quantize", bytesMoved: count * 4 + nf4Packed.raw.count + blocks + compressed.nestedAbsmax.count * 4,
             seconds: seconds,
             [("packed_checksum", byteChecksum(nf4Packed.readOnly)), ("code_checksum", compressed.codes.withUnsafeBytes { byteChecksum($0) }),
              ("nested_absmax_checksum", compressed.nestedAbsmax.withUnsafeBytes { wordChecksum($0) }),
              ("offset_bits", UInt64(compressed.offset.bitPattern))])

        seconds = bestTime(runs: settings.runs) {
            nf4Absmax.withUnsafeBufferPointer { a in
                FourBitQuantizer.dequantize(packed: UnsafeBufferPointer(nf4Packed.raw.bindMemory(to: UInt8.self)), absmax: a,
                                            blockSize: blockSize, type: .nf4, into: decoded.raw.bindMemory(to: Float.self),
                                            threads: threads)
            }
        }
        emit("nf4_dequantize", bytesMoved: fourBitBytes + count * 4, seconds: seconds, [("out_checksum", wordChecksum(decoded.readOnly))])

        seconds = bestTime(runs: settings.runs) { fourBitQuantize(.fp4, fp4Packed, &fp4Absmax, threads) }
        emit("fp4_quantize", bytesMoved: count * 4 + fourBitBytes, seconds: seconds,
             [("packed_checksum", byteChecksum(fp4Packed.readOnly)), ("absmax_checksum", fp4Absmax.withUnsafeBytes { wordChecksum($0) })])

        // llama.cpp's K-quant and IQ4 quantizers (as llama-quantize runs them: rows of 4096, no imatrix).
        for type in [GGMLType.q4_K, .q6_K, .iq4_XS] {
            var bytes: [UInt8] = []
            seconds = bestTime(runs: settings.runs) { bytes = type.encode(x, rowLength: columns, importance: nil, threads: threads)! }
            emit(type.name.lowercased() + "_quantize", bytesMoved: count * 4 + bytes.count, seconds: seconds,
                 [("out_checksum", bytes.withUnsafeBytes { byteChecksum($0) })])
        }
    }
}

// MARK: - Suite: gptq

/// GPTQ with an identity Hessian is round-to-nearest through GPTQ's column loop: what the range
/// search (`--mse`, 80 trial quantizations of every group) adds to it shows beside the plain run.
func runGPTQSuite(_ settings: BenchmarkSettings) {
    let (rows, columns) = (1536, 576)  // SmolLM2-135M's gate and up projections
    var weight = [Float](repeating: 0, count: rows * columns)
    weight.withUnsafeMutableBufferPointer { fillNormal($0, seed: normalMatrixSeed) }
    var identity = [Float](repeating: 0, count: columns * columns)
    for c in 0..<columns { identity[c * columns + c] = 1 }
    for threadCount in settings.threadCounts {
        for (name, codes) in [("int4", GPTQOptions.Codes.integer(bits: 4, symmetric: true)), ("nf4", .fourBit(.nf4))] {
            for norm in [0, 2.4] {
                var options = GPTQOptions(codes: codes, groupSize: 64)
                options.mse = norm
                var result: GPTQResult?
                let seconds = bestTime(runs: settings.runs) {
                    result = try? GPTQ.quantize(weight, hessian: identity, rows: rows, columns: columns, options: options,
                                                threads: ThreadBudget(threadCount))
                }
                var row = BenchmarkRow(suite: "gptq", kernel: "\(name)_gptq" + (norm > 0 ? "_mse" : ""), threads: threadCount,
                                       elements: rows * columns, bytesMoved: rows * columns * 4, seconds: seconds, memcpyBytesPerSecond: nil)
                row.extra = [("group_size", "64"), ("mse", rounded(norm, digits: 1)),
                             ("q_checksum", String(result.map { $0.quantized.withUnsafeBytes { wordChecksum($0) } } ?? 0))]
                row.emit()
            }
        }
    }
}

// MARK: - Suite: tokenize

/// The whole of a file, read with plain POSIX calls (the benchmark needs no Foundation).
func readWholeFile(_ path: String) -> [UInt8]? {
    let descriptor = open(path, O_RDONLY)
    guard descriptor >= 0 else { return nil }
    defer { close(descriptor) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 20)
    while true {
        let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress!, $0.count) }
        if count < 0 { return nil }
        if count == 0 { return bytes }
        bytes += chunk[0..<count]
    }
}

/// `Tokenizer(path:)` and one `encode(_:)` of the whole text (special tokens added, as
/// `tokenizers`' `encode` does by default), best of `runs` after a warm-up. Each call starts with
/// an empty word cache: ckpt's cache lives for one `encode`. One JSON line: bytes, tokens, the
/// load time, the best encode time, MB/s (10⁶ bytes) and a position-weighted checksum of the ids
/// (Σ (i + 1) · id mod 2⁶⁴) so that run.py can tell that `tokenizers` made the same ids.
func runTokenizeSuite(_ settings: BenchmarkSettings) {
    guard let tokenizerPath = settings.tokenizerPath, let textPath = settings.textPath else {
        fail("tokenize needs --tokenizer FILE and --text FILE")
    }
    guard let bytes = readWholeFile(textPath) else { fail("cannot read \(textPath)") }
    let text = String(decoding: bytes, as: UTF8.self)
    let loadStart = monotonicSeconds()
    let tokenizer: Tokenizer
    do {
        tokenizer = try Tokenizer(path: tokenizerPath)
    } catch {
        writeLine("error: \(error)", to: STDERR_FILENO)
        exit(1)
    }
    let loadSeconds = monotonicSeconds() - loadStart

    var ids: [Int] = []
    let seconds = bestTime(runs: settings.runs) { ids = tokenizer.encode(text) }
    var checksum: UInt64 = 0
    for (i, id) in ids.enumerated() { checksum &+= UInt64(i + 1) &* UInt64(id) }
    let fields = [
        ("suite", quoted("tokenize")),
        ("tokenizer", quoted(tokenizerPath.jsonEscaped)),
        ("text", quoted(textPath.jsonEscaped)),
        ("bytes", String(bytes.count)),
        ("tokens", String(ids.count)),
        ("runs", String(settings.runs)),
        ("load_seconds", rounded(loadSeconds, digits: 6)),
        ("seconds", rounded(seconds, digits: 6)),
        ("mb_per_s", rounded(Double(bytes.count) / seconds / 1e6, digits: 3)),
        ("tokens_per_s", String(Int((Double(ids.count) / seconds).rounded()))),
        ("ids_checksum", String(checksum)),
    ]
    writeLine("{" + fields.map { "\(quoted($0.0)):\($0.1)" }.joined(separator: ",") + "}", to: STDOUT_FILENO)
}

extension String {
    /// The string as the inside of a JSON string literal (paths may hold quotes or backslashes).
    var jsonEscaped: String {
        var out = ""
        for scalar in unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where scalar.value < 0x20: out += "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count)
                + String(scalar.value, radix: 16)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}

// MARK: - Main

let (suite, settings) = parseArguments(Array(CommandLine.arguments.dropFirst()))
suite.run(settings)

/// The steps GGUF export takes to name a byte-level tokenizer's pre-tokenizer, each the best of
/// `runs` after a warm-up: the tokenizer.json read and parsed, the `Tokenizer` built from the parsed
/// JSON, the probe tokenizer (only the merges the probe text can use) built from it, and llama.cpp's
/// probe hash taken with the whole tokenizer. One JSON line of seconds per step.
func runTokenizerLoadSuite(_ settings: BenchmarkSettings) {
    guard let tokenizerPath = settings.tokenizerPath else { fail("tokenizer-load needs --tokenizer FILE") }
    guard let bytes = readWholeFile(tokenizerPath) else { fail("cannot read \(tokenizerPath)") }
    guard let json = try? JSONParser.parse(bytes), let tokenizer = try? Tokenizer(json: json, file: tokenizerPath) else {
        fail("\(tokenizerPath) is no tokenizer ckpt reads")
    }
    let parse = bestTime(runs: settings.runs) { _ = try? JSONParser.parse(bytes) }
    let build = bestTime(runs: settings.runs) { _ = try? Tokenizer(json: json, file: tokenizerPath) }
    let probeBuild = bestTime(runs: settings.runs) { _ = try? LlamaCppPreTokenizer.probeTokenizer(json: json, file: tokenizerPath, config: nil) }
    var hash = ""
    let probe = bestTime(runs: settings.runs) { hash = LlamaCppPreTokenizer.probeHash(tokenizer) }
    let fields = [
        ("suite", quoted("tokenizer-load")),
        ("tokenizer", quoted(tokenizerPath.jsonEscaped)),
        ("bytes", String(bytes.count)),
        ("runs", String(settings.runs)),
        ("parse_seconds", rounded(parse, digits: 6)),
        ("build_seconds", rounded(build, digits: 6)),
        ("probe_build_seconds", rounded(probeBuild, digits: 6)),
        ("probe_seconds", rounded(probe, digits: 6)),
        ("probe_hash", quoted(hash)),
    ]
    writeLine("{" + fields.map { "\(quoted($0.0)):\($0.1)" }.joined(separator: ",") + "}", to: STDOUT_FILENO)
}
