import Foundation

/// A fresh scratch folder per test, removed with everything in it when the value goes away:
/// the one scratch folder both test targets use.
public final class ScratchDirectory {
    /// The folder's absolute path.
    public let path: String

    /// Creates a new, empty folder under the system's temporary directory.
    public init() {
        path = NSTemporaryDirectory() + "ckpt-test-" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// The path of `name` inside the folder (not created).
    public func file(_ name: String) -> String { path + "/" + name }

    /// Writes `bytes` to `name` inside the folder and returns its path.
    @discardableResult
    public func write(_ name: String, _ bytes: [UInt8]) -> String {
        let p = file(name)
        FileManager.default.createFile(atPath: p, contents: Data(bytes))
        return p
    }

    /// Names in the folder, sorted (hidden ones too: temporaries must not be left behind).
    public var contents: [String] { ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted() }
}
