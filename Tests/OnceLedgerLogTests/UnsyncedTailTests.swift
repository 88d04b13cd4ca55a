// Proves the rule by which a writer's open picks the records it compares with the device
// (`UnsyncedTail.unvouched`, `Spec/RECOVERY.md` §4.1): the records of the last commit write,
// those above the acked-through they share, and only those; nothing when every record is
// vouched for; and that the compare finds a difference at its first byte, writes back only
// from there, and leaves a ledger whose device and page cache agree.
import OnceLedgerFormat
@testable import OnceLedgerLog
import OnceLedgerTestSupport
import Testing

@Suite struct UnsyncedTailTests {
    static let directory = "/ledger"

    static func lastSegment(_ storage: SimulatedStorage, _ writer: LogWriter) throws -> (path: String, bytes: [UInt8]) {
        let path = Paths.join(directory, LedgerFileNames.segment(writer.segmentNumber))
        return (path, try #require(try storage.readWholeFile(path, maxBytes: 1 << 30)))
    }

    @Test func theUnvouchedRecordsAreTheLastCommitWrite() throws {
        let storage = SimulatedStorage(seed: 3)
        let (writer, lock, _) = try LogWriter.recover(
            directory: Self.directory, storage: storage, configuration: LogConfiguration(segmentBytes: 1 << 20))
        defer { lock.unlock() }
        var (path, bytes) = try Self.lastSegment(storage, writer)
        #expect(UnsyncedTail.unvouched(bytes, ledgerID: writer.ledgerID, segment: writer.segmentNumber) == nil,
                "a new ledger has no record")
        var lastCommitStart: UInt64 = 0
        for batch in [1, 3, 2, 5] {
            lastCommitStart = writer.writeOffset
            try writer.commit((0..<batch).map { LogRecord(kind: .opaque, body: [UInt8](repeating: UInt8(batch), count: 40 * $0 + 12)) })
            (path, bytes) = try Self.lastSegment(storage, writer)
            let found = try #require(UnsyncedTail.unvouched(bytes, ledgerID: writer.ledgerID, segment: writer.segmentNumber))
            #expect(found.start == Int(lastCommitStart), "batch of \(batch)")
            #expect(found.end == Int(writer.writeOffset), "batch of \(batch)")
        }
        // The device holds them all: nothing to write back, nothing written.
        let operations = storage.operationCount
        var copy = bytes
        #expect(try UnsyncedTail.reconcile(storage: storage, path: path, bytes: &copy, ledgerID: writer.ledgerID,
                                           segment: writer.segmentNumber, write: true) == nil)
        #expect(copy == bytes && storage.operationCount == operations)
    }

    @Test func aDifferenceIsWrittenBackFromItsFirstByte() async throws {
        var options = SimulatedStorage.Options()
        options.failedSyncLosesWrites = true
        let storage = SimulatedStorage(seed: 4, options: options)
        let configuration = LogConfiguration(segmentBytes: 1 << 20)
        var (writer, lock, _) = try LogWriter.recover(directory: Self.directory, storage: storage, configuration: configuration)
        for index in 0..<4 { try writer.commit([LogRecord(kind: .opaque, body: [UInt8](repeating: UInt8(index), count: 300))]) }
        let vouchedEnd = writer.writeOffset
        storage.injectFault(.fileSync, errno: 5)
        #expect(throws: LedgerError.self) {
            try writer.commit([LogRecord(kind: .opaque, body: [UInt8](repeating: 9, count: 5000))])
        }
        lock.unlock()
        let (path, cached) = try Self.lastSegment(storage, writer)
        // A report finds the first byte the device lacks (in the failed record's header) and writes nothing.
        var reported = cached
        let operations = storage.operationCount
        let found = try #require(try UnsyncedTail.reconcile(storage: storage, path: path, bytes: &reported,
                                                            ledgerID: writer.ledgerID, segment: writer.segmentNumber,
                                                            write: false))
        // (Its header's first bytes, a checksum, may happen to be zero, as the device's are.)
        #expect(found.offset >= vouchedEnd && found.offset < vouchedEnd + UInt64(FormatLimits.recordHeaderBytes))
        #expect(!found.repaired && found.cachedEndOffset > vouchedEnd)
        #expect(reported == cached && storage.operationCount == operations)
        // The writer's open writes the device's bytes back: the cache then shows what the device has.
        (writer, lock, _) = try LogWriter.recover(directory: Self.directory, storage: storage, configuration: configuration)
        defer { lock.unlock() }
        #expect(writer.writeOffset == vouchedEnd, "the failed record is gone")
        let (_, after) = try Self.lastSegment(storage, writer)
        let device = try #require(try storage.readFromDevice(path, at: 0, count: after.count))
        #expect(after == device)
        #expect(Array(after[..<Int(vouchedEnd)]) == Array(cached[..<Int(vouchedEnd)]), "nothing vouched for changed")
    }
}
