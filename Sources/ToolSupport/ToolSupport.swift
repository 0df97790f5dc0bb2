import ArgumentParser
import CheckpointKit

#if canImport(Glibc)
import Glibc
#endif

/// Options every ckpt program takes.
public struct CommonOptions: ParsableArguments {
    /// `--json`: stdout carries one JSON document with sorted keys and nothing else.
    @Flag(help: "Print one JSON document (sorted keys) on stdout and nothing else.")
    public var json = false

    /// `--quiet`: no progress or log lines on stderr.
    @Flag(help: "No progress or log lines on stderr.")
    public var quiet = false

    /// `--threads N`: worker threads; nil means all cores.
    @Option(help: "Worker threads (default: all cores). Results are identical for any count.")
    public var threads: Int?

    /// Defaults only; ArgumentParser fills the options from the command line.
    public init() {}

    /// The most worker threads a run may ask for.
    public static let maximumThreads = 1024

    /// Refuses --threads outside 1…1024 (each thread is a real pool worker with its own scratch).
    public mutating func validate() throws {
        if let threads, threads < 1 || threads > Self.maximumThreads {
            throw ValidationError("--threads must be from 1 to \(Self.maximumThreads) (got \(threads))")
        }
    }

    /// `--threads` as a budget; all cores when not given.
    public var threadBudget: ThreadBudget { threads.map(ThreadBudget.init) ?? .allCores }

    /// Whether progress lines should be drawn: stderr is a terminal and --quiet is not given.
    public var showsProgress: Bool { !quiet && isatty(STDERR_FILENO) == 1 }
}

/// Exit codes of the command-line contract.
public enum ToolExit {
    /// 128 + the signal's number when SIGINT (130), SIGTERM (143) or SIGHUP (129) stopped the run.
    public static func interrupted(by signal: Int32) -> Int32 { 128 + signal }
    /// 0: the program did what was asked.
    public static let success: Int32 = 0
    /// 1: an error, reported as one `error: …` line on stderr.
    public static let failure: Int32 = 1
    /// 3: the comparison ran, but a quality gate failed (ckpt-compare, ckpt-diff).
    public static let qualityGateFailed: Int32 = 3
    /// 64 (EX_USAGE): the command line was invalid.
    public static let usage: Int32 = 64
}

/// Runs a program body: SIGINT/SIGTERM/SIGHUP (a closed terminal) request a clean stop, and any error becomes the one-line
/// `error: …` on stderr with exit code 1 (the library's error descriptions name file and tensor).
public func runTool(_ options: CommonOptions? = nil, _ body: () throws -> Void) throws {
    // A parent may start us with signals blocked (threads of Dispatch pools block them all and
    // posix_spawn passes the mask on): unblock the ones we handle.
    var handled = sigset_t()
    sigemptyset(&handled)
    sigaddset(&handled, SIGINT)
    sigaddset(&handled, SIGTERM)
    sigaddset(&handled, SIGHUP)
    pthread_sigmask(SIG_UNBLOCK, &handled, nil)
    signal(SIGINT) { Interruption.request(signal: $0) }
    signal(SIGTERM) { Interruption.request(signal: $0) }
    signal(SIGHUP) { Interruption.request(signal: $0) }
    // An input truncated while mapped faults on the missing pages: say so in one line and stop.
    // Only async-signal-safe calls here; the temporary left beside the target is removed (and
    // named) by the next run into that folder.
    signal(SIGBUS) { _ in
        let message = "error: an input file shrank while being read (SIGBUS); the output was not written\n"
        _ = message.withCString { write(STDERR_FILENO, $0, strlen($0)) }
        _exit(1)
    }
    // A file-size limit must surface as a write error (EFBIG) we can clean up after, not a kill.
    signal(SIGXFSZ, SIG_IGN)
    // Tensors are converted, encoded and measured in buffers freed after each tensor. Above
    // glibc's mmap threshold each one is a fresh mapping, and every page of it faults and is
    // zeroed again: keep them in the heap (32 MB is mallopt's ceiling) and reuse the pages.
    _ = glibcMallopt(-3 /* M_MMAP_THRESHOLD */, 32 << 20)
    _ = glibcMallopt(-1 /* M_TRIM_THRESHOLD */, 256 << 20)
    defer {
        for removed in AtomicOutput.removedStaleTemporaries() {
            writeStandardError("note: removed \(removed.path), left by process \(removed.pid) that no longer runs\n")
        }
    }
    // On a terminal, long work draws a progress line (never on a pipe, with --quiet or --json).
    let progress = ProgressLine()
    if let options, options.showsProgress && !options.json {
        WorkProgress.observe { step, done, total, item in progress.update(step: step, done: done, total: total, item: item) }
    }
    defer {
        WorkProgress.observe(nil)
        progress.finish()
    }
    do {
        try body()
    } catch let exit as ExitCode {
        throw exit
    } catch {
        printError("error: \(error)")
        // Stopped by a signal: the shell's convention, 128 + its number (130 for Ctrl-C).
        throw ExitCode(Interruption.signal.map(ToolExit.interrupted(by:)) ?? ToolExit.failure)
    }
}

/// Writes `line` to stderr unbuffered, adding a newline if it lacks one.
public func printError(_ line: String) {
    var text = line
    if !text.hasSuffix("\n") { text += "\n" }
    writeStandardError(text)
}

/// Unbuffered write to fd 2 (the C `stderr` global is not concurrency-safe in Swift 6).
public func writeStandardError(_ text: String) {
    writeUnbuffered(text, to: STDERR_FILENO)
}

/// Writes all of `text` straight to a file descriptor, so it reaches a pipe at once; a failed or
/// closed descriptor ends the write silently (there is nowhere left to report it).
public func writeUnbuffered(_ text: String, to descriptor: Int32) {
    var text = text
    text.withUTF8 { bytes in
        var offset = 0
        while offset < bytes.count {
            let written = write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
            if written <= 0 { return }
            offset += written
        }
    }
}

/// Writes a line to stderr unless quiet: logs and warnings never touch stdout.
public func log(_ line: String, options: CommonOptions) {
    if !options.quiet && !options.json { printError(line) }
}

/// Writes a warning to stderr unless --quiet (with --json too: stdout stays one document).
public func warn(_ line: String, options: CommonOptions) {
    if !options.quiet { printError(line) }
}

/// The version of the `--json` documents (docs/json.md); raised when a key changes meaning or goes away.
public let jsonSchemaVersion = 1

/// One chunk of an evaluation done: on a terminal the progress line moves (with `line` as its
/// item); elsewhere `line` is logged, as llama-perplexity logs each pass.
public func reportChunk(_ step: String, _ chunk: Int, of total: Int, _ line: String, options: CommonOptions) {
    if options.showsProgress && !options.json {
        WorkProgress.report(step, done: chunk, total: total, item: line)
    } else {
        log(line, options: options)
    }
}

/// Prints the JSON document of `--json`: sorted keys, two-space indent, trailing newline; every
/// document carries `schema_version` and `program` (docs/json.md lists each program's keys).
public func printJSON(_ value: JSONValue) {
    var document = value
    if case .object(var members) = value {
        let program = CommandLine.arguments.first.map { FileSystem.split($0).name } ?? "ckpt"
        members += [("schema_version", JSONValue(jsonSchemaVersion)), ("program", .string(program))]
        document = .object(members)
    }
    print(document.serialized(style: .pretty, sortKeys: true))
}

/// A progress line redrawn in place on a terminal's stderr: step, bar, done/total, rate, ETA and
/// the item at hand. It appears only once a step has run for a second (short work stays quiet),
/// redraws at most ten times a second, and erases itself when the step ends.
public final class ProgressLine: Sendable {
    struct State {
        var step = ""
        var started = 0.0
        var lastDraw = -1.0
        var drawn = false
    }

    let clock = Stopwatch()
    let state = LockedValue(State())
    /// Seconds a step runs before its line appears: 1, or `CKPT_PROGRESS_AFTER` (the tests set 0).
    let delay: Double

    /// A line with nothing drawn yet.
    public init() {
        delay = getenv("CKPT_PROGRESS_AFTER").flatMap { Double(String(cString: $0)) } ?? 1
    }

    /// Notes that `done` of `total` items of `step` are finished, redrawing when it is time.
    public func update(step: String, done: Int, total: Int, item: String) {
        let now = clock.seconds
        state.withLock { s in
            if s.step != step {
                if s.drawn { writeStandardError("\r\u{1B}[K") }
                s = State(step: step, started: now)
            }
            if done >= total {
                if s.drawn { writeStandardError("\r\u{1B}[K") }
                s.drawn = false
                return
            }
            let elapsed = now - s.started
            guard elapsed >= delay, now - s.lastDraw >= 0.1, done > 0 else { return }
            s.lastDraw = now
            s.drawn = true
            writeStandardError("\r\u{1B}[K" + Self.render(step: step, done: done, total: total, elapsed: elapsed, item: item))
        }
    }

    /// Erases the line, so what follows starts on a clean one.
    public func finish() {
        state.withLock { s in
            if s.drawn { writeStandardError("\r\u{1B}[K") }
            s.drawn = false
        }
    }

    /// `quantizing ████████······ 120/210  41.3/s  ETA 2 s  model.layers.3.mlp.up_proj.weight`
    static func render(step: String, done: Int, total: Int, elapsed: Double, item: String) -> String {
        let width = 20
        let filled = total > 0 ? min(width, width * done / total) : width
        let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
        let rate = Double(done) / max(elapsed, 1e-9)
        let remaining = Double(total - done) / max(rate, 1e-9)
        let eta = remaining < 90 ? "\(Int(remaining.rounded(.up))) s" : "\(Int((remaining / 60).rounded(.up))) min"
        let rateText = rate >= 10 ? formatDecimal(rate, places: 0) : formatDecimal(rate, places: 2)
        return "\(step) \(bar) \(done)/\(total)  \(rateText)/s  ETA \(eta)  \(item.suffix(48))"
    }
}

/// Parses sizes such as `5GB`, `500MB`, `2GiB` or a plain byte count, as transformers'
/// `max_shard_size` does (GB = 10^9, GiB = 2^30).
public func parseByteSize(_ text: String) -> Int? {
    let trimmed = String(text.trimmingCharacters(in: " "))
    let units: [(String, Double)] = [
        ("KIB", 1024), ("MIB", 1024 * 1024), ("GIB", 1024 * 1024 * 1024), ("TIB", 1024 * 1024 * 1024 * 1024),
        ("KB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12), ("K", 1e3), ("M", 1e6), ("G", 1e9), ("B", 1),
    ]
    let upper = trimmed.uppercased()
    for (suffix, factor) in units where upper.hasSuffix(suffix) {
        guard let number = Double(upper.dropLast(suffix.count)), number > 0 else { return nil }
        let bytes = number * factor
        return bytes < 9e18 ? Int(bytes) : nil
    }
    guard let plain = Int(trimmed), plain > 0 else { return nil }
    return plain
}

/// "1.5 MB" style, decimal units as `ls -h --si` and the Hub show sizes.
public func formatBytes(_ bytes: Int) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"]
    var value = Double(bytes)
    var unit = 0
    while value >= 1000 && unit < units.count - 1 {
        value /= 1000
        unit += 1
    }
    return unit == 0 ? "\(bytes) B" : "\(formatDecimal(value, places: value < 10 ? 2 : 1)) \(units[unit])"
}

/// Bytes an output takes on disk: the file, or every file in the folder (what `du --apparent-size` counts).
public func onDiskBytes(_ output: String) -> Int {
    guard FileSystem.isDirectory(output) else { return FileSystem.fileSize(output) ?? 0 }
    return FileSystem.list(output).reduce(0) { $0 + (FileSystem.fileSize(FileSystem.join(output, $1)) ?? 0) }
}

/// Thousands separators: 1234567 → "1,234,567".
public func formatCount(_ n: Int) -> String {
    let digits = String(n.magnitude)
    var out = ""
    for (i, c) in digits.enumerated() {
        if i > 0 && (digits.count - i) % 3 == 0 { out += "," }
        out.append(c)
    }
    return n < 0 ? "-" + out : out
}

/// A plain text table: columns padded to their widest cell, numbers right-aligned.
public struct TextTable {
    /// Column titles; they also set the minimum column widths.
    public var headers: [String]
    /// Indices of the columns to right-align (numbers).
    public var rightAligned: Set<Int>
    /// Body rows in order; a row may not have more cells than `headers`.
    public var rows: [[String]] = []

    /// An empty table with these columns.
    public init(headers: [String], rightAligned: Set<Int> = []) {
        self.headers = headers
        self.rightAligned = rightAligned
    }

    /// Appends a row (no more cells than `headers`).
    public mutating func add(_ row: [String]) { rows.append(row) }

    /// Header and rows joined by newlines (none trailing), columns two spaces apart, the last left-aligned one unpadded.
    public func render() -> String {
        var widths = headers.map(\.count)
        for row in rows {
            for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) }
        }
        func line(_ cells: [String]) -> String {
            var parts: [String] = []
            for (i, cell) in cells.enumerated() {
                let pad = String(repeating: " ", count: max(0, widths[i] - cell.count))
                parts.append(rightAligned.contains(i) ? pad + cell : (i == cells.count - 1 ? cell : cell + pad))
            }
            return parts.joined(separator: "  ")
        }
        return ([line(headers)] + rows.map(line)).joined(separator: "\n")
    }
}


/// Parses f32 / f16 / bf16 (and their torch spellings).
public func parseFloatType(_ text: String) -> DType? {
    switch text.lowercased() {
    case "f32", "float32", "fp32": return .f32
    case "f16", "float16", "fp16", "half": return .f16
    case "bf16", "bfloat16": return .bf16
    default: return nil
    }
}

/// JSON of an error measurement; non-finite values (a perfect SNR) become null.
public func metricsJSON(_ m: ErrorMetrics) -> JSONValue {
    func number(_ d: Double) -> JSONValue { d.isFinite ? .double(d) : .null }
    return ["rmse": number(m.rmse), "max_abs_error": number(m.maxAbsError), "snr_db": number(m.snrDB), "cosine": number(m.cosine),
            "elements": JSONValue(m.count)]
}

/// "42.1" dB, or "inf" for an exact match.
public func formatDecibels(_ d: Double) -> String { d.isFinite ? formatDecimal(d, places: 1) : (d > 0 ? "inf" : "-inf") }

/// glibc's mallopt (malloc.h is not part of the Glibc module).
@_silgen_name("mallopt")
func glibcMallopt(_ parameter: Int32, _ value: Int32) -> Int32

/// Keeps large freed blocks in the process for the next allocation of their size, as the
/// evaluation programs want: each chunk allocates the same scratch and logits (~75 MB at 135M),
/// and glibc would otherwise map them afresh, so every chunk paid page faults and the kernel's
/// zeroing on one thread. Peak memory is unchanged (the same blocks are reused).
public func reuseLargeAllocations() {
    ProcessMemory.reuseLargeAllocations()
}

/// Makes every thread allocate from one arena, so that blocks kept by `reuseLargeAllocations` are
/// kept once for the process, not once per worker (see `ProcessMemory.shareOneArena`).
public func shareOneAllocatorArena() {
    ProcessMemory.shareOneArena()
}

