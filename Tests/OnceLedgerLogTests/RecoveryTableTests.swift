// Proves the recovery decision table (Spec/RECOVERY.md) is a partition and that the
// real scanner and engine follow it: (a) every combination of observed facts matches
// exactly one row; (b) for each row R1…R17 a real on-disk ledger (built with
// LogWriter on PosixStorage with 4 KiB segments, then damaged by flipping, zeroing,
// truncating, deleting, renaming or copying files) scans to that row, and
// LogEngine.open then does what the row says: refuses with the row's code and
// context (leaving every file unchanged), creates (R4), opens (R11), quarantines
// a torn tail to a side file and keeps everything before it and after it (R15), or
// completes an interrupted rollover (R17; its state made by a failing rename).
import Foundation
import OnceLedgerFormat
@_spi(Testing) import OnceLedgerLog
import OnceLedgerTestSupport
import Testing

@Suite struct RecoveryTableTests {
    static let bodyBytes = 300
    /// 12 records of 300 bytes per 4 KiB segment.
    static var configuration: LogConfiguration { LogConfiguration(segmentBytes: 4096) }
    /// Without the closing checkpoint, the last batch is covered by no acked-through.
    static var noCheckpoint: LogConfiguration {
        var configuration = LogConfiguration(segmentBytes: 4096)
        configuration.checkpointOnClose = false
        return configuration
    }

    static func bodies(_ count: Int, from start: Int = 0) -> [[UInt8]] {
        (start..<(start + count)).map { payload($0, bytes: bodyBytes) }
    }

    /// A ledger of 30 single-record batches: segments 1 and 2 full (12 each), segment 3 with 6.
    @discardableResult
    static func threeSegments(_ directory: String, configuration: LogConfiguration = configuration) throws -> [[UInt8]] {
        let written = bodies(30)
        try buildLedger(directory, configuration: configuration, batches: written.map { [$0] })
        #expect(segmentNumbers(directory) == [1, 2, 3])
        return written
    }

    // MARK: (a) the table is a partition

    @Test func everyCombinationMatchesExactlyOneRow() {
        var reached = Set<String>()
        for observation in RecoveryObservation.allCombinations {
            let rows = RecoveryTable.matchingRows(observation)
            #expect(rows.count == 1, "\(observation) matches \(rows.map(\.label))")
            if rows.count == 1 { reached.insert(rows[0].label) }
        }
        #expect(reached == Set(RecoveryTable.rows.map(\.label)), "every row is reachable from some combination")
    }

    @Test func rowsAreLabelledR1ThroughR17InOrder() {
        #expect(RecoveryTable.rows.map { String($0.label.prefix { $0 != " " }) } == (1...17).map { "R\($0)" })
    }

    // MARK: (b) each row from a real directory

    /// Scans, expects `row`, opens, expects the refusal `code`; the open must throw the
    /// scanner's error (same context) and change no file.
    @discardableResult
    func expectRefusal(
        _ directory: String, row: String, code: LedgerError.Code, configuration: LogConfiguration = configuration,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> LedgerError? {
        let report = try RecoveryScanner.scan(storage: PosixStorage(), directory: directory)
        #expect(report.row.label == row, "observation: \(report.observation)", sourceLocation: sourceLocation)
        #expect(report.row.action == .refuse(code), sourceLocation: sourceLocation)
        #expect(report.error?.code == code, sourceLocation: sourceLocation)
        let before = try contents(directory)
        let error = #expect(throws: LedgerError.self, sourceLocation: sourceLocation) {
            let engine = try LogEngine.open(directory: directory, configuration: configuration)
            try engine.close()
        }
        #expect(error?.code == code, "\(String(describing: error))", sourceLocation: sourceLocation)
        #expect(error == report.error, "open throws the scanner's error with its context", sourceLocation: sourceLocation)
        #expect(try contents(directory) == before, "a refused open changes nothing on disk", sourceLocation: sourceLocation)
        return error
    }

    /// Every file's bytes except the lock file's.
    func contents(_ directory: String) throws -> [String: [UInt8]] {
        var result: [String: [UInt8]] = [:]
        for name in fileNames(directory) where name != LedgerFileNames.lock {
            result[name] = try readFile(directory + "/" + name)
        }
        return result
    }

    @Test("R1 invalid-snapshot") func r1InvalidSnapshot() throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        try buildLedger(directory, configuration: Self.configuration, batches: Self.bodies(30).map { [$0] },
                        compactAfter: 19)
        let snapshot = try #require(snapshotPaths(directory).first)
        try flipByte(snapshot, at: FormatLimits.snapshotHeaderBytes + 12)
        let error = try expectRefusal(directory, row: "R1 invalid-snapshot", code: .invalidSnapshot)
        #expect(error?.path == snapshot)
    }

    @Test("R2 snapshot-unsupported-version") func r2SnapshotUnsupportedVersion() throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        try buildLedger(directory, configuration: Self.configuration, batches: Self.bodies(30).map { [$0] },
                        compactAfter: 19)
        let snapshot = try #require(snapshotPaths(directory).first)
        try patchVersion(snapshot, to: FormatLimits.snapshotFormatVersionsReadable.upperBound + 1)
        let error = try expectRefusal(directory, row: "R2 snapshot-unsupported-version", code: .unsupportedVersion)
        #expect(error?.path == snapshot)
    }

    @Test("R3 snapshot-foreign") func r3SnapshotForeign() throws {
        let directory = temporaryDirectory()
        let other = temporaryDirectory("r3other")
        defer {
            removeDirectory(directory)
            removeDirectory(other)
        }
        let batches = Self.bodies(30).map { [$0] }
        try buildLedger(directory, configuration: Self.configuration, batches: batches, compactAfter: 19)
        try buildLedger(other, configuration: Self.configuration, batches: batches, compactAfter: 19)
        let snapshot = try #require(snapshotPaths(directory).first)
        let foreign = try #require(snapshotPaths(other).first)
        #expect((snapshot as NSString).lastPathComponent == (foreign as NSString).lastPathComponent)
        try copyFile(foreign, snapshot)
        let error = try expectRefusal(directory, row: "R3 snapshot-foreign", code: .foreignLedger)
        #expect(error?.path == snapshot)
    }

    @Test("R4 empty") func r4Empty() throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let report = try RecoveryScanner.scan(storage: PosixStorage(), directory: directory)
        #expect(report.row.label == "R4 empty")
        #expect(report.row.action == .createNew)
        // Not creating: a typed refusal, and nothing written.
        let refused = #expect(throws: LedgerError.self) {
            try LogEngine.open(directory: directory, configuration: Self.configuration, createIfMissing: false).close()
        }
        #expect(refused?.code == .notALedger)
        #expect(refused?.path == directory)
        #expect(segmentNumbers(directory).isEmpty)
        // Creating: a new ledger with segment 1, usable at once.
        let engine = try LogEngine.open(directory: directory, configuration: Self.configuration)
        #expect(engine.recovery.row.label == "R4 empty")
        #expect(segmentNumbers(directory) == [1])
        let header = try walkSegment(segmentPath(directory, 1)).header
        #expect(header.ledgerID == engine.ledgerID)
        #expect(header.firstSequence == 1)
        #expect(try engine.appendAndWait([LogRecord(kind: .opaque, body: payload(0))]) == 1)
        try engine.close()
        let (reopened, bodies) = try reopenOpaque(directory, configuration: Self.configuration)
        #expect(reopened.recovery.row.label == "R11 clean")
        #expect(reopened.ledgerID == engine.ledgerID)
        #expect(bodies == [payload(0)])
        try reopened.close()
    }

    @Test("R5 missing-segment: a middle segment deleted") func r5MissingMiddleSegment() throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        try Self.threeSegments(directory)
        try FileManager.default.removeItem(atPath: segmentPath(directory, 2))
        let error = try expectRefusal(directory, row: "R5 missing-segment", code: .missingSegment)
        #expect(error?.segment == 2)
        #expect(error?.path == directory)
    }

    @Test("R5 missing-segment: the first segment deleted, no snapshot") func r5MissingFirstSegment() throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        try Self.threeSegments(directory)
        try FileManager.default.removeItem(atPath: segmentPath(directory, 1))
        let error = try expectRefusal(directory, row: "R5 missing-segment", code: .missingSegment)
        #expect(error?.segment == 2)
        #expect(error?.sequence == 1, "names the first sequence number nobody has")
    }

    @Test("R5 missing-segment: a snapshot and no segment") func r5SnapshotWithoutSegments() throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        try buildLedger(directory, configuration: Self.configuration, batches: Self.bodies(30).map { [$0] },
                        compactAfter: 29)
        for number in segmentNumbers(directory) {
            try FileManager.default.removeItem(atPath: segmentPath(directory, number))
        }
        try expectRefusal(directory, row: "R5 missing-segment", code: .missingSegment)
    }

    @Test("R6 corrupt-segment-header") func r6CorruptSegmentHeader() throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        try Self.threeSegments(directory)
        try flipByte(segmentPath(directory, 2), at: 20)
        let error = try expectRefusal(directory, row: "R6 corrupt-segment-header", code: .corruptSegmentHeader)
        #expect(error?.segment == 2)
        #expect(error?.offset == 0)
        #expect(error?.path == segmentPath(directory, 2))
    }

    @Test("R7 truncated-segment") func r7TruncatedSegment() throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        try Self.threeSegments(directory)
        try truncateFile(segmentPath(directory, 3), to: 2048)
        let error = try expectRefusal(directory, row: "R7 truncated-segment", code: .corruptSegmentHeader)
        #expect(error?.segment == 3)
        #expect(error?.offset == 2048, "names the size the file has")
        #expect(error?.path == segmentPath(directory, 3))
    }

    @Test("R8 segment-unsupported-version") func r8SegmentUnsupportedVersion() throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        try Self.threeSegments(directory)
        try patchVersion(segmentPath(directory, 2), to: FormatLimits.formatVersion + 1)
        let error = try expectRefusal(directory, row: "R8 segment-unsupported-version", code: .unsupportedVersion)
        #expect(error?.segment == 2)
        #expect(error?.path == segmentPath(directory, 2))
    }

    @Test("R9 foreign-segment") func r9ForeignSegment() throws {
        let directory = temporaryDirectory()
        let other = temporaryDirectory("r9other")
        defer {
            removeDirectory(directory)
            removeDirectory(other)
        }
        try Self.threeSegments(directory)
        try Self.threeSegments(other)
        try copyFile(segmentPath(other, 2), segmentPath(directory, 2))
        let error = try expectRefusal(directory, row: "R9 foreign-segment", code: .foreignLedger)
        #expect(error?.segment == 2)
        #expect(error?.path == segmentPath(directory, 2))
    }

    @Test("R10 chain-break: a valid record skips a sequence number") func r10SkippedSequence() throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        try buildLedger(directory, configuration: Self.noCheckpoint, batches: Self.bodies(5).map { [$0] })
        let path = segmentPath(directory, 1)
        let (header, records) = try walkSegment(path)
        let last = try #require(records.last)
        #expect(last.sequence == 5)
        // A checksum-valid record at the right position whose sequence number skips 6.
        let offset = last.offset + last.frameBytes
        var frame: [UInt8] = []
        RecordFrame.encode(
            into: &frame, sequence: 7, ackedThrough: 5, previousChain: last.checksum, kind: .opaque,
            flags: RecordHeader.flagBatchEnd, body: payload(7),
            position: RecordPosition(ledgerID: header.ledgerID, segment: 1, offset: UInt64(offset)))
        try overwrite(path, at: offset, with: frame)
        let error = try expectRefusal(directory, row: "R10 chain-break", code: .chainBreak,
                                      configuration: Self.noCheckpoint)
        #expect(error?.segment == 1)
        #expect(error?.offset == UInt64(offset))
        #expect(error?.sequence == 6, "names the sequence number that is missing")
    }

    @Test("R10 chain-break: a valid record does not continue the chain") func r10BrokenChainValue() throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        try buildLedger(directory, configuration: Self.noCheckpoint, batches: Self.bodies(5).map { [$0] })
        let path = segmentPath(directory, 1)
        let (header, records) = try walkSegment(path)
        let last = try #require(records.last)
        let offset = last.offset + last.frameBytes
        var frame: [UInt8] = []
        let wrongChain = last.checksum ^ 0x5a5a_5a5a
        RecordFrame.encode(
            into: &frame, sequence: 6, ackedThrough: 5, previousChain: wrongChain, kind: .opaque,
            flags: RecordHeader.flagBatchEnd, body: payload(6),
            position: RecordPosition(ledgerID: header.ledgerID, segment: 1, offset: UInt64(offset)))
        try overwrite(path, at: offset, with: frame)
        let error = try expectRefusal(directory, row: "R10 chain-break", code: .chainBreak,
                                      configuration: Self.noCheckpoint)
        #expect(error?.segment == 1)
        #expect(error?.offset == UInt64(offset))
        #expect(error?.sequence == 6)
        #expect(error?.expectedChecksum == last.checksum)
        #expect(error?.actualChecksum == wrongChain)
    }

    @Test("R10 chain-break: segments renumbered after one was deleted") func r10RenumberedSegment() throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        try Self.threeSegments(directory)
        try FileManager.default.removeItem(atPath: segmentPath(directory, 2))
        try FileManager.default.moveItem(atPath: segmentPath(directory, 3), toPath: segmentPath(directory, 2))
        let error = try expectRefusal(directory, row: "R10 chain-break", code: .chainBreak)
        #expect(error?.segment == 2)
        #expect(error?.offset == 0)
    }

    @Test("R11 clean") func r11Clean() throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        let written = try Self.threeSegments(directory)
        let report = try RecoveryScanner.scan(storage: PosixStorage(), directory: directory)
        #expect(report.row.label == "R11 clean")
        #expect(report.error == nil)
        let (engine, bodies) = try reopenOpaque(directory, configuration: Self.configuration)
        #expect(engine.recovery.row.label == "R11 clean")
        #expect(bodies == written)
        #expect(engine.lastSequence == report.lastSequence)
        try engine.close()
        #expect(!fileNames(directory).contains(where: LedgerFileNames.isTorn))
    }

    @Test("R11 clean: from a snapshot plus later segments") func r11CleanWithSnapshot() throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        let written = Self.bodies(40)
        try buildLedger(directory, configuration: Self.configuration, batches: written.map { [$0] }, compactAfter: 24)
        #expect(snapshotPaths(directory).count == 1)
        #expect(segmentNumbers(directory).first != 1, "compaction deleted covered segments")
        let report = try RecoveryScanner.scan(storage: PosixStorage(), directory: directory)
        #expect(report.row.label == "R11 clean")
        let (engine, bodies) = try reopenOpaque(directory, configuration: Self.configuration)
        #expect(bodies == written, "snapshot items then later records give back every body")
        try engine.close()
    }

    @Test("R12 corrupt-sealed") func r12CorruptSealed() throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        try Self.threeSegments(directory)
        let record = try walkSegment(segmentPath(directory, 1)).records[2]
        try flipByte(segmentPath(directory, 1), at: record.offset + FormatLimits.recordHeaderBytes + 40)
        let error = try expectRefusal(directory, row: "R12 corrupt-sealed", code: .corruptRecord)
        #expect(error?.segment == 1)
        #expect(error?.offset == UInt64(record.offset))
        #expect(error?.sequence == record.sequence)
        #expect(error?.actualChecksum == record.checksum, "the stored checksum")
        #expect(error?.expectedChecksum != nil && error?.expectedChecksum != record.checksum)
        #expect(error?.path == segmentPath(directory, 1))
    }

    @Test("R13 corrupt-covered-by-snapshot") func r13CorruptCoveredBySnapshot() throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        try buildLedger(directory, configuration: Self.noCheckpoint, batches: Self.bodies(30).map { [$0] },
                        compactAfter: 29)
        #expect(segmentNumbers(directory) == [3])
        let path = segmentPath(directory, 3)
        let records = try walkSegment(path).records
        // Records 25...30 (covered by the snapshot at 30), then the snapshot marker.
        #expect(records.first?.sequence == 25)
        let victim = records[1]
        #expect(victim.sequence == 26)
        // Damage record 26 and drop everything after it, so no later acked-through
        // proves it durable: only the snapshot does.
        try flipByte(path, at: victim.offset + FormatLimits.recordHeaderBytes + 7)
        try zeroRange(path, (victim.offset + victim.frameBytes)..<4096)
        let error = try expectRefusal(directory, row: "R13 corrupt-covered-by-snapshot", code: .corruptRecord,
                                      configuration: Self.noCheckpoint)
        #expect(error?.segment == 3)
        #expect(error?.offset == UInt64(victim.offset))
        #expect(error?.sequence == 26)
        #expect(error?.actualChecksum == victim.checksum)
    }

    @Test("R14 corrupt-acked") func r14CorruptAcked() throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        // Two batches in the last (only) segment; the second's acked-through covers the first.
        try buildLedger(directory, configuration: Self.noCheckpoint, batches: [[payload(0)], [payload(1)]])
        let path = segmentPath(directory, 1)
        let records = try walkSegment(path).records
        #expect(records.map(\.sequence) == [1, 2])
        #expect(records[1].ackedThrough == 1)
        try flipByte(path, at: records[0].offset + FormatLimits.recordHeaderBytes + 3)
        let error = try expectRefusal(directory, row: "R14 corrupt-acked", code: .corruptRecord,
                                      configuration: Self.noCheckpoint)
        #expect(error?.segment == 1)
        #expect(error?.offset == UInt64(FormatLimits.segmentHeaderBytes))
        #expect(error?.sequence == 1)
        #expect(error?.actualChecksum == records[0].checksum)
        #expect(error?.expectedChecksum != nil)
    }

    @Test("R14 corrupt-acked: the closing checkpoint covers the last batch") func r14CoveredByCheckpoint() throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        try buildLedger(directory, configuration: Self.configuration, batches: Self.bodies(3).map { [$0] })
        let path = segmentPath(directory, 1)
        let records = try walkSegment(path).records
        #expect(records.last?.kind == .checkpoint)
        try flipByte(path, at: records[2].offset + FormatLimits.recordHeaderBytes)
        let error = try expectRefusal(directory, row: "R14 corrupt-acked", code: .corruptRecord)
        #expect(error?.sequence == 3)
        #expect(error?.offset == UInt64(records[2].offset))
    }

    /// Checks row R15 end to end on `directory` (already damaged): the scan, the
    /// quarantine side file, zeros from the cut, the survivors, and that appends after
    /// reopening land at the cut and come back after another reopen.
    func expectTornTail(_ directory: String, survivors: [[UInt8]], configuration: LogConfiguration,
                        sourceLocation: SourceLocation = #_sourceLocation) throws {
        let report = try RecoveryScanner.scan(storage: PosixStorage(), directory: directory)
        #expect(report.row.label == "R15 torn-tail", "observation: \(report.observation)", sourceLocation: sourceLocation)
        #expect(report.error == nil, sourceLocation: sourceLocation)
        let torn = try #require(report.tornTail, sourceLocation: sourceLocation)
        let damaged = try readFile(torn.path)
        let cut = Int(torn.offset)
        #expect(damaged[Int(torn.endOffset)...].allSatisfy { $0 == 0 }, "the torn range reaches the last nonzero byte",
                sourceLocation: sourceLocation)

        let (engine, bodies) = try reopenOpaque(directory, configuration: configuration)
        #expect(engine.recovery.row.label == "R15 torn-tail", sourceLocation: sourceLocation)
        #expect(bodies == survivors, sourceLocation: sourceLocation)
        // The side file holds exactly the quarantined bytes.
        let side = directory + "/" + LedgerFileNames.torn(segment: torn.segment, offset: torn.offset)
        #expect(fileExists(side), sourceLocation: sourceLocation)
        #expect(try readFile(side) == Array(damaged[cut..<Int(torn.endOffset)]), sourceLocation: sourceLocation)
        // The segment is zero from the cut to its end.
        let after = try readFile(torn.path)
        #expect(after.count == damaged.count, sourceLocation: sourceLocation)
        #expect(Array(after[..<cut]) == Array(damaged[..<cut]), sourceLocation: sourceLocation)
        #expect(after[cut...].allSatisfy { $0 == 0 }, sourceLocation: sourceLocation)

        // Append after the cut; nothing may hide behind it.
        let added = [payload(900, bytes: Self.bodyBytes), payload(901, bytes: Self.bodyBytes)]
        for body in added { _ = try engine.appendAndWait([LogRecord(kind: .opaque, body: body)]) }
        try engine.close()
        let firstNew = try walkSegment(torn.path).records.first { $0.body == added[0] }
        #expect(firstNew?.offset == cut, "the next record goes exactly at the cut", sourceLocation: sourceLocation)
        let (reopened, again) = try reopenOpaque(directory, configuration: configuration)
        #expect(reopened.recovery.row.label == "R11 clean", sourceLocation: sourceLocation)
        #expect(again == survivors + added, sourceLocation: sourceLocation)
        try reopened.close()
        #expect(fileExists(side), "the side file is kept for the operator", sourceLocation: sourceLocation)
    }

    @Test("R15 torn-tail: a bad record followed by a valid one that does not cover it") func r15TornWithLaterValid() throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        let written = Self.bodies(5)
        // Batches: [0] [1] [2] [3 4]; record 5 (body 4) has acked-through 3, not covering record 4.
        try buildLedger(directory, configuration: Self.noCheckpoint,
                        batches: [[written[0]], [written[1]], [written[2]], [written[3], written[4]]])
        let path = segmentPath(directory, 1)
        let records = try walkSegment(path).records
        #expect(records[4].ackedThrough == 3)
        try flipByte(path, at: records[3].offset + FormatLimits.recordHeaderBytes + 50)
        let report = try RecoveryScanner.scan(storage: PosixStorage(), directory: directory)
        #expect(report.observation.laterValid == .notCovering)
        #expect(report.tornTail?.offset == UInt64(records[3].offset))
        #expect(report.tornTail?.expectedSequence == 4)
        try expectTornTail(directory, survivors: Array(written[0..<3]), configuration: Self.noCheckpoint)
    }

    @Test("R15 torn-tail: the last record half written") func r15TornLastRecord() throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        let written = Self.bodies(3)
        try buildLedger(directory, configuration: Self.noCheckpoint, batches: written.map { [$0] })
        let path = segmentPath(directory, 1)
        let last = try #require(try walkSegment(path).records.last)
        try zeroRange(path, (last.offset + last.frameBytes / 2)..<(last.offset + last.frameBytes))
        try expectTornTail(directory, survivors: Array(written[0..<2]), configuration: Self.noCheckpoint)
    }

    @Test("R15 torn-tail: garbage after the last record of a later segment") func r15GarbageAfterLast() throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        let written = try Self.threeSegments(directory, configuration: Self.noCheckpoint)
        let path = segmentPath(directory, 3)
        let last = try #require(try walkSegment(path).records.last)
        var generator = SeededRandom(seed: 15)
        try overwrite(path, at: last.offset + last.frameBytes + 64, with: generator.bytes(100))
        try expectTornTail(directory, survivors: written, configuration: Self.noCheckpoint)
    }

    // MARK: The newest segment (seal records, FORMAT §7.4)

    @Test("R16 missing-newest-segment: the last segment deleted") func r16NewestSegmentDeleted() throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        try Self.threeSegments(directory)
        try FileManager.default.removeItem(atPath: segmentPath(directory, 3))
        let error = try expectRefusal(directory, row: "R16 missing-newest-segment", code: .missingSegment)
        #expect(error?.segment == 3, "names the deleted segment")
        #expect(error?.message.contains("onceledger salvage") == true)
    }

    @Test("R16 missing-newest-segment: the two newest segments deleted") func r16TwoNewestSegmentsDeleted() throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        try Self.threeSegments(directory)
        try FileManager.default.removeItem(atPath: segmentPath(directory, 3))
        try FileManager.default.removeItem(atPath: segmentPath(directory, 2))
        let error = try expectRefusal(directory, row: "R16 missing-newest-segment", code: .missingSegment)
        #expect(error?.segment == 2, "the last remaining segment names its missing successor")
    }

    @Test("R16 missing-newest-segment: the newest segment deleted after a compaction") func r16NewestDeletedAfterCompaction() throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        try buildLedger(directory, configuration: Self.configuration, batches: Self.bodies(40).map { [$0] }, compactAfter: 24)
        let numbers = segmentNumbers(directory)
        #expect(numbers.count >= 2)
        try FileManager.default.removeItem(atPath: segmentPath(directory, numbers.last!))
        let error = try expectRefusal(directory, row: "R16 missing-newest-segment", code: .missingSegment)
        #expect(error?.segment == numbers.last)
    }

    /// A ledger of 22 records (two full segments), then an append whose rollover fails at
    /// the rename: segment 2 is sealed and segment 3 exists only as its `.tmp` file.
    static func interruptedRollover(_ directory: String) async throws -> [[UInt8]] {
        let written = bodies(2 * recordsPerSegment(segmentBytes: 4096, bodyBytes: bodyBytes))
        try buildLedger(directory, configuration: configuration, batches: written.map { [$0] })
        #expect(segmentNumbers(directory) == [1, 2])
        let engine = try LogEngine.open(directory: directory, configuration: configuration)
        let token = FaultInjection.install(.init(pathPrefix: segmentPath(directory, 3), call: .rename, errno: EIO, count: 100))
        defer { FaultInjection.remove(token) }
        await #expect(throws: LedgerError.self) { try await engine.append(kind: .opaque, body: payload(99, bytes: bodyBytes)) }
        try engine.close()
        #expect(segmentNumbers(directory) == [1, 2])
        #expect(fileExists(segmentPath(directory, 3) + LedgerFileNames.temporarySuffix))
        return written
    }

    /// Row R17 end to end: the scan, the open completing the rollover (the `.tmp` renamed
    /// into place, nothing lost), an append into the new segment, and a clean reopen.
    func expectCompletedRollover(_ directory: String, written: [[UInt8]],
                                 sourceLocation: SourceLocation = #_sourceLocation) throws {
        let report = try RecoveryScanner.scan(storage: PosixStorage(), directory: directory)
        #expect(report.row.label == "R17 interrupted-rollover", "\(report.observation)", sourceLocation: sourceLocation)
        #expect(report.pendingRollover?.successor == 3, sourceLocation: sourceLocation)
        let (engine, bodies) = try reopenOpaque(directory, configuration: Self.configuration)
        #expect(engine.recovery.row.label == "R17 interrupted-rollover", sourceLocation: sourceLocation)
        #expect(bodies == written, sourceLocation: sourceLocation)
        #expect(engine.activeSegment == 3, sourceLocation: sourceLocation)
        #expect(segmentNumbers(directory) == [1, 2, 3], sourceLocation: sourceLocation)
        #expect(!fileNames(directory).contains(where: LedgerFileNames.isTemporary), sourceLocation: sourceLocation)
        let extra = payload(123, bytes: Self.bodyBytes)
        _ = try engine.appendAndWait([LogRecord(kind: .opaque, body: extra)])
        try engine.close()
        let (again, bodiesAgain) = try reopenOpaque(directory, configuration: Self.configuration)
        #expect(again.recovery.row.label == "R11 clean", sourceLocation: sourceLocation)
        #expect(bodiesAgain == written + [extra], sourceLocation: sourceLocation)
        try again.close()
    }

    @Test("R17 interrupted-rollover: the open completes it") func r17InterruptedRollover() async throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        let written = try await Self.interruptedRollover(directory)
        try expectCompletedRollover(directory, written: written)
    }

    @Test("R17 interrupted-rollover: a damaged .tmp is rewritten in place, not deleted") func r17DamagedTemporary() async throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        let written = try await Self.interruptedRollover(directory)
        let temporary = segmentPath(directory, 3) + LedgerFileNames.temporarySuffix
        try flipByte(temporary, at: 45)  // the first sequence number: header checksum fails
        try flipByte(temporary, at: 1000)  // and a nonzero byte where records go
        try expectCompletedRollover(directory, written: written)
    }

    @Test("R10 chain-break: a sealed segment's seal zeroed") func r10SealMissing() throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        try Self.threeSegments(directory)
        let walked = try walkSegment(segmentPath(directory, 1))
        let seal = try #require(walked.records.last)
        #expect(seal.kind == .seal)
        let path = segmentPath(directory, 1)
        var bytes = try readFile(path)
        for index in seal.offset..<(seal.offset + seal.frameBytes) { bytes[index] = 0 }
        try writeFile(path, bytes)
        let error = try expectRefusal(directory, row: "R10 chain-break", code: .chainBreak)
        #expect(error?.segment == 1)
        #expect(error?.offset == UInt64(seal.offset))
    }

    @Test("R10 chain-break: bytes after a seal") func r10BytesAfterSeal() throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        try Self.threeSegments(directory)
        let walked = try walkSegment(segmentPath(directory, 2))
        let seal = try #require(walked.records.last)
        #expect(seal.kind == .seal)
        try flipByte(segmentPath(directory, 2), at: seal.offset + seal.frameBytes + 8)
        let error = try expectRefusal(directory, row: "R10 chain-break", code: .chainBreak)
        #expect(error?.segment == 2)
    }
}
