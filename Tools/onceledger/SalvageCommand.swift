import ArgumentParser
import Foundation
import OnceLedger
import OnceLedgerFormat
import OnceLedgerLog

/// `onceledger salvage DIR --to NEWDIR`: copies every record that can be recovered from
/// a damaged ledger into a new ledger and reports what was lost (DESIGN §3–4: salvage
/// is the explicit offline tool for a ledger that refuses to open). Never changes DIR.
///
/// DIR is read with the format decoders directly (`SalvageScan`), past any damage. The
/// new ledger is written through the library (`FileBackend`: the snapshot's items as a
/// snapshot, then the records in sequence order as appends), so it is a valid ledger
/// whose entries — done, pending-unknown, absent — are what the recovered records say.
/// Records get new sequence numbers there. Checkpoints and snapshot markers describe
/// the old files and are not copied.
///
/// Exit status: 0 nothing lost; 4 something was lost (proven-durable records missing, a
/// record that could not be copied, or inconsistent records: the report says which);
/// 8 operational error (DIR unreadable or in use, NEWDIR not empty, a write failed);
/// 16 usage.
struct SalvageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "salvage",
        abstract: "Copy every recoverable record of a damaged ledger into a new ledger; report what was lost.",
        discussion: """
            Reads DIR without changing it, going past damaged records, and writes what it \
            recovered into NEWDIR (which must not exist or be empty) as a new, valid ledger. \
            The new ledger numbers its records afresh. A gap that nothing proves durable (a \
            torn, never-acknowledged tail) is reported but does not count as lost.
            Exit codes (as fsck(8)): 0 nothing lost, 4 records lost (see the report), \
            8 operational error, 16 usage error.
            """)

    @Argument(help: "The damaged ledger directory (read only).")
    var dir: String

    @Option(name: .customLong("to"), help: ArgumentHelp("A new or empty directory for the salvaged ledger.", valueName: "newdir"))
    var to: String

    @Flag(help: "If the newest snapshot is damaged, copy the items that still parse, unverified (reported; exit 4).")
    var trustDamagedSnapshot = false

    @Flag(help: "Print the report as one JSON object.")
    var json = false

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    func run() async throws {
        let source = URL(fileURLWithPath: dir).standardizedFileURL.path
        let target = URL(fileURLWithPath: to).standardizedFileURL.path
        guard source != target else { throw ValidationError("--to must name another directory than DIR") }
        if target.hasPrefix(source + "/") { throw ValidationError("--to must not be inside DIR (salvage never changes DIR)") }
        do {
            try checkDirectories(source: source, target: target)
            let trust = trustDamagedSnapshot
            let scan = try await BlockingThread.run(name: "salvage-read") {
                try SalvageScan.scan(directory: source, trustDamagedSnapshot: trust)
            }
            if scan.segments.isEmpty && scan.snapshot == nil && scan.ignoredSnapshots.isEmpty {
                throw Failure(description: "\(source) holds no ledger files (no segment, no snapshot)")
            }
            let plan = SalvagePlan(scan)
            let written = try await plan.write(to: target)
            let report = SalvageReport(source: source, target: target, scan: scan, plan: plan, written: written)
            print(json ? report.json() : report.text())
            if report.somethingLost { throw ExitCode(ExitCodes.problemsLeft) }
        } catch let failure as Failure {
            printFailure(failure.description)
            throw ExitCode(ExitCodes.operational)
        } catch let error as LedgerError {
            printFailure("\(error)")
            throw ExitCode(ExitCodes.operational)
        }
    }

    private func printFailure(_ text: String) {
        FileHandle.standardError.write(Data("onceledger salvage: error: \(text)\n".utf8))
    }

    /// DIR must be a directory no writer holds; NEWDIR must be missing or empty.
    private func checkDirectories(source: String, target: String) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: source, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw Failure(description: "\(source) is not a directory")
        }
        if FileManager.default.fileExists(atPath: target, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw Failure(description: "\(target) exists and is not a directory") }
            let contents = try FileManager.default.contentsOfDirectory(atPath: target)
            guard contents.isEmpty else {
                throw Failure(description: "\(target) is not empty; salvage writes only into a new or empty directory")
            }
        }
        // A live writer would change the files while they are read. Probe its lock with a
        // shared, non-blocking flock on a read-only descriptor (released at once).
        let lockPath = source + "/" + LedgerFileNames.lock
        let fd = open(lockPath, O_RDONLY | O_CLOEXEC)
        if fd >= 0 {
            defer { close(fd) }
            if flock(fd, LOCK_SH | LOCK_NB) != 0 {
                let holder = (try? String(contentsOfFile: lockPath, encoding: .utf8))?
                    .trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
                throw Failure(description: "\(source) is in use by \(holder.isEmpty ? "another process" : "process \(holder)"); close it there first")
            }
            flock(fd, LOCK_UN)
        }
    }
}

/// What salvage copies, decided from the scan: snapshot items and records that this
/// build can apply, minus the housekeeping records that describe the old files.
struct SalvagePlan: Sendable {
    var items: [SnapshotFile.Item] = []
    var records: [LogRecord] = []
    /// Checkpoint and snapshot-marker records left out (they describe the old files).
    var housekeepingSkipped = 0
    /// Items and records that could not be copied, and why (they count as lost).
    var notCopied: [String] = []
    var segmentBytes: UInt64
    var recordBodyBytesMax: UInt32

    init(_ scan: SalvageScan) {
        segmentBytes = scan.segmentBytes ?? LogConfiguration().segmentBytes
        recordBodyBytesMax = LogConfiguration(segmentBytes: segmentBytes).recordBodyBytesMax
        let applicableItems: Set<RecordKind> = [.entryState, .memoPut, .journalEntry, .runTerminal]
        if let snapshot = scan.snapshot {
            for (index, item) in snapshot.snapshot.items.enumerated() {
                switch RecordBody.decode(kind: item.kind, item.body) {
                case .body where applicableItems.contains(item.kind):
                    items.append(item)
                case .body:
                    notCopied.append("snapshot item \(index): kind \(item.kind) does not belong in a snapshot")
                case .corrupt(let reason):
                    notCopied.append("snapshot item \(index): \(reason)")
                case .unknownKind(let kind):
                    notCopied.append("snapshot item \(index): kind \(kind.rawValue) is not known to this build")
                }
            }
        }
        for record in scan.records {
            let place = "record \(record.header.sequence) (segment \(record.segment) offset \(record.offset))"
            switch RecordBody.decode(kind: record.header.kind, record.body) {
            case .body(.checkpoint), .body(.snapshotMarker), .body(.seal):
                housekeepingSkipped += 1
            case .body(.entryState):
                notCopied.append("\(place): kind \(record.header.kind) is a snapshot item, not a log record")
            case .body:
                records.append(LogRecord(kind: record.header.kind, body: record.body))
                recordBodyBytesMax = max(recordBodyBytesMax, UInt32(record.body.count))
            case .corrupt(let reason):
                notCopied.append("\(place): \(reason)")
            case .unknownKind(let kind):
                notCopied.append("\(place): kind \(kind.rawValue) is not known to this build")
            }
        }
    }

    var configuration: LogConfiguration {
        var configuration = LogConfiguration(segmentBytes: segmentBytes)
        configuration.recordBodyBytesMax = recordBodyBytesMax
        return configuration
    }

    struct Written: Sendable {
        var entries: [EntryInfo]
    }

    /// Writes the new ledger, then reopens it and checks it reads back as the same
    /// state an in-memory ledger fed the same items and records has.
    func write(to target: String) async throws -> Written {
        let configuration = self.configuration
        try configuration.validate()
        let backend = FileBackend(directory: target, configuration: configuration, createIfMissing: true)
        try await BlockingThread.run(name: "salvage-open") { try backend.load(item: { _, _ in }, record: { _, _ in }) }
        do {
            guard let engine = backend.engine else {
                throw SalvageCommand.Failure(description: "the new ledger did not open")
            }
            let items = self.items
            if !items.isEmpty { _ = try await engine.compact { _ in items } }
            let groupRecordsMax = min(256, configuration.appendRecordsMax)
            var index = 0
            while index < records.count {
                let group = Array(records[index..<min(index + groupRecordsMax, records.count)])
                _ = try await engine.append(group)
                index += group.count
            }
        } catch {
            try? backend.close()
            throw error
        }
        try await BlockingThread.run(name: "salvage-close") { try backend.close() }

        // Read back through the public API and compare with the same state built in memory.
        let entries = try await BlockingThread.run(name: "salvage-check") { () -> [EntryInfo] in
            let reopened = try Ledger.open(directory: target, configuration: configuration, createIfMissing: false)
            defer { try? reopened.close() }
            return reopened.entries()
        }
        let memory = InMemoryBackend(configuration: configuration, tokenScope: entries.first?.tokenScope ?? .unscoped)
        try memory.load(item: { _, _ in }, record: { _, _ in })
        if !items.isEmpty { try await memory.compact { _ in items } }
        var index = 0
        while index < records.count {
            let group = Array(records[index..<min(index + configuration.appendRecordsMax, records.count)])
            _ = try await memory.append(group, onDurable: { _ in })
            index += group.count
        }
        try memory.close()
        let expected = try Ledger(backend: memory).entries()
        guard expected == entries else {
            throw SalvageCommand.Failure(
                description: "the new ledger in \(target) does not read back as written (\(entries.count) entries, expected \(expected.count)); do not use it")
        }
        return Written(entries: entries)
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
            || unverifiedSnapshot
    }

    private func plural(_ count: Int, _ noun: String) -> String { "\(count) \(noun)\(count == 1 ? "" : "s")" }

    func count(_ status: EntryInfo.Status) -> Int { written.entries.filter { $0.status == status }.count }

    func text() -> String {
        var lines: [String] = []
        lines.append("salvage \(source) -> \(target)")
        var sourceLine = "source: ledger \(scan.ledgerID?.description ?? "(id unknown: no valid header, snapshot or record)")"
        sourceLine += ", \(scan.segments.count) segment file\(scan.segments.count == 1 ? "" : "s")"
        if let snapshot = scan.snapshot, snapshot.verified {
            sourceLine += ", snapshot \(snapshot.file) (covers 1-\(snapshot.snapshot.coveredSequence), \(plural(snapshot.snapshot.items.count, "item")))"
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
        }
        for segment in scan.segments {
            var line = "  \(segment.file): "
            if let first = segment.firstSequence, let last = segment.lastSequence {
                line += "\(plural(segment.recordCount, "valid record")) in sequence \(first)-\(last)"
            } else {
                line += "no valid records"
            }
            if let problem = segment.headerProblem { line += "; \(problem)" }
            lines.append(line)
        }
        for ignored in scan.ignoredSnapshots { lines.append("  \(ignored.file): not used: \(ignored.reason)") }
        if !scan.otherFiles.isEmpty { lines.append("  other files (ignored): \(scan.otherFiles.joined(separator: ", "))") }
        if scan.coveredRecordCount > 0 {
            lines.append("  \(plural(scan.coveredRecordCount, "valid record")) at or below the snapshot's sequence number: already reflected in the snapshot")
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
        var copied = "  \(plural(plan.items.count, "snapshot item")) and \(plural(plan.records.count, "record")) copied"
        if plan.housekeepingSkipped > 0 {
            copied += "; \(plural(plan.housekeepingSkipped, "checkpoint/snapshot-marker record")) left out (they only describe the old files)"
        }
        lines.append(copied)
        lines.append("  the new ledger has its own id and numbers its records afresh (sequence numbers differ from the source's)")
        lines.append("  entries: \(count(.done)) done, \(count(.pendingUnknown)) pending-unknown, \(count(.absent)) absent")
        if somethingLost {
            var what: [String] = []
            if lostRecordCount > 0 { what.append("\(lostRecordCount) durable record\(lostRecordCount == 1 ? "" : "s") lost") }
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
            lostRecords: lostRecordCount, somethingLost: somethingLost,
            exitCode: somethingLost ? ExitCodes.problemsLeft : ExitCodes.success)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? encoder.encode(report)) ?? Data("{}".utf8), as: UTF8.self)
    }
}
