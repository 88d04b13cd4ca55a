import ArgumentParser
import OnceLedger
import OnceLedgerFormat

/// `onceledger resolve DIR KEY (--done [--receipt TEXT | --receipt-hex HEX] | --absent)
/// --reason TEXT [--actor NAME]`: an operator's answer to "did this pending-unknown
/// effect happen?", recorded in the log as a resolve record (who, why, when).
struct ResolveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resolve",
        abstract: "Resolve a pending-unknown entry as done or absent; recorded in the log.",
        discussion: """
            Use it after finding out from the downstream system (by the entry's token, see \
            `onceledger pending`) whether the effect happened. --done: it happened; the key becomes \
            done with the given receipt and is never run again. --absent: it did not happen; the \
            key becomes absent and the next call runs the effect (with the same token). The \
            resolve record keeps the actor, the reason and the time.

            Opens the ledger for writing: it takes the lock (a ledger open in another process is \
            refused, exit 8, naming it) and, like every open, cuts a torn tail first.

            \(ExitCodes.helpText)
            """)

    @Argument(help: "The ledger directory.")
    var dir: String

    @Argument(help: "The idempotency key of the pending-unknown entry.")
    var key: String

    @Flag(help: "The effect happened.")
    var done = false

    @Flag(help: "The effect did not happen; the next call runs it.")
    var absent = false

    @Option(help: "With --done: the receipt to store, as UTF-8 text (default: empty).")
    var receipt: String?

    @Option(name: .customLong("receipt-hex"), help: "With --done: the receipt to store, as hex bytes.")
    var receiptHex: String?

    @Option(help: "Why; recorded in the log (required).")
    var reason: String

    @Option(help: "Who; recorded in the log (default: $USER, else \"operator\").")
    var actor: String?

    func validate() throws {
        guard done != absent else {
            throw ValidationError("say what happened: exactly one of --done (the effect happened) or --absent (it did not)")
        }
        if absent && (receipt != nil || receiptHex != nil) {
            throw ValidationError("--receipt and --receipt-hex go with --done; an absent entry has no receipt")
        }
        if receipt != nil && receiptHex != nil {
            throw ValidationError("give the receipt once: --receipt (text) or --receipt-hex (bytes)")
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
        return Array((receipt ?? "").utf8)
    }

    func run() async throws {
        try await CommandFailure.reporting { try await resolve() }
    }

    private func resolve() async throws -> Int32 {
        let actor = self.actor ?? WritableLedger.defaultActor
        let opened = try WritableLedger.open(dir)
        for note in opened.openNotes { print("note: " + note) }
        guard let entry = opened.ledger.entry(key), entry.status == .pendingUnknown else {
            let state = opened.ledger.entry(key)
            try opened.close()
            let what = state.map { "it is \($0.status.rawValue)" } ?? "the ledger has no entry for this key"
            throw CommandFailure(
                ExitCodes.operational,
                "cannot resolve \(TextFormat.plain(key)): \(what); only pending-unknown entries can be resolved. Nothing was written. List them with `onceledger pending \(dir)`.")
        }
        do {
            try await opened.ledger.resolvePending(
                key, as: done ? .done(receipt: receiptValue) : .absent, reason: reason, actor: actor)
        } catch let error as LedgerError {
            try? opened.close()
            throw CommandFailure(error, hint: "Nothing was written.")
        }
        let sequence = opened.lastSequence
        try opened.close()
        if done {
            print("resolved \(TextFormat.plain(key)): pending-unknown → done (attempt \(entry.attempt), receipt \(TextFormat.bytes(receiptValue))); later calls with this key return this receipt")
        } else {
            print("resolved \(TextFormat.plain(key)): pending-unknown → absent (attempt \(entry.attempt)); the next call with this key runs the effect, with the same token \(entry.token)")
        }
        print("recorded in the log as sequence \(sequence.map(String.init) ?? "?") by \(TextFormat.quoted(actor)): \(TextFormat.quoted(reason))")
        return ExitCodes.success
    }
}
