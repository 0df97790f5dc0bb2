@testable import CheckpointKit
import Dispatch
import Foundation
import TestSupport
import Testing

/// `count` seeded bytes.
private func seededBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var state = seed
    return (0..<count).map { _ in
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return UInt8(truncatingIfNeeded: state >> 56)
    }
}

/// `count` bytes cut at seeded points into pieces of 1 byte to `largest`, in a seeded order.
private func seededPieces(_ count: Int, largest: Int, seed: UInt64) -> [Range<Int>] {
    var state = seed
    func next(_ bound: Int) -> Int {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Int((state >> 33) % UInt64(bound))
    }
    var pieces: [Range<Int>] = []
    var start = 0
    while start < count {
        // Mostly small pieces (within or across a page), some large (many whole pages and a bounce buffer's worth).
        let size = next(4) == 0 ? 1 + next(largest) : 1 + next(9000)
        pieces.append(start..<min(count, start + size))
        start = pieces.last!.upperBound
    }
    for i in stride(from: pieces.count - 1, to: 0, by: -1) { pieces.swapAt(i, next(i + 1)) }
    return pieces
}

/// Writes `bytes` in `pieces` from two threads at once, `switchAfter` pieces per thread before
/// the file turns to buffered writes (as after a refused direct write), then finishes.
private func write(_ bytes: [UInt8], in pieces: [Range<Int>], to path: String, direct: Bool, switchAfter: Int? = nil) throws {
    let file = try PositionedOutputFile(creating: path, direct: direct)
    let failures = LockedValue<[String]>([])
    let shared = UncheckedSendable(bytes)
    DispatchQueue.concurrentPerform(iterations: 2) { thread in
        for (k, range) in pieces.enumerated() where k % 2 == thread {
            if k / 2 == switchAfter { try? file.switchToBuffered() }
            do {
                try shared.value.withUnsafeBytes { raw in try file.write(UnsafeRawBufferPointer(rebasing: raw[range]), at: range.lowerBound) }
            } catch { failures.withLock { $0.append("\(error)") } }
        }
    }
    #expect(failures.withLock { $0 }.isEmpty)
    try file.finish()
}

@Test("Pieces of any size written at their offsets, in any order, from two threads, give the same file directly and through the page cache",
      arguments: [4096 * 300, 4096 * 300 + 1, 3 * (1 << 20) + 1234, 17])
func positionedWritesGiveTheSameFileEitherWay(length: Int) throws {
    let scratch = ScratchDirectory()
    let bytes = seededBytes(length, seed: UInt64(length))
    let pieces = seededPieces(length, largest: 3 << 20, seed: 7)
    for direct in [true, false] {
        let path = scratch.file("out-\(direct)")
        try write(bytes, in: pieces, to: path, direct: direct)
        #expect(readBytes(path) == bytes, "direct: \(direct)")
    }
}

@Test("A file that turns to buffered writes midway (a refused direct write) still holds every byte, the held pages included")
func directWritesFallBackMidway() throws {
    let scratch = ScratchDirectory()
    let length = 2 * (1 << 20) + 777
    let bytes = seededBytes(length, seed: 3)
    let pieces = seededPieces(length, largest: 1 << 20, seed: 11)
    for (k, switchAfter) in [0, 3, pieces.count / 4].enumerated() {
        let path = scratch.file("out-\(k)")
        try write(bytes, in: pieces, to: path, direct: true, switchAfter: switchAfter)
        #expect(readBytes(path) == bytes, "switched after \(switchAfter) pieces a thread")
    }
}

@Test("CKPT_OUTPUT_IO=buffered is the one setting that turns direct writes off")
func outputIOSetting() {
    #expect(PositionedOutputFile.directByDefault == (ProcessInfo.processInfo.environment["CKPT_OUTPUT_IO"] != "buffered"))
}

@Test("One write of many bounce buffers' worth, at an unaligned offset, lands whole with two direct writes under way")
func oneLargeWriteLandsWhole() throws {
    let scratch = ScratchDirectory()
    let length = 9 * PositionedOutputFile.bounceBytes + 5000, offset = 123
    let bytes = seededBytes(offset + length, seed: 5)
    let path = scratch.file("out")
    let file = try PositionedOutputFile(creating: path, direct: true)
    try bytes.withUnsafeBytes { raw in
        try file.write(UnsafeRawBufferPointer(rebasing: raw[..<offset]), at: 0)
        try file.write(UnsafeRawBufferPointer(rebasing: raw[offset...]), at: offset)
    }
    try file.finish()
    #expect(readBytes(path) == bytes)
}
