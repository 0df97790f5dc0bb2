import Dispatch
import Synchronization

/// Writes one safetensors file whose layout (header and every offset) is known before any
/// data: tensors arrive in whatever order they are produced, each checked against the layout
/// on the caller's thread and written at its offset by a background thread, so the caller
/// computes the next tensor while the last one's bytes go to disk.
///
/// At most `window` submitted tensors wait or are being written; a further `write` blocks until
/// one is done, which bounds the memory held to `window` tensors' bytes. `finish()` waits for
/// every write, checks that every tensor of the layout was written once, and fsyncs. A writer
/// dropped or `abandon()`ed before `finish()` stops writing (its caller removes the file).
public final class SafetensorsStreamWriter: @unchecked Sendable {
    /// The file's layout: the header is on disk once the writer exists.
    public let layout: SafetensorsLayout
    /// The file being written.
    public var path: String { file.path }

    private let file: PositionedOutputFile
    private let indexByName: [String: Int]
    /// Which tensors of `layout` have been submitted; touched by the caller's thread only.
    private var submitted: [Bool]
    private var submittedCount = 0
    private let queue = DispatchQueue(label: "ckpt.safetensors-stream-writer")
    private let slots: DispatchSemaphore
    /// The first failure of a background write, or `.cancelled` once abandoned; later writes are skipped.
    private let failure = Mutex<Failure?>(nil)
    private var finished = false

    private enum Failure: Equatable {
        case error(FileAccessError)
        case cancelled
    }

    /// One tensor's bytes waiting to be written: owned, or a view into a mapped input.
    private enum Payload: @unchecked Sendable {
        case owned([UInt8])
        case view(TensorView)
    }

    /// Creates `path` (which must not exist) and writes `layout`'s header; at most `window` (≥ 1)
    /// submitted tensors are held at once. Throws `SafetensorsWriteError.duplicateTensor` for a layout naming a tensor twice.
    public init(_ layout: SafetensorsLayout, path: String, window: Int = 2) throws {
        var index: [String: Int] = [:]
        for (i, info) in layout.tensors.enumerated() where index.updateValue(i, forKey: info.name) != nil {
            throw SafetensorsWriteError.duplicateTensor(file: path, tensor: info.name)
        }
        self.layout = layout
        indexByName = index
        submitted = [Bool](repeating: false, count: layout.tensors.count)
        slots = DispatchSemaphore(value: max(1, window))
        file = try PositionedOutputFile(creating: path)
        try file.write(layout.header, at: 0)
    }

    deinit {
        if !finished { abandon() }
    }

    /// Queues the parts of one tensor (an encoded weight's parts, written together), each
    /// checked now against the layout: its name planned, not yet written, same dtype and shape,
    /// exactly its byte count. Throws the first failure of an earlier background write.
    public func write(_ parts: [(spec: TensorSpec, bytes: [UInt8])]) throws {
        var placed: [(Int, Payload)] = []
        for part in parts {
            let i = try claim(part.spec.name, dtype: part.spec.dtype, shape: part.spec.shape, byteCount: part.bytes.count)
            placed.append((i, .owned(part.bytes)))
        }
        try enqueue(placed, then: nil)
    }

    /// Queues a tensor whose bytes stay where they are (a mapped input) under the name `name`;
    /// `then` runs on the writing thread once they are written (to release the input's pages).
    public func write(_ view: TensorView, as name: String, then: (@Sendable () -> Void)? = nil) throws {
        let i = try claim(name, dtype: view.dtype, shape: view.shape, byteCount: view.byteCount)
        try enqueue([(i, .view(view))], then: then)
    }

    /// Marks the layout's tensor `name` written, after checking it matches the plan.
    private func claim(_ name: String, dtype: DType, shape: [Int], byteCount: Int) throws -> Int {
        guard let i = indexByName[name] else { throw SafetensorsWriteError.unplannedTensor(file: path, tensor: name) }
        guard !submitted[i] else { throw SafetensorsWriteError.duplicateTensor(file: path, tensor: name) }
        let info = layout.tensors[i]
        guard info.dtype == dtype, info.shape == shape else {
            throw SafetensorsWriteError.differsFromPlan(file: path, tensor: name, expected: "\(info.dtype.rawValue) \(info.shape)",
                                                        actual: "\(dtype.rawValue) \(shape)")
        }
        guard byteCount == info.byteCount else {
            throw SafetensorsWriteError.wrongByteCount(file: path, tensor: name, expected: info.byteCount, actual: byteCount)
        }
        submitted[i] = true
        submittedCount += 1
        return i
    }

    private func enqueue(_ placed: [(Int, Payload)], then: (@Sendable () -> Void)?) throws {
        try throwFailure()
        slots.wait()  // the window: wait until fewer than `window` tensors are pending
        let dataStart = layout.header.count
        let offsets = placed.map { dataStart + layout.tensors[$0.0].dataOffsets.lowerBound }
        queue.async { [self] in
            defer { slots.signal() }
            for (k, (_, payload)) in placed.enumerated() {
                guard failure.withLock({ $0 == nil }) else { return }
                let result: Result<Void, FileAccessError>
                switch payload {
                case .owned(let bytes): result = Result { () throws(FileAccessError) in try file.write(bytes, at: offsets[k]) }
                case .view(let view): result = view.withBytes { bytes in Result { () throws(FileAccessError) in try file.write(bytes, at: offsets[k]) } }
                }
                if case .failure(let error) = result {
                    failure.withLock { if $0 == nil { $0 = .error(error) } }
                    return
                }
            }
            then?()
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
        if submittedCount != layout.tensors.count, let i = submitted.firstIndex(of: false) {
            throw SafetensorsWriteError.notWritten(file: path, tensor: layout.tensors[i].name)
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
