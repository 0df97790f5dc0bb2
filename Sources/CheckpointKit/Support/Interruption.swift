import Synchronization

/// Set from a signal handler when the user interrupts; writers check it between chunks and stop
/// with `FileAccessError.interrupted`, so their normal clean-up removes what they began.
public enum Interruption {
    static let requested = Atomic<Bool>(false)

    /// Async-signal-safe: a single atomic store.
    public static func request() { requested.store(true, ordering: .relaxed) }
    /// Whether `request()` was called since launch or the last `reset()`; safe from any thread.
    public static var isRequested: Bool { requested.load(ordering: .relaxed) }
    /// For tests.
    public static func reset() { requested.store(false, ordering: .relaxed) }
}
