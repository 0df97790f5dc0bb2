@testable import CheckpointKit
import Foundation
import Testing
import TestSupport

/// Shared public assets (`../shared/assets/tokenizers`, see its README): real tokenizers and the
/// ids their reference implementations give. Absent on a fresh clone; tests then skip, saying so.
enum TokenizerAssets {
    static let folder = Paths.sharedAssets + "/tokenizers"
    static let corpora = Paths.sharedAssets + "/corpora"
    static var available: Bool { FileManager.default.fileExists(atPath: folder + "/gpt2_tokenizer.json") }
    static let skipReason: Comment = "../shared/assets/tokenizers is absent (the shared public assets are not checked out)"

    static func path(_ name: String) -> String { folder + "/" + name }

    nonisolated(unsafe) private static var loaded: [String: Tokenizer] = [:]
    private static let lock = NSLock()

    /// Each tokenizer is parsed once per test run.
    static func tokenizer(_ name: String) throws -> Tokenizer {
        lock.lock()
        defer { lock.unlock() }
        if let t = loaded[name] { return t }
        let t = try Tokenizer(path: name.hasPrefix("/") ? name : path(name))
        loaded[name] = t
        return t
    }
}

/// The texts and ids of a llama.cpp vocabulary test (`models/ggml-vocab-*.gguf.inp/.out`):
/// inputs separated by `\n__ggml_vocab_test__\n`, one line of ids per input. The ids were made by
/// `tokenizers` with `add_special_tokens=False` (llama.cpp's `convert_hf_to_gguf_update.py`),
/// so they carry no BOS.
func llamaCppVocabularyCases(_ name: String) throws -> [(text: String, ids: [Int])] {
    let input = try String(contentsOfFile: TokenizerAssets.path(name + ".inp"), encoding: .utf8)
    let output = try String(contentsOfFile: TokenizerAssets.path(name + ".out"), encoding: .utf8)
    var texts = input.components(separatedBy: "\n__ggml_vocab_test__\n")
    if texts.last == "" { texts.removeLast() }
    let lines = output.split(separator: "\n", omittingEmptySubsequences: false).map {
        $0.split(separator: " ").map { Int($0)! }
    }
    #expect(lines.count >= texts.count)
    return texts.enumerated().map { ($1, lines[$0]) }
}

@Suite("Tokenizer goldens", .enabled(if: TokenizerAssets.available, TokenizerAssets.skipReason))
struct TokenizerGoldenTests {
    @Test("GPT-2 encodes the swift-transformers sample as tokenizers does, without BOS, and decodes it back")
    func gpt2Sample() throws {
        let tokenizer = try Tokenizer(json: readJSON(TokenizerAssets.path("gpt2_tokenizer.json")),
                                      config: readJSON(TokenizerAssets.path("gpt2_tokenizer_config.json")))
        let golden = try readJSON(TokenizerAssets.path("gpt2_encoded_tokens.json"))
        let text = try #require(golden["text"]?.stringValue)
        let ids = try #require(golden["token_ids"]?.arrayValue).map { $0.intValue! }
        #expect(tokenizer.encode(text) == ids)
        #expect(!tokenizer.addsBOS)
        #expect(tokenizer.decode(ids) == golden["decoded_text"]?.stringValue)
        #expect(tokenizer.vocabularySize == 50257)
        #expect(tokenizer.bosTokenID == 50256 && tokenizer.eosTokenID == 50256)
    }

    @Test("Llama-2 encodes the sample with BOS first, as its TemplateProcessing says, and decodes it to '<s> …'")
    func llamaSample() throws {
        let tokenizer = try Tokenizer(json: readJSON(TokenizerAssets.path("llama_tokenizer.json")),
                                      config: readJSON(TokenizerAssets.path("llama_tokenizer_config.json")))
        let golden = try readJSON(TokenizerAssets.path("llama_encoded.json"))
        let text = try #require(golden["text"]?.stringValue)
        let ids = try #require(golden["token_ids"]?.arrayValue).map { $0.intValue! }
        #expect(ids.first == 1)
        #expect(tokenizer.encode(text) == ids)
        #expect(tokenizer.encode(text, addSpecialTokens: false) == Array(ids.dropFirst()))
        #expect(tokenizer.addsBOS && tokenizer.bosTokenID == 1 && tokenizer.eosTokenID == 2)
        #expect(tokenizer.decode(ids) == golden["decoded_text"]?.stringValue)
        #expect(tokenizer.vocabularySize == 32000)
    }

    @Test("llama.cpp's GPT-2 vocabulary cases give the same ids from gpt2_tokenizer.json", arguments: ["ggml-vocab-gpt-2.gguf"])
    func llamaCppGPT2(name: String) throws {
        let tokenizer = try TokenizerAssets.tokenizer("gpt2_tokenizer.json")
        for (k, c) in try llamaCppVocabularyCases(name).enumerated() {
            #expect(tokenizer.encode(c.text, addSpecialTokens: false) == c.ids, "case \(k): \(c.text.debugDescription)")
        }
    }

    @Test("llama.cpp's Llama SPM vocabulary cases give the same ids from llama_tokenizer.json (no BOS in the .out)")
    func llamaCppLlama() throws {
        let tokenizer = try TokenizerAssets.tokenizer("llama_tokenizer.json")
        for (k, c) in try llamaCppVocabularyCases("ggml-vocab-llama-spm.gguf").enumerated() {
            #expect(tokenizer.encode(c.text, addSpecialTokens: false) == c.ids, "case \(k): \(c.text.debugDescription)")
        }
    }
}

@Test("The tiny Llama fixture's tokenizer gives the recorded first 32 ids and 21,392 tokens for eval.txt")
func tinyLlamaFixture() throws {
    let tokenizer = try Tokenizer(path: Paths.fixture("models/tiny-llama/tokenizer.json"))
    let text = try String(contentsOfFile: Paths.fixture("text/eval.txt"), encoding: .utf8)
    let ids = tokenizer.encode(text)
    let golden = try readJSON(Paths.fixture("quant/tiny_llama_logits.json"))
    let first = try #require(golden["token_ids"]?.arrayValue).map { $0.intValue! }
    #expect(Array(ids.prefix(32)) == first)
    #expect(ids.count == 21_392)
    #expect(!tokenizer.addsBOS && tokenizer.bosTokenID == 0 && tokenizer.eosTokenID == 0)
    #expect(tokenizer.decode(ids) == text)
}

/// `fixtures/tokenizers/variants.json` (tools/make_tokenizer_goldens.py): pipelines beyond the
/// stock files — Llama-3/Qwen2 splits, ignore_merges, NFC, digits, prefix spaces, Metaspace
/// with split, added-token flags, unknown tokens — each a shared file with a recorded patch.
enum TokenizerVariants {
    static let golden: JSONValue? = try? readJSON(Paths.fixture("tokenizers/variants.json"))
    static var names: [String] {
        golden?["variants"]?.arrayValue?.compactMap { $0["name"]?.stringValue } ?? []
    }

    /// The base file with the variant's top-level keys replaced and model keys set.
    static func patched(_ variant: JSONValue) throws -> JSONValue {
        let base = try #require(variant["base"]?.stringValue)
        var root = try readJSON(Paths.repository + "/" + base)
        func apply(_ patch: [(String, JSONValue)], to value: inout JSONValue) {
            guard case .object(var members) = value else { return }
            for (key, replacement) in patch {
                if let k = members.firstIndex(where: { $0.0 == key }) { members[k].1 = replacement } else { members.append((key, replacement)) }
            }
            value = .object(members)
        }
        apply(variant["patch"]?.objectMembers ?? [], to: &root)
        guard case .object(var members) = root, let m = members.firstIndex(where: { $0.0 == "model" }) else { return root }
        apply(variant["model_patch"]?.objectMembers ?? [], to: &members[m].1)
        return .object(members)
    }
}

@Test("Tokenizer variants encode and decode the recorded strings as tokenizers 0.23 does",
      .enabled(if: TokenizerAssets.available, TokenizerAssets.skipReason), arguments: TokenizerVariants.names)
func tokenizerVariant(name: String) throws {
    let variant = try #require(TokenizerVariants.golden?["variants"]?.arrayValue?.first { $0["name"]?.stringValue == name })
    let tokenizer = try Tokenizer(json: TokenizerVariants.patched(variant), file: name)
    for c in try #require(variant["cases"]?.arrayValue) {
        let text = try #require(c["text"]?.stringValue)
        let ids = try #require(c["ids"]?.arrayValue).map { $0.intValue! }
        let plain = try #require(c["ids_plain"]?.arrayValue).map { $0.intValue! }
        #expect(tokenizer.encode(text) == ids, "\(text.debugDescription)")
        #expect(tokenizer.encode(text, addSpecialTokens: false) == plain, "\(text.debugDescription)")
        #expect(tokenizer.decode(plain) == c["decoded"]?.stringValue, "\(text.debugDescription)")
    }
}

/// Encoding speed on the two shared corpora, printed (never asserted: timing is not a test).
/// Meaningful in a release build: `swift build -c release --build-tests -Xswiftc -enable-testing`
/// then `swift test -c release -Xswiftc -enable-testing --skip-build --filter tokenizerThroughput`.
@Test("Tokenizer throughput on the shared corpora (printed, not asserted)",
      .enabled(if: TokenizerAssets.available, TokenizerAssets.skipReason), .serialized,
      arguments: ["gpt2_tokenizer.json", "llama_tokenizer.json", Paths.fixture("models/tiny-llama/tokenizer.json")])
func tokenizerThroughput(file: String) throws {
    #if DEBUG
    let repeats = 1
    #else
    let repeats = 3
    #endif
    let clock = ContinuousClock()
    var tokenizer: Tokenizer?
    let load = try clock.measure { tokenizer = try Tokenizer(path: file.hasPrefix("/") ? file : TokenizerAssets.path(file)) }
    let t = try #require(tokenizer)
    for corpus in ["wikitext-2-raw_wiki.test.raw", "tinyshakespeare_input.txt"] {
        let text = try String(contentsOfFile: TokenizerAssets.corpora + "/" + corpus, encoding: .utf8)
        var best = Duration.seconds(1000)
        var count = 0
        for _ in 0..<repeats {
            let elapsed = clock.measure { count = t.encode(text).count }
            best = min(best, elapsed)
        }
        let seconds = Double(best.components.seconds) + Double(best.components.attoseconds) * 1e-18
        let name = file.split(separator: "/").suffix(2).joined(separator: "/")
        print("tokenizer throughput: \(name) on \(corpus): \(count) tokens, "
              + "\(String(format: "%.1f", Double(text.utf8.count) / seconds / 1e6)) MB/s (best of \(repeats); load \(load))")
    }
}
