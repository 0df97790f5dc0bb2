import CZlib

/// Failures reading the zip container of a PyTorch checkpoint.
public enum ZipError: Error, Equatable, Sendable, CustomStringConvertible {
    case notAZip(file: String)
    case truncated(file: String, member: String)
    case unsupportedCompression(file: String, member: String, method: Int)
    case badCRC(file: String, member: String, expected: UInt32, actual: UInt32)
    case inflateFailed(file: String, member: String)
    case tooLarge(file: String, member: String, size: UInt64)

    /// One line: the file (and tensor or key) at fault, what is wrong, and what was expected.
    public var description: String {
        switch self {
        case let .notAZip(file): return "\(file): not a zip archive (expected the zip torch.save writes)"
        case let .truncated(file, member): return "\(file): '\(member)': truncated archive (expected the member's bytes inside the file)"
        case let .unsupportedCompression(file, member, method):
            return "\(file): '\(member)': compression method \(method) (expected stored or deflated)"
        case let .badCRC(file, member, expected, actual):
            return "\(file): '\(member)': CRC-32 mismatch (expected \(String(expected, radix: 16)), got \(String(actual, radix: 16)))"
        case let .inflateFailed(file, member): return "\(file): '\(member)': corrupt deflate stream"
        case let .tooLarge(file, member, size): return "\(file): '\(member)': claims \(size) bytes, more than the archive can hold"
        }
    }
}

/// A zip archive read through its central directory (zip64 included), members stored or deflated.
/// Stored members are returned as views into the mapped file: no copy.
public final class ZipArchive: Sendable {
    /// One central-directory entry, zip64 sizes and offset resolved.
    public struct Member: Sendable {
        /// Path inside the archive, e.g. `archive/data/0`.
        public var name: String
        /// Compression method: 0 stored, 8 deflated (others are refused by `contents`).
        public var method: Int
        /// CRC-32 of the uncompressed bytes, checked by `contents`.
        public var crc: UInt32
        /// Bytes the member occupies in the file.
        public var compressedSize: Int
        /// Bytes once uncompressed (at most 2^40).
        public var size: Int
        /// Absolute file offset of the member's data, past its local header.
        public var dataOffset: Int
    }

    /// The path the archive was opened from.
    public let path: String
    /// The whole archive, mapped; stored members are views into it.
    public let mapped: MappedFile
    /// Members in central-directory order.
    public let members: [Member]
    private let index: [String: Int]

    /// Maps `path` and reads its central directory, checking every offset and size against the file.
    public init(path: String) throws {
        let mapped = try MappedFile(path: path)
        self.path = path
        self.mapped = mapped
        let bytes = mapped.bytes
        func u16(_ o: Int) -> Int { Int(bytes.loadUnaligned(fromByteOffset: o, as: UInt16.self).littleEndian) }
        func u32(_ o: Int) -> UInt32 { bytes.loadUnaligned(fromByteOffset: o, as: UInt32.self).littleEndian }
        func u64(_ o: Int) -> UInt64 { bytes.loadUnaligned(fromByteOffset: o, as: UInt64.self).littleEndian }
        // The end-of-central-directory record sits in the last 64 KB + 22 bytes.
        guard bytes.count >= 22 else { throw ZipError.notAZip(file: path) }
        var eocd = -1
        var o = bytes.count - 22
        while o >= max(0, bytes.count - 22 - 65_535) {
            if u32(o) == 0x0605_4b50 { eocd = o; break }
            o -= 1
        }
        guard eocd >= 0 else { throw ZipError.notAZip(file: path) }
        var count = UInt64(u16(eocd + 10))
        var directorySize = UInt64(u32(eocd + 12))
        var directoryOffset = UInt64(u32(eocd + 16))
        if eocd >= 20 && u32(eocd - 20) == 0x0706_4b50 {
            let record = u64(eocd - 20 + 8)
            guard bytes.count >= 56, record <= UInt64(bytes.count - 56), u32(Int(record)) == 0x0606_4b50 else { throw ZipError.notAZip(file: path) }
            count = u64(Int(record) + 32)
            directorySize = u64(Int(record) + 40)
            directoryOffset = u64(Int(record) + 48)
        }
        guard directoryOffset <= UInt64(bytes.count), directorySize <= UInt64(bytes.count) - directoryOffset,
            count <= directorySize / 46
        else { throw ZipError.notAZip(file: path) }
        var members: [Member] = []
        var p = Int(directoryOffset)
        let end = Int(directoryOffset + directorySize)
        for _ in 0..<count {
            guard p + 46 <= end, u32(p) == 0x0201_4b50 else { throw ZipError.notAZip(file: path) }
            let method = u16(p + 10)
            let crc = u32(p + 16)
            var compressed = UInt64(u32(p + 20)), size = UInt64(u32(p + 24))
            let nameLength = u16(p + 28), extraLength = u16(p + 30), commentLength = u16(p + 32)
            var localOffset = UInt64(u32(p + 42))
            guard p + 46 + nameLength + extraLength + commentLength <= end else { throw ZipError.notAZip(file: path) }
            let name = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[(p + 46)..<(p + 46 + nameLength)]), as: UTF8.self)
            // zip64 sizes and offset live in the extra field when the 32-bit ones are saturated.
            var e = p + 46 + nameLength
            let extraEnd = e + extraLength
            while e + 4 <= extraEnd {
                let id = u16(e), length = u16(e + 2)
                if id == 0x0001 {
                    var f = e + 4
                    if size == 0xFFFF_FFFF, f + 8 <= e + 4 + length { size = u64(f); f += 8 }
                    if compressed == 0xFFFF_FFFF, f + 8 <= e + 4 + length { compressed = u64(f); f += 8 }
                    if localOffset == 0xFFFF_FFFF, f + 8 <= e + 4 + length { localOffset = u64(f) }
                }
                e += 4 + length
            }
            // Subtract, never add: a zip64 offset of 2^64−1 must not overflow.
            guard bytes.count >= 30, localOffset <= UInt64(bytes.count - 30), u32(Int(localOffset)) == 0x0403_4b50 else {
                throw ZipError.truncated(file: path, member: name)
            }
            let dataOffset = Int(localOffset) + 30 + u16(Int(localOffset) + 26) + u16(Int(localOffset) + 28)
            guard compressed <= UInt64(bytes.count), dataOffset <= bytes.count, Int(compressed) <= bytes.count - dataOffset else {
                throw ZipError.truncated(file: path, member: name)
            }
            guard size <= 1 << 40 else { throw ZipError.tooLarge(file: path, member: name, size: size) }
            // Deflate expands at most 1032:1, and a stored member is its bytes: a claim beyond that is
            // a lie that would size an allocation, so it is refused before anything is allocated.
            let (deflateBound, overflow) = compressed.multipliedReportingOverflow(by: 1032)
            guard method != 8 || (!overflow && size <= deflateBound + 1024) else { throw ZipError.tooLarge(file: path, member: name, size: size) }
            members.append(Member(name: name, method: method, crc: crc, compressedSize: Int(compressed), size: Int(size), dataOffset: dataOffset))
            p += 46 + nameLength + extraLength + commentLength
        }
        self.members = members
        index = Dictionary(members.enumerated().map { ($0.element.name, $0.offset) }, uniquingKeysWith: { a, _ in a })
    }

    /// The member called `name` (the first, if repeated), if present.
    public func member(named name: String) -> Member? { index[name].map { members[$0] } }

    /// The member's bytes, checked against its CRC-32: a view for stored members, inflated for
    /// deflated ones (the owner keeps the bytes alive).
    public func contents(_ member: Member) throws -> (bytes: UnsafeRawBufferPointer, owner: AnyObject) {
        let raw = UnsafeRawBufferPointer(rebasing: mapped.bytes[member.dataOffset..<(member.dataOffset + member.compressedSize)])
        switch member.method {
        case 0:
            guard member.compressedSize == member.size else { throw ZipError.truncated(file: path, member: member.name) }
            try check(raw, member)
            return (raw, mapped)
        case 8:
            let buffer = OwnedBytes(count: member.size)
            var stream = z_stream()
            guard inflateInit2_(&stream, -15, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
                throw ZipError.inflateFailed(file: path, member: member.name)
            }
            defer { inflateEnd(&stream) }
            // zlib counts in 32 bits: feed input and output in steps below 4 GiB.
            var produced = 0, consumed = 0, status = Z_OK
            while status == Z_OK {
                let inStep = min(raw.count - consumed, Int(UInt32.max >> 1)), outStep = min(member.size - produced, Int(UInt32.max >> 1))
                stream.next_in = UnsafeMutablePointer(mutating: raw.baseAddress?.advanced(by: consumed).assumingMemoryBound(to: UInt8.self))
                stream.avail_in = UInt32(inStep)
                stream.next_out = buffer.pointer.advanced(by: produced).assumingMemoryBound(to: UInt8.self)
                stream.avail_out = UInt32(outStep)
                status = inflate(&stream, Z_NO_FLUSH)
                consumed += inStep - Int(stream.avail_in)
                produced += outStep - Int(stream.avail_out)
            }  // Z_OK while progress is made; zlib answers Z_BUF_ERROR when none is possible
            guard status == Z_STREAM_END, produced == member.size else { throw ZipError.inflateFailed(file: path, member: member.name) }
            let inflated = UnsafeRawBufferPointer(start: buffer.pointer, count: member.size)
            try check(inflated, member)
            return (inflated, buffer)
        default:
            throw ZipError.unsupportedCompression(file: path, member: member.name, method: member.method)
        }
    }

    private func check(_ bytes: UnsafeRawBufferPointer, _ member: Member) throws {
        var crc: UInt = 0
        var offset = 0
        while offset < bytes.count {
            let n = min(1 << 30, bytes.count - offset)
            crc = UInt(CZlib.crc32(UInt(crc), bytes.baseAddress!.advanced(by: offset).assumingMemoryBound(to: UInt8.self), UInt32(n)))
            offset += n
        }
        guard UInt32(crc) == member.crc else { throw ZipError.badCRC(file: path, member: member.name, expected: member.crc, actual: UInt32(crc)) }
    }
}

/// Heap bytes that free themselves.
final class OwnedBytes: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
    init(count: Int) { pointer = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: 64) }
    deinit { pointer.deallocate() }
}
