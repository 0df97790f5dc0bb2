/// Every way a `tokenizer.json` can be refused, each naming the file, the part of it at fault,
/// and what was expected against what was found.
public enum TokenizerError: Error, Equatable, Sendable, CustomStringConvertible {
    case cannotRead(file: String, reason: String)
    case fileTooLarge(file: String, size: Int, limit: Int)
    case gitLFSPointer(file: String)
    case notUTF8(file: String, offset: Int)
    case notJSON(file: String, reason: String)
    /// A field is missing or has the wrong shape; `field` is a path like `model.vocab`.
    case malformed(file: String, field: String, expected: String, got: String)
    /// A component type we do not implement; `component` is `model`, `normalizer`,
    /// `pre_tokenizer`, `post_processor` or `decoder`.
    case unsupportedComponent(file: String, component: String, type: String, supported: [String])
    /// A known component with an option we do not implement (a Split regex we have no scanner
    /// for, BPE dropout, a continuing-subword prefix…).
    case unsupportedOption(file: String, field: String, expected: String, got: String)
    case vocabularyTooLarge(file: String, count: Int, limit: Int)
    case tokenIDOutOfRange(file: String, token: String, id: Int, limit: Int)
    case duplicateTokenID(file: String, id: Int, first: String, second: String)
    /// A merge names a token, or produces one, that is not in the vocabulary.
    case mergeNotInVocabulary(file: String, rank: Int, token: String)

    /// One line: the file (and tensor or key) at fault, what is wrong, and what was expected.
    public var description: String {
        switch self {
        case let .cannotRead(file, reason):
            return "\(file): cannot read (\(reason))"
        case let .fileTooLarge(file, size, limit):
            return "\(file): too large for a tokenizer.json (expected at most \(limit) bytes, got \(size))"
        case let .gitLFSPointer(file):
            return "\(file): a Git LFS pointer, not the tokenizer (expected JSON, got a pointer: run `git lfs pull`)"
        case let .notUTF8(file, offset):
            return "\(file): not UTF-8 (expected UTF-8 JSON, got an invalid byte at offset \(offset))"
        case let .notJSON(file, reason):
            return "\(file): not valid JSON (expected a tokenizer.json object, got \(reason))"
        case let .malformed(file, field, expected, got):
            return "\(file): \(field): malformed (expected \(expected), got \(got))"
        case let .unsupportedComponent(file, component, type, supported):
            return "\(file): \(component): unsupported type (expected one of \(supported.joined(separator: ", ")), got \(type))"
        case let .unsupportedOption(file, field, expected, got):
            return "\(file): \(field): unsupported (expected \(expected), got \(got))"
        case let .vocabularyTooLarge(file, count, limit):
            return "\(file): model.vocab: too many tokens (expected at most \(limit), got \(count))"
        case let .tokenIDOutOfRange(file, token, id, limit):
            return "\(file): token '\(token)': id out of range (expected 0..<\(limit), got \(id))"
        case let .duplicateTokenID(file, id, first, second):
            return "\(file): id \(id) given to two tokens (expected one token per id, got '\(first)' and '\(second)')"
        case let .mergeNotInVocabulary(file, rank, token):
            return "\(file): model.merges[\(rank)]: token not in the vocabulary (expected a token of model.vocab, got '\(token)')"
        }
    }
}

/// A short, bounded rendering of a JSON value for error messages.
func describeJSON(_ value: JSONValue?) -> String {
    guard let value else { return "nothing" }
    switch value {
    case .null: return "null"
    case .bool(let b): return "\(b)"
    case .integer(let v): return "\(v)"
    case .unsignedInteger(let v): return "\(v)"
    case .double(let d): return "\(d)"
    case .string(let s): return s.count > 80 ? "\"\(s.prefix(80))…\"" : "\"\(s)\""
    case .array(let a): return "an array of \(a.count)"
    case .object(let m): return "an object" + (m.first { $0.0 == "type" }.flatMap { $0.1.stringValue }.map { " of type \($0)" } ?? "")
    }
}
