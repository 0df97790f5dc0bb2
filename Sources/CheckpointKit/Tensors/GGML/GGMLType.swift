/// One GGML tensor type as GGUF files store it: its id, name, block geometry, and the codec that
/// turns its blocks into f32 (and back, for the types ckpt writes).
///
/// Each type is defined in its own file beside this one and listed once in `all`; adding a type
/// is one file and one line. Decoding is bit-exact with gguf-py's `quants` module (which
/// reproduces ggml-quants.c); half-precision scales are IEEE f16.
public struct GGMLType: Sendable, Hashable, CustomStringConvertible {
    /// The type id in GGUF tensor infos (`ggml_type`).
    public let rawValue: UInt32
    /// llama.cpp's name: F32, Q4_K, …
    public let name: String
    /// Elements per block.
    public let blockSize: Int
    /// Bytes per block.
    public let typeSize: Int
    /// How llama.cpp rounds the activations multiplied with this type (its `vec_dot_type`).
    public let activations: ActivationRounding
    /// Decodes `out.count` elements (whole blocks) from `raw`.
    let decodeBlocks: @Sendable (_ raw: UnsafeRawBufferPointer, _ out: UnsafeMutableBufferPointer<Float>) -> Void
    /// Encodes whole blocks of f32 (a fast path, for the types that have one).
    let encodeBlocks: (@Sendable (_ x: UnsafeBufferPointer<Float>, _ threads: ThreadBudget) -> [UInt8])?
    /// Quantizes one row as llama.cpp does, with or without importance weights.
    let quantizeRow: RowQuantizer?

    /// Every type ckpt reads, in id order: the one list.
    public static let all: [GGMLType] = [.f32, .f16, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .q8_K, .iq4_NL, .iq4_XS, .bf16]

    /// The type with GGUF id `rawValue`, if ckpt knows it.
    public init?(rawValue: UInt32) {
        guard let found = Self.all.first(where: { $0.rawValue == rawValue }) else { return nil }
        self = found
    }

    init(rawValue: UInt32, name: String, blockSize: Int, typeSize: Int, activations: ActivationRounding,
         decode: @escaping @Sendable (UnsafeRawBufferPointer, UnsafeMutableBufferPointer<Float>) -> Void,
         encode: (@Sendable (UnsafeBufferPointer<Float>, ThreadBudget) -> [UInt8])? = nil, quantize: RowQuantizer? = nil) {
        self.rawValue = rawValue
        self.name = name
        self.blockSize = blockSize
        self.typeSize = typeSize
        self.activations = activations
        self.decodeBlocks = decode
        self.encodeBlocks = encode
        self.quantizeRow = quantize
    }

    /// Types are equal when their GGUF ids are.
    public static func == (a: GGMLType, b: GGMLType) -> Bool { a.rawValue == b.rawValue }
    /// Hashes the GGUF id only, as `==` compares.
    public func hash(into hasher: inout Hasher) { hasher.combine(rawValue) }
    /// llama.cpp's name, e.g. "Q4_K".
    public var description: String { name }

    /// Bytes `elements` values take (a whole number of blocks).
    public func byteCount(elements: Int) -> Int { elements / blockSize * typeSize }

    /// Whether ckpt can write this type.
    public var isEncodable: Bool { encodeBlocks != nil || quantizeRow != nil }

    /// The f32 values of `count` elements stored in `raw` (which holds at least their blocks).
    public func decode(_ raw: UnsafeRawBufferPointer, count: Int) -> [Float] {
        var out = [Float](repeating: 0, count: count)
        out.withUnsafeMutableBufferPointer { decode(raw, into: $0) }
        return out
    }

    /// Decodes `out.count` elements from `raw` into `out`.
    public func decode(_ raw: UnsafeRawBufferPointer, into out: UnsafeMutableBufferPointer<Float>) {
        precondition(out.count % blockSize == 0 && raw.count >= byteCount(elements: out.count), "whole blocks, backed by bytes")
        decodeBlocks(raw, out)
    }

    /// The blocks of `x` (a whole number of blocks) in this type, or nil when ckpt does not write it.
    public func encode(_ x: UnsafeBufferPointer<Float>, threads: ThreadBudget = .allCores) -> [UInt8]? {
        if let encodeBlocks { return encodeBlocks(x, threads) }
        // Without importance weights every block is quantized on its own: any row length gives the same bytes.
        let blocksPerRow = max(1, min(x.count / blockSize, 16_384 / blockSize))
        return x.count == 0 ? [] : encode(x, rowLength: blocksPerRow * blockSize, importance: nil, threads: threads)
    }

    /// The rows of `x` (each `rowLength` values, a whole number of blocks, and `x` whole rows)
    /// quantized as llama-quantize does: with `importance` (one weight per column, llama.cpp's
    /// imatrix) through its weighted search, without through its reference quantizer. Nil when
    /// ckpt does not write this type.
    public func encode(_ x: UnsafeBufferPointer<Float>, rowLength: Int, importance: [Float]?, threads: ThreadBudget = .allCores) -> [UInt8]? {
        precondition(rowLength > 0 && rowLength % blockSize == 0 && x.count % rowLength == 0, "whole rows of whole blocks")
        precondition(importance.map { $0.count == rowLength } ?? true, "one importance weight per column")
        guard let quantizeRow else { return importance == nil ? encodeBlocks?(x, threads) : nil }
        let rows = x.count / rowLength, rowBytes = byteCount(elements: rowLength)
        var out = [UInt8](repeating: 0, count: rows * rowBytes)
        let rowsPerChunk = max(1, 16_384 / rowLength)
        out.withUnsafeMutableBytes { o in
            let target = UncheckedSendable(o.baseAddress!)
            let weights = UncheckedSendable(importance)
            threads.forEachChunk((rows + rowsPerChunk - 1) / rowsPerChunk) { chunk in
                weights.value.withUnsafeBufferPointerOrNil { qw in
                    for row in (chunk * rowsPerChunk)..<min(rows, (chunk + 1) * rowsPerChunk) {
                        quantizeRow(x.baseAddress! + row * rowLength, rowLength, qw, target.value + row * rowBytes)
                    }
                }
            }
        }
        return out
    }

    /// `rows` rows of `rowLength` values at `x` into `out` (their `byteCount`) on the calling
    /// thread, the same bytes `encode(_:rowLength:importance:threads:)` gives, `importance` one
    /// weight per column or nil; false when ckpt does not write this type.
    func encodeRows(_ x: UnsafePointer<Float>, rows: Int, rowLength: Int, importance: UnsafePointer<Float>?,
                    into out: UnsafeMutableRawPointer) -> Bool {
        precondition(rowLength > 0 && rowLength % blockSize == 0, "whole blocks")
        guard let quantizeRow else { return false }
        let rowBytes = byteCount(elements: rowLength)
        for row in 0..<rows { quantizeRow(x + row * rowLength, rowLength, importance, out + row * rowBytes) }
        return true
    }
}

/// Quantizes one row: `count` values (whole blocks) at `x`, with llama.cpp's importance
/// weights for its columns or nil, into the row's blocks at `out`.
typealias RowQuantizer = @Sendable (_ x: UnsafePointer<Float>, _ count: Int, _ importance: UnsafePointer<Float>?,
                                    _ out: UnsafeMutableRawPointer) -> Void

extension Optional where Wrapped == [Float] {
    /// The array's base address, or nil for no array.
    func withUnsafeBufferPointerOrNil<R>(_ body: (UnsafePointer<Float>?) -> R) -> R {
        switch self {
        case .none: return body(nil)
        case .some(let array): return array.withUnsafeBufferPointer { body($0.baseAddress) }
        }
    }
}

/// Helpers the block codecs share.
enum GGMLBlock {
    /// The f16 at `offset`, widened.
    @inline(__always)
    static func half(_ raw: UnsafeRawBufferPointer, _ offset: Int) -> Float {
        FloatConversion.f16ToF32Reference(raw.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    /// Stores `value` as little-endian f16 at `offset`.
    @inline(__always)
    static func storeHalf(_ value: Float, _ out: inout [UInt8], _ offset: Int) {
        let h = FloatConversion.f32ToF16(value)
        out[offset] = UInt8(h & 0xFF)
        out[offset + 1] = UInt8(h >> 8)
    }

    /// gguf-py's `np_roundf`: round half away from zero, computed as floor(|x|) + floor(2·frac).
    @inline(__always)
    static func roundHalfAway(_ x: Float) -> Float {
        let a = abs(x)
        let floored = a.rounded(.down)
        let b = floored + (2 * (a - floored)).rounded(.down)
        return x < 0 ? -b : (x > 0 ? b : 0)
    }

    /// The eight 6-bit (scale, min) pairs of a Q4_K / Q5_K block (`get_scale_min_k4`), from the
    /// 12 bytes at `offset`.
    static func scalesAndMins(_ raw: UnsafeRawBufferPointer, _ offset: Int) -> (scales: [UInt8], mins: [UInt8]) {
        var scales = [UInt8](repeating: 0, count: 8), mins = scales
        for j in 0..<4 {
            let dj = raw[offset + j], mj = raw[offset + 4 + j], mdj = raw[offset + 8 + j]
            scales[j] = dj & 0x3F
            mins[j] = mj & 0x3F
            scales[4 + j] = (mdj & 0x0F) | ((dj >> 2) & 0x30)
            mins[4 + j] = (mdj >> 4) | ((mj >> 2) & 0x30)
        }
        return (scales, mins)
    }
}
