import Foundation
import TestSupport
import Testing

/// docs/json.md: each program's table of top-level keys, `optional` ones marked.
private func documentedKeys() throws -> [String: (required: Set<String>, optional: Set<String>)] {
    let text = try String(contentsOfFile: Tools.repository + "/docs/json.md", encoding: .utf8)
    var sections: [String: (required: Set<String>, optional: Set<String>)] = [:]
    var current: String?
    for line in text.split(separator: "\n") {
        if line.hasPrefix("## ") {
            current = line.dropFirst(3) == "Every program" ? "*" : String(line.dropFirst(3))
            continue
        }
        guard let current, line.hasPrefix("| `") else { continue }
        let key = String(line.dropFirst(3).prefix { $0 != "`" })
        if line.contains("*optional*") { sections[current, default: ([], [])].optional.insert(key) }
        else { sections[current, default: ([], [])].required.insert(key) }
    }
    return sections
}

/// Runs one program with --json and returns its top-level keys.
private func topLevelKeys(_ program: String, _ arguments: [String]) throws -> Set<String> {
    let run = try Tools.run(program, arguments + ["--json"])
    #expect(run.status == 0 || run.status == 3, "\(program): \(run.stderr)")
    let document = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
    #expect(document["schema_version"] as? Int == 1)
    #expect(document["program"] as? String == program)
    return Set(document.keys)
}

@Test("Every program's --json document has exactly the keys docs/json.md lists for it")
func jsonDocumentsMatchTheSchema() throws {
    let scratch = ScratchDirectory()
    let model = Tools.fixture("models/tiny-llama"), text = Tools.fixture("text/eval.txt")
    let runs: [(String, [String], optionalUsed: Set<String>)] = [
        ("ckpt-inspect", [model, "--verify"], ["verified"]),
        ("ckpt-convert", [model, scratch.file("f32"), "--type", "f32"], []),
        ("ckpt-quantize", [model, scratch.file("nf4"), "--scheme", "nf4"], []),
        ("ckpt-dequantize", [scratch.file("nf4"), scratch.file("back")], []),
        ("ckpt-diff", [model, scratch.file("nf4")], []),
        ("ckpt-merge-lora", [model, Tools.fixture("lora/adapters/llama-lora-all-linear"), scratch.file("merged")], []),
        ("ckpt-perplexity", [model, "--text", text, "--ctx", "128", "--chunks", "2"], []),
        ("ckpt-compare", [model, scratch.file("nf4"), "--text", text, "--ctx", "128", "--chunks", "2"], []),
    ]
    let schema = try documentedKeys()
    let common = try #require(schema["*"]).required
    #expect(common == ["schema_version", "program"])
    for (program, arguments, optionalUsed) in runs {
        let documented = try #require(schema[program], "docs/json.md has no section for \(program)")
        let keys = try topLevelKeys(program, arguments)
        #expect(keys.subtracting(documented.required.union(documented.optional).union(common)).isEmpty,
                "\(program) prints keys docs/json.md does not list")
        #expect(documented.required.union(common).union(optionalUsed).subtracting(keys).isEmpty,
                "\(program) lacks keys docs/json.md lists: \(documented.required.union(common).subtracting(keys).sorted())")
    }
    // ckpt-convert given a PEFT adapter and --base prints its own document.
    let adapter = try #require(schema["ckpt-convert, adapter in"])
    let keys = try topLevelKeys("ckpt-convert", [Tools.fixture("lora/adapters/llama-lora-all-linear"), scratch.file("lora.gguf"), "--base", model])
    #expect(keys == adapter.required.union(common), "ckpt-convert (adapter in): \(keys.symmetricDifference(adapter.required.union(common)).sorted())")
}
