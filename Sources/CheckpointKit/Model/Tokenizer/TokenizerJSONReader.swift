/// Typed access to the parts of a `tokenizer.json`, turning every shape mismatch into a
/// `TokenizerError.malformed` that names the file and the field.
struct TokenizerJSONReader {
    let file: String

    func malformed(_ field: String, expected: String, got value: JSONValue?) -> TokenizerError {
        .malformed(file: file, field: field, expected: expected, got: describeJSON(value))
    }

    func malformed(_ field: String, expected: String, gotText: String) -> TokenizerError {
        .malformed(file: file, field: field, expected: expected, got: gotText)
    }

    func members(_ value: JSONValue?, _ field: String) throws(TokenizerError) -> [(String, JSONValue)] {
        guard let members = value?.objectMembers else { throw malformed(field, expected: "an object", got: value) }
        return members
    }

    func array(_ value: JSONValue?, _ field: String) throws(TokenizerError) -> [JSONValue] {
        guard let array = value?.arrayValue else { throw malformed(field, expected: "an array", got: value) }
        return array
    }

    func string(_ value: JSONValue?, _ field: String) throws(TokenizerError) -> String {
        guard let string = value?.stringValue else { throw malformed(field, expected: "a string", got: value) }
        return string
    }

    /// A string, or nil when the field is absent or null.
    func optionalString(_ value: JSONValue?, _ field: String) throws(TokenizerError) -> String? {
        guard let value, value != .null else { return nil }
        return try string(value, field)
    }

    func bool(_ value: JSONValue?, _ field: String, default fallback: Bool) throws(TokenizerError) -> Bool {
        guard let value, value != .null else { return fallback }
        guard let b = value.boolValue else { throw malformed(field, expected: "true or false", got: value) }
        return b
    }

    func integer(_ value: JSONValue?, _ field: String, in range: ClosedRange<Int>) throws(TokenizerError) -> Int {
        guard let v = value?.intValue, range.contains(v) else {
            throw malformed(field, expected: "an integer in \(range.lowerBound)...\(range.upperBound)", got: value)
        }
        return v
    }

    /// The `type` member of a component object.
    func type(_ value: JSONValue, _ field: String) throws(TokenizerError) -> String {
        try string(value["type"], field + ".type")
    }

    /// A string that must be exactly one Unicode scalar (a Metaspace replacement, a Strip content).
    func scalar(_ value: JSONValue?, _ field: String) throws(TokenizerError) -> Unicode.Scalar {
        let s = try string(value, field)
        guard s.unicodeScalars.count == 1, let scalar = s.unicodeScalars.first else {
            throw malformed(field, expected: "a single character", got: value)
        }
        return scalar
    }

    /// `{"String": "x"}`, the only pattern form of Replace we implement (`{"Regex": …}` is refused).
    func stringPattern(_ value: JSONValue?, _ field: String) throws(TokenizerError) -> String {
        let members = try self.members(value, field)
        if let literal = members.first(where: { $0.0 == "String" })?.1 {
            let s = try string(literal, field + ".String")
            guard !s.isEmpty else { throw malformed(field + ".String", expected: "a non-empty string", got: literal) }
            return s
        }
        if let regex = members.first(where: { $0.0 == "Regex" })?.1 {
            throw TokenizerError.unsupportedOption(file: file, field: field, expected: "a {\"String\": …} pattern",
                                                   got: "the regex \(describeJSON(regex))")
        }
        throw malformed(field, expected: "{\"String\": …}", got: value)
    }
}
