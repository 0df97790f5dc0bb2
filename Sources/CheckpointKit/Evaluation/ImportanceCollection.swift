/// Sees the input of every product of a forward pass: `x` [rows, columns] multiplied by the
/// weight `weight` (its name without `.weight`). Called on the forward pass's own thread.
public protocol ActivationObserver: AnyObject {
    /// One product's input, before any rounding.
    func observe(_ weight: String, _ x: UnsafePointer<Float>, rows: Int, columns: Int)
}

/// `llama-imatrix`'s statistics on ckpt's forward pass: per weight matrix of a block (and the
/// output head on request), each input column's running f32 sum of x², token after token, and
/// the tokens counted.
public final class ImportanceCollector: ActivationObserver {
    private var sums: [String: [Float]] = [:]
    private var counts: [String: Int64] = [:]
    private var order: [String] = []
    /// The head's name (without `.weight`), collected only with `includeOutput`.
    let head: String
    let includeOutput: Bool

    /// A collector for `model`; with `includeOutput` the head too (`--process-output`).
    public init(model: TransformerModel, includeOutput: Bool) {
        head = model.head.name
        self.includeOutput = includeOutput
    }

    /// Adds one product's input rows.
    public func observe(_ weight: String, _ x: UnsafePointer<Float>, rows: Int, columns: Int) {
        guard weight != head || includeOutput else { return }
        if sums[weight] == nil { sums[weight] = [Float](repeating: 0, count: columns); order.append(weight) }
        sums[weight]!.withUnsafeMutableBufferPointer { acc in
            for r in 0..<rows {
                let row = x + r * columns
                for j in 0..<columns { acc[j] += row[j] * row[j] }
            }
        }
        counts[weight, default: 0] += Int64(rows)
    }

    /// Runs `model` over `plan`'s chunks of `tokens`, collecting; `progress` after each chunk.
    public func collect(_ model: TransformerModel, tokens: [Int], plan: ChunkPlan, progress: (Int) -> Void = { _ in }) {
        for i in plan.range {
            let chunk = plan.tokens(i, from: tokens)
            // The logits themselves are not needed: one row keeps the head's product small.
            _ = model.logits(chunk, scored: (chunk.count - 1)..<chunk.count, observer: self)
            progress(i + 1 - plan.range.lowerBound)
        }
    }

    /// The statistics as llama-imatrix saves them, each weight under its GGUF name
    /// (`ggufName(hfWeightName)`, nil to leave it out).
    public func matrix(ggufName: (String) -> String?, datasets: [String], chunkSize: Int, chunks: Int) -> ImportanceMatrix {
        var entries: [String: ImportanceMatrix.Entry] = [:]
        for weight in order {
            guard let name = ggufName(weight + ".weight") else { continue }
            entries[name] = ImportanceMatrix.Entry(sums: sums[weight]!, counts: [counts[weight]!])
        }
        return ImportanceMatrix(entries: entries, datasets: datasets, chunkCount: chunks, chunkSize: chunkSize)
    }
}
