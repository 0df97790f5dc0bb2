#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Failures opening or mapping a file.
public enum FileAccessError: Error, Equatable, Sendable, CustomStringConvertible {
    case cannotOpen(file: String, reason: String)
    case notARegularFile(file: String)
    case cannotMap(file: String, reason: String)
    case cannotWrite(file: String, reason: String)
    case outputExists(file: String)
    case interrupted(file: String)
    case outputOverlapsInput(output: String, input: String)

    /// The same error naming `target` wherever it named a file under `temporary`, so messages
    /// speak of the output the user asked for, not of our temporary name.
    func replacingPath(_ temporary: String, with target: String) -> FileAccessError {
        func map(_ file: String) -> String {
            file.hasPrefix(temporary) ? target + file.dropFirst(temporary.count) : file
        }
        switch self {
        case let .cannotOpen(file, reason): return .cannotOpen(file: map(file), reason: reason)
        case let .notARegularFile(file): return .notARegularFile(file: map(file))
        case let .cannotMap(file, reason): return .cannotMap(file: map(file), reason: reason)
        case let .cannotWrite(file, reason): return .cannotWrite(file: map(file), reason: reason)
        case let .outputExists(file): return .outputExists(file: map(file))
        case let .interrupted(file): return .interrupted(file: map(file))
        case .outputOverlapsInput: return self
        }
    }

    /// One line: the file, what failed, and the system's reason where there is one.
    public var description: String {
        switch self {
        case let .cannotOpen(file, reason): return "\(file): cannot open (\(reason))"
        case let .notARegularFile(file): return "\(file): not a regular file"
        case let .cannotMap(file, reason): return "\(file): cannot map into memory (\(reason))"
        case let .cannotWrite(file, reason): return "\(file): cannot write (\(reason))"
        case let .outputExists(file): return "\(file): output exists (pass --force to replace it)"
        case let .interrupted(file): return "\(file): interrupted; nothing was written"
        case let .outputOverlapsInput(output, input):
            return "\(faultLocation(output)): is, holds or lies inside the input \(faultLocation(input)) (expected an output path apart from every input; --force never replaces an input)"
        }
    }
}

func systemErrorText(_ code: Int32 = errno) -> String {
    String(cString: strerror(code))
}

/// A whole file mapped read-only into memory.
///
/// Pages are loaded on first touch, so opening a multi-gigabyte checkpoint costs nothing until
/// its bytes are read. The mapping lives as long as this object; `TensorView`s keep it alive.
public final class MappedFile: @unchecked Sendable {
    /// The path the file was opened from.
    public let path: String
    /// The file's length in bytes when it was mapped.
    public let count: Int
    private let base: UnsafeRawPointer?

    /// Opens and maps `path` read-only; an empty file maps nothing and has empty `bytes`.
    public init(path: String) throws(FileAccessError) {
        self.path = path
        // Non-blocking, so a FIFO or device is refused below instead of blocking the open forever.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw .cannotOpen(file: path, reason: systemErrorText()) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .cannotOpen(file: path, reason: systemErrorText()) }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw .notARegularFile(file: path) }
        count = Int(info.st_size)
        if count == 0 {
            base = nil  // mmap refuses zero lengths; an empty file is simply empty.
            return
        }
        guard let mapped = mmap(nil, count, PROT_READ, MAP_PRIVATE, fd, 0), mapped != MAP_FAILED else {
            throw .cannotMap(file: path, reason: systemErrorText())
        }
        base = UnsafeRawPointer(mapped)
    }

    deinit {
        if let base { munmap(UnsafeMutableRawPointer(mutating: base), count) }
    }

    /// All bytes of the file.
    public var bytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base, count: count)
    }

    /// Tells the kernel a range will be read front to back soon (read-ahead).
    public func adviseSequential(_ range: Range<Int>) {
        guard let base, !range.isEmpty else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = range.lowerBound / page * page
        _ = madvise(UnsafeMutableRawPointer(mutating: base + start), range.upperBound - start, MADV_WILLNEED)
    }

    /// Tells the kernel a range will not be needed again, so its pages can leave the resident set.
    public func adviseDone(_ range: Range<Int>) {
        guard let base, !range.isEmpty else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = range.lowerBound / page * page
        _ = madvise(UnsafeMutableRawPointer(mutating: base + start), range.upperBound - start, MADV_DONTNEED)
    }
}

extension TensorView {
    /// Lets the kernel drop the mapped pages behind `range` (bytes of this view) once they have been
    /// read: they stay in the page cache, leave the resident set, and are read again if touched.
    /// Does nothing for a view of anything but a mapped file (a decoded copy).
    public func releaseMappedPages(_ range: Range<Int>) {
        guard let mapped = storage as? MappedFile, !range.isEmpty else { return }
        withBytes { bytes in
            guard let start = bytes.baseAddress, let base = mapped.bytes.baseAddress else { return }
            let offset = start - base + range.lowerBound
            mapped.adviseDone(offset..<(offset + range.count))
        }
    }

    /// A view of `byteRange` of a mapped file; the view keeps the mapping alive.
    public init(info: TensorInfo, storage: MappedFile, byteRange: Range<Int>) {
        self.init(info: info, owner: storage, bytes: UnsafeRawBufferPointer(rebasing: storage.bytes[byteRange]))
    }
}
