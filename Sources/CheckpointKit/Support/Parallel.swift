import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// How many threads a piece of work may use.
public struct ThreadBudget: Sendable, Equatable {
    /// The most threads work may use; at least 1.
    public let count: Int

    /// A budget of `count` threads; counts below 1 mean 1.
    public init(_ count: Int) { self.count = max(1, count) }

    /// All cores of this machine.
    public static var allCores: ThreadBudget {
        #if canImport(Glibc)
        return ThreadBudget(Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        #else
        return ThreadBudget(4)
        #endif
    }

    /// One thread: chunks run in order on the caller's thread.
    public static let single = ThreadBudget(1)

    /// Runs `body(chunk)` for every chunk in `0..<chunks`, spread over at most `count` threads.
    ///
    /// Chunk k always covers the same data whatever the thread count, so results computed per
    /// chunk are identical for any budget; only who computes them changes.
    ///
    /// Once an interruption is requested, remaining chunks are skipped: the caller must check
    /// `Interruption.isRequested` afterwards and discard its partial result.
    public func forEachChunk(_ chunks: Int, _ body: (Int) -> Void) {
        guard chunks > 0 else { return }
        let workers = min(count, chunks)
        if workers == 1 {
            for chunk in 0..<chunks where !Interruption.isRequested { body(chunk) }
            return
        }
        // Each worker takes the next chunk not yet taken: a worker that loses its core for a while
        // (to the writer thread, or another process) leaves its share to the others instead of
        // making them wait at the end. Which thread computes a chunk never changes what it computes.
        let next = Atomic<Int>(0)
        // concurrentPerform returns only when every iteration is done, so `body` cannot escape.
        withoutActuallyEscaping(body) { body in
            let shared = UncheckedSendable(body)
            DispatchQueue.concurrentPerform(iterations: workers) { _ in
                while !Interruption.isRequested {
                    let chunk = next.wrappingAdd(1, ordering: .relaxed).oldValue
                    guard chunk < chunks else { break }
                    shared.value(chunk)
                }
            }
        }
    }
}

extension ThreadBudget {
    /// Runs `body(range)` for every piece of `0..<count` cut into ranges of `size` (the last one
    /// shorter), the pieces spread over the threads as `forEachChunk` spreads chunks.
    public func forEachPiece(of count: Int, size: Int, _ body: (Range<Int>) -> Void) {
        forEachChunk((count + size - 1) / size) { piece in body((piece * size)..<min(count, (piece + 1) * size)) }
    }
}

/// Hands a value to concurrent workers when the caller guarantees they use it safely (disjoint
/// output ranges, read-only input).
struct UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
