/// Sees the input of every product of a forward pass: `x` [rows, columns] multiplied by the
/// weight `weight` (its name without `.weight`). Called on the forward pass's own thread.
public protocol ActivationObserver: AnyObject {
    /// One product's input, before any rounding.
    func observe(_ weight: String, _ x: UnsafePointer<Float>, rows: Int, columns: Int)
    /// The buffers products read have been refilled (a new chunk, or an expert's gathered tokens):
    /// an input at the address of one seen before is another input now.
    func inputsRefilled()
}

extension ActivationObserver {
    /// Nothing to forget: the observer keeps no input from one product to the next.
    public func inputsRefilled() {}
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
        matrix(mapping: { ggufName($0).map(GGUFArchitecture.Mapping.tensor) }, datasets: datasets, chunkSize: chunkSize, chunks: chunks)
    }

    /// The statistics under the GGUF names `architecture` gives the weights; a MoE layer's experts
    /// become one entry of the stacked tensor, expert after expert, with a count per expert (an
    /// expert no token reached has zero sums and a zero count, as llama-imatrix stores it).
    public func matrix(architecture: GGUFArchitecture, datasets: [String], chunkSize: Int, chunks: Int) -> ImportanceMatrix {
        matrix(mapping: architecture.mapping(of:), datasets: datasets, chunkSize: chunkSize, chunks: chunks)
    }

    func matrix(mapping: (String) -> GGUFArchitecture.Mapping?, datasets: [String], chunkSize: Int, chunks: Int) -> ImportanceMatrix {
        var entries: [String: ImportanceMatrix.Entry] = [:]
        var experts: [String: [Int: (sums: [Float], count: Int64)]] = [:]
        for weight in order {
            switch mapping(weight + ".weight") {
            case .tensor(let name)?: entries[name] = ImportanceMatrix.Entry(sums: sums[weight]!, counts: [counts[weight]!])
            case let .expert(name, expert)?: experts[name, default: [:]][expert] = (sums[weight]!, counts[weight]!)
            case .skipped?, nil: continue
            }
        }
        for (name, byExpert) in experts {
            let count = (byExpert.keys.max() ?? -1) + 1, columns = byExpert.values.first?.sums.count ?? 0
            var entry = ImportanceMatrix.Entry(sums: [], counts: [])
            for e in 0..<count {
                entry.sums += byExpert[e]?.sums ?? [Float](repeating: 0, count: columns)
                entry.counts.append(byExpert[e]?.count ?? 0)
            }
            entries[name] = entry
        }
        return ImportanceMatrix(entries: entries, datasets: datasets, chunkCount: chunks, chunkSize: chunkSize)
    }
}
