// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "ckpt",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "CheckpointKit", targets: ["CheckpointKit"]),
        .executable(name: "ckpt-inspect", targets: ["ckpt-inspect"]),
        .executable(name: "ckpt-convert", targets: ["ckpt-convert"]),
        .executable(name: "ckpt-quantize", targets: ["ckpt-quantize"]),
        .executable(name: "ckpt-dequantize", targets: ["ckpt-dequantize"]),
        .executable(name: "ckpt-diff", targets: ["ckpt-diff"]),
        .executable(name: "ckpt-merge-lora", targets: ["ckpt-merge-lora"]),
        .executable(name: "ckpt-perplexity", targets: ["ckpt-perplexity"]),
        .executable(name: "ckpt-compare", targets: ["ckpt-compare"]),
        .executable(name: "ckpt-imatrix", targets: ["ckpt-imatrix"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", exact: "1.8.2"),
    ],
    targets: [
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib",
                       providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CSystem"),
        // AVX-512 twins of a few element-wise kernels, chosen at run time (Swift itself targets baseline x86-64).
        .target(name: "CKernels"),
        .target(name: "CheckpointKit", dependencies: ["COpenBLAS", "CZlib", "CSystem", "CKernels"]),
        .target(name: "ToolSupport", dependencies: [
            "CheckpointKit",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "ckpt-inspect", dependencies: ["CheckpointKit", "ToolSupport"]),
        .executableTarget(name: "ckpt-convert", dependencies: ["CheckpointKit", "ToolSupport"]),
        .executableTarget(name: "ckpt-quantize", dependencies: ["CheckpointKit", "ToolSupport"]),
        .executableTarget(name: "ckpt-dequantize", dependencies: ["CheckpointKit", "ToolSupport"]),
        .executableTarget(name: "ckpt-diff", dependencies: ["CheckpointKit", "ToolSupport"]),
        .executableTarget(name: "ckpt-merge-lora", dependencies: ["CheckpointKit", "ToolSupport"]),
        .executableTarget(name: "ckpt-perplexity", dependencies: ["CheckpointKit", "ToolSupport"]),
        .executableTarget(name: "ckpt-compare", dependencies: ["CheckpointKit", "ToolSupport"]),
        .executableTarget(name: "ckpt-imatrix", dependencies: ["CheckpointKit", "ToolSupport"]),
        // Kernel throughput for `make bench`; not a shipped program.
        .executableTarget(name: "ckpt-bench", dependencies: ["CheckpointKit", "ToolSupport"], path: "Benchmarks/ckpt-bench"),
        // Helpers both test targets share (hashing for recorded goldens).
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "CheckpointKitTests", dependencies: ["CheckpointKit", "TestSupport"]),
        .testTarget(name: "ToolTests", dependencies: [
            "CheckpointKit", "TestSupport", "ckpt-inspect", "ckpt-convert", "ckpt-quantize", "ckpt-dequantize", "ckpt-diff",
            "ckpt-merge-lora", "ckpt-perplexity", "ckpt-compare", "ckpt-imatrix",
        ]),
    ],
    swiftLanguageModes: [.v6]
)
