/// A map from pairs of 32-bit values to 64-bit values: the merges of a BPE model, keyed by the
/// pair of token ids they join, (left, right) → (rank, merged id); also the set of scalar pairs
/// adjacent in some token. Open addressing over flat arrays, since every BPE step looks a pair
/// up and `Dictionary`'s seeded SipHash costs several times more than this multiply-shift hash.
struct PairTable: Sendable {
    /// A slot: key `left << 32 | right` (`UInt64.max` when empty) and value `rank << 32 | merged`.
    private var keys: [UInt64]
    private var values: [UInt64]
    private let shift: UInt64
    private(set) var count = 0

    static let empty = UInt64.max

    init(capacity: Int) {
        var size = 16
        var bits: UInt64 = 4
        while size < 2 * capacity {
            size <<= 1
            bits += 1
        }
        keys = [UInt64](repeating: Self.empty, count: size)
        values = [UInt64](repeating: 0, count: size)
        shift = 64 - bits
    }

    @inline(__always)
    static func key(_ left: Int32, _ right: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
    }

    @inline(__always)
    private func slot(for key: UInt64) -> Int {
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift)
    }

    /// Sets the value of a pair (packed as `rank << 32 | merged`); a merge listed twice keeps its
    /// last rank, as `tokenizers` does (its merges are collected into a map).
    mutating func set(_ left: Int32, _ right: Int32, rank: Int32, merged: Int32) {
        let key = Self.key(left, right)
        let value = UInt64(UInt32(bitPattern: rank)) << 32 | UInt64(UInt32(bitPattern: merged))
        let mask = keys.count - 1
        var index = slot(for: key)
        while keys[index] != Self.empty {
            if keys[index] == key {
                values[index] = value
                return
            }
            index = (index + 1) & mask
        }
        keys[index] = key
        values[index] = value
        count += 1
    }

    /// Whether the pair is present (outside hot loops).
    func contains(_ left: Int32, _ right: Int32) -> Bool {
        withLookup { $0.find(left, right) != nil }
    }

    /// Runs `body` with a read-only view for the merge loop.
    func withLookup<R>(_ body: (Lookup) -> R) -> R {
        keys.withUnsafeBufferPointer { k in
            values.withUnsafeBufferPointer { v in
                body(Lookup(keys: k.baseAddress!, values: v.baseAddress!, mask: k.count - 1, shift: shift))
            }
        }
    }

    /// An unsafe view of the table, valid inside `withLookup`.
    struct Lookup {
        let keys: UnsafePointer<UInt64>
        let values: UnsafePointer<UInt64>
        let mask: Int
        let shift: UInt64

        /// `rank << 32 | merged` for the pair, or nil when the pair does not merge.
        @inline(__always)
        func find(_ left: Int32, _ right: Int32) -> UInt64? {
            let key = PairTable.key(left, right)
            var index = Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift)
            while true {
                let k = keys[index]
                if k == key { return values[index] }
                if k == PairTable.empty { return nil }
                index = (index + 1) & mask
            }
        }
    }
}
