@testable import CheckpointKit
import Foundation
import Testing
import TestSupport

/// Tokenizers rebuilt from GGUF vocabularies (`GGUFVocabulary`). The expected values come from
/// transformers 5.24 loading the same GGUFs: run these tests with `CKPT_GGUF_VOCAB_OUT=<folder>`
/// and each leaves its GGUF and the files ckpt built in that folder; `tools/check_gguf_vocab.py
/// <folder>` then loads every GGUF with `AutoTokenizer.from_pretrained(…, gguf_file=…)` and
/// compares the two, component by component.
enum RebuiltVocabulary {
    static let dumpFolder = ProcessInfo.processInfo.environment["CKPT_GGUF_VOCAB_OUT"]

    typealias Built = (tokenizer: Tokenizer, json: JSONValue, config: JSONValue)
    nonisolated(unsafe) private static var built: [String: Built] = [:]
    private static let lock = NSLock()

    /// The tokenizer built from a GGUF, with the JSON it was built from (once per name and test run).
    static func build(_ path: String, name: String) throws -> Built {
        lock.lock()
        defer { lock.unlock() }
        if let done = built[name] { return done }
        let files = try #require(try GGUFVocabulary.tokenizerFiles(GGUFFile(path: path)))
        try dump(path, name: name, files)
        let tokenizer = try Tokenizer(json: files.tokenizer, file: name + " (rebuilt from GGUF)", config: files.config)
        built[name] = (tokenizer, files.tokenizer, files.config)
        return (tokenizer, files.tokenizer, files.config)
    }

    /// With CKPT_GGUF_VOCAB_OUT set: the GGUF and the files built from it, for tools/check_gguf_vocab.py.
    static func dump(_ path: String, name: String, _ files: (tokenizer: JSONValue, config: JSONValue)) throws {
        guard let dumpFolder else { return }
        let folder = dumpFolder + "/" + name
        try FileManager.default.createDirectory(atPath: folder + "/ours", withIntermediateDirectories: true)
        try? FileManager.default.removeItem(atPath: folder + "/vocab.gguf")
        try FileManager.default.copyItem(atPath: path, toPath: folder + "/vocab.gguf")
        try Data(files.tokenizer.serialized(style: .pretty).utf8).write(to: URL(fileURLWithPath: folder + "/ours/tokenizer.json"))
        try Data(files.config.serialized(style: .pretty).utf8).write(to: URL(fileURLWithPath: folder + "/ours/tokenizer_config.json"))
    }

    /// A member of a JSON value by path ("model.byte_fallback"), for readable expectations.
    static func at(_ json: JSONValue, _ path: String) -> JSONValue? {
        var value: JSONValue? = json
        for key in path.split(separator: ".") { value = value?[String(key)] }
        return value
    }

    static func merges(_ json: JSONValue) -> [String] {
        (json["model"]?["merges"]?.arrayValue ?? []).map { ($0.arrayValue ?? []).compactMap(\.stringValue).joined(separator: " ") }
    }

    /// `added_tokens` as "id content special" lines.
    static func addedTokens(_ json: JSONValue) -> [String] {
        (json["added_tokens"]?.arrayValue ?? []).map {
            "\($0["id"]?.intValue ?? -1) \($0["content"]?.stringValue ?? "?") \($0["special"]?.boolValue == true ? "special" : "plain")"
        }
    }
}

/// A GGUF v3 of metadata only, written by hand so that a test says exactly which value is wrong.
struct MetadataGGUF {
    enum Value {
        case string(String), uint32(UInt32), int32(Int32), float32(Float), bool(Bool)
        case strings([String]), uint32s([UInt32]), int32s([Int32]), float32s([Float])
    }

    var entries: [(key: String, value: Value)] = []

    subscript(key: String) -> Value? {
        get { entries.first { $0.key == key }?.value }
        set {
            let k = entries.firstIndex { $0.key == key }
            switch (k, newValue) {
            case let (k?, value?): entries[k].value = value
            case let (k?, nil): entries.remove(at: k)
            case let (nil, value?): entries.append((key, value))
            case (nil, nil): break
            }
        }
    }

    var bytes: [UInt8] {
        var out: [UInt8] = []
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        func string(_ s: String) { u64(UInt64(s.utf8.count)); out += s.utf8 }
        func array(_ type: UInt32, _ count: Int) { u32(9); u32(type); u64(UInt64(count)) }
        u32(0x4655_4747); u32(3); u64(0); u64(UInt64(entries.count))
        for (key, value) in entries {
            string(key)
            switch value {
            case .string(let s): u32(8); string(s)
            case .uint32(let v): u32(4); u32(v)
            case .int32(let v): u32(5); u32(UInt32(bitPattern: v))
            case .float32(let v): u32(6); u32(v.bitPattern)
            case .bool(let b): u32(7); out.append(b ? 1 : 0)
            case .strings(let list): array(8, list.count); list.forEach(string)
            case .uint32s(let list): array(4, list.count); list.forEach(u32)
            case .int32s(let list): array(5, list.count); list.forEach { u32(UInt32(bitPattern: $0)) }
            case .float32s(let list): array(6, list.count); list.forEach { u32($0.bitPattern) }
            }
        }
        return out
    }

    /// A made-up SentencePiece vocabulary as llama.cpp writes one: `<unk>`, `<s>`, `</s>`, the
    /// 256 `<0xAB>` tokens, then `words` (scores 0, -1, -2…, normal type unless `types` says),
    /// and the `<architecture>.*` keys transformers needs to load the file.
    static func sentencePiece(_ words: [String], scores: [Float]? = nil, types: [Int32]? = nil, architecture: String = "llama") -> MetadataGGUF {
        let base = ["<unk>", "<s>", "</s>"] + byteTokens
        var gguf = MetadataGGUF()
        gguf["general.architecture"] = .string(architecture)
        for (key, value) in [("block_count", 1), ("context_length", 64), ("embedding_length", 8), ("feed_forward_length", 16),
                             ("attention.head_count", 2), ("attention.head_count_kv", 2), ("rope.dimension_count", 4)] {
            gguf[architecture + "." + key] = .uint32(UInt32(value))
        }
        gguf[architecture + ".attention.layer_norm_rms_epsilon"] = .float32(1e-5)
        gguf["tokenizer.ggml.model"] = .string("llama")
        gguf["tokenizer.ggml.tokens"] = .strings(base + words)
        gguf["tokenizer.ggml.scores"] = .float32s([Float](repeating: 0, count: base.count) + (scores ?? words.indices.map { -Float($0) }))
        gguf["tokenizer.ggml.token_type"] = .int32s([2, 3, 3] + [Int32](repeating: 6, count: 256) + (types ?? words.map { _ in 1 }))
        gguf["tokenizer.ggml.bos_token_id"] = .uint32(1)
        gguf["tokenizer.ggml.eos_token_id"] = .uint32(2)
        return gguf
    }

    static let words = ["▁", "a", "b", "ab", "▁a", "▁ab", "ba", "aab", "é", "▁é"]
    static let byteTokens = (0..<256).map { "<0x" + String($0, radix: 16, uppercase: true).leftPadded(to: 2) + ">" }

    /// Written into `scratch`, and read back.
    func file(_ scratch: ScratchDirectory, _ name: String) -> String { scratch.write(name + ".gguf", bytes) }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}

// MARK: - llama.cpp's vocabulary GGUFs

@Suite("GGUF vocabularies rebuilt as tokenizer.json", .enabled(if: TokenizerAssets.available, TokenizerAssets.skipReason))
struct GGUFVocabularyGoldenTests {
    /// transformers 5.24's own GGUF loader disagrees with llama.cpp on the 15 cases that start with a
    /// space (its Metaspace drops the prefix there); ckpt follows llama.cpp and the original Llama-2
    /// tokenizer.json, which prepend it always.
    @Test("The Llama SPM GGUF's tokenizer gives llama.cpp's ids on every case, leading spaces included")
    func llamaSPMCases() throws {
        let tokenizer = try RebuiltVocabulary.build(TokenizerAssets.path("ggml-vocab-llama-spm.gguf"), name: "llama-spm").tokenizer
        let cases = try llamaCppVocabularyCases("ggml-vocab-llama-spm.gguf")
        var passed = 0
        for (k, c) in cases.enumerated() {
            let ids = tokenizer.encode(c.text, addSpecialTokens: false)
            #expect(ids == c.ids, "case \(k): \(c.text.debugDescription)")
            if ids == c.ids { passed += 1 }
        }
        print("llama-spm: \(passed) of \(cases.count) cases as llama.cpp's .out")
        #expect(passed == cases.count && cases.count == 46)
    }

    @Test("The Llama SPM GGUF's tokenizer encodes WikiText-2 as the original Llama-2 tokenizer.json does")
    func llamaSPMWikiText() throws {
        let corpus = Paths.sharedAssets + "/corpora/wikitext-2-raw_wiki.test.raw"
        guard FileManager.default.fileExists(atPath: corpus) else { return }
        let rebuilt = try RebuiltVocabulary.build(TokenizerAssets.path("ggml-vocab-llama-spm.gguf"), name: "llama-spm").tokenizer
        let original = try TokenizerAssets.tokenizer("llama_tokenizer.json")
        let text = String(decoding: readBytes(corpus).prefix(200_000), as: UTF8.self)
        #expect(rebuilt.encode(text) == original.encode(text))
    }

    @Test("The GPT-2 GGUF's tokenizer gives llama.cpp's ids on every case")
    func gpt2Cases() throws {
        let tokenizer = try RebuiltVocabulary.build(TokenizerAssets.path("ggml-vocab-gpt-2.gguf"), name: "gpt-2").tokenizer
        let cases = try llamaCppVocabularyCases("ggml-vocab-gpt-2.gguf")
        var passed = 0
        for (k, c) in cases.enumerated() {
            let ids = tokenizer.encode(c.text, addSpecialTokens: false)
            #expect(ids == c.ids, "case \(k): \(c.text.debugDescription)")
            if ids == c.ids { passed += 1 }
        }
        print("gpt-2: \(passed) of \(cases.count) cases as llama.cpp's .out")
        #expect(passed == cases.count && cases.count == 46)
        #expect(!tokenizer.addsBOS && tokenizer.vocabularySize == 50257 && tokenizer.eosTokenID == 50256)
    }

    @Test("The Llama SPM GGUF's tokenizer encodes the swift-transformers sample with BOS first, and decodes it back")
    func llamaSample() throws {
        let tokenizer = try RebuiltVocabulary.build(TokenizerAssets.path("ggml-vocab-llama-spm.gguf"), name: "llama-spm").tokenizer
        let golden = try readJSON(TokenizerAssets.path("llama_encoded.json"))
        let text = try #require(golden["text"]?.stringValue)
        let ids = try #require(golden["token_ids"]?.arrayValue).map { $0.intValue! }
        #expect(tokenizer.encode(text) == ids)
        #expect(tokenizer.encode(text, addSpecialTokens: false) == Array(ids.dropFirst()))
        #expect(tokenizer.addsBOS && tokenizer.bosTokenID == 1 && tokenizer.eosTokenID == 2)
        #expect(tokenizer.decode(ids) == golden["decoded_text"]?.stringValue)
        #expect(tokenizer.vocabularySize == 32000)
    }

    @Test("The Llama SPM GGUF becomes Llama-2's tokenizer.json layout: Prepend/Replace normalizer, byte fallback, 61,249 derived merges")
    func llamaSPMComponents() throws {
        let (_, json, config) = try RebuiltVocabulary.build(TokenizerAssets.path("ggml-vocab-llama-spm.gguf"), name: "llama-spm")
        let at = { (path: String) in RebuiltVocabulary.at(json, path) }
        #expect(at("normalizer") == ["type": "Sequence", "normalizers": [
            ["type": "Prepend", "prepend": "▁"], ["type": "Replace", "pattern": ["String": " "], "content": "▁"],
        ]])
        #expect(at("pre_tokenizer") == .null)
        #expect(at("decoder") == ["type": "Sequence", "decoders": [
            ["type": "Replace", "pattern": ["String": "▁"], "content": " "], ["type": "ByteFallback"], ["type": "Fuse"],
            ["type": "Strip", "content": " ", "start": 1, "stop": 0],
        ]])
        #expect(at("post_processor") == ["type": "TemplateProcessing",
                                         "single": [["SpecialToken": ["id": "<s>", "type_id": 0]], ["Sequence": ["id": "A", "type_id": 0]]],
                                         "pair": [["SpecialToken": ["id": "<s>", "type_id": 0]], ["Sequence": ["id": "A", "type_id": 0]],
                                                  ["SpecialToken": ["id": "<s>", "type_id": 1]], ["Sequence": ["id": "B", "type_id": 1]]],
                                         "special_tokens": ["<s>": ["id": "<s>", "ids": [1], "tokens": ["<s>"]]]])
        #expect(at("model.type") == "BPE" && at("model.byte_fallback") == true && at("model.fuse_unk") == true)
        #expect(at("model.unk_token") == .null && at("model.dropout") == .null && at("model.ignore_merges") == false)
        #expect(at("model.vocab")?.objectMembers?.count == 32000)
        let merges = RebuiltVocabulary.merges(json)
        #expect(merges.count == 61249)
        #expect(Array(merges.prefix(5)) == ["▁ t", "e r", "i n", "▁ a", "e n"])
        #expect(Array(merges.suffix(5)) == ["▁ ▁▁▁▁▁", "▁ ▁▁▁▁", "▁ ▁▁▁", "▁ ▁▁", "▁ ▁"])
        #expect(RebuiltVocabulary.addedTokens(json) == ["0 <unk> special", "1 <s> special", "2 </s> special"])
        #expect(config["bos_token"] == "<s>" && config["eos_token"] == "</s>" && config["unk_token"] == "<unk>" && config["pad_token"] == .null)
        #expect(config["add_bos_token"] == true && config["add_eos_token"] == false)
    }
}

// MARK: - Made-up vocabularies (expected values: transformers 5.24, via tools/check_gguf_vocab.py)

@Suite("Made-up GGUF vocabularies rebuilt as tokenizer.json")
struct GGUFVocabularyMadeUpTests {
    @Test("Merges are derived as transformers derives them: by score, then longer left, then longer right, then first appearance")
    func derivedMergeOrder() throws {
        let scratch = ScratchDirectory()
        // Every score equal: only the lengths and the order of appearance decide.
        let words = ["a", "b", "c", "ab", "bc", "abc", "ca", "cab", "bca"]
        var ties = MetadataGGUF.sentencePiece(words, scores: words.map { _ in 0 })
        ties["tokenizer.ggml.bos_token_id"] = nil
        ties["tokenizer.ggml.eos_token_id"] = nil
        let (tokenizer, json, _) = try RebuiltVocabulary.build(ties.file(scratch, "ties"), name: "ties")
        #expect(RebuiltVocabulary.merges(json) == ["ab c", "ca b", "bc a", "a bc", "c ab", "b ca", "a b", "b c", "c a"])
        // add_bos_token defaults to true for llama, but without a BOS id there is nothing to add.
        #expect(RebuiltVocabulary.at(json, "post_processor.single") == [["Sequence": ["id": "A", "type_id": 0]]])
        #expect(RebuiltVocabulary.at(json, "post_processor.special_tokens") == [:])
        #expect(!tokenizer.addsBOS)

        // Scores first; splits are at code points ("▁é" is two, not four bytes' worth).
        let (_, plain, config) = try RebuiltVocabulary.build(MetadataGGUF.sentencePiece(MetadataGGUF.words).file(scratch, "plain"), name: "plain")
        #expect(RebuiltVocabulary.merges(plain) == ["a b", "▁ a", "▁a b", "▁ ab", "b a", "a ab", "▁ é"])
        #expect(config["unk_token"] == .null && config["bos_token"] == "<s>")
    }

    @Test("A repeated token keeps its last id and its last score, and merges it in its first place")
    func repeatedTokens() throws {
        let scratch = ScratchDirectory()
        let gguf = MetadataGGUF.sentencePiece(MetadataGGUF.words + ["ab", "a"], scores: (0..<10).map { -Float($0) } + [-20, 5])
        let (tokenizer, json, _) = try RebuiltVocabulary.build(gguf.file(scratch, "dup"), name: "dup")
        let vocab = try #require(json["model"]?["vocab"]?.objectMembers)
        #expect(vocab.count == 269 && vocab.first { $0.0 == "ab" }?.1 == 269 && vocab.first { $0.0 == "a" }?.1 == 270)
        #expect(!vocab.contains { $0.1 == 260 || $0.1 == 262 })
        #expect(RebuiltVocabulary.merges(json) == ["▁ a", "▁a b", "▁ ab", "b a", "a ab", "▁ é", "a b"])
        #expect(tokenizer.encode("ab", addSpecialTokens: false) == [264])  // "▁ab"
    }

    @Test("Special tokens: LlamaTokenizer's defaults are added even when the vocabulary lacks them, the GGUF's own are used")
    func specialTokensWithOtherNames() throws {
        let scratch = ScratchDirectory()
        var gguf = MetadataGGUF.sentencePiece(MetadataGGUF.words)
        gguf["tokenizer.ggml.tokens"] = .strings(["<pad>", "<bos>", "<eos>"] + MetadataGGUF.byteTokens + MetadataGGUF.words)
        gguf["tokenizer.ggml.token_type"] = .int32s([3, 3, 3] + [Int32](repeating: 6, count: 256) + [Int32](repeating: 1, count: 10))
        let (tokenizer, json, config) = try RebuiltVocabulary.build(gguf.file(scratch, "names"), name: "names")
        #expect(RebuiltVocabulary.addedTokens(json) == ["0 <pad> special", "1 <bos> special", "2 <eos> special",
                                                        "269 <s> special", "270 </s> special", "271 <unk> special"])
        #expect(config["bos_token"] == "<bos>" && config["eos_token"] == "<eos>" && config["unk_token"] == .null)
        #expect(tokenizer.encode("a") == [1, 263] && tokenizer.vocabularySize == 272)
    }

    @Test("Token types: control tokens are special, user-defined ones plain (even <s>), and a user-defined BOS stays plain")
    func tokenTypes() throws {
        let scratch = ScratchDirectory()
        var gguf = MetadataGGUF.sentencePiece(MetadataGGUF.words + ["<think>", "<ctl>"])
        // <s> user-defined, <think> user-defined, <ctl> control.
        gguf["tokenizer.ggml.token_type"] = .int32s([2, 4, 3] + [Int32](repeating: 6, count: 256) + [Int32](repeating: 1, count: 10) + [4, 3])
        gguf["tokenizer.ggml.bos_token_id"] = .uint32(269)
        let (tokenizer, json, _) = try RebuiltVocabulary.build(gguf.file(scratch, "types"), name: "types")
        #expect(RebuiltVocabulary.addedTokens(json) == ["0 <unk> special", "1 <s> plain", "2 </s> special", "269 <think> plain", "270 <ctl> special"])
        // Each text piece after an added token gets the prefix space (259 is "▁"), as llama.cpp gives it.
        #expect(tokenizer.encode("a<think>b<ctl>", addSpecialTokens: true) == [269, 263, 269, 259, 261, 270])
    }

    @Test("add_bos_token and add_eos_token shape the post-processor, as update_post_processor does")
    func bosAndEOSFlags() throws {
        let scratch = ScratchDirectory()
        var gguf = MetadataGGUF.sentencePiece(MetadataGGUF.words)
        gguf["tokenizer.ggml.add_bos_token"] = .bool(false)
        gguf["tokenizer.ggml.add_eos_token"] = .bool(true)
        gguf["tokenizer.chat_template"] = .string("{{ messages }}")
        let (tokenizer, json, config) = try RebuiltVocabulary.build(gguf.file(scratch, "eos"), name: "eos")
        #expect(RebuiltVocabulary.at(json, "post_processor.pair") == [
            ["Sequence": ["id": "A", "type_id": 0]], ["SpecialToken": ["id": "</s>", "type_id": 0]],
            ["Sequence": ["id": "B", "type_id": 1]], ["SpecialToken": ["id": "</s>", "type_id": 1]],
        ])
        #expect(tokenizer.encode("ab") == [264, 2] && !tokenizer.addsBOS)
        #expect(config["add_bos_token"] == false && config["add_eos_token"] == true && config["chat_template"] == "{{ messages }}")
    }

    @Test("Merges listed in a llama GGUF are used as they are; a phi3 GGUF gets Phi-3's normalizer instead of Metaspace")
    func listedMergesAndPhi3() throws {
        let scratch = ScratchDirectory()
        var listed = MetadataGGUF.sentencePiece(MetadataGGUF.words)
        listed["tokenizer.ggml.merges"] = .strings(["a b", "▁ a", "▁a b"])
        let (_, json, _) = try RebuiltVocabulary.build(listed.file(scratch, "merges"), name: "merges")
        #expect(RebuiltVocabulary.merges(json) == ["a b", "▁ a", "▁a b"])

        let (phi3, phi3JSON, _) = try RebuiltVocabulary.build(MetadataGGUF.sentencePiece(MetadataGGUF.words, architecture: "phi3").file(scratch, "phi3"),
                                                              name: "phi3")
        #expect(phi3JSON["pre_tokenizer"] == .null)
        #expect(phi3JSON["normalizer"] == ["type": "Sequence", "normalizers": [
            ["type": "Prepend", "prepend": "▁"], ["type": "Replace", "pattern": ["String": " "], "content": "▁"],
        ]])
        #expect(phi3.encode(" ab", addSpecialTokens: false) == [259, 264])
    }

    @Test("A 256k-token vocabulary derives its merges in linear time (printed, not asserted)")
    func largeVocabulary() throws {
        var generator = SeededGenerator(seed: 7)
        let letters = Array("abcdefghijklmnopqrstuvwxyzéü▁")
        var seen = Set<String>()
        var words: [String] = []
        while words.count < 256_000 {
            let word = String((0..<Int.random(in: 2...9, using: &generator)).map { _ in letters.randomElement(using: &generator)! })
            if seen.insert(word).inserted { words.append(word) }
        }
        words += letters.map(String.init).filter { !seen.contains($0) }
        let scratch = ScratchDirectory()
        let path = MetadataGGUF.sentencePiece(words).file(scratch, "large")
        let clock = ContinuousClock()
        var files: (tokenizer: JSONValue, config: JSONValue)?
        let gguf = try GGUFFile(path: path)
        let elapsed = try clock.measure { files = try GGUFVocabulary.tokenizerFiles(gguf) }
        if let files { try RebuiltVocabulary.dump(path, name: "large-256k", files) }
        let merges = files?.tokenizer["model"]?["merges"]?.arrayValue?.count ?? 0
        print("256k vocabulary: \(merges) merges derived in \(elapsed)")
        #expect(merges == 242_093)
    }
}

// MARK: - Hostile metadata

@Suite("Hostile GGUF vocabularies")
struct GGUFVocabularyHostileTests {
    @Test("Deriving merges from tokens that split into one another over and over stops at its work limit")
    func derivationWorkLimit() throws {
        let words = (1...64).map { String(repeating: "a", count: $0) }
        let index = SpellingIndex(words)
        let scores = words.map { _ in 0.0 }
        #expect(throws: GGUFVocabularyError.derivationTooLarge(file: "f.gguf", limit: 1000)) {
            try GGUFVocabulary.derivedMerges(index, scores: scores, file: "f.gguf", workLimit: 1000)
        }
        // Every split of a^k is two tokens: k − 1 merges each.
        #expect(try GGUFVocabulary.derivedMerges(index, scores: scores, file: "f.gguf").count == 64 * 63 / 2)
    }

    @Test("Hostile GGUF vocabulary metadata is refused with its own error, naming the file and the key")
    func hostileGGUFVocabularies() throws {
        let scratch = ScratchDirectory()
        let n = 259 + MetadataGGUF.words.count
        typealias Case = (name: String, edit: (inout MetadataGGUF) -> Void, error: (String) -> GGUFVocabularyError)
        let cases: [Case] = [
            ("short-scores", { $0["tokenizer.ggml.scores"] = .float32s([Float](repeating: 0, count: n - 1)) },
             { .countMismatch(file: $0, key: "tokenizer.ggml.scores", count: n - 1, tokens: n) }),
            ("numeric-tokens", { $0["tokenizer.ggml.tokens"] = .uint32s([7, 8]) },
             { .wrongElementType(file: $0, key: "tokenizer.ggml.tokens", index: 0, expected: "a string", got: "a uint32 (7)") }),
            ("tokens-not-array", { $0["tokenizer.ggml.tokens"] = .string("<s>") },
             { .wrongType(file: $0, key: "tokenizer.ggml.tokens", expected: "an array", got: "a string (\"<s>\")") }),
            ("bos-out-of-range", { $0["tokenizer.ggml.bos_token_id"] = .uint32(UInt32(n)) },
             { .tokenIDOutOfRange(file: $0, key: "tokenizer.ggml.bos_token_id", id: n, tokens: n) }),
            ("negative-eos", { $0["tokenizer.ggml.eos_token_id"] = .int32(-1) },
             { .tokenIDOutOfRange(file: $0, key: "tokenizer.ggml.eos_token_id", id: -1, tokens: n) }),
            ("bos-is-text", { $0["tokenizer.ggml.bos_token_id"] = .string("1") },
             { .wrongType(file: $0, key: "tokenizer.ggml.bos_token_id", expected: "an integer", got: "a string (\"1\")") }),
            ("bert", { $0["tokenizer.ggml.model"] = .string("bert") }, { .unsupportedModel(file: $0, model: "bert") }),
            ("no-model", { $0["tokenizer.ggml.model"] = nil },
             { .missingKey(file: $0, key: "tokenizer.ggml.model", reason: "expected gpt2 or llama beside tokenizer.ggml.tokens") }),
            ("gemma", { $0["general.architecture"] = .string("gemma2") },
             { .unsupportedArchitecture(file: $0, model: "llama", architecture: "gemma2") }),
            ("qwen2-split", { $0["tokenizer.ggml.pre"] = .string("qwen2") }, { .unsupportedPreTokenizer(file: $0, model: "llama", pre: "qwen2") }),
            ("text-types", { $0["tokenizer.ggml.token_type"] = .strings([String](repeating: "1", count: n)) },
             { .wrongElementType(file: $0, key: "tokenizer.ggml.token_type", index: 0, expected: "an integer", got: "a string (\"1\")") }),
            ("short-types", { $0["tokenizer.ggml.token_type"] = .int32s([1]) },
             { .countMismatch(file: $0, key: "tokenizer.ggml.token_type", count: 1, tokens: n) }),
            ("bos-flag-number", { $0["tokenizer.ggml.add_bos_token"] = .uint32(1) },
             { .wrongType(file: $0, key: "tokenizer.ggml.add_bos_token", expected: "a bool", got: "a uint32 (1)") }),
            ("nan-score", { $0["tokenizer.ggml.scores"] = .float32s([Float](repeating: 0, count: n - 1) + [.nan]) },
             { .scoreNotANumber(file: $0, index: n - 1) }),
            ("no-scores", { $0["tokenizer.ggml.scores"] = nil },
             { .missingKey(file: $0, key: "tokenizer.ggml.scores", reason: "a llama vocabulary without tokenizer.ggml.merges needs scores to derive its merges") }),
            ("three-part-merge", { $0["tokenizer.ggml.merges"] = .strings(["a b", "a b c"]) }, { .malformedMerge(file: $0, index: 1, merge: "a b c") }),
            ("unknown-merge", { $0["tokenizer.ggml.merges"] = .strings(["b b"]) }, { .mergeNotInVocabulary(file: $0, index: 0, token: "bb") }),
            ("empty-bos", { $0["tokenizer.ggml.tokens"] = .strings(["<unk>", "", "</s>"] + MetadataGGUF.byteTokens + MetadataGGUF.words) },
             { .emptySpecialToken(file: $0, key: "tokenizer.ggml.bos_token_id", id: 1) }),
            ("gpt2-bos-out-of-range", {
                $0["tokenizer.ggml.model"] = .string("gpt2")
                $0["tokenizer.ggml.bos_token_id"] = .uint32(1 << 20)
            }, { .tokenIDOutOfRange(file: $0, key: "tokenizer.ggml.bos_token_id", id: 1 << 20, tokens: n) }),
            ("gpt2-merge-without-space", {
                $0["tokenizer.ggml.model"] = .string("gpt2")
                $0["tokenizer.ggml.merges"] = .strings(["ab"])
            }, { .malformedMerge(file: $0, index: 0, merge: "ab") }),
        ]
        for c in cases {
            var gguf = MetadataGGUF.sentencePiece(MetadataGGUF.words)
            c.edit(&gguf)
            let path = gguf.file(scratch, c.name)
            #expect(throws: c.error(path), "\(c.name)") { try GGUFVocabulary.tokenizerFiles(GGUFFile(path: path)) }
        }
        let bert = MetadataGGUF.sentencePiece(["x"]).file(scratch, "message")
        #expect(GGUFVocabularyError.unsupportedModel(file: bert, model: "bert").description
            == "\(bert): tokenizer.ggml.model 'bert' is not supported (expected gpt2 or llama)")

        var empty = MetadataGGUF.sentencePiece([])
        empty["tokenizer.ggml.tokens"] = nil
        #expect(try GGUFVocabulary.tokenizerFiles(GGUFFile(path: empty.file(scratch, "no-tokens"))) == nil)
    }
}
