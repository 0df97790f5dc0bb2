#if canImport(Glibc)
import Glibc
#endif

/// A value shared between threads, reached only through `withLock`, behind a pthread mutex.
///
/// Not Synchronization's `Mutex`: on Linux a contended `Mutex` is handed to its waiter inside the
/// kernel (a priority-inheriting futex), where ThreadSanitizer cannot see it, so every contended
/// use was reported as a race that is not there (reproduced with a two-thread counter). A pthread
/// mutex is one ThreadSanitizer follows, and the suite must run clean under it.
public final class LockedValue<Value>: @unchecked Sendable {
    private var value: Value
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    /// Wraps `value`.
    public init(_ value: Value) {
        self.value = value
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Runs `body` on the value with the lock held, and returns what it returns.
    public func withLock<Result, Failure: Error>(_ body: (inout Value) throws(Failure) -> Result) throws(Failure) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
