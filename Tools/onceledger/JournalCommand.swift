import ArgumentParser
import Foundation
import OnceLedger
import OnceLedgerFormat

/// `onceledger journal DIR RUN [--namespace NS] [--generation N] [--json]`: the replay
/// journal of one run generation, position by position, read-only.
struct JournalCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "journal",
        abstract: "Show a run's replay journal: position, kind, step name, input digest, time, output.",
        discussion: """
            The journal of the run's latest generation the ledger holds (or --generation; \
            `onceledger runs` lists them), in position order. KIND is step, effect, now, uuid, \
            random, patched, or truncated (a position an operator freed: NAME is who, OUTPUT why). \
            INPUT is the first bytes of the SHA-256 input digest (hex), or "-" for none; EPOCH \
            counts truncations of the position.

            --json: one object per line with position, kind, name, epoch, inputDigest (hex or \
            null), time (milliseconds) and output (the recorded JSON, last) or outputBase64 — the \
            lines of `onceledger journal-export` without its header.

            Read-only; a ledger that a live process has open is not read unless --live is given.

            \(ExitCodes.helpText)
            """)

    @OptionGroup var options: InspectOptions

    @Argument(help: "The run id.")
    var run: String

    @Option(help: "The run's namespace (default: the default namespace, \"\").")
    var namespace: String = ""

    @Option(help: "The run generation (default: the latest the ledger holds).")
    var generation: UInt64?

    @Flag(help: "Read the ledger even though a live process has it open (its journal may be changing there).")
    var live = false

    func validate() throws { try JournalArguments.validate(run: run, namespace: namespace) }

    func run() async throws {
        try await CommandFailure.reporting(json: options.json) { try await journal() }
    }

    private func journal() async throws -> Int32 {
        let export = try await JournalArguments.export(options.dir, command: "journal", run: run, namespace: namespace,
                                                       generation: generation, allowLive: live)
        if options.json {
            for record in export.records { print(JournalExport.line(record)) }
            return ExitCodes.success
        }
        let status = export.status.map { "\($0)" } ?? "running"
        print("run \(TextFormat.plain(export.run.description)) generation \(export.generation): \(status), \(TextFormat.plural(export.records.count, "position"))")
        guard !export.records.isEmpty else { return ExitCodes.success }
        var table = TextTable(["POS", "KIND", "NAME", "EPOCH", "INPUT", "TIME", "OUTPUT"], leftAligned: [1, 2, 4, 5, 6])
        for record in export.records {
            table.add(["\(record.position)", record.entry.kind.description, TextFormat.plain(record.entry.nameText),
                       "\(record.entry.epoch)", record.inputDigest.map { Hex.string($0.prefix(6)) + "…" } ?? "-",
                       TextFormat.time(record.timeMilliseconds), JournalArguments.preview(record.entry.output)])
        }
        print(table.render())
        return ExitCodes.success
    }
}

/// `onceledger journal-export DIR RUN [--generation N] [--output FILE]`: a run generation's
/// journal as JSON lines, for `JournalReplayer` and as an audit trail.
struct JournalExportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "journal-export",
        abstract: "Export a run's replay journal as JSON lines (for JournalReplayer, and as an audit trail).",
        discussion: """
            Writes a header line (format, version, namespace, run, generation, status, endTime) \
            and one line per position (as `onceledger journal --json`) to standard output or \
            --output. `JournalExport(jsonLines:)` reads it back; `JournalReplayer.replay` runs \
            workflow code against it in a test and fails instead of executing anything new.

            Read-only; a ledger that a live process has open is not read unless --live is given.

            \(ExitCodes.helpText)
            """)

    @Argument(help: "The ledger directory.")
    var dir: String

    @Argument(help: "The run id.")
    var run: String

    @Option(help: "The run's namespace (default: the default namespace, \"\").")
    var namespace: String = ""

    @Option(help: "The run generation (default: the latest the ledger holds).")
    var generation: UInt64?

    @Option(help: "Write the export to this file (created or replaced) instead of standard output.")
    var output: String?

    @Flag(help: "Read the ledger even though a live process has it open.")
    var live = false

    func validate() throws { try JournalArguments.validate(run: run, namespace: namespace) }

    func run() async throws {
        try await CommandFailure.reporting { try await export() }
    }

    private func export() async throws -> Int32 {
        let export = try await JournalArguments.export(dir, command: "journal-export", run: run, namespace: namespace,
                                                       generation: generation, allowLive: live)
        let text = export.jsonLines()
        guard let output else {
            print(text, terminator: "")
            return ExitCodes.success
        }
        do {
            try Data(text.utf8).write(to: URL(fileURLWithPath: output), options: .atomic)
        } catch {
            throw CommandFailure(ExitCodes.operational, "cannot write \(output): \(error)")
        }
        StandardError.write("wrote \(TextFormat.plural(export.records.count, "position")) of run \(export.run) generation \(export.generation) to \(output)\n")
        return ExitCodes.success
    }
}

/// `onceledger journal-truncate DIR RUN --from N --reason TEXT [--actor WHO] --i-understand-positions-are-rerecorded`.
struct JournalTruncateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "journal-truncate",
        abstract: "Free a running run's journal positions from one on, so changed code records them anew (audited).",
        discussion: """
            The journal never truncates itself: a code change that diverges from a recorded run \
            stops it with a divergence error. When the change is on purpose and the recorded \
            run must go on with the new code, an operator frees the positions from --from on: \
            each becomes a `truncated` entry naming --actor and --reason (written to the log, \
            the audit trail) with a new epoch. The next run of the workflow records those \
            positions again; an effect recorded there again gets a new idempotency key and \
            runs — the command lists the effects that already ran, so truncate from after the \
            last one that must not happen again. Only a running generation (not finished) can \
            be truncated; stop the workflow first.

            Opens the ledger for writing: it takes the lock (a ledger open in another process is \
            refused, exit 8, naming it) and, like every open, cuts a torn tail first.

            \(ExitCodes.helpText)
            """)

    @Argument(help: "The ledger directory.")
    var dir: String

    @Argument(help: "The run id.")
    var run: String

    @Option(help: "The run's namespace (default: the default namespace, \"\").")
    var namespace: String = ""

    @Option(help: "The first position to free.")
    var from: UInt64

    @Option(help: "Why; recorded in the log (required).")
    var reason: String

    @Option(help: "Who; recorded in the log (default: $USER, else \"operator\").")
    var actor: String?

    @Flag(name: .customLong("i-understand-positions-are-rerecorded"),
          help: "Confirm that the freed positions run again with the new code (effects there included).")
    var confirmed = false

    func validate() throws {
        guard confirmed else {
            throw ValidationError(
                "journal-truncate frees recorded positions: the workflow runs them again with the current code (an effect there runs again, with a new key). If that is what you want, add --i-understand-positions-are-rerecorded.")
        }
        try JournalArguments.validate(run: run, namespace: namespace)
        guard !reason.trimmingCharacters(in: .whitespaces).isEmpty, reason.utf8.count <= FormatLimits.reasonBytesMax else {
            throw ValidationError("--reason must say why (1 to \(FormatLimits.reasonBytesMax) bytes); it is recorded in the log")
        }
        if let actor, actor.isEmpty || actor.utf8.count > FormatLimits.stepBytesMax {
            throw ValidationError("--actor must be 1 to \(FormatLimits.stepBytesMax) bytes")
        }
    }

    func run() async throws {
        try await CommandFailure.reporting { try await truncate() }
    }

    private func truncate() async throws -> Int32 {
        let actor = self.actor ?? WritableLedger.defaultActor
        let opened = try WritableLedger.open(dir)
        for note in opened.openNotes { print("note: " + note) }
        let done: JournalTruncation
        do {
            done = try await opened.ledger.truncateJournal(run: run, namespace: namespace, from: from, actor: actor, reason: reason)
        } catch let error as LedgerError {
            try? opened.close()
            throw CommandFailure(error, hint: "A refusal writes nothing; a failure part way has freed only the last positions (they are written from the last down): run it again to free the rest.")
        }
        let sequence = opened.lastSequence
        try opened.close()
        print("truncated the journal of run \(TextFormat.plain(done.run.description)) generation \(done.generation) from position \(from): \(TextFormat.plural(done.positions.count, "recorded position")) freed, epoch \(done.epoch)")
        for record in done.dropped where record.entry.kind != .truncated {
            let warning = record.entry.kind == .effect ? "  (an effect that ran; one recorded here again runs again)" : ""
            print("  dropped \(record.position): \(record.entry.kind) \(TextFormat.quoted(record.entry.nameText))\(warning)")
        }
        for entry in done.unjournaledEffects {
            print("  effect not journaled: key \(TextFormat.quoted(entry.key)) is \(entry.status.rawValue) (it ran, or may have; one recorded at its position again runs again)")
        }
        print("recorded in the log (last sequence \(sequence.map(String.init) ?? "?")) by \(TextFormat.quoted(actor)): \(TextFormat.quoted(reason))")
        return ExitCodes.success
    }
}

/// What the journal commands share.
enum JournalArguments {
    static func validate(run: String, namespace: String) throws {
        guard !run.isEmpty else { throw ValidationError("the run id must not be empty") }
        for (text, max, what) in [(run, FormatLimits.runBytesMax, "run id"), (namespace, FormatLimits.namespaceBytesMax, "namespace")]
        where text.utf8.count > max {
            throw ValidationError("the \(what) is \(text.utf8.count) bytes; the limit is \(max)")
        }
    }

    /// The journal, read from a read-only open.
    static func export(_ directory: String, command: String, run: String, namespace: String, generation: UInt64?,
                       allowLive: Bool) async throws -> JournalExport {
        // A missing or non-ledger directory: the message every inspecting command gives.
        _ = try LedgerInspection.requireLedger(directory)
        try LiveLedgerPolicy.check(directory, command: command, allowLive: allowLive)
        let ledger: Ledger
        do {
            ledger = try Ledger.openReadOnly(directory: directory)
        } catch let error as LedgerError {
            throw CommandFailure(error, hint: error.isCorruption ? "Run `onceledger verify \(directory)` for the full report." : nil,
                                 relativeTo: directory)
        }
        defer { try? ledger.close() }
        do {
            return try await ledger.exportJournal(run: run, namespace: namespace, generation: generation)
        } catch let error as LedgerError {
            throw CommandFailure(error, relativeTo: directory)
        }
    }

    /// An output as one short line: JSON text as it is, else a byte count.
    static func preview(_ output: [UInt8], limit: Int = 60) -> String {
        // Control and format characters (escape sequences, a right-to-left override) are never printed.
        guard let text = String(validating: output, as: UTF8.self),
              !text.unicodeScalars.contains(where: { [.control, .format].contains($0.properties.generalCategory) }) else {
            return "(\(output.count) bytes)"
        }
        return text.count > limit ? String(text.prefix(limit)) + "…" : text
    }
}
