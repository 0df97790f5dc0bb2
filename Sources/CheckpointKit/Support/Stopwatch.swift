#if canImport(Glibc)
import Glibc
#endif

/// Wall-clock time since creation.
public struct Stopwatch: Sendable {
    private let start: timespec

    public init() {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        start = t
    }

    public var seconds: Double {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Double(now.tv_sec - start.tv_sec) + Double(now.tv_nsec - start.tv_nsec) / 1e9
    }
}
