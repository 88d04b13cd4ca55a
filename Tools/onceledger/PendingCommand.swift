import ArgumentParser
@_spi(Benchmarks) import OnceLedger
import OnceLedgerFormat

/// `onceledger pending DIR|URL [--json]`: the pending-unknown entries — an intent without a
/// completion, so the effect may or may not have happened — with what an operator
/// needs to find out (key, attempt, intent time, the token the effect passed downstream).
struct PendingCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pending",
        abstract: "List the pending-unknown entries: effects that may or may not have happened.",
        discussion: """
            An entry is pending-unknown when its intent was recorded but no completion: the process \
            stopped (or the effect threw) while the effect ran. Find out from the downstream system \
            whether it happened (it saw the entry's token as its idempotency key), then record the \
            answer with `onceledger resolve`. Sorted by intent time, oldest first.

            --json: one object per line with key, state ("pending-unknown"), attempt, generation, \
            token, intentTime, intentTimeMs and fingerprint (null without params).

            Read-only; a ledger that a live process has open is not read unless --live is given.

            In place of the directory, a PostgreSQL URL (postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE, \
            or postgres://USER@/DATABASE?host=/socket/dir) lists the ledger in that database (schema \
            --schema), which other processes may be using: an entry whose owner is still running the \
            effect (its lease is live) is listed as pending-unknown too.

            \(ExitCodes.helpText)
            """)

    @OptionGroup var options: InspectOptions

    @Flag(help: "Read the ledger even though a live process has it open (its entries may be in flight there).")
    var live = false

    @OptionGroup var database: DatabaseOptions

    func run() async throws {
        try await CommandFailure.reporting(json: options.json) {
            if case .database(let url) = LedgerLocation(options.dir) { return try await pendingInDatabase(url) }
            return try pending()
        }
    }

    private func pending() throws -> Int32 {
        let directory = options.dir
        let ledger = try EntriesCommand.openForListing(directory, command: "pending", allowLive: live)
        return report(try ledger.currentEntries(status: .pendingUnknown), location: directory)
    }

    private func pendingInDatabase(_ url: String) async throws -> Int32 {
        let opened = try await DatabaseLedger.open(url, schema: database.schema)
        defer { opened.close() }
        return report(try await opened.ledger.pendingEntries(), location: opened.display + database.schemaArgument)
    }

    /// Prints `entries` oldest first; `location` is the ledger's argument in the hints.
    private func report(_ entries: [EntryInfo], location directory: String) -> Int32 {
        let entries = entries.sorted { ($0.timeMilliseconds, $0.key) < ($1.timeMilliseconds, $1.key) }
        if options.json {
            for entry in entries { print(EntryDescription.json(entry).rendered()) }
            return ExitCodes.success
        }
        guard !entries.isEmpty else {
            print("no pending-unknown entries")
            return ExitCodes.success
        }
        var table = TextTable(["KEY", "ATTEMPT", "INTENT TIME", "TOKEN"], leftAligned: [0, 2, 3])
        for entry in entries {
            table.add([TextFormat.plain(entry.key), "\(entry.attempt)", TextFormat.time(entry.timeMilliseconds), entry.token])
        }
        print(table.render())
        print("""

            \(TextFormat.plural(entries.count, "pending-unknown entry", "pending-unknown entries")): the effect may or may not have happened. \
            Ask the downstream system about the token, then record the answer:
              onceledger resolve \(directory) KEY --done [--receipt JSON] --reason TEXT   (it happened)
              onceledger resolve \(directory) KEY --absent --reason TEXT                  (it did not; the next call runs it)
            """)
        return ExitCodes.success
    }
}
