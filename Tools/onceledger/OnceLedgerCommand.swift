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

    /// ArgumentParser's `main`, except that a usage error (bad or missing arguments, a
    /// failed `validate()`) exits 16 as fsck(8) does, not 64 (`EX_USAGE`). The message
    /// and the subcommand's usage text are printed unchanged.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            if exitCode(for: error) == .validationFailure {
                var message = fullMessage(for: error)
                if !message.hasSuffix("\n") { message += "\n" }
                StandardError.write(message)
                exit(withError: ExitCode(ExitCodes.usage))
            }
            exit(withError: error)
        }
    }
}
