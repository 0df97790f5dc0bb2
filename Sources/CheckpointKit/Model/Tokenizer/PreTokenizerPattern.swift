/// One of the word-splitting regexes of byte-level BPE tokenizers, matched by a hand-written
/// scanner over UTF-8 instead of a regex engine (the patterns are fixed, and this is the
/// tokenizer's hot loop).
///
/// Each pattern is a list of alternatives tried in order at a position (leftmost-first, as
/// Oniguruma and `fancy-regex` do); every scalar is matched by some alternative, so the matches
/// tile the text and a scanner only has to find where the match at a position ends.
struct PreTokenizerPattern: Equatable, Sendable {
    enum Family: Equatable, Sendable {
        /// GPT-2: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
        case gpt2
        /// cl100k (Llama-3, Qwen2): `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|
        /// \p{N}{1,N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
        case cl100k
    }

    enum Contractions: Equatable, Sendable {
        /// `'s|'t|…` exactly.
        case caseSensitive
        /// `(?i:'s|…)`: also `'S`, `'Re`…, and `'ſ` (U+017F folds to `s` under Unicode case folding).
        case caseInsensitive
        /// `'[sS]|'[tT]|…`: ASCII letters of either case only.
        case asciiCaseInsensitive
    }

    var family: Family
    var contractions: Contractions
    /// The most digits one match takes (`\p{N}{1,3}` for Llama-3, `\p{N}` for Qwen2); GPT-2 takes
    /// any number.
    var maximumDigits: Int

    static let gpt2 = PreTokenizerPattern(family: .gpt2, contractions: .caseSensitive, maximumDigits: .max)
    static let llama3 = PreTokenizerPattern(family: .cl100k, contractions: .caseInsensitive, maximumDigits: 3)
    static let qwen2 = PreTokenizerPattern(family: .cl100k, contractions: .caseInsensitive, maximumDigits: 1)

    /// The regex texts this scanner reproduces, as they appear in `tokenizer.json` files.
    static let known: [(regex: String, pattern: PreTokenizerPattern)] = {
        let gpt2Text = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
        let insensitive = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)"#
        let ascii = #"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"#
        func cl100k(_ contractions: String, _ digits: String) -> String {
            contractions + #"|[^\r\n\p{L}\p{N}]?\p{L}+|"# + digits + #"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
        }
        var asciiLlama3 = llama3, asciiQwen2 = qwen2
        asciiLlama3.contractions = .asciiCaseInsensitive
        asciiQwen2.contractions = .asciiCaseInsensitive
        return [
            (gpt2Text, .gpt2),
            (cl100k(insensitive, #"\p{N}{1,3}"#), .llama3),
            (cl100k(insensitive, #"\p{N}"#), .qwen2),
            (cl100k(ascii, #"\p{N}{1,3}"#), asciiLlama3),
            (cl100k(ascii, #"\p{N}"#), asciiQwen2),
        ]
    }()

    static func named(regex: String) -> PreTokenizerPattern? {
        known.first { $0.regex == regex }?.pattern
    }

    /// The end of the match that starts at `i` (`start <= i < end`); always greater than `i`.
    @inline(__always)
    func matchEnd(_ p: UnsafePointer<UInt8>, _ i: Int, _ end: Int, _ classes: ScalarClassTable) -> Int {
        switch family {
        case .gpt2: return gpt2MatchEnd(p, i, end, classes)
        case .cl100k: return cl100kMatchEnd(p, i, end, classes)
        }
    }

    /// The end of `'s|'t|'re|'ve|'m|'ll|'d` at `i` (which holds `'`), or nil.
    @inline(__always)
    private func contractionEnd(_ p: UnsafePointer<UInt8>, _ i: Int, _ end: Int) -> Int? {
        guard i + 1 < end else { return nil }
        var c1 = p[i + 1]
        if contractions != .caseSensitive {
            if c1 >= 0x41 && c1 <= 0x5A { c1 |= 0x20 }
            // ſ (U+017F, C5 BF) folds to s.
            if contractions == .caseInsensitive && c1 == 0xC5 && i + 2 < end && p[i + 2] == 0xBF { return i + 3 }
        }
        switch c1 {
        case UInt8(ascii: "s"), UInt8(ascii: "t"), UInt8(ascii: "m"), UInt8(ascii: "d"): return i + 2
        case UInt8(ascii: "r"), UInt8(ascii: "v"), UInt8(ascii: "l"):
            guard i + 2 < end else { return nil }
            var c2 = p[i + 2]
            if contractions != .caseSensitive && c2 >= 0x41 && c2 <= 0x5A { c2 |= 0x20 }
            let expected = c1 == UInt8(ascii: "l") ? UInt8(ascii: "l") : UInt8(ascii: "e")
            return c2 == expected ? i + 3 : nil
        default: return nil
        }
    }

    /// The end of the longest run of scalars of class `wanted` starting at `i`.
    @inline(__always)
    private func runEnd(_ p: UnsafePointer<UInt8>, _ i: Int, _ end: Int, _ wanted: ScalarClass, _ classes: ScalarClassTable) -> Int {
        var j = i
        while j < end {
            let b = p[j]
            if b < 0x80 {
                guard classes.basicPlane[Int(b)] == wanted.rawValue else { return j }
                j += 1
            } else {
                let (s, n) = decodeUTF8Scalar(p, j, end)
                guard classes.classOf(s) == wanted else { return j }
                j += n
            }
        }
        return j
    }

    @inline(__always)
    private func classAt(_ p: UnsafePointer<UInt8>, _ i: Int, _ end: Int, _ classes: ScalarClassTable) -> (ScalarClass, Int) {
        let (s, n) = p[i] < 0x80 ? (UInt32(p[i]), 1) : decodeUTF8Scalar(p, i, end)
        return (classes.classOf(s), n)
    }

    /// `\s+(?!\S)|\s+` at `i` (a whitespace scalar): the whole run when it reaches the end or is
    /// one scalar long, else the run without its last scalar (which then prefixes the next word).
    @inline(__always)
    private func whitespaceEnd(_ p: UnsafePointer<UInt8>, _ i: Int, _ end: Int, first: Int, _ classes: ScalarClassTable) -> Int {
        var lastStart = i
        var j = i + first
        while j < end {
            let (c, n) = classAt(p, j, end, classes)
            guard c == .whitespace else { break }
            lastStart = j
            j += n
        }
        if j == end || lastStart == i { return j }
        return lastStart
    }

    private func gpt2MatchEnd(_ p: UnsafePointer<UInt8>, _ i: Int, _ end: Int, _ classes: ScalarClassTable) -> Int {
        let b = p[i]
        if b == UInt8(ascii: "'"), let e = contractionEnd(p, i, end) { return e }
        let (c, n) = classAt(p, i, end, classes)
        if b == UInt8(ascii: " ") && i + 1 < end {
            // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: the space joins a following non-space run.
            let (next, m) = classAt(p, i + 1, end, classes)
            if next != .whitespace { return runEnd(p, i + 1 + m, end, next, classes) }
        }
        if c == .whitespace { return whitespaceEnd(p, i, end, first: n, classes) }
        return runEnd(p, i + n, end, c, classes)
    }

    private func cl100kMatchEnd(_ p: UnsafePointer<UInt8>, _ i: Int, _ end: Int, _ classes: ScalarClassTable) -> Int {
        let b = p[i]
        if b == UInt8(ascii: "'"), let e = contractionEnd(p, i, end) { return e }
        let (c, n) = classAt(p, i, end, classes)
        switch c {
        case .letter:
            return runEnd(p, i + n, end, .letter, classes)
        case .number:
            var j = i + n
            var count = 1
            while count < maximumDigits && j < end {
                let (d, m) = classAt(p, j, end, classes)
                guard d == .number else { break }
                j += m
                count += 1
            }
            return j
        case .other, .whitespace:
            // `[^\r\n\p{L}\p{N}]?\p{L}+`: one non-letter, non-digit scalar other than CR/LF may lead a word.
            if i + n < end && b != 0x0A && b != 0x0D {
                let (next, m) = classAt(p, i + n, end, classes)
                if next == .letter { return runEnd(p, i + n + m, end, .letter, classes) }
            }
            // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
            var symbolsStart = -1
            if c == .other {
                symbolsStart = i
            } else if b == UInt8(ascii: " ") && i + 1 < end && classAt(p, i + 1, end, classes).0 == .other {
                symbolsStart = i + 1
            }
            if symbolsStart >= 0 {
                var j = runEnd(p, symbolsStart, end, .other, classes)
                while j < end && (p[j] == 0x0A || p[j] == 0x0D) { j += 1 }
                return j
            }
            // `\s*[\r\n]+`: through the last CR or LF of the whitespace run.
            var lastStart = i
            var lastNewlineEnd = (b == 0x0A || b == 0x0D) ? i + 1 : -1
            var j = i + n
            while j < end {
                let (w, m) = classAt(p, j, end, classes)
                guard w == .whitespace else { break }
                if p[j] == 0x0A || p[j] == 0x0D { lastNewlineEnd = j + 1 }
                lastStart = j
                j += m
            }
            if lastNewlineEnd >= 0 { return lastNewlineEnd }
            // `\s+(?!\S)|\s+`
            if j == end || lastStart == i { return j }
            return lastStart
        }
    }
}

/// Where `Digits` cuts a piece: around every number scalar (`individual_digits`), or between
/// runs of numbers and runs of anything else.
@inline(__always)
func digitsPieceEnd(_ p: UnsafePointer<UInt8>, _ i: Int, _ end: Int, individually: Bool, _ classes: ScalarClassTable) -> Int {
    let (s, n) = decodeUTF8Scalar(p, i, end)
    let isNumber = classes.classOf(s) == .number
    if isNumber && individually { return i + n }
    var j = i + n
    while j < end {
        let (t, m) = decodeUTF8Scalar(p, j, end)
        if (classes.classOf(t) == .number) != isNumber { break }
        j += m
    }
    return j
}
