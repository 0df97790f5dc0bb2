/// A hash map from byte strings to short lists of token ids, stored in flat arenas.
///
/// It serves as the word cache of an encoding (word bytes → ids) and as the whole-word lookup of
/// `ignore_merges` (token bytes → id). Keys and values live in two growing arrays and the slots
/// hold offsets into them, so inserting a word costs no allocation of its own; lookups hash the
/// bytes once and compare them with `memcmp`-like loops. Not thread-safe: each encoding owns its
/// cache, and the shared lookup table is never written after it is built.
struct ByteStringTable {
    private struct Slot {
        var hash: UInt64
        var keyStart: Int32
        var keyLength: Int32
        var valueStart: Int32
        var valueCount: Int32
    }

    private var slots: [Slot]
    private var mask: Int
    private var keys: [UInt8] = []
    private var values: [Int32] = []
    private(set) var count = 0
    private let seed: UInt64

    /// The number of key bytes and values stored, to bound a cache's memory.
    var storedBytes: Int { keys.count + 4 * values.count + 24 * slots.count }

    init(capacity: Int = 1024, seed: UInt64 = 0) {
        var size = 16
        while size < 2 * capacity { size <<= 1 }
        slots = [Slot](repeating: Slot(hash: 0, keyStart: 0, keyLength: -1, valueStart: 0, valueCount: 0), count: size)
        mask = size - 1
        self.seed = seed
    }

    @inline(__always)
    func hash(_ p: UnsafePointer<UInt8>, _ count: Int) -> UInt64 {
        var h = seed ^ 0x9E37_79B9_7F4A_7C15 &* UInt64(truncatingIfNeeded: count &+ 1)
        let raw = UnsafeRawPointer(p)
        var i = 0
        while i + 8 <= count {
            h = (h ^ raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* 0xFF51_AFD7_ED55_8CCD
            h ^= h >> 32
            i += 8
        }
        if i < count {
            var tail: UInt64 = 0
            var shift: UInt64 = 0
            while i < count {
                tail |= UInt64(p[i]) << shift
                shift += 8
                i += 1
            }
            h = (h ^ tail) &* 0xFF51_AFD7_ED55_8CCD
        }
        h ^= h >> 29
        h = h &* 0xBF58_476D_1CE4_E5B9
        return h ^ (h >> 32)
    }

    /// The slot holding the key `p[0..<count]` (whose hash is `h`), or nil when absent.
    @inline(__always)
    func find(_ p: UnsafePointer<UInt8>, _ count: Int, hash h: UInt64) -> Int? {
        slots.withUnsafeBufferPointer { slots in
            keys.withUnsafeBufferPointer { keys in
                var index = Int(truncatingIfNeeded: h) & mask
                while true {
                    let slot = slots[index]
                    if slot.keyLength < 0 { return nil }
                    if slot.hash == h && Int(slot.keyLength) == count
                        && (count == 0 || equalBytes(keys.baseAddress! + Int(slot.keyStart), p, count))
                    {
                        return index
                    }
                    index = (index + 1) & mask
                }
            }
        }
    }

    /// Appends the values of the slot `find` returned.
    @inline(__always)
    func appendValues(ofSlot index: Int, to output: inout [Int32]) {
        let slot = slots[index]
        values.withUnsafeBufferPointer { values in
            output.append(contentsOf: UnsafeBufferPointer(rebasing: values[Int(slot.valueStart)..<Int(slot.valueStart + slot.valueCount)]))
        }
    }

    /// The first value stored under the key, if present.
    func firstValue(_ p: UnsafePointer<UInt8>, _ count: Int) -> Int32? {
        guard let index = find(p, count, hash: hash(p, count)), slots[index].valueCount > 0 else { return nil }
        return values[Int(slots[index].valueStart)]
    }

    /// The first value stored under the bytes `key` (possibly empty), if present.
    func firstValue(_ key: UnsafeBufferPointer<UInt8>) -> Int32? {
        firstValue(key.baseAddress ?? Self.noBytes, key.count)
    }

    /// The first value stored under `text`'s UTF-8 bytes, if present.
    func firstValue(utf8 text: String) -> Int32? {
        var text = text
        return text.withUTF8 { firstValue($0) }
    }

    /// Stores one value under the bytes `key` unless the key is present; returns whether it was stored.
    @discardableResult
    mutating func insertIfAbsent(_ key: UnsafeBufferPointer<UInt8>, value: Int32) -> Bool {
        let p = key.baseAddress ?? Self.noBytes
        let h = hash(p, key.count)
        guard find(p, key.count, hash: h) == nil else { return false }
        var value = value
        withUnsafePointer(to: &value) { insert(p, key.count, hash: h, values: UnsafeBufferPointer(start: $0, count: 1)) }
        return true
    }

    /// Where an empty key points (never read: zero bytes are hashed and compared).
    private nonisolated(unsafe) static let noBytes = UnsafePointer(UnsafeMutablePointer<UInt8>.allocate(capacity: 1))

    /// Stores `newValues` under the key (which must not be present yet).
    mutating func insert(_ p: UnsafePointer<UInt8>, _ count: Int, hash h: UInt64, values newValues: UnsafeBufferPointer<Int32>) {
        if 2 * (self.count + 1) > slots.count { grow() }
        let slot = Slot(hash: h, keyStart: Int32(truncatingIfNeeded: keys.count), keyLength: Int32(truncatingIfNeeded: count),
                        valueStart: Int32(truncatingIfNeeded: values.count), valueCount: Int32(truncatingIfNeeded: newValues.count))
        keys.append(contentsOf: UnsafeBufferPointer(start: p, count: count))
        values.append(contentsOf: newValues)
        place(slot)
        self.count += 1
    }

    private mutating func place(_ slot: Slot) {
        var index = Int(truncatingIfNeeded: slot.hash) & mask
        while slots[index].keyLength >= 0 { index = (index + 1) & mask }
        slots[index] = slot
    }

    private mutating func grow() {
        let old = slots
        slots = [Slot](repeating: Slot(hash: 0, keyStart: 0, keyLength: -1, valueStart: 0, valueCount: 0), count: old.count * 2)
        mask = slots.count - 1
        for slot in old where slot.keyLength >= 0 { place(slot) }
    }
}

@inline(__always)
func equalBytes(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ count: Int) -> Bool {
    var i = 0
    let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
    while i + 8 <= count {
        if ra.loadUnaligned(fromByteOffset: i, as: UInt64.self) != rb.loadUnaligned(fromByteOffset: i, as: UInt64.self) { return false }
        i += 8
    }
    while i < count {
        if a[i] != b[i] { return false }
        i += 1
    }
    return true
}
