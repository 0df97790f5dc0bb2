@testable import CheckpointKit
import Testing

@Test("The parser keeps member order and duplicate keys, so callers can refuse them")
func keepsOrderAndDuplicates() throws {
    let value = try JSONParser.parse(#" {"b": 1, "a": [true, null, -2.5e1], "b": "x"} "#)
    let members = try #require(value.objectMembers)
    #expect(members.map(\.0) == ["b", "a", "b"])
    #expect(value["a"] == [true, nil, -25.0])
}

@Test("Escapes decode, including surrogate pairs")
func escapes() throws {
    let value = try JSONParser.parse(#""a\"\\\/\n\u00e9\ud83d\ude00""#)
    #expect(value == .string("a\"\\/\né😀"))
}

@Test("Malformed documents are refused with the byte offset", arguments: [
    "", "{", "[1,]", "{\"a\" 1}", "01", "1.", "\"\u{01}\"", "\"\\ud800\"", "tru", "{} x", "\"\\x\"", "1e400",
])
func malformed(text: String) {
    #expect(throws: JSONSyntaxError.self) { try JSONParser.parse(text) }
}

@Test("Nesting deeper than the limit is an error, not a stack overflow")
func deepNesting() {
    let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
    #expect(throws: JSONSyntaxError.self) { try JSONParser.parse(deep) }
}

@Test("Integers keep 64-bit exactness; larger ones become unsigned or double")
func numbers() throws {
    #expect(try JSONParser.parse("9223372036854775807") == .integer(.max))
    #expect(try JSONParser.parse("18446744073709551615") == .unsignedInteger(.max))
    #expect(try JSONParser.parse("-0.5") == .double(-0.5))
}

@Test("Serialisation styles match serde_json and Python's json.dumps")
func styles() {
    let value: JSONValue = ["quant_type": "nf4", "blocksize": 64, "shape": [2, 3], "name": "é\"q", "x": 1e-05]
    #expect(value.serialized(style: .compact) == #"{"quant_type":"nf4","blocksize":64,"shape":[2,3],"name":"é\"q","x":1e-05}"#)
    #expect(value.serialized(style: .python) == #"{"quant_type": "nf4", "blocksize": 64, "shape": [2, 3], "name": "\u00e9\"q", "x": 1e-05}"#)
    #expect(JSONValue.object([("b", 1), ("a", [])]).serialized(style: .pretty, sortKeys: true) == "{\n  \"a\": [],\n  \"b\": 1\n}")
}
