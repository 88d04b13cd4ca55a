import ArgumentParser

/// The `onceledger` command: operator tools for a ledger directory (DESIGN §4).
/// One subcommand per file. Exit codes follow fsck(8) (see `ExitCodes`).
@main
struct OnceLedgerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "onceledger",
        abstract: "Tools for a OnceLedger directory: a crash-safe, exactly-once ledger.",
        subcommands: [
            DemoCommand.self, VerifyCommand.self, DumpCommand.self, StatCommand.self, PendingCommand.self,
            EntriesCommand.self, ResolveCommand.self, ForgetCommand.self, CompactCommand.self, SalvageCommand.self,
            StressCommand.self, BenchCommand.self, DemoChildCommand.self,
        ])
}
