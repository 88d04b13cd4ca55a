import ArgumentParser
import OnceLedger
import OnceLedgerFormat

/// `onceledger forget DIR KEY --reason TEXT --i-understand-this-allows-a-rerun
/// [--actor NAME]`: the audited removal of a done entry, so that its effect runs again.
struct ForgetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forget",
        abstract: "Remove a done entry so its effect may run again (audited; needs a confirmation flag).",
        discussion: """
            A missing entry has real-world meaning: the next call with this key performs the effect \
            again (a second email, a second charge). So forgetting needs \
            --i-understand-this-allows-a-rerun and a reason, and it is recorded in the log as a \
            forget record (who, why, when); the next run gets a new token. Only done entries can \
            be forgotten; for a pending-unknown one use `onceledger resolve`.

            Opens the ledger for writing: it takes the lock (a ledger open in another process is \
            refused, exit 8, naming it) and, like every open, cuts a torn tail first.

            In place of the directory, a PostgreSQL URL (postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE, \
            or postgres://USER@/DATABASE?host=/socket/dir) acts on the ledger in that database (schema \
            --schema) while other processes use it: nothing is locked; the database decides the change \
            atomically, as for any of its clients.

            \(ExitCodes.helpText)
            """)

    @Argument(help: "The ledger directory, or a PostgreSQL URL (postgres://…).")
    var dir: String

    @Argument(help: "The idempotency key of the done entry.")
    var key: String

    @Option(help: "Why; recorded in the log (required).")
    var reason: String

    @Option(help: "Who; recorded in the log (default: $USER, else \"operator\").")
    var actor: String?

    @Flag(name: .customLong("i-understand-this-allows-a-rerun"),
          help: "Confirm that the next call with this key performs the effect again.")
    var confirmed = false

    @OptionGroup var database: DatabaseOptions

    func validate() throws {
        guard confirmed else {
            throw ValidationError(
                "forget removes a done entry, so the next call with this key performs the effect again (a second email, a second charge). If that is what you want, add --i-understand-this-allows-a-rerun.")
        }
        try AuditArguments.validate(key: key, reason: reason, actor: actor)
    }

    func run() async throws {
        try await CommandFailure.reporting { try await forget() }
    }

    private func forget() async throws -> Int32 {
        let actor = self.actor ?? WritableLedger.defaultActor
        let opened = try await OperatorLedger.open(dir, database: database)
        for note in opened.openNotes { print("note: " + note) }
        guard let entry = try await opened.ledger.entry(key), entry.status == .done else {
            let state = try await opened.ledger.entry(key)
            try opened.close()
            let what = state.map { "it is \($0.status.rawValue)" } ?? "the ledger has no entry for this key"
            let hint = state?.status == .pendingUnknown ? " A pending-unknown entry is resolved with `onceledger resolve`." : ""
            throw CommandFailure(
                ExitCodes.operational,
                "cannot forget \(TextFormat.plain(key)): \(what); only done entries can be forgotten. Nothing was written.\(hint)")
        }
        do {
            try await opened.ledger.forgetDoneEntryAllowingRerun(key, reason: reason, actor: actor)
        } catch let error as LedgerError {
            try? opened.close()
            throw CommandFailure(error, hint: "Nothing was written.")
        }
        let recorded = opened.recordedWhere
        let after = try await opened.ledger.entry(key)
        try opened.close()
        print("forgot \(TextFormat.plain(key)): done → absent (its receipt was \(TextFormat.bytes(entry.receipt))); the next call with this key runs the effect again, with a new token \(after?.token ?? "?") (or, if a compaction drops the forgotten entry first, a later generation's: never an old one)")
        print("recorded \(recorded) by \(TextFormat.quoted(actor)): \(TextFormat.quoted(reason))")
        return ExitCodes.success
    }
}
