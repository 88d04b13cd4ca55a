import ArgumentParser

/// The `onceledger` command: operator tools for a ledger directory (README "Operating a ledger").
/// One subcommand per file. Exit codes follow fsck(8) (see `ExitCodes`).
@main
struct OnceLedgerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "onceledger",
        abstract: "Tools for a OnceLedger directory: a crash-safe, exactly-once ledger.",
        subcommands: [
            DemoCommand.self, VerifyCommand.self, DumpCommand.self, StatCommand.self, PendingCommand.self,
            EntriesCommand.self, RunsCommand.self, MemoCommand.self, ResolveCommand.self, ForgetCommand.self, CompactCommand.self,
            SweepCommand.self, SalvageCommand.self, JournalCommand.self, JournalExportCommand.self, JournalTruncateCommand.self,
            StressCommand.self, DemoChildCommand.self,
        ])

    /// ArgumentParser's `main`, except that:
    /// - a usage error (bad or missing arguments, a failed `validate()`, a `ValidationError`
    ///   thrown by `run()`) exits 16 as fsck(8) does, not 64 (`EX_USAGE`), with the usage of
    ///   the subcommand that was given (not the top-level one);
    /// - an argument that is not valid UTF-8 is a usage error (`CommandLine.arguments`
    ///   would silently turn its bytes into U+FFFD, and a key or reason would be recorded wrong);
    /// - `help NAME` with an unknown NAME is a usage error, not the top-level help;
    /// - with `--json`, a usage error is also one JSON object on standard output (`UsageFailure`).
    static func main() async {
        let arguments = Array(CommandLine.arguments.dropFirst())
        let json = UsageFailure.wantsJSON(arguments)
        if let invalid = UsageFailure.firstInvalidUTF8Argument() {
            UsageFailure.exit(
                "argument \(invalid.index) is not valid UTF-8 (bytes \(UsageFailure.hexPreview(invalid.bytes))); keys, reasons, actors, receipts and paths must be UTF-8 text. Nothing was read or written.",
                command: subcommand(named: arguments.first), json: json)
        }
        if arguments.first == "help" {
            var current: ParsableCommand.Type = OnceLedgerCommand.self
            for name in arguments.dropFirst() where !name.hasPrefix("-") {
                guard let next = current.configuration.subcommands.first(where: { $0._commandName == name }) else {
                    let known = current.configuration.subcommands.filter { $0.configuration.shouldDisplay }.map { $0._commandName }
                    UsageFailure.exit(
                        "unknown command '\(name)'; "
                            + (known.isEmpty ? "'\(current._commandName)' has no subcommands" : "the commands are \(known.joined(separator: ", "))"),
                        command: current, json: json)
                }
                current = next
            }
        }
        let command = parseOrExit(arguments, json: json)
        let commandType: ParsableCommand.Type = type(of: command)
        do {
            try await runParsed(command)
        } catch {
            if let validation = error as? ValidationError {
                UsageFailure.exit(validation.message, command: commandType, json: json)
            }
            exit(withError: error)
        }
    }

    private static func parseOrExit(_ arguments: [String], json: Bool) -> ParsableCommand {
        do {
            return try parseAsRoot(arguments)
        } catch {
            reportParseError(error, json: json)
        }
    }

    private static func runParsed(_ parsed: ParsableCommand) async throws {
        var command = parsed
        if var asyncCommand = command as? AsyncParsableCommand {
            try await asyncCommand.run()
        } else {
            try command.run()
        }
    }

    private static func reportParseError(_ error: Error, json: Bool) -> Never {
        if exitCode(for: error) == .validationFailure {
            if json { UsageFailure.writeJSON(message(for: error)) }
            var text = fullMessage(for: error)
            if !text.hasSuffix("\n") { text += "\n" }
            StandardError.write(text)
            exit(withError: ExitCode(ExitCodes.usage))
        }
        exit(withError: error)
    }

    /// The subcommand type named `name`, or the root command.
    static func subcommand(named name: String?) -> ParsableCommand.Type {
        configuration.subcommands.first { $0._commandName == name } ?? OnceLedgerCommand.self
    }
}
