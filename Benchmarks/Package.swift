// swift-tools-version:6.1
import PackageDescription

// The benchmark, a package of its own (see README.md here), so that the library and the
// `onceledger` tool link neither SQLite nor the bench's code:
//   CSQLite           the system libsqlite3 (apt: libsqlite3-dev), for the SQLite baselines.
//   onceledger-bench  the benchmark: OnceLedger against a raw fdatasync loop and SQLite in one run,
//                     and (--postgres) the PostgreSQL store against the hand-written idempotency table.
// It depends on the root package by path, so it always measures the sources beside it.
let package = Package(
    name: "OnceLedgerBenchmarks",
    products: [
        .executable(name: "onceledger-bench", targets: ["onceledger-bench"]),
    ],
    dependencies: [
        .package(name: "OnceLedger", path: ".."),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
    ],
    targets: [
        .systemLibrary(
            name: "CSQLite",
            path: "Sources/CSQLite",
            providers: [.apt(["libsqlite3-dev"])]
        ),
        .executableTarget(
            name: "onceledger-bench",
            dependencies: [
                .product(name: "OnceLedgerFormat", package: "OnceLedger"),
                .product(name: "OnceLedgerLog", package: "OnceLedger"),
                .product(name: "OnceLedger", package: "OnceLedger"),
                .product(name: "OnceLedgerPostgres", package: "OnceLedger"),
                .product(name: "OnceLedgerPostgresTestSupport", package: "OnceLedger"),
                "CSQLite",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ]
        ),
        .testTarget(
            name: "OnceLedgerBenchTests",
            dependencies: ["onceledger-bench", .product(name: "OnceLedgerPostgresTestSupport", package: "OnceLedger")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
