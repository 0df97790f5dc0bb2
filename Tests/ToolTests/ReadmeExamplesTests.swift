import Foundation
import TestSupport
import Testing

/// One `$ ckpt-…` line of a README code block and the output printed under it.
private struct ReadmeExample {
    var line: Int
    var command: [String]
    var expected: [String]
}

/// The README's examples that run on the bundled fixtures: every `$ ckpt-…` command whose paths
/// are all under fixtures/ or /tmp/ (the others name files a user brings).
private func runnableExamples() throws -> [ReadmeExample] {
    let text = try String(contentsOfFile: Tools.repository + "/README.md", encoding: .utf8)
    var examples: [ReadmeExample] = []
    var inBlock = false
    for (number, raw) in text.components(separatedBy: "\n").enumerated() {
        let line = String(raw)
        if line.hasPrefix("```") { inBlock.toggle(); continue }
        guard inBlock else { continue }
        if line.hasPrefix("$ ckpt-") {
            let command = line.dropFirst(2).split(separator: "#", maxSplits: 1)[0].split(separator: " ").map(String.init)
            examples.append(ReadmeExample(line: number + 1, command: command, expected: []))
        } else if line.hasPrefix("$ ") {
            examples.append(ReadmeExample(line: number + 1, command: [], expected: []))
        } else if !examples.isEmpty {
            examples[examples.count - 1].expected.append(line)
        }
    }
    return examples.filter { example in
        !example.command.isEmpty && example.command.dropFirst().allSatisfy { argument in
            argument.hasPrefix("-") || argument.hasPrefix("fixtures/") || argument.hasPrefix("/tmp/") || Double(argument) != nil
                || ["nf4", "fp4", "int8", "f32", "f16", "bf16", "q8_0", "q4_0", "gguf", "safetensors"].contains(argument)
                || argument.hasSuffix("KB") || argument.hasSuffix("MB")
        }
    }
}

/// Timings and rates vary from run to run: `0.14 s` becomes `# s`, and a table's trailing
/// milliseconds column (`ms`) is dropped.
private func normalized(_ line: String, dropLastColumn: Bool) -> String {
    var text = line.replacingOccurrences(of: #"\d+(\.\d+)? s\b"#, with: "# s", options: .regularExpression)
    if dropLastColumn { text = text.replacingOccurrences(of: #"\s+\S+$"#, with: "", options: .regularExpression) }
    return text.trimmingCharacters(in: .whitespaces)
}

@Test("Every README example that runs on the fixtures prints what the README shows (timings aside)")
func readmeExamplesRunAsShown() throws {
    let scratch = ScratchDirectory()
    let examples = try runnableExamples()
    #expect(examples.count >= 8, "the README's fixture examples were not found")
    for example in examples {
        let arguments = example.command.dropFirst().map { $0.replacingOccurrences(of: "/tmp/", with: scratch.path + "/") }
            .map { $0.hasPrefix("fixtures/") ? Tools.fixture(String($0.dropFirst("fixtures/".count))) : $0 }
        let run = try Tools.run(example.command[0], arguments)
        #expect(run.status == 0 || run.status == 3, "README line \(example.line): \(run.stderr)")
        let output = (run.stdout.components(separatedBy: "\n"))
            .map { $0.replacingOccurrences(of: scratch.path + "/", with: "/tmp/").replacingOccurrences(of: Tools.repository + "/", with: "") }
        let hasMilliseconds = output.first?.hasSuffix(" ms") ?? false
        let actual = output.map { normalized($0, dropLastColumn: hasMilliseconds && !$0.hasPrefix("wrote")) }
        // Each shown line appears in the output, in order; "…" stands for lines left out.
        var position = 0
        for shown in example.expected where shown != "…" && !shown.isEmpty {
            let wanted = normalized(shown, dropLastColumn: hasMilliseconds && !shown.hasPrefix("wrote"))
            guard let found = actual[position...].firstIndex(of: wanted) else {
                Issue.record("README line \(example.line) (\(example.command.joined(separator: " "))): not printed: \(shown)\nactual:\n\(output.joined(separator: "\n"))")
                break
            }
            position = found + 1
        }
    }
}
