@testable import CheckpointKit
import Foundation
import Testing
import TestSupport

/// The `llama` (SentencePiece) vocabulary ckpt writes into a GGUF, read back by ckpt's GGUF
/// reader (which gives llama.cpp's ids on all 46 of its Llama-2 test cases and derives merges from
/// scores as transformers does): the round trip must tokenize as the original tokenizer.json.
@Suite("SentencePiece vocabularies written to GGUF", .enabled(if: TokenizerAssets.available, TokenizerAssets.skipReason))
struct GGUFExportSentencePieceTests {
    /// A GGUF v3 holding only `kv`, as GGUFExport writes its metadata.
    static func metadataOnly(_ kv: [(String, GGUFExport.Value)], at path: String) throws {
        var header = GGUFExport.Buffer()
        header.u32(GGUFFile.magic)
        header.u32(3)
        header.u64(0)
        header.u64(UInt64(kv.count))
        for (key, value) in kv {
            header.string(key)
            GGUFExport.write(value, into: &header)
        }
        try Data(header.bytes).write(to: URL(fileURLWithPath: path))
    }

    static func llamaMetadata() throws -> [(String, GGUFExport.Value)] {
        let json = try JSONParser.parse(readBytes(TokenizerAssets.path("llama_tokenizer.json")))
        let config = try JSONParser.parse(readBytes(TokenizerAssets.path("llama_tokenizer_config.json")))
        return try GGUFExport.tokenizerMetadata(json, special: config, chatTemplate: nil, file: "llama_tokenizer.json", vocabulary: 32000)
    }

    @Test("Llama-2's tokenizer.json becomes a llama vocabulary: pre default, byte pieces typed BYTE, merges as scores, space prefix")
    func llamaKeys() throws {
        let kv = Dictionary(try Self.llamaMetadata(), uniquingKeysWith: { a, _ in a })
        guard case .string("llama")? = kv["tokenizer.ggml.model"], case .string("default")? = kv["tokenizer.ggml.pre"],
              case .strings(let tokens)? = kv["tokenizer.ggml.tokens"], case .f32s(let scores)? = kv["tokenizer.ggml.scores"],
              case .i32s(let types)? = kv["tokenizer.ggml.token_type"], case .bool(true)? = kv["tokenizer.ggml.add_space_prefix"],
              case .bool(true)? = kv["tokenizer.ggml.add_bos_token"]
        else { Issue.record("keys missing or of the wrong kind: \(kv.keys.sorted())"); return }
        #expect(tokens.count == 32000 && scores.count == 32000 && types.count == 32000)
        #expect(tokens[3] == "<0x00>" && types[3] == 6 && tokens[258] == "<0xFF>" && types[258] == 6)
        #expect(types[1] == 3 && types[2] == 3)  // <s>, </s>: control
        #expect(kv["tokenizer.ggml.merges"] == nil)
        // The first merges' pieces ("▁t", "er") score 0 and −1, later ones lower, in merge order.
        let first = try #require(tokens.firstIndex(of: "▁t")), second = try #require(tokens.firstIndex(of: "er"))
        #expect(scores[first] == 0 && scores[second] == -1)
        #expect(scores.min()! < -60000)
    }

    @Test("Read back from the GGUF, the vocabulary tokenizes WikiText-2 exactly as the original tokenizer.json")
    func roundTrip() throws {
        let corpus = Paths.sharedAssets + "/corpora/wikitext-2-raw_wiki.test.raw"
        let scratch = ScratchDirectory()
        try Self.metadataOnly(try Self.llamaMetadata(), at: scratch.file("vocab.gguf"))
        let files = try #require(try GGUFVocabulary.tokenizerFiles(GGUFFile(path: scratch.file("vocab.gguf"))))
        let rebuilt = try Tokenizer(json: files.tokenizer, file: "rebuilt", config: files.config)
        let original = try TokenizerAssets.tokenizer("llama_tokenizer.json")
        let text = String(decoding: readBytes(corpus).prefix(300_000), as: UTF8.self)
        #expect(rebuilt.encode(text) == original.encode(text))
        for c in try llamaCppVocabularyCases("ggml-vocab-llama-spm.gguf") {
            #expect(rebuilt.encode(c.text, addSpecialTokens: false) == c.ids, "\(c.text.debugDescription)")
        }
    }

    @Test("Gemma's layout (spaces replaced by ▁, then a Split on spaces that finds none) writes no space prefix, as the converter sets for Gemma")
    func gemmaLayoutHasNoSpacePrefix() throws {
        guard case .object(var members) = try JSONParser.parse(readBytes(TokenizerAssets.path("llama_tokenizer.json"))) else { return }
        // transformers' GemmaConverter: normalizer Replace(" ", "▁"), pre-tokenizer Split(" ", merged_with_previous).
        let replace: JSONValue = ["type": "Replace", "pattern": ["String": " "], "content": "▁"]
        let split: JSONValue = ["type": "Split", "pattern": ["String": " "], "behavior": "MergedWithPrevious", "invert": false]
        members = members.map { $0.0 == "normalizer" ? ($0.0, replace) : $0.0 == "pre_tokenizer" ? ($0.0, split) : $0 }
        if !members.contains(where: { $0.0 == "pre_tokenizer" }) { members.append(("pre_tokenizer", split)) }
        let kv = Dictionary(try GGUFExport.tokenizerMetadata(.object(members), special: nil, chatTemplate: nil, file: "t.json", vocabulary: 32000),
                            uniquingKeysWith: { a, _ in a })
        guard case .bool(let prefix)? = kv["tokenizer.ggml.add_space_prefix"], case .string("llama")? = kv["tokenizer.ggml.model"] else {
            Issue.record("keys missing: \(kv.keys.sorted())"); return
        }
        #expect(prefix == false)
    }

    @Test("A SentencePiece-style tokenizer whose prefix rule ckpt cannot map is refused by name")
    func unknownLayoutRefused() throws {
        guard case .object(var members) = try JSONParser.parse(readBytes(TokenizerAssets.path("llama_tokenizer.json"))) else { return }
        members = members.map { $0.0 == "normalizer" ? ($0.0, ["type": "NFC"]) : $0 }
        #expect(throws: GGUFExport.Failure.self) {
            _ = try GGUFExport.tokenizerMetadata(.object(members), special: nil, chatTemplate: nil, file: "t.json", vocabulary: 32000)
        }
    }
}
