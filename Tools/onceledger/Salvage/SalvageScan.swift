import Foundation
import OnceLedgerFormat
import OnceLedgerLog

/// What `onceledger salvage` can read from a damaged ledger directory, found with the
/// format decoders directly (the recovery scanner stops at the first problem; salvage
/// goes past it). Reads only: never changes the directory.
///
/// - Every segment file is read whole; its header is checked but a damaged header does
///   not stop the records behind it from being read (the ledger id comes from the
///   other files, the segment number from the file name).
/// - In each segment, records are decoded from offset 64 on. After a bad record the scan
///   resynchronizes: it tries every 8-byte-aligned offset for the next valid record (a
///   record's checksum binds it to its position, so a valid one found there is genuine).
/// - The newest valid snapshot supplies the state through its covered sequence number.
/// - The records are then put in sequence order; every missing sequence number is a gap,
///   reported with where it would have been and whether something proves it was durable
///   (a later record's acked-through, a later segment, or a snapshot covering it).
struct SalvageScan {
    struct Record {
        var header: RecordHeader
        var body: [UInt8]
        var segment: UInt64
        var offset: UInt64
    }

    /// Bytes of a segment that are not valid records (and not the zero-filled free space).
    struct Damage: Codable {
        var segment: UInt64
        var file: String
        var startOffset: UInt64
        var endOffset: UInt64
        var reason: String
        /// What the damaged bytes seem to hold, read without a valid checksum (a hint for
        /// the operator, never copied): e.g. `completion of "order-42"`.
        var unverifiedContents: String?
    }

    /// Missing sequence numbers.
    struct Gap: Codable {
        var firstSequence: UInt64
        var lastSequence: UInt64
        /// Where the records would have been, as far as it is known.
        var location: String
        /// Whether something proves these records were durable (acknowledged data lost);
        /// false for an unsynced tail a crash may legally leave torn.
        var provenDurable: Bool
        var proof: String
    }

    struct SegmentFile: Codable {
        var number: UInt64
        var file: String
        var fileBytes: UInt64
        /// nil when the header is valid.
        var headerProblem: String?
        var foreign: Bool
        var recordCount: Int
        var firstSequence: UInt64?
        var lastSequence: UInt64?
    }

    struct SnapshotUsed {
        var file: String
        var snapshot: SnapshotFile
        /// False for a damaged snapshot whose items were read without the file checksum
        /// (`--trust-damaged-snapshot`).
        var verified = true
    }

    /// The newest snapshot file when it is damaged (and newer than any valid one): the
    /// items that still parse, read without the file checksum.
    struct DamagedSnapshot {
        var file: String
        var coveredSequence: UInt64
        var chain: UInt32
        var itemCountDeclared: Int
        var items: [SnapshotFile.Item]
        /// Why parsing stopped before the declared item count, if it did.
        var stopReason: String?
    }

    var directory: String
    var ledgerID: LedgerID?
    var segments: [SegmentFile] = []
    var snapshot: SnapshotUsed?
    var damagedSnapshot: DamagedSnapshot?
    /// Segment numbers missing between the first and the last segment file.
    var missingSegments: [UInt64] = []
    /// Snapshot files that were not used, and why.
    var ignoredSnapshots: [(file: String, reason: String)] = []
    /// Files in the directory that are not segments, snapshots, temporaries, torn side files or the lock.
    var otherFiles: [String] = []
    /// Valid records above the snapshot, in sequence order, one per sequence number.
    var records: [Record] = []
    /// Valid records the snapshot already covers (not copied; their state is in the snapshot).
    var coveredRecordCount = 0
    var damage: [Damage] = []
    var gaps: [Gap] = []
    /// Problems that are neither damage nor gaps: sequence conflicts, chain breaks.
    var inconsistencies: [String] = []
    /// The largest segment size seen in a valid header (the new ledger uses it).
    var segmentBytes: UInt64?

    /// Scans `directory`. Throws only for operational errors (cannot list or read).
    /// With `trustDamagedSnapshot`, the items of a damaged newest snapshot that still
    /// parse are used as its state (reported as unverified).
    static func scan(directory: String, storage: any Storage = PosixStorage(), trustDamagedSnapshot: Bool = false) throws
        -> SalvageScan
    {
        var scan = SalvageScan(directory: directory)
        try scan.run(storage: storage, trustDamagedSnapshot: trustDamagedSnapshot)
        return scan
    }

    private func path(_ name: String) -> String {
        directory.hasSuffix("/") ? directory + name : directory + "/" + name
    }

    private mutating func run(storage: any Storage, trustDamagedSnapshot: Bool) throws {
        var segmentNames: [(UInt64, String)] = []
        var snapshotNames: [(UInt64, String)] = []
        for name in try storage.listDirectory(directory) {
            if LedgerFileNames.isTemporary(name) || LedgerFileNames.isTorn(name) || name == LedgerFileNames.lock {
                continue
            } else if let number = LedgerFileNames.parseSegment(name) {
                segmentNames.append((number, name))
            } else if let covered = LedgerFileNames.parseSnapshot(name) {
                snapshotNames.append((covered, name))
            } else {
                otherFiles.append(name)
            }
        }
        segmentNames.sort { $0.0 < $1.0 }
        snapshotNames.sort { $0.0 > $1.0 }  // newest first
        otherFiles.sort()
        for (index, entry) in segmentNames.enumerated().dropFirst() where entry.0 > segmentNames[index - 1].0 + 1 {
            var number = segmentNames[index - 1].0 + 1
            while number < entry.0 && missingSegments.count < 1000 {
                missingSegments.append(number)
                number += 1
            }
        }

        // Segment bytes and headers first: the ledger id decides which files are ours.
        var segmentBytesByNumber: [UInt64: [UInt8]] = [:]
        var headers: [UInt64: SegmentHeader] = [:]
        var headerProblems: [UInt64: String] = [:]
        for (number, name) in segmentNames {
            guard let bytes = try storage.readWholeFile(path(name), maxBytes: FormatLimits.segmentBytesMax) else {
                headerProblems[number] = "file is larger than the largest valid segment; not read"
                continue
            }
            segmentBytesByNumber[number] = bytes
            switch SegmentHeader.decode(bytes) {
            case .header(let header): headers[number] = header
            case .incomplete: headerProblems[number] = "file is \(bytes.count) bytes, shorter than a segment header"
            case .corrupt(let reason): headerProblems[number] = "header is invalid (\(reason))"
            case .unsupportedVersion(let version): headerProblems[number] = "header has unsupported format version \(version)"
            }
        }
        var snapshots: [(covered: UInt64, name: String, file: SnapshotFile)] = []
        var snapshotClaims: [UInt64] = []
        let snapshotBytesMax = UInt64(FormatLimits.snapshotHeaderBytes + FormatLimits.snapshotTrailerBytes)
            + FormatLimits.snapshotBodyBytesMax
        var rawIDCandidates: [[UInt8]] = []
        for (covered, name) in snapshotNames {
            snapshotClaims.append(covered)
            guard let bytes = try storage.readWholeFile(path(name), maxBytes: snapshotBytesMax) else {
                ignoredSnapshots.append((name, "file is larger than any valid snapshot"))
                continue
            }
            switch SnapshotFile.decode(bytes) {
            case .snapshot(let file) where file.coveredSequence != covered:
                ignoredSnapshots.append((name, "its header covers sequence \(file.coveredSequence), not the \(covered) its name says"))
            case .snapshot(let file):
                snapshots.append((covered, name, file))
            case .corrupt(let reason):
                ignoredSnapshots.append((name, "invalid (\(reason))"))
                if bytes.count >= 32 { rawIDCandidates.append(Array(bytes[16..<32])) }
                if snapshots.isEmpty && damagedSnapshot == nil {
                    damagedSnapshot = SalvageScan.parseDamagedSnapshot(bytes, file: name)
                }
            case .unsupportedVersion(let version):
                ignoredSnapshots.append((name, "unsupported format version \(version)"))
            }
        }

        // The ledger id: the one most valid headers and snapshots carry; failing that,
        // the id bytes of a damaged header that make some record's checksum valid.
        var votes: [LedgerID: Int] = [:]
        for header in headers.values { votes[header.ledgerID, default: 0] += 1 }
        for snapshot in snapshots { votes[snapshot.file.ledgerID, default: 0] += 1 }
        ledgerID = votes.max { $0.value < $1.value || ($0.value == $1.value && $0.key.description > $1.key.description) }?.key
        if ledgerID == nil {
            for (_, bytes) in segmentBytesByNumber where bytes.count >= 32 { rawIDCandidates.append(Array(bytes[16..<32])) }
            search: for candidate in rawIDCandidates {
                guard let id = LedgerID(bytes: candidate) else { continue }
                for (number, bytes) in segmentBytesByNumber where SalvageScan.firstRecordOffset(
                    bytes, from: FormatLimits.segmentHeaderBytes, ledgerID: id, segment: number) != nil {
                    ledgerID = id
                    break search
                }
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

        // Records, segment by segment.
        var found: [Record] = []
        // Progress on standard error, only when it is a terminal.
        let progress = ScanProgress(label: "salvage", firstSegment: segmentNames.first?.0 ?? 1,
                                    segmentCount: segmentNames.count)
        defer { progress.finish() }
        for (number, name) in segmentNames {
            progress.update(segment: number, records: found.count & ~0x3ff)
            let header = headers[number]
            var summary = SegmentFile(
                number: number, file: name, fileBytes: UInt64(segmentBytesByNumber[number]?.count ?? 0),
                headerProblem: headerProblems[number], foreign: false, recordCount: 0)
            defer { segments.append(summary) }
            if let header {
                if let ledgerID, header.ledgerID != ledgerID {
                    summary.foreign = true
                    summary.headerProblem = "belongs to another ledger (\(header.ledgerID)); skipped"
                    continue
                }
                if header.segmentNumber != number {
                    summary.headerProblem = "file name says segment \(number) but the header says \(header.segmentNumber)"
                }
                if UInt64(segmentBytesByNumber[number]?.count ?? 0) != header.segmentBytes {
                    summary.headerProblem = "file is \(summary.fileBytes) bytes but its header says \(header.segmentBytes)"
                }
                segmentBytes = max(segmentBytes ?? 0, header.segmentBytes)
            }
            guard let bytes = segmentBytesByNumber[number], let ledgerID else { continue }
            let records = scanRecords(bytes, segment: number, file: name, ledgerID: ledgerID)
            summary.recordCount = records.count
            summary.firstSequence = records.first?.header.sequence
            summary.lastSequence = records.last?.header.sequence
            found += records
        }

        // One record per sequence number, in order.
        found.sort { ($0.header.sequence, $0.segment, $0.offset) < ($1.header.sequence, $1.segment, $1.offset) }
        var kept: [Record] = []
        for record in found {
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
        findGaps(covered: covered, headers: headers, snapshotClaims: snapshotClaims)
    }

    /// Valid records of one segment, in file order, recording damaged byte ranges.
    private mutating func scanRecords(_ bytes: [UInt8], segment: UInt64, file: String, ledgerID: LedgerID) -> [Record] {
        var records: [Record] = []
        let end = bytes.count
        bytes.withUnsafeBytes { raw in
            var offset = FormatLimits.segmentHeaderBytes
            while offset < end {
                let result = RecordFrame.decode(raw, at: offset, end: end, baseOffset: 0, ledgerID: ledgerID, segment: segment)
                let reason: String
                switch result {
                case .record(let header, let bodyStart):
                    records.append(Record(header: header, body: Array(raw[bodyStart..<(bodyStart + Int(header.bodyBytes))]),
                                          segment: segment, offset: UInt64(offset)))
                    offset += header.frameBytes
                    continue
                case .zero, .incomplete:
                    guard let last = ZeroScan.lastNonZero(raw, from: offset, end: end) else { return }  // free space
                    reason = result == .zero ? "zeros followed by nonzero bytes" : "a record runs past the end of the segment"
                    _ = last
                case .corrupt(let why):
                    reason = why.description
                }
                let hint = SalvageScan.guessContents(raw, at: offset)
                if let next = SalvageScan.firstRecordOffset(bytes, from: offset + FormatLimits.recordAlignment,
                                                            ledgerID: ledgerID, segment: segment) {
                    damage.append(Damage(segment: segment, file: file, startOffset: UInt64(offset), endOffset: UInt64(next),
                                         reason: reason, unverifiedContents: hint))
                    offset = next
                } else {
                    let last = ZeroScan.lastNonZero(raw, from: offset, end: end) ?? offset
                    let stop = min(end, (last + FormatLimits.recordAlignment) / FormatLimits.recordAlignment
                        * FormatLimits.recordAlignment)
                    damage.append(Damage(segment: segment, file: file, startOffset: UInt64(offset),
                                         endOffset: UInt64(max(stop, offset + 1)), reason: reason,
                                         unverifiedContents: hint))
                    return
                }
            }
        }
        return records
    }

    /// Every missing sequence number between the snapshot (or 1) and the highest one known.
    private mutating func findGaps(covered: UInt64, headers: [UInt64: SegmentHeader], snapshotClaims: [UInt64]) {
        let ourHeaders = headers.values.filter { $0.ledgerID == ledgerID }.sorted { $0.segmentNumber < $1.segmentNumber }
        // Highest sequence number known to have existed.
        var highest = max(covered, records.last?.header.sequence ?? 0)
        for header in ourHeaders { highest = max(highest, header.firstSequence - 1) }
        // Durable through: acked-through values, sealed segments (every record before the
        // last segment's first was durable before that segment was used), snapshot names.
        var ackedThrough: UInt64 = 0
        for record in records { ackedThrough = max(ackedThrough, record.header.ackedThrough) }
        var sealedThrough: UInt64 = 0
        if let lastHeader = ourHeaders.last { sealedThrough = lastHeader.firstSequence - 1 }
        if let lastNumber = segments.filter({ !$0.foreign }).map(\.number).max() {
            // Records in earlier segments than the last were sealed even when the last
            // segment's header is damaged.
            for record in records where record.segment < lastNumber {
                sealedThrough = max(sealedThrough, record.header.sequence)
            }
        }
        let claimedThrough = snapshotClaims.max() ?? 0

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
        guard offset + FormatLimits.recordHeaderBytes <= raw.count else { return nil }
        let bodyBytes = Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)))
        let sequence = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self))
        let kind = RecordKind(rawValue: UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: offset + 28, as: UInt16.self)))
        let bodyStart = offset + FormatLimits.recordHeaderBytes
        guard bodyBytes <= FormatLimits.keyBytesMax * 4 + FormatLimits.receiptBytesMax,
              bodyStart + bodyBytes <= raw.count,
              case .body(let body) = RecordBody.decode(kind: kind, Array(raw[bodyStart..<(bodyStart + bodyBytes)]))
        else { return nil }
        let what = body.key.map { "\(kind) of \"\($0)\"" } ?? "\(kind)"
        return "\(what) (sequence \(sequence))"
    }

    /// Items of a snapshot whose file checksum fails, parsed as far as they go. Needs a
    /// valid header checksum (so the covered sequence number and item count are sound).
    static func parseDamagedSnapshot(_ bytes: [UInt8], file: String) -> DamagedSnapshot? {
        let headerBytes = FormatLimits.snapshotHeaderBytes
        guard bytes.count >= headerBytes, Array(bytes[0..<8]) == SnapshotFile.magic,
              ByteReader.getInteger(bytes, at: 60, as: UInt32.self) == CRC32.checksum(Array(bytes[0..<60]))
        else { return nil }
        let covered = ByteReader.getInteger(bytes, at: 32, as: UInt64.self)
        let chain = ByteReader.getInteger(bytes, at: 40, as: UInt32.self)
        let itemCount = Int(ByteReader.getInteger(bytes, at: 56, as: UInt32.self))
        var damaged = DamagedSnapshot(file: file, coveredSequence: covered, chain: chain, itemCountDeclared: itemCount,
                                      items: [])
        var index = headerBytes
        let end = max(headerBytes, bytes.count - FormatLimits.snapshotTrailerBytes)
        while damaged.items.count < itemCount {
            let number = damaged.items.count
            guard index + SnapshotFile.itemHeaderBytes <= end else {
                damaged.stopReason = "the file ends before item \(number)"
                break
            }
            let length = Int(ByteReader.getInteger(bytes, at: index, as: UInt32.self))
            let kind = RecordKind(rawValue: ByteReader.getInteger(bytes, at: index + 4, as: UInt16.self))
            let flags = ByteReader.getInteger(bytes, at: index + 6, as: UInt16.self)
            let bodyStart = index + SnapshotFile.itemHeaderBytes
            let next = bodyStart + Alignment.roundUp(min(length, Int(FormatLimits.recordBodyBytesMax)), to: FormatLimits.recordAlignment)
            guard flags == 0, length <= Int(FormatLimits.recordBodyBytesMax), next <= end else {
                damaged.stopReason = "item \(number) has an impossible length or flags"
                break
            }
            let body = Array(bytes[bodyStart..<(bodyStart + length)])
            guard case .body = RecordBody.decode(kind: kind, body),
                  [RecordKind.entryState, .memoPut, .journalEntry, .runTerminal].contains(kind)
            else {
                damaged.stopReason = "item \(number) does not decode as \(kind)"
                break
            }
            damaged.items.append(SnapshotFile.Item(kind: kind, body: body))
            index = next
        }
        return damaged
    }

    // MARK: Byte helpers

    /// The first 8-byte-aligned offset at or after `from` holding a valid record. Header
    /// fields are checked before the checksum so a long run of garbage stays cheap.
    static func firstRecordOffset(_ bytes: [UInt8], from: Int, ledgerID: LedgerID, segment: UInt64) -> Int? {
        bytes.withUnsafeBytes { raw -> Int? in
            let end = raw.count
            var candidate = from
            while candidate + FormatLimits.recordHeaderBytes <= end {
                let bodyBytes = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: candidate + 4, as: UInt32.self))
                let sequence = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: candidate + 8, as: UInt64.self))
                let acked = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: candidate + 16, as: UInt64.self))
                let kind = UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: candidate + 28, as: UInt16.self))
                let flags = UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: candidate + 30, as: UInt16.self))
                let plausible = sequence >= 1 && acked < sequence && kind != 0 && flags & ~RecordHeader.flagsKnown == 0
                    && bodyBytes <= FormatLimits.recordBodyBytesMax
                    && candidate + RecordFrame.frameBytes(bodyBytes: Int(bodyBytes)) <= end
                if plausible, case .record = RecordFrame.decode(
                    raw, at: candidate, end: end, baseOffset: 0, ledgerID: ledgerID, segment: segment) {
                    return candidate
                }
                candidate += FormatLimits.recordAlignment
            }
            return nil
        }
    }
}
