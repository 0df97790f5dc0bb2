import Dispatch

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

    private var file: PositionedOutputFile { shared.file }
    private let queue = DispatchQueue(label: "ckpt.background-append-file")
    /// What the queued writes touch. They hold this, never the file object itself: were a write
    /// to hold the last reference, `deinit` would run on the queue and wait for the queue forever.
    private let shared: Shared
    private var finished = false

    private final class Shared: Sendable {
        let file: PositionedOutputFile
        let slots: DispatchSemaphore
        /// The first failure of a background write, or `.interrupted` once abandoned; later writes are skipped.
        let failure = LockedValue<FileAccessError?>(nil)
        init(file: PositionedOutputFile, window: Int) {
            self.file = file
            slots = DispatchSemaphore(value: max(1, window))
        }
    }

    /// Creates `path`, which must not exist; at most `window` (≥ 1) appended blocks are held at once.
    /// Writes go through the page cache unless `direct`: a GGUF export appends blocks of every size
    /// one after another, and there a direct write's wait for the device made SmolLM2 → Q8_0 1.2×
    /// slower (paired runs), where the safetensors writer's larger window gains from it.
    public init(creating path: String, window: Int = 2, direct: Bool = false) throws(FileAccessError) {
        shared = Shared(file: try PositionedOutputFile(creating: path, direct: direct), window: window)
    }

    deinit {
        if !finished { abandon() }
    }

    /// Queues `bytes` to follow everything appended before; throws an earlier write's failure.
    public func append(_ bytes: [UInt8]) throws(FileAccessError) {
        if let error = shared.failure.withLock({ $0 }) { throw error }
        guard !bytes.isEmpty else { return }
        shared.slots.wait()
        let offset = position
        position += bytes.count
        queue.async { [shared] in
            defer { shared.slots.signal() }
            guard shared.failure.withLock({ $0 == nil }) else { return }
            do throws(FileAccessError) {
                try shared.file.write(bytes, at: offset)
            } catch {
                shared.failure.withLock { if $0 == nil { $0 = error } }
            }
        }
    }

    /// Waits for every queued block, then fsyncs and closes: the file is complete on disk when this returns.
    public func finish() throws(FileAccessError) {
        queue.sync {}
        if let error = shared.failure.withLock({ $0 }) { throw error }
        finished = true
        try file.finish()
    }

    /// Stops writing: queued blocks are skipped and the one under way is waited for. The caller
    /// removes the file (an `AtomicOutput` does).
    public func abandon() {
        shared.failure.withLock { if $0 == nil { $0 = .interrupted(file: shared.file.path) } }
        queue.sync {}
        finished = true
    }
}
