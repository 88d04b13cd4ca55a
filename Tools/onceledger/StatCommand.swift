import ArgumentParser
import OnceLedger
import OnceLedgerFormat

/// `onceledger stat DIR [--json]`: sizes, counts, entries by state, the oldest
/// pending-unknown entry and the memo's runs and entries, read-only (no lock taken).
struct StatCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stat",
        abstract: "Show sizes, record counts, entries by state and the oldest pending-unknown entry.",
        discussion: """
            Reads the ledger without changing it and without taking the lock. Disk use counts every \
            regular file in the directory by role (segments, snapshots, quarantined torn tails, \
            leftover temporary files, the LOCK file, other files). Entries by state are what an \
            open would see; they are not shown for a damaged ledger (exit 4). The memo line counts \
            the run generations the memo holds (running, and ended but not swept yet) and their \
            memo entries and value bytes (`onceledger runs` lists them).

            A ledger that a live process has open is not read unless --live is given.

            \(ExitCodes.helpText)
            """)

    @OptionGroup var options: InspectOptions

    @Flag(help: "Read the ledger even though a live process has it open (pending-unknown entries may be in flight there).")
    var live = false

    func run() async throws {
        try await CommandFailure.reporting(json: options.json) { try await stat() }
    }

    private func stat() async throws -> Int32 {
        let directory = options.dir
        _ = try LedgerInspection.requireLedger(directory)
        try LiveLedgerPolicy.check(directory, command: "stat", allowLive: live)
        let inspection = try LedgerInspection.inspect(directory, progressLabel: "stat")
        var failure: CommandFailure?
        if let problem = inspection.problem {
            failure = CommandFailure(
                ExitCodes.code(for: problem),
                "the ledger is damaged, so its entries are not shown: " + CommandFailure.describe(problem, relativeTo: directory)
                    + "\nRun `onceledger verify \(directory)` for the full report.",
                code: problem.code.rawValue)
        }
        var memo: MemoCounts?
        if let store = inspection.store { memo = MemoCounts(try await store.runs(RunQuery())) }
        let floor = inspection.generationFloor
        if options.json {
            // One JSON document: a failure is the report's last member, `error`.
            var report = Self.json(inspection, memo: memo, generationFloor: floor)
            if var shown = failure, case .object(let members) = report {
                report = .object(members + [("error", shown.json)])
                shown.shownInJSON = true
                failure = shown
            }
            print(report.rendered(pretty: true))
        } else {
            print(Self.text(inspection, memo: memo, generationFloor: floor))
        }
        if let failure { throw failure }
        return ExitCodes.success
    }

    static let categories: [(LedgerInspection.FileInfo.Category, String)] = [
        (.segment, "segments"), (.snapshot, "snapshots"), (.torn, "torn tails"), (.temporary, "temporary"),
        (.lock, "lock"), (.other, "other"),
    ]

    static func text(_ inspection: LedgerInspection, memo: MemoCounts? = nil, generationFloor: UInt32? = nil) -> String {
        let report = inspection.report
        var out = SummaryText(labelWidth: 16)
        out.add("ledger", inspection.directory)
        out.add("ledger id", inspection.ledgerID?.description ?? "unknown")
        let total = inspection.files.reduce(UInt64(0)) { $0 + $1.bytes }
        let parts = categories.compactMap { category, label -> String? in
            let files = inspection.files.filter { $0.category == category }
            return files.isEmpty ? nil : "\(label) \(TextFormat.count(files.reduce(UInt64(0)) { $0 + $1.bytes }))"
        }
        out.add("disk use", "\(TextFormat.plural(Int(total), "byte")) in \(TextFormat.plural(inspection.files.count, "file")) (\(parts.joined(separator: ", ")))")
        let segments = inspection.segmentFiles.compactMap { LedgerFileNames.parseSegment($0.name) }
        if let first = segments.first, let last = segments.last {
            var text = "\(segments.count) (\(first == last ? "number \(first)" : "numbers \(first)…\(last)"))"
            if let active = report.segments.last, active.number == last, let header = active.header {
                text += "; active segment \(last): \(TextFormat.count(active.endOffset)) of \(TextFormat.count(header.segmentBytes)) bytes used"
            }
            out.add("segments", text)
        }
        if let snapshot = report.snapshot {
            out.add("snapshot", "\(VerifyCommand.name(snapshot.path)): covers sequence \(snapshot.coveredSequence), \(TextFormat.plural(snapshot.itemCount, "item"))")
        } else {
            out.add("snapshot", inspection.snapshotFiles.isEmpty ? "none" : "\(inspection.snapshotFiles.last!.name): not usable")
        }
        var records = TextFormat.count(inspection.recordCount)
        if let range = inspection.sequenceRange { records += " (\(TextFormat.sequences(range.first, range.last)))" }
        if inspection.coveredRecordCount > 0 {
            records += ", \(TextFormat.count(inspection.coveredRecordCount)) of them covered by the snapshot"
        }
        out.add("records", records)
        let kinds = inspection.kindCountsInOrder.map { "\($0.0) \(TextFormat.count($0.1))" }
        if !kinds.isEmpty { out.add("  by kind", kinds.joined(separator: ", ")) }
        if let counts = inspection.entryCounts {
            out.add("entries", "\(TextFormat.plural(counts.done + counts.pendingUnknown + counts.absent, "key")): \(TextFormat.count(counts.done)) done, \(TextFormat.count(counts.pendingUnknown)) pending-unknown, \(TextFormat.count(counts.absent)) absent")
            if let oldest = inspection.oldestPending {
                out.add("oldest pending", "\(TextFormat.plain(oldest.key)) since \(TextFormat.time(oldest.timeMilliseconds)) (attempt \(oldest.attempt), token \(oldest.token))")
            } else {
                out.add("oldest pending", "none")
            }
            if let generationFloor, generationFloor > 0 {
                out.add("gen. floor", "\(generationFloor) (a key without an entry starts at this generation: compaction dropped entries below it)")
            }
        } else {
            out.add("entries", "not computed: the ledger is damaged")
        }
        if let memo {
            out.add("memo", "\(TextFormat.plural(memo.runs, "run generation")) (\(TextFormat.count(memo.running)) running, \(TextFormat.count(memo.runs - memo.running)) ended), \(TextFormat.plural(memo.entries, "memo entry", "memo entries")), \(TextFormat.plural(memo.valueBytes, "value byte"))")
        }
        if let torn = inspection.tornTail {
            out.add("tail", "torn at segment \(torn.segment) offset \(torn.offset): \(TextFormat.plural(Int(torn.byteCount), "byte")) the next open cuts (an ordinary crash state)")
        } else {
            out.add("tail", inspection.tailState)
        }
        if let unsynced = inspection.report.unsyncedTail { out.detail(unsynced.summary) }
        return out.text
    }

    static func json(_ inspection: LedgerInspection, memo: MemoCounts? = nil, generationFloor: UInt32? = nil) -> JSONValue {
        let report = inspection.report
        var disk: [(String, JSONValue)] = [("total", .unsigned(inspection.files.reduce(UInt64(0)) { $0 + $1.bytes })),
                                           ("files", .int(inspection.files.count))]
        for (category, _) in categories {
            disk.append((category.rawValue, .unsigned(inspection.bytes(in: category))))
        }
        let numbers = inspection.segmentFiles.compactMap { LedgerFileNames.parseSegment($0.name) }
        var segments: [(String, JSONValue)] = [
            ("count", .int(numbers.count)), ("first", .optional(numbers.first)), ("last", .optional(numbers.last)),
        ]
        if let active = report.segments.last, active.number == numbers.last, let header = active.header {
            segments += [("activeUsedBytes", .unsigned(active.endOffset)), ("activeBytes", .unsigned(header.segmentBytes))]
        }
        let range = inspection.sequenceRange
        var members: [(String, JSONValue)] = [
            ("directory", .string(inspection.directory)),
            ("ledgerID", inspection.ledgerID.map { .string($0.description) } ?? .null),
            ("diskBytes", .object(disk)),
            ("segments", .object(segments)),
            ("snapshot", report.snapshot.map { snapshot in
                .object([("file", .string(VerifyCommand.name(snapshot.path))),
                         ("coveredSequence", .unsigned(snapshot.coveredSequence)),
                         ("items", .int(snapshot.itemCount)), ("bytes", .unsigned(snapshot.fileBytes))])
            } ?? .null),
            ("records", .object([
                ("count", .int(inspection.recordCount)), ("firstSequence", .optional(range?.first)),
                ("lastSequence", .optional(range?.last)), ("coveredBySnapshot", .int(inspection.coveredRecordCount)),
                ("byKind", .object(inspection.kindCountsInOrder.map { ($0.0.name, .int($0.1)) })),
            ])),
        ]
        if let counts = inspection.entryCounts {
            members.append(("entries", .object([
                ("total", .int(counts.done + counts.pendingUnknown + counts.absent)), ("done", .int(counts.done)),
                ("pending-unknown", .int(counts.pendingUnknown)), ("absent", .int(counts.absent)),
            ])))
            members.append(("oldestPendingUnknown", inspection.oldestPending.map(EntryDescription.json) ?? .null))
            members.append(("generationFloor", generationFloor.map { .unsigned(UInt64($0)) } ?? .null))
        } else {
            members.append(("entries", .null))
            members.append(("oldestPendingUnknown", .null))
        }
        members.append(("memo", memo.map { memo in
            .object([("runs", .int(memo.runs)), ("running", .int(memo.running)), ("ended", .int(memo.runs - memo.running)),
                     ("entries", .int(memo.entries)), ("valueBytes", .int(memo.valueBytes))])
        } ?? .null))
        var tail: [(String, JSONValue)] = [("state", .string(inspection.tailState))]
        if let torn = inspection.tornTail {
            tail += [("segment", .unsigned(torn.segment)), ("offset", .unsigned(torn.offset)),
                     ("bytes", .unsigned(torn.byteCount)), ("expectedSequence", .unsigned(torn.expectedSequence))]
        }
        if let unsynced = inspection.report.unsyncedTail { tail += [("unsyncedTail", unsynced.json)] }
        members.append(("tail", .object(tail)))
        members.append(("recoveryRow", .string(report.row.label)))
        return .object(members)
    }
}

/// The memo's size for `stat`: run generations it holds (running, or ended and not swept
/// yet), how many are still running, their memo entries and value bytes.
struct MemoCounts {
    var runs: Int
    var running: Int
    var entries: Int
    var valueBytes: Int

    init(_ runs: [RunInfo]) {
        self.runs = runs.count
        running = runs.filter { $0.status == nil }.count
        entries = runs.reduce(0) { $0 + $1.entryCount }
        valueBytes = runs.reduce(0) { $0 + $1.valueBytes }
    }
}
