// Proves bad input gets a typed `LedgerError`, never a trap: garbage, truncated,
// empty, foreign and newer-version segment files; crafted seal records (malformed,
// naming another segment, followed by a record; appending one); random snapshot files; unrelated
// files (ignored); paths that are not usable directories; a missing ledger without
// creation; oversized, over-many, empty or reserved-kind appends (rejected before
// anything is written); and invalid configurations. Each case asserts the error
// code and the context fields an operator needs (path, segment, offset, limit,
// errno). Seeded random inputs (ONCELEDGER_FUZZ_ITERATIONS, default 20) print their
// seed on failure.
import Foundation
import OnceLedgerFormat
import OnceLedgerLog
import OnceLedgerTestSupport
import Testing

@Suite struct BadInputTests {
    static let bodyBytes = 300
    static var configuration: LogConfiguration { LogConfiguration(segmentBytes: 4096) }
    static var iterations: Int {
        ProcessInfo.processInfo.environment["ONCELEDGER_FUZZ_ITERATIONS"].flatMap(Int.init) ?? 20
    }

    static func bodies(_ count: Int) -> [[UInt8]] { (0..<count).map { payload($0, bytes: bodyBytes) } }

    /// Opens `directory`, expecting a `LedgerError`; returns it.
    static func openError(
        _ directory: String, configuration: LogConfiguration = configuration, createIfMissing: Bool = true,
        sourceLocation: SourceLocation = #_sourceLocation
    ) -> LedgerError? {
        return #expect(throws: LedgerError.self, sourceLocation: sourceLocation) {
            let engine = try LogEngine.open(
                directory: directory, configuration: configuration, createIfMissing: createIfMissing)
            try engine.close()
        }
    }

    // MARK: Garbage in the directory

    @Test func randomBytesNamedLikeASegment() throws {
        let lengths = [0, 1, 10, 63, 64, 65, 4095, 4096, 5000]
        for iteration in 0..<Self.iterations {
            let seed = UInt64(iteration)
            var generator = SeededRandom(seed: seed)
            let directory = temporaryDirectory("garbage\(iteration)")
            defer { removeDirectory(directory) }
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let length = lengths[iteration % lengths.count]
            var bytes = generator.bytes(length)
            // Every other file starts with the right magic, so the checksum must catch it.
            if iteration % 2 == 1 && length >= 8 { bytes.replaceSubrange(0..<8, with: SegmentHeader.magic) }
            let path = segmentPath(directory, 1)
            try writeFile(path, bytes)
            let error = Self.openError(directory)
            #expect(error?.code == .corruptSegmentHeader, "seed \(seed), length \(length): \(String(describing: error))")
            #expect(error?.segment == 1, "seed \(seed)")
            #expect(error?.offset == 0, "seed \(seed)")
            #expect(error?.path == path, "seed \(seed)")
            #expect(try readFile(path) == bytes, "seed \(seed): a refused open changes nothing")
        }
    }

    @Test func garbageSegmentAfterARealOne() throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        try buildLedger(directory, configuration: Self.configuration, batches: Self.bodies(3).map { [$0] })
        var generator = SeededRandom(seed: 2)
        try writeFile(segmentPath(directory, 2), generator.bytes(4096))
        let error = Self.openError(directory)
        #expect(error?.code == .corruptSegmentHeader)
        #expect(error?.segment == 2)
        #expect(error?.path == segmentPath(directory, 2))
    }

    @Test func unrelatedNamesAreIgnored() throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        let written = Self.bodies(3)
        try buildLedger(directory, configuration: Self.configuration, batches: written.map { [$0] })
        var generator = SeededRandom(seed: 3)
        let strangers = [
            "notes.txt", "wal-1.seg", "wal-00000000000000002.seg", "WAL-0000000000000002.SEG",
            "wal-000000000000000A.seg", "wal-0000000000000002.seg.bak", "snap-xyz.snap", "torn-notes",
        ]
        for name in strangers { try writeFile(directory + "/" + name, generator.bytes(100)) }
        try FileManager.default.createDirectory(atPath: directory + "/backup", withIntermediateDirectories: false)
        let before = try strangers.map { try readFile(directory + "/" + $0) }
        let (engine, bodies) = try reopenOpaque(directory, configuration: Self.configuration)
        #expect(engine.recovery.row.label == "R11 clean")
        #expect(bodies == written)
        #expect(engine.recovery.otherFiles == (strangers + ["backup"]).sorted())
        try engine.close()
        #expect(try strangers.map { try readFile(directory + "/" + $0) } == before, "strangers are left alone")
    }

    @Test func truncatedSegmentHeader() throws {
        for size in [0, 1, 40, FormatLimits.segmentHeaderBytes - 1] {
            let directory = temporaryDirectory("truncated\(size)")
            defer { removeDirectory(directory) }
            try buildLedger(directory, configuration: Self.configuration, batches: Self.bodies(3).map { [$0] })
            try truncateFile(segmentPath(directory, 1), to: size)
            let error = Self.openError(directory)
            #expect(error?.code == .corruptSegmentHeader, "size \(size)")
            #expect(error?.segment == 1)
            #expect(error?.offset == 0)
            #expect(error?.path == segmentPath(directory, 1))
        }
    }

    @Test func zeroLengthSegmentAfterARealOne() throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        try buildLedger(directory, configuration: Self.configuration, batches: Self.bodies(3).map { [$0] })
        try writeFile(segmentPath(directory, 2), [])
        let error = Self.openError(directory)
        #expect(error?.code == .corruptSegmentHeader)
        #expect(error?.segment == 2)
        #expect(error?.offset == 0)
    }

    @Test func segmentCopiedFromAnotherLedger() throws {
        let directory = temporaryDirectory()
        let other = temporaryDirectory("other")
        defer {
            removeDirectory(directory)
            removeDirectory(other)
        }
        let batches = Self.bodies(20).map { [$0] }
        let mine = try buildLedger(directory, configuration: Self.configuration, batches: batches)
        let theirs = try buildLedger(other, configuration: Self.configuration, batches: batches)
        #expect(mine != theirs)
        try copyFile(segmentPath(other, 2), segmentPath(directory, 2))
        let error = Self.openError(directory)
        #expect(error?.code == .foreignLedger)
        #expect(error?.segment == 2)
        #expect(error?.path == segmentPath(directory, 2))
        #expect(error?.message.contains(theirs.description) == true, "names the other ledger")
    }

    @Test(arguments: [UInt16(3), 7, UInt16.max, 0])
    func segmentWithUnsupportedVersion(version: UInt16) throws {
        let directory = temporaryDirectory("version\(version)")
        defer { removeDirectory(directory) }
        try buildLedger(directory, configuration: Self.configuration, batches: Self.bodies(3).map { [$0] })
        try patchVersion(segmentPath(directory, 1), to: version)
        let error = Self.openError(directory)
        #expect(error?.code == .unsupportedVersion)
        #expect(error?.segment == 1)
        #expect(error?.path == segmentPath(directory, 1))
        #expect(error?.message.contains("\(version)") == true)
    }

    @Test func snapshotOfRandomBytes() throws {
        for iteration in 0..<Self.iterations {
            let seed = UInt64(1000 + iteration)
            var generator = SeededRandom(seed: seed)
            let directory = temporaryDirectory("snapshot\(iteration)")
            defer { removeDirectory(directory) }
            try buildLedger(directory, configuration: Self.configuration, batches: Self.bodies(3).map { [$0] })
            let length = [0, 8, 79, 80, 200, 4096][iteration % 6]
            var bytes = generator.bytes(length)
            if iteration % 2 == 1 && length >= 8 { bytes.replaceSubrange(0..<8, with: SnapshotFile.magic) }
            let path = directory + "/" + LedgerFileNames.snapshot(2)
            try writeFile(path, bytes)
            let error = Self.openError(directory)
            #expect(error?.code == .invalidSnapshot, "seed \(seed), length \(length): \(String(describing: error))")
            #expect(error?.path == path, "seed \(seed)")
        }
    }

    @Test func randomDamageToALedgerNeverTraps() throws {
        var configuration = Self.configuration
        configuration.checkpointOnClose = false
        let written = Self.bodies(20)
        let batches = written.map { [$0] }
        for iteration in 0..<Self.iterations {
            let seed = UInt64(2000 + iteration)
            var generator = SeededRandom(seed: seed)
            let directory = temporaryDirectory("damage\(iteration)")
            defer { removeDirectory(directory) }
            try buildLedger(directory, configuration: configuration, batches: batches)
            let segment = UInt64.random(in: 1...2, using: &generator)
            let path = segmentPath(directory, segment)
            let offset = Int.random(in: 0..<4096, using: &generator)
            let count = min(4096 - offset, Int.random(in: 1...64, using: &generator))
            try overwrite(path, at: offset, with: generator.bytes(count))
            do {
                let (engine, bodies) = try reopenOpaque(directory, configuration: configuration)
                #expect(Array(written.prefix(bodies.count)) == bodies, "seed \(seed): only valid records come back")
                try engine.close()
            } catch let error as LedgerError {
                #expect(error.isCorruption || error.code == .unsupportedVersion, "seed \(seed): \(error)")
                #expect(error.path != nil, "seed \(seed): \(error)")
            }
        }
    }

    // MARK: Numbers at the top of their range (checksummed, so only a crafted file has them)

    /// A 4 KiB segment file: header, then `records` (sequence, body) chained from
    /// `previousChain`, then zeros.
    static func craftSegment(
        ledgerID: LedgerID, number: UInt64, firstSequence: UInt64, previousChain: UInt32,
        records: [(sequence: UInt64, body: [UInt8])] = []
    ) -> [UInt8] {
        var bytes = SegmentHeader(ledgerScopedTokens: true, ledgerID: ledgerID, segmentNumber: number, firstSequence: firstSequence,
                                  segmentBytes: 4096, previousChain: previousChain).encode()
        var chain = previousChain
        for record in records {
            chain = RecordFrame.encode(
                into: &bytes, sequence: record.sequence, ackedThrough: record.sequence - 1, previousChain: chain,
                kind: .opaque, flags: RecordHeader.flagBatchEnd, body: record.body,
                position: RecordPosition(ledgerID: ledgerID, segment: number, offset: UInt64(bytes.count)))
        }
        return bytes + [UInt8](repeating: 0, count: 4096 - bytes.count)
    }

    /// Segment 1 of a fresh ledger: records given as (kind, body), each its own batch.
    static func craftSegment1(ledgerID: LedgerID, _ records: [(RecordKind, [UInt8])]) -> [UInt8] {
        var bytes = SegmentHeader(ledgerScopedTokens: true, ledgerID: ledgerID, segmentNumber: 1, firstSequence: 1,
                                  segmentBytes: 4096, previousChain: 0).encode()
        var chain: UInt32 = 0
        for (index, record) in records.enumerated() {
            chain = RecordFrame.encode(
                into: &bytes, sequence: UInt64(index + 1), ackedThrough: UInt64(index), previousChain: chain,
                kind: record.0, flags: RecordHeader.flagBatchEnd, body: record.1,
                position: RecordPosition(ledgerID: ledgerID, segment: 1, offset: UInt64(bytes.count)))
        }
        return bytes + [UInt8](repeating: 0, count: 4096 - bytes.count)
    }

    /// Seal records no writer produces, with valid checksums: each is a chain break naming
    /// segment 1, never a trap, never an open that appends after a seal.
    @Test func craftedSealRecordsAreChainBreaks() throws {
        let ledgerID = LedgerID.random()
        let opaque = (RecordKind.opaque, payload(0))
        let seal = { (successor: UInt64) in (RecordKind.seal, RecordBody.seal(.init(successor: successor, timeMilliseconds: 1)).encode()) }
        let cases: [(String, [(RecordKind, [UInt8])])] = [
            ("a seal body of 8 bytes", [opaque, (.seal, [2, 0, 0, 0, 0, 0, 0, 0])]),
            ("a seal body with trailing bytes", [opaque, (.seal, seal(2).1 + [0])]),
            ("a seal naming segment 5", [opaque, seal(5)]),
            ("a seal naming segment 1 itself", [opaque, seal(1)]),
            ("a record after the seal", [opaque, seal(2), opaque]),
        ]
        for (what, records) in cases {
            let directory = temporaryDirectory()
            defer { removeDirectory(directory) }
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try writeFile(segmentPath(directory, 1), Self.craftSegment1(ledgerID: ledgerID, records))
            let before = try readFile(segmentPath(directory, 1))
            let error = Self.openError(directory)
            #expect(error?.code == .chainBreak, "\(what): \(String(describing: error))")
            #expect(error?.segment == 1, "\(what)")
            #expect(try readFile(segmentPath(directory, 1)) == before, "\(what): a refused open changes nothing")
        }
    }

    @Test func appendingASealRecordIsRefused() async throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        let engine = try LogEngine.open(directory: directory, configuration: Self.configuration)
        defer { try? engine.close() }
        let error = await #expect(throws: LedgerError.self) {
            try await engine.append(.seal(.init(successor: 2, timeMilliseconds: 1)))
        }
        #expect(error?.code == .invalidArgument)
        #expect(engine.lastSequence == 0, "nothing was appended")
    }

    static func writeSnapshot(_ directory: String, ledgerID: LedgerID, covered: UInt64, chain: UInt32) throws {
        // Ledgers built by this version derive ledger-scoped tokens; the snapshot says so too.
        let snapshot = SnapshotFile(ledgerID: ledgerID, coveredSequence: covered, chain: chain, ledgerScopedTokens: true,
                                    items: [])
        try writeFile(directory + "/" + LedgerFileNames.snapshot(covered), snapshot.encode())
    }

    @Test func snapshotCoveringTheLastSequenceNumber() throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        let ledgerID = try buildLedger(directory, configuration: Self.configuration, batches: [[payload(0)]])
        try Self.writeSnapshot(directory, ledgerID: ledgerID, covered: UInt64.max, chain: 0)
        let report = try RecoveryScanner.scan(storage: PosixStorage(), directory: directory)
        #expect(report.row.label == "R13 corrupt-covered-by-snapshot", "the log ends below what the snapshot covers")
        let error = Self.openError(directory)
        #expect(error?.code == .corruptRecord)
        #expect(error?.segment == 1)
    }

    @Test func recordAtTheLastSequenceNumber() throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let ledgerID = LedgerID.random()
        let chain: UInt32 = 0x1234_5678
        try Self.writeSnapshot(directory, ledgerID: ledgerID, covered: UInt64.max - 1, chain: chain)
        try writeFile(segmentPath(directory, 1), Self.craftSegment(
            ledgerID: ledgerID, number: 1, firstSequence: UInt64.max, previousChain: chain,
            records: [(UInt64.max, payload(0))]))
        let error = Self.openError(directory)
        #expect(error?.code == .chainBreak)
        #expect(error?.segment == 1)
        #expect(error?.offset == UInt64(FormatLimits.segmentHeaderBytes))
    }

    @Test func sequenceNumbersRunOut() async throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let ledgerID = LedgerID.random()
        let chain: UInt32 = 0x0bad_cafe
        try Self.writeSnapshot(directory, ledgerID: ledgerID, covered: UInt64.max - 2, chain: chain)
        try writeFile(segmentPath(directory, 1), Self.craftSegment(
            ledgerID: ledgerID, number: 1, firstSequence: UInt64.max - 1, previousChain: chain))
        let engine = try LogEngine.open(directory: directory, configuration: Self.configuration)
        #expect(engine.recovery.row.label == "R11 clean")
        #expect(try await engine.append(kind: .opaque, body: payload(0)) == UInt64.max - 1)
        let error = await #expect(throws: LedgerError.self) {
            try await engine.append(kind: .opaque, body: payload(1))
        }
        #expect(error?.code == .limitExceeded)
        #expect(error?.limit == "sequence")
        try engine.close()
        let (reopened, bodies) = try reopenOpaque(directory, configuration: Self.configuration)
        #expect(bodies == [payload(0)])
        try reopened.close()
    }

    @Test func segmentNumbersRunOut() async throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let ledgerID = LedgerID.random()
        try writeFile(segmentPath(directory, UInt64.max), Self.craftSegment(
            ledgerID: ledgerID, number: UInt64.max, firstSequence: 1, previousChain: 0))
        let engine = try LogEngine.open(directory: directory, configuration: Self.configuration)
        #expect(engine.recovery.row.label == "R11 clean")
        let perSegment = recordsPerSegment(segmentBytes: 4096, bodyBytes: Self.bodyBytes)
        var acknowledged: [[UInt8]] = []
        for index in 0..<perSegment {
            _ = try await engine.append(kind: .opaque, body: payload(index, bytes: Self.bodyBytes))
            acknowledged.append(payload(index, bytes: Self.bodyBytes))
        }
        let error = await #expect(throws: LedgerError.self) {
            try await engine.append(kind: .opaque, body: payload(99, bytes: Self.bodyBytes))
        }
        #expect(error?.code == .limitExceeded)
        #expect(error?.limit == "segmentNumber")
        #expect(error?.segment == UInt64.max)
        try engine.close()
        let (reopened, bodies) = try reopenOpaque(directory, configuration: Self.configuration)
        #expect(bodies == acknowledged)
        try reopened.close()
    }

    // MARK: Paths that are not ledgers

    @Test func missingPathWithoutCreation() throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        let error = Self.openError(directory, createIfMissing: false)
        #expect(error?.code == .notALedger)
        #expect(error?.path == directory)
        #expect(!fileExists(directory), "nothing is created")
    }

    @Test func emptyDirectoryWithoutCreation() throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let error = Self.openError(directory, createIfMissing: false)
        #expect(error?.code == .notALedger)
        #expect(error?.path == directory)
        #expect(segmentNumbers(directory).isEmpty)
    }

    @Test func refusedOpenWithoutCreationLeavesNoLockFile() throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        _ = Self.openError(directory, createIfMissing: false)
        #expect(!fileExists(directory + "/LOCK"), "a refused open must not leave files in a non-ledger directory")
    }

    @Test func foreignTmpNamesAreLeftAlone() throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        _ = try buildLedger(directory, configuration: Self.configuration, batches: [Self.bodies(2)])
        // A user's directory and file ending in .tmp are not ours: open must neither fail on
        // them (EISDIR) nor delete them. Our own leftover temporary file is deleted.
        try FileManager.default.createDirectory(atPath: directory + "/scratch.tmp", withIntermediateDirectories: true)
        try Data("mine".utf8).write(to: URL(fileURLWithPath: directory + "/notes.tmp"))
        try Data("half".utf8).write(to: URL(fileURLWithPath: directory + "/wal-0000000000000002.seg.tmp"))
        let (engine, recovered) = try reopenOpaque(directory, configuration: Self.configuration)
        try engine.close()
        #expect(recovered == Self.bodies(2))
        #expect(fileExists(directory + "/scratch.tmp"))
        #expect(fileExists(directory + "/notes.tmp"))
        #expect(!fileExists(directory + "/wal-0000000000000002.seg.tmp"))
    }

    @Test func snapshotWhoseNameDisagreesWithItsHeaderIsInvalid() throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        _ = try buildLedger(directory, configuration: Self.configuration, batches: [Self.bodies(2), Self.bodies(1)],
                            compactAfter: 0)
        let names = try FileManager.default.contentsOfDirectory(atPath: directory)
        let snapshot = try #require(names.first { $0.hasPrefix("snap-") })
        // Renamed to claim it covers more than its header says.
        try FileManager.default.moveItem(atPath: directory + "/" + snapshot,
                                         toPath: directory + "/" + LedgerFileNames.snapshot(999))
        let report = try RecoveryScanner.scan(storage: PosixStorage(), directory: directory)
        #expect(report.row.label.hasPrefix("R1 "))
        #expect(report.error?.code == .invalidSnapshot)
        #expect(Self.openError(directory)?.code == .invalidSnapshot)
    }

    /// Root ignores permission bits, so chmod 000 proves nothing there; the
    /// file-instead-of-directory tests below cover unusable paths as root too.
    @Test(.enabled(if: geteuid() != 0, "running as root: permission bits do not apply"))
    func unreadableDirectory() throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        try buildLedger(directory, configuration: Self.configuration, batches: Self.bodies(3).map { [$0] })
        #expect(chmod(directory, 0) == 0)
        let error = Self.openError(directory)
        #expect(error?.code == .io)
        #expect(error?.errno == EACCES)
        #expect(error?.path?.hasPrefix(directory) == true)
    }

    @Test(arguments: [true, false])
    func fileInsteadOfDirectory(createIfMissing: Bool) throws {
        let path = temporaryDirectory("file\(createIfMissing)")
        defer { removeDirectory(path) }
        try writeFile(path, Array("not a directory".utf8))
        let error = Self.openError(path, createIfMissing: createIfMissing)
        #expect(error?.code == .io)
        #expect(error?.errno == ENOTDIR)
        #expect(error?.path?.hasPrefix(path) == true)
        #expect(try readFile(path) == Array("not a directory".utf8))
    }

    @Test func directoryBelowAFile() throws {
        let file = temporaryDirectory()
        defer { removeDirectory(file) }
        try writeFile(file, [1, 2, 3])
        let error = Self.openError(file + "/ledger")
        #expect(error?.code == .io)
        #expect(error?.errno == ENOTDIR)
        #expect(error?.path == file + "/ledger")
    }

    // MARK: Appends

    @Test func oversizedRecordBodyIsRejectedBeforeWriting() async throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        let engine = try LogEngine.open(directory: directory, configuration: Self.configuration)
        _ = try await engine.append(kind: .opaque, body: payload(0))
        let segmentBefore = try readFile(segmentPath(directory, 1))
        let limit = Int(Self.configuration.recordBodyBytesMax)
        let big = [UInt8](repeating: 7, count: limit + 1)

        let single = await #expect(throws: LedgerError.self) { try await engine.append(kind: .opaque, body: big) }
        #expect(single?.code == .limitExceeded)
        #expect(single?.limit == "recordBodyBytesMax")
        // One bad record in a group rejects the whole group.
        let group = await #expect(throws: LedgerError.self) {
            try await engine.append([LogRecord(kind: .opaque, body: payload(1)), LogRecord(kind: .opaque, body: big)])
        }
        #expect(group?.code == .limitExceeded)
        let typed = await #expect(throws: LedgerError.self) { try await engine.append(.opaque(big)) }
        #expect(typed?.code == .limitExceeded)
        let blocking = #expect(throws: LedgerError.self) {
            try engine.appendAndWait([LogRecord(kind: .opaque, body: big)])
        }
        #expect(blocking?.code == .limitExceeded)
        let huge = await #expect(throws: LedgerError.self) {
            try await engine.append(kind: .opaque, body: [UInt8](repeating: 1, count: Int(FormatLimits.recordBodyBytesMax) + 1))
        }
        #expect(huge?.code == .limitExceeded)

        #expect(engine.lastSequence == 1, "nothing was appended")
        #expect(engine.poisonError == nil, "bad input does not poison the ledger")
        #expect(try readFile(segmentPath(directory, 1)) == segmentBefore, "nothing was written")
        // A body of exactly the limit still goes in (it needs an empty segment: the seal
        // closing segment 1 takes sequence 2).
        #expect(try await engine.append(kind: .opaque, body: [UInt8](repeating: 9, count: limit)) == 3)
        try engine.close()
        let (reopened, bodies) = try reopenOpaque(directory, configuration: Self.configuration)
        #expect(bodies == [payload(0), [UInt8](repeating: 9, count: limit)])
        try reopened.close()
    }

    @Test func tooManyRecordsInOneAppend() async throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        var configuration = Self.configuration
        configuration.appendRecordsMax = 4
        let engine = try LogEngine.open(directory: directory, configuration: configuration)
        let error = await #expect(throws: LedgerError.self) {
            try await engine.append((0..<5).map { LogRecord(kind: .opaque, body: payload($0)) })
        }
        #expect(error?.code == .limitExceeded)
        #expect(error?.limit == "appendRecordsMax")
        #expect(engine.lastSequence == 0)
        #expect(try await engine.append((0..<4).map { LogRecord(kind: .opaque, body: payload($0)) }) == 1)
        try engine.close()
    }

    @Test func emptyAppendAndReservedKind() async throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        let engine = try LogEngine.open(directory: directory, configuration: Self.configuration)
        let empty = await #expect(throws: LedgerError.self) { try await engine.append([]) }
        #expect(empty?.code == .invalidArgument)
        let emptyBlocking = #expect(throws: LedgerError.self) { try engine.appendAndWait([]) }
        #expect(emptyBlocking?.code == .invalidArgument)
        let reserved = await #expect(throws: LedgerError.self) {
            try await engine.append(kind: RecordKind(rawValue: 0), body: [1])
        }
        #expect(reserved?.code == .invalidArgument)
        #expect(engine.lastSequence == 0)
        #expect(engine.poisonError == nil)
        // An empty body is a valid record.
        #expect(try await engine.append(kind: .opaque, body: []) == 1)
        try engine.close()
        let (reopened, bodies) = try reopenOpaque(directory, configuration: Self.configuration)
        #expect(bodies == [[]])
        try reopened.close()
    }

    @Test func appendAfterCloseIsTyped() async throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        let engine = try LogEngine.open(directory: directory, configuration: Self.configuration)
        try engine.close()
        try engine.close()
        let error = await #expect(throws: LedgerError.self) { try await engine.append(kind: .opaque, body: [1]) }
        #expect(error?.code == .closed)
    }

    // MARK: Configuration

    static let invalidConfigurations: [(String, LogConfiguration)] = {
        func with(_ change: (inout LogConfiguration) -> Void) -> LogConfiguration {
            var configuration = LogConfiguration(segmentBytes: 4096)
            change(&configuration)
            return configuration
        }
        return [
            ("segment below the minimum", with { $0.segmentBytes = 2048 }),
            ("segment not a multiple of 8", with { $0.segmentBytes = 4100 }),
            ("segment above the maximum", with { $0.segmentBytes = FormatLimits.segmentBytesMax + 8 }),
            ("segment of zero bytes", with { $0.segmentBytes = 0 }),
            ("body limit above the format's", with {
                $0.segmentBytes = 64 << 20
                $0.recordBodyBytesMax = FormatLimits.recordBodyBytesMax + 1
            }),
            ("largest record does not fit a segment", with { $0.recordBodyBytesMax = 4096 }),
            ("no records per batch", with { $0.batchRecordsMax = 0 }),
            ("batch bytes below one record", with { $0.batchBytesMax = 100 }),
            ("no records per append", with { $0.appendRecordsMax = 0 }),
            ("append larger than a batch", with {
                $0.batchRecordsMax = 8
                $0.appendRecordsMax = 9
            }),
            ("queue smaller than an append", with { $0.queuedRecordsMax = $0.appendRecordsMax - 1 }),
        ]
    }()

    @Test(arguments: invalidConfigurations.map(\.0))
    func invalidConfigurationIsRejected(name: String) throws {
        let configuration = try #require(Self.invalidConfigurations.first { $0.0 == name }?.1)
        let directory = temporaryDirectory("config\(name)")
        defer { removeDirectory(directory) }
        #expect(throws: LedgerError.self) { try configuration.validate() }
        let error = Self.openError(directory, configuration: configuration)
        #expect(error?.code == .invalidArgument, "\(name): \(String(describing: error))")
        #expect(!fileExists(directory), "\(name): nothing is created for a bad configuration")
    }

    @Test func defaultAndSmallConfigurationsAreValid() throws {
        try LogConfiguration().validate()
        try LogConfiguration(segmentBytes: 4096).validate()
        try LogConfiguration(segmentBytes: FormatLimits.segmentBytesMax).validate()
    }
}
