// swift-tools-version:6.1
import PackageDescription

// Layers depend one way (see README "Architecture"):
//   CCRC32            CRC-32 in C (PCLMULQDQ folding on x86_64, slicing-by-8 elsewhere), zlib's result.
//   COnceSupport      C helpers Swift cannot spell (a prefetch hint, a huge-page hint, O_DIRECT; for the tests'
//                     children: posix_spawn's close-from, default signals, close-on-exec pipes).
//   OnceLedgerFormat  pure codec: bytes <-> segment headers, records, snapshots. No I/O, no Foundation.
//   OnceLedgerLog     the storage engine: storage protocol, POSIX files, recovery scanner, group commit.
//   OnceLedger        the exactly-once API users import: Ledger.once, idempotency keys, pending handling.
//   OnceLedgerTestSupport  simulated crashing storage and LedgerCrashRunner (users crash-test their code),
//                     and SeededRandom, the one seeded generator (tests, `onceledger stress`).
//   onceledger        the command-line tool (Tools/); with OnceLedgerPostgres the only targets using a Swift package.
//   OnceLedgerPostgres  a LedgerStore on PostgreSQL (postgres-nio), its own product: an app that
//                     does not import it never compiles it (Spec/POSTGRES.md).
//   OnceLedgerPostgresTestSupport  starts a throw-away PostgreSQL cluster for tests and benchmarks.
//   The benchmark is a package of its own (Benchmarks/Package.swift) with the SQLite baseline.
let package = Package(
    name: "OnceLedger",
    products: [
        .library(name: "OnceLedgerFormat", targets: ["OnceLedgerFormat"]),
        .library(name: "OnceLedgerLog", targets: ["OnceLedgerLog"]),
        .library(name: "OnceLedger", targets: ["OnceLedger"]),
        .library(name: "OnceLedgerTestSupport", targets: ["OnceLedgerTestSupport"]),
        .library(name: "OnceLedgerPostgres", targets: ["OnceLedgerPostgres"]),
        .library(name: "OnceLedgerPostgresTestSupport", targets: ["OnceLedgerPostgresTestSupport"]),
        .executable(name: "onceledger", targets: ["onceledger"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
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
        // The PostgreSQL store: the only library target that links a Swift package.
        .target(
            name: "OnceLedgerPostgres",
            dependencies: [
                "OnceLedgerFormat", "OnceLedger",
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ]
        ),
        // A throw-away PostgreSQL cluster (initdb into a temporary directory, a Unix socket,
        // no network) for the PostgreSQL tests, the multi-process tests and the benchmark.
        // Links no Swift package.
        .target(name: "OnceLedgerPostgresTestSupport", dependencies: ["COnceSupport"]),
        .executableTarget(
            name: "onceledger",
            dependencies: [
                "OnceLedgerFormat", "OnceLedgerLog", "OnceLedger", "OnceLedgerTestSupport", "OnceLedgerPostgres",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ],
            path: "Tools/onceledger"
        ),
        // The `LedgerStore` contract, one set of checks every store runs (file, in-memory,
        // PostgreSQL): a library of the test targets, never a product.
        .target(
            name: "OnceLedgerStoreContract",
            dependencies: ["OnceLedgerFormat", "OnceLedger"],
            path: "Tests/OnceLedgerStoreContract"
        ),
        // How the tests run other programs (the tool, strace, the PostgreSQL worker): a child
        // inherits no descriptor but 0–2, is reaped with waitpid, and is killed past a bound
        // so a hang fails one test instead of the run. A library of the test targets.
        .target(
            name: "OnceLedgerTestProcess",
            dependencies: ["COnceSupport"],
            path: "Tests/OnceLedgerTestProcess"
        ),
        .testTarget(
            name: "OnceLedgerFormatTests",
            dependencies: ["OnceLedgerFormat", "OnceLedgerTestSupport", "CCRC32", "CZlib"]
        ),
        .testTarget(
            name: "OnceLedgerTests",
            dependencies: ["OnceLedgerFormat", "OnceLedgerLog", "OnceLedger", "OnceLedgerTestSupport", "OnceLedgerStoreContract"]
        ),
        // Imports `OnceLedger` only (and the test support), so the README's and DocC's
        // examples are proven to compile with the one import an app writes.
        .testTarget(
            name: "OnceLedgerReadmeTests",
            dependencies: ["OnceLedger", "OnceLedgerTestSupport"]
        ),
        .testTarget(
            name: "OnceLedgerCLITests",
            dependencies: ["OnceLedgerFormat", "OnceLedgerLog", "OnceLedger", "OnceLedgerTestSupport", "onceledger", "COnceSupport",
                           "OnceLedgerTestProcess"]
        ),
        // A worker process for the multi-process tests: `Ledger.once` on a PostgresStore by URL.
        .executableTarget(
            name: "onceledger-postgres-worker",
            dependencies: ["OnceLedger", "OnceLedgerPostgres"],
            path: "Tests/OnceLedgerPostgresWorker"
        ),
        // Several processes on one PostgreSQL ledger (races, SIGKILL, SIGSTOP, server restart)
        // and the `onceledger` commands on a PostgreSQL URL.
        .testTarget(
            name: "OnceLedgerPostgresProcessTests",
            dependencies: ["OnceLedger", "OnceLedgerPostgres", "OnceLedgerPostgresTestSupport", "onceledger",
                           "onceledger-postgres-worker", "OnceLedgerTestProcess", .product(name: "PostgresNIO", package: "postgres-nio")]
        ),
        .testTarget(
            name: "OnceLedgerPostgresTests",
            dependencies: ["OnceLedgerFormat", "OnceLedger", "OnceLedgerPostgres", "OnceLedgerPostgresTestSupport",
                           "OnceLedgerTestSupport", "OnceLedgerStoreContract",
                           .product(name: "PostgresNIO", package: "postgres-nio")]
        ),
        .testTarget(
            name: "OnceLedgerLogTests",
            dependencies: ["OnceLedgerFormat", "OnceLedgerLog", "OnceLedgerTestSupport"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
