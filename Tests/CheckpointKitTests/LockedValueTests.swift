@testable import CheckpointKit
import Dispatch
import Testing

@Test("A locked value counts every increment of two threads, and an error thrown inside reaches the caller with the lock let go")
func lockedValueSerializesAccess() {
    let counter = LockedValue(0)
    DispatchQueue.concurrentPerform(iterations: 2) { _ in
        for _ in 0..<10_000 { counter.withLock { $0 += 1 } }
    }
    #expect(counter.withLock { $0 } == 20_000)
    struct Refused: Error, Equatable {}
    #expect(throws: Refused.self) { try counter.withLock { (_: inout Int) throws(Refused) in throw Refused() } }
    #expect(counter.withLock { $0 += 1; return $0 } == 20_001)
}
