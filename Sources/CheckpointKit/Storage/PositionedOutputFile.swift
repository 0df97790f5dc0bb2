import CSystem
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A file written at chosen offsets (`pwrite`), in any order and from any thread, with every
/// failure (a full disk, an I/O error, an interruption) turned into a `FileAccessError` naming
/// the file. What `OutputFile` is for a stream, this is for a layout known before its data:
/// each piece lands where the layout puts it as soon as it exists.
public final class PositionedOutputFile: Sendable {
    /// The file being written.
    public let path: String
    private let fd: Int32
    /// Bytes written since writeback was last started, and whether the file is closed.
    private let state = Mutex<(unflushed: Int, closed: Bool)>((0, false))

    /// Creates `path`, which must not exist (temporary names are unique per process).
    public init(creating path: String) throws(FileAccessError) {
        self.path = path
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .cannotWrite(file: path, reason: systemErrorText()) }
    }

    deinit {
        if !state.withLock({ $0.closed }) { Glibc.close(fd) }
    }

    /// Writes all of `bytes` at byte `offset` of the file; safe to call from several threads for disjoint ranges.
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(FileAccessError) {
        guard bytes.count > 0 else { return }
        if Interruption.isRequested { throw .interrupted(file: path) }
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR {
                    if Interruption.isRequested { throw .interrupted(file: path) }
                    continue
                }
                throw .cannotWrite(file: path, reason: systemErrorText())
            }
            done += n
        }
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

    /// Writes `bytes` at `offset`, as the raw-buffer overload does.
    public func write(_ bytes: [UInt8], at offset: Int) throws(FileAccessError) {
        let result = bytes.withUnsafeBytes { raw in Result { () throws(FileAccessError) in try write(raw, at: offset) } }
        try result.get()
    }

    /// Fsyncs and closes. The file is complete on disk when this returns; call it after the last write has returned.
    public func finish() throws(FileAccessError) {
        guard fsync(fd) == 0 else { throw .cannotWrite(file: path, reason: systemErrorText()) }
        state.withLock { $0.closed = true }
        guard Glibc.close(fd) == 0 else { throw .cannotWrite(file: path, reason: systemErrorText()) }
    }
}
