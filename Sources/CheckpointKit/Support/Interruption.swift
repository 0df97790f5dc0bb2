import Synchronization

/// Set from a signal handler when the user interrupts; writers check it between chunks and stop
/// with `FileAccessError.interrupted`, so their normal clean-up removes what they began.
public enum Interruption {
    /// The signal that asked us to stop, 0 while none has.
    static let requestedSignal = Atomic<Int32>(0)

    /// Async-signal-safe: a single atomic store of the signal's number (the first one stays).
    public static func request(signal: Int32 = 2) {
        _ = requestedSignal.compareExchange(expected: 0, desired: signal, ordering: .relaxed)
    }
    /// Whether `request()` was called since launch or the last `reset()`; safe from any thread.
    public static var isRequested: Bool { requestedSignal.load(ordering: .relaxed) != 0 }
    /// The signal that asked us to stop (SIGINT 2, SIGTERM 15, SIGHUP 1), nil while none has.
    public static var signal: Int32? {
        let number = requestedSignal.load(ordering: .relaxed)
        return number == 0 ? nil : number
    }
    /// For tests.
    public static func reset() { requestedSignal.store(0, ordering: .relaxed) }
}
