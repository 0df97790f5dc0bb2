/// The `model` of a `tokenizer.json` when it is `BPE`: a vocabulary, ranked merges, and the
/// rules for symbols the vocabulary lacks (`byte_fallback`, `unk_token`).
///
/// A word is encoded as `tokenizers` does: one symbol per character (per byte in byte-level
/// mode), then, repeatedly, the adjacent pair with the lowest merge rank — the leftmost of
/// equal ranks — is joined, until no adjacent pair has a merge. A min-heap of (rank, position)
/// over a linked list of symbols makes that O(n log n) in the word's length.
final class BytePairModel: Sendable {
    /// Token spelling (UTF-8 bytes) → id, as in `model.vocab`. Keyed by bytes, not `String`:
    /// Swift compares strings up to canonical equivalence, and vocabularies hold distinct tokens
    /// that are canonically equivalent (Llama-2 has both U+03AF and U+1F77). A flat byte-string
    /// table rather than `[[UInt8]: Int]`: building Llama-3's (128K tokens, 280K merges looked up
    /// three times each) spent 0.4 s hashing arrays byte by byte and allocating keys.
    let vocabulary: ByteStringTable
    /// Id → token string; nil for ids the vocabulary skips.
    let tokens: [String?]
    let merges: PairTable
    /// Symbols are bytes, spelled in the GPT-2 byte alphabet (a `ByteLevel` pre-tokenizer), or
    /// else Unicode scalars.
    let byteLevel: Bool
    /// The id of each byte's symbol in byte-level mode, or of each ASCII character otherwise
    /// (entries 0..<128); -1 where the vocabulary has none.
    let unitIDs: [Int32]
    /// Ids of single-scalar tokens beyond ASCII (character mode).
    let scalarIDs: [UInt32: Int32]
    /// Ids of the `<0xAB>` tokens when `byte_fallback` is on, else empty.
    let fallbackIDs: [Int32]
    let unknownID: Int32?
    let fuseUnknown: Bool
    /// `ignore_merges`: a word that is itself a token is that token (Llama-3).
    let ignoreMerges: Bool
    /// Word bytes → id for `ignore_merges` (raw bytes in byte-level mode).
    let wholeWords: ByteStringTable?
    /// Character mode: the pairs of scalars that are adjacent inside some token. Between two
    /// characters that both have tokens and are not such a pair no merge can ever happen, so a
    /// long word may be cut there and its parts encoded (and cached) alone with the same result:
    /// this is what makes SentencePiece-style BPE, whose "word" is a whole line, fast.
    let adjacentScalars: PairTable?

    static let maximumVocabulary = 1 << 22
    /// Up to this many symbols the quadratic merge loop beats the heap.
    static let longestShortWord = 24
    static let maximumMerges = 1 << 23

    init(json: JSONValue, byteLevel: Bool, reader: TokenizerJSONReader) throws(TokenizerError) {
        let field = "model"
        if let dropout = json["dropout"], dropout != .null, dropout.doubleValue != 0 {
            throw TokenizerError.unsupportedOption(file: reader.file, field: "model.dropout", expected: "null (BPE dropout is for training)",
                                                   got: describeJSON(dropout))
        }
        for option in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let affix = try reader.optionalString(json[option], "model." + option), !affix.isEmpty {
                throw TokenizerError.unsupportedOption(file: reader.file, field: "model." + option, expected: "null or \"\"",
                                                       got: describeJSON(json[option]))
            }
        }
        self.byteLevel = byteLevel
        fuseUnknown = try reader.bool(json["fuse_unk"], field + ".fuse_unk", default: false)
        ignoreMerges = try reader.bool(json["ignore_merges"], field + ".ignore_merges", default: false)
        let byteFallback = try reader.bool(json["byte_fallback"], field + ".byte_fallback", default: false)

        // Vocabulary.
        let vocabMembers = try reader.members(json["vocab"], field + ".vocab")
        guard vocabMembers.count <= Self.maximumVocabulary else {
            throw TokenizerError.vocabularyTooLarge(file: reader.file, count: vocabMembers.count, limit: Self.maximumVocabulary)
        }
        var vocabulary = ByteStringTable(capacity: vocabMembers.count)
        var maxID = -1
        for (token, value) in vocabMembers {
            guard let id = value.intValue, id >= 0, id < Self.maximumVocabulary else {
                if let id = value.intValue {
                    throw TokenizerError.tokenIDOutOfRange(file: reader.file, token: token, id: id, limit: Self.maximumVocabulary)
                }
                throw reader.malformed("model.vocab[\"\(token)\"]", expected: "an integer id", got: value)
            }
            var spelling = token
            guard spelling.withUTF8({ vocabulary.insertIfAbsent($0, value: Int32(id)) }) else {
                throw reader.malformed("model.vocab", expected: "each token once", gotText: "'\(token)' twice")
            }
            maxID = max(maxID, id)
        }
        var tokens = [String?](repeating: nil, count: maxID + 1)
        for (token, id) in vocabMembers.lazy.map({ ($0.0, $0.1.intValue!) }) {
            if let first = tokens[id] { throw TokenizerError.duplicateTokenID(file: reader.file, id: id, first: first, second: token) }
            tokens[id] = token
        }
        self.vocabulary = vocabulary
        self.tokens = tokens

        // Merges: "a b" strings (split at the space) or ["a", "b"] pairs, looked up in place (no key arrays).
        let mergeList = try reader.array(json["merges"], field + ".merges")
        guard mergeList.count <= Self.maximumMerges else {
            throw reader.malformed("model.merges", expected: "at most \(Self.maximumMerges) merges", gotText: "\(mergeList.count)")
        }
        var merges = PairTable(capacity: mergeList.count)
        var rank = 0
        var joined: [UInt8] = []
        /// The ids of `left`, `right` and their concatenation, or the first spelling the vocabulary lacks.
        func lookUp(_ left: UnsafeBufferPointer<UInt8>, _ right: UnsafeBufferPointer<UInt8>) -> Result<(Int32, Int32, Int32), MissingToken> {
            guard let a = vocabulary.firstValue(left) else { return .failure(MissingToken(bytes: Array(left))) }
            guard let b = vocabulary.firstValue(right) else { return .failure(MissingToken(bytes: Array(right))) }
            joined.removeAll(keepingCapacity: true)
            joined.append(contentsOf: left)
            joined.append(contentsOf: right)
            guard let merged = joined.withUnsafeBufferPointer({ vocabulary.firstValue($0) }) else { return .failure(MissingToken(bytes: joined)) }
            return .success((a, b, merged))
        }
        for (k, entry) in mergeList.enumerated() {
            let found: Result<(Int32, Int32, Int32), MissingToken>
            switch entry {
            case .string(var line):
                if line.hasPrefix("#version") { continue }
                // Split at the space byte: a space followed by a combining mark is one Character.
                let split: Result<(Int32, Int32, Int32), MissingToken>? = line.withUTF8 { u in
                    guard let space = u.firstIndex(of: UInt8(ascii: " ")), !u[(space + 1)...].contains(UInt8(ascii: " ")) else { return nil }
                    return lookUp(UnsafeBufferPointer(rebasing: u[..<space]), UnsafeBufferPointer(rebasing: u[(space + 1)...]))
                }
                guard let split else { throw reader.malformed("model.merges[\(k)]", expected: "two tokens separated by one space", got: entry) }
                found = split
            case .array(let pair):
                guard pair.count == 2, var a = pair[0].stringValue, var b = pair[1].stringValue else {
                    throw reader.malformed("model.merges[\(k)]", expected: "a pair of strings", got: entry)
                }
                found = a.withUTF8 { left in b.withUTF8 { right in lookUp(left, right) } }
            default:
                throw reader.malformed("model.merges[\(k)]", expected: "\"a b\" or [\"a\", \"b\"]", got: entry)
            }
            switch found {
            case let .success((a, b, merged)): merges.set(a, b, rank: Int32(rank), merged: merged)
            case let .failure(missing):
                throw TokenizerError.mergeNotInVocabulary(file: reader.file, rank: k, token: String(decoding: missing.bytes, as: UTF8.self))
            }
            rank += 1
        }
        self.merges = merges

        // Initial symbols.
        var unitIDs = [Int32](repeating: -1, count: 256)
        var scalarIDs: [UInt32: Int32] = [:]
        if byteLevel {
            for b in 0..<256 {
                let spelling = String(Unicode.Scalar(ByteLevelAlphabet.scalarForByte[b])!)
                if let id = vocabulary.firstValue(utf8: spelling) { unitIDs[b] = id }
            }
        } else {
            for (token, value) in vocabMembers {
                guard let id = value.intValue else { continue }
                let scalars = token.unicodeScalars
                guard scalars.count == 1, let scalar = scalars.first else { continue }
                if scalar.value < 0x80 { unitIDs[Int(scalar.value)] = Int32(id) } else { scalarIDs[scalar.value] = Int32(id) }
            }
        }
        self.unitIDs = unitIDs
        self.scalarIDs = scalarIDs
        if byteFallback {
            let hex = Array("0123456789ABCDEF")
            var fallback = [Int32](repeating: -1, count: 256)
            for b in 0..<256 {
                if let id = vocabulary.firstValue(utf8: "<0x\(hex[b >> 4])\(hex[b & 15])>") { fallback[b] = id }
            }
            fallbackIDs = fallback
        } else {
            fallbackIDs = []
        }
        if let unk = try reader.optionalString(json["unk_token"], field + ".unk_token") {
            guard let id = vocabulary.firstValue(utf8: unk) else {
                throw reader.malformed("model.unk_token", expected: "a token of model.vocab", got: json["unk_token"])
            }
            unknownID = Int32(id)
        } else {
            unknownID = nil
        }

        if !byteLevel && !ignoreMerges {
            var pairs: [(Int32, Int32)] = []
            for (spelling, _) in vocabMembers {
                var previous: Int32 = -1
                for scalar in spelling.unicodeScalars {
                    let value = Int32(bitPattern: scalar.value)
                    if previous >= 0 { pairs.append((previous, value)) }
                    previous = value
                }
            }
            var table = PairTable(capacity: pairs.count)
            for (a, b) in pairs { table.set(a, b, rank: 0, merged: 0) }
            adjacentScalars = table
        } else {
            adjacentScalars = nil
        }

        if ignoreMerges {
            var table = ByteStringTable(capacity: vocabulary.count)
            for (spelling, value) in vocabMembers {
                guard let id = value.intValue else { continue }
                let bytes: [UInt8]
                if byteLevel {
                    guard let raw = ByteLevelAlphabet.bytes(of: spelling) else { continue }
                    bytes = raw
                } else {
                    bytes = Array(spelling.utf8)
                }
                guard !bytes.isEmpty else { continue }
                bytes.withUnsafeBufferPointer { _ = table.insertIfAbsent($0, value: Int32(id)) }
            }
            wholeWords = table
        } else {
            wholeWords = nil
        }
    }

    /// Whether a scalar has a token of its own (character mode).
    @inline(__always)
    func hasToken(scalar: UInt32) -> Bool {
        scalar < 0x80 ? unitIDs[Int(scalar)] >= 0 : scalarIDs[scalar] != nil
    }

    /// The id of a token spelled as in the file.
    func id(_ token: String) -> Int? { vocabulary.firstValue(utf8: token).map(Int.init) }

    /// The id of a token spelled by these UTF-8 bytes.
    func id(bytes: [UInt8]) -> Int? { bytes.withUnsafeBufferPointer { vocabulary.firstValue($0) }.map(Int.init) }

    /// A spelling a merge names that the vocabulary lacks.
    struct MissingToken: Error { var bytes: [UInt8] }

    /// Appends the ids of one word (`count` > 0 bytes of UTF-8 text, or of any bytes in
    /// byte-level mode) to `output`.
    func encodeWord(_ p: UnsafePointer<UInt8>, _ count: Int, scratch: BytePairScratch, output: inout [Int32]) {
        if let wholeWords, let id = wholeWords.firstValue(p, count) {
            output.append(id)
            return
        }
        // Byte fallback in byte-level mode spells one byte's character in two bytes.
        scratch.reserve(symbols: byteLevel && !fallbackIDs.isEmpty ? 2 * count : count)
        let ids = scratch.ids
        var n = 0
        var pendingUnknown = false
        // An id where the vocabulary has the symbol, else byte fallback, else the unknown token.
        @inline(__always)
        func addMissing(_ unitBytes: UnsafeBufferPointer<UInt8>) {
            if !fallbackIDs.isEmpty && unitBytes.allSatisfy({ fallbackIDs[Int($0)] >= 0 }) {
                // As in tokenizers, a pending unknown token is not flushed first.
                for b in unitBytes {
                    ids[n] = fallbackIDs[Int(b)]
                    n += 1
                }
                return
            }
            guard let unknownID else { return }  // tokenizers drops the symbol
            if pendingUnknown && fuseUnknown { return }
            if pendingUnknown {
                ids[n] = unknownID
                n += 1
            }
            pendingUnknown = true
        }
        @inline(__always)
        func add(_ id: Int32) {
            if pendingUnknown {
                ids[n] = unknownID!
                n += 1
                pendingUnknown = false
            }
            ids[n] = id
            n += 1
        }
        if byteLevel {
            for i in 0..<count {
                let id = unitIDs[Int(p[i])]
                if id >= 0 {
                    add(id)
                } else {
                    var spelling: [UInt8] = []
                    appendUTF8(ByteLevelAlphabet.scalarForByte[Int(p[i])], to: &spelling)
                    spelling.withUnsafeBufferPointer { addMissing($0) }
                }
            }
        } else {
            var i = 0
            while i < count {
                let (scalar, length) = decodeUTF8Scalar(p, i, count)
                let id = scalar < 0x80 ? unitIDs[Int(scalar)] : (scalarIDs[scalar] ?? -1)
                if id >= 0 { add(id) } else { addMissing(UnsafeBufferPointer(start: p + i, count: length)) }
                i += length
            }
        }
        if pendingUnknown {
            ids[n] = unknownID!
            n += 1
        }
        let merged = merges.withLookup { lookup in mergeSymbols(ids, n, lookup: lookup, scratch: scratch) }
        for k in 0..<merged { output.append(ids[k]) }
    }

    /// Applies the merges to `ids[0..<count]` in place and returns how many symbols remain.
    ///
    /// Mirrors `Word::merge_all` of `tokenizers`: a heap ordered by (rank, position); an entry
    /// whose pair has changed since it was pushed is skipped (its rank no longer matches).
    private func mergeSymbols(_ ids: UnsafeMutablePointer<Int32>, _ count: Int, lookup: PairTable.Lookup,
                              scratch: BytePairScratch) -> Int {
        guard count >= 2 else { return count }
        if count <= Self.longestShortWord { return mergeShort(ids, count, lookup: lookup, values: scratch.heap) }
        let next = scratch.next, previous = scratch.previous
        var heap = MergeHeap(storage: scratch.heap)
        for i in 0..<count {
            previous[i] = Int32(i - 1)
            next[i] = Int32(i + 1)
            if i + 1 < count, let value = lookup.find(ids[i], ids[i + 1]) {
                heap.appendUnordered(value & 0xFFFF_FFFF_0000_0000 | UInt64(i))
            }
        }
        heap.heapify()
        while let top = heap.popMinimum() {
            let position = Int(top & 0xFFFF_FFFF)
            let rank = top >> 32
            let left = ids[position]
            if left < 0 { continue }  // absorbed into its left neighbour
            let right = Int(next[position])
            if right >= count { continue }
            guard let value = lookup.find(left, ids[right]), value >> 32 == rank else { continue }
            ids[position] = Int32(truncatingIfNeeded: value)
            ids[right] = -1
            let after = Int(next[right])
            next[position] = Int32(after)
            if after < count { previous[after] = Int32(position) }
            let before = Int(previous[position])
            if before >= 0, let v = lookup.find(ids[before], ids[position]) {
                heap.push(v & 0xFFFF_FFFF_0000_0000 | UInt64(before))
            }
            if after < count, let v = lookup.find(ids[position], ids[after]) {
                heap.push(v & 0xFFFF_FFFF_0000_0000 | UInt64(position))
            }
        }
        var out = 0
        for i in 0..<count where ids[i] >= 0 {
            ids[out] = ids[i]
            out += 1
        }
        return out
    }

    /// Short words: the same result without the heap. The merge value of each adjacent pair is
    /// kept in `values` (rank in the high half, so the smallest is the lowest rank; `UInt64.max`
    /// when the pair does not merge); each step merges the leftmost minimum and looks up only the
    /// two pairs it changed.
    private func mergeShort(_ ids: UnsafeMutablePointer<Int32>, _ count: Int, lookup: PairTable.Lookup,
                            values: UnsafeMutablePointer<UInt64>) -> Int {
        var n = count
        for i in 0..<(n - 1) { values[i] = lookup.find(ids[i], ids[i + 1]) ?? .max }
        while n >= 2 {
            var best = values[0]
            var at = 0
            for i in 1..<(n - 1) where values[i] < best {
                best = values[i]
                at = i
            }
            if best == .max { break }
            ids[at] = Int32(truncatingIfNeeded: best)
            // Close the gap left by the right symbol of the pair.
            for k in (at + 1)..<(n - 1) {
                ids[k] = ids[k + 1]
                values[k] = values[k + 1]
            }
            n -= 1
            if at > 0 { values[at - 1] = lookup.find(ids[at - 1], ids[at]) ?? .max }
            if at < n - 1 { values[at] = lookup.find(ids[at], ids[at + 1]) ?? .max }
        }
        return n
    }
}

/// Working memory of BPE for one encoding: symbol ids, links and heap, grown to the longest word.
final class BytePairScratch {
    private(set) var capacity = 0
    private(set) var ids = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
    private(set) var next = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
    private(set) var previous = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
    /// Room for every push: count - 1 initial pairs and at most two per merge.
    private(set) var heap = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)

    /// Room for `symbols` symbols (a word of n bytes has at most n, or 2n with byte fallback in
    /// byte-level mode). 36 bytes per symbol: the memory of BPE on a long word.
    func reserve(symbols: Int) {
        guard symbols > capacity else { return }
        let size = max(symbols, 2 * capacity, 64)
        ids.deallocate(); next.deallocate(); previous.deallocate(); heap.deallocate()
        ids = .allocate(capacity: size)
        next = .allocate(capacity: size)
        previous = .allocate(capacity: size)
        heap = .allocate(capacity: 3 * size)
        capacity = size
    }

    deinit {
        ids.deallocate(); next.deallocate(); previous.deallocate(); heap.deallocate()
    }
}

/// A binary min-heap of `rank << 32 | position` keys over caller-owned storage.
struct MergeHeap {
    let storage: UnsafeMutablePointer<UInt64>
    private(set) var count = 0

    init(storage: UnsafeMutablePointer<UInt64>) { self.storage = storage }

    @inline(__always)
    mutating func appendUnordered(_ key: UInt64) {
        storage[count] = key
        count += 1
    }

    mutating func heapify() {
        var i = count / 2
        while i > 0 {
            i -= 1
            siftDown(i)
        }
    }

    @inline(__always)
    mutating func push(_ key: UInt64) {
        var i = count
        count += 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard storage[parent] > key else { break }
            storage[i] = storage[parent]
            i = parent
        }
        storage[i] = key
    }

    @inline(__always)
    mutating func popMinimum() -> UInt64? {
        guard count > 0 else { return nil }
        let top = storage[0]
        count -= 1
        if count > 0 {
            storage[0] = storage[count]
            siftDown(0)
        }
        return top
    }

    @inline(__always)
    private func siftDown(_ start: Int) {
        var i = start
        let key = storage[i]
        while true {
            var child = 2 * i + 1
            if child >= count { break }
            if child + 1 < count && storage[child + 1] < storage[child] { child += 1 }
            guard storage[child] < key else { break }
            storage[i] = storage[child]
            i = child
        }
        storage[i] = key
    }
}
