import Glibc
import OnceLedger
import OnceLedgerFormat
import OnceLedgerLog

/// A read-only look at a ledger directory, shared by `verify`, `dump`, `stat`,
/// `pending` and `entries`.
///
/// One pass: the recovery scan (`RecoveryScanner.scan`, which changes nothing and
/// takes no lock) classifies the directory per `Spec/RECOVERY.md` and hands out the
/// snapshot and every valid record after it; those replay into a `Ledger` over a
/// `ReadOnlyBackend`, which gives each key's state exactly as an open would. Records
/// the snapshot already covers but that are still in a segment are read as well (they
/// are not replayed), so `dump` and the record counts see every record on disk.
struct LedgerInspection {
    /// Something read from the directory, in order: snapshot items first, then records.
    enum Visit {
        case item(index: Int, item: SnapshotFile.Item, snapshotName: String)
        /// `coveredBySnapshot`: at or below the snapshot's sequence number (validated,
        /// not replayed: the snapshot holds its effect).
        case record(RecordOnDisk, coveredBySnapshot: Bool)
    }

    /// A valid record and where it sits.
    struct RecordOnDisk {
        var header: RecordHeader
        var body: [UInt8]
        var segment: UInt64
        var offset: UInt64
    }

    struct FileInfo {
        enum Category: String { case segment, snapshot, torn, temporary, lock, other }
        var name: String
        var bytes: UInt64
        var category: Category
    }

    let directory: String
    var report: RecoveryReport
    /// Every key's state; nil when the state is incomplete (the scan refused, or a
    /// record body did not decode).
    var ledger: Ledger?
    /// A record body or snapshot item that does not decode (the open would refuse).
    var stateProblem: LedgerError?
    /// Valid records in the segments (covered ones included), by kind.
    var recordsByKind: [RecordKind: Int] = [:]
    var recordCount = 0
    var coveredRecordCount = 0
    var files: [FileInfo] = []
    /// Segments the scan did not reach because it stopped at an earlier problem.
    var unreachedSegments: [SegmentLook] = []

    /// The recovery row refuses to open the ledger.
    var refused: Bool {
        if case .refuse = report.row.action { return true }
        return false
    }

    /// The first problem that makes the ledger unusable: the refusal, else a bad body.
    var problem: LedgerError? {
        if refused { return report.error ?? LedgerError(.corruptRecord, report.row.summary, path: directory) }
        return stateProblem
    }

    /// The torn tail an open would cut (row R15).
    var tornTail: TornTail? { report.row.action == .quarantineTornTail ? report.tornTail : nil }

    var segmentFiles: [FileInfo] { files.filter { $0.category == .segment } }
    var snapshotFiles: [FileInfo] { files.filter { $0.category == .snapshot } }

    // MARK: Opening

    /// Checks that `directory` is a ledger directory; throws exit-8 failures saying why not.
    static func requireLedger(_ directory: String) throws -> [String] {
        var info = stat()
        guard stat(directory, &info) == 0 else {
            let reason = errno == ENOENT ? "no such directory" : String(cString: strerror(errno))
            throw CommandFailure(ExitCodes.operational,
                                 "\(directory): \(reason). Pass the ledger's directory (the one holding wal-*.seg files).",
                                 code: LedgerError.Code.notALedger.rawValue)
        }
        guard info.st_mode & S_IFMT == S_IFDIR else {
            throw CommandFailure(ExitCodes.operational,
                                 "\(directory) is not a directory. A ledger is a directory of wal-*.seg segment files; pass that directory.",
                                 code: LedgerError.Code.notALedger.rawValue)
        }
        let names: [String]
        do {
            names = try PosixStorage().listDirectory(directory)
        } catch let error as LedgerError {
            throw CommandFailure(error, hint: "Check the directory's permissions.")
        }
        guard names.contains(where: { LedgerFileNames.parseSegment($0) != nil || LedgerFileNames.parseSnapshot($0) != nil })
        else {
            throw CommandFailure(ExitCodes.operational,
                                 "\(directory) is not a ledger: it holds no segment (wal-<16 hex>.seg) and no snapshot (snap-<16 hex>.snap). Check the path; a ledger is created by the application's first Ledger.open.",
                                 code: LedgerError.Code.notALedger.rawValue)
        }
        return names
    }

    /// Scans `directory` read-only. `visit` sees every snapshot item and record in order.
    /// Throws `CommandFailure` for operational errors (not a ledger, cannot read).
    static func inspect(
        _ directory: String, progressLabel: String? = nil, visit: (Visit) -> Void = { _ in }
    ) throws -> LedgerInspection {
        let names = try requireLedger(directory)
        let storage = PosixStorage()
        let files = fileInfos(directory, names: names)
        let segmentNumbers = names.compactMap(LedgerFileNames.parseSegment).sorted()
        let progress = progressLabel.map {
            ScanProgress(label: $0, firstSegment: segmentNumbers.first ?? 1, segmentCount: segmentNumbers.count)
        }
        defer { progress?.finish() }

        // Filled in by the scan callbacks below (they run synchronously inside `Ledger.init`).
        final class Collector {
            var report: RecoveryReport?
            var stateProblem: LedgerError?
            var byKind: [RecordKind: Int] = [:]
            var count = 0
            var covered = 0
            /// One buffer for every segment read outside the scan (which has its own).
            var segmentBuffer: [UInt8] = []
        }
        let collected = Collector()
        func locate(_ error: Error, _ what: String, path: String, segment: UInt64? = nil, offset: UInt64? = nil,
                    sequence: UInt64? = nil) -> LedgerError {
            let typed = (error as? LedgerError) ?? LedgerError(.malformedBody, "\(error)")
            let action = typed.code == .unsupportedVersion
                ? "this build of onceledger cannot read it; use the version that wrote it"
                : "the ledger refuses to open; run `onceledger salvage`"
            return LedgerError(typed.code, "\(what): \(typed.message); \(action)", path: path, segment: segment,
                               offset: offset, sequence: sequence)
        }

        // `Ledger.init` calls the loader synchronously, so `visit` never outlives this call.
        let ledger: Ledger = try withoutActuallyEscaping(visit) { visit in
            let backend = ReadOnlyBackend(directory: directory) { announceItems, applyItem, applyRecord in
                let report = try RecoveryScanner.scan(
                    storage: storage, directory: directory,
                    onSnapshot: { snapshot in
                        let name = LedgerFileNames.snapshot(snapshot.coveredSequence)
                        announceItems(snapshot.itemCount)
                        for (index, item) in snapshot.items.enumerated() {
                            visit(.item(index: index, item: item, snapshotName: name))
                            guard collected.stateProblem == nil else { continue }
                            do {
                                try item.body.withUnsafeBytes { try applyItem(item.kind, $0) }
                            } catch {
                                collected.stateProblem = locate(
                                    error, "snapshot item \(index) (\(item.kind))", path: Paths.join(directory, name))
                            }
                        }
                        // Records the snapshot covers that are still on disk: read, not replayed.
                        for number in segmentNumbers {
                            let path = Paths.join(directory, LedgerFileNames.segment(number))
                            guard try storage.readWholeFile(
                                path, maxBytes: FormatLimits.segmentBytesMax, into: &collected.segmentBuffer)
                            else { break }
                            let bytes = collected.segmentBuffer
                            var reachedBeyond = false
                            _ = SegmentLook.walk(bytes, number: number, name: LedgerFileNames.segment(number)) {
                                header, offset, body in
                                guard header.sequence <= snapshot.coveredSequence else {
                                    reachedBeyond = true
                                    return false
                                }
                                collected.byKind[header.kind, default: 0] += 1
                                collected.count += 1
                                collected.covered += 1
                                visit(.record(RecordOnDisk(header: header, body: body, segment: number, offset: offset),
                                              coveredBySnapshot: true))
                                return true
                            }
                            if reachedBeyond { break }
                            if case .header(let header) = SegmentHeader.decode(Array(bytes.prefix(64))),
                               header.firstSequence > snapshot.coveredSequence { break }
                        }
                    },
                    onRecord: { record in
                        collected.byKind[record.header.kind, default: 0] += 1
                        collected.count += 1
                        progress?.update(segment: record.segment, records: collected.count)
                        visit(.record(RecordOnDisk(header: record.header, body: record.body, segment: record.segment,
                                                   offset: record.offset), coveredBySnapshot: false))
                        guard collected.stateProblem == nil else { return }
                        do {
                            try record.body.withUnsafeBytes { try applyRecord(record.header.kind, $0) }
                        } catch {
                            collected.stateProblem = locate(
                                error, "record \(record.header.sequence) (\(record.header.kind))",
                                path: Paths.join(directory, LedgerFileNames.segment(record.segment)), segment: record.segment,
                                offset: record.offset, sequence: record.header.sequence)
                        }
                    })
                collected.report = report
                return report.tokenScope
            }
            do {
                return try Ledger(backend: backend)
            } catch let error as LedgerError {
                throw CommandFailure(error, hint: "Nothing was changed. Check that the files are readable.")
            }
        }
        guard let report = collected.report else {
            throw CommandFailure(ExitCodes.operational, "\(directory): the scan did not run")
        }
        if report.row.action == .createNew {
            // Listed a segment a moment ago, but the scan found none: it changed under us.
            throw CommandFailure(ExitCodes.operational,
                                 "\(directory) holds no ledger any more (its files changed during the scan); run the command again.")
        }
        var inspection = LedgerInspection(directory: directory, report: report)
        inspection.files = files
        inspection.stateProblem = collected.stateProblem
        inspection.recordsByKind = collected.byKind
        inspection.recordCount = collected.count
        inspection.coveredRecordCount = collected.covered
        if case .refuse = report.row.action {} else if collected.stateProblem == nil {
            inspection.ledger = ledger
        }
        // A look at each segment the scan did not reach (it stops at the first problem).
        let reached = Set(report.segments.map(\.number))
        for number in segmentNumbers where !reached.contains(number) {
            let name = LedgerFileNames.segment(number)
            let path = Paths.join(directory, name)
            do {
                guard try storage.readWholeFile(path, maxBytes: FormatLimits.segmentBytesMax,
                                                into: &collected.segmentBuffer) else {
                    inspection.unreachedSegments.append(SegmentLook(
                        number: number, name: name, fileBytes: 0, status: "larger than any valid segment; not read"))
                    continue
                }
                inspection.unreachedSegments.append(
                    SegmentLook.walk(collected.segmentBuffer, number: number, name: name) { _, _, _ in true })
            } catch {
                inspection.unreachedSegments.append(SegmentLook(
                    number: number, name: name, fileBytes: 0, status: "cannot be read: \(error)"))
            }
        }
        return inspection
    }

    /// Every regular file of the directory with its size and its role in the ledger.
    static func fileInfos(_ directory: String, names: [String]) -> [FileInfo] {
        var files: [FileInfo] = []
        for name in names.sorted() {
            var info = stat()
            guard lstat(Paths.join(directory, name), &info) == 0, info.st_mode & S_IFMT == S_IFREG else { continue }
            let category: FileInfo.Category = switch LedgerFileNames.kind(of: name) {
            case .temporary: .temporary
            case .segment: .segment
            case .snapshot: .snapshot
            case .torn: .torn
            case .lock: .lock
            case .other: .other
            }
            files.append(FileInfo(name: name, bytes: UInt64(info.st_size), category: category))
        }
        return files
    }

    /// How the ledger in `directory` derives effect tokens, from its lowest segment's
    /// header (every header carries the same flag; the open refuses otherwise), or nil
    /// when that header cannot be read.
    static func tokenScope(_ directory: String) -> TokenScope? {
        let storage = PosixStorage()
        guard let names = try? storage.listDirectory(directory),
              let first = names.compactMap(LedgerFileNames.parseSegment).min(),
              let file = try? storage.openFile(Paths.join(directory, LedgerFileNames.segment(first)), mode: .readOnly)
        else { return nil }
        defer { file.close() }
        guard let bytes = try? file.read(at: 0, count: FormatLimits.segmentHeaderBytes),
              case .header(let header) = SegmentHeader.decode(bytes)
        else { return nil }
        return TokenScope(ledgerID: header.ledgerID, ledgerScopedTokens: header.ledgerScopedTokens)
    }

    // MARK: Derived facts

    /// The ledger id: from the scan, else from a segment header the scan did not reach.
    var ledgerID: LedgerID? {
        report.ledgerID ?? unreachedSegments.lazy.compactMap(\.header).first?.ledgerID
    }

    /// Entries by state (only when the state is complete).
    var entryCounts: (done: Int, pending: Int, absent: Int)? {
        guard let ledger else { return nil }
        var counts = (done: 0, pending: 0, absent: 0)
        // A read-only ledger keeps its receipts in memory (`ReadOnlyBackend` gives no
        // locations), so listing reads nothing from disk and cannot fail.
        for entry in (try? ledger.entries()) ?? [] {
            switch entry.status {
            case .done: counts.done += 1
            case .pendingUnknown: counts.pending += 1
            case .absent: counts.absent += 1
            }
        }
        return counts
    }

    /// The pending-unknown entry with the oldest intent (ties: the smaller key).
    var oldestPending: EntryInfo? {
        // Pending entries have no receipt to read: this cannot fail.
        (try? ledger?.pendingEntries())??.min { ($0.timeMilliseconds, $0.key) < ($1.timeMilliseconds, $1.key) }
    }

    /// Sequence numbers of the first and last valid record in the segments.
    var sequenceRange: (first: UInt64, last: UInt64)? {
        let firsts = report.segments.compactMap(\.firstSequence)
        let lasts = report.segments.compactMap(\.lastSequence)
        guard let first = firsts.min(), let last = lasts.max() else { return nil }
        return (first, last)
    }

    /// "clean", "torn" or "not checked" / "corrupt", for the summary.
    var tailState: String {
        switch report.row.action {
        case .open: return "clean"
        case .quarantineTornTail: return "torn"
        case .completeRollover: return "clean (rollover interrupted)"
        case .createNew: return "empty"
        case .refuse:
            return report.observation.tail == .bad ? "corrupt" : "not reached"
        }
    }

    /// Record kinds in the order of `RecordKind.known`, then unknown ones by number.
    var kindCountsInOrder: [(RecordKind, Int)] {
        let known = RecordKind.known.compactMap { kind in recordsByKind[kind].map { (kind, $0) } }
        let unknown = recordsByKind.filter { !$0.key.isKnown }.sorted { $0.key.rawValue < $1.key.rawValue }
            .map { ($0.key, $0.value) }
        return known + unknown
    }

    func bytes(in category: FileInfo.Category) -> UInt64 {
        files.filter { $0.category == category }.reduce(0) { $0 + $1.bytes }
    }
}
