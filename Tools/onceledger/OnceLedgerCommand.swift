import ArgumentParser

/// The `onceledger` command: operator tools for a ledger directory (DESIGN §4).
/// One subcommand per file.
@main
struct OnceLedgerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "onceledger",
        abstract: "Tools for a OnceLedger directory: a crash-safe, exactly-once write-ahead log.",
        subcommands: [DemoCommand.self, BenchCommand.self, DemoChildCommand.self])
}
