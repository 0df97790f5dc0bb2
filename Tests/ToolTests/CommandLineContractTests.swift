import CheckpointKit
import Foundation
import TestSupport
import Testing

private let programs = ["ckpt-inspect", "ckpt-convert", "ckpt-quantize", "ckpt-dequantize", "ckpt-diff", "ckpt-merge-lora",
                        "ckpt-perplexity", "ckpt-compare", "ckpt-imatrix"]

@Test("Every program prints its version for --version and exits 0", arguments: programs)
func versionFlag(program: String) throws {
    let run = try Tools.run(program, ["--version"])
    #expect(run.status == 0)
    #expect(run.stdout == "0.7.0\n")
}

@Test("Every program prints its usage for --help and -h on stdout and exits 0", arguments: programs)
func helpFlag(program: String) throws {
    for flag in ["--help", "-h"] {
        let run = try Tools.run(program, [flag])
        #expect(run.status == 0)
        #expect(run.stdout.hasPrefix("OVERVIEW: "))
        #expect(run.stdout.contains("USAGE: \(program) "))
        #expect(run.stdout.contains("--json"))
        #expect(run.stderr.isEmpty)
    }
}

@Test("A mistyped option is one line naming the closest real one, exit 64", arguments: programs)
func typoSuggestsTheClosestOption(program: String) throws {
    let run = try Tools.run(program, ["a", "b", "--jsno"])
    #expect(run.status == 64)
    #expect(run.stderr == "error: unknown option --jsno (did you mean --json?); see \(program) --help\n")
    #expect(run.stdout.isEmpty)
}

@Test("A missing argument is one line with exit 64, the help pointed to", arguments: programs)
func missingArgumentIsOneLine(program: String) throws {
    let run = try Tools.run(program, [])
    #expect(run.status == 64)
    #expect(run.stderr.hasPrefix("error: missing expected argument"))
    #expect(run.stderr.hasSuffix("; see \(program) --help\n"))
    #expect(run.stderr.split(separator: "\n").count == 1)
}

@Test("ckpt-quantize --schme nf4 is reported as the typo it is, not as a missing --scheme")
func quantizeSchemeTypo() throws {
    let run = try Tools.run("ckpt-quantize", [Tools.fixture("models/tiny-llama"), "/nonexistent/out", "--schme", "nf4"])
    #expect(run.status == 64)
    #expect(run.stderr == "error: unknown option --schme (did you mean --scheme?); see ckpt-quantize --help\n")
}

@Test("The output's name picks the format: out.gguf is written as GGUF without --to")
func ggufByName() throws {
    let scratch = ScratchDirectory()
    let run = try Tools.run("ckpt-convert", [Tools.fixture("models/tiny-llama"), scratch.file("tiny.gguf"), "--type", "q8_0"])
    #expect(run.status == 0, "\(run.stderr)")
    #expect(try GGUFFile(path: scratch.file("tiny.gguf")).info(named: "blk.0.ffn_up.weight")?.type == .q8_0)
}

@Test("Flags that contradict the output format are usage errors, one line, exit 64, nothing written",
      arguments: [
        (["--to", "safetensors"], "out.gguf", "--to safetensors contradicts the output name"),
        (["--type", "q8_0"], "out", "--type q8_0 is a GGUF type, but"),
        (["--shard-size", "1MB"], "out.gguf", "--shard-size applies to safetensors output"),
        (["--to", "gguf", "--shard-size", "1MB"], "out", "--shard-size applies to safetensors output"),
      ])
func contradictionsAreUsageErrors(flags: [String], output: String, message: String) throws {
    let scratch = ScratchDirectory()
    let run = try Tools.run("ckpt-convert", [Tools.fixture("models/tiny-llama"), scratch.file(output)] + flags)
    #expect(run.status == 64)
    #expect(run.stderr.hasPrefix("error: " + message))
    #expect(run.stderr.split(separator: "\n").count == 1)
    #expect(scratch.contents.isEmpty)
}

@Test("Every flag acts or is refused: --scale-dtype with nf4, and --text, --ctx or --chunks beside --base, are usage errors",
      arguments: [
        ("ckpt-quantize", [Tools.fixture("models/tiny-llama"), "/nonexistent/out", "--scheme", "nf4", "--scale-dtype", "f16"],
         "--scale-dtype applies to int8 only"),
        ("ckpt-compare", [Tools.fixture("models/tiny-llama"), "--base", "/nonexistent/base.safetensors", "--ctx", "64"],
         "--ctx cannot be combined with --base"),
        ("ckpt-compare", [Tools.fixture("models/tiny-llama"), "--base", "/nonexistent/base.safetensors", "--text", "/x.txt"],
         "--text cannot be combined with --base"),
      ])
func flagsThatCannotActAreRefused(program: String, arguments: [String], message: String) throws {
    let run = try Tools.run(program, arguments)
    #expect(run.status == 64)
    #expect(run.stderr.hasPrefix("error: " + message))
    #expect(run.stderr.split(separator: "\n").count == 1)
}

@Test("ckpt-diff of two models with no tensor in common fails its gate (exit 3) instead of reporting a perfect match")
func diffWithNothingInCommon() throws {
    let scratch = ScratchDirectory()
    writeSmallSafetensors(scratch.file("small.safetensors"))
    let run = try Tools.run("ckpt-diff", [Tools.fixture("models/tiny-llama"), scratch.file("small.safetensors")])
    #expect(run.status == 3)
    #expect(run.stdout.contains("no tensors compared"))
    #expect(run.stderr.hasPrefix("gate failed: no tensor of "))
}

@Test("--ctx beyond the model's max_position_embeddings runs, with a warning that says so")
func contextBeyondTheModelIsWarned() throws {
    let run = try Tools.run("ckpt-perplexity", [Tools.fixture("models/tiny-llama"), "--text", Tools.fixture("text/eval.txt"),
                                                "--ctx", "1024", "--chunks", "1"])
    #expect(run.status == 0, "\(run.stderr)")
    #expect(run.stderr.contains("warning: --ctx 1024 is beyond "))
    #expect(run.stderr.contains("max_position_embeddings 512"))
}

@Test("ckpt-merge-lora --dry-run needs no output: it prints the plan and writes nothing")
func dryRunWithoutOutput() throws {
    let run = try Tools.run("ckpt-merge-lora", [Tools.fixture("models/tiny-llama"), Tools.fixture("lora/adapters/llama-lora-all-linear"),
                                                "--dry-run", "--json"])
    #expect(run.status == 0, "\(run.stderr)")
    let document = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
    #expect(document["dry_run"] as? Bool == true)
    #expect(((document["tensors"] as? [Any])?.count ?? 0) > 0)
    let without = try Tools.run("ckpt-merge-lora", [Tools.fixture("models/tiny-llama"), Tools.fixture("lora/adapters/llama-lora-all-linear")])
    #expect(without.status == 64)
    #expect(without.stderr.hasPrefix("error: missing expected argument '<output>'"))
}

/// Runs `command` (a shell line) under a pseudo-terminal with `script`, returning all it printed.
private func onTerminal(_ command: String) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/script")
    process.arguments = ["-qec", command, "/dev/null"]
    let out = Pipe()
    process.standardOutput = out
    process.standardError = out
    try process.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return String(decoding: data, as: UTF8.self)
}

@Test("On a terminal a progress line shows done/total, rate and ETA; on a pipe or with --quiet there is none",
      .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/script"), "script(1) from bsdutils is absent"))
func progressLineOnlyOnATerminal() throws {
    let run = "CKPT_PROGRESS_AFTER=0 '\(Tools.binDirectory)/ckpt-perplexity' '\(Tools.fixture("models/tiny-llama"))' "
        + "--text '\(Tools.fixture("text/eval.txt"))' --ctx 64 --chunks 6 --threads 1"
    let terminal = try onTerminal(run)
    #expect(terminal.contains("\r\u{1B}[Kperplexity "))
    #expect(terminal.contains("/6  ") && terminal.contains("ETA "))
    let quiet = try onTerminal(run + " --quiet")
    #expect(!quiet.contains("\u{1B}[K"))
    let piped = try Tools.run("ckpt-perplexity", [Tools.fixture("models/tiny-llama"), "--text", Tools.fixture("text/eval.txt"),
                                                  "--ctx", "64", "--chunks", "6"], environment: ["CKPT_PROGRESS_AFTER": "0"])
    #expect(!piped.stderr.contains("\u{1B}[K"))
    #expect(piped.stderr.contains("[6/6] ppl "))
}

@Test("A malformed --include or --exclude regex is a usage error (64), not a run-time failure")
func badRegexIsAUsageError() throws {
    for flag in ["--include", "--exclude"] {
        let run = try Tools.run("ckpt-quantize", [Tools.fixture("models/tiny-llama"), "/nonexistent/out", "--scheme", "int8", flag, "(unclosed"])
        #expect(run.status == 64)
        #expect(run.stderr.hasPrefix("error: \(flag) (unclosed: not a valid regular expression"))
    }
}
