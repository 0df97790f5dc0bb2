import Dispatch
import Synchronization

/// A file written front to back by a background thread: `append` queues a block and returns at
/// once, so the caller computes the next block while this one goes to disk. What
/// `SafetensorsStreamWriter` is for a layout known in advance, this is for a file whose blocks
/// come in order (a GGUF, whose header may wait for its tokenizer metadata).
///
/// At most `window` blocks wait or are being written; a further `append` blocks until one is
/// done. A failed write is thrown by the next `append` or by `finish()`; later blocks are skipped.
/// A file dropped or `abandon()`ed before `finish()` stops writing (its caller removes it).
public final class BackgroundAppendFile: @unchecked Sendable {
    /// The file being written.
    public var path: String { file.path }
    /// Bytes appended so far (queued or written).
    public private(set) var position = 0

    private let file: PositionedOutputFile
    private let queue = DispatchQueue(label: "ckpt.background-append-file")
    private let slots: DispatchSemaphore
    /// The first failure of a background write, or `.cancelled` once abandoned.
    private let failure = Mutex<FileAccessError?>(nil)
    private var finished = false

    /// Creates `path`, which must not exist; at most `window` (≥ 1) appended blocks are held at once.
    public init(creating path: String, window: Int = 2) throws(FileAccessError) {
        file = try PositionedOutputFile(creating: path)
        slots = DispatchSemaphore(value: max(1, window))
    }

    deinit {
        if !finished { abandon() }
    }

    /// Queues `bytes` to follow everything appended before; throws an earlier write's failure.
    public func append(_ bytes: [UInt8]) throws(FileAccessError) {
        if let error = failure.withLock({ $0 }) { throw error }
        guard !bytes.isEmpty else { return }
        slots.wait()
        let offset = position
        position += bytes.count
        queue.async { [self] in
            defer { slots.signal() }
            guard failure.withLock({ $0 == nil }) else { return }
            do throws(FileAccessError) {
                try file.write(bytes, at: offset)
            } catch {
                failure.withLock { if $0 == nil { $0 = error } }
            }
        }
    }

    /// Waits for every queued block, then fsyncs and closes: the file is complete on disk when this returns.
    public func finish() throws(FileAccessError) {
        queue.sync {}
        if let error = failure.withLock({ $0 }) { throw error }
        finished = true
        try file.finish()
    }

    /// Stops writing: queued blocks are skipped and the one under way is waited for. The caller
    /// removes the file (an `AtomicOutput` does).
    public func abandon() {
        failure.withLock { if $0 == nil { $0 = .interrupted(file: file.path) } }
        queue.sync {}
        finished = true
    }
}
