import OnceLedgerFormat

/// One valid record found by the recovery scan: the one record-with-location type
/// (`LocatedRecord`, `OnceLedgerFormat`), under the name the engine's callers know.
public typealias ScannedRecord = LocatedRecord

public struct SegmentSummary: Sendable, Hashable {
    public var number: UInt64
    public var path: String
    public var header: SegmentHeader?
    public var fileBytes: UInt64
    /// Offset just past the last valid record (where the next record goes).
    public var endOffset: UInt64
    public var recordCount: Int
    /// Sequence numbers of the first and last valid record in this segment, if any.
    public var firstSequence: UInt64?
    public var lastSequence: UInt64?
    /// The successor named by the seal record this segment ends with (format version 2).
    public var sealSuccessor: UInt64? = nil
}

public struct SnapshotSummary: Sendable, Hashable {
    public var path: String
    public var coveredSequence: UInt64
    public var chain: UInt32
    public var itemCount: Int
    public var fileBytes: UInt64
}

/// The damaged tail of the last segment that row R15 quarantines.
public struct TornTail: Sendable, Hashable {
    public var segment: UInt64
    public var path: String
    /// Offset of the first bad record; the segment is cut here.
    public var offset: UInt64
    /// One past the last nonzero byte (rounded up to the record alignment).
    public var endOffset: UInt64
    /// The sequence number the bad record would have had.
    public var expectedSequence: UInt64
    public var reason: String
    public var byteCount: UInt64 { endOffset - offset }
}

/// A rollover cut between its seal and its rename (row R17): the last segment ends with a
/// seal naming `successor`, which exists only as `temporaryName`. The writer's open
/// completes it (`Spec/RECOVERY.md` §5).
public struct PendingRollover: Sendable, Hashable {
    /// The sealed (last) segment.
    public var segment: UInt64
    public var successor: UInt64
    /// `wal-<successor>.seg.tmp`.
    public var temporaryName: String

    public init(segment: UInt64, successor: UInt64, temporaryName: String) {
        self.segment = segment
        self.successor = successor
        self.temporaryName = temporaryName
    }
}

/// What the recovery scan found and decided (`Spec/RECOVERY.md`).
public struct RecoveryReport: Sendable {
    public var directory: String
    public var ledgerID: LedgerID?
    /// How the ledger derives effect tokens: from its headers' flag bit 0 (the newest
    /// snapshot's, else the first segment's; every header must agree).
    public var tokenScope: TokenScope?
    public var snapshot: SnapshotSummary?
    public var segments: [SegmentSummary] = []
    /// Highest valid sequence number (0 if none), and its checksum (the chain value).
    public var lastSequence: UInt64 = 0
    public var lastChain: UInt32 = 0
    public var observation = RecoveryObservation()
    public var row: RecoveryRow
    public var tornTail: TornTail?
    /// Bytes of the last segment's unvouched records that the device did not hold: written
    /// back as it holds them by a writer's open, found by a scan in `.report` mode
    /// (`Spec/RECOVERY.md` §4.1).
    public var unsyncedTail: UnsyncedTail?
    /// For row R17: the rollover to complete.
    public var pendingRollover: PendingRollover?
    /// The typed error for `.refuse` rows.
    public var error: LedgerError?
    public var temporaryFiles: [String] = []
    public var tornFiles: [String] = []
    public var otherFiles: [String] = []
    public var recordCount = 0
    public var bytesScanned: UInt64 = 0
}

/// The recovery scan: reads a ledger directory without changing it, yields every
/// valid record in order, and classifies it per the decision table.
public enum RecoveryScanner {
    /// Scans `directory`. Throws only for operational errors (cannot list or read);
    /// corruption is reported in `RecoveryReport.error` with the row that refused.
    ///
    /// `onSnapshot` is called with the newest valid snapshot; `onRecord` with every
    /// valid record above the snapshot's covered sequence number, in order. Both are
    /// called before the final classification is known: discard what they built if
    /// the report's row refuses.
    ///
    /// With `readSnapshotValues` false, a version 3 snapshot is read without its values
    /// (`SnapshotFile.decodeHints`): `onSnapshot` gets its hints, and the values are read
    /// on demand (`RecordReader`). Older snapshots are read whole either way.
    ///
    /// With `unsyncedTail` `.repair` (a writer's open, holding the directory's lock), the
    /// last segment's records that no sync vouched for are first compared with the device's
    /// copy, and bytes the device does not hold are written back as it holds them
    /// (`UnsyncedTail`, `Spec/RECOVERY.md` §4.1): the only write a scan makes. `.report`
    /// compares and reports without writing (the records are then scanned as the page
    /// cache shows them).
    public static func scan(
        storage: any Storage, directory: String, readSnapshotValues: Bool = true,
        unsyncedTail: UnsyncedTail.Mode = .ignore,
        onSnapshot: (SnapshotFile) throws -> Void = { _ in },
        onRecord: (ScannedRecord) throws -> Void = { _ in }
    ) throws -> RecoveryReport {
        try scan(storage: storage, directory: directory, readSnapshotValues: readSnapshotValues, unsyncedTail: unsyncedTail,
                 onSnapshot: onSnapshot, visit: { record, bytes in try onRecord(record.located(in: bytes)) })
    }

    /// `scan`, handing each record over in place (`RecordInPlace`: its body points into the
    /// segment's bytes, valid during the call), which costs no reference count per record:
    /// the open's path (`LogWriter.recover(onRecordInPlace:)`).
    public static func scan(
        storage: any Storage, directory: String, readSnapshotValues: Bool = true,
        unsyncedTail: UnsyncedTail.Mode = .ignore,
        onSnapshot: (SnapshotFile) throws -> Void = { _ in },
        onRecordInPlace: (RecordInPlace) throws -> Void
    ) throws -> RecoveryReport {
        try scan(storage: storage, directory: directory, readSnapshotValues: readSnapshotValues, unsyncedTail: unsyncedTail,
                 onSnapshot: onSnapshot, visit: { record, _ in try onRecordInPlace(record) })
    }

    /// A record in place and the segment bytes it points into (to slice, for a `ScannedRecord`).
    typealias RecordVisitor = (RecordInPlace, [UInt8]) throws -> Void

    static func scan(
        storage: any Storage, directory: String, readSnapshotValues: Bool, unsyncedTail: UnsyncedTail.Mode,
        onSnapshot: (SnapshotFile) throws -> Void, visit: RecordVisitor
    ) throws -> RecoveryReport {
        var scan = Scan(storage: storage, directory: directory)
        scan.readSnapshotValues = readSnapshotValues
        scan.unsyncedTailMode = unsyncedTail
        try scan.run(onSnapshot: onSnapshot, onRecord: visit)
        var report = scan.report
        report.row = RecoveryTable.decide(report.observation)
        if case .refuse(let code) = report.row.action, report.error == nil {
            report.error = LedgerError(code, report.row.summary, path: directory)
        }
        if case .refuse = report.row.action {} else { report.error = nil }
        if report.row.action != .quarantineTornTail { report.tornTail = nil }
        if report.row.action != .completeRollover { report.pendingRollover = nil }
        return report
    }

    fileprivate struct Scan {
        let storage: any Storage
        let directory: String
        var report: RecoveryReport
        /// Every segment is read into this one buffer (fresh memory is slow to fault
        /// in on some virtual machines; see `PosixStorage.readWholeFile(_:maxBytes:into:)`).
        /// Records handed to `onRecord` slice it: a caller that keeps one only costs
        /// the next segment a copy (copy-on-write), never the kept bytes.
        var segmentBuffer: [UInt8] = []
        var readSnapshotValues = true
        var unsyncedTailMode = UnsyncedTail.Mode.ignore

        init(storage: any Storage, directory: String) {
            self.storage = storage
            self.directory = directory
            self.report = RecoveryReport(directory: directory, row: RecoveryTable.rows[0])
        }

        mutating func fail(_ error: LedgerError) {
            if report.error == nil { report.error = error }
        }

        mutating func run(onSnapshot: (SnapshotFile) throws -> Void, onRecord: RecordVisitor) throws {
            let names = try storage.listDirectory(directory)
            var segmentNames: [(UInt64, String)] = []
            var snapshotNames: [(UInt64, String)] = []
            for name in names {
                switch LedgerFileNames.kind(of: name) {
                case .temporary: report.temporaryFiles.append(name)
                case .segment(let number): segmentNames.append((number, name))
                case .snapshot(let covered): snapshotNames.append((covered, name))
                case .torn: report.tornFiles.append(name)
                case .lock: break
                case .other: report.otherFiles.append(name)
                }
            }
            segmentNames.sort { $0.0 < $1.0 }
            snapshotNames.sort { $0.0 < $1.0 }
            report.temporaryFiles.sort()
            report.tornFiles.sort()
            report.otherFiles.sort()

            // Every file is read whole below, the newest snapshot first, then the segments
            // one after another: the kernel reads them ahead, in that order, while the
            // earlier files are checked. (Asking for the segments first would queue the
            // snapshot's reads behind them.)
            if let (_, name) = snapshotNames.last { storage.prefetch(Paths.join(directory, name)) }
            for (_, name) in segmentNames { storage.prefetch(Paths.join(directory, name)) }

            // Stage 1: the newest snapshot.
            var snapshot: SnapshotFile?
            if let (namedCovered, name) = snapshotNames.last {
                let path = Paths.join(directory, name)
                let snapshotBytesMax = UInt64(FormatLimits.snapshotHeaderBytes + FormatLimits.snapshotTrailerBytes)
                    + FormatLimits.snapshotBodyBytesMax
                let hintsOnly = readSnapshotValues ? nil : try SnapshotHints.read(storage: storage, path: path)
                var fileBytes = hintsOnly?.fileBytes ?? 0
                let decoded: SnapshotFile.DecodeResult
                if let hintsOnly {
                    decoded = hintsOnly.result
                    report.bytesScanned += hintsOnly.bytesRead
                } else {
                    guard let bytes = try storage.readWholeFile(path, maxBytes: snapshotBytesMax) else {
                        report.observation.snapshot = .invalid
                        fail(LedgerError(.invalidSnapshot, "snapshot file is larger than any valid snapshot", path: path))
                        return
                    }
                    report.bytesScanned += UInt64(bytes.count)
                    fileBytes = UInt64(bytes.count)
                    decoded = SnapshotFile.decode(bytes)
                }
                switch decoded {
                case .corrupt(let reason):
                    report.observation.snapshot = .invalid
                    fail(LedgerError(.invalidSnapshot, "snapshot is invalid (\(reason)); run `onceledger salvage`",
                                     path: path))
                    return
                case .unsupportedVersion(let version):
                    report.observation.snapshot = .unsupportedVersion
                    fail(LedgerError(.unsupportedVersion,
                                     "snapshot has format version \(version); this build reads versions \(FormatLimits.snapshotFormatVersionsReadable.lowerBound) to \(FormatLimits.snapshotFormatVersionsReadable.upperBound)",
                                     path: path))
                    return
                case .snapshot(let file) where file.coveredSequence != namedCovered:
                    report.observation.snapshot = .invalid
                    fail(LedgerError(.invalidSnapshot,
                                     "snapshot file name says sequence \(namedCovered) but its header covers \(file.coveredSequence); run `onceledger salvage`",
                                     path: path, sequence: namedCovered))
                    return
                case .snapshot(let file):
                    snapshot = file
                    report.observation.snapshot = .valid
                    report.ledgerID = file.ledgerID
                    report.tokenScope = TokenScope(ledgerID: file.ledgerID, ledgerScopedTokens: file.ledgerScopedTokens)
                    report.snapshot = SnapshotSummary(
                        path: path, coveredSequence: file.coveredSequence, chain: file.chain,
                        itemCount: file.itemCount, fileBytes: fileBytes)
                    report.lastSequence = file.coveredSequence
                    report.lastChain = file.chain
                }
            }

            // Stage 2: the set of segments.
            guard !segmentNames.isEmpty else {
                report.observation.segments = .empty
                if snapshot != nil {
                    fail(LedgerError(.missingSegment, "a snapshot exists but no segment does", path: directory))
                }
                return
            }
            for (index, entry) in segmentNames.enumerated().dropFirst() where entry.0 != segmentNames[index - 1].0 + 1 {
                report.observation.segments = .gap
                fail(LedgerError(.missingSegment,
                                 "segment \(segmentNames[index - 1].0 + 1) is missing (found \(segmentNames[index - 1].0) then \(entry.0))",
                                 path: directory, segment: segmentNames[index - 1].0 + 1))
                return
            }
            report.observation.segments = .contiguous

            // Stages 3-5: headers, links and records, segment by segment.
            if let snapshot { try onSnapshot(snapshot) }
            let covered = snapshot?.coveredSequence ?? 0
            for (index, (number, name)) in segmentNames.enumerated() {
                let isLast = index == segmentNames.count - 1
                let path = Paths.join(directory, name)
                let stop = try scanSegment(
                    number: number, path: path, isFirst: index == 0, isLast: isLast, snapshot: snapshot,
                    covered: covered, onRecord: onRecord)
                if stop { return }
            }

            // The last segment ends cleanly. If it ends with a seal, its successor existed
            // or was about to (FORMAT §7.4): the seal is durable only after the successor's
            // `.tmp` file is, and the rename follows the seal.
            if let last = report.segments.last, let successor = last.sealSuccessor {
                let temporaryName = LedgerFileNames.segment(successor) + LedgerFileNames.temporarySuffix
                if report.temporaryFiles.contains(temporaryName) {
                    report.observation.successor = .interrupted
                    report.pendingRollover = PendingRollover(
                        segment: last.number, successor: successor, temporaryName: temporaryName)
                } else {
                    report.observation.successor = .missing
                    fail(LedgerError(.missingSegment,
                                     "segment \(successor) is missing: segment \(last.number) ends with a seal naming it, so it was created (and may have held acknowledged records) and has since been deleted or lost; run `onceledger salvage`",
                                     path: Paths.join(directory, LedgerFileNames.segment(successor)), segment: successor))
                }
            }
        }

        /// Scans one segment; returns true when the scan must stop (a problem was found).
        mutating func scanSegment(
            number: UInt64, path: String, isFirst: Bool, isLast: Bool, snapshot: SnapshotFile?, covered: UInt64,
            onRecord: RecordVisitor
        ) throws -> Bool {
            guard try storage.readWholeFile(path, maxBytes: FormatLimits.segmentBytesMax, into: &segmentBuffer) else {
                // Rejected from its size alone (FORMAT §6.6); like every R7, offset = the file size.
                let file = try storage.openFile(path, mode: .readOnly)
                defer { file.close() }
                let size = try file.size()
                report.segments.append(SegmentSummary(
                    number: number, path: path, header: nil, fileBytes: size,
                    endOffset: UInt64(FormatLimits.segmentHeaderBytes), recordCount: 0))
                report.observation.header = .truncated
                fail(LedgerError(.corruptSegmentHeader,
                                 "segment file is \(size) bytes, larger than the largest valid segment (\(FormatLimits.segmentBytesMax) bytes); run `onceledger salvage`",
                                 path: path, segment: number, offset: size))
                return true
            }
            var bytes = segmentBuffer
            report.bytesScanned += UInt64(bytes.count)
            var summary = SegmentSummary(
                number: number, path: path, header: nil, fileBytes: UInt64(bytes.count),
                endOffset: UInt64(FormatLimits.segmentHeaderBytes), recordCount: 0)
            defer { report.segments.append(summary) }

            let header: SegmentHeader
            switch SegmentHeader.decode(bytes) {
            case .incomplete:
                report.observation.header = .corrupt
                fail(LedgerError(.corruptSegmentHeader,
                                 "segment file is \(bytes.count) bytes, shorter than its header; run `onceledger salvage`",
                                 path: path, segment: number, offset: 0))
                return true
            case .corrupt(let reason):
                report.observation.header = .corrupt
                fail(LedgerError(.corruptSegmentHeader, "segment header is invalid (\(reason)); run `onceledger salvage`",
                                 path: path, segment: number, offset: 0))
                return true
            case .unsupportedVersion(let version):
                report.observation.header = .unsupportedVersion
                fail(LedgerError(.unsupportedVersion,
                                 "segment has format version \(version); this build reads versions \(FormatLimits.formatVersionsReadable.lowerBound) to \(FormatLimits.formatVersionsReadable.upperBound)",
                                 path: path, segment: number))
                return true
            case .header(let decoded):
                header = decoded
            }
            summary.header = header
            if isFirst, let snapshot, snapshot.ledgerID != header.ledgerID {
                // Row R3: the snapshot (which set `report.ledgerID`) disagrees with the segments.
                report.observation.snapshot = .foreign
                fail(LedgerError(.foreignLedger,
                                 "snapshot belongs to ledger \(snapshot.ledgerID) but the segments to \(header.ledgerID); remove the snapshot or open its own ledger",
                                 path: report.snapshot?.path ?? directory, segment: number))
                return true
            }
            if let ledgerID = report.ledgerID, ledgerID != header.ledgerID {
                report.observation.header = .foreign
                fail(LedgerError(.foreignLedger,
                                 "segment belongs to ledger \(header.ledgerID), not \(ledgerID); remove it or open its own ledger",
                                 path: path, segment: number))
                return true
            }
            report.ledgerID = header.ledgerID
            let scope = TokenScope(ledgerID: header.ledgerID, ledgerScopedTokens: header.ledgerScopedTokens)
            if let tokenScope = report.tokenScope, tokenScope != scope {
                // Every header of a ledger carries the flag it was created with (FORMAT §3.1).
                report.observation.header = .corrupt
                fail(LedgerError(.corruptSegmentHeader,
                                 "segment header says the ledger's tokens are \(scope.isLedgerScoped ? "" : "not ")ledger-scoped, unlike the ledger's other headers; run `onceledger salvage`",
                                 path: path, segment: number, offset: 0))
                return true
            }
            report.tokenScope = scope
            if UInt64(bytes.count) != header.segmentBytes {
                report.observation.header = .truncated
                fail(LedgerError(.corruptSegmentHeader,
                                 "segment file is \(bytes.count) bytes but its header says \(header.segmentBytes); run `onceledger salvage`",
                                 path: path, segment: number, offset: UInt64(bytes.count)))
                return true
            }
            if header.segmentNumber != number {
                report.observation.link = .broken
                fail(LedgerError(.chainBreak,
                                 "file name says segment \(number) but its header says \(header.segmentNumber)",
                                 path: path, segment: number, offset: 0))
                return true
            }

            // Link of this header to what came before.
            if isFirst {
                if let snapshot {
                    // Compared as `first - 1` (first >= 1): a checksummed but crafted
                    // snapshot may cover UInt64.max, and untrusted input must not trap.
                    if header.firstSequence - 1 > snapshot.coveredSequence {
                        report.observation.segments = .gap
                        fail(LedgerError(.missingSegment,
                                         "the snapshot covers through \(snapshot.coveredSequence) but the first segment starts at \(header.firstSequence)",
                                         path: path, segment: number, sequence: snapshot.coveredSequence + 1))
                        return true
                    }
                    if header.firstSequence - 1 == snapshot.coveredSequence && header.previousChain != snapshot.chain {
                        report.observation.link = .broken
                        fail(LedgerError(.chainBreak, "first segment does not continue the snapshot's chain",
                                         path: path, segment: number, offset: 0, sequence: header.firstSequence,
                                         expectedChecksum: snapshot.chain, actualChecksum: header.previousChain))
                        return true
                    }
                } else if header.firstSequence != 1 || header.previousChain != 0 {
                    report.observation.segments = .gap
                    fail(LedgerError(.missingSegment,
                                     "no snapshot, but the first segment starts at sequence \(header.firstSequence)",
                                     path: path, segment: number, sequence: 1))
                    return true
                }
                report.lastSequence = header.firstSequence - 1
                report.lastChain = header.previousChain
            } else if let previous = report.segments.last, let previousHeader = previous.header,
                      previousHeader.formatVersion >= 2, previous.sealSuccessor != number {
                // A version-2 segment is sealed before its successor is renamed into place
                // (FORMAT §7.4): this segment's existence proves the seal was durable.
                report.observation.link = .broken
                fail(LedgerError(.chainBreak,
                                 "segment \(previous.number) is followed by segment \(number) but does not end with a seal naming it; run `onceledger salvage`",
                                 path: previous.path, segment: previous.number, offset: previous.endOffset,
                                 sequence: report.lastSequence + 1))
                return true
            } else if header.firstSequence - 1 != report.lastSequence || header.previousChain != report.lastChain {
                report.observation.link = .broken
                fail(LedgerError(.chainBreak,
                                 "segment starts at sequence \(header.firstSequence) chain \(hex32(header.previousChain)); expected \(report.lastSequence + 1) chain \(hex32(report.lastChain))",
                                 path: path, segment: number, offset: 0, sequence: report.lastSequence + 1,
                                 expectedChecksum: report.lastChain, actualChecksum: header.previousChain))
                return true
            }

            // A writer's open: the last segment's unvouched records as the device holds them.
            if isLast && unsyncedTailMode != .ignore {
                report.unsyncedTail = try UnsyncedTail.reconcile(
                    storage: storage, path: path, bytes: &bytes, ledgerID: header.ledgerID, segment: number,
                    write: unsyncedTailMode == .repair)
            }

            // Records, walked by the one segment walker; the chain rules are checked here.
            let end = bytes.count
            // The successor named by a seal record read in this segment (always its last record).
            var sealed: UInt64?
            // Set when a record broke a rule below (the problem is already reported).
            var refused = false
            let walked = try bytes.withUnsafeBytes { raw in
                try SegmentReader.walk(raw, ledgerID: header.ledgerID, segment: number) { record in
                    let recordHeader = record.header
                    let offset = record.offset
                    let expected = report.lastSequence + 1
                    // No writer reaches sequence UInt64.max (LogWriter refuses it), and
                    // accepting it would overflow `expected` on the next record.
                    if recordHeader.sequence == UInt64.max {
                        report.observation.link = .broken
                        fail(LedgerError(.chainBreak, "record has sequence number \(UInt64.max), beyond the last usable one",
                                         path: path, segment: number, offset: offset, sequence: expected))
                        refused = true
                        return false
                    }
                    if recordHeader.sequence != expected || recordHeader.previousChain != report.lastChain {
                        report.observation.link = .broken
                        fail(LedgerError(.chainBreak,
                                         "record has sequence \(recordHeader.sequence) chain \(hex32(recordHeader.previousChain)); expected \(expected) chain \(hex32(report.lastChain))",
                                         path: path, segment: number, offset: offset, sequence: expected,
                                         expectedChecksum: report.lastChain, actualChecksum: recordHeader.previousChain))
                        refused = true
                        return false
                    }
                    if sealed != nil {
                        // A writer never writes after a seal (FORMAT §7.4).
                        report.observation.link = .broken
                        fail(LedgerError(.chainBreak, "a record follows the seal of segment \(number), which must be its last record; run `onceledger salvage`",
                                         path: path, segment: number, offset: offset, sequence: expected))
                        refused = true
                        return false
                    }
                    if recordHeader.kind == .seal {
                        guard case .fields(.seal(let seal)) = RecordBody.decodeFields(kind: .seal, record.body),
                              number < UInt64.max, seal.successor == number + 1
                        else {
                            report.observation.link = .broken
                            fail(LedgerError(.chainBreak,
                                             "the seal record of segment \(number) does not name segment \(number &+ 1) as its successor; run `onceledger salvage`",
                                             path: path, segment: number, offset: offset, sequence: expected))
                            refused = true
                            return false
                        }
                        sealed = seal.successor
                    }
                    if let snapshot, recordHeader.sequence == snapshot.coveredSequence,
                       recordHeader.checksum != snapshot.chain {
                        report.observation.link = .broken
                        fail(LedgerError(.chainBreak, "the record at the snapshot's sequence number has another checksum",
                                         path: path, segment: number, offset: offset,
                                         sequence: recordHeader.sequence, expectedChecksum: snapshot.chain,
                                         actualChecksum: recordHeader.checksum))
                        refused = true
                        return false
                    }
                    if recordHeader.sequence > covered { try onRecord(record, bytes) }
                    report.recordCount += 1
                    summary.recordCount += 1
                    if summary.firstSequence == nil { summary.firstSequence = recordHeader.sequence }
                    summary.lastSequence = recordHeader.sequence
                    report.lastSequence = recordHeader.sequence
                    report.lastChain = recordHeader.checksum
                    summary.endOffset = record.endOffset
                    return true
                }
            }
            if refused { return true }

            let offset = Int(walked.offset)
            let expected = report.lastSequence + 1
            var badReason: String
            var expectedCRC: UInt32?
            var actualCRC: UInt32?
            switch walked.stop {
            case .cleanEnd:
                // Everything from here to the segment end is zero.
                if isLast && expected <= covered {
                    badReason = "the log ends at sequence \(expected - 1) but the snapshot covers \(covered)"
                } else {
                    summary.sealSuccessor = sealed
                    return false
                }
            case .zerosThenData, .runsPastEnd, .stoppedByVisitor:
                badReason = walked.stop.description
            case .corrupt(let reason):
                badReason = reason.description
                if case .checksumMismatch(let stored, let computed) = reason {
                    expectedCRC = computed
                    actualCRC = stored
                }
            }
            if sealed != nil {
                // Nothing is ever written after a seal, so these bytes are no torn write.
                report.observation.link = .broken
                fail(LedgerError(.chainBreak,
                                 "bytes follow the seal of segment \(number), which must be its last record; run `onceledger salvage`",
                                 path: path, segment: number, offset: UInt64(offset), sequence: expected))
                return true
            }
            // A bad record at `offset`.
            report.observation.tail = .bad
            report.observation.badInSealedSegment = !isLast
            report.observation.badCoveredBySnapshot = expected <= covered
            let maxAcked = bytes.withUnsafeBytes { raw in
                Scan.laterValidMaxAcked(raw, after: offset, end: end, ledgerID: header.ledgerID, segment: number,
                                        expected: expected)
            }
            if let maxAcked {
                report.observation.laterValid = maxAcked >= expected ? .covering : .notCovering
            }
            let why: String
            if !isLast {
                why = "its segment is sealed (a later segment exists)"
            } else if expected <= covered {
                why = "the snapshot covers sequence \(covered)"
            } else if let maxAcked, maxAcked >= expected {
                why = "a later valid record says sequence \(maxAcked) was durable"
            } else {
                why = ""
            }
            fail(LedgerError(.corruptRecord,
                             "record \(expected) is damaged (\(badReason)) and was durable: \(why); run `onceledger salvage`",
                             path: path, segment: number, offset: UInt64(offset), sequence: expected,
                             expectedChecksum: expectedCRC, actualChecksum: actualCRC))
            if isLast {
                let lastNonZero = bytes.withUnsafeBytes { ZeroScan.lastNonZero($0, from: offset, end: end) }
                let last = lastNonZero ?? offset
                let tornEnd = min(end, Alignment.roundUp(max(last + 1, offset + 1), to: FormatLimits.recordAlignment))
                report.tornTail = TornTail(
                    segment: number, path: path, offset: UInt64(offset), endOffset: UInt64(tornEnd),
                    expectedSequence: expected, reason: badReason)
            }
            return true
        }

        /// The highest acked-through of any valid record after `offset` in this segment.
        static func laterValidMaxAcked(
            _ raw: UnsafeRawBufferPointer, after offset: Int, end: Int, ledgerID: LedgerID, segment: UInt64,
            expected: UInt64
        ) -> UInt64? {
            var maxAcked: UInt64?
            // A record at `index` can only have a sequence number from `expected` up to
            // `expected` + the number of 32-byte headers that fit before it; accepting
            // only those keeps a long garbage tail from costing a checksum per 8-byte offset.
            var from = offset + FormatLimits.recordAlignment
            while let (index, header) = SegmentReader.resynchronize(
                raw, from: from, end: end, ledgerID: ledgerID, segment: segment,
                accept: { claimed, index in
                    let span = UInt64((index - offset) / FormatLimits.recordHeaderBytes + 1)
                    return claimed.sequence >= expected && claimed.sequence - expected <= span
                })
            {
                maxAcked = max(maxAcked ?? 0, header.ackedThrough)
                from = index + header.frameBytes
            }
            return maxAcked
        }
    }
}

/// Reads a version 3 snapshot's header, hint section and trailer only; any other
/// version is read whole (`SnapshotFile.decode`), as before.
enum SnapshotHints {
    struct Read {
        var result: SnapshotFile.DecodeResult
        var fileBytes: UInt64
        var bytesRead: UInt64
    }

    static func read(storage: any Storage, path: String) throws -> Read? {
        let file = try storage.openFile(path, mode: .readOnly)
        defer { file.close() }
        let size = try file.size()
        let headerBytes = FormatLimits.snapshotHeaderBytes, trailerBytes = FormatLimits.snapshotTrailerBytes
        guard size >= UInt64(headerBytes + trailerBytes) else { return nil }
        let header = try file.read(at: 0, count: headerBytes)
        guard header.count == headerBytes, ByteReader.getInteger(header, at: 8, as: UInt16.self) >= 3 else { return nil }
        let valuesBytes = ByteReader.getInteger(header, at: 48, as: UInt64.self)
        let fixed = UInt64(headerBytes + trailerBytes)
        // The hint section must fit in memory the way a whole snapshot body would.
        guard valuesBytes <= size - fixed, size - fixed - valuesBytes <= FormatLimits.snapshotBodyBytesMax else {
            return Read(result: .corrupt("values length \(valuesBytes) does not match file size \(size)"),
                        fileBytes: size, bytesRead: UInt64(headerBytes))
        }
        let hintsStart = UInt64(headerBytes) + valuesBytes
        let hints = try file.read(at: hintsStart, count: Int(size - fixed - valuesBytes))
        let trailer = try file.read(at: size - UInt64(trailerBytes), count: trailerBytes)
        return Read(result: SnapshotFile.decodeHints(header: header, hints: hints, trailer: trailer, fileBytes: size),
                    fileBytes: size, bytesRead: UInt64(headerBytes + hints.count + trailer.count))
    }
}
