#if canImport(Glibc)
import Glibc
#endif

/// `pwrite`s all of `bytes` to `fd` at `offset`, again after EINTR unless an interruption was
/// requested (then `.interrupted` naming `file`): the bytes written, and the errno that stopped it
/// short (nil once all are written). The one write loop of `OutputFile` and `PositionedOutputFile`.
func pwriteAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int, file: String) throws(FileAccessError) -> (done: Int, failure: Int32?) {
    var done = 0
    while done < bytes.count {
        let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
        if n >= 0 {
            done += n
        } else if errno == EINTR {
            if Interruption.isRequested { throw .interrupted(file: file) }
        } else {
            return (done, errno)
        }
    }
    return (done, nil)
}
