#if canImport(Glibc)
import Glibc
#endif

extension String {
    /// Whether `needle`'s UTF-8 bytes occur in this string's, as C++'s `std::string::find` matches
    /// them (llama.cpp's tensor-name rules): no Unicode equivalence, and none of the standard
    /// substring searcher's cost, which took 60 ms of a GGUF export (272 names against 44 patterns)
    /// on the thread every tensor waits for.
    func containsBytes(_ needle: String) -> Bool {
        let found = utf8.withContiguousStorageIfAvailable { haystack in
            needle.utf8.withContiguousStorageIfAvailable { String.bytes($0, occurIn: haystack) }
        }
        if let found = found ?? nil { return found }
        let haystack = Array(utf8), pattern = Array(needle.utf8)
        return haystack.withUnsafeBufferPointer { h in pattern.withUnsafeBufferPointer { String.bytes($0, occurIn: h) } }
    }

    /// Whether `needle` occurs in `haystack`, byte for byte (an empty needle occurs everywhere).
    static func bytes(_ needle: UnsafeBufferPointer<UInt8>, occurIn haystack: UnsafeBufferPointer<UInt8>) -> Bool {
        guard !needle.isEmpty else { return true }
        guard needle.count <= haystack.count, let n = needle.baseAddress, let h = haystack.baseAddress else { return false }
        for start in 0...(haystack.count - needle.count) where h[start] == n[0] {
            if memcmp(h + start, n, needle.count) == 0 { return true }
        }
        return false
    }
}
