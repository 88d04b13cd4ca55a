// Proves that damage to a closed segment is always detected and that damage to the last segment
// never yields a wrong record: a real two-segment ledger is written with LogEngine on PosixStorage
// (4 KiB segments, fixed content, clean close), its files are copied into memory, and
// RecoveryScanner.scan is run on every truncation length and every single-bit flip of the sealed
// segment (each must refuse) and on every single-bit flip of the last segment (each must refuse or
// classify a torn tail that covers the flipped byte); in every case each record handed to onRecord
// equals the original at its position. Also checks that the golden ledger directories of
// Spec/vectors/ and the decision table of Spec/RECOVERY.md agree with the scanner, and that the
// open's in-place scan (`onRecordInPlace`) hands over the same records there.
import Foundation
import OnceLedgerFormat
import OnceLedgerLog
import Testing

/// A read-only in-memory directory: enough `Storage` for `RecoveryScanner.scan`.
private struct DetectionStorage: Storage {
    static let directory = "/detection"
    var files: [String: [UInt8]]  // by name

    func listDirectory(_ path: String) throws -> [String] { Array(files.keys) }
    func createDirectory(_ path: String) throws {}
    func exists(_ path: String) -> Bool { path == Self.directory || files[Self.name(path)] != nil }
    func openFile(_ path: String, mode: FileOpenMode) throws -> any StorageFile {
        guard mode == .readOnly, let bytes = files[Self.name(path)] else {
            throw LedgerError(.io, "read-only test storage", path: path)
        }
        return DetectionFile(path: path, bytes: bytes)
    }
    func rename(_ from: String, to: String) throws { throw LedgerError(.io, "read-only", path: from) }
    func removeFile(_ path: String) throws { throw LedgerError(.io, "read-only", path: path) }
    func synchronizeDirectory(_ path: String) throws { throw LedgerError(.io, "read-only", path: path) }
    func lockDirectory(_ path: String) throws -> any StorageLock { throw LedgerError(.io, "read-only", path: path) }

    static func name(_ path: String) -> String { String(path.split(separator: "/").last ?? "") }
}

private final class DetectionFile: StorageFile, Sendable {
    let path: String
    let bytes: [UInt8]
    init(path: String, bytes: [UInt8]) {
        self.path = path
        self.bytes = bytes
    }
    func read(at offset: UInt64, count: Int) throws -> [UInt8] {
        let start = min(Int(offset), bytes.count)
        return Array(bytes[start..<min(bytes.count, start + count)])
    }
    func write(_ bytes: [UInt8], at offset: UInt64) throws { throw LedgerError(.io, "read-only", path: path) }
    func synchronizeData() throws { throw LedgerError(.io, "read-only", path: path) }
    func synchronize() throws { throw LedgerError(.io, "read-only", path: path) }
    func size() throws -> UInt64 { UInt64(bytes.count) }
    func truncate(to size: UInt64) throws { throw LedgerError(.io, "read-only", path: path) }
    func close() {}
}

/// What one scan returned.
private struct ScanOutcome {
    var report: RecoveryReport
    var records: [ScannedRecord]
}

private func scan(_ files: [String: [UInt8]]) throws -> ScanOutcome {
    var records: [ScannedRecord] = []
    let report = try RecoveryScanner.scan(
        storage: DetectionStorage(files: files), directory: DetectionStorage.directory,
        onRecord: { records.append($0) })
    return ScanOutcome(report: report, records: records)
}

private func same(_ a: ScannedRecord, _ b: ScannedRecord) -> Bool {
    a.header == b.header && a.body == b.body && a.segment == b.segment && a.offset == b.offset
}

/// The index of the first returned record that differs from the original at its position, if any.
private func firstWrongRecord(_ returned: [ScannedRecord], _ originals: [ScannedRecord]) -> Int? {
    for (index, record) in returned.enumerated() where index >= originals.count || !same(record, originals[index]) {
        return index
    }
    return nil
}

private enum DetectionLedger {
    static let segmentBytes: UInt64 = 4096
    static let time: UInt64 = 1_700_000_000_000

    /// Fixed, varied content: every kind of body, single records and multi-record batches.
    static func batch(_ index: Int) -> [LogRecord] {
        let key = "order-\(index)"
        switch index % 6 {
        case 0:
            return [LogRecord(.intent(.init(key: key, attempt: 1, timeMilliseconds: time + UInt64(index))))]
        case 1:
            return [LogRecord(.completion(.init(key: key, attempt: 1, timeMilliseconds: time,
                                                receipt: Array("receipt-\(index)".utf8))))]
        case 2:
            return [LogRecord(.memoPut(.init(run: "run-\(index)", step: "s", name: "n", timeMilliseconds: time,
                                             value: [UInt8](repeating: UInt8(index), count: index % 40)))),
                    LogRecord(.journalEntry(.init(run: "run-\(index)", position: UInt64(index), step: "uuid",
                                                  timeMilliseconds: time, value: Array(0..<16))))]
        case 3:
            return [LogRecord(.release(.init(key: key, attempt: 2, timeMilliseconds: time, reason: "threw early")))]
        case 4:
            return [LogRecord(kind: .opaque, body: Array("opaque-\(index)".utf8)),
                    LogRecord(.runTerminal(.init(run: "run-\(index)", status: .succeeded, timeMilliseconds: time))),
                    LogRecord(.forget(.init(key: key, timeMilliseconds: time, actor: "ops", reason: "test")))]
        default:
            return [LogRecord(.resolve(.init(key: key, outcome: .done, attempt: 1, timeMilliseconds: time,
                                             receipt: [1, 2, 3], actor: "ops", reason: "checked")))]
        }
    }

    /// Writes the ledger on real files and returns its segment files by name.
    static func build() async throws -> [String: [UInt8]] {
        let directory = FileManager.default.temporaryDirectory.path + "/onceledger-detection-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let engine = try LogEngine.open(directory: directory, configuration: LogConfiguration(segmentBytes: segmentBytes),
                                        clock: { time })
        var index = 0
        var extraBatches = 0
        while engine.activeSegment < 2 || extraBatches < 5 {
            _ = try await engine.append(batch(index))
            if engine.activeSegment >= 2 { extraBatches += 1 }
            index += 1
        }
        try engine.close()
        var files: [String: [UInt8]] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: directory)
        where LedgerFileNames.parseSegment(name) != nil {
            files[name] = try [UInt8](Data(contentsOf: URL(fileURLWithPath: directory + "/" + name)))
        }
        return files
    }
}

@Suite struct DetectionTests {
    static let sealed = LedgerFileNames.segment(1)
    static let last = LedgerFileNames.segment(2)

    private static func original() async throws -> (files: [String: [UInt8]], outcome: ScanOutcome) {
        let files = try await DetectionLedger.build()
        #expect(Set(files.keys) == [sealed, last], "the ledger must have exactly two segments")
        let outcome = try scan(files)
        #expect(outcome.report.row.label == "R11 clean")
        #expect(outcome.report.error == nil)
        #expect(outcome.records.map(\.header.sequence) == Array(1...UInt64(outcome.records.count)))
        #expect(outcome.records.last?.header.kind == .checkpoint, "a clean close ends with a checkpoint")
        #expect(outcome.records.contains { $0.segment == 1 } && outcome.records.contains { $0.segment == 2 })
        return (files, outcome)
    }

    @Test func everyTruncationOfTheSealedSegmentIsDetected() async throws {
        let (files, original) = try await Self.original()
        let bytes = files[Self.sealed]!
        for length in 0..<bytes.count {
            var damaged = files
            damaged[Self.sealed] = Array(bytes[0..<length])
            let outcome = try scan(damaged)
            guard let error = outcome.report.error else {
                Issue.record("truncation to \(length) bytes not detected (row \(outcome.report.row))")
                continue
            }
            #expect(error.code == .corruptSegmentHeader && error.segment == 1, "truncation to \(length): \(error)")
            if let wrong = firstWrongRecord(outcome.records, original.records) {
                Issue.record("truncation to \(length) returned a wrong record at index \(wrong)")
            }
        }
    }

    @Test func everyBitFlipOfTheSealedSegmentIsDetected() async throws {
        let (files, original) = try await Self.original()
        let bytes = files[Self.sealed]!
        for bit in 0..<(bytes.count * 8) {
            var flipped = bytes
            flipped[bit / 8] ^= UInt8(1) << UInt8(bit % 8)
            var damaged = files
            damaged[Self.sealed] = flipped
            let outcome = try scan(damaged)
            guard let error = outcome.report.error else {
                Issue.record("flip of bit \(bit % 8) of byte \(bit / 8) not detected (row \(outcome.report.row))")
                continue
            }
            if !(error.isCorruption && error.segment == 1 && (error.offset ?? 0) <= UInt64(bit / 8)) {
                Issue.record("flip of byte \(bit / 8): the error does not point at or before it: \(error)")
            }
            if let wrong = firstWrongRecord(outcome.records, original.records) {
                Issue.record("flip of byte \(bit / 8) returned a wrong record at index \(wrong)")
            }
        }
    }

    @Test func everyBitFlipOfTheLastSegmentRefusesOrQuarantines() async throws {
        let (files, original) = try await Self.original()
        let bytes = files[Self.last]!
        var refused = 0
        var torn = 0
        for bit in 0..<(bytes.count * 8) {
            let byte = bit / 8
            var flipped = bytes
            flipped[byte] ^= UInt8(1) << UInt8(bit % 8)
            var damaged = files
            damaged[Self.last] = flipped
            let outcome = try scan(damaged)
            if let wrong = firstWrongRecord(outcome.records, original.records) {
                Issue.record("flip of byte \(byte) returned a wrong record at index \(wrong)")
            }
            switch outcome.report.row.action {
            case .refuse:
                refused += 1
                if outcome.report.error?.isCorruption != true {
                    Issue.record("flip of byte \(byte): refusal without a corruption error")
                }
            case .quarantineTornTail:
                torn += 1
                guard let tail = outcome.report.tornTail else {
                    Issue.record("flip of byte \(byte): torn-tail row without a torn tail")
                    continue
                }
                // The quarantined range holds the damage, and starts where the returned records end.
                if !(tail.segment == 2 && tail.offset <= UInt64(byte) && UInt64(byte) < tail.endOffset) {
                    Issue.record("flip of byte \(byte): torn tail \(tail.offset)..<\(tail.endOffset) misses it")
                }
                if let lastReturned = outcome.records.last, lastReturned.segment == 2,
                   lastReturned.offset + UInt64(lastReturned.header.frameBytes) != tail.offset {
                    Issue.record("flip of byte \(byte): torn tail does not start after the last valid record")
                }
            case .open, .createNew, .completeRollover:
                Issue.record("flip of byte \(byte) not detected (row \(outcome.report.row))")
            }
        }
        #expect(refused > 0 && torn > 0, "both outcomes occur: \(refused) refused, \(torn) torn")
    }

    // MARK: Spec agreement

    static var specDirectory: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Spec").path
    }

    private static func scanVector(_ name: String) throws -> ScanOutcome {
        var records: [ScannedRecord] = []
        let report = try RecoveryScanner.scan(
            storage: PosixStorage(), directory: specDirectory + "/vectors/" + name, onRecord: { records.append($0) })
        return ScanOutcome(report: report, records: records)
    }

    /// The open's in-place scan (`onRecordInPlace`, no slice per record) hands over exactly
    /// the records, bodies and positions the located scan does, with the same report, on
    /// every golden ledger (clean, torn, damaged, compacted, mid-rollover).
    @Test func theInPlaceScanHandsOverWhatTheLocatedScanDoes() throws {
        struct Seen: Equatable {
            var header: RecordHeader
            var body: [UInt8]
            var segment: UInt64
            var offset: UInt64
            var endOffset: UInt64
        }
        let vectors = Self.specDirectory + "/vectors"
        let names = try FileManager.default.contentsOfDirectory(atPath: vectors).filter { $0.hasPrefix("ledger-") }.sorted()
        #expect(names.count >= 8)
        for name in names {
            var located: [Seen] = []
            var inPlace: [Seen] = []
            let locatedReport = try RecoveryScanner.scan(storage: PosixStorage(), directory: vectors + "/" + name, onRecord: {
                located.append(Seen(header: $0.header, body: $0.body, segment: $0.segment, offset: $0.offset, endOffset: $0.endOffset))
            })
            let inPlaceReport = try RecoveryScanner.scan(storage: PosixStorage(), directory: vectors + "/" + name, onRecordInPlace: {
                inPlace.append(Seen(header: $0.header, body: Array($0.body), segment: $0.segment, offset: $0.offset,
                                    endOffset: $0.endOffset))
            })
            #expect(!located.isEmpty || name == "ledger-compacted", "\(name) hands over records")
            #expect(inPlace == located, "\(name)")
            #expect(inPlaceReport.row.label == locatedReport.row.label, "\(name)")
            #expect(inPlaceReport.lastSequence == locatedReport.lastSequence, "\(name)")
        }
    }

    /// The classifications Spec/vectors/README.md promises.
    @Test func vectorLedgersClassifyAsDocumented() throws {
        let clean = try Self.scanVector("ledger-clean")
        #expect(clean.report.row.label == "R11 clean")
        #expect(clean.records.map(\.header.sequence) == [1, 2, 3, 4, 5])
        #expect(clean.report.segments.first?.endOffset == 488)

        let torn = try Self.scanVector("ledger-torn")
        #expect(torn.report.row.label == "R15 torn-tail")
        #expect(torn.records.map(\.header.sequence) == [1, 2])
        #expect(torn.report.tornTail?.offset == 256)
        #expect(torn.report.tornTail?.endOffset == 536)
        #expect(torn.report.tornTail?.expectedSequence == 3)
        #expect(torn.report.observation.laterValid == .notCovering)

        let acked = try Self.scanVector("ledger-acked-corrupt")
        #expect(acked.report.row.label == "R14 corrupt-acked")
        #expect(acked.report.error?.code == .corruptRecord)
        #expect(acked.report.error?.segment == 1)
        #expect(acked.report.error?.offset == 256)
        #expect(acked.report.error?.sequence == 3)
        #expect(acked.report.error?.actualChecksum == 0x67c4_382c)
        #expect(acked.report.error?.expectedChecksum != nil && acked.report.error?.expectedChecksum != 0x67c4_382c)

        let sealed = try Self.scanVector("ledger-sealed-corrupt")
        #expect(sealed.report.row.label == "R12 corrupt-sealed")
        #expect(sealed.report.error?.code == .corruptRecord)
        #expect(sealed.report.error?.segment == 1)
        #expect(sealed.report.error?.offset == 176)
        #expect(sealed.report.error?.sequence == 2)
        #expect(sealed.report.error?.actualChecksum == 0xd113_b4ce)
        #expect(sealed.records.map(\.header.sequence) == [1])

        let compacted = try Self.scanVector("ledger-compacted")
        #expect(compacted.report.row.label == "R11 clean")
        #expect(compacted.report.snapshot?.coveredSequence == 7)
        #expect(compacted.records.map(\.header.sequence) == [8, 9, 10])
        #expect(compacted.records.first?.header.kind == .snapshotMarker)

        let sealedClean = try Self.scanVector("ledger-sealed")
        #expect(sealedClean.report.row.label == "R11 clean")
        #expect(sealedClean.records.map(\.header.sequence) == [1, 2, 3, 4, 5, 6, 7])
        #expect(sealedClean.records[3].header.kind == .seal)
        #expect(sealedClean.report.segments.map(\.sealSuccessor) == [2, nil])

        let deleted = try Self.scanVector("ledger-newest-deleted")
        #expect(deleted.report.row.label == "R16 missing-newest-segment")
        #expect(deleted.report.observation.successor == .missing)
        #expect(deleted.report.error?.code == .missingSegment)
        #expect(deleted.report.error?.segment == 2)
        #expect(deleted.report.error?.message.contains("onceledger salvage") == true)
        #expect(deleted.records.map(\.header.sequence) == [1, 2, 3, 4])

        let interrupted = try Self.scanVector("ledger-interrupted-rollover")
        #expect(interrupted.report.row.label == "R17 interrupted-rollover")
        #expect(interrupted.report.row.action == .completeRollover)
        #expect(interrupted.report.error == nil)
        #expect(interrupted.report.pendingRollover == PendingRollover(
            segment: 1, successor: 2, temporaryName: "wal-0000000000000002.seg.tmp"))
        #expect(interrupted.records.map(\.header.sequence) == [1, 2, 3, 4])
    }

    /// Spec/RECOVERY.md lists every row of `RecoveryTable.rows`, in order, with its summary and action.
    @Test func recoveryDocumentListsTheTable() throws {
        let text = try String(contentsOfFile: Self.specDirectory + "/RECOVERY.md", encoding: .utf8)
        let tableLines = text.split(separator: "\n").filter { $0.hasPrefix("| **R") }
        #expect(tableLines.count == RecoveryTable.rows.count)
        for (row, line) in zip(RecoveryTable.rows, tableLines) {
            let columns = line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            #expect(columns.first == "**\(row.label)**", "row order: \(line)")
            #expect(line.contains(row.summary), "\(row.label) summary must be quoted verbatim")
            let action: String
            switch row.action {
            case .createNew: action = "create new"
            case .open: action = "open"
            case .quarantineTornTail: action = "quarantine torn tail, then open"
            case .completeRollover: action = "complete the rollover, then open"
            case .refuse(let code): action = "refuse `\(code)`"
            }
            #expect(columns.last == action, "\(row.label) action")
        }
    }
}
