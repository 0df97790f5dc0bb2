import Foundation
import TestSupport
import Testing

/// Runs the built ckpt programs as a user would and captures what they print.
struct ToolResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

enum Tools {
    static let repository: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// The programs sit beside the test bundle in the build folder.
    static let binDirectory: String = {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: exe).deletingLastPathComponent().path
    }()

    static func fixture(_ relative: String) -> String { repository + "/fixtures/" + relative }

    /// Set by `make sanitize`: the sanitizers reserve terabytes of shadow address space and write
    /// their own files, so tests that run a program under `ulimit -v`/`-f` cannot run there.
    static let sanitizer: String? = ProcessInfo.processInfo.environment["CKPT_SANITIZER"]

    @discardableResult
    static func run(_ program: String, _ arguments: [String], environment: [String: String] = [:]) throws -> ToolResult {
        let process = try start(program, arguments, environment: environment)
        return process.wait()
    }

    static func start(_ program: String, _ arguments: [String], environment: [String: String] = [:],
                      shellPrefix: String? = nil) throws -> RunningTool {
        let process = Process()
        if let shellPrefix {
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            let quoted = ([binDirectory + "/" + program] + arguments).map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }
            process.arguments = ["-c", shellPrefix + "; exec " + quoted.joined(separator: " ")]
        } else {
            process.executableURL = URL(fileURLWithPath: binDirectory + "/" + program)
            process.arguments = arguments
        }
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        process.environment = env
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        return RunningTool(process: process, out: out, err: err)
    }
}

final class RunningTool: @unchecked Sendable {
    let process: Process
    private let out: Pipe
    private let err: Pipe
    private var outData = Data()
    private var errData = Data()
    private let group = DispatchGroup()

    init(process: Process, out: Pipe, err: Pipe) {
        self.process = process
        self.out = out
        self.err = err
        // Drain both pipes concurrently so a chatty program never blocks on a full pipe.
        group.enter()
        DispatchQueue.global().async {
            self.outData = out.fileHandleForReading.readDataToEndOfFile()
            self.group.leave()
        }
        group.enter()
        DispatchQueue.global().async {
            self.errData = err.fileHandleForReading.readDataToEndOfFile()
            self.group.leave()
        }
    }

    func interrupt() { kill(process.processIdentifier, SIGINT) }

    /// Sends `signal` to the running program.
    func send(_ signal: Int32) { kill(process.processIdentifier, signal) }

    func wait() -> ToolResult {
        process.waitUntilExit()
        group.wait()
        return ToolResult(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                          stderr: String(decoding: errData, as: UTF8.self))
    }
}

/// Waits (up to 2 s) until a program's temporary output appears in `scratch`: its write is under way.
func waitForTemporary(in scratch: ScratchDirectory) -> Bool {
    for _ in 0..<2000 {
        if scratch.contents.contains(where: { $0.contains(".tmp-ckpt-") }) { return true }
        usleep(1000)
    }
    return false
}

func parseJSONObject(_ text: String) throws -> [String: Any] {
    try #require(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
}
