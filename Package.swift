// swift-tools-version:6.1
import PackageDescription

// Layers depend one way (see README "Architecture"):
//   CCRC32            CRC-32 in C (PCLMULQDQ folding on x86_64, slicing-by-8 elsewhere), zlib's result.
//   COnceSupport      C helpers Swift cannot spell (a prefetch hint, a huge-page hint, O_DIRECT).
//   OnceLedgerFormat  pure codec: bytes <-> segment headers, records, snapshots. No I/O, no Foundation.
//   OnceLedgerLog     the storage engine: storage protocol, POSIX files, recovery scanner, group commit.
//   OnceLedger        the exactly-once API users import: Ledger.once, idempotency keys, pending handling.
//   OnceLedgerTestSupport  simulated crashing storage and LedgerCrashRunner (users crash-test their code),
//                     and SeededRandom, the one seeded generator (tests, `onceledger stress`).
//   onceledger        the command-line tool (Tools/), the only target that uses a Swift package.
//   The benchmark is a package of its own (Benchmarks/Package.swift) with the SQLite baseline.
let package = Package(
    name: "OnceLedger",
    products: [
        .library(name: "OnceLedgerFormat", targets: ["OnceLedgerFormat"]),
        .library(name: "OnceLedgerLog", targets: ["OnceLedgerLog"]),
        .library(name: "OnceLedger", targets: ["OnceLedger"]),
        .library(name: "OnceLedgerTestSupport", targets: ["OnceLedgerTestSupport"]),
        .executable(name: "onceledger", targets: ["onceledger"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // The record checksum; bit-identical to zlib's crc32, which the tests compare it with.
        .target(name: "CCRC32"),
        // C helpers with no Swift spelling: a cache prefetch hint for the ledger's replay,
        // and a transparent-huge-page hint for large buffers (segment reads, the ledger's tables).
        .target(name: "COnceSupport"),
        // zlib's crc32: the reference the CRC tests compare CCRC32 with.
        .systemLibrary(
            name: "CZlib",
            path: "Sources/CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        .target(
            name: "OnceLedgerFormat",
            dependencies: ["CCRC32"]
        ),
        .target(
            name: "OnceLedgerLog",
            dependencies: ["OnceLedgerFormat", "COnceSupport"]
        ),
        .target(
            name: "OnceLedger",
            dependencies: ["OnceLedgerFormat", "OnceLedgerLog", "COnceSupport"]
        ),
        .target(
            name: "OnceLedgerTestSupport",
            dependencies: ["OnceLedgerFormat", "OnceLedgerLog", "OnceLedger"]
        ),
        .executableTarget(
            name: "onceledger",
            dependencies: [
                "OnceLedgerFormat", "OnceLedgerLog", "OnceLedger", "OnceLedgerTestSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Tools/onceledger"
        ),
        .testTarget(
            name: "OnceLedgerFormatTests",
            dependencies: ["OnceLedgerFormat", "OnceLedgerTestSupport", "CCRC32", "CZlib"]
        ),
        .testTarget(
            name: "OnceLedgerTests",
            dependencies: ["OnceLedgerFormat", "OnceLedgerLog", "OnceLedger", "OnceLedgerTestSupport"]
        ),
        // Imports `OnceLedger` only (and the test support), so the README's and DocC's
        // examples are proven to compile with the one import an app writes.
        .testTarget(
            name: "OnceLedgerReadmeTests",
            dependencies: ["OnceLedger", "OnceLedgerTestSupport"]
        ),
        .testTarget(
            name: "OnceLedgerCLITests",
            dependencies: ["OnceLedgerFormat", "OnceLedgerLog", "OnceLedger", "OnceLedgerTestSupport", "onceledger", "COnceSupport"]
        ),
        .testTarget(
            name: "OnceLedgerLogTests",
            dependencies: ["OnceLedgerFormat", "OnceLedgerLog", "OnceLedgerTestSupport"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
