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

/// The metadata of a GGUF file (v3): each key with its value, arrays as `[Any]`. Only what the
/// vocabulary checks need; tensor infos are not read.
func ggufMetadata(_ path: String) throws -> [String: Any] {
    let bytes = readBytes(path)
    var offset = 0
    func take<T: FixedWidthInteger>(_: T.Type) throws -> T {
        guard offset + MemoryLayout<T>.size <= bytes.count else { throw CocoaError(.fileReadCorruptFile) }
        var value: T = 0
        for k in 0..<MemoryLayout<T>.size { value |= T(truncatingIfNeeded: bytes[offset + k]) << (8 * k) }
        offset += MemoryLayout<T>.size
        return value
    }
    func string() throws -> String {
        let length = Int(try take(UInt64.self))
        guard length <= bytes.count - offset else { throw CocoaError(.fileReadCorruptFile) }
        defer { offset += length }
        return String(decoding: bytes[offset..<offset + length], as: UTF8.self)
    }
    func value(_ type: UInt32) throws -> Any {
        switch type {
        case 0, 1, 7: return Int(try take(UInt8.self))
        case 2, 3: return Int(try take(UInt16.self))
        case 4, 5, 6: return Int(try take(UInt32.self))
        case 10, 11, 12: return Int(truncatingIfNeeded: try take(UInt64.self))
        case 8: return try string()
        case 9:
            let elementType = try take(UInt32.self)
            let count = Int(try take(UInt64.self))
            return try (0..<count).map { _ in try value(elementType) }
        default: throw CocoaError(.fileReadCorruptFile)
        }
    }
    guard try take(UInt32.self) == 0x4655_4747 else { throw CocoaError(.fileReadCorruptFile) }  // "GGUF"
    _ = try take(UInt32.self)
    _ = try take(UInt64.self)
    let count = try take(UInt64.self)
    var metadata: [String: Any] = [:]
    for _ in 0..<count {
        let key = try string()
        metadata[key] = try value(try take(UInt32.self))
    }
    return metadata
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

    @Test("llama.cpp's vocabulary GGUFs hold the same tokens, id for id, and the same BOS/EOS as the JSON files",
          arguments: [("ggml-vocab-gpt-2.gguf", "gpt2_tokenizer.json"), ("ggml-vocab-llama-spm.gguf", "llama_tokenizer.json")])
    func llamaCppVocabularies(gguf: String, json: String) throws {
        let tokenizer = try TokenizerAssets.tokenizer(json)
        let metadata = try ggufMetadata(TokenizerAssets.path(gguf))
        let tokens = try #require(metadata["tokenizer.ggml.tokens"] as? [Any]).compactMap { $0 as? String }
        #expect(tokens.count == tokenizer.vocabularySize)
        #expect(tokens.indices.allSatisfy { tokens[$0] == tokenizer.token($0) })
        #expect(metadata["tokenizer.ggml.eos_token_id"] as? Int == tokenizer.eosTokenID)
        if json == "llama_tokenizer.json" {
            // llama.cpp adds BOS as the post-processor does (its .out files are made without special tokens).
            #expect(metadata["tokenizer.ggml.bos_token_id"] as? Int == tokenizer.bosTokenID)
            #expect(metadata["tokenizer.ggml.add_bos_token"] as? Int == 1 && tokenizer.addsBOS)
        } else {
            // GPT-2 names <|endoftext|> as BOS, but neither llama.cpp (no add_bos_token key) nor the
            // ByteLevel post-processor adds it; tokenizer.json alone does not name a BOS.
            #expect(metadata["tokenizer.ggml.bos_token_id"] as? Int == 50256 && metadata["tokenizer.ggml.add_bos_token"] == nil)
            #expect(!tokenizer.addsBOS)
            let merges = try #require(metadata["tokenizer.ggml.merges"] as? [Any]).compactMap { $0 as? String }
            let fileMerges = try #require(readJSON(TokenizerAssets.path(json))["model"]?["merges"]?.arrayValue).compactMap(\.stringValue)
            #expect(merges == fileMerges)
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
    for d in try #require(variant["decodes"]?.arrayValue) {
        let ids = try #require(d["ids"]?.arrayValue).map { $0.intValue! }
        #expect(tokenizer.decode(ids) == d["text"]?.stringValue, "decode \(ids)")
    }
}

/// Encoding speed on the two shared corpora, printed (never asserted: timing is not a test), for
/// the tokenizers of fixtures/eval/tokenizers.json. Meaningful in a release build:
/// `swift build -c release --build-tests -Xswiftc -enable-testing` then
/// `swift test -c release -Xswiftc -enable-testing --skip-build --filter tokenizerThroughput`.
@Test("Tokenizer throughput on the shared corpora (printed, not asserted)",
      .enabled(if: FileManager.default.fileExists(atPath: TokenizerAssets.corpora), "../shared/assets/corpora is absent"),
      .serialized, arguments: EvaluationTokenizerGoldens.names)
func tokenizerThroughput(name: String) throws {
    #if DEBUG
    let repeats = 1
    #else
    let repeats = 5
    #endif
    let clock = ContinuousClock()
    var tokenizer: Tokenizer?
    let load = try clock.measure { tokenizer = try EvaluationTokenizerGoldens.tokenizer(name) }
    guard let t = tokenizer else { return }
    for corpus in ["wikitext-2-raw_wiki.test.raw", "tinyshakespeare_input.txt"] {
        let text = String(decoding: readBytes(TokenizerAssets.corpora + "/" + corpus), as: UTF8.self)
        var best = Duration.seconds(1000)
        var count = 0
        for _ in 0..<repeats {
            let elapsed = clock.measure { count = t.encode(text).count }
            best = min(best, elapsed)
        }
        let seconds = Double(best.components.seconds) + Double(best.components.attoseconds) * 1e-18
        print("tokenizer throughput: \(name) on \(corpus): \(count) tokens, "
              + "\(String(format: "%.1f", Double(text.utf8.count) / seconds / 1e6)) MB/s (best of \(repeats), one thread; load \(load))")
    }
}

@Test("One tokenizer encodes from many threads at once with the same results")
func concurrentEncoding() throws {
    let t = try Tokenizer(path: Paths.fixture("models/tiny-llama/tokenizer.json"))
    let text = try String(contentsOfFile: Paths.fixture("text/eval.txt"), encoding: .utf8)
    let expected = t.encode(text)
    final class Agreements: @unchecked Sendable {
        let lock = NSLock()
        var count = 0
    }
    let agreements = Agreements()
    DispatchQueue.concurrentPerform(iterations: 8) { _ in
        let same = t.encode(text) == expected
        agreements.lock.withLock { agreements.count += same ? 1 : 0 }
    }
    #expect(agreements.count == 8)
}

// MARK: - The scanners against a regex engine

/// The pieces `pattern` cuts `text` into, by the hand-written scanner.
func scannerPieces(_ pattern: PreTokenizerPattern, _ text: String) -> [String] {
    var text = text
    return text.withUTF8 { buffer -> [String] in
        guard let p = buffer.baseAddress else { return [] }
        var pieces: [String] = []
        var i = 0
        while i < buffer.count {
            let j = pattern.matchEnd(p, i, buffer.count, ScalarClassTable.shared)
            pieces.append(String(decoding: UnsafeBufferPointer(rebasing: buffer[i..<j]), as: UTF8.self))
            i = j
        }
        return pieces
    }
}

/// The pieces by Swift Regex over Unicode scalars: the plain twin of the scanner (too slow to
/// use, obviously right). Gaps between matches would be pieces too; the patterns leave none.
func regexPieces(_ regex: String, _ text: String) throws -> [String] {
    let compiled = try Regex(regex).matchingSemantics(.unicodeScalar)
    var pieces: [String] = []
    var last = text.startIndex
    for match in text.matches(of: compiled) {
        if last < match.range.lowerBound { pieces.append(String(text.unicodeScalars[last..<match.range.lowerBound])) }
        pieces.append(String(text.unicodeScalars[match.range]))
        last = match.range.upperBound
    }
    if last < text.endIndex { pieces.append(String(text.unicodeScalars[last...])) }
    return pieces
}

@Test("Each pre-tokenizer scanner cuts random text exactly where its regex does",
      arguments: PreTokenizerPattern.known.map(\.regex))
func scannerMatchesRegex(regex: String) throws {
    let pattern = try #require(PreTokenizerPattern.named(regex: regex))
    // Letters, digits of several scripts, all kinds of whitespace, CR/LF, apostrophes and the
    // letters of the contractions in both cases, punctuation, marks, emoji.
    let alphabet: [Unicode.Scalar] = Array("aZsStTdDmMlLrReEvV'' 0912\u{0661}\u{00BD}\u{2167}\t\n\r\u{0B}\u{0C}\u{85}\u{A0}\u{2003}\u{3000}.,!?-_(\u{301}\u{200D}é日本к😀\u{1D7D9}".unicodeScalars)
    var generator = SeededGenerator(seed: UInt64(regex.utf8.count))
    for _ in 0..<400 {
        var view = String.UnicodeScalarView()
        for _ in 0..<Int.random(in: 0...24, using: &generator) { view.append(alphabet.randomElement(using: &generator)!) }
        let text = String(view)
        #expect(scannerPieces(pattern, text) == (try regexPieces(regex, text)), "\(text.debugDescription)")
    }
}

@Test("The scanners cut as tokenizers' pre_tokenize_str does on recorded examples")
func scannerExamples() throws {
    let text = "  hello\n\n  world \r\n\t x"
    #expect(scannerPieces(.gpt2, text) == [" ", " hello", "\n\n ", " world", " \r\n\t", " x"])
    #expect(scannerPieces(.llama3, text) == [" ", " hello", "\n\n", " ", " world", " \r\n", "\t", " x"])
    #expect(scannerPieces(.llama3, "12345 x1234") == ["123", "45", " x", "123", "4"])
    #expect(scannerPieces(.qwen2, "12345 x") == ["1", "2", "3", "4", "5", " x"])
    #expect(scannerPieces(.gpt2, "12345 x1234") == ["12345", " x", "1234"])
    #expect(scannerPieces(.llama3, "x'ſ y'S 'RE 'Ll 'K") == ["x", "'ſ", " y", "'S", " '", "RE", " '", "Ll", " '", "K"])
    #expect(scannerPieces(.gpt2, "x'ſ y'S") == ["x", "'", "ſ", " y", "'", "S"])
    #expect(scannerPieces(.llama3, "a \u{A0} b\u{3000}c") == ["a", " \u{A0}", " b", "\u{3000}c"])
    #expect(scannerPieces(.gpt2, "\u{85}a\u{2028}") == ["\u{85}", "a", "\u{2028}"])
    #expect(scannerPieces(.llama3, "\u{85}a\u{2028}") == ["\u{85}a", "\u{2028}"])
}

// MARK: - Refusals and hostile input

/// A minimal byte-level BPE tokenizer.json with `replacements` substituted for its parts.
func miniTokenizerJSON(_ replacements: [String: String] = [:]) -> String {
    var parts: [(String, String)] = [
        ("version", #""1.0""#),
        ("added_tokens", #"[{"id": 3, "content": "<eos>", "special": true, "normalized": false}]"#),
        ("normalizer", "null"),
        ("pre_tokenizer", #"{"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}"#),
        ("post_processor", "null"),
        ("decoder", #"{"type": "ByteLevel"}"#),
        ("model", #"{"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}"#),
    ]
    for (key, value) in replacements {
        if let k = parts.firstIndex(where: { $0.0 == key }) { parts[k].1 = value } else { parts.append((key, value)) }
    }
    return "{" + parts.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}"
}

func miniTokenizer(_ replacements: [String: String] = [:]) throws -> Tokenizer {
    try Tokenizer(json: JSONParser.parse(miniTokenizerJSON(replacements)), file: "mini.json")
}

/// The error a tokenizer.json gives, or nil if it loads.
func tokenizerError(_ replacements: [String: String]) -> TokenizerError? {
    do {
        _ = try miniTokenizer(replacements)
        return nil
    } catch let error as TokenizerError {
        return error
    } catch {
        return nil
    }
}

@Test("The minimal tokenizer merges, decodes, and knows its added token")
func miniTokenizerWorks() throws {
    let t = try miniTokenizer()
    #expect(t.encode("abab<eos>ba") == [2, 2, 3, 1, 0])
    #expect(t.decode([2, 3, 1]) == "ab<eos>b")
    #expect(t.tokenID("<eos>") == 3 && t.tokenID("ab") == 2 && t.tokenID("zz") == nil)
    #expect(t.vocabularySize == 4 && t.eosTokenID == 3 && t.bosTokenID == nil && !t.addsBOS)
    #expect(t.encode("") == [] && t.decode([]) == "")
}

@Test("Unigram, WordPiece and WordLevel models are refused by name, with the supported list",
      arguments: ["Unigram", "WordPiece", "WordLevel"])
func unsupportedModels(type: String) {
    let error = tokenizerError(["model": #"{"type": "\#(type)", "vocab": []}"#])
    #expect(error == .unsupportedComponent(file: "mini.json", component: "model", type: type, supported: ["BPE"]))
    #expect(error?.description == "mini.json: model: unsupported type (expected one of BPE, got \(type))")
}

@Test("Unsupported normalizers, pre-tokenizers, post-processors and decoders are named")
func unsupportedComponents() {
    #expect(tokenizerError(["normalizer": #"{"type": "BertNormalizer"}"#])
        == .unsupportedComponent(file: "mini.json", component: "normalizer", type: "BertNormalizer", supported: TextNormalizer.supportedTypes))
    #expect(tokenizerError(["normalizer": #"{"type": "Sequence", "normalizers": [{"type": "NFKC"}]}"#])
        == .unsupportedComponent(file: "mini.json", component: "normalizer.normalizers[0]", type: "NFKC", supported: TextNormalizer.supportedTypes))
    #expect(tokenizerError(["pre_tokenizer": #"{"type": "Whitespace"}"#])
        == .unsupportedComponent(file: "mini.json", component: "pre_tokenizer", type: "Whitespace", supported: PreTokenizerStage.supportedTypes))
    #expect(tokenizerError(["post_processor": #"{"type": "Mystery"}"#])
        == .unsupportedComponent(file: "mini.json", component: "post_processor", type: "Mystery", supported: SpecialTokenTemplate.supportedTypes))
    #expect(tokenizerError(["decoder": ###"{"type": "WordPiece", "prefix": "##"}"###])
        == .unsupportedComponent(file: "mini.json", component: "decoder", type: "WordPiece", supported: TokenDecoder.supportedTypes))
}

@Test("A Split regex without a scanner, or with another behaviour, is refused naming what it got")
func unsupportedSplits() throws {
    let error = try #require(tokenizerError(["pre_tokenizer": #"{"type": "Split", "pattern": {"Regex": "\\d+"}, "behavior": "Isolated", "invert": false}"#]))
    #expect(error.description == #"mini.json: pre_tokenizer.pattern.Regex: unsupported (expected the GPT-2, Llama-3 or Qwen2 pattern, got "\d+")"#)
    let removed = #"{"type": "Split", "pattern": {"Regex": "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"}, "behavior": "Removed", "invert": false}"#
    #expect(tokenizerError(["pre_tokenizer": removed])
        == .unsupportedOption(file: "mini.json", field: "pre_tokenizer.behavior", expected: "Isolated", got: "Removed"))
    #expect(tokenizerError(["normalizer": #"{"type": "Replace", "pattern": {"Regex": " +"}, "content": " "}"#])
        == .unsupportedOption(file: "mini.json", field: "normalizer.pattern", expected: "a {\"String\": …} pattern", got: "the regex \" +\""))
    #expect(tokenizerError(["pre_tokenizer": #"{"type": "Sequence", "pretokenizers": [{"type": "ByteLevel"}, {"type": "Digits"}]}"#])
        == .unsupportedOption(file: "mini.json", field: "pre_tokenizer", expected: "ByteLevel as the last pre-tokenizer", got: "ByteLevel at step 1 of 2"))
}

@Test("Malformed model parts are refused with the field, what was expected and what was found")
func malformedModels() {
    #expect(tokenizerError(["model": #"{"type": "BPE", "vocab": [], "merges": []}"#])
        == .malformed(file: "mini.json", field: "model.vocab", expected: "an object", got: "an array of 0"))
    #expect(tokenizerError(["model": #"{"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b c"]}"#])
        == .malformed(file: "mini.json", field: "model.merges[0]", expected: "two tokens separated by one space", got: "\"a b c\""))
    #expect(tokenizerError(["model": #"{"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": [["a", "b"]]}"#])
        == .mergeNotInVocabulary(file: "mini.json", rank: 0, token: "ab"))
    #expect(tokenizerError(["model": #"{"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": [["a", "q"]]}"#])
        == .mergeNotInVocabulary(file: "mini.json", rank: 0, token: "q"))
    #expect(tokenizerError(["model": #"{"type": "BPE", "vocab": {"a": 0, "b": -1}, "merges": []}"#])
        == .tokenIDOutOfRange(file: "mini.json", token: "b", id: -1, limit: BytePairModel.maximumVocabulary))
    #expect(tokenizerError(["model": #"{"type": "BPE", "vocab": {"a": 0, "b": 1073741824}, "merges": []}"#])
        == .tokenIDOutOfRange(file: "mini.json", token: "b", id: 1 << 30, limit: BytePairModel.maximumVocabulary))
    #expect(tokenizerError(["model": #"{"type": "BPE", "vocab": {"a": 0, "b": 0}, "merges": []}"#])
        == .duplicateTokenID(file: "mini.json", id: 0, first: "a", second: "b"))
    #expect(tokenizerError(["model": #"{"type": "BPE", "vocab": {"a": 0}, "merges": [], "dropout": 0.1}"#])
        == .unsupportedOption(file: "mini.json", field: "model.dropout", expected: "null (BPE dropout is for training)", got: "0.1"))
    #expect(tokenizerError(["model": #"{"type": "BPE", "vocab": {"a": 0}, "merges": [], "unk_token": "<unk>"}"#])
        == .malformed(file: "mini.json", field: "model.unk_token", expected: "a token of model.vocab", got: "\"<unk>\""))
    #expect(tokenizerError(["added_tokens": #"[{"id": "x", "content": "<eos>"}]"#])
        == .malformed(file: "mini.json", field: "added_tokens[0].id", expected: "an integer id", got: "\"x\""))
    #expect(tokenizerError(["post_processor": #"{"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>"}}, {"Sequence": {"id": "A"}}], "special_tokens": {}}"#])
        == .malformed(file: "mini.json", field: "post_processor.single[0].SpecialToken.id", expected: "a name in special_tokens", got: "\"<s>\""))
}

@Test("Files that are not tokenizer.json are refused before parsing: too large, LFS pointer, not UTF-8, not JSON")
func hostileFiles() throws {
    let scratch = ScratchDirectory()
    let huge = scratch.file("huge.json")
    FileManager.default.createFile(atPath: huge, contents: nil)
    let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: huge))
    try handle.truncate(atOffset: UInt64(Tokenizer.maximumFileSize) + 1)  // sparse: no disk used
    try handle.close()
    #expect(throws: TokenizerError.fileTooLarge(file: huge, size: Tokenizer.maximumFileSize + 1, limit: Tokenizer.maximumFileSize)) {
        try Tokenizer(path: huge)
    }
    let pointer = scratch.write("lfs.json", Array("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n".utf8))
    #expect(throws: TokenizerError.gitLFSPointer(file: pointer)) { try Tokenizer(path: pointer) }
    let latin1 = scratch.write("latin1.json", [0x7B, 0x22, 0xE9, 0x22, 0x7D])
    #expect(throws: TokenizerError.notUTF8(file: latin1, offset: 2)) { try Tokenizer(path: latin1) }
    let truncated = scratch.write("truncated.json", Array(miniTokenizerJSON().utf8.dropLast(10)))
    #expect { try Tokenizer(path: truncated) } throws: { error in
        guard case .notJSON(let file, _) = error as? TokenizerError else { return false }
        return file == truncated
    }
    let deep = scratch.write("deep.json", Array((String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)).utf8))
    #expect { try Tokenizer(path: deep) } throws: { ($0 as? TokenizerError).map { if case .notJSON = $0 { true } else { false } } ?? false }
    #expect(throws: TokenizerError.self) { try Tokenizer(path: scratch.file("missing.json")) }
    let array = scratch.write("array.json", Array("[1, 2]".utf8))
    #expect(throws: TokenizerError.malformed(file: array, field: "(root)", expected: "a JSON object", got: "an array of 2")) {
        try Tokenizer(path: array)
    }
}

@Test("Decoding skips ids that name no token instead of trapping, as tokenizers does")
func decodeSkipsUnknownIDs() throws {
    let t = try miniTokenizer()
    #expect(t.decode([-1, 0, Int.max, 99, 1, Int.min, 3]) == "ab<eos>")
    #expect(t.decode([3, 2], skipSpecialTokens: true) == "ab")
    #expect(t.token(2) == "ab" && t.token(3) == "<eos>" && t.token(-5) == nil && t.token(4) == nil)
}

@Test("Hostile text encodes without trapping, and byte-level BPE gives it back exactly")
func hostileText() throws {
    let mini = try miniTokenizer()
    #expect(mini.encode(String(repeating: "ab", count: 50_000)) == Array(repeating: 2, count: 50_000))
    // Symbols the vocabulary lacks, with neither byte fallback nor unk_token, are dropped (tokenizers does the same).
    #expect(mini.encode("a\u{0}zb<eos") == [0, 1])

    let t = try Tokenizer(path: Paths.fixture("models/tiny-llama/tokenizer.json"))
    let texts = [
        String(repeating: "a", count: 200_000),  // one 200 KB word: the heap path
        "\u{0}\u{FFFD}<|endoftext<|endoftext|>|>" + String(repeating: "\u{1F600}", count: 1000),
        String(repeating: " ", count: 10_000) + String(repeating: "\n\r", count: 5_000) + "x",
        String(decoding: (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 7) }, as: UTF8.self),
    ]
    for text in texts {
        #expect(t.decode(t.encode(text)) == text)
    }
}

// MARK: - fixtures/eval/tokenizers.json (tools/make_eval_goldens.py)

/// The evaluation goldens: 53 tricky strings and the two whole corpora, encoded by tokenizers
/// 0.23 with the default add_special_tokens=True, for gpt2, llama, tiny-llama and llama with the
/// Metaspace layout.
enum EvaluationTokenizerGoldens {
    static let golden: JSONValue? = try? readJSON(Paths.fixture("eval/tokenizers.json"))
    static var names: [String] { golden?["tokenizers"]?.objectMembers?.map(\.0) ?? [] }

    /// The tokenizer an entry names: its file (a path from the repository's parent for
    /// shared/…), with the entry's top-level patch applied. Nil (skip) when the shared file is absent.
    static func tokenizer(_ name: String) throws -> Tokenizer? {
        let entry = try #require(golden?["tokenizers"]?[name])
        let label = try #require(entry["file"]?.stringValue)
        let relative = String(label.split(separator: " ").first ?? "")
        let path = relative.hasPrefix("shared/") ? Paths.repository + "/../" + relative : Paths.repository + "/" + relative
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let patch = entry["patch"]?.objectMembers else { return try Tokenizer(path: path) }
        guard case .object(var members) = try readJSON(path) else { return nil }
        for (key, value) in patch {
            if let k = members.firstIndex(where: { $0.0 == key }) { members[k].1 = value } else { members.append((key, value)) }
        }
        return try Tokenizer(json: .object(members), file: path + " (" + name + ")")
    }

    static func ids(_ value: JSONValue?) -> [Int] { value?.arrayValue?.compactMap(\.intValue) ?? [] }
}

@Test("Every tricky string of the evaluation goldens encodes to the recorded ids, with the recorded BOS behaviour",
      arguments: EvaluationTokenizerGoldens.names)
func evaluationStrings(name: String) throws {
    guard let tokenizer = try EvaluationTokenizerGoldens.tokenizer(name) else {
        print("skipping \(name): ../shared/assets is absent")
        return
    }
    let golden = try #require(EvaluationTokenizerGoldens.golden)
    let entry = try #require(golden["tokenizers"]?[name])
    for string in try #require(golden["strings"]?.arrayValue) {
        let label = try #require(string["name"]?.stringValue)
        let text = try #require(string["text"]?.stringValue)
        #expect(tokenizer.encode(text) == EvaluationTokenizerGoldens.ids(entry["strings"]?[label]?["ids"]), "\(name): \(label)")
    }
    let facts = try #require(entry["facts"])
    #expect(tokenizer.addsBOS == facts["adds_bos"]?.boolValue)
    #expect(tokenizer.suffixTokenIDs.isEmpty == (facts["adds_eos"]?.boolValue == false))
    #expect(tokenizer.vocabularySize == facts["vocab_size_with_added"]?.intValue)
}

@Test("Both corpora encode to the recorded ids: count, sha256 of the u32le ids, first and last 200",
      .enabled(if: FileManager.default.fileExists(atPath: TokenizerAssets.corpora), "../shared/assets/corpora is absent"),
      arguments: EvaluationTokenizerGoldens.names)
func evaluationCorpora(name: String) throws {
    guard let tokenizer = try EvaluationTokenizerGoldens.tokenizer(name) else {
        print("skipping \(name): ../shared/assets is absent")
        return
    }
    let entry = try #require(EvaluationTokenizerGoldens.golden?["tokenizers"]?[name])
    for (corpus, expected) in try #require(entry["corpora"]?.objectMembers) {
        let bytes = readBytes(TokenizerAssets.corpora + "/" + corpus)
        let ids = tokenizer.encode(String(decoding: bytes, as: UTF8.self))
        #expect(ids.count == expected["n_tokens"]?.intValue, "\(name) on \(corpus)")
        #expect(Array(ids.prefix(200)) == EvaluationTokenizerGoldens.ids(expected["first_200"]), "\(name) on \(corpus)")
        #expect(Array(ids.suffix(200)) == EvaluationTokenizerGoldens.ids(expected["last_200"]), "\(name) on \(corpus)")
        var little: [UInt8] = []
        little.reserveCapacity(4 * ids.count)
        for id in ids { withUnsafeBytes(of: UInt32(truncatingIfNeeded: id).littleEndian) { little += $0 } }
        #expect(sha256Hex(little) == expected["ids_sha256_u32le"]?.stringValue, "\(name) on \(corpus)")
    }
}

@Test("Strip removes at most start/stop characters per token, and never traps on short tokens (tokenizers panics there)")
func stripDecoder() {
    let strip = TokenDecoder.strip(content: "!", start: 2, stop: 3)
    #expect(strip.decodeChain(["!!!a!!!!", "", "!", "!!", "a"]) == ["!a!", "", "", "", "a"])
}

@Test("A Replace normalizer whose content is 100,000 characters long is refused at load instead of multiplying the text")
func hugeReplaceContent() {
    let content = String(repeating: "x", count: 100_000)
    let error = tokenizerError(["normalizer": #"{"type": "Replace", "pattern": {"String": " "}, "content": ""# + content + #""}"#])
    #expect(error != nil && "\(error!)".contains("normalizer.content") && "\(error!)".contains("at most 256 bytes"), "\(String(describing: error))")
    #expect(tokenizerError(["normalizer": #"{"type": "Replace", "pattern": {"String": " "}, "content": "▁"}"#]) == nil)
}
