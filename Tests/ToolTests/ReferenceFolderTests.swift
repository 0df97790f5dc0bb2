import CheckpointKit
import Foundation
import TestSupport
import Testing

/// fixtures/models/tiny-llama-bnb-nf4 was written by transformers 5.24 + bitsandbytes 0.50.2
/// (`BitsAndBytesConfig(load_in_4bit, nf4, double quant)` + `save_pretrained`), and
/// tiny-llama-ct-int8 by the compressed-tensors reference in tools/make_quant_goldens.py.

@Test("ckpt-quantize nf4 --double-quant writes the very files transformers + bitsandbytes write")
func nf4MatchesTransformersFolder() throws {
    let scratch = ScratchDirectory()
    let result = try Tools.run("ckpt-quantize", [Tools.fixture("models/tiny-llama"), scratch.file("nf4"), "--scheme", "nf4",
                                                 "--double-quant", "--quiet", "--json"])
    #expect(result.status == 0, "\(result.stderr)")
    for name in ["model.safetensors", "config.json"] {
        #expect(FileManager.default.contents(atPath: scratch.file("nf4/" + name))
            == FileManager.default.contents(atPath: Tools.fixture("models/tiny-llama-bnb-nf4/" + name)), "\(name)")
    }
}

@Test("ckpt-quantize int8 writes the reference compressed-tensors tensors byte for byte")
func int8MatchesReferenceFolder() throws {
    let scratch = ScratchDirectory()
    #expect(try Tools.run("ckpt-quantize", [Tools.fixture("models/tiny-llama"), scratch.file("int8"), "--scheme", "int8", "--quiet"]).status == 0)
    #expect(FileManager.default.contents(atPath: scratch.file("int8/model.safetensors"))
        == FileManager.default.contents(atPath: Tools.fixture("models/tiny-llama-ct-int8/model.safetensors")))
}

@Test("A folder written by transformers + bitsandbytes is read, inspected and dequantized")
func readsTransformersFolder() throws {
    let folder = Tools.fixture("models/tiny-llama-bnb-nf4")
    let inspect = try parseJSONObject(try Tools.run("ckpt-inspect", [folder, "--json"]).stdout)
    #expect(inspect["quantization"] as? String == "bitsandbytes nf4 (double quant)")
    let scratch = ScratchDirectory()
    let result = try Tools.run("ckpt-dequantize", [folder, scratch.file("bf16"), "--json"])
    #expect(result.status == 0, "\(result.stderr)")
    #expect((try parseJSONObject(result.stdout)["tensors"] as? [Any])?.count == 28)
    // Against the original bf16 weights, the error is NF4's, not a layout mistake.
    let diff = try parseJSONObject(try Tools.run("ckpt-diff", [Tools.fixture("models/tiny-llama"), scratch.file("bf16"), "--json"]).stdout)
    let rows = try #require(diff["tensors"] as? [[String: Any]])
    let projections = rows.filter { ($0["name"] as? String)?.contains("proj") == true }
    #expect(projections.count == 28)
    #expect(projections.allSatisfy { (($0["metrics"] as? [String: Any])?["snr_db"] as? Double ?? 0) > 19 })
    let norms = rows.filter { ($0["name"] as? String)?.contains("norm") == true }
    #expect(norms.allSatisfy { (($0["metrics"] as? [String: Any])?["max_abs_error"] as? Double) == 0 })
}

/// fixtures/quant/load_check.json is written by tools/check_quantized_loads.py after loading
/// ckpt's own NF4 and int8 folders in transformers (bitsandbytes, compressed-tensors). Today's
/// output must be those very files, or the check no longer speaks for it.
@Test("Today's NF4 and int8 folders are the ones transformers was shown to load", arguments: [
    ("nf4", ["--scheme", "nf4", "--double-quant"]), ("int8", ["--scheme", "int8"]),
])
func loadCheckCoversCurrentOutput(scheme: String, arguments: [String]) throws {
    let record = try #require(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Tools.fixture("quant/load_check.json")))) as? [String: Any])
    #expect(record["all_checks_passed"] as? Bool == true)
    let files = try #require((record[scheme] as? [String: Any])?["files"] as? [String: String])
    let scratch = ScratchDirectory()
    #expect(try Tools.run("ckpt-quantize", [Tools.fixture("models/tiny-llama"), scratch.file("out"), "--quiet", "--json"] + arguments).status == 0)
    for (name, expected) in files {
        let bytes = try #require(FileManager.default.contents(atPath: scratch.file("out/" + name)))
        #expect(sha256Hex([UInt8](bytes)) == expected, "\(scheme)/\(name)")
    }
}
