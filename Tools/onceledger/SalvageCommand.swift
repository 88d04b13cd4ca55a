import ArgumentParser
import Foundation
import OnceLedger
import OnceLedgerFormat
import OnceLedgerLog

/// `onceledger salvage DIR --to NEWDIR`: copies every record that can be recovered from
/// a damaged ledger into a new ledger and reports what was lost (README "Salvaging a damaged ledger": salvage
/// is the explicit offline tool for a ledger that refuses to open). Never changes DIR.
///
/// DIR is read with the format decoders directly (`SalvageScan`), past any damage. The
/// new ledger is written through the library (`Salvage.write`: the snapshot's items as a
/// snapshot, then the records in sequence order as appends), so it is a valid ledger
/// whose entries — done, pending-unknown, absent — are what the recovered records say.
/// Records get new sequence numbers there; the new ledger keeps the source's ledger id and
/// token scheme (`LogConfiguration.newLedgerIdentity`), so every entry keeps its effect
/// token (a retried or re-run key presents the downstream the token it saw). Checkpoints, snapshot markers and seals
/// describe the old files and are not copied. It is built beside NEWDIR and renamed into
/// place only when complete (`SalvageDestination`), so an interrupted salvage leaves no
/// partial ledger at NEWDIR.
///
/// Exit status: 0 nothing lost; 4 something was lost (proven-durable records missing, a
/// segment that could not be read or whose end is lost — a loss of unknown size —, a
/// record that could not be copied, or inconsistent records: the report says which);
/// 8 operational error (DIR missing or in use, NEWDIR not empty, a write failed: NEWDIR is
/// then left as it was); 16 usage.
struct SalvageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "salvage",
        abstract: "Copy every recoverable record of a damaged ledger into a new ledger; report what was lost.",
        discussion: """
            Reads DIR without changing it, going past damaged records and unreadable files, \
            and writes what it recovered into NEWDIR (which must not exist or be an empty \
            directory) as a new, valid ledger. The new ledger numbers its records afresh and \
            keeps the source's ledger id and token scheme, so every entry keeps its effect \
            token (unless the source's id cannot be established). It \
            is built in NEWDIR.salvage-tmp and renamed to NEWDIR only when complete and \
            durable: if salvage is interrupted, NEWDIR is not created (remove the leftover \
            NEWDIR.salvage-tmp, which holds a SALVAGE-INCOMPLETE file, and run it again).

            The report lists every file, the damaged bytes, and what was lost: records proven \
            durable that could not be read (counted), and segments that could not be read or \
            whose end was cut off with nothing after them to count what they held (a loss of \
            unknown size), including a segment that a sealed last segment names but that is \
            missing (an interrupted rollover, where only its .tmp file exists, loses \
            nothing). A gap that nothing proves durable (a torn, never-acknowledged \
            tail) is reported but does not count as lost. The last line starts with \
            "result:": "nothing lost", "nothing acknowledged was lost (…)" or "something \
            was lost (…)".

            Exit codes (as fsck(8)): 0 nothing lost, 4 something lost (see the report), \
            8 operational error (NEWDIR is left as it was), 16 usage error.
            """)

    @Argument(help: "The damaged ledger directory (read only).")
    var dir: String

    @Option(name: .customLong("to"), help: ArgumentHelp("A new or empty directory for the salvaged ledger.", valueName: "newdir"))
    var to: String

    @Flag(help: "If the newest snapshot is damaged, copy the items that still parse, unverified (reported; exit 4).")
    var trustDamagedSnapshot = false

    @Flag(help: "Print the report as one JSON object.")
    var json = false

    /// An operational failure (exit 8): printed as `Error: …` on standard error and, with
    /// `--json`, also as `{"code":…,"message":…,"exitCode":8}` on standard output, as the
    /// other commands do.
    struct Failure: Error, CustomStringConvertible {
        var description: String
        /// A `LedgerError` code (`not-a-ledger`, `locked`, `io`, …), or `operational`.
        var code = "operational"

        init(description: String, code: String = "operational") {
            self.description = description
            self.code = code
        }

        init(_ error: LedgerError) {
            self.init(description: CommandFailure.describe(error), code: error.code.rawValue)
        }
    }

    func run() async throws {
        let source = URL(fileURLWithPath: dir).standardizedFileURL.path
        let target = URL(fileURLWithPath: to).standardizedFileURL.path
        guard source != target else { throw ValidationError("--to must name another directory than DIR") }
        if target.hasPrefix(source + "/") { throw ValidationError("--to must not be inside DIR (salvage never changes DIR)") }
        let destination = SalvageDestination(target: target)
        if destination.staging == source {
            throw ValidationError("--to must name another directory than DIR")
        }
        do {
            try checkDirectories(source: source, destination: destination)
            let trust = trustDamagedSnapshot
            let scan = try await BlockingThread.run(name: "salvage-read") {
                // Progress on standard error, only when it is a terminal.
                var progress: ScanProgress?
                defer { progress?.finish() }
                return try Salvage.scan(directory: source, trustDamagedSnapshot: trust) { segment, count, records in
                    if progress == nil { progress = ScanProgress(label: "salvage", firstSegment: 1, segmentCount: count) }
                    progress?.update(segment: UInt64(segment), records: records)
                }
            }
            if scan.segments.isEmpty && scan.snapshot == nil && scan.ignoredSnapshots.isEmpty {
                throw Failure(description: "\(dir) holds no ledger files (no segment, no snapshot)",
                              code: LedgerError.Code.notALedger.rawValue)
            }
            let plan = Salvage.plan(scan)
            let written: SalvagePlan.Written
            do {
                written = try await Salvage.write(plan, to: destination)
            } catch {
                let removed = destination.discard()
                var failure = (error as? Failure) ?? (error as? Salvage.Failure).map { Failure(description: $0.description) }
                    ?? (error as? LedgerError).map(Failure.init)
                    ?? Failure(description: "\(error)")
                let left = FileManager.default.fileExists(atPath: target) ? "is left as it was (empty)" : "was not created"
                failure.description += "\n\(target) \(left)"
                    + (removed ? "" : "; remove the partial copy in \(destination.staging)")
                throw failure
            }
            let report = SalvageReport(source: source, target: target, scan: scan, plan: plan, written: written)
            print(json ? report.json() : report.text())
            if report.somethingLost { throw ExitCode(ExitCodes.problemsLeft) }
        } catch let failure as Failure {
            printFailure(failure)
            throw ExitCode(ExitCodes.operational)
        } catch let error as LedgerError {
            printFailure(Failure(error))
            throw ExitCode(ExitCodes.operational)
        }
    }

    private func printFailure(_ failure: Failure) {
        if json {
            print(JSONValue.object([("code", .string(failure.code)), ("message", .string(failure.description)),
                                    ("exitCode", .unsigned(UInt64(ExitCodes.operational)))]).rendered())
        }
        FileHandle.standardError.write(Data("Error: \(failure.description)\n".utf8))
    }

    /// DIR must be a directory no writer holds; NEWDIR must be missing or empty.
    private func checkDirectories(source: String, destination: SalvageDestination) throws {
        var info = stat()
        guard stat(source, &info) == 0 else {
            let reason = errno == ENOENT ? "no such directory" : String(cString: strerror(errno))
            throw Failure(description: "\(dir): \(reason). Pass the ledger's directory (the one holding wal-*.seg files).",
                          code: LedgerError.Code.notALedger.rawValue)
        }
        guard info.st_mode & S_IFMT == S_IFDIR else {
            throw Failure(description: "\(dir) is not a directory. A ledger is a directory of wal-*.seg segment files; pass that directory.",
                          code: LedgerError.Code.notALedger.rawValue)
        }
        do {
            try destination.check()
        } catch {
            throw Failure(description: error.description)
        }
        // A live writer would change the files while they are read. The probe sees the
        // directory's lock (which deleting or replacing LOCK cannot hide) and never opens
        // LOCK through a link or in a way that could block (FORMAT §2.2).
        if let holder = LockProbe.holder(of: source) {
            throw Failure(description: "\(dir) is in use by \(holder.who); close it there first",
                          code: LedgerError.Code.locked.rawValue)
        }
    }
}

/// The human and JSON reports of one salvage.
struct SalvageReport {
    var source: String
    var target: String
    var scan: SalvageScan
    var plan: SalvagePlan
    var written: SalvagePlan.Written

    var provenGaps: [SalvageScan.Gap] { scan.gaps.filter(\.provenDurable) }
    var tornGaps: [SalvageScan.Gap] { scan.gaps.filter { !$0.provenDurable } }
    var lostRecordCount: UInt64 { provenGaps.reduce(0) { $0 + $1.lastSequence - $1.firstSequence + 1 } }
    var unreadable: Bool { scan.ledgerID == nil && !scan.segments.isEmpty }

    var unverifiedSnapshot: Bool { scan.snapshot.map { !$0.verified } ?? false }

    var somethingLost: Bool {
        !provenGaps.isEmpty || !plan.notCopied.isEmpty || !scan.inconsistencies.isEmpty || unreadable
            || unverifiedSnapshot || !scan.unknownLosses.isEmpty || !scan.unreadableSegments.isEmpty
            || scan.lostSuccessor != nil
    }

    /// Segment numbers whose records are lost in a number nothing tells: segments whose end
    /// could not be read, and the lost successor of a sealed last segment.
    var unknownLossNumbers: [UInt64] { scan.unknownLosses.map(\.number) + (scan.lostSuccessor.map { [$0.number] } ?? []) }

    func count(_ status: EntryInfo.Status) -> Int { written.entries.filter { $0.status == status }.count }

    func text() -> String {
        var lines: [String] = []
        lines.append("salvage \(source) -> \(target)")
        var sourceLine = "source: ledger \(scan.ledgerID?.description ?? "(id unknown: no valid header, snapshot or record)")"
        sourceLine += ", \(scan.segments.count) segment file\(scan.segments.count == 1 ? "" : "s")"
        if let snapshot = scan.snapshot, snapshot.verified {
            sourceLine += ", snapshot \(snapshot.file) (covers 1-\(snapshot.snapshot.coveredSequence), \(TextFormat.plural(snapshot.snapshot.items.count, "item")))"
        }
        lines.append(sourceLine)
        if let damaged = scan.damagedSnapshot {
            let parsed = "\(damaged.items.count) of its \(damaged.itemCountDeclared) items still parse"
                + (damaged.stopReason.map { " (stopped: \($0))" } ?? "")
            if unverifiedSnapshot {
                lines.append("  UNVERIFIED: \(damaged.file) is damaged; \(parsed); they are used as the state through sequence \(damaged.coveredSequence), without checksum verification")
            } else {
                lines.append("  \(damaged.file) is damaged; \(parsed): rerun with --trust-damaged-snapshot to copy them, unverified")
            }
            for item in damaged.damagedItems { lines.append("    \(item)") }
            if unverifiedSnapshot, let raised = plan.raisedGenerationFloor {
                lines.append("    the generation floor is raised to \(raised) (one snapshot item added): the damaged snapshot's last hint, its floor, is lost, and a key its compactions dropped must never run again with an old token")
            }
        }
        for segment in scan.segments {
            var line = "  \(segment.file): "
            if let unreadable = segment.unreadable, segment.recordCount == 0 {
                line += "cannot be read: \(unreadable)"
            } else if let first = segment.firstSequence, let last = segment.lastSequence {
                line += "\(TextFormat.plural(segment.recordCount, "valid record")) in sequence \(first)-\(last)"
            } else {
                line += "no valid records"
            }
            if let problem = segment.headerProblem { line += "; \(problem)" }
            if let openEnd = segment.openEnd, !segment.lossOfUnknownSize, segment.unreadable == nil || segment.recordCount > 0 {
                // Not twice what the header problem already said ("file is N bytes but …").
                let lead = openEnd.split(separator: ":", maxSplits: 1).first.map(String.init) ?? openEnd
                let rest = segment.headerProblem?.contains(lead) == true ? String(openEnd.dropFirst(lead.count + 2)) : openEnd
                if !rest.isEmpty { line += "; \(rest)" }
            }
            lines.append(line)
        }
        if let successor = scan.sealedSuccessor, successor.temporaryExists {
            lines.append("  \(successor.file)\(LedgerFileNames.temporarySuffix): an interrupted rollover: segment \(successor.sealedSegment) is sealed and names segment \(successor.number), whose file was being created; no record was written to it (nothing lost)")
        }
        for ignored in scan.ignoredSnapshots { lines.append("  \(ignored.file): not used: \(ignored.reason)") }
        if !scan.otherFiles.isEmpty { lines.append("  other files (ignored): \(scan.otherFiles.joined(separator: ", "))") }
        if scan.coveredRecordCount > 0 {
            lines.append("  \(TextFormat.plural(scan.coveredRecordCount, "valid record")) at or below the snapshot's sequence number: already reflected in the snapshot")
        }
        if !scan.missingSegments.isEmpty {
            lines.append("  missing segment files: \(scan.missingSegments.map(String.init).joined(separator: ", "))")
        }

        if !scan.damage.isEmpty {
            lines.append("damaged bytes (not valid records):")
            for damage in scan.damage {
                lines.append("  segment \(damage.segment) (\(damage.file)) offsets \(damage.startOffset)..<\(damage.endOffset): \(damage.reason)"
                    + (damage.unverifiedContents.map { "; looks like \($0), unverified" } ?? ""))
            }
        }
        if !scan.unknownLosses.isEmpty || scan.lostSuccessor != nil {
            lines.append(scan.unknownLosses.isEmpty
                ? "LOST, how many records unknown: a segment that is missing, with no later segment or record to count what it held:"
                : "LOST, how many records unknown: segments whose end could not be read, with no later segment or record to count what they held:")
            for segment in scan.unknownLosses {
                lines.append("  segment \(segment.number) (\(segment.file)): \(segment.openEnd ?? "")")
            }
            if let successor = scan.lostSuccessor {
                lines.append("  segment \(successor.number) (\(successor.file)): missing: segment \(successor.sealedSegment) ends with a seal naming it, so it was created and may have held acknowledged records (deleted, or lost with the file system); any segment after it is gone too")
            }
        }
        if !provenGaps.isEmpty {
            lines.append("LOST: records proven durable that could not be read:")
            for gap in provenGaps { lines.append("  \(describe(gap))") }
        }
        if !tornGaps.isEmpty {
            lines.append("torn tail (not counted as lost: never proven durable):")
            for gap in tornGaps { lines.append("  \(describe(gap))") }
        }
        if !scan.inconsistencies.isEmpty {
            lines.append("INCONSISTENT:")
            for text in scan.inconsistencies { lines.append("  \(text)") }
        }
        if !plan.notCopied.isEmpty {
            lines.append("NOT COPIED:")
            for text in plan.notCopied { lines.append("  \(text)") }
        }
        if unreadable {
            lines.append("LOST: no ledger id could be established, so no record checksum can be checked")
        }

        lines.append("written: \(target)")
        var copied = "  \(TextFormat.plural(plan.items.count, "snapshot item")) and \(TextFormat.plural(plan.records.count, "record")) copied"
        if plan.housekeepingSkipped > 0 {
            copied += "; \(TextFormat.plural(plan.housekeepingSkipped, "housekeeping record")) (checkpoint, snapshot marker, seal) left out: they only describe the old files"
        }
        lines.append(copied)
        lines.append("  \(identityLine)")
        lines.append("  entries: \(count(.done)) done, \(count(.pendingUnknown)) pending-unknown, \(count(.absent)) absent")
        if somethingLost {
            var what: [String] = []
            if lostRecordCount > 0 { what.append("\(lostRecordCount) durable record\(lostRecordCount == 1 ? "" : "s") lost") }
            let unknown = unknownLossNumbers.map(String.init)
            if !unknown.isEmpty {
                what.append("an unknown number of records lost in segment\(unknown.count == 1 ? "" : "s") \(unknown.joined(separator: ", "))")
            }
            let unreadableNumbers = scan.unreadableSegments.filter { !$0.lossOfUnknownSize }.map { String($0.number) }
            if !unreadableNumbers.isEmpty {
                what.append("segment\(unreadableNumbers.count == 1 ? "" : "s") \(unreadableNumbers.joined(separator: ", ")) unreadable")
            }
            if !plan.notCopied.isEmpty { what.append("\(plan.notCopied.count) not copied") }
            if !scan.inconsistencies.isEmpty { what.append("\(scan.inconsistencies.count) inconsistencies") }
            if unreadable { what.append("ledger id unknown") }
            if unverifiedSnapshot { what.append("snapshot items unverified") }
            lines.append("result: something was lost (\(what.joined(separator: ", "))); check the entries above against the systems the effects touched")
        } else if !tornGaps.isEmpty || !scan.damage.isEmpty {
            lines.append("result: nothing acknowledged was lost (damage only in bytes nothing proves durable)")
        } else {
            lines.append("result: nothing lost")
        }
        return lines.joined(separator: "\n")
    }

    /// What the new ledger keeps of the source's identity (`SalvagePlan.identity`).
    var identityLine: String {
        let numbering = "numbers its records afresh (sequence numbers differ from the source's)"
        guard scan.ledgerID != nil else {
            return "the new ledger has its own id (the source's is unknown), so effect tokens differ from the source's; it \(numbering)"
        }
        guard scan.ledgerScopedTokens != nil else {
            return "the new ledger keeps the source's ledger id; no valid header or snapshot tells its token scheme, so it uses ledger-scoped tokens (if the source was created by format version 1, effect tokens differ from the source's); it \(numbering)"
        }
        return "the new ledger keeps the source's ledger id and token scheme (every entry keeps its effect token) and \(numbering)"
    }

    private func describe(_ gap: SalvageScan.Gap) -> String {
        let range = gap.firstSequence == gap.lastSequence
            ? "sequence \(gap.firstSequence)" : "sequences \(gap.firstSequence)-\(gap.lastSequence)"
        return "\(range) (\(gap.location)): \(gap.proof)"
    }

    struct JSONReport: Codable {
        struct Copied: Codable {
            var snapshotItems: Int
            var records: Int
            var housekeepingSkipped: Int
        }
        struct Entries: Codable {
            var done: Int
            var pendingUnknown: Int
            var absent: Int
        }
        var source: String
        var target: String
        var ledgerID: String?
        var snapshot: String?
        var snapshotVerified: Bool?
        var missingSegments: [UInt64]
        var ignoredSnapshots: [String]
        var segments: [SalvageScan.SegmentFile]
        var damage: [SalvageScan.Damage]
        var gaps: [SalvageScan.Gap]
        var inconsistencies: [String]
        var notCopied: [String]
        var copied: Copied
        var entries: Entries
        var lostRecords: UInt64
        /// Segment numbers whose records after some point are lost in a number nothing tells
        /// (including a sealed last segment's missing successor).
        var unknownLossSegments: [UInt64]
        /// The segment a sealed last segment names when its file is missing (lost, or,
        /// with `interruptedRollover`, only its temporary file exists: nothing lost).
        var missingSuccessor: UInt64?
        var interruptedRollover: Bool?
        var somethingLost: Bool
        var exitCode: Int32
    }

    func json() -> String {
        let report = JSONReport(
            source: source, target: target, ledgerID: scan.ledgerID?.description, snapshot: scan.snapshot?.file,
            snapshotVerified: scan.snapshot?.verified, missingSegments: scan.missingSegments,
            ignoredSnapshots: scan.ignoredSnapshots.map { "\($0.file): \($0.reason)" }, segments: scan.segments,
            damage: scan.damage, gaps: scan.gaps, inconsistencies: scan.inconsistencies, notCopied: plan.notCopied,
            copied: .init(snapshotItems: plan.items.count, records: plan.records.count,
                          housekeepingSkipped: plan.housekeepingSkipped),
            entries: .init(done: count(.done), pendingUnknown: count(.pendingUnknown), absent: count(.absent)),
            lostRecords: lostRecordCount, unknownLossSegments: unknownLossNumbers,
            missingSuccessor: scan.sealedSuccessor?.number, interruptedRollover: scan.sealedSuccessor?.temporaryExists,
            somethingLost: somethingLost,
            exitCode: somethingLost ? ExitCodes.problemsLeft : ExitCodes.success)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? encoder.encode(report)) ?? Data("{}".utf8), as: UTF8.self)
    }
}
