import Foundation
import OnceLedgerFormat

/// What salvage (`Salvage.scan`, `onceledger salvage`) can read from a damaged ledger
/// directory, found with the format decoders directly (the recovery scanner stops at the first problem; salvage
/// goes past it). Reads only: never changes the directory.
///
/// - Every file is read through `SalvageFile`: never whole, never blocking, by its data
///   extents. A file that cannot be opened or read (permissions, an I/O error, not a
///   regular file) is reported and skipped; the other files are still read.
/// - A segment's header is checked but a damaged or missing header does not stop the
///   records behind it from being read: records are self-describing (a record's checksum
///   binds it to its ledger id, segment number and offset), so the ledger id comes from
///   the other files and the segment number from the file name. When the header is valid
///   and names another number than the file name, the header's number is used (a renamed
///   or swapped file), and the mismatch is reported.
/// - In each segment, records are decoded from offset 64 on. After a bad record the scan
///   resynchronizes: it tries every 8-byte-aligned offset for the next valid record (a
///   record's checksum binds it to its position, so a valid one found there is genuine).
/// - The newest valid snapshot supplies the state through its covered sequence number.
/// - The records are then put in sequence order; every missing sequence number is a gap,
///   reported with where it would have been and whether something proves it was durable
///   (a later record's acked-through, a later segment, or a snapshot covering it).
/// - A segment whose end cannot be read (unreadable, shorter than a header, cut short
///   while its records run to the cut, a read error) may have held records that no gap
///   can count when nothing after it bounds the sequence numbers: that is a loss of
///   unknown size, reported as such.
/// - So is a segment that the last segment's seal names (format version 2) when neither
///   its file nor its `.tmp` exists (RECOVERY R16: the newest segment was deleted or lost);
///   with only the `.tmp`, a rollover was interrupted (R17) and nothing is lost.
public struct SalvageScan: Sendable {
    /// A valid record and where it sits (the one record-with-location type).
    public typealias Record = LocatedRecord

    /// Bytes of a segment that are not valid records (and not the zero-filled free space).
    public struct Damage: Codable, Sendable {
        public var segment: UInt64
        public var file: String
        public var startOffset: UInt64
        public var endOffset: UInt64
        public var reason: String
        /// What the damaged bytes seem to hold, read without a valid checksum (a hint for
        /// the operator, never copied): e.g. `completion of "order-42"`.
        public var unverifiedContents: String?
    }

    /// Missing sequence numbers.
    public struct Gap: Codable, Sendable {
        public var firstSequence: UInt64
        public var lastSequence: UInt64
        /// Where the records would have been, as far as it is known.
        public var location: String
        /// Whether something proves these records were durable (acknowledged data lost);
        /// false for an unsynced tail a crash may legally leave torn.
        public var provenDurable: Bool
        public var proof: String
    }

    public struct SegmentFile: Codable, Sendable {
        /// The segment number its records were read as: the header's when the header is
        /// valid, else the file name's.
        public var number: UInt64
        public var file: String
        public var fileBytes: UInt64
        /// nil when the header is valid and agrees with the file.
        public var headerProblem: String?
        public var foreign: Bool
        /// Why the file, or the rest of it from some offset, could not be read (nil when it was).
        public var unreadable: String?
        /// Why records may be missing at the end of this file (it cannot be read, is shorter
        /// than a header, was cut short while its records run to the cut, …); nil when its
        /// records end in zero-filled free space or the file is as long as its header says.
        public var openEnd: String?
        /// True when `openEnd` is set and nothing after this segment (a later segment with a
        /// valid header or a valid record) bounds the sequence numbers it may have held:
        /// those records are lost and how many is unknown.
        public var lossOfUnknownSize: Bool
        public var recordCount: Int
        public var firstSequence: UInt64?
        public var lastSequence: UInt64?
    }

    public struct SnapshotUsed: Sendable {
        public var file: String
        public var snapshot: SnapshotFile
        /// False for a damaged snapshot whose items were read without the file checksum
        /// (`--trust-damaged-snapshot`).
        public var verified = true
    }

    /// The newest snapshot file when it is damaged (and newer than any valid one): the
    /// items that still parse, read without the file checksum (`DamagedSnapshot.parse`, in
    /// OnceLedgerFormat, where the fuzz target reaches it).
    public typealias DamagedSnapshot = OnceLedgerFormat.DamagedSnapshot

    /// The successor a sealed last segment names (format version 2, `Spec/RECOVERY.md`
    /// R16/R17), when no segment file of that number or above is there.
    public struct SealedSuccessor: Sendable {
        /// The last segment, whose last record is the seal.
        public var sealedSegment: UInt64
        /// The segment the seal names.
        public var number: UInt64
        /// `wal-<number>.seg`.
        public var file: String
        /// Whether `wal-<number>.seg.tmp` exists: an interrupted rollover (R17), where
        /// nothing was written to the successor; otherwise it was lost (R16).
        public var temporaryExists: Bool
    }

    public var directory: String
    public var ledgerID: LedgerID?
    /// Header flag bit 0 (`Spec/FORMAT.md` §9.3) of the ledger's valid headers and
    /// snapshots (the value most of them carry); nil when none is valid.
    public var ledgerScopedTokens: Bool?
    /// The successor the last segment's seal names, when its file is not there.
    public var sealedSuccessor: SealedSuccessor?
    public var segments: [SegmentFile] = []
    public var snapshot: SnapshotUsed?
    public var damagedSnapshot: DamagedSnapshot?
    /// Segment numbers missing between the first and the last segment.
    public var missingSegments: [UInt64] = []
    /// Snapshot files that were not used, and why.
    public var ignoredSnapshots: [(file: String, reason: String)] = []
    /// Files in the directory that are not segments, snapshots, temporaries, torn side files or the lock.
    public var otherFiles: [String] = []
    /// Valid records above the snapshot, in sequence order, one per sequence number.
    public var records: [Record] = []
    /// Valid records the snapshot already covers (not copied; their state is in the snapshot).
    public var coveredRecordCount = 0
    public var damage: [Damage] = []
    public var gaps: [Gap] = []
    /// Problems that are neither damage nor gaps: sequence conflicts, chain breaks.
    public var inconsistencies: [String] = []
    /// The largest segment size seen in a valid header (the new ledger uses it).
    public var segmentBytes: UInt64?

    /// Segments that could not be read at all.
    public var unreadableSegments: [SegmentFile] { segments.filter { $0.unreadable != nil } }
    /// Segments whose records after some point are lost in a number nothing tells.
    public var unknownLosses: [SegmentFile] { segments.filter(\.lossOfUnknownSize) }
    /// The sealed last segment's successor when it was lost (R16: neither it nor its
    /// temporary file exists): it may have held acknowledged records, how many is unknown.
    public var lostSuccessor: SealedSuccessor? { sealedSuccessor.flatMap { $0.temporaryExists ? nil : $0 } }

    /// Scans `directory`. Throws only for operational errors (cannot list the directory).
    /// With `trustDamagedSnapshot`, the items of a damaged newest snapshot that still
    /// parse are used as its state (reported as unverified).
    /// `progress` is told the segment being read (1-based), how many there are, and the
    /// records read so far (in steps of 1024).
    public static func scan(
        directory: String, trustDamagedSnapshot: Bool = false,
        progress: ((_ segmentIndex: Int, _ segmentCount: Int, _ records: Int) -> Void)? = nil
    ) throws -> SalvageScan {
        var scan = SalvageScan(directory: directory)
        try scan.run(trustDamagedSnapshot: trustDamagedSnapshot, progress: progress)
        return scan
    }

    /// A segment file as first seen: its name, and its header if it could be read.
    private struct Found {
        var name: String
        var nameNumber: UInt64
        var fileBytes: UInt64 = 0
        var unreadable: String?
        var headerBytes: [UInt8] = []
        var header: SegmentHeader?
        var headerProblem: String?
    }

    private mutating func run(
        trustDamagedSnapshot: Bool, progress: ((_ segmentIndex: Int, _ segmentCount: Int, _ records: Int) -> Void)?
    ) throws {
        var found: [Found] = []
        var snapshotNames: [(UInt64, String)] = []
        for name in try PosixStorage().listDirectory(directory) {
            switch LedgerFileNames.kind(of: name) {
            case .temporary, .torn, .lock: continue
            case .segment(let number): found.append(Found(name: name, nameNumber: number))
            case .snapshot(let covered): snapshotNames.append((covered, name))
            case .other: otherFiles.append(name)
            }
        }
        snapshotNames.sort { $0.0 > $1.0 }  // newest first
        otherFiles.sort()

        // Segment headers first (64 bytes each; files are not kept open): the ledger id
        // decides which files are ours.
        for index in found.indices {
            do {
                let file = try SalvageFile(path: Paths.join(directory, found[index].name))
                found[index].fileBytes = file.size
                found[index].headerBytes = try file.read(at: 0, count: FormatLimits.segmentHeaderBytes)
            } catch {
                found[index].unreadable = error.description
                continue
            }
            switch SegmentHeader.decode(found[index].headerBytes) {
            case .header(let header): found[index].header = header
            case .incomplete:
                found[index].headerProblem = "file is \(found[index].fileBytes) bytes, shorter than a segment header"
            case .corrupt(let reason): found[index].headerProblem = "header is invalid (\(reason))"
            case .unsupportedVersion(let version):
                found[index].headerProblem = "header has unsupported format version \(version)"
            }
        }
        var snapshots: [(covered: UInt64, name: String, file: SnapshotFile)] = []
        var snapshotClaims: [UInt64] = []
        let snapshotBytesMax = UInt64(FormatLimits.snapshotHeaderBytes + FormatLimits.snapshotTrailerBytes)
            + FormatLimits.snapshotBodyBytesMax
        var rawIDCandidates: [[UInt8]] = []
        for (covered, name) in snapshotNames {
            snapshotClaims.append(covered)
            let bytes: [UInt8]
            do {
                let file = try SalvageFile(path: Paths.join(directory, name))
                guard file.size <= snapshotBytesMax, file.size <= UInt64(Int.max) else {
                    ignoredSnapshots.append((name, "file is larger than any valid snapshot"))
                    continue
                }
                bytes = try file.read(at: 0, count: Int(file.size))
            } catch {
                ignoredSnapshots.append((name, "cannot be read (\(error.description))"))
                continue
            }
            switch SnapshotFile.decode(bytes) {
            case .snapshot(let file) where file.coveredSequence != covered:
                // The header is checksummed, the name is not (a file renamed or copied by hand):
                // used as covering what its header says; reported.
                inconsistencies.append(
                    "\(name): its header covers sequence \(file.coveredSequence), not the \(covered) its name says; used as covering \(file.coveredSequence)")
                snapshots.append((file.coveredSequence, name, file))
            case .snapshot(let file):
                snapshots.append((covered, name, file))
            case .corrupt(let reason):
                ignoredSnapshots.append((name, "invalid (\(reason))"))
                if bytes.count >= 32 { rawIDCandidates.append(Array(bytes[16..<32])) }
                // The damaged snapshot that covers the most (names can disagree with headers);
                // used only if it is this ledger's and covers more than every valid one (below).
                if let parsed = DamagedSnapshot.parse(bytes, file: name),
                   damagedSnapshot.map({ parsed.coveredSequence > $0.coveredSequence }) ?? true {
                    damagedSnapshot = parsed
                }
            case .unsupportedVersion(let version):
                ignoredSnapshots.append((name, "unsupported format version \(version)"))
            }
        }

        snapshots.sort { ($0.covered, $0.name) > ($1.covered, $1.name) }  // newest first, by what each covers

        // The ledger id: the one most valid headers and snapshots carry; failing that,
        // the id bytes of a damaged header that make some record's checksum valid.
        var votes: [LedgerID: Int] = [:]
        for header in found.compactMap(\.header) { votes[header.ledgerID, default: 0] += 1 }
        for snapshot in snapshots { votes[snapshot.file.ledgerID, default: 0] += 1 }
        ledgerID = votes.max { $0.value < $1.value || ($0.value == $1.value && $0.key.description > $1.key.description) }?.key
        if ledgerID == nil {
            for segment in found where segment.headerBytes.count >= 32 {
                rawIDCandidates.append(Array(segment.headerBytes[16..<32]))
            }
            search: for candidate in rawIDCandidates {
                guard let id = LedgerID(bytes: candidate) else { continue }
                for segment in found where segment.unreadable == nil {
                    guard let file = try? SalvageFile(path: Paths.join(directory, segment.name)) else { continue }
                    var window = SalvageWindow(file)
                    let number = segment.nameNumber
                    if let (next, _) = try? SalvageScan.resynchronize(
                        &window, from: UInt64(FormatLimits.segmentHeaderBytes), ledgerID: id, segment: number),
                       next != nil {
                        ledgerID = id
                        break search
                    }
                }
            }
        }

        // The token scheme: the flag most of this ledger's valid headers and snapshots carry.
        var flagVotes: [Bool: Int] = [:]
        for header in found.compactMap(\.header) where header.ledgerID == ledgerID {
            flagVotes[header.ledgerScopedTokens, default: 0] += 1
        }
        for snapshot in snapshots where snapshot.file.ledgerID == ledgerID {
            flagVotes[snapshot.file.ledgerScopedTokens, default: 0] += 1
        }
        ledgerScopedTokens = flagVotes.max { $0.value < $1.value || ($0.value == $1.value && !$0.key) }?.key

        // A damaged snapshot of another ledger (a file copied in) is not this ledger's state,
        // and one older than a valid snapshot of this ledger is not needed: reading it instead
        // would lose what the newer one holds and the segments no longer do.
        if let damaged = damagedSnapshot {
            let newestValid = snapshots.filter { $0.file.ledgerID == ledgerID }.map(\.covered).max()
            if let ledgerID, damaged.ledgerID != ledgerID {
                ignoredSnapshots.append((damaged.file, "damaged, and belongs to another ledger (\(damaged.ledgerID))"))
                damagedSnapshot = nil
            } else if let newestValid, newestValid >= damaged.coveredSequence {
                damagedSnapshot = nil
            }
        }

        // The snapshot: the newest valid one of this ledger.
        if let damaged = damagedSnapshot, let ledgerID, trustDamagedSnapshot {
            self.snapshot = SnapshotUsed(
                file: damaged.file,
                snapshot: SnapshotFile(ledgerID: ledgerID, coveredSequence: damaged.coveredSequence, chain: damaged.chain,
                                       items: damaged.items),
                verified: false)
        }
        for snapshot in snapshots {
            if let ledgerID, snapshot.file.ledgerID != ledgerID {
                ignoredSnapshots.append((snapshot.name, "belongs to another ledger (\(snapshot.file.ledgerID))"))
            } else if self.snapshot == nil {
                self.snapshot = SnapshotUsed(file: snapshot.name, snapshot: snapshot.file)
            } else {
                ignoredSnapshots.append((snapshot.name, "older than \(self.snapshot!.file)"))
            }
        }
        let covered = snapshot?.snapshot.coveredSequence ?? 0

        // The number each segment's records are read as: its header's, when the header is
        // valid and ours (a renamed or swapped file keeps its records), else its name's.
        func number(_ segment: Found) -> UInt64 {
            if let header = segment.header, header.ledgerID == ledgerID { return header.segmentNumber }
            return segment.nameNumber
        }
        found.sort { (number($0), $0.name) < (number($1), $1.name) }
        let ours = found.filter { $0.header.map { $0.ledgerID == ledgerID } ?? true }
        let numbers = Array(Set(ours.map(number))).sorted()
        for (index, value) in numbers.enumerated().dropFirst() where value > numbers[index - 1] + 1 {
            var missing = numbers[index - 1] + 1
            while missing < value && missingSegments.count < 1000 {
                missingSegments.append(missing)
                missing += 1
            }
        }

        // Records, segment by segment.
        var all: [Record] = []
        /// Per segment: whether it bounds the sequence numbers before it (a valid header
        /// says where it starts, or it holds a valid record).
        var providesBound: [Bool] = []
        for (index, segment) in found.enumerated() {
            progress?(index + 1, found.count, all.count & ~0x3ff)
            let readAs = number(segment)
            var summary = SegmentFile(
                number: readAs, file: segment.name, fileBytes: segment.fileBytes, headerProblem: segment.headerProblem,
                foreign: false, unreadable: segment.unreadable, openEnd: nil, lossOfUnknownSize: false, recordCount: 0)
            defer {
                segments.append(summary)
                providesBound.append(summary.recordCount > 0 || (segment.header != nil && segment.unreadable == nil))
            }
            if let unreadable = segment.unreadable {
                summary.openEnd = "cannot be read: \(unreadable)"
                continue
            }
            var problems: [String] = []
            if let header = segment.header {
                if let ledgerID, header.ledgerID != ledgerID {
                    summary.foreign = true
                    summary.headerProblem = "belongs to another ledger (\(header.ledgerID)); skipped"
                    continue
                }
                if header.segmentNumber != segment.nameNumber {
                    problems.append("file name says segment \(segment.nameNumber) but the header says \(header.segmentNumber): read as segment \(header.segmentNumber)")
                }
                if segment.fileBytes != header.segmentBytes {
                    problems.append("file is \(segment.fileBytes) bytes but its header says \(header.segmentBytes)")
                }
                segmentBytes = max(segmentBytes ?? 0, header.segmentBytes)
            } else if let problem = segment.headerProblem {
                problems.append(problem)
            }
            summary.headerProblem = problems.isEmpty ? nil : problems.joined(separator: "; ")
            if segment.fileBytes < UInt64(FormatLimits.segmentHeaderBytes) {
                summary.openEnd = "file is \(segment.fileBytes) bytes, shorter than a segment header"
                continue
            }
            guard let ledgerID else { continue }
            let scanned: SegmentScan
            do {
                scanned = try scanRecords(
                    SalvageFile(path: Paths.join(directory, segment.name)), segment: readAs, file: segment.name, ledgerID: ledgerID,
                    intendedBytes: segment.header?.segmentBytes)
            } catch {
                summary.unreadable = error.description
                summary.openEnd = "cannot be read: \(error.description)"
                continue
            }
            summary.recordCount = scanned.records.count
            summary.firstSequence = scanned.records.first?.header.sequence
            summary.lastSequence = scanned.records.last?.header.sequence
            all += scanned.records
            let lastRead = scanned.records.last.map { "the last valid record ends at offset \($0.offset + UInt64($0.header.frameBytes))" }
                ?? "no valid record in it"
            switch scanned.end {
            case .freeSpace:
                break
            case .readFailed(let reason):
                summary.unreadable = reason
                summary.openEnd = "\(reason); the rest of the file was not read"
            case .endOfFile, .damaged:
                let cut = scanned.end == .damaged ? "inside a record or damaged bytes" : "with no free space after its records"
                if let header = segment.header, segment.fileBytes < header.segmentBytes {
                    summary.openEnd = "file is \(segment.fileBytes) bytes but its header says \(header.segmentBytes): cut short \(cut) (\(lastRead)), so records may have followed"
                } else if segment.header == nil {
                    summary.openEnd = "its header is invalid and the file (\(segment.fileBytes) bytes) ends \(cut) (\(lastRead)), so records may have followed"
                }
            }
        }
        // An open end is counted by the gaps when a later segment bounds the sequence
        // numbers (a valid header says where it starts, or a valid record is there).
        var bounded = false
        for index in segments.indices.reversed() where !segments[index].foreign {
            if segments[index].openEnd != nil && !bounded { segments[index].lossOfUnknownSize = true }
            if providesBound[index] { bounded = true }
        }

        // A sealed last segment names its successor (FORMAT §5.15); when no file of that
        // number is there, the successor was lost (R16) unless its temporary file shows an
        // interrupted rollover (R17).
        if let last = segments.last(where: { !$0.foreign && $0.recordCount > 0 }),
           last.number == segments.filter({ !$0.foreign }).map(\.number).max(),
           let final = all.filter({ $0.segment == last.number }).max(by: { $0.offset < $1.offset }),
           final.header.kind == .seal,
           case .body(.seal(let seal)) = RecordBody.decode(kind: final.header.kind, final.body),
           seal.successor > last.number {
            let name = LedgerFileNames.segment(seal.successor)
            var info = stat()
            sealedSuccessor = SealedSuccessor(
                sealedSegment: last.number, number: seal.successor, file: name,
                temporaryExists: lstat(Paths.join(directory, name + LedgerFileNames.temporarySuffix), &info) == 0)
        }

        // One record per sequence number, in order.
        all.sort { ($0.header.sequence, $0.segment, $0.offset) < ($1.header.sequence, $1.segment, $1.offset) }
        var kept: [Record] = []
        for record in all {
            if let last = kept.last, last.header.sequence == record.header.sequence {
                if last.header.checksum != record.header.checksum {
                    inconsistencies.append(
                        "sequence \(record.header.sequence) appears twice with different contents (segment \(last.segment) offset \(last.offset), and segment \(record.segment) offset \(record.offset)); kept the first")
                }
                continue
            }
            kept.append(record)
        }
        for (index, record) in kept.enumerated().dropFirst() {
            let previous = kept[index - 1]
            if previous.header.sequence + 1 == record.header.sequence && record.header.previousChain != previous.header.checksum {
                inconsistencies.append(
                    "record \(record.header.sequence) (segment \(record.segment) offset \(record.offset)) does not continue the checksum chain of record \(previous.header.sequence): expected \(hex32(previous.header.checksum)), found \(hex32(record.header.previousChain))")
            }
        }
        if let snapshot, let atCovered = kept.first(where: { $0.header.sequence == covered }),
           atCovered.header.checksum != snapshot.snapshot.chain {
            inconsistencies.append(
                "record \(covered) has checksum \(hex32(atCovered.header.checksum)) but the snapshot's chain value is \(hex32(snapshot.snapshot.chain))")
        }
        coveredRecordCount = kept.filter { $0.header.sequence <= covered }.count
        records = kept.filter { $0.header.sequence > covered }
        let ourHeaders = found.compactMap(\.header).filter { $0.ledgerID == ledgerID }
        let lastBounding = segments.indices.filter { providesBound[$0] && !segments[$0].foreign }.map { segments[$0].number }.max()
        findGaps(covered: covered, headers: ourHeaders, lastBoundingSegment: lastBounding, snapshotClaims: snapshotClaims)
    }

    /// How the scan of one segment's records ended.
    enum SegmentEnd: Equatable, Sendable {
        /// Zero-filled free space follows the last valid record (or the header).
        case freeSpace
        /// The last valid record ends at the end of the file (or too close to it for a
        /// record header to follow).
        case endOfFile
        /// Damaged bytes run to the end of the file, or are followed only by zeros.
        case damaged
        /// A read failed; the rest of the file is unknown.
        case readFailed(String)
    }

    struct SegmentScan {
        var records: [Record] = []
        var end: SegmentEnd = .endOfFile
    }

    /// Valid records of one segment, in file order, recording damaged byte ranges. Reads
    /// the file in windows and skips its holes. `intendedBytes` is the size its header
    /// gives (a record that runs past the end of a shorter file is cut, not corrupt).
    private mutating func scanRecords(
        _ file: SalvageFile, segment: UInt64, file name: String, ledgerID: LedgerID, intendedBytes: UInt64?
    ) throws(SalvageFile.Problem) -> SegmentScan {
        var result = SegmentScan()
        var window = SalvageWindow(file)
        let size = file.size
        let end = max(size, intendedBytes ?? 0)
        var offset = UInt64(FormatLimits.segmentHeaderBytes)
        do {
            while offset < size {
                let decoded: RecordFrame.DecodeResult
                if try window.ensure(offset, FormatLimits.recordHeaderBytes) < FormatLimits.recordHeaderBytes {
                    decoded = .incomplete
                } else {
                    let bodyBytes = window.peekHeader(at: offset)?.bodyBytes ?? 0
                    if bodyBytes <= FormatLimits.recordBodyBytesMax {
                        try window.ensure(offset, RecordFrame.frameBytes(bodyBytes: Int(bodyBytes)))
                    }
                    decoded = window.decode(at: offset, end: end, ledgerID: ledgerID, segment: segment)
                }
                let reason: String
                switch decoded {
                case .record(let header, let bodyStart):
                    // Copied out of the window, which moves on.
                    result.records.append(Record(
                        header: header, bodyBytes: Array(window.bytes[bodyStart..<(bodyStart + Int(header.bodyBytes))])[...],
                        segment: segment, offset: offset))
                    offset += UInt64(header.frameBytes)
                    continue
                case .zero:
                    reason = "zeros followed by nonzero bytes"
                case .incomplete:
                    reason = size < end ? "a record runs past the end of the file (it was cut short)"
                        : "a record runs past the end of the segment"
                case .corrupt(let why):
                    reason = why.description
                }
                try window.ensure(offset, FormatLimits.recordHeaderBytes + FormatLimits.keyBytesMax * 4 + FormatLimits.receiptBytesMax)
                let hint = window.bytes.withUnsafeBytes { SalvageScan.guessContents($0, at: Int(offset - window.base)) }
                let (next, lastNonZero) = try SalvageScan.resynchronize(&window, from: offset, ledgerID: ledgerID, segment: segment)
                if let next {
                    damage.append(Damage(segment: segment, file: name, startOffset: offset, endOffset: next,
                                         reason: reason, unverifiedContents: hint))
                    offset = next
                } else if let lastNonZero {
                    let stop = min(size, lastNonZero + UInt64(FormatLimits.recordAlignment))
                    damage.append(Damage(segment: segment, file: name, startOffset: offset, endOffset: max(stop, offset + 1),
                                         reason: reason, unverifiedContents: hint))
                    result.end = .damaged
                    return result
                } else {
                    // Zeros to the end of the file: free space, unless too few of them remain
                    // for a record header (then nothing shows that the records ended here).
                    result.end = decoded == .zero ? .freeSpace : .endOfFile
                    return result
                }
            }
        } catch {
            result.end = .readFailed(error.description)
            return result
        }
        result.end = .endOfFile
        return result
    }

    /// The first 8-byte-aligned offset at or after `from` holding a valid record, and the
    /// offset of the last 8-byte word before it (or before the end of the file) that is
    /// not zero. Only the file's data extents are read: a hole is zeros, where no record
    /// starts. Header fields are checked before the checksum so a long run of garbage
    /// stays cheap.
    static func resynchronize(_ window: inout SalvageWindow, from: UInt64, ledgerID: LedgerID, segment: UInt64)
        throws(SalvageFile.Problem) -> (next: UInt64?, lastNonZero: UInt64?)
    {
        let file = window.file
        let alignment = UInt64(FormatLimits.recordAlignment)
        var lastNonZero: UInt64?
        var position = Alignment.roundUp(from, to: alignment)
        while let dataStart = file.dataStart(atOrAfter: position) {
            var candidate = max(position, dataStart) / alignment * alignment
            let extentEnd = max(file.dataEnd(from: candidate), candidate + alignment)
            while candidate < extentEnd && candidate < file.size {
                let available = try window.ensure(candidate, FormatLimits.recordHeaderBytes)
                if available < 8 {  // the last few bytes of the file
                    let index = Int(candidate - window.base)
                    if window.bytes[index..<(index + available)].contains(where: { $0 != 0 }) { lastNonZero = candidate }
                    return (nil, lastNonZero)
                }
                if window.word(at: candidate) != 0 {
                    lastNonZero = candidate
                    if available == FormatLimits.recordHeaderBytes, let frameBytes = window.plausibleFrameBytes(at: candidate),
                       candidate + UInt64(frameBytes) <= file.size {
                        try window.ensure(candidate, frameBytes)
                        if case .record = window.decode(at: candidate, end: file.size, ledgerID: ledgerID, segment: segment) {
                            return (candidate, lastNonZero)
                        }
                    }
                }
                candidate += alignment
            }
            position = candidate
        }
        return (nil, lastNonZero)
    }

    /// Every missing sequence number between the snapshot (or 1) and the highest one known.
    private mutating func findGaps(
        covered: UInt64, headers: [SegmentHeader], lastBoundingSegment: UInt64?, snapshotClaims: [UInt64]
    ) {
        let ourHeaders = headers.sorted { $0.segmentNumber < $1.segmentNumber }
        // Highest sequence number known to have existed.
        var highest = max(covered, records.last?.header.sequence ?? 0)
        for header in ourHeaders { highest = max(highest, header.firstSequence - 1) }
        // Durable through: acked-through values, sealed segments (every record before the
        // last segment's first was durable before that segment was used), snapshot names.
        var ackedThrough: UInt64 = 0
        for record in records { ackedThrough = max(ackedThrough, record.header.ackedThrough) }
        var sealedThrough: UInt64 = 0
        if let lastHeader = ourHeaders.last { sealedThrough = lastHeader.firstSequence - 1 }
        if let lastBoundingSegment {
            // Records in earlier segments than the last one that holds a valid header or
            // record were sealed, even when the last segment's header is damaged.
            for record in records where record.segment < lastBoundingSegment {
                sealedThrough = max(sealedThrough, record.header.sequence)
            }
        }
        let claimedThrough = snapshotClaims.max() ?? 0
        let unreadable = Set(unreadableSegments.map(\.number))

        var expected = covered + 1
        var index = 0
        while expected <= highest {
            if index < records.count && records[index].header.sequence == expected {
                expected += 1
                index += 1
                continue
            }
            let nextPresent = index < records.count ? records[index].header.sequence : highest + 1
            let last = min(nextPresent, highest + 1) - 1
            let before = index > 0 ? records[index - 1] : nil
            let after = index < records.count ? records[index] : nil
            var location: String
            if let before, let after, before.segment == after.segment {
                location = "segment \(before.segment), between offsets \(before.offset + UInt64(before.header.frameBytes)) and \(after.offset)"
            } else if let before {
                location = "segment \(before.segment) after offset \(before.offset + UInt64(before.header.frameBytes))"
                    + (after.map { ", or segment \($0.segment) before offset \($0.offset)" } ?? "")
            } else if let after {
                location = "before segment \(after.segment) offset \(after.offset)"
            } else {
                location = "no record of this ledger survives around them"
            }
            if snapshot == nil, expected == 1, let first = ourHeaders.first, first.firstSequence > 1 {
                location += "; compacted into a snapshot that is missing or invalid"
            }
            if let before, let after,
               case let missing = missingSegments.filter({ $0 > before.segment && $0 < after.segment }), !missing.isEmpty {
                location += "; segment file\(missing.count == 1 ? "" : "s") \(missing.map(String.init).joined(separator: ", ")) missing"
            }
            if case let between = unreadable.filter({ number in
                (before.map { number > $0.segment } ?? true) && (after.map { number < $0.segment } ?? true) }).sorted(),
               !between.isEmpty {
                location += "; segment file\(between.count == 1 ? "" : "s") \(between.map(String.init).joined(separator: ", ")) unreadable"
            }
            var proofs: [String] = []
            if expected <= ackedThrough { proofs.append("a later record says sequence \(ackedThrough) was durable") }
            if expected <= sealedThrough { proofs.append("a later segment exists (this one was sealed)") }
            if expected <= claimedThrough { proofs.append("a snapshot file is named as covering sequence \(claimedThrough)") }
            gaps.append(Gap(firstSequence: expected, lastSequence: last, location: location,
                            provenDurable: !proofs.isEmpty,
                            proof: proofs.isEmpty
                                ? "nothing proves this was durable: an unsynced tail a crash may leave torn (normal recovery discards it too)"
                                : proofs.joined(separator: "; ")))
            expected = last + 1
        }
    }

    // MARK: Damaged bytes

    /// The record a damaged frame at `offset` seems to be, read without its checksum:
    /// `intent of "order-42" (sequence 17)`, or nil when the bytes do not parse as one.
    static func guessContents(_ raw: UnsafeRawBufferPointer, at offset: Int) -> String? {
        guard let claimed = SegmentReader.peekHeader(raw, at: offset) else { return nil }
        let bodyBytes = Int(claimed.bodyBytes)
        let bodyStart = offset + FormatLimits.recordHeaderBytes
        guard bodyBytes <= FormatLimits.keyBytesMax * 4 + FormatLimits.receiptBytesMax,
              bodyStart + bodyBytes <= raw.count,
              case .body(let body) = RecordBody.decode(kind: claimed.kind, Array(raw[bodyStart..<(bodyStart + bodyBytes)]))
        else { return nil }
        let what = body.key.map { "\(claimed.kind) of \"\($0)\"" } ?? "\(claimed.kind)"
        return "\(what) (sequence \(claimed.sequence))"
    }

    // MARK: Byte helpers

}

extension SalvageWindow {
    /// `RecordFrame.decode` of the record at file offset `offset` (made available by
    /// `ensure`); `end` is the segment's end as a file offset.
    func decode(at offset: UInt64, end: UInt64, ledgerID: LedgerID, segment: UInt64) -> RecordFrame.DecodeResult {
        bytes.withUnsafeBytes { raw in
            RecordFrame.decode(raw, at: Int(offset - base), end: Int(end - base), baseOffset: base, ledgerID: ledgerID,
                               segment: segment)
        }
    }

    /// The header fields at `offset` (which `ensure` made available), unchecked.
    func peekHeader(at offset: UInt64) -> RecordHeader? {
        bytes.withUnsafeBytes { SegmentReader.peekHeader($0, at: Int(offset - base)) }
    }

    /// The frame size of the record header at `offset` when the one resynchronisation
    /// rule (`SegmentReader.plausibleHeader`) says it may start a record, else nil.
    /// Cheap: no checksum.
    func plausibleFrameBytes(at offset: UInt64) -> Int? {
        bytes.withUnsafeBytes { SegmentReader.plausibleHeader($0, at: Int(offset - base))?.frameBytes }
    }
}
