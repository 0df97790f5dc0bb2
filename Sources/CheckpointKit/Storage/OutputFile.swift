import CSystem

#if canImport(Glibc)
import Glibc
#endif


/// A file being written sequentially, with a large buffer and every failure (a full disk, an
/// I/O error, an interruption) turned into a `FileAccessError` naming the file.
public final class OutputFile {
    /// The file being written.
    public let path: String
    private let fd: Int32
    private var buffer: UnsafeMutableRawPointer
    private let capacity: Int
    private var used = 0
    private var bytesWritten = 0
    /// Bytes whose writeback has been started (`ckpt_start_writeback`).
    private var writebackStarted = 0
    /// Bytes handed to this file so far (written or still buffered).
    public var position: Int { bytesWritten + used }
    private var closed = false

    /// Creates `path`, which must not exist (temporary names are unique per process).
    public init(creating path: String, bufferSize: Int = 8 << 20) throws(FileAccessError) {
        self.path = path
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .cannotWrite(file: path, reason: systemErrorText()) }
        capacity = bufferSize
        buffer = UnsafeMutableRawPointer.allocate(byteCount: bufferSize, alignment: 64)
    }

    deinit {
        if !closed { Glibc.close(fd) }
        buffer.deallocate()
    }

    /// Appends `bytes`, buffering small writes; large ones go straight to the file.
    public func write(_ bytes: UnsafeRawBufferPointer) throws(FileAccessError) {
        guard bytes.count > 0 else { return }
        if used + bytes.count <= capacity {
            buffer.advanced(by: used).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
            used += bytes.count
            return
        }
        try flushBuffer()
        if bytes.count >= capacity / 2 {
            try writeFully(bytes)  // large blocks go straight to the kernel
        } else {
            buffer.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
            used = bytes.count
        }
    }

    /// Appends `bytes`, as the raw-buffer overload does.
    public func write(_ bytes: [UInt8]) throws(FileAccessError) {
        let result = bytes.withUnsafeBytes { raw in Result { () throws(FileAccessError) in try write(raw) } }
        try result.get()
    }

    /// Writes `count` bytes produced in place by `fill`, which receives the buffer to fill.
    public func write(count: Int, _ fill: (UnsafeMutableRawBufferPointer) -> Void) throws(FileAccessError) {
        if count > capacity - used { try flushBuffer() }
        if count <= capacity {
            fill(UnsafeMutableRawBufferPointer(start: buffer + used, count: count))
            used += count
        } else {
            let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 64)
            defer { scratch.deallocate() }
            fill(scratch)
            try writeFully(UnsafeRawBufferPointer(scratch))
        }
    }

    private func flushBuffer() throws(FileAccessError) {
        guard used > 0 else { return }
        try writeFully(UnsafeRawBufferPointer(start: buffer, count: used))
        used = 0
    }

    private func writeFully(_ bytes: UnsafeRawBufferPointer) throws(FileAccessError) {
        if Interruption.isRequested { throw .interrupted(file: path) }
        // The file is written front to back from offset 0, so its next byte is at `bytesWritten`.
        if let failure = try pwriteAll(fd, bytes, at: bytesWritten, file: path).failure {
            throw .cannotWrite(file: path, reason: systemErrorText(failure))
        }
        bytesWritten += bytes.count
        // Every 32 MB, start writing the new data back to disk: the fsync in `finish` then waits
        // for the tail only, not for the whole file written at the end.
        if bytesWritten - writebackStarted >= 32 << 20 {
            _ = ckpt_start_writeback(fd, Int64(writebackStarted), Int64(bytesWritten - writebackStarted))
            writebackStarted = bytesWritten
        }
    }

    /// Flushes, fsyncs and closes. The file is complete on disk when this returns.
    public func finish() throws(FileAccessError) {
        try flushBuffer()
        guard fsync(fd) == 0 else { throw .cannotWrite(file: path, reason: systemErrorText()) }
        closed = true
        guard Glibc.close(fd) == 0 else { throw .cannotWrite(file: path, reason: systemErrorText()) }
    }
}

/// An output (a file or a folder) first written under a temporary name beside its target and
/// renamed into place only once complete; on failure, `discard()` leaves nothing behind.
public final class AtomicOutput {
    /// Where the output ends up once committed (without a trailing slash).
    public let target: String
    /// The hidden name beside `target` (`.<name>.tmp-ckpt-<pid>`) written until `commit()`.
    public let temporary: String
    /// Whether the output is a folder (its files written inside `temporary`) rather than one file.
    public let isDirectory: Bool
    private var committed = false

    /// Refuses an existing target unless `overwrite`; creates the temporary (a folder if asked).
    public init(target: String, isDirectory: Bool, overwrite: Bool) throws(FileAccessError) {
        let target = target.hasSuffix("/") && target.count > 1 ? String(target.dropLast()) : target
        self.target = target
        self.isDirectory = isDirectory
        if !overwrite && FileSystem.exists(target) { throw .outputExists(file: target) }
        let (directory, name) = FileSystem.split(target)
        guard FileSystem.isDirectory(directory) else {
            throw .cannotWrite(file: target, reason: "its folder \(directory) does not exist")
        }
        let stem = Self.temporaryStem(name)
        temporary = FileSystem.join(directory, ".\(stem).tmp-ckpt-\(getpid())")
        FileSystem.removeTree(temporary)  // a leftover of this very pid cannot be live work
        Self.removeStaleTemporaries(in: directory, name: stem)
        if isDirectory {
            guard mkdir(temporary, 0o755) == 0 else { throw .cannotWrite(file: target, reason: systemErrorText()) }
        }
    }

    deinit {
        if !committed { FileSystem.removeTree(temporary) }
    }

    /// The target's name as its temporary carries it: whole when short, else its first 100 bytes
    /// and a hash of the rest, so a name near the 255-byte limit still has room for the suffix.
    static func temporaryStem(_ name: String) -> String {
        guard name.utf8.count > 200 else { return name }
        let hash = fnv1a64(name.utf8)
        var prefix = ""
        for character in name {
            guard prefix.utf8.count + character.utf8.count <= 100 else { break }
            prefix.append(character)
        }
        return prefix + "~" + String(hash, radix: 16)
    }

    /// Temporaries of this target left by processes that no longer run (killed, crashed, their
    /// machine rebooted): removed before writing, and remembered so the program can say so.
    static func removeStaleTemporaries(in directory: String, name: String) {
        let prefix = ".\(name).tmp-ckpt-"
        for entry in FileSystem.list(directory) where entry.hasPrefix(prefix) {
            guard let pid = Int32(entry.dropFirst(prefix.count)), pid > 0, pid != getpid() else { continue }
            // kill(pid, 0) fails with ESRCH only when no such process exists.
            guard kill(pid, 0) != 0 && errno == ESRCH else { continue }
            let path = FileSystem.join(directory, entry)
            FileSystem.removeTree(path)
            staleRemoved.withLock { $0.append((path, pid)) }
        }
    }

    private static let staleRemoved = LockedValue<[(path: String, pid: Int32)]>([])

    /// The stale temporaries removed so far (and forgets them): for the program to report.
    public static func removedStaleTemporaries() -> [(path: String, pid: Int32)] {
        staleRemoved.withLock { removed in
            defer { removed = [] }
            return removed
        }
    }

    /// Path of a file inside the temporary folder.
    public func path(_ name: String) -> String { FileSystem.join(temporary, name) }

    /// Renames the temporary into place (replacing an old target when allowed at init).
    public func commit() throws(FileAccessError) {
        if Interruption.isRequested { throw .interrupted(file: target) }
        if isDirectory { FileSystem.syncDirectory(temporary) }
        if FileSystem.exists(target) {
            // rename(2) cannot replace a non-empty folder: move the old one aside first.
            let old = temporary + ".old"
            guard rename(target, old) == 0 else { throw .cannotWrite(file: target, reason: systemErrorText()) }
            guard rename(temporary, target) == 0 else {
                let reason = systemErrorText()
                _ = rename(old, target)
                throw .cannotWrite(file: target, reason: reason)
            }
            FileSystem.removeTree(old)
        } else {
            guard rename(temporary, target) == 0 else { throw .cannotWrite(file: target, reason: systemErrorText()) }
        }
        committed = true
        FileSystem.syncDirectory(FileSystem.split(target).directory)
    }

    /// Runs `body`, translating file errors about the temporary into errors about the target.
    public func translatingErrors<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as FileAccessError {
            throw error.replacingPath(temporary, with: target)
        }
    }

    /// Removes the temporary unless committed; safe to call more than once.
    public func discard() {
        if !committed { FileSystem.removeTree(temporary) }
    }
}

/// The few file-system operations the library needs, as plain POSIX calls.
public enum FileSystem {
    /// Whether anything, even a dangling symlink, exists at `path` (links not followed).
    public static func exists(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0
    }

    /// Whether `path` is a folder, following symlinks.
    public static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }

    /// Whether `path` is a regular file, following symlinks.
    public static func isRegularFile(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG
    }

    /// Size in bytes, following symlinks; nil when `path` cannot be stat'ed.
    public static func fileSize(_ path: String) -> Int? {
        var info = stat()
        return stat(path, &info) == 0 ? Int(info.st_size) : nil
    }

    /// (folder, last component); the folder is "." for a bare name.
    public static func split(_ path: String) -> (directory: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let directory = String(path[..<slash])
        return (directory.isEmpty ? "/" : directory, String(path[path.index(after: slash)...]))
    }

    /// `directory` + "/" + `name`, without doubling a trailing slash.
    public static func join(_ directory: String, _ name: String) -> String {
        directory.hasSuffix("/") ? directory + name : directory + "/" + name
    }

    /// Names in a folder, sorted, without "." and "..".
    public static func list(_ directory: String) -> [String] {
        guard let dir = opendir(directory) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// Removes a file or a folder with everything in it; silent when absent.
    public static func removeTree(_ path: String) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        if (info.st_mode & S_IFMT) == S_IFDIR {
            for name in list(path) { removeTree(join(path, name)) }
            rmdir(path)
        } else {
            unlink(path)
        }
    }

    /// The absolute path with every symlink resolved, for a path that may not exist yet: the
    /// deepest existing ancestor is resolved and the rest appended.
    public static func resolvedPath(_ path: String) -> String {
        var head = path.isEmpty ? "." : path
        var tail: [String] = []
        while true {
            if let resolved = realpath(head, nil) {
                defer { free(resolved) }
                var result = String(cString: resolved)
                for name in tail.reversed() { result = join(result, name) }
                return result
            }
            let (directory, name) = split(head)
            if name == head || directory == head { return path }
            tail.append(name)
            head = directory
        }
    }

    /// Refuses an output path that equals, contains or lies inside any of `inputs` (after
    /// resolving symlinks): whatever `--force` says, an input is never replaced.
    public static func refuseOverlap(output: String, inputs: [String]) throws(FileAccessError) {
        let out = resolvedPath(output)
        for input in inputs {
            let resolved = resolvedPath(input)
            if out == resolved || resolved.hasPrefix(out == "/" ? "/" : out + "/") || out.hasPrefix(resolved + "/") {
                throw .outputOverlapsInput(output: output, input: input)
            }
        }
    }

    /// Up to `count` bytes from the start of a file (fewer when it is shorter).
    public static func readPrefix(_ path: String, count: Int) throws(FileAccessError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw .cannotOpen(file: path, reason: systemErrorText()) }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: count)
        let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, count) }
        return n > 0 ? Array(bytes[0..<n]) : []
    }

    /// The whole file's bytes, copied out of a temporary mapping.
    public static func readFile(_ path: String) throws(FileAccessError) -> [UInt8] {
        let mapped = try MappedFile(path: path)
        return Array(mapped.bytes)
    }

    /// Copies a file's bytes to a new file (used for the tokenizer and other folder files).
    public static func copyFile(from source: String, to destination: String) throws(FileAccessError) {
        let mapped = try MappedFile(path: source)
        let out = try OutputFile(creating: destination)
        try out.write(mapped.bytes)
        try out.finish()
    }

    /// Creates `path` (which must not exist) holding `bytes`, fsynced before returning.
    public static func writeFile(_ path: String, _ bytes: [UInt8]) throws(FileAccessError) {
        let out = try OutputFile(creating: path)
        try out.write(bytes)
        try out.finish()
    }

    static func syncDirectory(_ path: String) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 {
            fsync(fd)
            close(fd)
        }
    }
}
