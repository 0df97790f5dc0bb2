#if canImport(Glibc)
import Glibc
#endif

/// Faults found by reading a checkpoint end to end: an I/O error, a file that changed size, non-finite weights.
public enum VerificationError: Error, Equatable, Sendable, CustomStringConvertible {
    case readFailed(file: String, offset: Int, reason: String)
    case sizeChanged(file: String, expected: Int, actual: Int)
    case nonFinite(file: String, tensor: String, firstIndex: Int, nanCount: Int, infCount: Int)

    /// The one-line message: the file or tensor at fault and what was found.
    public var description: String {
        switch self {
        case let .readFailed(file, offset, reason):
            return "\(file): read failed at byte \(offset) (\(reason))"
        case let .sizeChanged(file, expected, actual):
            return "\(file): file changed while being verified (expected \(expected) bytes, got \(actual))"
        case let .nonFinite(file, tensor, firstIndex, nanCount, infCount):
            return "\(faultLocation(file, tensor: tensor)): \(nanCount) NaN and \(infCount) Inf values, the first at flat index \(firstIndex) (expected finite weights)"
        }
    }
}

/// Reads every byte of a checkpoint and checks what a header cannot promise: that the bytes
/// are readable (I/O errors surface as errors, not crashes) and that float weights are finite.
public enum CheckpointVerifier {
    /// What a verification that passed covered.
    public struct Report: Sendable {
        /// Weight files read in full.
        public var files: Int
        /// Bytes read over all weight files (each file's whole size).
        public var bytesRead: Int
        /// Floating-point tensors checked for NaN and Inf (other tensors are read but not checked).
        public var tensorsChecked: Int
    }

    /// Reads every weight file with read(2), then checks every float tensor is finite; throws the first fault.
    public static func verify(_ checkpoint: Checkpoint, threads: ThreadBudget = .allCores) throws -> Report {
        var bytesRead = 0
        for file in checkpoint.files {
            bytesRead += try readAll(file.path, expectedSize: file.byteCount)
        }
        var checked = 0
        for entry in checkpoint.entries where entry.info.dtype.isFloatingPoint {
            let view = checkpoint.view(entry)
            let stats = TensorStatistics.compute(view, threads: threads)
            if stats.nanCount + stats.infCount > 0 {
                throw VerificationError.nonFinite(file: checkpoint.files[entry.fileIndex].path, tensor: entry.info.name,
                                                  firstIndex: firstNonFinite(view), nanCount: stats.nanCount,
                                                  infCount: stats.infCount)
            }
            checked += 1
        }
        return Report(files: checkpoint.files.count, bytesRead: bytesRead, tensorsChecked: checked)
    }

    /// Flat index of the first NaN or Inf, or -1.
    public static func firstNonFinite(_ view: TensorView) -> Int {
        let step = 1 << 16
        var start = 0
        let n = view.elementCount
        var found = -1
        withUnsafeTemporaryAllocation(of: Float.self, capacity: min(step, max(n, 1))) { scratch in
            while start < n && found < 0 {
                let count = min(step, n - start)
                FloatValues.read(view, range: start..<(start + count), into: scratch.baseAddress!)
                if let i = FloatValues.firstNonFinite(scratch.baseAddress!, count: count) { found = start + i }
                start += count
            }
        }
        return found
    }

    /// Reads a whole file with read(2), so a failing disk gives an error rather than SIGBUS.
    static func readAll(_ path: String, expectedSize: Int) throws -> Int {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileAccessError.cannotOpen(file: path, reason: systemErrorText()) }
        defer { close(fd) }
        let size = 8 << 20
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 4096)
        defer { buffer.deallocate() }
        var total = 0
        while true {
            let n = read(fd, buffer, size)
            if n < 0 {
                if errno == EINTR { continue }
                throw VerificationError.readFailed(file: path, offset: total, reason: systemErrorText())
            }
            if n == 0 { break }
            total += n
        }
        guard total == expectedSize else { throw VerificationError.sizeChanged(file: path, expected: expectedSize, actual: total) }
        return total
    }
}
