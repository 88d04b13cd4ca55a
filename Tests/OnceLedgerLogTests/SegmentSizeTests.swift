// Proves the writer's segment-size policy and its small footprint (`Spec/FORMAT.md` §3.4,
// §8, §2.3): a new ledger with the default configuration takes under 1 MiB of disk (real
// files, sizes summed from the directory); segments double from `initialSegmentBytes` up to
// `segmentBytes`, also across a reopen; a record larger than the next doubled size gets a
// segment that fits it; a compaction of a one-segment ledger does not grow the directory
// (it rolls to a new, smaller segment and deletes the old one), and every record and the
// snapshot read back; a failed segment or snapshot creation leaves no `.tmp` behind (fault
// injected into `SimulatedStorage`); and a writer refuses to create a ledger in a
// non-empty directory that holds none, unless told to adopt it.
import Foundation
import OnceLedgerFormat
import OnceLedgerLog
import OnceLedgerTestSupport
import Testing

@Suite struct SegmentSizeTests {
    static let directory = "/ledger"

    /// Sum of the sizes of the regular files in `directory` (real files).
    static func directoryBytes(_ directory: String) throws -> UInt64 {
        var total: UInt64 = 0
        for name in try FileManager.default.contentsOfDirectory(atPath: directory) {
            let attributes = try FileManager.default.attributesOfItem(atPath: directory + "/" + name)
            total += (attributes[.size] as? NSNumber)?.uint64Value ?? 0
        }
        return total
    }

    /// The size each segment's header records, by segment number (simulated files).
    static func segmentSizes(_ storage: SimulatedStorage) -> [UInt64] {
        storage.listFiles().compactMap { path -> (UInt64, UInt64)? in
            let name = String(path.split(separator: "/").last ?? "")
            guard let number = LedgerFileNames.parseSegment(name), let bytes = storage.fileBytes(path),
                  case .header(let header) = SegmentHeader.decode(Array(bytes.prefix(FormatLimits.segmentHeaderBytes)))
            else { return nil }
            #expect(UInt64(bytes.count) == header.segmentBytes, "\(name): file size and header agree")
            return (number, header.segmentBytes)
        }.sorted { $0.0 < $1.0 }.map(\.1)
    }

    static func configuration(initial: UInt64, maximum: UInt64) -> LogConfiguration {
        var configuration = LogConfiguration(segmentBytes: maximum)
        configuration.initialSegmentBytes = initial
        return configuration
    }

    @Test func aNewLedgerTakesLessThanOneMebibyte() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let engine = try LogEngine.open(directory: directory)
        try engine.close()
        let bytes = try SegmentSizeTests.directoryBytes(directory)
        #expect(bytes < 1 << 20, "a new ledger takes \(bytes) bytes")
        #expect(bytes >= LogConfiguration().initialSegmentBytes)
    }

    @Test func segmentsDoubleUpToTheConfiguredSizeAlsoAcrossAReopen() throws {
        let storage = SimulatedStorage(seed: 1)
        let configuration = SegmentSizeTests.configuration(initial: 4096, maximum: 32768)
        var (writer, lock, _) = try LogWriter.recover(
            directory: SegmentSizeTests.directory, storage: storage, configuration: configuration)
        for index in 0..<60 { try writer.commit([LogRecord(kind: .opaque, body: payload(index, bytes: 1000))]) }
        #expect(SegmentSizeTests.segmentSizes(storage) == [4096, 8192, 16384, 32768, 32768])
        writer.close(timeMilliseconds: 1)
        lock.unlock()
        // A reopen with a smaller first size continues from the last segment's size.
        (writer, lock, _) = try LogWriter.recover(
            directory: SegmentSizeTests.directory, storage: storage,
            configuration: SegmentSizeTests.configuration(initial: 4096, maximum: 65536))
        for index in 60..<100 { try writer.commit([LogRecord(kind: .opaque, body: payload(index, bytes: 1000))]) }
        let sizes = SegmentSizeTests.segmentSizes(storage)
        #expect(Array(sizes.prefix(6)) == [4096, 8192, 16384, 32768, 32768, 65536], "\(sizes)")
        writer.close(timeMilliseconds: 2)
        lock.unlock()
    }

    @Test func aRecordLargerThanTheNextSegmentGetsASegmentThatFitsIt() throws {
        let storage = SimulatedStorage(seed: 2)
        let configuration = SegmentSizeTests.configuration(initial: 4096, maximum: 1 << 20)
        let (writer, lock, _) = try LogWriter.recover(
            directory: SegmentSizeTests.directory, storage: storage, configuration: configuration)
        let big = payload(7, bytes: 100_000)
        try writer.commit([LogRecord(kind: .opaque, body: Array("small".utf8))])
        try writer.commit([LogRecord(kind: .opaque, body: big)])
        let sizes = SegmentSizeTests.segmentSizes(storage)
        #expect(sizes.count == 2, "\(sizes)")
        if sizes.count == 2 {
            #expect(sizes[0] == 4096 && sizes[1] >= UInt64(64 + frameBytes(big.count)), "\(sizes)")
            #expect(sizes[1] % 4096 == 0 && sizes[1] < 1 << 20, "\(sizes)")
        }
        writer.close(timeMilliseconds: 1)
        lock.unlock()
        var bodies: [[UInt8]] = []
        let reopened = try LogWriter.recover(
            directory: SegmentSizeTests.directory, storage: storage, configuration: configuration,
            onRecord: { if $0.header.kind == .opaque { bodies.append($0.body) } })
        #expect(bodies == [Array("small".utf8), big])
        reopened.0.close(timeMilliseconds: 2)
        reopened.1.unlock()
    }

    @Test func compactingAOneSegmentLedgerDoesNotGrowTheDirectory() async throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // One segment of 1 MiB (first size = largest size), a third full.
        let configuration = SegmentSizeTests.configuration(initial: 1 << 20, maximum: 1 << 20)
        let engine = try LogEngine.open(directory: directory, configuration: configuration)
        let bodies = (0..<1000).map { payload($0, bytes: 300) }
        for start in stride(from: 0, to: bodies.count, by: 20) {
            _ = try await engine.append(bodies[start..<start + 20].map { LogRecord(kind: .opaque, body: $0) })
        }
        #expect(segmentNumbers(directory) == [1])
        let before = try SegmentSizeTests.directoryBytes(directory)
        // The live state is the last 100 bodies.
        let items = bodies.suffix(100).map { SnapshotFile.Item(kind: .opaque, body: $0) }
        let result = try await engine.compact { _ in items }
        let after = try SegmentSizeTests.directoryBytes(directory)
        #expect(after <= before, "compaction grew the directory from \(before) to \(after) bytes")
        #expect(result.deletedSegments == [1])
        #expect(segmentNumbers(directory) == [2])
        try engine.close()
        var snapshotItems: [[UInt8]] = []
        let (reopened, records) = try readAll(directory, configuration: configuration)
        _ = try RecoveryScanner.scan(storage: PosixStorage(), directory: directory,
                                     onSnapshot: { snapshotItems = $0.items.map(\.body) })
        #expect(snapshotItems == Array(bodies.suffix(100)))
        #expect(records.allSatisfy { $0.header.kind != .opaque })
        try reopened.close()

        // A one-segment ledger at its smallest size: the new segment is smaller still.
        let small = temporaryDirectory() + "-small"
        defer { try? FileManager.default.removeItem(atPath: small) }
        let smallEngine = try LogEngine.open(directory: small, configuration: LogConfiguration())
        for start in stride(from: 0, to: 200, by: 20) {
            _ = try await smallEngine.append((start..<start + 20).map { LogRecord(kind: .opaque, body: payload($0, bytes: 300)) })
        }
        let smallBefore = try SegmentSizeTests.directoryBytes(small)
        _ = try await smallEngine.compact { _ in (0..<20).map { SnapshotFile.Item(kind: .opaque, body: payload($0, bytes: 300)) } }
        let smallAfter = try SegmentSizeTests.directoryBytes(small)
        #expect(smallAfter <= smallBefore, "compaction grew the directory from \(smallBefore) to \(smallAfter) bytes")
        try smallEngine.close()
    }

    @Test(arguments: [SimulatedStorage.OperationKind.write, .fileSync, .rename])
    func aFailedSegmentCreationRemovesItsTemporaryFileAtOnce(_ kind: SimulatedStorage.OperationKind) throws {
        let storage = SimulatedStorage(seed: 3)
        let (writer, lock, _) = try LogWriter.recover(
            directory: SegmentSizeTests.directory, storage: storage, configuration: LogConfiguration(segmentBytes: 4096))
        defer { lock.unlock() }
        storage.injectFault(kind, errno: ENOSPC, pathContaining: ".seg.tmp")
        #expect(throws: LedgerError.self) {
            for index in 0..<40 { try writer.commit([LogRecord(kind: .opaque, body: payload(index, bytes: 300))]) }
        }
        #expect(storage.faultsFired == 1)
        #expect(writer.poisoned != nil, "the failure still poisons")
        if kind == .rename {
            // The rename comes after the seal naming the new segment is durable (FORMAT
            // §7.2): that `.tmp` is the sealed segment's successor now, kept for the next
            // open to complete the rollover (RECOVERY R17); deleting it would turn the seal
            // into a missing newest segment (R16).
            #expect(storage.listFiles().filter { $0.hasSuffix(".tmp") }.count == 1, "\(storage.listFiles())")
            let report = try RecoveryScanner.scan(storage: storage, directory: SegmentSizeTests.directory)
            #expect(report.row.label == "R17 interrupted-rollover", "\(report.observation)")
        } else {
            #expect(!storage.listFiles().contains { $0.hasSuffix(".tmp") }, "\(storage.listFiles())")
        }
    }

    @Test func aFailedSnapshotCreationRemovesItsTemporaryFileAtOnce() throws {
        let storage = SimulatedStorage(seed: 4)
        let (writer, lock, _) = try LogWriter.recover(
            directory: SegmentSizeTests.directory, storage: storage, configuration: LogConfiguration(segmentBytes: 4096))
        defer { lock.unlock() }
        try writer.commit([LogRecord(kind: .opaque, body: payload(1))])
        storage.injectFault(.write, errno: ENOSPC, pathContaining: ".snap.tmp")
        #expect(throws: LedgerError.self) {
            _ = try writer.compact(items: [SnapshotFile.Item(kind: .opaque, body: payload(1))], timeMilliseconds: 1)
        }
        #expect(writer.poisoned != nil)
        #expect(!storage.listFiles().contains { $0.hasSuffix(".tmp") }, "\(storage.listFiles())")
    }

    @Test func aWriterRefusesANonEmptyDirectoryWithoutALedgerUnlessToldToAdoptIt() throws {
        let storage = SimulatedStorage(seed: 5)
        try storage.createDirectory(SegmentSizeTests.directory)
        let notes = SegmentSizeTests.directory + "/notes.txt"
        let file = try storage.openFile(notes, mode: .createExclusive)
        try file.write(Array("mine".utf8), at: 0)
        file.close()
        let error = #expect(throws: LedgerError.self) {
            _ = try LogWriter.recover(directory: SegmentSizeTests.directory, storage: storage,
                                      configuration: LogConfiguration(segmentBytes: 4096))
        }
        #expect(error?.code == .notALedger)
        #expect(error?.message.contains("notes.txt") == true)
        #expect(error?.message.contains("adoptNonEmptyDirectory") == true)
        #expect(storage.listFiles() == [notes], "a refusal creates nothing")
        var configuration = LogConfiguration(segmentBytes: 4096)
        configuration.adoptNonEmptyDirectory = true
        let (writer, lock, _) = try LogWriter.recover(
            directory: SegmentSizeTests.directory, storage: storage, configuration: configuration)
        writer.close(timeMilliseconds: 1)
        lock.unlock()
        #expect(storage.fileBytes(notes) == Array("mine".utf8))
        // Once it holds a ledger, the directory opens without the option.
        let (again, againLock, _) = try LogWriter.recover(
            directory: SegmentSizeTests.directory, storage: storage, configuration: LogConfiguration(segmentBytes: 4096))
        again.close(timeMilliseconds: 2)
        againLock.unlock()
        // Leftovers of the ledger's own (a creation that crashed) do not count as foreign.
        let fresh = SimulatedStorage(seed: 6)
        try fresh.createDirectory(SegmentSizeTests.directory)
        try fresh.openFile(SegmentSizeTests.directory + "/" + LedgerFileNames.segment(1) + ".tmp", mode: .createExclusive)
            .close()
        let (created, createdLock, _) = try LogWriter.recover(
            directory: SegmentSizeTests.directory, storage: fresh, configuration: LogConfiguration(segmentBytes: 4096))
        created.close(timeMilliseconds: 3)
        createdLock.unlock()
    }
}
