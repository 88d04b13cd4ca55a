import ArgumentParser
import Foundation
import OnceLedger
import OnceLedgerFormat

/// `onceledger resolve DIR KEY (--done | --absent | --correct) [--receipt JSON |
/// --receipt-raw TEXT | --receipt-hex HEX] --reason TEXT [--actor NAME]`: an operator's
/// answer to "did this pending-unknown effect happen?", or the correction of a done entry's
/// receipt, recorded in the log as a resolve record (who, why, when).
struct ResolveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resolve",
        abstract: "Resolve a pending-unknown entry as done or absent, or correct a done entry's receipt; recorded in the log.",
        discussion: """
            Use it after finding out from the downstream system (by the entry's token, see \
            `onceledger pending`) whether the effect happened. --done: it happened; the key becomes \
            done with the given receipt and is never run again. --absent: it did not happen; the \
            key becomes absent and the next call runs the effect (with the same token; with a new one \
            if a compaction drops the absent entry first, never an old one). \
            --correct: the key is done and its stored receipt is wrong (e.g. it does not decode \
            as the app's receipt type); replace it. The token stays the same and the effect is \
            not run again (unlike `forget`). The resolve record keeps the actor, the reason and \
            the time.

            The receipt: `once(key, as:)` stores receipts as JSON, so --receipt must be JSON \
            (a string receipt is quoted: --receipt '"ch_7"'). For an app that stores raw bytes \
            (`onceBytes`), give --receipt-raw TEXT (stored as is) or --receipt-hex HEX.

            Opens the ledger for writing: it takes the lock (a ledger open in another process is \
            refused, exit 8, naming it) and, like every open, cuts a torn tail first. To resolve \
            keys while the app runs, call `Ledger.resolvePending` / `correctReceipt` from the app \
            (an admin endpoint; see the README).

            In place of the directory, a PostgreSQL URL (postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE, \
            or postgres://USER@/DATABASE?host=/socket/dir) acts on the ledger in that database (schema \
            --schema) while other processes use it: nothing is locked; the database decides the change \
            atomically, as for any of its clients.

            \(ExitCodes.helpText)
            """)

    @Argument(help: "The ledger directory, or a PostgreSQL URL (postgres://…).")
    var dir: String

    @Argument(help: "The idempotency key of the pending-unknown (or, with --correct, done) entry.")
    var key: String

    @Flag(help: "The effect happened.")
    var done = false

    @Flag(help: "The effect did not happen; the next call runs it.")
    var absent = false

    @Flag(help: "The entry is done; replace its receipt (same token; nothing runs again).")
    var correct = false

    @Option(help: "With --done or --correct: the receipt to store, as JSON (what once(key, as:) decodes; default: empty).")
    var receipt: String?

    @Option(name: .customLong("receipt-raw"), help: "With --done or --correct: the receipt to store, as UTF-8 text, unchecked.")
    var receiptRaw: String?

    @Option(name: .customLong("receipt-hex"), help: "With --done or --correct: the receipt to store, as hex bytes.")
    var receiptHex: String?

    @Option(help: "Why; recorded in the log (required).")
    var reason: String

    @Option(help: "Who; recorded in the log (default: $USER, else \"operator\").")
    var actor: String?

    @OptionGroup var database: DatabaseOptions

    func validate() throws {
        guard [done, absent, correct].filter({ $0 }).count == 1 else {
            throw ValidationError("say what happened: exactly one of --done (the effect happened), --absent (it did not) or --correct (replace a done entry's receipt)")
        }
        let receipts = [receipt, receiptRaw, receiptHex].compactMap { $0 }.count
        if absent && receipts > 0 {
            throw ValidationError("--receipt, --receipt-raw and --receipt-hex go with --done or --correct; an absent entry has no receipt")
        }
        if receipts > 1 {
            throw ValidationError("give the receipt once: --receipt (JSON), --receipt-raw (text) or --receipt-hex (bytes)")
        }
        if correct && receipts == 0 {
            throw ValidationError("--correct needs the new receipt: --receipt (JSON), --receipt-raw (text) or --receipt-hex (bytes)")
        }
        if let receipt, (try? JSONSerialization.jsonObject(with: Data(receipt.utf8), options: .fragmentsAllowed)) == nil {
            throw ValidationError("--receipt must be JSON, as once(key, as:) stores receipts (quote a string receipt: --receipt '\"\(receipt)\"'); to store other text as is, use --receipt-raw")
        }
        if let receiptHex {
            // Checked here, not left to Hex.bytes: it reads "+7" as a byte (UInt8(_:radix:) takes a sign).
            let digits = receiptHex.filter { !$0.isWhitespace }
            if let bad = digits.first(where: { !($0.isASCII && $0.isHexDigit) }) {
                throw ValidationError("--receipt-hex \"\(receiptHex)\" is not hexadecimal (\"\(bad)\" is not a hex digit); give the bytes as hex digits 0-9 and a-f, two per byte, e.g. 6d73672d31")
            }
            if digits.count % 2 != 0 {
                throw ValidationError("--receipt-hex must have two hex digits per byte; \"\(receiptHex)\" has \(digits.count), an odd number")
            }
        }
        let receiptBytes = receiptValue.count
        guard receiptBytes <= FormatLimits.receiptBytesMax else {
            throw ValidationError("the receipt is \(receiptBytes) bytes; the limit is \(FormatLimits.receiptBytesMax)")
        }
        try AuditArguments.validate(key: key, reason: reason, actor: actor)
    }

    var receiptValue: [UInt8] {
        if let receiptHex { return Hex.bytes(receiptHex) ?? [] }
        return Array((receipt ?? receiptRaw ?? "").utf8)
    }

    func run() async throws {
        try await CommandFailure.reporting { try await resolve() }
    }

    private func resolve() async throws -> Int32 {
        let actor = self.actor ?? WritableLedger.defaultActor
        let opened = try await OperatorLedger.open(dir, database: database)
        for note in opened.openNotes { print("note: " + note) }
        let required: EntryInfo.Status = correct ? .done : .pendingUnknown
        guard let entry = try await opened.ledger.entry(key), entry.status == required else {
            let state = try await opened.ledger.entry(key)
            try opened.close()
            let what = state.map { "it is \($0.status.rawValue)" } ?? "the ledger has no entry for this key"
            if correct {
                throw CommandFailure(
                    ExitCodes.operational,
                    "cannot correct \(TextFormat.plain(key)): \(what); only a done entry's receipt can be corrected. Nothing was written.\(state?.status == .pendingUnknown ? " Resolve a pending-unknown entry with --done or --absent." : "")")
            }
            throw CommandFailure(
                ExitCodes.operational,
                "cannot resolve \(TextFormat.plain(key)): \(what); only pending-unknown entries can be resolved. Nothing was written. \(state?.status == .done ? "To replace a done entry's receipt, use --correct. " : "")List them with `onceledger pending \(opened.location)`.")
        }
        do {
            if correct {
                try await opened.ledger.correctReceipt(key, to: receiptValue, reason: reason, actor: actor)
            } else {
                try await opened.ledger.resolvePending(
                    key, as: done ? .done(receipt: receiptValue) : .absent, reason: reason, actor: actor)
            }
        } catch let error as LedgerError {
            try? opened.close()
            throw CommandFailure(error, hint: "Nothing was written.")
        }
        let recorded = opened.recordedWhere
        try opened.close()
        if correct {
            print("corrected \(TextFormat.plain(key)): done → done (attempt \(entry.attempt), receipt \(TextFormat.bytes(entry.receipt)) → \(TextFormat.bytes(receiptValue))); the token stays \(entry.token), and the effect does not run again")
        } else if done {
            print("resolved \(TextFormat.plain(key)): pending-unknown → done (attempt \(entry.attempt), receipt \(TextFormat.bytes(receiptValue))); later calls with this key return this receipt")
        } else {
            print("resolved \(TextFormat.plain(key)): pending-unknown → absent (attempt \(entry.attempt)); the next call with this key runs the effect, with the same token \(entry.token) (or, if a compaction drops the absent entry first, a later generation's: never an old one)")
        }
        print("recorded \(recorded) by \(TextFormat.quoted(actor)): \(TextFormat.quoted(reason))")
        return ExitCodes.success
    }
}
