#if canImport(Glibc)
import Glibc
#endif

/// Wall-clock time since creation.
public struct Stopwatch: Sendable {
    private let start: timespec

    /// Starts timing now, on the monotonic clock.
    public init() {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        start = t
    }

    /// Seconds elapsed since `init`; monotonic, so changes to the system clock do not affect it.
    public var seconds: Double {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Double(now.tv_sec - start.tv_sec) + Double(now.tv_nsec - start.tv_nsec) / 1e9
    }
}
