import Dispatch

/// Writes one safetensors file whose layout (header and every offset) is known before any
/// data: tensors arrive in whatever order they are produced, each checked against the layout
/// on the caller's thread and written at its offset by a background thread, so the caller
/// computes the next tensor while the last one's bytes go to disk.
///
/// At most `window` submitted tensors (or pieces of one) wait or are being written; a further
/// `write` blocks until one is done, which bounds the memory held to `window` submissions' bytes.
/// A tensor too large to hold whole is handed over in pieces (`write(piece:of:at:)`); a tensor
/// viewed in a mapped input is written `pieceBytes` at a time and each piece's mapped pages are
/// dropped once written, so resident memory stays near one piece, not the tensor.
/// `finish()` waits for every write, checks that every tensor of the layout was written exactly
/// once, and fsyncs. A writer dropped or `abandon()`ed before `finish()` stops writing (its caller
/// removes the file).
public final class SafetensorsStreamWriter: @unchecked Sendable {
    /// The file's layout: the header is on disk once the writer exists.
    public let layout: SafetensorsLayout
    /// The file being written.
    public var path: String { file.path }

    private let file: PositionedOutputFile
    private let indexByName: [String: Int]
    /// Bytes of each tensor of `layout` submitted so far (its byte count once complete); touched
    /// by the caller's thread only.
    private var handed: [Int]
    /// Which tensors of `layout` have all their bytes submitted; touched by the caller's thread only.
    private var complete: [Bool]
    private var completeCount = 0
    private let queue = DispatchQueue(label: "ckpt.safetensors-stream-writer")
    private let slots: DispatchSemaphore
    /// The first failure of a background write, or `.cancelled` once abandoned; later writes are skipped.
    private let failure = LockedValue<Failure?>(nil)
    private var finished = false

    private enum Failure: Equatable {
        case error(FileAccessError)
        case cancelled
    }

    /// One tensor's bytes (or a piece of them) waiting to be written: owned, or a view into a mapped input.
    private enum Payload: @unchecked Sendable {
        case owned([UInt8])
        case view(TensorView)
    }

    /// The default of `pieceBytes`: large enough that a write call costs nothing beside copying its
    /// bytes (≈ 2 ms for 16 MB), small enough that the pieces held and the mapped input pages pulled
    /// in (and released again) stay a few tens of megabytes whatever the tensor's size.
    public static let defaultPieceBytes = 16 << 20
    /// Bytes a viewed tensor is written in, and the size of piece a producer is advised to hand over.
    public let pieceBytes: Int

    /// Creates `path` (which must not exist) and writes `layout`'s header; at most `window` (≥ 1)
    /// submitted tensors (or pieces) are held at once; viewed tensors are written `pieceBytes` at a time;
    /// around the page cache when `direct` (`PositionedOutputFile`). Throws `SafetensorsWriteError.duplicateTensor` for a layout naming a tensor twice.
    public init(_ layout: SafetensorsLayout, path: String, window: Int = 2, pieceBytes: Int = defaultPieceBytes,
                direct: Bool = PositionedOutputFile.directByDefault) throws {
        var index: [String: Int] = [:]
        for (i, info) in layout.tensors.enumerated() where index.updateValue(i, forKey: info.name) != nil {
            throw SafetensorsWriteError.duplicateTensor(file: path, tensor: info.name)
        }
        self.layout = layout
        self.pieceBytes = max(1, pieceBytes)
        indexByName = index
        handed = [Int](repeating: 0, count: layout.tensors.count)
        complete = [Bool](repeating: false, count: layout.tensors.count)
        slots = DispatchSemaphore(value: max(1, window))
        file = try PositionedOutputFile(creating: path, direct: direct)
        try file.write(layout.header, at: 0)
    }

    deinit {
        // Queued writes hold the writer, so none is left once this runs (the last may be the one
        // releasing it, on the queue's own thread, where `abandon()`'s queue.sync would trap).
        if !finished { failure.withLock { if $0 == nil { $0 = .cancelled } } }
    }

    /// Queues the parts of one tensor (an encoded weight's parts, written together), each
    /// checked now against the layout: its name planned, not yet written, same dtype and shape,
    /// exactly its byte count. Throws the first failure of an earlier background write.
    public func write(_ parts: [(spec: TensorSpec, bytes: [UInt8])]) throws {
        var placed: [(index: Int, offset: Int, payload: Payload)] = []
        for part in parts {
            let i = try claim(part.spec.name, dtype: part.spec.dtype, shape: part.spec.shape, at: 0, byteCount: part.bytes.count, whole: true)
            placed.append((i, 0, .owned(part.bytes)))
        }
        try enqueue(placed, then: nil)
    }

    /// Queues a tensor whose bytes stay where they are (a mapped input) under the name `name`.
    /// They are written `pieceBytes` at a time, and the mapped pages of each piece are dropped
    /// once it is written (they stay in the page cache); `then` runs on the writing thread once
    /// the whole tensor is written.
    public func write(_ view: TensorView, as name: String, then: (@Sendable () -> Void)? = nil) throws {
        let i = try claim(name, dtype: view.dtype, shape: view.shape, at: 0, byteCount: view.byteCount, whole: true)
        try enqueue([(i, 0, .view(view))], then: then)
    }

    /// Queues `bytes`, the piece of the tensor `spec` that starts `offset` bytes into its data.
    /// Pieces of one tensor come in order, each where the last one ended, until its byte count is
    /// reached; other tensors' pieces may come between them. Checked like a whole tensor, and
    /// also for a piece that does not start where the last ended or that runs past the tensor's end.
    public func write(piece bytes: [UInt8], of spec: TensorSpec, at offset: Int) throws {
        let i = try claim(spec.name, dtype: spec.dtype, shape: spec.shape, at: offset, byteCount: bytes.count, whole: false)
        try enqueue([(i, offset, .owned(bytes))], then: nil)
    }

    /// Bytes of the tensor `name` submitted so far (its byte count once complete; 0 for a name outside the layout).
    public func bytesSubmitted(_ name: String) -> Int {
        indexByName[name].map { handed[$0] } ?? 0
    }

    /// Checks `byteCount` bytes of the layout's tensor `name`, starting `offset` bytes into it,
    /// against the plan and records them as submitted (the whole tensor when `whole`).
    private func claim(_ name: String, dtype: DType, shape: [Int], at offset: Int, byteCount: Int, whole: Bool) throws -> Int {
        guard let i = indexByName[name] else { throw SafetensorsWriteError.unplannedTensor(file: path, tensor: name) }
        guard !complete[i] else { throw SafetensorsWriteError.duplicateTensor(file: path, tensor: name) }
        let info = layout.tensors[i]
        guard info.dtype == dtype, info.shape == shape else {
            throw SafetensorsWriteError.differsFromPlan(file: path, tensor: name, expected: "\(info.dtype.rawValue) \(info.shape)",
                                                        actual: "\(dtype.rawValue) \(shape)")
        }
        // A whole tensor is a piece at 0 that must also end where the tensor ends.
        guard offset == handed[i] else {
            throw SafetensorsWriteError.pieceOutOfOrder(file: path, tensor: name, expectedOffset: handed[i], offset: offset)
        }
        let end = offset + byteCount
        guard whole ? end == info.byteCount : end <= info.byteCount else {
            throw SafetensorsWriteError.wrongByteCount(file: path, tensor: name, expected: info.byteCount, actual: end)
        }
        handed[i] = end
        if end == info.byteCount {
            complete[i] = true
            completeCount += 1
        }
        return i
    }

    private func enqueue(_ placed: [(index: Int, offset: Int, payload: Payload)], then: (@Sendable () -> Void)?) throws {
        try throwFailure()
        slots.wait()  // the window: wait until fewer than `window` submissions are pending
        let dataStart = layout.header.count
        let offsets = placed.map { dataStart + layout.tensors[$0.index].dataOffsets.lowerBound + $0.offset }
        queue.async { [self] in
            defer { slots.signal() }
            for (k, item) in placed.enumerated() {
                guard failure.withLock({ $0 == nil }) else { return }
                let result: Result<Void, FileAccessError>
                switch item.payload {
                case .owned(let bytes): result = Result { () throws(FileAccessError) in try file.write(bytes, at: offsets[k]) }
                case .view(let view): result = Result { () throws(FileAccessError) in try writeReleasing(view, at: offsets[k]) }
                }
                if case .failure(let error) = result {
                    failure.withLock { if $0 == nil { $0 = .error(error) } }
                    return
                }
            }
            then?()
        }
    }

    /// Writes a viewed tensor `pieceBytes` at a time, dropping each piece's mapped pages once
    /// written: a 500 MB embedding then costs a piece of resident memory, not 500 MB.
    private func writeReleasing(_ view: TensorView, at offset: Int) throws(FileAccessError) {
        var done = 0
        while done < view.byteCount {
            let range = done..<min(view.byteCount, done + pieceBytes)
            let result = view.withBytes { bytes in
                Result { () throws(FileAccessError) in try file.write(UnsafeRawBufferPointer(rebasing: bytes[range]), at: offset + range.lowerBound) }
            }
            try result.get()
            view.releaseMappedPages(range)
            done = range.upperBound
        }
    }

    private func throwFailure() throws {
        switch failure.withLock({ $0 }) {
        case .error(let error)?: throw error
        case .cancelled?: throw FileAccessError.interrupted(file: path)
        case nil: return
        }
    }

    /// Waits for every queued write, checks that each tensor of the layout was written, then
    /// fsyncs and closes: the file is complete on disk when this returns.
    public func finish() throws {
        queue.sync {}
        try throwFailure()
        if completeCount != layout.tensors.count, let i = complete.firstIndex(of: false) {
            let info = layout.tensors[i]
            if handed[i] > 0 {
                throw SafetensorsWriteError.wrongByteCount(file: path, tensor: info.name, expected: info.byteCount, actual: handed[i])
            }
            throw SafetensorsWriteError.notWritten(file: path, tensor: info.name)
        }
        finished = true
        try file.finish()
    }

    /// Stops writing: queued writes are skipped and the one under way is waited for. The
    /// caller removes the file (an `AtomicOutput` does).
    public func abandon() {
        failure.withLock { if $0 == nil { $0 = .cancelled } }
        queue.sync {}
        finished = true
    }
}
