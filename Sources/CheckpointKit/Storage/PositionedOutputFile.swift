import CSystem
import Dispatch

#if canImport(Glibc)
import Glibc
#endif

/// A file written at chosen offsets (`pwrite`), in any order and from any thread, with every
/// failure (a full disk, an I/O error, an interruption) turned into a `FileAccessError` naming
/// the file. What `OutputFile` is for a stream, this is for a layout known before its data:
/// each piece lands where the layout puts it as soon as it exists.
///
/// By default the file is written with direct I/O (`O_DIRECT`) where the file system takes it:
/// the bytes go from an aligned bounce buffer to the device, not through the page cache, whose
/// copy, dirty-page accounting and writeback were the largest cost of a quantize run after the
/// kernels (a fifth of its CPU) and made the final fsync wait for the whole file. Direct writes
/// need whole aligned pages, so the bytes of a page that a write covers only in part wait in
/// memory until the other writes complete it; the last, partial page of the file and any page
/// still incomplete at `finish()` are written through the page cache. A file system that refuses
/// direct I/O (tmpfs) gets buffered writes from the first failed call on, with the same bytes.
public final class PositionedOutputFile: Sendable {
    /// The file being written.
    public let path: String
    private let fd: Int32
    private let state: LockedValue<State>

    /// The alignment direct writes keep (offsets, lengths and memory): the largest logical block size in use.
    static let pageSize = 4096
    /// Bytes copied into one bounce buffer per direct `pwrite` (two buffers in use a write): large
    /// enough that the device sees long requests, small enough to add little to the RSS.
    static let bounceBytes = 1 << 20
    /// Runs the second of the two direct writes kept under way (`writeWholePages`).
    private let helper = DispatchQueue(label: "ckpt.positioned-output-file.second-write")

    /// Whether outputs use direct I/O where the file system takes it: yes, unless the environment
    /// sets `CKPT_OUTPUT_IO=buffered` (for comparing, or a file system whose direct I/O misbehaves).
    public static var directByDefault: Bool {
        guard let value = getenv("CKPT_OUTPUT_IO") else { return true }
        return String(cString: value) != "buffered"
    }

    /// Aligned memory this file owns: held under its lock, or by the one write that took it out.
    private struct AlignedBlock: @unchecked Sendable {
        let pointer: UnsafeMutableRawPointer
        init(bytes: Int) { pointer = .allocate(byteCount: bytes, alignment: PositionedOutputFile.pageSize) }
        func deallocate() { pointer.deallocate() }
    }

    /// The bytes of one page that writes have covered in part: `pieces` are the ranges within the
    /// page they covered (writes are disjoint), `covered` their total.
    private struct PartialPage {
        var buffer: AlignedBlock
        var covered = 0
        var pieces: [Range<Int>] = []
    }

    private struct State {
        /// Buffered mode: bytes written since writeback was last started.
        var unflushed = 0
        var closed = false
        var direct: Bool
        var partialPages: [Int: PartialPage] = [:]
        /// Bounce buffers not in use, reused so that no write faults in fresh pages.
        var spareBounces: [AlignedBlock] = []
    }

    /// Creates `path`, which must not exist (temporary names are unique per process), for direct
    /// writes when `direct` and the file system allow them.
    public init(creating path: String, direct: Bool = PositionedOutputFile.directByDefault) throws(FileAccessError) {
        self.path = path
        var descriptor: Int32 = -1
        var isDirect = false
        if direct {
            descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | ckpt_direct_io_flag(), 0o644)
            isDirect = descriptor >= 0
            if descriptor < 0 && errno != EINVAL { throw .cannotWrite(file: path, reason: systemErrorText()) }
        }
        if descriptor < 0 {
            descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            guard descriptor >= 0 else { throw .cannotWrite(file: path, reason: systemErrorText()) }
        }
        fd = descriptor
        state = LockedValue(State(direct: isDirect))
    }

    deinit {
        state.withLock { state in
            if !state.closed { Glibc.close(fd) }
            for page in state.partialPages.values { page.buffer.deallocate() }
            for bounce in state.spareBounces { bounce.deallocate() }
        }
    }

    /// Whether writes still go around the page cache (false once the file system refused them).
    public var isDirect: Bool { state.withLock { $0.direct } }

    /// Writes all of `bytes` at byte `offset` of the file; safe to call from several threads for disjoint ranges.
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(FileAccessError) {
        guard bytes.count > 0, let base = bytes.baseAddress else { return }
        if Interruption.isRequested { throw .interrupted(file: path) }
        guard state.withLock({ $0.direct }) else { return try writeBuffered(bytes, at: offset) }
        let page = Self.pageSize
        let end = offset + bytes.count
        let firstWhole = (offset + page - 1) / page * page, lastWhole = end / page * page
        guard firstWhole < lastWhole else { return try collect(bytes, at: offset) }
        if offset < firstWhole { try collect(UnsafeRawBufferPointer(start: base, count: firstWhole - offset), at: offset) }
        if lastWhole < end { try collect(UnsafeRawBufferPointer(start: base + (lastWhole - offset), count: end - lastWhole), at: lastWhole) }
        try writeWholePages(UnsafeRawBufferPointer(start: base + (firstWhole - offset), count: lastWhole - firstWhole), at: firstWhole)
    }

    /// Writes page-aligned bytes at a page-aligned offset, `bounceBytes` per direct `pwrite`, with
    /// two of them under way at once: a direct write waits for the device before the next is issued,
    /// and on this machine's virtual disk one at a time reached 55–75% of the rate of `dd conv=fsync`
    /// (the kernel's writeback, many requests at once), two at a time about all of it while the disk
    /// answered quickly (less when its latency rose: see `TensorWriting.streamed`). The caller's
    /// thread and a helper take the next unwritten slice in turn.
    private func writeWholePages(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(FileAccessError) {
        let slices = (bytes.count + Self.bounceBytes - 1) / Self.bounceBytes
        let nextSlice = LockedValue(0)
        let firstFailure = LockedValue<FileAccessError?>(nil)
        let source = UncheckedSendable(bytes)
        @Sendable func writeSlices() {
            // Taken at the first direct slice: a helper that finds the slices gone takes none.
            var bounce: AlignedBlock?
            defer { if let bounce { state.withLock { $0.spareBounces.append(bounce) } } }
            while firstFailure.withLock({ $0 == nil }) {
                let slice = nextSlice.withLock { next in defer { next += 1 }; return next }
                guard slice < slices else { return }
                let start = slice * Self.bounceBytes, count = min(Self.bounceBytes, source.value.count - start)
                let piece = UnsafeRawBufferPointer(rebasing: source.value[start..<(start + count)])
                do throws(FileAccessError) {
                    if isDirect {
                        let buffer = bounce ?? takeBounce()
                        bounce = buffer
                        UnsafeMutableRawBufferPointer(start: buffer.pointer, count: count).copyMemory(from: piece)
                        try writeDirect(UnsafeRawBufferPointer(start: buffer.pointer, count: count), at: offset + start)
                    } else {
                        // The file system refused direct I/O: the rest goes through the page cache.
                        try writeBuffered(piece, at: offset + start)
                    }
                } catch {
                    firstFailure.withLock { if $0 == nil { $0 = error } }
                }
            }
        }
        if slices > 1 {
            // The helper is a serial queue's, so it gets a thread of its own even while every pooled
            // thread computes; the caller's thread writes too, and waits for it before returning.
            let helping = DispatchGroup()
            helper.async(group: helping, execute: writeSlices)
            writeSlices()
            helping.wait()
        } else {
            writeSlices()
        }
        if let failure = firstFailure.withLock({ $0 }) { throw failure }
    }

    /// Writes `bytes` at `offset`, as the raw-buffer overload does.
    public func write(_ bytes: [UInt8], at offset: Int) throws(FileAccessError) {
        let result = bytes.withUnsafeBytes { raw in Result { () throws(FileAccessError) in try write(raw, at: offset) } }
        try result.get()
    }

    /// Writes the pages still held in part, then fsyncs and closes. The file is complete on disk
    /// when this returns; call it after the last write has returned.
    public func finish() throws(FileAccessError) {
        try switchToBuffered()
        guard fsync(fd) == 0 else { throw .cannotWrite(file: path, reason: systemErrorText()) }
        state.withLock { $0.closed = true }
        guard Glibc.close(fd) == 0 else { throw .cannotWrite(file: path, reason: systemErrorText()) }
    }

    // MARK: - Direct writes

    /// What became of bytes handed to a page held in part.
    private enum Collected {
        case held
        case completed(AlignedBlock)
        case buffered
    }

    /// Copies bytes that lie within pages into those pages' held copies; a page the copy
    /// completes is written (directly) and freed.
    private func collect(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(FileAccessError) {
        let page = Self.pageSize, end = offset + bytes.count
        var position = offset
        while position < end {
            let index = position / page, within = position - index * page
            let count = min(page - within, end - position)
            let source = bytes.baseAddress! + (position - offset)
            let outcome = state.withLock { state -> Collected in
                guard state.direct else { return .buffered }
                var held = state.partialPages[index] ?? PartialPage(buffer: AlignedBlock(bytes: Self.pageSize))
                (held.buffer.pointer + within).copyMemory(from: source, byteCount: count)
                held.covered += count
                held.pieces.append(within..<(within + count))
                if held.covered == page {
                    state.partialPages[index] = nil
                    return .completed(held.buffer)
                }
                state.partialPages[index] = held
                return .held
            }
            switch outcome {
            case .held: break
            case .completed(let buffer):
                // Through the page cache: a direct write waits for the device, and a lone page
                // costs that wait for 4 KiB (hundreds of them in a quantized file); the fsync
                // at the end writes the few pages these leave behind in one go.
                defer { buffer.deallocate() }
                try writeBuffered(UnsafeRawBufferPointer(start: buffer.pointer, count: page), at: index * page)
            case .buffered:
                // The file turned to buffered writes meanwhile: the rest goes through the page cache.
                return try writeBuffered(UnsafeRawBufferPointer(start: source, count: end - position), at: position)
            }
            position += count
        }
    }

    /// One aligned `pwrite` on the direct descriptor; where the file system refuses it (EINVAL),
    /// the file turns to buffered writes and this one is repeated that way.
    private func writeDirect(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(FileAccessError) {
        let (done, failure) = try pwriteAll(fd, bytes, at: offset, file: path)
        guard let failure else { return }
        guard failure == EINVAL else { throw .cannotWrite(file: path, reason: systemErrorText(failure)) }
        try switchToBuffered()
        try writeBuffered(UnsafeRawBufferPointer(rebasing: bytes[done...]), at: offset + done)
    }

    /// Ends direct writing: clears O_DIRECT and writes the bytes of every page held in part through
    /// the page cache, each covered range alone: other threads may be writing the rest of such a
    /// page meanwhile (through the page cache, once this has begun), and a whole page written here
    /// would put zeros over their bytes. Nor does a last page then extend the file.
    func switchToBuffered() throws(FileAccessError) {
        let held = state.withLock { state -> [Int: PartialPage]? in
            guard state.direct else { return nil }
            state.direct = false
            defer { state.partialPages = [:] }
            return state.partialPages
        }
        guard let held else { return }
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0, fcntl(fd, F_SETFL, flags & ~ckpt_direct_io_flag()) == 0 else {
            for page in held.values { page.buffer.deallocate() }
            throw .cannotWrite(file: path, reason: systemErrorText())
        }
        var failure: FileAccessError?
        for (index, page) in held.sorted(by: { $0.key < $1.key }) {
            // Adjacent ranges (a page's pieces arrive in any order) go out as one write.
            var runs: [Range<Int>] = []
            for piece in page.pieces.sorted(by: { $0.lowerBound < $1.lowerBound }) {
                if let last = runs.last, last.upperBound == piece.lowerBound {
                    runs[runs.count - 1] = last.lowerBound..<piece.upperBound
                } else {
                    runs.append(piece)
                }
            }
            for run in runs where failure == nil {
                do throws(FileAccessError) {
                    try writeBuffered(UnsafeRawBufferPointer(start: page.buffer.pointer + run.lowerBound, count: run.count),
                                      at: index * Self.pageSize + run.lowerBound)
                } catch { failure = error }
            }
            page.buffer.deallocate()
        }
        if let failure { throw failure }
    }

    private func takeBounce() -> AlignedBlock {
        state.withLock { $0.spareBounces.popLast() } ?? AlignedBlock(bytes: Self.bounceBytes)
    }

    // MARK: - Buffered writes

    private func writeBuffered(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(FileAccessError) {
        guard bytes.count > 0 else { return }
        if let failure = try pwriteAll(fd, bytes, at: offset, file: path).failure { throw .cannotWrite(file: path, reason: systemErrorText(failure)) }
        // Every 32 MB, start writing the dirty pages back to disk: the fsync in `finish` then
        // waits for the tail only. The range is the whole file because writes land anywhere.
        let start = state.withLock { state -> Bool in
            state.unflushed += bytes.count
            guard state.unflushed >= 32 << 20 else { return false }
            state.unflushed = 0
            return true
        }
        if start { _ = ckpt_start_writeback(fd, 0, 0) }
    }
}
