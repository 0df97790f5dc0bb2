@testable import CheckpointKit
import Foundation
import TestSupport
import Testing

/// Opens hand-made bytes and returns the error the reader gives (nil when it accepts them).
private func readerError(_ bytes: [UInt8], name: String = "bad.safetensors") -> SafetensorsError? {
    let scratch = ScratchDirectory()
    let path = scratch.write(name, bytes)
    do {
        _ = try SafetensorsFile(path: path)
        return nil
    } catch let error as SafetensorsError {
        return error.withFile("F")
    } catch {
        Issue.record("unexpected error \(error)")
        return nil
    }
}

extension SafetensorsError {
    /// The same error with its file name replaced, so tests can compare whole values.
    func withFile(_ f: String) -> SafetensorsError {
        switch self {
        case let .fileTooSmall(_, a): return .fileTooSmall(file: f, size: a)
        case let .headerTooLarge(_, a, b): return .headerTooLarge(file: f, length: a, limit: b)
        case let .headerExceedsFile(_, a, b): return .headerExceedsFile(file: f, headerEnd: a, fileSize: b)
        case let .headerNotUTF8(_, a): return .headerNotUTF8(file: f, offset: a)
        case let .headerNotJSON(_, a): return .headerNotJSON(file: f, reason: a)
        case .headerNotObject: return .headerNotObject(file: f)
        case let .invalidMetadata(_, a, b): return .invalidMetadata(file: f, key: a, reason: b)
        case let .invalidTensorEntry(_, a, b): return .invalidTensorEntry(file: f, tensor: a, reason: b)
        case let .unknownDType(_, a, b): return .unknownDType(file: f, tensor: a, dtype: b)
        case let .unsupportedDType(_, a, b): return .unsupportedDType(file: f, tensor: a, dtype: b)
        case let .duplicateTensor(_, a): return .duplicateTensor(file: f, tensor: a)
        case let .offsetsReversed(_, a, b, c): return .offsetsReversed(file: f, tensor: a, begin: b, end: c)
        case let .offsetsNotContiguous(_, a, b, c): return .offsetsNotContiguous(file: f, tensor: a, expectedBegin: b, begin: c)
        case let .sizeOverflow(_, a, b): return .sizeOverflow(file: f, tensor: a, shape: b)
        case let .tensorSizeMismatch(_, a, b, c): return .tensorSizeMismatch(file: f, tensor: a, expectedBytes: b, actualBytes: c)
        case let .dataTruncated(_, a, b, c): return .dataTruncated(file: f, tensor: a, expectedFileSize: b, fileSize: c)
        case let .trailingBytes(_, a, b): return .trailingBytes(file: f, expectedFileSize: a, fileSize: b)
        case let .gitLFSPointer(_, a): return .gitLFSPointer(file: f, claimedSize: a)
        }
    }

    /// The case name, as the fixture manifests spell it.
    var caseName: String { String(String(describing: Mirror(reflecting: self).children.first?.label ?? "\(self)")) }
}

private let zeros16 = [UInt8](repeating: 0, count: 16)

@Test("A file shorter than the length field is too small")
func tooSmall() {
    #expect(readerError([1, 2, 3]) == .fileTooSmall(file: "F", size: 3))
}

@Test("A header length above 100,000,000 is refused before anything is allocated")
func headerTooLarge() {
    #expect(readerError(handMadeSafetensors(header: "{}", declaredLength: 100_000_001))
        == .headerTooLarge(file: "F", length: 100_000_001, limit: 100_000_000))
}

@Test("A header running past the end of the file names both sizes")
func headerExceedsFile() {
    #expect(readerError(handMadeSafetensors(header: "{}", declaredLength: 50)) == .headerExceedsFile(file: "F", headerEnd: 58, fileSize: 10))
}

@Test("A header that is not UTF-8 gives the offset of the bad byte")
func notUTF8() {
    var bytes = handMadeSafetensors(header: #"{"a":1}"#)
    bytes[10] = 0xFF
    #expect(readerError(bytes) == .headerNotUTF8(file: "F", offset: 2))
}

@Test("Truncated JSON, a non-object header and bad metadata each have their own error")
func headerShapes() {
    #expect(readerError(handMadeSafetensors(header: #"{"a":"#))?.caseName == "headerNotJSON")
    #expect(readerError(handMadeSafetensors(header: "[]")) == .headerNotObject(file: "F"))
    #expect(readerError(handMadeSafetensors(header: #"{"__metadata__":{"format":1}}"#))
        == .invalidMetadata(file: "F", key: "format", reason: "value is not a string"))
    #expect(readerError(handMadeSafetensors(header: #"{"__metadata__":[]}"#))?.caseName == "invalidMetadata")
}

@Test("Tensor entries must have dtype, shape and data_offsets of the right kinds")
func tensorEntries() {
    #expect(readerError(handMadeSafetensors(header: #"{"w":{"dtype":"F32","shape":[1]}}"#))
        == .invalidTensorEntry(file: "F", tensor: "w", reason: "missing or non-array \"data_offsets\""))
    #expect(readerError(handMadeSafetensors(header: #"{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]))?
        .caseName == "invalidTensorEntry")
    #expect(readerError(handMadeSafetensors(header: #"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}}"#))?.caseName == "invalidTensorEntry")
}

@Test("An unknown dtype and a known-but-unsupported one are told apart")
func dtypes() {
    #expect(readerError(handMadeSafetensors(header: #"{"w":{"dtype":"F17","shape":[],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]))
        == .unknownDType(file: "F", tensor: "w", dtype: "F17"))
    #expect(readerError(handMadeSafetensors(header: #"{"w":{"dtype":"C64","shape":[],"data_offsets":[0,8]}}"#, data: zeros16))
        == .unsupportedDType(file: "F", tensor: "w", dtype: "C64"))
}

@Test("Duplicate tensor names are an error, not a silent overwrite")
func duplicates() {
    let header = #"{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#
    #expect(readerError(handMadeSafetensors(header: header, data: [1, 2])) == .duplicateTensor(file: "F", tensor: "w"))
}

@Test("Offsets must not be reversed, leave gaps or overlap")
func offsets() {
    #expect(readerError(handMadeSafetensors(header: #"{"w":{"dtype":"U8","shape":[0],"data_offsets":[16,8]}}"#, data: zeros16))
        == .offsetsReversed(file: "F", tensor: "w", begin: 16, end: 8))
    let gap = #"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[8,12]}}"#
    #expect(readerError(handMadeSafetensors(header: gap, data: Array(zeros16[0..<12])))
        == .offsetsNotContiguous(file: "F", tensor: "b", expectedBegin: 4, begin: 8))
    let overlap = #"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}"#
    #expect(readerError(handMadeSafetensors(header: overlap, data: Array(zeros16[0..<6])))
        == .offsetsNotContiguous(file: "F", tensor: "b", expectedBegin: 4, begin: 2))
}

@Test("A shape whose byte count overflows 64 bits is caught by checked arithmetic")
func overflow() {
    let header = #"{"w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}}"#
    #expect(readerError(handMadeSafetensors(header: header, data: [0, 0, 0, 0]))
        == .sizeOverflow(file: "F", tensor: "w", shape: [4_294_967_296, 4_294_967_296, 16]))
}

@Test("Offsets that disagree with shape × dtype size say both byte counts")
func sizeMismatch() {
    #expect(readerError(handMadeSafetensors(header: #"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}}"#, data: Array(zeros16[0..<12])))
        == .tensorSizeMismatch(file: "F", tensor: "w", expectedBytes: 16, actualBytes: 12))
}

@Test("A truncated file names the tensor whose bytes are missing")
func truncated() {
    let header = #"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[8],"data_offsets":[4,12]}}"#
    let bytes = handMadeSafetensors(header: header, data: Array(zeros16[0..<7]))
    let expectedSize = 8 + header.utf8.count + 12
    #expect(readerError(bytes) == .dataTruncated(file: "F", tensor: "b", expectedFileSize: expectedSize, fileSize: expectedSize - 5))
}

@Test("Bytes after the last tensor are refused")
func trailing() {
    let header = #"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}"#
    let bytes = handMadeSafetensors(header: header, data: Array(zeros16[0..<9]))
    #expect(readerError(bytes) == .trailingBytes(file: "F", expectedFileSize: bytes.count - 5, fileSize: bytes.count))
}

@Test("A Git LFS pointer is named as one, with the size it claims")
func lfsPointer() {
    let text = "version https://git-lfs.github.com/spec/v1\noid sha256:\(String(repeating: "ab", count: 32))\nsize 12345678\n"
    #expect(readerError(Array(text.utf8)) == .gitLFSPointer(file: "F", claimedSize: 12_345_678))
    let message = SafetensorsError.gitLFSPointer(file: "m.safetensors", claimedSize: 12_345_678).description
    #expect(message.contains("Git LFS pointer") && message.contains("12345678"))
}

@Test("A valid header is accepted with leading whitespace, padding, empty and 0-d tensors")
func acceptsValid() throws {
    let header = #"  {"__metadata__":{"format":"pt","k":"v"},"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"e":{"dtype":"F16","shape":[0,3],"data_offsets":[4,4]}}    "#
    let scratch = ScratchDirectory()
    let path = scratch.write("ok.safetensors", handMadeSafetensors(header: header, data: [0, 0, 0x80, 0x3F]))
    let file = try SafetensorsFile(path: path)
    #expect(file.metadata.map(\.0) == ["format", "k"])
    #expect(file.tensors.map(\.name) == ["s", "e"])
    #expect(FloatValues.array(try #require(file.view(named: "s"))) == [1])
    #expect(try #require(file.info(named: "e")).elementCount == 0)
}

@Test("Every bad fixture file gives the error case its manifest names")
func badFixtures() throws {
    let manifestPath = Paths.fixture("safetensors/bad/manifest.json")
    guard FileManager.default.fileExists(atPath: manifestPath) else {
        Issue.record("missing \(manifestPath): run `make fixtures`")
        return
    }
    let entries = try #require(try readJSON(manifestPath)["cases"]?.arrayValue)
    #expect(entries.count >= 18)
    for entry in entries {
        let file = try #require(entry["file"]?.stringValue)
        let expectedCase = try #require(entry["case"]?.stringValue)
        do {
            _ = try SafetensorsFile(path: Paths.fixture("safetensors/bad/" + file))
            Issue.record("\(file) was accepted; expected \(expectedCase)")
        } catch let error as SafetensorsError {
            #expect(error.caseName == expectedCase, "\(file)")
            #expect(error.description.hasPrefix(Paths.fixture("safetensors/bad/" + file) + ": "), "\(file)")
            if let tensor = entry["tensor"]?.stringValue {
                #expect(error.description.contains("'\(tensor)'"), "\(file) should name \(tensor)")
            }
            if let claimed = entry["claimed_size"]?.intValue {
                #expect(error == .gitLFSPointer(file: Paths.fixture("safetensors/bad/" + file), claimedSize: claimed))
            }
        }
    }
}

@Test("A shape whose zero dimension hides a 2⁶⁴−1 one is refused as an overflow instead of trapping",
      arguments: ["[18446744073709551615,0]", "[0,18446744073709551615]", "[1099511627776,1099511627776,0]"])
func hiddenHugeDimension(shape: String) {
    let header = #"{"a":{"dtype":"F32","shape":"# + shape + #","data_offsets":[0,0]}}"#
    let error = readerError(handMadeSafetensors(header: header))
    guard case .sizeOverflow(_, let tensor, _)? = error else {
        Issue.record("expected sizeOverflow, got \(String(describing: error))")
        return
    }
    #expect(tensor == "a")
}
