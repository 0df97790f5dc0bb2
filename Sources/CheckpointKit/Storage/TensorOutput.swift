/// How a whole-checkpoint writer puts each safetensors file's tensors on disk.
public struct TensorWriting: Sendable, Equatable {
    /// Whether tensors go through a `SafetensorsStreamWriter` (else a sequential `OutputFile`).
    public let isStreamed: Bool
    /// Bytes of each piece handed to the stream writer (0 when sequential).
    public let pieceBytes: Int
    /// Whether the stream writer writes around the page cache (`PositionedOutputFile`'s direct I/O).
    public let isDirect: Bool

    /// One tensor after another in file order through a buffered `OutputFile`, on the caller's
    /// thread: the plain path, kept as the reference the streamed one must equal byte for byte.
    public static let sequential = TensorWriting(isStreamed: false, pieceBytes: 0, isDirect: false)
    /// Through a `SafetensorsStreamWriter`: the header first, then each tensor handed over in
    /// pieces that a background thread writes at their offsets while the caller computes the next.
    ///
    /// Through the page cache, its writeback started as the bytes arrive: the programs that stream
    /// this way (convert, dequantize, merge) write floats as large as their input with little work per
    /// byte, so the disk sets their pace, and the kernel's writeback keeps many requests under way
    /// where direct writes keep two. On this machine's virtual disk a 1 GB bf16 → f16 convert took
    /// 0.64–1.24× `dd conv=fsync`'s time this way (the paired median 0.99×) and 1.0–1.9× with direct
    /// writes, whose rate fell as the disk's latency rose. Quantization, whose output is a fraction
    /// of its input and whose CPU is the limit, keeps direct writes (`CheckpointWriter.writeStreaming`).
    public static let streamed = streamed(pieceBytes: SafetensorsStreamWriter.defaultPieceBytes)

    /// Streamed in pieces of `pieceBytes` (≥ 1), through the page cache unless `direct`: small pieces
    /// let tests cross piece boundaries on tiny tensors.
    public static func streamed(pieceBytes: Int, direct: Bool = false) -> TensorWriting {
        TensorWriting(isStreamed: true, pieceBytes: max(1, pieceBytes), isDirect: direct)
    }
}

/// Where one planned tensor's bytes go, whichever writer holds its file: a producer written
/// against this writes the same bytes through the sequential `OutputFile` and through the
/// `SafetensorsStreamWriter`. Through the stream writer, large tensors travel in pieces of
/// the writer's `pieceBytes`, and the mapped input pages each piece was made from
/// are dropped once used, so resident memory stays near a few pieces, not a tensor.
public struct TensorOutput {
    /// The tensor being written, as its file's layout plans it (name, dtype, shape, offsets).
    public let info: TensorInfo
    private let target: Target

    private enum Target {
        case sequential(OutputFile)
        case streamed(SafetensorsStreamWriter)
    }

    /// The output for `info` in a file written one tensor after another.
    public init(_ info: TensorInfo, sequential file: OutputFile) {
        self.info = info
        target = .sequential(file)
    }

    /// The output for `info` in a file written by `writer`.
    public init(_ info: TensorInfo, streamed writer: SafetensorsStreamWriter) {
        self.info = info
        target = .streamed(writer)
    }

    private var spec: TensorSpec { TensorSpec(name: info.name, dtype: info.dtype, shape: info.shape) }

    /// Writes `bytes`, the tensor's next bytes (all of them, or a part when called several times).
    public func write(_ bytes: [UInt8]) throws {
        switch target {
        case .sequential(let file): try file.write(bytes)
        case .streamed(let writer):
            guard !bytes.isEmpty || info.byteCount == 0 else { return }
            if bytes.count == info.byteCount && writer.bytesSubmitted(info.name) == 0 {
                try writer.write([(spec, bytes)])
            } else {
                try writer.write(piece: bytes, of: spec, at: writer.bytesSubmitted(info.name))
            }
        }
    }

    /// Writes a tensor stored in the output dtype as it is. Through the stream writer the bytes
    /// stay in the mapped input until written, and their pages are dropped piece by piece.
    public func copy(_ view: TensorView) throws {
        switch target {
        case .sequential(let file): try view.withBytes { try file.write($0) }
        case .streamed(let writer): try writer.write(view, as: info.name)
        }
    }

    /// Writes `view` converted to the tensor's dtype (`FloatConversion.convert`), in bounded steps;
    /// a view already in that dtype is copied.
    public func convert(_ view: TensorView, threads: ThreadBudget) throws {
        if view.dtype == info.dtype {
            try copy(view)
            return
        }
        switch target {
        case .sequential(let file):
            let n = view.elementCount
            let step = max(1, Self.sequentialStepBytes / max(info.dtype.size, view.dtype.size))
            var start = 0
            while start < n {
                let count = min(step, n - start)
                try view.withBytes { bytes in
                    let source = UnsafeRawBufferPointer(rebasing: bytes[(start * view.dtype.size)..<((start + count) * view.dtype.size)])
                    try file.write(count: count * info.dtype.size) { destination in
                        FloatConversion.convert(source, from: view.dtype, to: info.dtype, into: destination, threads: threads)
                    }
                }
                start += count
            }
        case .streamed:
            // A piece is converted on the thread budget while the previous one is being written;
            // the input pages it was read from are let go at once.
            try forEachPiece(elements: view.elementCount) { range in
                let sourceRange = (range.lowerBound * view.dtype.size)..<(range.upperBound * view.dtype.size)
                let piece = view.withBytes { bytes in
                    converted(UnsafeRawBufferPointer(rebasing: bytes[sourceRange]), from: view.dtype, count: range.count, threads: threads)
                }
                view.releaseMappedPages(sourceRange)
                return piece
            }
        }
    }

    /// Writes f32 `values` (the whole tensor) converted to the tensor's dtype.
    public func convert(_ values: UnsafeBufferPointer<Float>, threads: ThreadBudget) throws {
        let raw = UnsafeRawBufferPointer(values)
        switch target {
        case .sequential(let file):
            try file.write(count: info.byteCount) { destination in
                FloatConversion.convert(raw, from: .f32, to: info.dtype, into: destination, threads: threads)
            }
        case .streamed:
            try forEachPiece(elements: values.count) { range in
                converted(UnsafeRawBufferPointer(rebasing: raw[(range.lowerBound * 4)..<(range.upperBound * 4)]), from: .f32, count: range.count,
                          threads: threads)
            }
        }
    }

    /// Output bytes the sequential path converts per step into its file's buffer (as before streaming).
    static let sequentialStepBytes = 4 << 20

    /// Hands the stream writer the pieces `make` returns for consecutive element ranges of at most
    /// `pieceBytes` of output each.
    private func forEachPiece(elements: Int, _ make: (Range<Int>) -> [UInt8]) throws {
        guard case .streamed(let writer) = target else { return }
        let step = max(1, writer.pieceBytes / max(1, info.dtype.size))
        var start = 0
        while start < elements {
            let range = start..<min(elements, start + step)
            let piece = make(range)
            if Interruption.isRequested { throw FileAccessError.interrupted(file: writer.path) }
            try writer.write(piece: piece, of: spec, at: range.lowerBound * info.dtype.size)
            start = range.upperBound
        }
        if elements == 0 { try writer.write([(spec, [])]) }
    }

    /// `count` elements of `source` (in `from`) converted into a new buffer in the tensor's dtype.
    private func converted(_ source: UnsafeRawBufferPointer, from: DType, count: Int, threads: ThreadBudget) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: count * info.dtype.size) { buffer, initialized in
            FloatConversion.convert(source, from: from, to: info.dtype, into: UnsafeMutableRawBufferPointer(buffer), threads: threads)
            initialized = count * info.dtype.size
        }
    }
}
