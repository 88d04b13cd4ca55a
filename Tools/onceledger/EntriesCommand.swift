import ArgumentParser
@_spi(Benchmarks) import OnceLedger
import OnceLedgerFormat

/// `onceledger entries DIR|URL [--state done|pending-unknown|absent] [--json]`: the current
/// entry of every key, as an open would classify it, read-only (no lock taken).
struct EntriesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "entries",
        abstract: "List the current entry of every key (done, pending-unknown or absent).",
        discussion: """
            Sorted by key. The time is the completion's for done entries, the intent's for \
            pending-unknown ones, and the last change's for absent ones (released, resolved absent \
            or forgotten). Receipts are shown as UTF-8 text when valid, else as hex:….

            --json: one object per line with key, state, attempt, generation, token, the time \
            (completedTime, intentTime or changedTime, plus …Ms), fingerprint (null without \
            params), and for done entries receipt with receiptEncoding ("utf8" or "hex").

            Read-only; a ledger that a live process has open is not read unless --live is given.

            In place of the directory, a PostgreSQL URL (postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE, \
            or postgres://USER@/DATABASE?host=/socket/dir) lists the ledger in that database (schema \
            --schema), read in pages while other processes may be using it.

            \(ExitCodes.helpText)
            """)

    @OptionGroup var options: InspectOptions

    @Option(help: ArgumentHelp("Only entries in this state: done, pending-unknown or absent.", valueName: "state"))
    var state: String?

    @Flag(help: "Read the ledger even though a live process has it open (its entries may be in flight there).")
    var live = false

    @OptionGroup var database: DatabaseOptions

    func validate() throws {
        if let state, EntryInfo.Status(rawValue: state) == nil {
            throw ValidationError("unknown state \"\(state)\"; use done, pending-unknown or absent")
        }
    }

    func run() async throws {
        try await CommandFailure.reporting(json: options.json) {
            if case .database(let url) = LedgerLocation(options.dir) { return try await entriesInDatabase(url) }
            return try entries()
        }
    }

    /// The database form: the store's entries in pages of `pageSize`, each printed as it comes.
    private func entriesInDatabase(_ url: String) async throws -> Int32 {
        let opened = try await DatabaseLedger.open(url, schema: database.schema)
        defer { opened.close() }
        let status = state.flatMap(EntryInfo.Status.init(rawValue:))
        var table = TextTable(["KEY", "STATE", "ATTEMPT", "TIME", "RECEIPT"], leftAligned: [0, 1, 3, 4])
        var after: String?
        var count = 0
        while true {
            let page = try await opened.store.entries(EntryQuery(status: status, afterKey: after, limit: Self.pageSize))
            for entry in page {
                if options.json {
                    print(EntryDescription.json(entry).rendered())
                } else {
                    table.add([TextFormat.plain(entry.key), entry.status.rawValue, "\(entry.attempt)",
                               TextFormat.time(entry.timeMilliseconds),
                               entry.status == .done ? TextFormat.bytes(entry.receipt, limit: 60) : ""])
                }
            }
            count += page.count
            guard page.count == Self.pageSize, let last = page.last else { break }
            after = last.key
        }
        if !options.json {
            print(count == 0 ? (state.map { "no \($0) entries" } ?? "no entries") : table.render())
        }
        return ExitCodes.success
    }

    static let pageSize = 1000

    private func entries() throws -> Int32 {
        let ledger = try Self.openForListing(options.dir, command: "entries", allowLive: live)
        // The keys without their receipts; each done entry's receipt is read when its line
        // is made (receipts stay on disk: the listing never holds them all).
        let entries = ledger.currentMetadata(status: state.flatMap(EntryInfo.Status.init(rawValue:)))
        func whole(_ entry: EntryInfo) throws -> EntryInfo {
            entry.status == .done ? try ledger.currentEntry(entry.key) ?? entry : entry
        }
        if options.json {
            for entry in entries { print(EntryDescription.json(try whole(entry)).rendered()) }
            return ExitCodes.success
        }
        guard !entries.isEmpty else {
            print(state.map { "no \($0) entries" } ?? "no entries")
            return ExitCodes.success
        }
        var table = TextTable(["KEY", "STATE", "ATTEMPT", "TIME", "RECEIPT"], leftAligned: [0, 1, 3, 4])
        for entry in entries {
            let entry = try whole(entry)
            table.add([TextFormat.plain(entry.key), entry.status.rawValue, "\(entry.attempt)",
                       TextFormat.time(entry.timeMilliseconds),
                       entry.status == .done ? TextFormat.bytes(entry.receipt, limit: 60) : ""])
        }
        print(table.render())
        return ExitCodes.success
    }

    /// The ledger's state, read-only, for `entries` and `pending`; exit 4 if it is damaged.
    static func openForListing(_ directory: String, command: String, allowLive: Bool) throws -> LogStore {
        _ = try LedgerInspection.requireLedger(directory)
        try LiveLedgerPolicy.check(directory, command: command, allowLive: allowLive)
        let inspection = try LedgerInspection.inspect(directory)
        if let problem = inspection.problem {
            throw CommandFailure(
                ExitCodes.code(for: problem),
                "the ledger is damaged, so its entries cannot be listed: "
                    + CommandFailure.describe(problem, relativeTo: directory)
                    + "\nRun `onceledger verify \(directory)` for the full report; `onceledger salvage` copies what is recoverable to a new directory.",
                code: problem.code.rawValue)
        }
        guard let store = inspection.store else {
            throw CommandFailure(ExitCodes.operational, "\(directory): the ledger's state could not be read")
        }
        return store
    }
}
