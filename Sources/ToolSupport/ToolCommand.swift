import ArgumentParser
import CheckpointKit

#if canImport(Glibc)
import Glibc
#endif

/// The version every ckpt program prints for `--version`.
public let ckptVersion = "0.7.0"

/// A ckpt program: ArgumentParser parses, and this `main` holds the command-line contract for
/// what it cannot: a usage error is one line (`error: …; see ckpt-x --help`) with exit 64, and an
/// unknown option names the closest real one.
public protocol ToolCommand: ParsableCommand {}

extension ToolCommand {
    /// Parses the process's arguments, runs the command, and exits with the contract's code.
    public static func main() {
        main(Array(CommandLine.arguments.dropFirst()))
    }

    /// As `main()`, on `arguments` (without the program name).
    public static func main(_ arguments: [String]) {
        // OpenBLAS's workers would spin beside ours for their first tenth of a second.
        MatrixMultiply.stopIdleThreads()
        var command: ParsableCommand
        do {
            command = try parseAsRoot(arguments)
        } catch {
            let code = exitCode(for: error)
            if code == .success {  // --help or --version: the whole text, on stdout
                print(fullMessage(for: error))
                Glibc.exit(0)
            }
            usageError(unknownOptionMessage(arguments) ?? message(for: error))
        }
        do {
            try command.run()
        } catch let code as ExitCode {
            Glibc.exit(code.rawValue)
        } catch let error as ValidationError {
            usageError(error.message)
        } catch {
            // ArgumentParser answers --help by a command whose run throws a "help requested" error.
            if exitCode(for: error) == .success {
                print(fullMessage(for: error))
                Glibc.exit(ToolExit.success)
            }
            printError("error: \(error)")
            Glibc.exit(ToolExit.failure)
        }
        Glibc.exit(ToolExit.success)
    }

    /// Prints `error: <message>; see <program> --help` on one line and exits 64.
    public static func usageError(_ message: String) -> Never {
        let line = message.split(separator: "\n").first.map(String.init) ?? "invalid command line"
        let trimmed = line.hasPrefix("Error: ") ? String(line.dropFirst(7)) : line
        printError("error: \(trimmed.prefix(1).lowercased() + trimmed.dropFirst()); see \(configuration.commandName ?? "the program") --help")
        Glibc.exit(ToolExit.usage)
    }

    /// The long options this program takes, as its help lists them.
    static var longOptions: Set<String> {
        var names: Set<String> = ["--help", "--version"]
        let words = helpMessage(columns: 10_000).split { !($0 == "-" || ($0.isLetter && $0.isLowercase) || $0.isNumber) }
        for word in words where word.count > 2 && word.hasPrefix("--") && !word.hasPrefix("---") { names.insert(String(word)) }
        return names
    }

    /// "unknown option --schme (did you mean --scheme?)" for the first option the program does
    /// not take, or nil when every option is known (the fault is elsewhere).
    static func unknownOptionMessage(_ arguments: [String]) -> String? {
        let known = longOptions
        for argument in arguments {
            if argument == "--" { break }
            guard argument.hasPrefix("--") else { continue }
            let name = String(argument.split(separator: "=", maxSplits: 1).first ?? "")
            if known.contains(name) { continue }
            let closest = known.map { ($0, editDistance(name, $0)) }.min { $0.1 < $1.1 || ($0.1 == $1.1 && $0.0 < $1.0) }
            if let (suggestion, distance) = closest, distance <= max(2, name.count / 3) {
                return "unknown option \(name) (did you mean \(suggestion)?)"
            }
            return "unknown option \(name)"
        }
        return nil
    }
}

/// Levenshtein distance over characters: the edits that turn `a` into `b`.
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    var previous = Array(0...b.count)
    var current = [Int](repeating: 0, count: b.count + 1)
    for i in 1...max(1, a.count) where !a.isEmpty {
        current[0] = i
        for j in 1...max(1, b.count) where !b.isEmpty {
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        swap(&previous, &current)
    }
    return a.isEmpty ? b.count : previous[b.count]
}
