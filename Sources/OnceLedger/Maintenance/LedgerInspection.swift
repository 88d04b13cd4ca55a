import Glibc
import OnceLedgerFormat
import OnceLedgerLog

/// A read-only look at a ledger directory: what `LedgerVerifier`, `Ledger.openReadOnly`
/// and the `onceledger` inspection commands (`verify`, `dump`, `stat`, `pending`,
/// `entries`) read.
///
/// One pass: the recovery scan (`RecoveryScanner.scan`, which changes nothing and takes
/// no lock) classifies the directory per `Spec/RECOVERY.md` and hands out the snapshot
/// and every valid record after it; those replay into a read-only `Ledger`, which gives
/// each key's state exactly as an open would. Records the snapshot already covers but
/// that are still in a segment are read as well (not replayed), so the record counts see
/// every record on disk. Records are streamed to `visit`, never held: a segment at a
/// time is in memory. Receipts stay on disk (`ReadOnlyBackend`): the state keeps where
/// each one is, and a version 3 snapshot is checked whole by a streaming pass
/// (`SnapshotCheck`) and then read by its hints, so memory follows the keys, not the
/// receipts.
public struct LedgerInspection: Sendable {
    /// Something read from the directory, in order: snapshot items first, then records.
    public enum Visit {
        case item(index: Int, item: SnapshotFile.Item, snapshotName: String)
        /// `coveredBySnapshot`: at or below the snapshot's sequence number (validated,
        /// not replayed: the snapshot holds its effect).
        case record(LocatedRecord, coveredBySnapshot: Bool)
    }

    public struct FileInfo: Sendable, Hashable {
        public enum Category: String, Sendable { case segment, snapshot, torn, temporary, lock, other }
        public var name: String
        public var bytes: UInt64
        public var category: Category
    }

    /// A segment the recovery scan did not reach (it stops at the first problem), read
    /// on its own from offset 64 to its clean end or first bad bytes, with the chain
    /// checked from its header on.
    public struct UnreachedSegment: Sendable, Hashable {
        public var number: UInt64
        public var name: String
        public var fileBytes: UInt64
        public var header: SegmentHeader?
        public var recordCount = 0
        public var firstSequence: UInt64?
        public var lastSequence: UInt64?
        /// How the look ended, e.g. "clean end at offset 488".
        public var status: String
    }

    public let directory: String
    public var report: RecoveryReport
    /// Every key's state, read-only; nil when the state is incomplete (the scan refused,
    /// or a record body did not decode).
    public var ledger: Ledger?
    /// `ledger`'s store, read synchronously (the counts below, the CLI's listings).
    package var store: LogStore?
    /// The generation a key without an entry starts at (`Spec/FORMAT.md` §9.5); nil when
    /// the state is incomplete.
    public var generationFloor: UInt32? { store?.generationFloor }
    /// A record body or snapshot item that does not decode (the open would refuse).
    public var stateProblem: LedgerError?
    /// Valid records in the segments (covered ones included), by kind.
    public var recordsByKind: [RecordKind: Int] = [:]
    public var recordCount = 0
    public var coveredRecordCount = 0
    public var files: [FileInfo] = []
    /// Segments the scan did not reach because it stopped at an earlier problem.
    public var unreachedSegments: [UnreachedSegment] = []

    init(directory: String, report: RecoveryReport) {
        self.directory = directory
        self.report = report
    }

    /// The recovery row refuses to open the ledger.
    public var refused: Bool {
        if case .refuse = report.row.action { return true }
        return false
    }

    /// The first problem that makes the ledger unusable: the refusal, else a bad body.
    public var problem: LedgerError? {
        if refused { return report.error ?? LedgerError(.corruptRecord, report.row.summary, path: directory) }
        return stateProblem
    }

    /// The torn tail an open would cut (row R15).
    public var tornTail: TornTail? { report.row.action == .quarantineTornTail ? report.tornTail : nil }

    /// Whether a writer's open would change the directory before accepting appends: cut a
    /// torn tail, delete leftover temporary files (or complete the rollover one belongs to),
    /// write back records a failed sync lost. `verify` calls such a ledger repairable (when
    /// nothing is damaged) and `verify --repair` does it.
    public var openWouldRepair: Bool {
        tornTail != nil || !report.temporaryFiles.isEmpty || report.unsyncedTail != nil
    }

    public var segmentFiles: [FileInfo] { files.filter { $0.category == .segment } }
    public var snapshotFiles: [FileInfo] { files.filter { $0.category == .snapshot } }

    // MARK: Reading

    /// Reads `directory` without changing it or taking its lock. `visit` sees every
    /// snapshot item (whole: a done entry's value is read from the snapshot for it, one
    /// at a time) and record in order (records the snapshot covers too, when
    /// `readingCoveredRecords`); without `visit` no snapshot value is read. `progress` is
    /// told the segment being read and the records so far. Throws `LedgerError` for operational problems only (`.notALedger`,
    /// `.io`); damage is in the result (`problem`, `report`).
    public static func read(
        directory: String, readingCoveredRecords: Bool = true,
        progress: ((_ segment: UInt64, _ records: Int) -> Void)? = nil, visit: ((Visit) -> Void)? = nil
    ) throws -> LedgerInspection {
        let storage = PosixStorage()
        let names = try storage.listDirectory(directory)
        guard names.contains(where: { LedgerFileNames.parseSegment($0) != nil || LedgerFileNames.parseSnapshot($0) != nil })
        else {
            throw LedgerError(.notALedger,
                              "\(directory) is not a ledger: it holds no segment (wal-<16 hex>.seg) and no snapshot (snap-<16 hex>.snap)",
                              path: directory)
        }
        let files = fileInfos(directory, names: names)
        let segmentNumbers = names.compactMap(LedgerFileNames.parseSegment).sorted()

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
        let (ledger, store) = try Ledger.readOnly(directory: directory) { locating, announceItems, applyItem, applyRecord in
            // Values stay on disk: a version 3 snapshot is read by its hints, once a streaming
            // pass has checked it whole (so damage is found exactly as a whole read finds it;
            // a snapshot that fails the pass is read whole, which reports that damage).
            let snapshotName = names.compactMap(LedgerFileNames.parseSnapshot).max().map(LedgerFileNames.snapshot)
            let hintsOnly = locating && snapshotName.map {
                SnapshotCheck.holdsValidValues(storage: storage, path: Paths.join(directory, $0))
            } ?? false
            var loaded = ReadOnlyBackend.Loaded()
            let report = try RecoveryScanner.scan(
                storage: storage, directory: directory, readSnapshotValues: !hintsOnly, unsyncedTail: .report,
                onSnapshot: { snapshot in
                    let name = LedgerFileNames.snapshot(snapshot.coveredSequence)
                    let path = Paths.join(directory, name)
                    let covered = snapshot.coveredSequence
                    announceItems(snapshot.itemCount)
                    // `dump` shows each done entry whole: its value is read here, one at a time.
                    var valueFile: (any StorageFile)?
                    defer { valueFile?.close() }
                    var index = 0
                    snapshot.forEachHint { kind, body, span in
                        defer { index += 1 }
                        if let visit {
                            do {
                                if let span {
                                    if valueFile == nil { valueFile = try storage.openFile(path, mode: .readOnly) }
                                    visit(.item(index: index, item: try SnapshotCheck.value(span, in: valueFile!, path: path),
                                                snapshotName: name))
                                } else {
                                    visit(.item(index: index, item: SnapshotFile.Item(kind: kind, body: Array(body)),
                                                snapshotName: name))
                                }
                            } catch {
                                if collected.stateProblem == nil {
                                    collected.stateProblem = locate(error, "snapshot item \(index) (\(kind))", path: path)
                                }
                            }
                        }
                        guard collected.stateProblem == nil else { return }
                        do {
                            var location: ValueLocation?
                            if let span {
                                guard let located = ValueLocation.snapshot(covered: covered, span) else {
                                    throw LedgerError(.limitExceeded, "the snapshot's covered sequence \(covered) is too large to locate its values",
                                                      path: path, sequence: covered, limit: "sequence")
                                }
                                location = located
                                loaded.locatedFiles.insert(located.file)
                            }
                            try applyItem(kind, body, location)
                        } catch {
                            collected.stateProblem = locate(error, "snapshot item \(index) (\(kind))", path: path)
                        }
                    }
                    guard readingCoveredRecords else { return }
                    // Records the snapshot covers that are still on disk: read, not replayed.
                    defer { collected.segmentBuffer = [] }
                    for number in segmentNumbers {
                        let path = Paths.join(directory, LedgerFileNames.segment(number))
                        guard try storage.readWholeFile(
                            path, maxBytes: FormatLimits.segmentBytesMax, into: &collected.segmentBuffer)
                        else { break }
                        let bytes = collected.segmentBuffer
                        var reachedBeyond = false
                        _ = unreached(bytes, number: number, name: LedgerFileNames.segment(number)) { record in
                            guard record.header.sequence <= snapshot.coveredSequence else {
                                reachedBeyond = true
                                return false
                            }
                            collected.byKind[record.header.kind, default: 0] += 1
                            collected.count += 1
                            collected.covered += 1
                            visit?(.record(record, coveredBySnapshot: true))
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
                    progress?(record.segment, collected.count)
                    visit?(.record(record, coveredBySnapshot: false))
                    guard collected.stateProblem == nil else { return }
                    let location = locating ? ValueLocation.segment(record.segment, offset: record.offset,
                                                                  bodyBytes: record.header.bodyBytes) : nil
                    if locating { loaded.locatedFiles.insert(record.segment) }
                    do {
                        try record.bodyBytes.withUnsafeBytes { try applyRecord(record.header.kind, $0, location) }
                    } catch {
                        collected.stateProblem = locate(
                            error, "record \(record.header.sequence) (\(record.header.kind))",
                            path: Paths.join(directory, LedgerFileNames.segment(record.segment)),
                            segment: record.segment, offset: record.offset, sequence: record.header.sequence)
                    }
                })
            collected.report = report
            loaded.tokenScope = report.tokenScope
            loaded.ledgerID = report.ledgerID
            return loaded
        }
        guard let report = collected.report else {
            throw LedgerError(.io, "\(directory): the scan did not run", path: directory)
        }
        if report.row.action == .createNew {
            // Listed a segment a moment ago, but the scan found none: it changed under us.
            throw LedgerError(.notALedger,
                              "\(directory) holds no ledger any more (its files changed during the scan); run the command again.",
                              path: directory)
        }
        var inspection = LedgerInspection(directory: directory, report: report)
        inspection.files = files
        inspection.stateProblem = collected.stateProblem
        inspection.recordsByKind = collected.byKind
        inspection.recordCount = collected.count
        inspection.coveredRecordCount = collected.covered
        if case .refuse = report.row.action {} else if collected.stateProblem == nil {
            inspection.ledger = ledger
            inspection.store = store
        }
        // A look at each segment the scan did not reach (it stops at the first problem).
        let reached = Set(report.segments.map(\.number))
        for number in segmentNumbers where !reached.contains(number) {
            let name = LedgerFileNames.segment(number)
            let path = Paths.join(directory, name)
            do {
                guard try storage.readWholeFile(path, maxBytes: FormatLimits.segmentBytesMax,
                                                into: &collected.segmentBuffer) else {
                    inspection.unreachedSegments.append(UnreachedSegment(
                        number: number, name: name, fileBytes: 0, status: "larger than any valid segment; not read"))
                    continue
                }
                inspection.unreachedSegments.append(unreached(collected.segmentBuffer, number: number, name: name) { _ in true })
            } catch {
                inspection.unreachedSegments.append(UnreachedSegment(
                    number: number, name: name, fileBytes: 0, status: "cannot be read: \(error)"))
            }
        }
        return inspection
    }

    /// Walks `bytes` (a whole segment file) with the one walker (`SegmentReader.walk`),
    /// checking its header and the chain from the header on. `visit` returns false to stop.
    static func unreached(
        _ bytes: [UInt8], number: UInt64, name: String, visit: (LocatedRecord) -> Bool
    ) -> UnreachedSegment {
        var look = UnreachedSegment(number: number, name: name, fileBytes: UInt64(bytes.count), status: "")
        let header: SegmentHeader
        switch SegmentHeader.decode(bytes) {
        case .incomplete:
            look.status = "header: the file is \(bytes.count) bytes, shorter than a header"
            return look
        case .corrupt(let reason):
            look.status = "header: invalid (\(reason))"
            return look
        case .unsupportedVersion(let version):
            look.status = "header: format version \(version), not readable by this build"
            return look
        case .header(let decoded):
            header = decoded
        }
        look.header = header
        if UInt64(bytes.count) != header.segmentBytes {
            look.status = "the file is \(bytes.count) bytes but its header says \(header.segmentBytes)"
            return look
        }
        if header.segmentNumber != number {
            look.status = "the header says segment \(header.segmentNumber), the name \(number)"
            return look
        }
        var expected = header.firstSequence
        var chain = header.previousChain
        var chainBreak: String?
        let end = SegmentReader.walk(bytes, ledgerID: header.ledgerID, segment: number) { record in
            if record.header.sequence != expected || record.header.previousChain != chain {
                chainBreak = "record at offset \(record.offset) has sequence \(record.header.sequence), expected \(expected) (chain break)"
                return false
            }
            guard visit(record) else { return false }
            look.recordCount += 1
            if look.firstSequence == nil { look.firstSequence = record.header.sequence }
            look.lastSequence = record.header.sequence
            chain = record.header.checksum
            expected = record.header.sequence &+ 1
            return true
        }
        switch end.stop {
        case .stoppedByVisitor: look.status = chainBreak ?? "stopped at offset \(end.offset)"
        case .cleanEnd: look.status = "clean end at offset \(end.offset)"
        case .zerosThenData, .runsPastEnd: look.status = "bad bytes at offset \(end.offset) (expected sequence \(expected))"
        case .corrupt(let reason):
            look.status = "bad record at offset \(end.offset) (expected sequence \(expected)): \(reason)"
        }
        return look
    }

    /// Every regular file of the directory with its size and its role in the ledger.
    public static func fileInfos(_ directory: String, names: [String]) -> [FileInfo] {
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
    public static func tokenScope(_ directory: String) -> TokenScope? {
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
    public var ledgerID: LedgerID? {
        report.ledgerID ?? unreachedSegments.lazy.compactMap(\.header).first?.ledgerID
    }

    /// Entries by state (only when the state is complete).
    public var entryCounts: EntryCounts? {
        guard let store else { return nil }
        var counts = EntryCounts()
        for entry in store.currentMetadata() {
            switch entry.status {
            case .done: counts.done += 1
            case .pendingUnknown: counts.pendingUnknown += 1
            case .absent: counts.absent += 1
            }
        }
        return counts
    }

    /// How many keys are in each state.
    public struct EntryCounts: Sendable, Hashable {
        public var done = 0
        public var pendingUnknown = 0
        public var absent = 0
        public var total: Int { done + pendingUnknown + absent }

        public init(done: Int = 0, pendingUnknown: Int = 0, absent: Int = 0) {
            self.done = done
            self.pendingUnknown = pendingUnknown
            self.absent = absent
        }
    }

    /// The pending-unknown entry with the oldest intent (ties: the smaller key).
    public var oldestPending: EntryInfo? {
        store?.currentMetadata(status: .pendingUnknown).min { ($0.timeMilliseconds, $0.key) < ($1.timeMilliseconds, $1.key) }
    }

    /// Sequence numbers of the first and last valid record in the segments.
    public var sequenceRange: (first: UInt64, last: UInt64)? {
        let firsts = report.segments.compactMap(\.firstSequence)
        let lasts = report.segments.compactMap(\.lastSequence)
        guard let first = firsts.min(), let last = lasts.max() else { return nil }
        return (first, last)
    }

    /// "clean", "torn" or "not checked" / "corrupt", for the summary.
    public var tailState: String {
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
    public var kindCountsInOrder: [(RecordKind, Int)] {
        let known = RecordKind.known.compactMap { kind in recordsByKind[kind].map { (kind, $0) } }
        let unknown = recordsByKind.filter { !$0.key.isKnown }.sorted { $0.key.rawValue < $1.key.rawValue }
            .map { ($0.key, $0.value) }
        return known + unknown
    }

    public func bytes(in category: FileInfo.Category) -> UInt64 {
        files.filter { $0.category == category }.reduce(0) { $0 + $1.bytes }
    }
}
