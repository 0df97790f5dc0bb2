import CheckpointKit
import Foundation
import TestSupport
import Testing

private let tinyLlama = Tools.fixture("models/tiny-llama")
private let tinyNF4 = Tools.fixture("models/tiny-llama-bnb-nf4")
private let evalText = Tools.fixture("text/eval.txt")

/// Runs `program` with `arguments` and saves its --json stdout as `name` in `scratch`.
private func piece(_ scratch: ScratchDirectory, _ name: String, _ program: String, _ arguments: [String]) throws -> String {
    let result = try Tools.run(program, arguments + ["--json"])
    #expect(result.status == 0, "\(result.stderr)")
    let path = scratch.file(name)
    try result.stdout.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

@Test("Perplexity split into three --chunk-range pieces and combined equals the single run to the last bit")
func perplexityPiecesCombineExactly() throws {
    let scratch = ScratchDirectory()
    let common = [tinyLlama, "--text", evalText, "--ctx", "128", "--chunks", "9"]
    let whole = try parseJSONObject(try Tools.run("ckpt-perplexity", common + ["--json"]).stdout)
    let pieces = try ["0:2", "2:7", "7:9"].map { try piece(scratch, "p\($0).json", "ckpt-perplexity", common + ["--chunk-range", $0]) }
    let combined = try Tools.run("ckpt-perplexity", ["--combine", pieces[2], pieces[0], pieces[1], "--json"])
    #expect(combined.status == 0, "\(combined.stderr)")
    let doc = try parseJSONObject(combined.stdout)
    #expect(doc["perplexity"] as? Double == whole["perplexity"] as? Double)
    #expect(doc["standard_error"] as? Double == whole["standard_error"] as? Double)
    #expect(doc["scored_tokens"] as? Int == whole["scored_tokens"] as? Int)
    #expect(doc["per_chunk_perplexity"] as? [Double] == whole["per_chunk_perplexity"] as? [Double])
    let text = try Tools.run("ckpt-perplexity", ["--combine"] + pieces)
    let single = try Tools.run("ckpt-perplexity", common)
    #expect(text.stdout.components(separatedBy: " (")[0] == single.stdout.components(separatedBy: " (")[0])
}

@Test("KL divergence split into pieces with --piece files and combined equals the single run to the last bit")
func comparePiecesCombineExactly() throws {
    let scratch = ScratchDirectory()
    let common = [tinyLlama, tinyNF4, "--text", evalText, "--ctx", "128", "--chunks", "5"]
    let whole = try parseJSONObject(try Tools.run("ckpt-compare", common + ["--json"]).stdout)
    let first = try piece(scratch, "a.json", "ckpt-compare", common + ["--chunk-range", "0:3", "--piece", scratch.file("a.kl")])
    let second = try piece(scratch, "b.json", "ckpt-compare", common + ["--chunk-range", "3:5", "--piece", scratch.file("b.kl")])
    let combined = try Tools.run("ckpt-compare", ["--combine", first, second, "--json"])
    #expect(combined.status == 0, "\(combined.stderr)")
    let doc = try parseJSONObject(combined.stdout)
    for key in ["kld", "delta_p"] {
        #expect(NSDictionary(dictionary: doc[key] as? [String: Any] ?? [:]) == NSDictionary(dictionary: whole[key] as? [String: Any] ?? [:]), "\(key)")
    }
    for key in ["ppl_base", "ppl_candidate", "ppl_base_stderr", "same_top_rate", "mean_ln_ppl_ratio"] {
        #expect(doc[key] as? Double == whole[key] as? Double, "\(key)")
    }
}

@Test("--combine refuses pieces of different models, contexts or texts (naming the field), gaps and overlaps")
func combineRefusesMismatchedPieces() throws {
    let scratch = ScratchDirectory()
    let text = [evalText, "--chunks", "6"]
    let a = try piece(scratch, "a.json", "ckpt-perplexity", [tinyLlama, "--text"] + text + ["--ctx", "128", "--chunk-range", "0:3"])
    let b = try piece(scratch, "b.json", "ckpt-perplexity", [tinyLlama, "--text"] + text + ["--ctx", "128", "--chunk-range", "3:6"])
    let otherModel = try piece(scratch, "m.json", "ckpt-perplexity", [tinyNF4, "--text"] + text + ["--ctx", "128", "--chunk-range", "3:6"])
    let otherContext = try piece(scratch, "c.json", "ckpt-perplexity", [tinyLlama, "--text"] + text + ["--ctx", "64", "--chunk-range", "3:6"])
    let overlap = try piece(scratch, "o.json", "ckpt-perplexity", [tinyLlama, "--text"] + text + ["--ctx", "128", "--chunk-range", "2:6"])
    let cases: [([String], String)] = [
        ([a, otherModel], "\(otherModel): model_fingerprint differs from \(a)'s"),
        ([a, otherContext], "\(otherContext): ctx differs from \(a)'s (expected 128, got 64)"),
        ([a], "--combine: chunks 3..<6 are in no piece (expected pieces covering 0..<6)"),
        ([a, overlap], "--combine: \(overlap) covers chunk 2, which an earlier piece covers too"),
        ([a, tinyLlama + "/config.json"], "\(tinyLlama)/config.json: not a piece of a split run"),
    ]
    for (files, message) in cases {
        let result = try Tools.run("ckpt-perplexity", ["--combine"] + files)
        #expect(result.status == 1, "\(files)")
        #expect(result.stderr.contains(message), "\(result.stderr)")
    }
    #expect(try Tools.run("ckpt-perplexity", ["--combine", a, b]).status == 0)
}

@Test("A --chunk-range outside the text is refused with the chunks it has; a malformed one is a usage error")
func chunkRangeOutsideTheText() throws {
    let outside = try Tools.run("ckpt-perplexity", [tinyLlama, "--text", evalText, "--ctx", "128", "--chunk-range", "160:170"])
    #expect(outside.status == 1)
    #expect(outside.stderr.contains("--chunk-range 160:170 is outside the text's 167 chunks of 128"))
    for bad in ["5", "3:3", "4:2", "-1:2", "a:b"] {
        #expect(try Tools.run("ckpt-perplexity", [tinyLlama, "--text", evalText, "--chunk-range", bad]).status == 64, "\(bad)")
    }
    let noPiece = try Tools.run("ckpt-compare", [tinyLlama, tinyNF4, "--text", evalText, "--chunk-range", "0:1", "--json"])
    #expect(noPiece.status == 64)
    #expect(noPiece.stderr.contains("--chunk-range needs --piece FILE and --json"))
}
