/// The state of one `Tokenizer.encode` call: the word cache, BPE's working memory and the
/// buffers of transformed pieces. Each call owns one, so a `Tokenizer` is shared between threads
/// without locks; the cache pays off within a call, where a text repeats its words.
struct EncodingSession {
    private let model: BytePairModel
    private let normalizer: TextNormalizer?
    private let stages: [PreTokenizerStage]
    private let rawMatcher: AddedTokenMatcher
    private let normalizedMatcher: AddedTokenMatcher
    private let classes = ScalarClassTable.shared

    private(set) var output: [Int32] = []
    private var cache: ByteStringTable
    private let scratch = BytePairScratch()
    private var stageBuffers: [ByteBuffer]
    private var rawSegments: [AddedTokenMatcher.Segment] = []
    private var normalizedSegments: [AddedTokenMatcher.Segment] = []

    /// Words at least this long are not cached (as in `tokenizers`): they rarely repeat.
    static let longestCachedWord = 256
    /// The cache stops growing at this many entries or bytes, bounding an encoding's memory on
    /// hostile text (ordinary text needs a few MB: its words repeat).
    static let cacheLimit = 1 << 20
    static let cacheByteLimit = 128 << 20

    init(tokenizer: Tokenizer, expectedBytes: Int) {
        model = tokenizer.model
        normalizer = tokenizer.normalizer
        stages = tokenizer.stages
        rawMatcher = tokenizer.rawMatcher
        normalizedMatcher = tokenizer.normalizedMatcher
        cache = ByteStringTable(capacity: min(Self.cacheLimit, max(256, expectedBytes / 64)), seed: UInt64.random(in: 0...UInt64.max))
        stageBuffers = tokenizer.stages.map { _ in ByteBuffer() }
        output.reserveCapacity(expectedBytes / 3 + 16)
    }

    /// Encodes UTF-8 text, appending ids to `output`.
    mutating func encode(_ text: UnsafeBufferPointer<UInt8>) {
        guard let base = text.baseAddress, !text.isEmpty else { return }
        if rawMatcher.isEmpty {
            encodeRawPiece(base, text.count, atTextStart: true)
            return
        }
        rawMatcher.split(base, text.count, into: &rawSegments)
        let segments = rawSegments
        for segment in segments {
            if let id = segment.id {
                output.append(Int32(id))
            } else {
                encodeRawPiece(base + segment.start, segment.end - segment.start, atTextStart: segment.start == 0)
            }
        }
    }

    /// Text between raw-matched added tokens: normalized, then split at normalized added tokens.
    private mutating func encodeRawPiece(_ p: UnsafePointer<UInt8>, _ count: Int, atTextStart: Bool) {
        guard let normalizer else {
            encodeNormalizedPiece(p, count, atTextStart: atTextStart)
            return
        }
        let normalized = normalizer.apply(UnsafeBufferPointer(start: p, count: count))
        normalized.withUnsafeBufferPointer { buffer in
            if let base = buffer.baseAddress { encodeNormalizedPiece(base, buffer.count, atTextStart: atTextStart) }
        }
    }

    private mutating func encodeNormalizedPiece(_ p: UnsafePointer<UInt8>, _ count: Int, atTextStart: Bool) {
        if normalizedMatcher.isEmpty {
            preTokenize(p, 0, count, stage: 0, atTextStart: atTextStart)
            return
        }
        normalizedMatcher.split(p, count, into: &normalizedSegments)
        let segments = normalizedSegments
        for segment in segments {
            if let id = segment.id {
                output.append(Int32(id))
            } else {
                preTokenize(p, segment.start, segment.end, stage: 0, atTextStart: atTextStart && segment.start == 0)
            }
        }
    }

    /// Runs pre-tokenizer stage `stage` on `p[start..<end]` and passes its pieces on; after the
    /// last stage a piece is a word for BPE. `atTextStart`: the piece begins the input (for
    /// Metaspace's `prepend_scheme: first`).
    private mutating func preTokenize(_ p: UnsafePointer<UInt8>, _ start: Int, _ end: Int, stage: Int, atTextStart: Bool) {
        guard start < end else { return }
        guard stage < stages.count else {
            encodeWord(p + start, end - start)
            return
        }
        switch stages[stage] {
        case .split(let pattern):
            var i = start
            while i < end {
                let j = pattern.matchEnd(p, i, end, classes)
                preTokenize(p, i, j, stage: stage + 1, atTextStart: atTextStart && i == start)
                i = j
            }
        case .digits(let individually):
            var i = start
            while i < end {
                let j = digitsPieceEnd(p, i, end, individually: individually, classes)
                preTokenize(p, i, j, stage: stage + 1, atTextStart: atTextStart && i == start)
                i = j
            }
        case let .byteLevel(addPrefixSpace, useRegex):
            var q = p, s = start, e = end
            if addPrefixSpace && p[start] != UInt8(ascii: " ") {
                let buffer = stageBuffers[stage]
                buffer.count = 0
                buffer.append(UInt8(ascii: " "))
                buffer.append(p + start, end - start)
                (q, s, e) = (UnsafePointer(buffer.base), 0, buffer.count)
            }
            if useRegex {
                let gpt2 = PreTokenizerPattern(family: .gpt2, contractions: .caseSensitive, maximumDigits: .max)
                var i = s
                while i < e {
                    let j = gpt2.matchEnd(q, i, e, classes)
                    preTokenize(q, i, j, stage: stage + 1, atTextStart: atTextStart && i == s)
                    i = j
                }
            } else {
                preTokenize(q, s, e, stage: stage + 1, atTextStart: atTextStart)
            }
        case let .metaspace(replacement, scheme, split):
            let buffer = stageBuffers[stage]
            buffer.count = 0
            let startsWithSpace = p[start] == UInt8(ascii: " ")
            let startsWithReplacement = end - start >= replacement.count
                && replacement.withUnsafeBufferPointer { equalBytes($0.baseAddress!, p + start, $0.count) }
            if !startsWithSpace && !startsWithReplacement && (scheme == .always || (scheme == .first && atTextStart)) {
                replacement.withUnsafeBufferPointer { buffer.append($0.baseAddress!, $0.count) }
            }
            var runStart = start
            for i in start..<end where p[i] == UInt8(ascii: " ") {
                buffer.append(p + runStart, i - runStart)
                replacement.withUnsafeBufferPointer { buffer.append($0.baseAddress!, $0.count) }
                runStart = i + 1
            }
            buffer.append(p + runStart, end - runStart)
            let q = UnsafePointer(buffer.base), e = buffer.count
            if !split {
                preTokenize(q, 0, e, stage: stage + 1, atTextStart: atTextStart)
                return
            }
            // MergedWithNext: every replacement character starts a word.
            let first = replacement[0], width = replacement.count
            var pieceStart = 0
            var i = 0
            while i < e {
                if q[i] == first && i + width <= e
                    && replacement.withUnsafeBufferPointer({ equalBytes($0.baseAddress!, q + i, width) })
                {
                    if i > pieceStart { preTokenize(q, pieceStart, i, stage: stage + 1, atTextStart: atTextStart && pieceStart == 0) }
                    pieceStart = i
                    i += width
                } else {
                    i += 1
                }
            }
            preTokenize(q, pieceStart, e, stage: stage + 1, atTextStart: atTextStart && pieceStart == 0)
        }
    }

    /// BPE of one word: in character mode cut where no merge can cross (see
    /// `BytePairModel.adjacentScalars`), each part through the cache.
    private mutating func encodeWord(_ p: UnsafePointer<UInt8>, _ count: Int) {
        guard let adjacent = model.adjacentScalars, count >= Self.shortestCutWord else {
            encodeCachedWord(p, count)
            return
        }
        adjacent.withLookup { adjacent in
            var partStart = 0
            var i = 0
            var previous: UInt32 = 0
            var previousHasToken = false
            while i < count {
                let (scalar, n) = decodeUTF8Scalar(p, i, count)
                let hasToken = model.hasToken(scalar: scalar)
                if previousHasToken && hasToken
                    && adjacent.find(Int32(bitPattern: previous), Int32(bitPattern: scalar)) == nil
                {
                    encodeCachedWord(p + partStart, i - partStart)
                    partStart = i
                }
                previous = scalar
                previousHasToken = hasToken
                i += n
            }
            encodeCachedWord(p + partStart, count - partStart)
        }
    }

    /// Words shorter than this are looked up whole in the cache, not cut first.
    static let shortestCutWord = 24

    /// BPE of one word, through the cache.
    private mutating func encodeCachedWord(_ p: UnsafePointer<UInt8>, _ count: Int) {
        guard count < Self.longestCachedWord else {
            model.encodeWord(p, count, scratch: scratch, output: &output)
            return
        }
        let h = cache.hash(p, count)
        if let slot = cache.find(p, count, hash: h) {
            cache.appendValues(ofSlot: slot, to: &output)
            return
        }
        let first = output.count
        model.encodeWord(p, count, scratch: scratch, output: &output)
        if cache.count < Self.cacheLimit && cache.storedBytes < Self.cacheByteLimit {
            output.withUnsafeBufferPointer { ids in
                cache.insert(p, count, hash: h, values: UnsafeBufferPointer(rebasing: ids[first...]))
            }
        }
    }
}

/// A growable byte buffer with a stable address between appends, for transformed pieces that
/// later stages read through pointers.
final class ByteBuffer {
    private(set) var base = UnsafeMutablePointer<UInt8>.allocate(capacity: 64)
    private var capacity = 64
    var count = 0

    func append(_ byte: UInt8) {
        reserve(count + 1)
        base[count] = byte
        count += 1
    }

    func append(_ p: UnsafePointer<UInt8>, _ n: Int) {
        guard n > 0 else { return }
        reserve(count + n)
        (base + count).update(from: p, count: n)
        count += n
    }

    private func reserve(_ needed: Int) {
        guard needed > capacity else { return }
        let size = max(needed, 2 * capacity)
        let grown = UnsafeMutablePointer<UInt8>.allocate(capacity: size)
        grown.update(from: base, count: count)
        base.deallocate()
        base = grown
        capacity = size
    }

    deinit { base.deallocate() }
}
