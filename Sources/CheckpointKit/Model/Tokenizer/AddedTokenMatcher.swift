/// One entry of `added_tokens`: a string that is never split, matched in the text before BPE.
public struct AddedToken: Equatable, Sendable {
    /// The id `tokenizers` gives it on loading (see `Tokenizer.init(json:file:config:)`).
    public var id: Int
    /// The exact text matched.
    public var content: String
    /// Special tokens (BOS, EOS, chat markers) are skipped by `decode(skipSpecialTokens: true)`.
    public var special: Bool
    /// Matched in the normalized text (against its own normalized form) rather than the raw text.
    public var normalized: Bool
    /// Swallows the whitespace before it.
    public var lstrip: Bool
    /// Swallows the whitespace after it.
    public var rstrip: Bool
    /// Matches only where it is not inside a word.
    public var singleWord: Bool
}

/// Finds added tokens in text the way `tokenizers`' `AddedVocabulary` does: leftmost match,
/// longest first at a position (Aho-Corasick, LeftmostLongest), the search resuming after each
/// match; `single_word` discards matches inside words, `lstrip`/`rstrip` widen a match over
/// neighbouring whitespace.
struct AddedTokenMatcher: Sendable {
    struct Entry: Sendable {
        var bytes: [UInt8]
        var id: Int
        var lstrip: Bool
        var rstrip: Bool
        var singleWord: Bool
    }

    private let entries: [Entry]
    /// For each first byte, the entries starting with it, longest first.
    private let byFirstByte: [[Int32]]
    /// Whether any entry starts with the byte: the scan's only test on ordinary text.
    private let isFirstByte: [Bool]
    let isEmpty: Bool

    init(_ entries: [Entry]) {
        let usable = entries.filter { !$0.bytes.isEmpty }
        self.entries = usable
        var table = [[Int32]](repeating: [], count: 256)
        for (k, entry) in usable.enumerated() { table[Int(entry.bytes[0])].append(Int32(k)) }
        for b in 0..<256 where table[b].count > 1 {
            // Longest first; equal lengths keep file order.
            table[b] = table[b].enumerated().sorted {
                let (x, y) = (usable[Int($0.element)].bytes.count, usable[Int($1.element)].bytes.count)
                return x != y ? x > y : $0.offset < $1.offset
            }.map(\.element)
        }
        byFirstByte = table
        isFirstByte = table.map { !$0.isEmpty }
        isEmpty = usable.isEmpty
    }

    /// A piece of the text: an added token's id over `range`, or text to tokenize (`id` nil).
    struct Segment {
        var start: Int
        var end: Int
        var id: Int?
    }

    /// Splits `p[0..<count]` into added tokens and the text between them (empty gaps omitted).
    func split(_ p: UnsafePointer<UInt8>, _ count: Int, into segments: inout [Segment]) {
        segments.removeAll(keepingCapacity: true)
        var emitted = 0  // `start_offset` of tokenizers: the end of the last segment
        var searchFrom = 0
        while let (matchStart, matchEnd, entry) = nextMatch(p, from: searchFrom, count) {
            searchFrom = matchEnd
            let token = entries[entry]
            var start = matchStart, stop = matchEnd
            if token.singleWord {
                let wordBefore = start > 0 && isWordScalar(scalarBefore(p, start))
                let wordAfter = stop < count && isWordScalar(decodeUTF8Scalar(p, stop, count).scalar)
                if wordBefore || wordAfter { continue }
            }
            if token.lstrip {
                var s = start
                while s > 0 {
                    let before = scalarStart(p, s)
                    guard ScalarClass.of(decodeUTF8Scalar(p, before, count).scalar) == .whitespace else { break }
                    s = before
                }
                start = max(s, emitted)
            }
            if token.rstrip {
                while stop < count {
                    let (scalar, n) = decodeUTF8Scalar(p, stop, count)
                    guard ScalarClass.of(scalar) == .whitespace else { break }
                    stop += n
                }
                // Resume after the swallowed whitespace, so matches never overlap.
                searchFrom = stop
            }
            if start < emitted { start = emitted }
            if emitted < start { segments.append(Segment(start: emitted, end: start, id: nil)) }
            segments.append(Segment(start: start, end: stop, id: token.id))
            emitted = stop
        }
        if emitted < count { segments.append(Segment(start: emitted, end: count, id: nil)) }
    }

    /// The leftmost-longest match starting at or after `from`.
    private func nextMatch(_ p: UnsafePointer<UInt8>, from: Int, _ count: Int) -> (Int, Int, Int)? {
        var i = from
        while i < count {
            let skip = isFirstByte.withUnsafeBufferPointer { starts in
                var j = i
                while j < count && !starts[Int(p[j])] { j += 1 }
                return j
            }
            i = skip
            if i < count {
                for k in byFirstByte[Int(p[i])] {
                    let bytes = entries[Int(k)].bytes
                    if bytes.count <= count - i
                        && bytes.withUnsafeBufferPointer({ equalBytes($0.baseAddress!, p + i, $0.count) })
                    {
                        return (i, i + bytes.count, Int(k))
                    }
                }
            }
            i += 1
        }
        return nil
    }
}

/// The start of the scalar that ends just before `i` (> 0) in UTF-8 text.
@inline(__always)
func scalarStart(_ p: UnsafePointer<UInt8>, _ i: Int) -> Int {
    var s = i - 1
    while s > 0 && p[s] & 0xC0 == 0x80 && i - s < 4 { s -= 1 }
    return s
}

func scalarBefore(_ p: UnsafePointer<UInt8>, _ i: Int) -> UInt32 {
    let s = scalarStart(p, i)
    return decodeUTF8Scalar(p, s, i).scalar
}

/// `\w` of Rust's `regex` crate: Alphabetic, marks, decimal numbers, connector punctuation,
/// join controls.
func isWordScalar(_ value: UInt32) -> Bool {
    guard let scalar = Unicode.Scalar(value) else { return false }
    let properties = scalar.properties
    if properties.isAlphabetic || properties.isJoinControl { return true }
    switch properties.generalCategory {
    case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
    default: return false
    }
}
