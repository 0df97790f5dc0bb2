// ckpt-bench: throughput of CheckpointKit's hot kernels, for `make bench` (tools/bench/run.py).
//
// Usage: ckpt-bench SUITE [--elements N] [--runs N]
//
// stdout carries one JSON object per measured row and nothing else, so run.py can parse it;
// usage errors go to stderr. Each suite warms its buffers and kernels once (page faults and
// first-touch costs are not what we measure), then reports the best of `runs` timed runs.

import CheckpointKit

#if canImport(Glibc)
import Glibc
#endif

// MARK: - Command line

/// A named group of kernel measurements; later issues add `quantize`, `int8`, ….
struct Suite: Sendable {
    let name: String
    let summary: String
    let run: @Sendable (BenchmarkSettings) -> Void
}

let suites: [Suite] = [
    Suite(name: "conversion", summary: "bf16/f16 ↔ f32 conversion kernels beside memcpy", run: runConversionSuite),
]

struct BenchmarkSettings: Sendable {
    /// Elements per buffer: 64M gives a 256 MB f32 buffer, far beyond any cache, as checkpoints are.
    var elements = 64 << 20
    var runs = 5
    var threadCounts = [1, 2]
}

func usage() -> String {
    let names = suites.map { "  \($0.name): \($0.summary)" }.joined(separator: "\n")
    return """
        usage: ckpt-bench SUITE [--elements N] [--runs N]
        Prints one JSON line per measurement on stdout.
        suites:
        \(names)
        """
}

/// Writes straight to a file descriptor: unbuffered, so each row reaches a pipe as soon as it is
/// measured (and the C `stdout`/`stderr` globals are not concurrency-safe in Swift 6).
func writeLine(_ text: String, to descriptor: Int32) {
    var line = text + "\n"
    line.withUTF8 { bytes in
        var offset = 0
        while offset < bytes.count {
            let written = write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
            if written <= 0 { return }
            offset += written
        }
    }
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
    let count = settings.elements
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

// MARK: - Main

let (suite, settings) = parseArguments(Array(CommandLine.arguments.dropFirst()))
suite.run(settings)
