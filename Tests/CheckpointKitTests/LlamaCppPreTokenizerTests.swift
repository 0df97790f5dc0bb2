@testable import CheckpointKit
import Foundation
import Testing
import TestSupport

/// `tokenizer.ggml.pre` as llama.cpp's converter names it. The table is generated from the pinned
/// llama.cpp by tools/make_pre_tokenizer_table.py; these tests hold ckpt's tokenizer to the names
/// llama.cpp itself wrote into its vocabulary GGUFs.
@Suite("llama.cpp's pre-tokenizer names")
struct LlamaCppPreTokenizerTests {
    /// The vocabulary GGUFs of the pinned llama.cpp (models/), present once `make llama-cpp` ran.
    static let llamaCppModels = Paths.repository + "/.build/llama.cpp/src/models"

    @Test("The probe text is llama.cpp's, byte for byte (its sha256 recorded from conversion/base.py)")
    func probeTextIsLlamaCpps() {
        #expect(LlamaCppPreTokenizer.probeText.utf8.count == 431)
        #expect(sha256Hex(Array(LlamaCppPreTokenizer.probeText.utf8)) == "a36179c1e2b1cfcfbfad1dc779addad2ffc778201e4cf0d538bddeafa2c526da")
    }

    @Test("GPT-2's own tokenizer.json is named gpt-2 by its probe hash, as llama.cpp's converter names it",
          .enabled(if: TokenizerAssets.available, TokenizerAssets.skipReason))
    func gpt2ByHash() throws {
        let tokenizer = try TokenizerAssets.tokenizer("gpt2_tokenizer.json")
        let json = try JSONParser.parse(readBytes(TokenizerAssets.path("gpt2_tokenizer.json")))
        let (identification, _) = LlamaCppPreTokenizer.identify(tokenizer, json: json)
        #expect(identification?.name == "gpt-2")
        #expect(identification?.evidence == .probeHash)
    }

    @Test("A GGUF vocabulary's pre-tokenizer survives ckpt's tokenizer: the name found is the one the file carries",
          .enabled(if: TokenizerAssets.available, TokenizerAssets.skipReason))
    func assetVocabularyKeepsItsName() throws {
        let rebuilt = try RebuiltVocabulary.build(TokenizerAssets.path("ggml-vocab-gpt-2.gguf"), name: "gpt-2")
        let (identification, _) = LlamaCppPreTokenizer.identify(rebuilt.tokenizer, json: rebuilt.json)
        #expect(identification?.name == "gpt-2")
        #expect(identification?.evidence == .probeHash)
    }

    /// A tokenizer.json as the model's own folder ships it, from the vocabulary of llama.cpp's
    /// GGUF: the GGUF keeps only the vocabulary and the pre-tokenizer's name, so the splitting
    /// rules (and BOS) of the two families whose rules ckpt rebuilds otherwise are put back.
    static func shippedTokenizer(_ files: (tokenizer: JSONValue, config: JSONValue), pre: String) -> JSONValue {
        guard case .object(var members) = files.tokenizer else { return files.tokenizer }
        func set(_ key: String, _ value: JSONValue) { members = members.map { $0.0 == key ? ($0.0, value) : $0 } }
        let byteLevel: JSONValue = ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false]
        switch pre {
        case "llama-bpe":  // Llama 3: its post-processor adds <|begin_of_text|> (128000)
            set("post_processor", ["type": "TemplateProcessing",
                                   "single": [["SpecialToken": ["id": "<|begin_of_text|>", "type_id": 0]], ["Sequence": ["id": "A", "type_id": 0]]],
                                   "pair": [["Sequence": ["id": "A", "type_id": 0]], ["Sequence": ["id": "B", "type_id": 1]]],
                                   "special_tokens": ["<|begin_of_text|>": ["id": "<|begin_of_text|>", "ids": [128000], "tokens": ["<|begin_of_text|>"]]]])
        case "qwen2":  // Qwen2: NFC, then its one-digit split
            set("normalizer", ["type": "NFC"])
            let qwen2 = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
            set("pre_tokenizer", ["type": "Sequence", "pretokenizers": [
                ["type": "Split", "pattern": ["Regex": .string(qwen2)], "behavior": "Isolated", "invert": false], byteLevel]])
        default: break
        }
        return .object(members)
    }

    @Test("The byte-level vocabularies of the pinned llama.cpp are named by ckpt's tokenizer as llama.cpp named them",
          .enabled(if: FileManager.default.fileExists(atPath: llamaCppModels), "llama.cpp's models/ is absent (run make llama-cpp)"))
    func llamaCppVocabularies() throws {
        // The others (command-r, falcon, qwen35…) ship splitting rules the GGUF does not keep.
        let expected = ["gpt-2", "deepseek-coder", "deepseek-llm", "refact", "starcoder", "llama-bpe", "qwen2"]
        var named: [String] = []
        for name in try FileManager.default.contentsOfDirectory(atPath: Self.llamaCppModels).sorted() where name.hasSuffix(".gguf") {
            let gguf = try GGUFFile(path: Self.llamaCppModels + "/" + name)
            guard case .string(let pre)? = gguf.value("tokenizer.ggml.pre"), expected.contains(pre),
                  let files = try GGUFVocabulary.tokenizerFiles(gguf) else { continue }
            let json = Self.shippedTokenizer(files, pre: pre)
            let (identification, hash) = LlamaCppPreTokenizer.identify(try Tokenizer(json: json, config: files.config), json: json)
            print("\(name): llama.cpp wrote \(pre); ckpt finds \(identification?.name ?? "nothing") (\(hash))")
            #expect(identification?.name == pre, "\(name)")
            #expect(identification?.evidence == .probeHash, "\(name)")
            named.append(pre)
        }
        #expect(named.sorted() == expected.sorted())
    }

    @Test("The probe tokenizer, built from only the merges that can fire on the probe text, gives the whole tokenizer's probe ids: GPT-2's, with a prefix space, after a Split, and each byte-level vocabulary of llama.cpp's",
          .enabled(if: TokenizerAssets.available, TokenizerAssets.skipReason))
    func probeTokenizerKeepsTheProbeIds() throws {
        let gpt2 = try JSONParser.parse(readBytes(TokenizerAssets.path("gpt2_tokenizer.json")))
        guard case .object(let members) = gpt2 else { Issue.record("not an object"); return }
        func with(_ pre: JSONValue) -> JSONValue { .object(members.map { $0.0 == "pre_tokenizer" ? ($0.0, pre) : $0 }) }
        let prefixed: JSONValue = ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true]
        let splitFirst: JSONValue = ["type": "Sequence", "pretokenizers": [
            ["type": "Digits", "individual_digits": true],
            ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true],
        ]]
        var cases: [(String, JSONValue, JSONValue?)] = [("gpt2", gpt2, nil), ("gpt2, prefix space", with(prefixed), nil),
                                                         ("gpt2, digits first", with(splitFirst), nil)]
        if FileManager.default.fileExists(atPath: Self.llamaCppModels) {
            for name in try FileManager.default.contentsOfDirectory(atPath: Self.llamaCppModels).sorted() where name.hasSuffix(".gguf") {
                let gguf = try GGUFFile(path: Self.llamaCppModels + "/" + name)
                guard case .string(let pre)? = gguf.value("tokenizer.ggml.pre"), case .string("gpt2")? = gguf.value("tokenizer.ggml.model"),
                      let files = try? GGUFVocabulary.tokenizerFiles(gguf) else { continue }
                cases.append((name, Self.shippedTokenizer(files, pre: pre), files.config))
            }
        } else {
            print("llama.cpp's vocabularies are absent (run make llama-cpp): GPT-2's cases only")
        }
        for (name, json, config) in cases {
            let whole = try Tokenizer(json: json, config: config)
            // Qwen2's NFC normalizer keeps the whole tokenizer (the last check below); every other is cut.
            let normalized = json["normalizer"] != nil && json["normalizer"] != .null
            let reduced = LlamaCppPreTokenizer.withProbeMergesOnly(json)
            #expect((reduced == nil) == normalized, "\(name): cut \(reduced != nil), normalizer \(normalized)")
            if let reduced {
                let kept = reduced["model"]?["merges"]?.arrayValue?.count ?? 0, all = json["model"]?["merges"]?.arrayValue?.count ?? 0
                #expect(kept > 0 && kept * 5 < all, "\(name): \(kept) of \(all) merges kept")
            }
            let probe = try LlamaCppPreTokenizer.probeTokenizer(json: json, file: name, config: config)
            #expect(probe.encode(LlamaCppPreTokenizer.probeText, addSpecialTokens: true)
                    == whole.encode(LlamaCppPreTokenizer.probeText, addSpecialTokens: true), "\(name)")
        }
        // A normalizer can change the bytes words are made of: the whole tokenizer is built.
        var normalized = members
        normalized = normalized.map { $0.0 == "normalizer" ? ($0.0, ["type": "NFC"]) : $0 }
        #expect(LlamaCppPreTokenizer.withProbeMergesOnly(.object(normalized)) == nil)
    }

    @Test("A newly trained byte-level tokenizer with GPT-2's pre-tokenizer (the fixtures') is named gpt-2 by its structure")
    func fixtureByStructure() throws {
        let path = Paths.repository + "/fixtures/models/tiny-llama/tokenizer.json"
        let tokenizer = try Tokenizer(path: path)
        let json = try JSONParser.parse(readBytes(path))
        let (identification, hash) = LlamaCppPreTokenizer.identify(tokenizer, json: json)
        #expect(identification?.name == "gpt-2")
        #expect(identification?.evidence == .gpt2Structure)
        #expect(identification?.probeHash == hash && hash.count == 64)
    }

    @Test("A pre-tokenizer that neither the table nor the GPT-2 structure names is left unnamed")
    func digitsAreNotGPT2() throws {
        let path = Paths.repository + "/fixtures/models/tiny-llama/tokenizer.json"
        guard case .object(var members) = try JSONParser.parse(readBytes(path)) else { Issue.record("not an object"); return }
        let digitsFirst: JSONValue = ["type": "Sequence", "pretokenizers": [
            ["type": "Digits", "individual_digits": true],
            ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true],
        ]]
        members = members.map { $0.0 == "pre_tokenizer" ? ($0.0, digitsFirst) : $0 }
        let json = JSONValue.object(members)
        let (identification, _) = LlamaCppPreTokenizer.identify(try Tokenizer(json: json), json: json)
        #expect(identification == nil)
    }
}
