/// A parsed JSON document.
///
/// Objects keep their members in file order (`[(key, value)]`), because some formats care
/// (a safetensors header names tensors in the writer's order) and because duplicate keys must
/// be detectable rather than silently collapsed.
public enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    /// Integers that fit in 64 bits keep their exact value; everything else is a `Double`.
    case integer(Int64)
    case unsignedInteger(UInt64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([(String, JSONValue)])

    /// Structural equality: objects need the same members in the same order, and `.integer(1)` ≠ `.double(1)`.
    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case let (.bool(a), .bool(b)): return a == b
        case let (.integer(a), .integer(b)): return a == b
        case let (.unsignedInteger(a), .unsignedInteger(b)): return a == b
        case let (.double(a), .double(b)): return a == b
        case let (.string(a), .string(b)): return a == b
        case let (.array(a), .array(b)): return a == b
        case let (.object(a), .object(b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    /// The member named `key` of an object (the first, if a file repeats it), else nil.
    public subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members.first { $0.0 == key }?.1
    }

    /// The string, when this is a string; else nil.
    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// The Boolean, when this is `true` or `false`; else nil.
    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    /// The value as an `Int` when it is an integer that fits (or a double with no fraction).
    public var intValue: Int? {
        switch self {
        case .integer(let v): return Int(exactly: v)
        case .unsignedInteger(let v): return Int(exactly: v)
        case .double(let d): return Int(exactly: d)
        default: return nil
        }
    }

    /// Any number as a `Double` (integers beyond 2^53 rounded); nil for non-numbers.
    public var doubleValue: Double? {
        switch self {
        case .integer(let v): return Double(v)
        case .unsignedInteger(let v): return Double(v)
        case .double(let d): return d
        default: return nil
        }
    }

    /// The elements, when this is an array; else nil.
    public var arrayValue: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    /// The members in file order, repeated keys kept, when this is an object; else nil.
    public var objectMembers: [(String, JSONValue)]? {
        if case .object(let m) = self { return m }
        return nil
    }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByFloatLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral
{
    /// A `.string` from a string literal.
    public init(stringLiteral value: String) { self = .string(value) }
    /// An `.integer` from an integer literal.
    public init(integerLiteral value: Int64) { self = .integer(value) }
    /// A `.bool` from `true` or `false`.
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    /// A `.double` from a floating-point literal.
    public init(floatLiteral value: Double) { self = .double(value) }
    /// An `.array` from an array literal.
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    /// An `.object` from a dictionary literal, members in the order written.
    public init(dictionaryLiteral elements: (String, JSONValue)...) { self = .object(elements) }
    /// `.null` from `nil`.
    public init(nilLiteral: ()) { self = .null }
}

extension JSONValue {
    /// An `.integer` holding `value`.
    public init(_ value: Int) { self = .integer(Int64(value)) }
    /// A `.double` holding `value`.
    public init(_ value: Double) { self = .double(value) }
    /// A `.string` holding `value`.
    public init(_ value: String) { self = .string(value) }
}
