// Proves the engine survives failing system calls on real files: faults are injected
// at the one syscall choke point (`FaultInjection`, scoped to each test's own temp
// directory so suites run in parallel) — EIO/ENOSPC on write and fdatasync, failures
// at every step of a segment rollover, of a compaction and of a torn-tail quarantine,
// short writes and EINTR. A failing append throws a typed `.io` error with the errno
// and context; the engine is then poisoned (later calls throw `.poisoned` without
// reaching the disk, and a failed fsync is never retried); `close()` works; and a
// reopen never refuses and returns every acknowledged record, bytes equal, in order.
// Short writes and EINTR must be invisible: no error, identical bytes.
import Foundation
import OnceLedgerFormat
@_spi(Testing) import OnceLedgerLog
import OnceLedgerTestSupport
import Testing

@Suite struct FaultInjectionTests {
    static let bodyBytes = 300
    static var configuration: LogConfiguration { LogConfiguration(segmentBytes: 4096) }
    /// 12 records of 300 bytes fill one 4 KiB segment.
    static var perSegment: Int { recordsPerSegment(segmentBytes: 4096, bodyBytes: bodyBytes) }

    static func body(_ index: Int) -> [UInt8] { payload(index, bytes: bodyBytes) }

    /// Appends one record per call (one batch each); returns the acknowledged bodies.
    static func appendAcknowledged(_ engine: LogEngine, _ range: Range<Int>) async throws -> [[UInt8]] {
        var acknowledged: [[UInt8]] = []
        for index in range {
            let sequence = try await engine.append(kind: .opaque, body: body(index))
            #expect(sequence == engine.lastSequence)
            acknowledged.append(body(index))
        }
        return acknowledged
    }

    /// After a failure: every later call throws `.poisoned` and makes no write, sync,
    /// rename or unlink (guard rules would fire); `close()` works and writes nothing.
    static func expectPoisonedThenClose(_ engine: LogEngine, directory: String) async throws {
        let guards = [FaultInjection.Call.write, .fdatasync, .fsync, .rename, .unlink].map {
            FaultInjection.install(.init(pathPrefix: directory, call: $0, errno: EIO, count: 1))
        }
        defer { guards.forEach(FaultInjection.remove) }
        for index in 0..<3 {
            let error = await #expect(throws: LedgerError.self) {
                try await engine.append(kind: .opaque, body: body(500 + index))
            }
            #expect(error?.code == .poisoned)
        }
        let blocking = #expect(throws: LedgerError.self) {
            try engine.appendAndWait([LogRecord(kind: .opaque, body: body(600))])
        }
        #expect(blocking?.code == .poisoned)
        let compaction = await #expect(throws: LedgerError.self) { try await engine.compact { _ in [] } }
        #expect(compaction?.code == .poisoned)
        #expect(engine.poisonError?.code == .poisoned)
        try engine.close()
        for token in guards {
            #expect(FaultInjection.fired(token) == 0, "a poisoned engine must not touch the disk")
        }
    }

    /// Reopens (which must not refuse), checks every acknowledged body comes back,
    /// then appends one more and checks it survives another reopen.
    static func expectReopenRecovers(
        _ directory: String, acknowledged: [[UInt8]], unacknowledged: [[UInt8]],
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let (engine, bodies) = try reopenOpaque(directory, configuration: configuration)
        let label = engine.recovery.row.label
        #expect(label == "R11 clean" || label == "R15 torn-tail" || label == "R17 interrupted-rollover", "got \(label)",
                sourceLocation: sourceLocation)
        expectRecovered(bodies, acknowledged: acknowledged, unacknowledged: unacknowledged,
                        sourceLocation: sourceLocation)
        #expect(!fileNames(directory).contains(where: LedgerFileNames.isTemporary),
                "leftover temporary files are deleted on open", sourceLocation: sourceLocation)
        let extra = body(999)
        _ = try engine.appendAndWait([LogRecord(kind: .opaque, body: extra)])
        try engine.close()
        let (again, bodiesAgain) = try reopenOpaque(directory, configuration: configuration)
        #expect(again.recovery.row.label == "R11 clean", sourceLocation: sourceLocation)
        #expect(bodiesAgain == bodies + [extra], sourceLocation: sourceLocation)
        try again.close()
    }

    // MARK: Write

    @Test(arguments: [EIO, ENOSPC])
    func writeFailurePoisonsAndReopenRecovers(errno: Int32) async throws {
        let directory = temporaryDirectory("write\(errno)")
        defer { removeDirectory(directory) }
        let engine = try LogEngine.open(directory: directory, configuration: Self.configuration)
        let acknowledged = try await Self.appendAcknowledged(engine, 0..<5)
        let token = FaultInjection.install(.init(pathPrefix: directory, call: .write, errno: errno))
        defer { FaultInjection.remove(token) }
        let failing = [Self.body(100)]
        let error = await #expect(throws: LedgerError.self) {
            try await engine.append(kind: .opaque, body: failing[0])
        }
        #expect(error?.code == .io)
        #expect(error?.errno == errno)
        #expect(error?.path == segmentPath(directory, 1))
        #expect(error?.offset == UInt64(FormatLimits.segmentHeaderBytes + 5 * frameBytes(Self.bodyBytes)))
        #expect(FaultInjection.fired(token) == 1)
        #expect(engine.poisonError?.errno == errno, "the poison keeps the original errno")
        try await Self.expectPoisonedThenClose(engine, directory: directory)
        FaultInjection.remove(token)
        try Self.expectReopenRecovers(directory, acknowledged: acknowledged, unacknowledged: failing)
    }

    /// The batch (3 × 4 KiB bodies after four small records) is cut in half: the kept
    /// part ends inside the batch's second record.
    @Test func partialWriteThenEIOLeavesARecoverableTail() async throws {
        let directory = temporaryDirectory("partial")
        defer { removeDirectory(directory) }
        let configuration = LogConfiguration(segmentBytes: 1 << 20)
        let engine = try LogEngine.open(directory: directory, configuration: configuration)
        let acknowledged = try await Self.appendAcknowledged(engine, 0..<4)
        // The batch's pwrite writes half its bytes, then the continuation fails (both
        // rules count every write; the older one fires first).
        let short = FaultInjection.install(.init(pathPrefix: directory, call: .write, errno: FaultInjection.shortWrite))
        let eio = FaultInjection.install(.init(pathPrefix: directory, call: .write, errno: EIO, after: 1))
        defer {
            FaultInjection.remove(short)
            FaultInjection.remove(eio)
        }
        let failing = (100..<103).map { payload($0, bytes: 4_000) }
        let error = await #expect(throws: LedgerError.self) {
            try await engine.append(failing.map { LogRecord(kind: .opaque, body: $0) })
        }
        #expect(error?.code == .io)
        #expect(error?.errno == EIO)
        #expect(error?.offset == UInt64(FormatLimits.segmentHeaderBytes + 4 * frameBytes(Self.bodyBytes)),
                "the error names the batch's offset")
        #expect(FaultInjection.fired(short) == 1)
        #expect(FaultInjection.fired(eio) == 1)
        try await Self.expectPoisonedThenClose(engine, directory: directory)
        FaultInjection.remove(short)
        FaultInjection.remove(eio)
        // Half a batch on disk, never synced: a torn tail, never a refusal.
        let report = try RecoveryScanner.scan(storage: PosixStorage(), directory: directory)
        #expect(report.row.label == "R15 torn-tail")
        try Self.expectReopenRecovers(directory, acknowledged: acknowledged, unacknowledged: failing)
    }

    // MARK: fdatasync

    @Test(arguments: [EIO, ENOSPC])
    func fdatasyncFailureIsNeverRetried(errno: Int32) async throws {
        let directory = temporaryDirectory("fdatasync\(errno)")
        defer { removeDirectory(directory) }
        let engine = try LogEngine.open(directory: directory, configuration: Self.configuration)
        let acknowledged = try await Self.appendAcknowledged(engine, 0..<5)
        // Would fail every fdatasync: if anything retried, `fired` would exceed 1.
        let token = FaultInjection.install(.init(pathPrefix: directory, call: .fdatasync, errno: errno, count: 100))
        defer { FaultInjection.remove(token) }
        let failing = [Self.body(100)]
        let error = await #expect(throws: LedgerError.self) {
            try await engine.append(kind: .opaque, body: failing[0])
        }
        #expect(error?.code == .io)
        #expect(error?.errno == errno)
        #expect(error?.path == segmentPath(directory, 1))
        #expect(engine.durableSequence == 5, "the failed batch is not reported durable")
        try await Self.expectPoisonedThenClose(engine, directory: directory)
        #expect(FaultInjection.fired(token) == 1, "a failed fdatasync is never retried, not even by close")
        FaultInjection.remove(token)
        // The written-but-unsynced record may or may not come back; the acknowledged ones must.
        try Self.expectReopenRecovers(directory, acknowledged: acknowledged, unacknowledged: failing)
    }

    // MARK: Segment rollover

    enum RolloverStep: String, CaseIterable, Sendable, CustomTestStringConvertible {
        /// Preallocating the new segment runs out of space.
        case preallocate
        /// `fsync` of the new segment (under its temporary name).
        case segmentFsync
        /// `rename` of the temporary name to the segment name.
        case rename
        /// `fsync` of the directory after the rename (the rollover's third fsync: the
        /// temporary file's, the directory's before the seal, then this one).
        case directoryFsync
        var testDescription: String { rawValue }

        /// A rule that would keep failing (count 100): `fired == 1` afterwards proves
        /// the failed call was not retried.
        func rule(_ directory: String, segment: UInt64) -> FaultInjection.Rule {
            let newSegment = segmentPath(directory, segment)
            switch self {
            case .preallocate: return .init(pathPrefix: newSegment, call: .write, errno: ENOSPC, count: 100)
            case .segmentFsync: return .init(pathPrefix: newSegment, call: .fsync, errno: EIO, count: 100)
            case .rename: return .init(pathPrefix: newSegment, call: .rename, errno: EIO, count: 100)
            // Appends only fdatasync, so the rollover's third fsync is the directory's after the
            // rename (the second one, before the seal, is `sealStepFailure…`'s; creating a ledger
            // writes no seal, and its test counts fsyncs itself).
            case .directoryFsync: return .init(pathPrefix: directory, call: .fsync, errno: EIO, after: 2, count: 100)
            }
        }

        var errno: Int32 { self == .preallocate ? ENOSPC : EIO }
    }

    /// `straddle`: the failing append is a group whose first record still fits the
    /// old segment (it is flushed and synced there before the rollover fails).
    @Test(arguments: RolloverStep.allCases, [false, true])
    func rolloverFailurePoisonsAndReopenRecovers(step: RolloverStep, straddle: Bool) async throws {
        let directory = temporaryDirectory("rollover\(step.rawValue)\(straddle)")
        defer { removeDirectory(directory) }
        let engine = try LogEngine.open(directory: directory, configuration: Self.configuration)
        let before = straddle ? Self.perSegment - 1 : Self.perSegment
        let acknowledged = try await Self.appendAcknowledged(engine, 0..<before)
        #expect(engine.activeSegment == 1)
        let token = FaultInjection.install(step.rule(directory, segment: 2))
        defer { FaultInjection.remove(token) }
        let failing = straddle ? [Self.body(100), Self.body(101)] : [Self.body(100)]
        let error = await #expect(throws: LedgerError.self) {
            try await engine.append(failing.map { LogRecord(kind: .opaque, body: $0) })
        }
        #expect(FaultInjection.fired(token) == 1)
        #expect(error?.code == .io)
        #expect(error?.errno == step.errno)
        switch step {
        case .preallocate, .segmentFsync, .rename:
            #expect(error?.path == segmentPath(directory, 2) + LedgerFileNames.temporarySuffix)
            #expect(!fileExists(segmentPath(directory, 2)), "an unfinished segment is never under its real name")
        case .directoryFsync:
            #expect(error?.path == directory)
            #expect(fileExists(segmentPath(directory, 2)))
        }
        try await Self.expectPoisonedThenClose(engine, directory: directory)
        #expect(FaultInjection.fired(token) == 1, "the failed step was not retried")
        FaultInjection.remove(token)
        // Segment 1 was sealed (naming segment 2) before the rename: a failed rename leaves
        // the interrupted rollover the next open completes; no step leaves a refusal.
        let report = try RecoveryScanner.scan(storage: PosixStorage(), directory: directory)
        #expect(report.row.label == (step == .rename ? "R17 interrupted-rollover" : step == .directoryFsync ? "R11 clean" : "R11 clean"),
                "\(report.observation)")
        try Self.expectReopenRecovers(directory, acknowledged: acknowledged, unacknowledged: failing)
    }

    enum SealStep: String, CaseIterable, Sendable, CustomTestStringConvertible {
        /// The directory `fsync` that makes the new segment's temporary name durable before the seal.
        case temporaryNameFsync
        /// Writing (and syncing) the seal record into the old segment.
        case sealWrite
        var testDescription: String { rawValue }
    }

    /// The rollover steps between creating the new segment's temporary file and renaming
    /// it (FORMAT §7.4): a failure poisons the writer before the seal is durable, so the
    /// next open sees an unsealed last segment (R11), deletes the `.tmp` and loses nothing.
    @Test(arguments: SealStep.allCases)
    func sealStepFailurePoisonsAndReopenRecovers(step: SealStep) async throws {
        let directory = temporaryDirectory("seal\(step.rawValue)")
        defer { removeDirectory(directory) }
        let engine = try LogEngine.open(directory: directory, configuration: Self.configuration)
        let acknowledged = try await Self.appendAcknowledged(engine, 0..<Self.perSegment)
        #expect(engine.activeSegment == 1)
        let rule: FaultInjection.Rule = switch step {
        // The rollover's first fsync is the temporary file's; the second, the directory's.
        case .temporaryNameFsync: .init(pathPrefix: directory, call: .fsync, errno: EIO, after: 1, count: 100)
        // After the appends, the only write to segment 1 is the seal.
        case .sealWrite: .init(pathPrefix: segmentPath(directory, 1), call: .write, errno: EIO, count: 100)
        }
        let token = FaultInjection.install(rule)
        defer { FaultInjection.remove(token) }
        let failing = [Self.body(100)]
        let error = await #expect(throws: LedgerError.self) {
            try await engine.append(failing.map { LogRecord(kind: .opaque, body: $0) })
        }
        // Before the seal, a failure removes the `.tmp` at once (FORMAT §2.3), and that
        // cleanup's directory fsync fails too under this rule; from the seal on, the
        // `.tmp` is kept, because a durable seal may name it.
        let fired = step == .temporaryNameFsync ? 2 : 1
        #expect(FaultInjection.fired(token) == fired)
        #expect(error?.code == .io)
        #expect(!fileExists(segmentPath(directory, 2)), "the new segment is renamed only after the seal")
        #expect(fileExists(segmentPath(directory, 2) + LedgerFileNames.temporarySuffix) == (step == .sealWrite))
        try await Self.expectPoisonedThenClose(engine, directory: directory)
        #expect(FaultInjection.fired(token) == fired, "the failed step was not retried")
        FaultInjection.remove(token)
        let report = try RecoveryScanner.scan(storage: PosixStorage(), directory: directory)
        #expect(report.row.label == "R11 clean", "\(report.observation)")
        try Self.expectReopenRecovers(directory, acknowledged: acknowledged, unacknowledged: failing)
    }

    /// Creating a ledger is a rollover to segment 1: a failure there is a typed error
    /// and the next open succeeds (creating afresh, or opening the empty segment).
    /// For `.directoryFsync`, every fsync under the directory during creation is
    /// failed in turn (the n-th for n = 0, 1, …) until one passes with none failing,
    /// and one of them must be the directory fsync after the segment's rename.
    @Test(arguments: RolloverStep.allCases)
    func failureWhileCreatingALedgerThenCleanOpen(step: RolloverStep) throws {
        var sawDirectoryFsyncAfterRename = false
        for after in 0..<10 {
            let directory = temporaryDirectory("create\(step.rawValue)\(after)")
            defer { removeDirectory(directory) }
            var rule = step.rule(directory, segment: 1)
            rule.after = after
            let token = FaultInjection.install(rule)
            defer { FaultInjection.remove(token) }
            var error: LedgerError?
            do {
                try LogEngine.open(directory: directory, configuration: Self.configuration).close()
            } catch let caught as LedgerError {
                error = caught
            }
            let fired = FaultInjection.fired(token)
            FaultInjection.remove(token)
            if fired == 0 {
                #expect(error == nil)
                #expect(step == .directoryFsync, "the \(step) fault must fire on the first try")
                break
            }
            // A creation failing before its rename unlinks its .tmp and fsyncs the
            // directory once (Spec/FORMAT.md §2.3); this broad rule fails that fsync too.
            let cleanup = step == .directoryFsync && error?.path?.hasSuffix(LedgerFileNames.temporarySuffix) == true ? 1 : 0
            #expect(fired == 1 + cleanup, "the failed step was not retried")
            #expect(error?.code == .io)
            #expect(error?.errno == step.errno)
            let segmentExists = fileExists(segmentPath(directory, 1))
            if error?.path == directory && segmentExists { sawDirectoryFsyncAfterRename = true }

            let (engine, bodies) = try reopenOpaque(directory, configuration: Self.configuration)
            #expect(bodies.isEmpty)
            #expect(engine.recovery.row.label == (segmentExists ? "R11 clean" : "R4 empty"))
            #expect(try engine.appendAndWait([LogRecord(kind: .opaque, body: Self.body(0))]) == 1)
            try engine.close()
            #expect(!fileNames(directory).contains(where: LedgerFileNames.isTemporary))
            let (again, bodiesAgain) = try reopenOpaque(directory, configuration: Self.configuration)
            #expect(bodiesAgain == [Self.body(0)])
            try again.close()
            if step != .directoryFsync { break }
        }
        if step == .directoryFsync { #expect(sawDirectoryFsyncAfterRename) }
    }

    /// Many concurrent appenders share batches (which cross segment rollovers, so
    /// one batch may take several fdatasyncs); the fourth fdatasync fails. Every
    /// appender gets an answer: success (then its record is durable), `.io` (its batch
    /// failed) or `.poisoned` (queued behind it). Successes are exactly sequence
    /// numbers 1...k (but those of the seal records closing the segments), and all of
    /// them come back after reopening.
    @Test func concurrentAppendersAllGetATypedAnswer() async throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        let engine = try LogEngine.open(directory: directory, configuration: Self.configuration)
        let warmUp = try await Self.appendAcknowledged(engine, 1000..<1002)
        let token = FaultInjection.install(.init(pathPrefix: directory, call: .fdatasync, errno: EIO, after: 3, count: 100))
        defer { FaultInjection.remove(token) }
        let outcomes = await withTaskGroup(of: (Int, Result<UInt64, LedgerError>).self) { group in
            for index in 0..<64 {
                group.addTask {
                    do {
                        return (index, .success(try await engine.append(kind: .opaque, body: Self.body(index))))
                    } catch {
                        return (index, .failure(error as! LedgerError))
                    }
                }
            }
            var all: [(Int, Result<UInt64, LedgerError>)] = []
            for await outcome in group { all.append(outcome) }
            return all
        }
        var acknowledged: [UInt64: [UInt8]] = [1: warmUp[0], 2: warmUp[1]]
        var codes: [LedgerError.Code] = []
        for (index, outcome) in outcomes {
            switch outcome {
            case .success(let sequence): acknowledged[sequence] = Self.body(index)
            case .failure(let error): codes.append(error.code)
            }
        }
        #expect(codes.contains(.io), "the appenders of the failing batch see the I/O error")
        #expect(codes.allSatisfy { $0 == .io || $0 == .poisoned }, "\(codes)")
        #expect(acknowledged.count - warmUp.count + codes.count == 64)
        try engine.close()
        #expect(FaultInjection.fired(token) == 1)
        FaultInjection.remove(token)
        var recovered: [UInt64: [UInt8]] = [:]
        var seals = Set<UInt64>()
        let reopened = try LogEngine.open(directory: directory, configuration: Self.configuration,
                                          onRecord: {
                                              recovered[$0.header.sequence] = $0.body
                                              if $0.header.kind == .seal { seals.insert($0.header.sequence) }
                                          })
        try reopened.close()
        let highest = acknowledged.keys.max() ?? 0
        let numbered = Set(acknowledged.keys).union(seals.filter { $0 < highest })
        #expect(numbered.count == acknowledged.count + seals.filter { $0 < highest }.count, "no seal took an acknowledged number")
        #expect(numbered.sorted() == (0..<numbered.count).map { UInt64($0 + 1) },
                "successes are exactly the batches before the failure")
        for (sequence, body) in acknowledged {
            #expect(recovered[sequence] == body, "acknowledged record \(sequence) is back with its bytes")
        }
    }

    // MARK: Compaction

    enum CompactionStep: String, CaseIterable, Sendable, CustomTestStringConvertible {
        /// `fsync` of the snapshot's temporary file.
        case snapshotFsync
        /// `rename` of the snapshot's temporary file.
        case snapshotRename
        /// Deleting a covered segment after the snapshot is durable.
        case deleteSegment
        var testDescription: String { rawValue }

        func rule(_ directory: String) -> FaultInjection.Rule {
            switch self {
            case .snapshotFsync: return .init(pathPrefix: directory + "/snap-", call: .fsync, errno: EIO, count: 100)
            case .snapshotRename: return .init(pathPrefix: directory + "/snap-", call: .rename, errno: EIO, count: 100)
            case .deleteSegment: return .init(pathPrefix: directory + "/wal-", call: .unlink, errno: EIO, count: 100)
            }
        }
    }

    @Test(arguments: CompactionStep.allCases)
    func compactionFailurePoisonsAndLosesNothing(step: CompactionStep) async throws {
        let directory = temporaryDirectory("compact\(step.rawValue)")
        defer { removeDirectory(directory) }
        let engine = try LogEngine.open(directory: directory, configuration: Self.configuration)
        let acknowledged = try await Self.appendAcknowledged(engine, 0..<(Self.perSegment * 2 + 3))
        #expect(engine.activeSegment == 3)
        let token = FaultInjection.install(step.rule(directory))
        defer { FaultInjection.remove(token) }
        let items = acknowledged.map { SnapshotFile.Item(kind: .opaque, body: $0) }
        let error = await #expect(throws: LedgerError.self) { try await engine.compact { _ in items } }
        #expect(FaultInjection.fired(token) == 1)
        #expect(error?.code == .io)
        #expect(error?.errno == EIO)
        #expect(error?.path?.hasPrefix(directory + "/") == true)
        try await Self.expectPoisonedThenClose(engine, directory: directory)
        #expect(FaultInjection.fired(token) == 1, "the failed step was not retried")
        FaultInjection.remove(token)
        #expect(snapshotPaths(directory).count == (step == .deleteSegment ? 1 : 0))
        try Self.expectReopenRecovers(directory, acknowledged: acknowledged, unacknowledged: [])
    }

    // MARK: Open

    @Test func readFailureDuringOpenIsTypedAndTransient() async throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        let written = (0..<20).map(Self.body)
        try buildLedger(directory, configuration: Self.configuration, batches: written.map { [$0] })
        let token = FaultInjection.install(.init(pathPrefix: segmentPath(directory, 2), call: .read, errno: EIO))
        defer { FaultInjection.remove(token) }
        let error = #expect(throws: LedgerError.self) {
            try LogEngine.open(directory: directory, configuration: Self.configuration).close()
        }
        #expect(error?.code == .io)
        #expect(error?.errno == EIO)
        #expect(error?.path == segmentPath(directory, 2))
        FaultInjection.remove(token)
        let (engine, bodies) = try reopenOpaque(directory, configuration: Self.configuration)
        #expect(bodies == written, "the failed open released the lock and changed nothing")
        try engine.close()
    }

    /// Opening a ledger with a torn tail and a leftover temporary file runs the whole
    /// open sequence: lock, scan, temporary-file removal, side file (write, fsync, rename, directory fsync), zeroing, syncs. For each
    /// kind of call, fail its n-th occurrence under the directory (n = 0, 1, … until
    /// the open no longer reaches an n-th one): the open throws a typed `.io` error
    /// with the errno, and the next open (without faults) recovers every record and
    /// quarantines exactly the torn bytes.
    @Test(arguments: [FaultInjection.Call.open, .read, .write, .fdatasync, .fsync, .truncate, .stat, .rename, .unlink])
    func everyFailingCallWhileOpeningATornTailThenCleanReopen(call: FaultInjection.Call) throws {
        var configuration = Self.configuration
        configuration.checkpointOnClose = false
        let written = (0..<5).map(Self.body)
        let errno = call == .write ? ENOSPC : EIO
        var failures = 0
        for after in 0..<20 {
            let directory = temporaryDirectory("torn\(call)\(after)")
            defer { removeDirectory(directory) }
            try buildLedger(directory, configuration: configuration, batches: written.map { [$0] })
            let path = segmentPath(directory, 1)
            let last = try #require(try walkSegment(path).records.last)
            var generator = SeededRandom(seed: 7)
            let garbage = generator.bytes(64)
            let cut = last.offset + last.frameBytes
            try overwrite(path, at: cut, with: garbage)
            // And a rollover that never finished: its temporary file is deleted on open.
            try writeFile(segmentPath(directory, 2) + LedgerFileNames.temporarySuffix, garbage)

            let token = FaultInjection.install(.init(pathPrefix: directory, call: call, errno: errno, after: after))
            defer { FaultInjection.remove(token) }
            var error: LedgerError?
            do {
                try LogEngine.open(directory: directory, configuration: configuration).close()
            } catch let caught as LedgerError {
                error = caught
            }
            let fired = FaultInjection.fired(token)
            FaultInjection.remove(token)
            if fired == 0 {
                #expect(error == nil, "\(call) #\(after): \(String(describing: error))")
                break
            }
            failures += 1
            #expect(error?.code == .io, "\(call) #\(after): \(String(describing: error))")
            #expect(error?.errno == errno, "\(call) #\(after)")
            #expect(error?.path?.hasPrefix(directory) == true, "\(call) #\(after)")

            let (engine, bodies) = try reopenOpaque(directory, configuration: configuration)
            #expect(bodies == written, "\(call) #\(after)")
            let label = engine.recovery.row.label
            #expect(label == "R15 torn-tail" || label == "R11 clean", "\(call) #\(after): \(label)")
            try engine.close()
            let side = directory + "/" + LedgerFileNames.torn(segment: 1, offset: UInt64(cut))
            #expect(try readFile(side) == garbage, "\(call) #\(after): the quarantined bytes are kept exactly")
            #expect(try readFile(path)[cut...].allSatisfy { $0 == 0 }, "\(call) #\(after)")
            #expect(!fileNames(directory).contains(where: LedgerFileNames.isTemporary), "\(call) #\(after)")
        }
        #expect(failures > 0, "opening a torn ledger makes at least one \(call)")
    }

    // MARK: Transparent conditions

    @Test func shortWritesAreContinuedTransparently() async throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        // Every write attempt is cut in half until the rule is used up.
        let token = FaultInjection.install(.init(
            pathPrefix: directory, call: .write, errno: FaultInjection.shortWrite, count: 100_000))
        defer { FaultInjection.remove(token) }
        let engine = try LogEngine.open(directory: directory, configuration: Self.configuration)
        let group = (200..<203).map(Self.body)
        var written = try await Self.appendAcknowledged(engine, 0..<(Self.perSegment * 2))
        _ = try await engine.append(group.map { LogRecord(kind: .opaque, body: $0) })
        written += group
        #expect(engine.activeSegment == 3, "the preallocation of new segments was cut short too")
        try engine.close()
        #expect(FaultInjection.fired(token) > 100)
        FaultInjection.remove(token)
        let (reopened, bodies) = try reopenOpaque(directory, configuration: Self.configuration)
        #expect(reopened.recovery.row.label == "R11 clean")
        #expect(bodies == written)
        try reopened.close()
        #expect(try walkLedger(directory).filter { $0.kind == .opaque }.map(\.body) == written)
    }

    @Test func eintrIsRetriedTransparentlyEverywhere() async throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        let calls: [FaultInjection.Call] = [
            .open, .read, .write, .fdatasync, .fsync, .truncate, .stat, .rename, .unlink, .mkdir, .readdir,
        ]
        // Each call kind is interrupted three times in a row, the first time it happens.
        let tokens = calls.map { FaultInjection.install(.init(pathPrefix: directory, call: $0, errno: EINTR, count: 3)) }
        defer { tokens.forEach(FaultInjection.remove) }
        let engine = try LogEngine.open(directory: directory, configuration: Self.configuration)
        var written = try await Self.appendAcknowledged(engine, 0..<(Self.perSegment + 2))
        let items = written.map { SnapshotFile.Item(kind: .opaque, body: $0) }
        _ = try await engine.compact { _ in items }
        written += try await Self.appendAcknowledged(engine, 100..<110)
        try engine.close()
        let (reopened, bodies) = try reopenOpaque(directory, configuration: Self.configuration)
        #expect(bodies == written)
        try reopened.close()
        for (call, token) in zip(calls, tokens) {
            #expect(FaultInjection.fired(token) == 3, "EINTR on \(call) was injected and absorbed")
        }
    }

    // MARK: The injection itself

    @Test func rulesOnlyApplyUnderTheirOwnDirectory() async throws {
        let directory = temporaryDirectory()
        let bystander = temporaryDirectory("bystander")
        defer {
            removeDirectory(directory)
            removeDirectory(bystander)
        }
        let token = FaultInjection.install(.init(pathPrefix: directory, call: .write, errno: EIO, count: 1000))
        defer { FaultInjection.remove(token) }
        let engine = try LogEngine.open(directory: bystander, configuration: Self.configuration)
        _ = try await Self.appendAcknowledged(engine, 0..<3)
        try engine.close()
        #expect(FaultInjection.fired(token) == 0)
    }
}
