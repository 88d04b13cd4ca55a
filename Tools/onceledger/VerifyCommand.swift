import ArgumentParser
import OnceLedger
import OnceLedgerFormat
import OnceLedgerLog

/// `onceledger verify DIR [--repair] [--json]`: fsck for a ledger (exit codes: `ExitCodes`).
///
/// Decisions (also in `--help`):
/// - A torn tail (row R15) is an ordinary crash state, not corruption: it is reported
///   with its segment, offset and size, and the exit code stays 0. `--repair` cuts it
///   exactly as opening would (`LogWriter.recover`, which takes the lock) and exits 1.
/// - Without `--repair` nothing is written and no lock is taken; a ledger locked by a
///   live process is not read (exit 8, naming the holder), because a writer appending
///   during the scan makes the result unreliable. The lock is looked up again after the
///   scan, so a writer that opened meanwhile is reported too.
struct VerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check a ledger like fsck: every segment and the snapshot, read-only.",
        discussion: """
            Reads every segment and the newest snapshot without changing anything and without \
            taking the lock, and checks segment headers, record checksums, the checksum chain, \
            sequence continuity, every record body, and the recovery classification of \
            Spec/RECOVERY.md. Prints the segments, records, entries by state (done, \
            pending-unknown, absent), the tail state and every problem with its segment, offset \
            and sequence number.

            A torn tail (row R15: the batch that was being written when the process or machine \
            stopped) is an ordinary crash state, not corruption: nothing acknowledged is in it, and \
            the next open cuts it. verify reports it and exits 0. --repair cuts it now, exactly as \
            opening does (copy its bytes to a torn-*.bin side file, zero them, delete leftover \
            .tmp files; this takes the lock), and exits 1. Corruption is never repaired in place: \
            use `onceledger salvage`, which copies what is recoverable to a new directory.

            After a failed fsync, Linux keeps the pages it could not write readable in the page \
            cache but never writes them. verify reads the last commit's pages from the disk too \
            (O_DIRECT) and reports records the disk does not hold (exit 0: none was acknowledged); \
            the next open, or --repair, writes the disk's bytes back and drops them.

            A ledger locked by a live process is not read (exit 8, naming the process): a writer \
            appending during the scan would make the result unreliable.

            Exit codes (as fsck(8)): 0 no corruption (a torn tail may be left for the next open), \
            1 repaired (--repair), 4 damaged: the ledger refuses to open (nothing was changed), \
            8 operational error (not a ledger, cannot read, locked, unsupported format version), \
            16 usage error.
            """)

    @OptionGroup var options: InspectOptions

    @Flag(help: "Cut a torn tail and delete leftover temporary files, exactly as opening would (takes the lock).")
    var repair = false

    func run() async throws {
        try await CommandFailure.reporting(json: options.json) { try verify() }
    }

    private func verify() throws -> Int32 {
        let directory = options.dir
        _ = try LedgerInspection.requireLedger(directory)
        try LiveLedgerPolicy.check(directory, command: "verify", allowLive: false)
        var inspection = try LedgerInspection.inspect(directory, progressLabel: "verify")
        var repairs: [String] = []
        var before: LedgerInspection?
        if repair && inspection.problem == nil && inspection.openWouldRepair {
            repairs = try Self.performRepair(inspection)
            before = inspection
            inspection = try LedgerInspection.inspect(directory, progressLabel: "verify")
        } else if let holder = LockProbe.holder(of: directory) {
            throw CommandFailure(
                ExitCodes.operational,
                "\(holder.who) opened the ledger in \(directory) while verify was reading it, so the result is unreliable. Run verify again once that process has closed it.",
                code: LedgerError.Code.locked.rawValue)
        }
        let verdict = Verdict(inspection: inspection, repairs: repairs, repairRequested: repair)
        if options.json {
            print(Self.json(inspection, verdict: verdict, before: before).rendered(pretty: true))
        } else {
            print(Self.text(inspection, verdict: verdict))
        }
        return verdict.exitCode
    }

    /// What opening would do, and nothing more: `LogWriter.recover` quarantines the torn
    /// tail and deletes leftover `.tmp` files; closing right away appends nothing.
    static func performRepair(_ inspection: LedgerInspection) throws -> [String] {
        let directory = inspection.directory
        let storage = PosixStorage()
        let tornBefore = Set(try storage.listDirectory(directory).filter(LedgerFileNames.isTorn))
        let (writer, lock, report) = try LogWriter.recover(
            directory: directory, storage: storage, configuration: LogConfiguration(), createIfMissing: false)
        writer.close(timeMilliseconds: LogEngine.systemMilliseconds())
        lock.unlock()
        var repairs: [String] = []
        if let unsynced = report.unsyncedTail {
            repairs.append(
                "wrote the device's bytes back over segment \(unsynced.segment) from offset \(unsynced.offset) to \(unsynced.endOffset): the page cache showed records of the last commit that the device never got (a failed sync lost their pages)")
        }
        if let torn = report.row.action == .quarantineTornTail ? report.tornTail : nil {
            let sideFiles = try storage.listDirectory(directory).filter { LedgerFileNames.isTorn($0) && !tornBefore.contains($0) }
            repairs.append(
                "cut the torn tail of segment \(torn.segment) at offset \(torn.offset) (\(TextFormat.plural(Int(torn.byteCount), "byte")), from sequence \(torn.expectedSequence) on) and kept its bytes in \(sideFiles.sorted().joined(separator: ", "))")
        }
        if let pending = report.row.action == .completeRollover ? report.pendingRollover : nil {
            repairs.append("completed the interrupted rollover: renamed \(pending.temporaryName) to \(LedgerFileNames.segment(pending.successor)) (segment \(pending.segment) is sealed and names it)")
        }
        for name in report.temporaryFiles where name != report.pendingRollover?.temporaryName {
            repairs.append("deleted the leftover temporary file \(name) (a creation that never finished)")
        }
        return repairs
    }

    /// The outcome and its exit code.
    struct Verdict {
        enum Result: String { case clean, repairable, repaired, damaged, unsupported }
        var result: Result
        var exitCode: Int32
        var problems: [LedgerError]
        var repairs: [String]

        /// The library's verdict (`VerificationReport`), and its exit code.
        init(inspection: LedgerInspection, repairs: [String], repairRequested: Bool) {
            let report = VerificationReport(inspection: inspection)
            self.problems = report.problems
            self.repairs = repairs
            switch report.result {
            case .unsupported:
                result = .unsupported
                exitCode = ExitCodes.operational
            case .damaged:
                result = .damaged
                exitCode = ExitCodes.problemsLeft
            case _ where !repairs.isEmpty:
                result = .repaired
                exitCode = ExitCodes.repaired
            case .repairable:
                result = .repairable
                exitCode = ExitCodes.success
            case .clean:
                result = .clean
                exitCode = ExitCodes.success
            }
        }
    }

    // MARK: Text

    static func text(_ inspection: LedgerInspection, verdict: Verdict) -> String {
        let directory = inspection.directory
        let report = inspection.report
        var out = SummaryText()
        out.add("ledger", directory)
        out.add("ledger id", inspection.ledgerID?.description ?? "unknown")
        if let snapshot = report.snapshot {
            out.add("snapshot", "\(name(snapshot.path)): covers sequence \(snapshot.coveredSequence), \(TextFormat.plural(snapshot.itemCount, "item")), \(TextFormat.plural(Int(snapshot.fileBytes), "byte"))")
        } else if !inspection.snapshotFiles.isEmpty {
            out.add("snapshot", "\(inspection.snapshotFiles.last!.name): not usable (see problems)")
        } else {
            out.add("snapshot", "none")
        }
        let segmentBytes = inspection.bytes(in: .segment)
        out.add("segments", "\(TextFormat.plural(inspection.segmentFiles.count, "segment")), \(TextFormat.plural(Int(segmentBytes), "byte"))")
        for line in segmentLines(inspection) { out.detail(line) }
        var records = TextFormat.count(inspection.recordCount)
        if let range = inspection.sequenceRange { records += " (\(TextFormat.sequences(range.first, range.last)))" }
        if inspection.refused { records += " before the first problem" }
        let kinds = inspection.kindCountsInOrder.map { "\($0.0) \(TextFormat.count($0.1))" }
        if !kinds.isEmpty { records += ": " + kinds.joined(separator: ", ") }
        out.add("records", records)
        if inspection.coveredRecordCount > 0 {
            out.detail("\(TextFormat.plural(inspection.coveredRecordCount, "record")) covered by the snapshot (checked, not replayed)")
        }
        if let counts = inspection.entryCounts {
            let total = counts.done + counts.pendingUnknown + counts.absent
            out.add("entries", "\(TextFormat.plural(total, "key")): \(TextFormat.count(counts.done)) done, \(TextFormat.count(counts.pendingUnknown)) pending-unknown, \(TextFormat.count(counts.absent)) absent")
        } else {
            out.add("entries", "not computed: the ledger refuses to open")
        }
        if let torn = inspection.tornTail {
            out.add("tail", "torn at segment \(torn.segment) offset \(torn.offset): \(TextFormat.plural(Int(torn.byteCount), "byte")) from sequence \(torn.expectedSequence) on (\(torn.reason))")
            out.detail("a torn tail is an ordinary crash state, not corruption: the batch being written when the writer stopped was never acknowledged")
        } else {
            out.add("tail", inspection.tailState)
        }
        out.add("recovery", "\(report.row.label): \(report.row.summary)")
        if verdict.problems.isEmpty {
            out.add("problems", "none")
        } else {
            out.add("problems", "\(verdict.problems.count)")
            for problem in verdict.problems { out.detail(CommandFailure.describe(problem, relativeTo: directory)) }
        }
        if let unsynced = report.unsyncedTail {
            out.add("repairable", "records the device does not hold: \(unsynced.summary) (`onceledger verify --repair` does it now)")
        }
        if let torn = inspection.tornTail {
            let side = name(LogWriter.tornSidePath(directory: directory, torn: torn, storage: PosixStorage()))
            out.add("repairable", "the torn tail: the next open (or `onceledger verify --repair`) copies its bytes to \(side) and cuts segment \(torn.segment) at offset \(torn.offset)")
        }
        let pending = report.row.action == .completeRollover ? report.pendingRollover : nil
        if let pending {
            out.add("repairable", "an interrupted rollover (an ordinary crash state): segment \(pending.segment) is sealed and names segment \(pending.successor), which exists only as \(pending.temporaryName); the next open (or `onceledger verify --repair`) renames it into place")
        }
        let leftovers = report.temporaryFiles.filter { $0 != pending?.temporaryName }
        if !leftovers.isEmpty {
            out.add(inspection.tornTail == nil && pending == nil ? "repairable" : "", "leftover temporary files (creations that never finished; the next open deletes them): \(leftovers.joined(separator: ", "))")
        }
        for repair in verdict.repairs { out.add("repaired", repair) }
        for line in notes(inspection) { out.add("note", line) }
        out.add("result", resultText(verdict, inspection: inspection))
        return out.text
    }

    static func segmentLines(_ inspection: LedgerInspection) -> [String] {
        let report = inspection.report
        var lines: [String] = []
        for summary in report.segments {
            var line = "\(name(summary.path))  "
            if summary.recordCount > 0, let first = summary.firstSequence, let last = summary.lastSequence {
                line += "\(TextFormat.plural(summary.recordCount, "record")) (\(TextFormat.sequences(first, last)))"
            } else {
                line += "no records"
            }
            if summary.header != nil {
                line += ", \(TextFormat.count(summary.endOffset)) of \(TextFormat.count(summary.fileBytes)) bytes used"
            }
            if let torn = inspection.tornTail, torn.segment == summary.number {
                line += ", then a torn tail"
            } else if inspection.refused, let error = report.error, error.segment == summary.number {
                line += error.offset.map { ", problem at offset \($0)" } ?? ", problem"
            }
            lines.append(line)
        }
        for look in inspection.unreachedSegments {
            lines.append("\(look.name)  not reached by the scan (it stops at the first problem); on its own: \(look.summary)")
        }
        if lines.count > 20 {
            return Array(lines.prefix(10)) + ["… \(lines.count - 20) more …"] + Array(lines.suffix(10))
        }
        return lines
    }

    static func notes(_ inspection: LedgerInspection) -> [String] {
        let report = inspection.report
        var notes: [String] = []
        if let pending = inspection.entryCounts?.pendingUnknown, pending > 0 {
            notes.append("\(TextFormat.plural(pending, "pending-unknown entry", "pending-unknown entries")) \(pending == 1 ? "needs" : "need") an operator decision: `onceledger pending \(inspection.directory)`")
        }
        if !report.tornFiles.isEmpty {
            notes.append("quarantined torn tails kept for operators (never read by recovery): \(report.tornFiles.joined(separator: ", "))")
        }
        if !report.otherFiles.isEmpty {
            notes.append("files that are not part of the ledger (ignored): \(report.otherFiles.joined(separator: ", "))")
        }
        return notes
    }

    static func resultText(_ verdict: Verdict, inspection: LedgerInspection) -> String {
        switch verdict.result {
        case .clean:
            return "clean (exit 0)"
        case .repairable:
            if inspection.report.unsyncedTail != nil {
                return "no corruption; records a failed sync lost are left for the next open to drop (exit 0). `onceledger verify --repair \(inspection.directory)` drops them now."
            }
            if inspection.tornTail != nil {
                return "no corruption; the torn tail is left for the next open to cut (exit 0). `onceledger verify --repair \(inspection.directory)` cuts it now."
            }
            if inspection.report.row.action == .completeRollover {
                return "no corruption; the interrupted rollover is left for the next open to complete (exit 0). `onceledger verify --repair \(inspection.directory)` completes it now."
            }
            return "no corruption; leftover temporary files are left for the next open to delete (exit 0)."
        case .repaired:
            return "repaired (exit 1): the ledger now opens without changes."
        case .damaged:
            return "damaged (exit 4): the ledger refuses to open; verify changed nothing. Copy what is recoverable into a new directory with `onceledger salvage` (it never changes this one)."
        case .unsupported:
            return "not readable by this build (exit 8); nothing was changed. Use the onceledger version that wrote this ledger."
        }
    }

    static func name(_ path: String) -> String {
        path.split(separator: "/").last.map(String.init) ?? path
    }

    // MARK: JSON

    static func json(_ inspection: LedgerInspection, verdict: Verdict, before: LedgerInspection?) -> JSONValue {
        let report = inspection.report
        let directory = inspection.directory
        var members: [(String, JSONValue)] = [
            ("directory", .string(directory)),
            ("result", .string(verdict.result.rawValue)),
            ("exitCode", .unsigned(UInt64(verdict.exitCode))),
            ("ledgerID", inspection.ledgerID.map { .string($0.description) } ?? .null),
        ]
        let action: String = switch report.row.action {
        case .open: "open"
        case .quarantineTornTail: "quarantine-torn-tail"
        case .completeRollover: "complete-rollover"
        case .createNew: "create-new"
        case .refuse: "refuse"
        }
        members.append(("recovery", .object([
            ("row", .string(report.row.label)), ("summary", .string(report.row.summary)), ("action", .string(action)),
            ("observation", .string(report.observation.description)),
        ])))
        members.append(("snapshot", report.snapshot.map { snapshot in
            .object([
                ("file", .string(name(snapshot.path))), ("coveredSequence", .unsigned(snapshot.coveredSequence)),
                ("chain", .string(hex32(snapshot.chain))), ("items", .int(snapshot.itemCount)),
                ("bytes", .unsigned(snapshot.fileBytes)),
            ])
        } ?? .null))
        var segments: [JSONValue] = report.segments.map { summary in
            .object([
                ("number", .unsigned(summary.number)), ("file", .string(name(summary.path))),
                ("bytes", .unsigned(summary.fileBytes)), ("checked", .bool(true)),
                ("records", .int(summary.recordCount)), ("firstSequence", .optional(summary.firstSequence)),
                ("lastSequence", .optional(summary.lastSequence)), ("usedBytes", .unsigned(summary.endOffset)),
            ])
        }
        segments += inspection.unreachedSegments.map { look in
            .object([
                ("number", .unsigned(look.number)), ("file", .string(look.name)), ("bytes", .unsigned(look.fileBytes)),
                ("checked", .bool(false)), ("records", .int(look.recordCount)),
                ("firstSequence", .optional(look.firstSequence)), ("lastSequence", .optional(look.lastSequence)),
                ("status", .string(look.status)),
            ])
        }
        members.append(("segments", .array(segments)))
        let range = inspection.sequenceRange
        members.append(("records", .object([
            ("count", .int(inspection.recordCount)), ("firstSequence", .optional(range?.first)),
            ("lastSequence", .optional(range?.last)), ("coveredBySnapshot", .int(inspection.coveredRecordCount)),
            ("byKind", .object(inspection.kindCountsInOrder.map { ($0.0.name, .int($0.1)) })),
        ])))
        members.append(("entries", inspection.entryCounts.map { counts in
            .object([
                ("total", .int(counts.done + counts.pendingUnknown + counts.absent)), ("done", .int(counts.done)),
                ("pending-unknown", .int(counts.pendingUnknown)), ("absent", .int(counts.absent)),
            ])
        } ?? .null))
        var tail: [(String, JSONValue)] = [("state", .string(inspection.tailState))]
        if let torn = inspection.tornTail {
            let side = name(LogWriter.tornSidePath(directory: directory, torn: torn, storage: PosixStorage()))
            tail += [
                ("segment", .unsigned(torn.segment)), ("offset", .unsigned(torn.offset)),
                ("endOffset", .unsigned(torn.endOffset)), ("bytes", .unsigned(torn.byteCount)),
                ("expectedSequence", .unsigned(torn.expectedSequence)), ("reason", .string(torn.reason)),
                ("sideFile", .string(side)),
            ]
        }
        if let unsynced = report.unsyncedTail {
            tail += [("unsyncedTail", unsynced.json)]
        }
        if let before, let torn = before.tornTail {
            tail += [("repairedTornTail", .object([
                ("segment", .unsigned(torn.segment)), ("offset", .unsigned(torn.offset)),
                ("bytes", .unsigned(torn.byteCount)), ("expectedSequence", .unsigned(torn.expectedSequence)),
            ]))]
        }
        members.append(("tail", .object(tail)))
        members.append(("problems", .array(verdict.problems.map { problemJSON($0, directory: directory) })))
        members.append(("repairs", .array(verdict.repairs.map(JSONValue.string))))
        members.append(("temporaryFiles", .array(report.temporaryFiles.map(JSONValue.string))))
        members.append(("tornFiles", .array(report.tornFiles.map(JSONValue.string))))
        members.append(("otherFiles", .array(report.otherFiles.map(JSONValue.string))))
        return .object(members)
    }

    static func problemJSON(_ error: LedgerError, directory: String) -> JSONValue {
        var members: [(String, JSONValue)] = [("code", .string(error.code.rawValue)), ("message", .string(error.message))]
        if let path = error.path { members.append(("file", .string(path == directory ? "." : name(path)))) }
        if let segment = error.segment { members.append(("segment", .unsigned(segment))) }
        if let offset = error.offset { members.append(("offset", .unsigned(offset))) }
        if let sequence = error.sequence { members.append(("sequence", .unsigned(sequence))) }
        if let expected = error.expectedChecksum { members.append(("expectedChecksum", .string(hex32(expected)))) }
        if let actual = error.actualChecksum { members.append(("actualChecksum", .string(hex32(actual)))) }
        return .object(members)
    }
}
