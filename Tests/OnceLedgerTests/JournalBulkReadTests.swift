// Proves the journal's bulk read (`LogStore.memoGetMany` reading a run's adjacent records with
// one `pread`, `RecordReader.readParts`) returns exactly what one read per position returns, and
// that a damaged record inside the bulk span is a `.corruptRecord` error, never other bytes:
// by recording steps on a file ledger, comparing both reads, then flipping one byte on disk.
import Foundation
@_spi(Benchmarks) @testable import OnceLedger
import OnceLedgerFormat
import OnceLedgerLog
import Testing
import OnceLedgerStoreContract

@Suite struct JournalBulkReadTests {
    static let steps = Int(ProcessInfo.processInfo.environment["ONCELEDGER_JOURNAL_BULK_STEPS"] ?? "") ?? 40

    static func recorded(_ directory: String) async throws -> (Ledger, Journal) {
        let ledger = try Ledger.open(directory: directory)
        let journal = try await ledger.journal(run: "bulk")
        for index in 0..<steps {
            _ = try await journal.step("s\(index)", input: index) { "output \(index) " + String(repeating: "x", count: index) }
        }
        return (ledger, journal)
    }

    @Test func aBulkReadReturnsWhatOneReadPerPositionReturns() async throws {
        let directory = FileManager.default.temporaryDirectory.path + "/ol-journal-bulk-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (ledger, journal) = try await Self.recorded(directory)
        let store = try #require(ledger.logStore)
        let keys = (0..<UInt64(Self.steps + 3)).map(journal.memoKey)
        let many = try await store.memoGetMany(keys)
        var one: [MemoValue?] = []
        for key in keys { one.append(try await store.memoGet(key)) }
        #expect(many.count == keys.count)
        #expect(many.compactMap { $0 }.count == Self.steps)
        #expect(many.map { $0?.bytes } == one.map { $0?.bytes })
        #expect(many.map { $0?.inputDigest } == one.map { $0?.inputDigest })
        // And a replay of the run returns every recorded output without running a body.
        let replay = try await ledger.journal(run: "bulk")
        for index in 0..<Self.steps {
            let output: String = try await replay.step("s\(index)", input: index) {
                Issue.record("step \(index) ran again")
                return ""
            }
            #expect(output == "output \(index) " + String(repeating: "x", count: index))
        }
        try ledger.close()
    }

    @Test func aDamagedRecordInsideABulkReadIsCorruptRecord() async throws {
        let directory = FileManager.default.temporaryDirectory.path + "/ol-journal-bulk-damage-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (ledger, journal) = try await Self.recorded(directory)
        let store = try #require(ledger.logStore)
        // A record in the middle of the run: its neighbours on both sides are read in the same span.
        let middle = journal.memoKey(UInt64(Self.steps / 2))
        let location = try #require(MemoValuesOnDiskTests.location(ledger, middle))
        let before = try #require(MemoValuesOnDiskTests.location(ledger, journal.memoKey(UInt64(Self.steps / 2 - 1))))
        #expect(before.file == location.file && before.offset < location.offset)
        let reader = try #require(store.memo.withLock { $0.reader })
        try ValuesOnDiskTests.flipByte(reader.path(of: location.file), at: location.offset + UInt64(location.readBytes - 2))
        let keys = (0..<UInt64(Self.steps)).map(journal.memoKey)
        let error = await ledgerError { try await store.memoGetMany(keys) }
        #expect(error?.code == .corruptRecord)
        let replay = try await ledger.journal(run: "bulk")
        let replayError = await ledgerError {
            for index in 0..<Self.steps {
                _ = try await replay.step("s\(index)", input: index) { "ran again" }
            }
        }
        #expect(replayError?.code == .corruptRecord)
        try ledger.close()
    }

    @Test func readPartsRefusesASpanThatDoesNotHoldARecordWhole() async throws {
        let directory = FileManager.default.temporaryDirectory.path + "/ol-journal-bulk-short-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (ledger, journal) = try await Self.recorded(directory)
        let store = try #require(ledger.logStore)
        let reader = try #require(store.memo.withLock { $0.reader })
        let first = try #require(MemoValuesOnDiskTests.location(ledger, journal.memoKey(0)))
        let second = try #require(MemoValuesOnDiskTests.location(ledger, journal.memoKey(1)))
        let file = try reader.handle(for: first.file)
        let parts = try reader.readParts([first, second], from: file) { _, _, body in 0..<body.count }
        #expect(parts.count == 2)
        // A record running past the end of the file: typed error, no trap.
        let size = try #require(try FileManager.default.attributesOfItem(atPath: reader.path(of: first.file))[.size] as? Int)
        let past = ValueLocation(file: first.file, offset: UInt64(size - 10), bodyBytes: second.bodyBytes)
        let error = await ledgerError { try reader.readParts([first, past], from: file) { _, _, body in 0..<body.count } }
        #expect(error?.code == .corruptRecord)
        // Locations out of order: refused, not read.
        let misuse = await ledgerError { try reader.readParts([second, first], from: file) { _, _, body in 0..<body.count } }
        #expect(misuse?.code == .invalidArgument)
        try ledger.close()
    }
}
